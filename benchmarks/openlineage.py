"""What sending OpenLineage events costs a run: the same flow with and without them.

**Rounds** (the verdict for the two shapes). A chain and a fan-out of N no-op tasks
(``--n``, default 500) run uncached, each on a fresh store, in one process per transport
(kept on CPU 0; the receiver on CPU 1), which turns OpenLineage on and off between runs by
its environment, as a user would:

* off     no OpenLineage configuration: the runner adds no exporter
* again   the same as off: the control, whose ratio to off is the noise of the measurement
* file    ``OPENLINEAGE__TRANSPORT__TYPE=file`` (append) to a temporary file
* http    ``OPENLINEAGE_URL`` of a receiver on 127.0.0.1, in a child process answering 200
          to each event

Each round (``--rounds``, default 60) runs each shape once in each of off, again and the
process's transport, in the orders of a Williams square and its mirror (each way as often in
each position, and right after each other way), ``gc.collect()`` before each run. The time
includes the run's bounded wait for its events at its end. After a run with OpenLineage the
process waits (untimed) for every event to be delivered, checks that 2 x (tasks + 1) events
arrived, and reports how long delivery took from the run's start and the CPU time the sending
thread used during the run (its CPU clock), as a share of the run's time (the median).

The verdict is the median over the rounds of each run's ratio to the off run of the same
round, the quartiles of those ratios beside it (``middle half``). On this shared machine one
run of a few tenths of a second differs from the next by 10-20% with nothing changed, in the
same process as in two processes, and the noise comes and goes within a second: a verdict of
5% needs many pairs of runs close in time. Nine to sixteen repetitions of 5,000-task runs in
new processes (this script's earlier design) had a control anywhere from 0.95x to 1.03x and
the transports' medians from 0.85x to 1.31x from one run of the script to the next; a run of
5,000 tasks has 10,002 events to deliver, which takes 18 s over HTTP, so rounds of such runs
cannot be many. 500 tasks per run (1,002 events, about 2 s) allow 60 rounds in a few minutes.

**The first run of a process** (``--fresh`` repetitions, default 12, the chain of
``--first-n`` tasks, default 5,000): a new process per run and way, which imports flowkit,
runs the flow once and reports the run's time and the sending thread's CPU time during it;
there that thread also has to import the client and make it. Its delivery is not waited for
(the process's exit waits 1 s for it, untimed). The ways take turns in the orders of a
Williams square, and each repetition starts with an untimed process without OpenLineage, so
that each way's process comes after each kind of process equally often. Its paired ratios
vary from process to process by far more than the rounds' (the control's middle half is
typically 0.9-1.1x), so its line is the least certain.

It ends with one PASS/FAIL line per transport and shape, and per transport for the first
run: at most 1.05x the run without OpenLineage. The exit code is 0 whatever the result.

    python benchmarks/openlineage.py [--n 500] [--rounds 60] [--first-n 5000] [--fresh 12]
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from typing import Any

import flowkit as fk
from flowkit.export import openlineage
from shapes import chain, fanout, verdict

# This file is named like the openlineage package: take its folder off the path before the client is imported.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]

TARGET = 1.05
# The runs' processes on one CPU, the receiver on another: a process that moves between the CPUs of
# a shared machine ran the same runs up to 1.7x slower than one that stays; pinned, two processes
# differ by a few percent. (Pinned, the sender's work outside the interpreter lock takes from the
# run too, so the figures are if anything above what a run that may use both CPUs loses.)
RUNS_CPU, RECEIVER_CPU = 0, 1

RECEIVER = r"""
import http.server, os, sys, threading
count = 0
lock = threading.Lock()
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        global count
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with lock:
            count += 1
        self.send_response(200); self.send_header("Content-Length", "0"); self.end_headers()
    def do_GET(self):
        body = str(count).encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
cpu = int(sys.argv[1])
if hasattr(os, "sched_setaffinity") and cpu in os.sched_getaffinity(0):
    os.sched_setaffinity(0, {cpu})
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
"""

SHAPES = {"chain": (chain, lambda n: n), "fan-out": (fanout, lambda n: n + 1)}


class Endpoint:
    """The receiver's count of the events it got, from any process that has its URL."""

    def __init__(self, url: str) -> None:
        self.url = url

    def count(self) -> int:
        with urllib.request.urlopen(self.url + "/count", timeout=10) as answer:
            return int(answer.read())


