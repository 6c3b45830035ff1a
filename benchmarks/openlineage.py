"""What sending OpenLineage events costs a run: the same flow with and without them.

A chain and a fan-out of N no-op tasks (``--n``, default 5,000) run uncached, each on a
fresh store, in four ways, interleaved and in turn (off, again, file, http, then again,
file, http, off...) so that the load of a shared machine weighs on all of them alike:

* off     no OpenLineage configuration: the runner adds no exporter
* again   the same as off: the control, whose ratio to off is the noise of the measurement
* file    ``OPENLINEAGE__TRANSPORT__TYPE=file`` (append) to a temporary file
* http    ``OPENLINEAGE_URL`` of a receiver on 127.0.0.1, in a child process (so that its
          work does not share this process's GIL), answering 200 to each event

Each repetition (``--repeat``) runs ``flow.run(n)`` once per way, gc.collect() before each;
the time includes the run's bounded wait for its events at its end. After each run the
script waits (untimed) for every event to be delivered, checks that 2 x (tasks + 1) events
arrived, and reports how long delivery took from the run's start.

Two ratios to off are printed: of the best runs, and the median over the repetitions of
each one's ratio (a run over the off run of the same repetition, seconds apart). The
verdict takes the median of the paired ratios: the best of each way is the luckiest of
its runs, taken minutes apart, so on a shared machine it moves by several percent between
two ways that do the same thing (the control's line shows by how much). It ends with one
PASS/FAIL line per transport and shape: at most 1.05x the run without OpenLineage. The
exit code is 0 whatever the result.

    python benchmarks/openlineage.py [--n 5000] [--repeat 9]
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

RECEIVER = r"""
import http.server, sys, threading
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
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
"""

SHAPES = {"chain": (chain, lambda n: n), "fan-out": (fanout, lambda n: n + 1)}


class Receiver:
    """An OpenLineage HTTP endpoint in a child process that counts the events it got."""

    def __init__(self) -> None:
        self.process = subprocess.Popen([sys.executable, "-c", RECEIVER], stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        self.url = f"http://127.0.0.1:{self.process.stdout.readline().strip()}"

    def count(self) -> int:
        with urllib.request.urlopen(self.url + "/count", timeout=10) as answer:
            return int(answer.read())

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(10)


def configure(mode: str, events_file: str, receiver: Receiver) -> None:
    for name in [k for k in os.environ if k.startswith("OPENLINEAGE")]:
        del os.environ[name]
    if mode == "file":
        os.environ.update({"OPENLINEAGE__TRANSPORT__TYPE": "file", "OPENLINEAGE__TRANSPORT__APPEND": "true",
                           "OPENLINEAGE__TRANSPORT__LOG_FILE_PATH": events_file})
    elif mode == "http":
        os.environ["OPENLINEAGE_URL"] = receiver.url


def delivered(mode: str, events_file: str, receiver: Receiver) -> int:
    if mode == "file":
        if not os.path.exists(events_file):
            return 0
        with open(events_file, "rb") as f:
            return sum(1 for _ in f)
    return receiver.count()


def one_run(flow: fk.Flow[..., Any], n: int, mode: str, events_file: str, receiver: Receiver) -> tuple[float, float]:
    """(seconds of ``flow.run(n)``, seconds until its events were delivered), on a fresh store."""
    configure(mode, events_file, receiver)
    sends = mode in ("file", "http")
    before = delivered(mode, events_file, receiver) if sends else 0
    with tempfile.TemporaryDirectory() as home:
        runnable = flow.with_options(store=home)
        gc.collect()
        start = time.perf_counter()
        run = runnable.run(n)
        took = time.perf_counter() - start
        if not sends:
            return took, 0.0
        assert openlineage.flush(600), "the events were not delivered within 10 minutes"
        done = time.perf_counter() - start
    got = delivered(mode, events_file, receiver) - before
    expected = 2 * (len(run.task_runs) + 1)
    assert got == expected, f"{mode}: {got} events delivered, {expected} expected"
    return took, done


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5000, help="no-op tasks per flow (default 5000)")
    parser.add_argument("--repeat", type=int, default=9, help="runs per shape and way (default 9)")
    args = parser.parse_args()
    import openlineage.client

    print(f"flowkit {fk.__version__}, openlineage-python {openlineage.client.__version__}, Python "
          f"{platform.python_version()} on {platform.machine()}; N = {args.n:,}, {args.repeat} repetitions\n")
    receiver = Receiver()
    modes = ["off", "again", "file", "http"]
    ratios: dict[tuple[str, str], float] = {}
    try:
        with tempfile.TemporaryDirectory() as folder:
            events_file = os.path.join(folder, "events.jsonl")
            header = (f"{'shape':<8} {'mode':<6} {'best (s)':>9} {'best/off':>9} {'paired median':>14} "
                      f"{'delivered after (s)':>20} {'events/s':>9}")
            print(header)
            print("-" * len(header))
            for shape, (flow, tasks) in SHAPES.items():
                for mode in modes:  # warm up: imports, first client, first connection
                    one_run(flow, 50, mode, events_file, receiver)
                times: dict[str, list[float]] = {m: [] for m in modes}
                deliveries: dict[str, list[float]] = {m: [] for m in modes}
                for i in range(args.repeat):
                    turn = i % len(modes)
                    for mode in modes[turn:] + modes[:turn]:  # each way in each position, in turn
                        took, done = one_run(flow, args.n, mode, events_file, receiver)
                        times[mode].append(took)
                        deliveries[mode].append(done)
                base = min(times["off"])
                events = 2 * (tasks(args.n) + 1)
                for mode in modes:
                    best = min(times[mode])
                    paired = ratios[shape, mode] = statistics.median(
                        t / off for t, off in zip(times[mode], times["off"]))
                    late = statistics.median(deliveries[mode]) if mode in ("file", "http") else 0.0
                    after, rate = (f"{late:>20.2f}", f"{events / late:>9,.0f}") if late else ("", "")
                    print(f"{shape:<8} {mode:<6} {best:>9.4f} {best / base:>8.3f}x {paired:>13.3f}x {after:>20} "
                          f"{rate:>9}")
    finally:
        receiver.close()
        configure("off", "", receiver)
    print("\ntargets (the median of the paired ratios)")
    for (shape, mode), ratio in ratios.items():
        if mode in ("file", "http"):
            print(f"  {shape}: {args.n:,} no-op tasks with OpenLineage over {mode} take <= {TARGET:g}x the run "
                  f"without: {ratio:.3f}x ({verdict(ratio <= TARGET)}; the control: "
                  f"{ratios[shape, 'again']:.3f}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
