"""What sending OpenLineage events costs a run: the same flow with and without them.

A chain and a fan-out of N no-op tasks (``--n``, default 2,000) run uncached, each on a
fresh store, in three ways, interleaved and in turn (off, file, http, then file, http, off,
then http, off, file...) so that the load of a shared machine weighs on all of them alike:

* off     no OpenLineage configuration: the runner adds no exporter
* file    ``OPENLINEAGE__TRANSPORT__TYPE=file`` (append) to a temporary file
* http    ``OPENLINEAGE_URL`` of a receiver on 127.0.0.1, in a child process (so that its
          work does not share this process's GIL), answering 200 to each event

Each figure is the best of ``--repeat`` runs (gc.collect() before each) of
``flow.run(n)``, which includes the run's bounded wait for its events at its end. After
each run the script waits (untimed) for every event to be delivered, checks that
2 x (tasks + 1) events arrived, and reports how long delivery took from the run's start.
It ends with one PASS/FAIL line per transport and shape: the run takes at most 1.05x
the time it takes without OpenLineage. The exit code is 0 whatever the result.

    python benchmarks/openlineage.py [--n 2000] [--repeat 9]
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
    before = delivered(mode, events_file, receiver) if mode != "off" else 0
    with tempfile.TemporaryDirectory() as home:
        runnable = flow.with_options(store=home)
        gc.collect()
        start = time.perf_counter()
        run = runnable.run(n)
        took = time.perf_counter() - start
        if mode == "off":
            return took, 0.0
        assert openlineage.flush(600), "the events were not delivered within 10 minutes"
        done = time.perf_counter() - start
    got = delivered(mode, events_file, receiver) - before
    expected = 2 * (len(run.task_runs) + 1)
    assert got == expected, f"{mode}: {got} events delivered, {expected} expected"
    return took, done


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="no-op tasks per flow (default 2000)")
    parser.add_argument("--repeat", type=int, default=9, help="runs per shape and mode; the best is kept")
    args = parser.parse_args()
    import openlineage.client

    print(f"flowkit {fk.__version__}, openlineage-python {openlineage.client.__version__}, Python "
          f"{platform.python_version()} on {platform.machine()}; N = {args.n:,}, best of {args.repeat}\n")
    receiver = Receiver()
    modes = ["off", "file", "http"]
    ratios: dict[tuple[str, str], float] = {}
    try:
        with tempfile.TemporaryDirectory() as folder:
            events_file = os.path.join(folder, "events.jsonl")
            header = (f"{'shape':<8} {'mode':<5} {'run (s)':>9} {'ratio':>7} {'delivered after (s)':>20} "
                      f"{'events/s':>9}")
            print(header)
            print("-" * len(header))
            for shape, (flow, tasks) in SHAPES.items():
                for mode in modes:  # warm up: imports, first client, first connection
                    one_run(flow, 50, mode, events_file, receiver)
                times: dict[str, list[float]] = {m: [] for m in modes}
                deliveries: dict[str, list[float]] = {m: [] for m in modes}
                for i in range(args.repeat):
                    for mode in modes[i % 3:] + modes[:i % 3]:  # each mode in each position, in turn
                        took, done = one_run(flow, args.n, mode, events_file, receiver)
                        times[mode].append(took)
                        deliveries[mode].append(done)
                base = min(times["off"])
                events = 2 * (tasks(args.n) + 1)
                for mode in modes:
                    best = min(times[mode])
                    ratio = ratios[shape, mode] = best / base
                    late = statistics.median(deliveries[mode]) if mode != "off" else 0.0
                    rate = f"{events / late:>9,.0f}" if late else f"{'':>9}"
                    print(f"{shape:<8} {mode:<5} {best:>9.4f} {ratio:>6.3f}x {late:>20.2f} {rate}")
    finally:
        receiver.close()
        configure("off", "", receiver)
    print("\ntargets")
    for (shape, mode), ratio in ratios.items():
        if mode != "off":
            print(f"  {shape}: {args.n:,} no-op tasks with OpenLineage over {mode} take <= {TARGET:g}x the run "
                  f"without: {ratio:.3f}x ({verdict(ratio <= TARGET)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