class Receiver(Endpoint):
    """An OpenLineage HTTP endpoint in a child process that counts the events it got."""

    def __init__(self) -> None:
        self.process = subprocess.Popen([sys.executable, "-c", RECEIVER, str(RECEIVER_CPU)], stdout=subprocess.PIPE,
                                        text=True)
        assert self.process.stdout is not None
        super().__init__(f"http://127.0.0.1:{self.process.stdout.readline().strip()}")

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(10)


def configure(mode: str, events_file: str, url: str) -> None:
    for name in [k for k in os.environ if k.startswith("OPENLINEAGE")]:
        del os.environ[name]
    if mode == "file":
        os.environ.update({"OPENLINEAGE__TRANSPORT__TYPE": "file", "OPENLINEAGE__TRANSPORT__APPEND": "true",
                           "OPENLINEAGE__TRANSPORT__LOG_FILE_PATH": events_file})
    elif mode == "http":
        os.environ["OPENLINEAGE_URL"] = url


def delivered(mode: str, events_file: str, receiver: Any) -> int:
    if mode == "file":
        if not os.path.exists(events_file):
            return 0
        with open(events_file, "rb") as f:
            return sum(1 for _ in f)
    return receiver.count()


def settle() -> None:
    """Have what a run wrote (its store, its events file) written back now, not during the next run."""
    if hasattr(os, "sync"):
        os.sync()


def sender_clock() -> int | None:
    """The CPU-time clock of the sending thread (``None`` without one, or where the platform has none)."""
    emitters = list(openlineage._EMITTERS.values())
    if not emitters or not hasattr(time, "pthread_getcpuclockid") or emitters[0].thread.ident is None:
        return None
    return time.pthread_getcpuclockid(emitters[0].thread.ident)


def sender_cpu(clock: int | None) -> float:
    # clock_gettime keeps the interpreter lock: reading it does not let the thread start its sending first
    if clock is None:
        return 0.0
    try:
        return time.clock_gettime(clock)
    except OSError:  # the thread ended (its configuration changed): not measured
        return float("nan")


def one_run(flow: fk.Flow[..., Any], n: int, mode: str, events_file: str,
            receiver: Any) -> tuple[float, float, float]:
    """(seconds of ``flow.run(n)``, seconds until its events were delivered, the sender's CPU seconds during
    the run), on a fresh store."""
    sends = mode in ("file", "http")
    if mode == "file" and os.path.exists(events_file):  # each run's events in a new file (opened per event)
        os.remove(events_file)
    before = delivered(mode, events_file, receiver) if sends else 0
    with tempfile.TemporaryDirectory() as home:
        runnable = flow.with_options(store=home)
        gc.collect()
        clock = sender_clock()
        cpu = sender_cpu(clock)
        start = time.perf_counter()
        run = runnable.run(n)
        took = time.perf_counter() - start
        cpu = sender_cpu(clock) - cpu
        if sends:
            assert openlineage.flush(600), "the events were not delivered within 10 minutes"
        done = time.perf_counter() - start
    settle()
    if not sends:
        return took, 0.0, 0.0
    got = delivered(mode, events_file, receiver) - before
    expected = 2 * (len(run.task_runs) + 1)
    assert got == expected, f"{mode}: {got} events delivered, {expected} expected"
    return took, done, cpu


def pin(cpu: int) -> None:
    """Keep this process (its threads and children) on one CPU, where the machine has that one."""
    if hasattr(os, "sched_setaffinity") and cpu in os.sched_getaffinity(0):
        os.sched_setaffinity(0, {cpu})


def worker(modes: str, events_file: str, url: str) -> None:
    """A process that runs flows: ``SHAPE N MODE`` read from stdin, answers ``TOOK DONE CPU`` (seconds).

    ``modes``: the ways it runs (comma-separated), each warmed up first: imports, the sending
    thread and its client, the first connection. Before each run the environment is set for the
    run's way, as a user who turns OpenLineage on and off would (``again`` is ``off``).
    """
    pin(RUNS_CPU)
    receiver = Endpoint(url)
    for mode in modes.split(","):
        configure(mode, events_file, url)
        for flow, _ in SHAPES.values():
            one_run(flow, 50, mode, events_file, receiver)
    print("ready", flush=True)
    for line in sys.stdin:
        shape, n, mode = line.split()
        mode = "off" if mode == "again" else mode
        configure(mode, events_file, url)
        print(*one_run(SHAPES[shape][0], int(n), mode, events_file, receiver), flush=True)


def first_run(mode: str, events_file: str, url: str, n: int) -> None:
    """A fresh process's first run of the chain: prints its seconds and the sending thread's CPU seconds."""
    pin(RUNS_CPU)
    configure(mode, events_file, url)
    with tempfile.TemporaryDirectory() as home:
        runnable = chain.with_options(store=home)
        gc.collect()
        start = time.perf_counter()
        runnable.run(n)
        took = time.perf_counter() - start
        print(took, sender_cpu(sender_clock()), flush=True)  # the thread was made by this run


class Way:
    """A worker process that runs flows in the ways ``modes`` (see :func:`worker`)."""

    def __init__(self, modes: list[str], events_file: str, url: str, seed: str) -> None:
        self.process = subprocess.Popen([sys.executable, __file__, "--worker", ",".join(modes), "--events-file",
                                         events_file, "--url", url], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        text=True, env={**os.environ, "PYTHONHASHSEED": seed})
        assert self.process.stdout is not None and self.process.stdin is not None
        assert self.process.stdout.readline().strip() == "ready", f"the worker of {modes} did not start"

    def run(self, shape: str, n: int, mode: str) -> tuple[float, float, float]:
        assert self.process.stdout is not None and self.process.stdin is not None
        self.process.stdin.write(f"{shape} {n} {mode}\n")
        self.process.stdin.flush()
        answer = self.process.stdout.readline().split()
        assert answer, "a worker stopped (its error is above)"
        return float(answer[0]), float(answer[1]), float(answer[2])

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(600)


def orders(modes: list[str], repeat: int) -> Any:
    """Each repetition's order of the modes, the rows of a Williams square in turn.

    Over ``len(modes)`` repetitions (twice that for an odd number of modes) each mode is as
    often in each position and right after each other mode. A simple rotation (off, again,
    file, http; again, file, http, off...) has each
    mode nearly always right after the same one, and what a process leaves behind as it exits
    moved the next one's first run: in rotation the first run over the file transport, always
    after the control's process, was 1.03-1.22x in six runs of this script, and 1.00x in 24
    processes per way started in random order.
    """
    count = len(modes)
    first = [0]  # 0, 1, n-1, 2, n-2, ...: each difference between neighbours once
    for step in range(1, count):
        first.append((step + 1) // 2 if step % 2 else count - step // 2)
    rows = [[modes[(j + i) % count] for j in first] for i in range(count)]
    if count % 2:  # an odd square is balanced together with its mirror image
        rows += [row[::-1] for row in rows]
    for i in range(repeat):
        yield rows[i % len(rows)]


def ratios_to_off(times: dict[str, list[float]], mode: str) -> list[float]:
    """Each of a way's runs over the off run of the same round (or repetition)."""
    return [t / off for t, off in zip(times[mode], times["off"])]


def paired(times: dict[str, list[float]], mode: str) -> float:
    return statistics.median(ratios_to_off(times, mode))


def spread(times: dict[str, list[float]], mode: str) -> str:
    """The middle half of a way's paired ratios (their quartiles): how far one repetition is from the next."""
    ratios = ratios_to_off(times, mode)
    if len(ratios) < 2:
        return ""
    low, _, high = statistics.quantiles(ratios, n=4)
    return f"{low:.2f}-{high:.2f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=500, help="no-op tasks per flow in the rounds (default 500)")
    parser.add_argument("--rounds", type=int, default=60, help="rounds per shape and transport (default 60)")
    parser.add_argument("--first-n", type=int, default=5000, help="no-op tasks of the first runs (default 5000)")
    parser.add_argument("--fresh", type=int, default=12, help="first runs of a process per way (default 12)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--first-run", help=argparse.SUPPRESS)
    parser.add_argument("--events-file", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.events_file, args.url)
        return 0
    if args.first_run:
        first_run(args.first_run, args.events_file, args.url, args.n)
        return 0
    import openlineage.client

    print(f"flowkit {fk.__version__}, openlineage-python {openlineage.client.__version__}, Python "
          f"{platform.python_version()} on {platform.machine()}; rounds: N = {args.n:,}, {args.rounds} per shape and "
          f"transport; first runs: N = {args.first_n:,}, {args.fresh} per way\n")
    receiver = Receiver()
    transports = ["file", "http"]
    modes = ["off", "again", *transports]
    ratios: dict[tuple[str, str], tuple[float, float]] = {}  # (shape, transport) -> (its ratio, the control's)
    try:
        with tempfile.TemporaryDirectory() as folder:
            files = {m: os.path.join(folder, f"{m}.jsonl") for m in modes}
            header = (f"{'shape':<8} {'transport':<9} {'paired median':>14} {'middle half':>12} {'control':>8} "
                      f"{'middle half':>12} {'best/off':>9} {'delivered after (s)':>20} {'events/s':>9} "
                      f"{'sender CPU in run':>18}")
            print(header)
            print("-" * len(header))
            for index, transport in enumerate(transports):
                ways = ["off", "again", transport]
                times = {shape: {m: [] for m in ways} for shape in SHAPES}
                deliveries: dict[str, list[float]] = {shape: [] for shape in SHAPES}
                senders: dict[str, list[float]] = {shape: [] for shape in SHAPES}
                process = Way(["off", transport], files[transport], receiver.url, str(index + 1))
                try:
                    for order in orders(ways, args.rounds):
                        for shape in SHAPES:
                            for mode in order:
                                took, done, cpu = process.run(shape, args.n, mode)
                                times[shape][mode].append(took)
                                if mode == transport:
                                    deliveries[shape].append(done)
                                    senders[shape].append(cpu / took)
                finally:
                    process.close()
                for shape, (_, tasks) in SHAPES.items():
                    ratio, control = paired(times[shape], transport), paired(times[shape], "again")
                    ratios[shape, transport] = ratio, control
                    late = statistics.median(deliveries[shape])
                    events = 2 * (tasks(args.n) + 1)
                    best = min(times[shape][transport]) / min(times[shape]["off"])
                    print(f"{shape:<8} {transport:<9} {ratio:>13.3f}x {spread(times[shape], transport):>12} "
                          f"{control:>7.3f}x {spread(times[shape], 'again'):>12} {best:>8.3f}x {late:>20.2f} "
                          f"{events / late:>9,.0f} {100 * statistics.median(senders[shape]):>17.2f}%", flush=True)
            if args.fresh:
                firsts: dict[str, list[float]] = {m: [] for m in modes}
                first_senders: dict[str, list[float]] = {m: [] for m in modes}
                env = {**os.environ, "FLOWKIT_OPENLINEAGE_TIMEOUT": "1"}

                def fresh_run(mode: str, seed: int) -> tuple[str, str]:
                    out = subprocess.run([sys.executable, __file__, "--first-run", mode, "--n", str(args.first_n),
                                          "--events-file", files[mode], "--url", receiver.url],
                                         env={**env, "PYTHONHASHSEED": str(seed)}, capture_output=True, text=True,
                                         check=True)
                    settle()
                    took, cpu = out.stdout.split()[-2:]
                    return took, cpu

                for i, order in enumerate(orders(modes, args.fresh)):
                    fresh_run("off", i + 1)  # untimed: each repetition's first way comes after the same kind
                    for mode in order:
                        took, cpu = fresh_run(mode, i + 1)
                        firsts[mode].append(float(took))
                        first_senders[mode].append(float(cpu) / float(took))
                print(f"\nthe first run of a process (chain, N = {args.first_n:,}; the client set up in it)")
                for mode in modes:
                    ratios["first run", mode] = paired(firsts, mode), paired(firsts, "again")
                    share = (f", sender CPU in run {100 * statistics.median(first_senders[mode]):.2f}%"
                             if mode in transports else "")
                    best = min(firsts[mode])
                    print(f"  {mode:<6} best {best:.4f} s ({best / min(firsts['off']):.3f}x), "
                          f"paired median {paired(firsts, mode):.3f}x (middle half {spread(firsts, mode)}){share}")
    finally:
        receiver.close()
    print("\ntargets (the median of the paired ratios)")
    for (shape, transport), (ratio, control) in ratios.items():
        if transport not in transports:
            continue
        tasks = args.first_n if shape == "first run" else args.n
        print(f"  {shape}: {tasks:,} no-op tasks with OpenLineage over {transport} take <= {TARGET:g}x the run "
              f"without: {ratio:.3f}x ({verdict(ratio <= TARGET)}; the control: {control:.3f}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
