"""``flowkit serve`` against a bare Starlette/uvicorn handler serving the same scikit-learn model.

Both servers run as their own uvicorn process on 127.0.0.1 with the same
settings (h11, no access log), at the same time, taking turns under the load
(slices of ``--slice`` seconds, A B B A..., so a shared machine's changing load
weighs on both alike):

* bare      a Starlette route that parses the JSON, builds a DataFrame, calls ``predict`` and
            ``predict_proba`` and answers JSON: no validation, no log, no alias
* flowkit   ``flowkit serve churn@production``: the signature checks, the alias reference, the
            request id and the prediction log (written to the store by its thread), the same outputs

The model is a LogisticRegression on 4 numeric columns (a fast model, so what
is measured is mostly the serving around it). A load generator of ``--clients``
processes (default 4), each one keep-alive httpx client per server sending
single-record ``POST /predict`` requests back to back, runs ``--seconds``
(default 10) per server after a short warm-up; it reports p50 and p99 latency and requests per
second. The target: flowkit's p50 at most 1.3x the bare handler's. After
SIGTERM, the flowkit server's prediction log is counted against the answers it
gave. Exit code is 0 whatever the numbers: this is a benchmark, not a test.

    python benchmarks/serve.py [--clients 4] [--seconds 10] [--warmup 2]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import pickle
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from shapes import verdict

ROOT = Path(__file__).resolve().parent.parent
RATIO_TARGET = 1.3
RECORD = {"age": 41, "income": 1500.0, "tenure": 7, "visits": 3.0}
BARE = """
import json, pickle, sys
import pandas as pd
import uvicorn
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

model = pickle.load(open(sys.argv[1], "rb"))

async def predict(request):
    payload = json.loads(await request.body())
    records = payload["records"] if isinstance(payload, dict) else payload
    frame = pd.DataFrame(records)
    return JSONResponse({"predictions": model.predict(frame).tolist(),
                         "probabilities": model.predict_proba(frame).tolist()})

async def health(request):
    return JSONResponse({"status": "ok"})

app = Starlette(routes=[Route("/predict", predict, methods=["POST"]), Route("/health", health)])
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning", access_log=False)
"""


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_healthy(url: str, proc: subprocess.Popen[bytes], seconds: float = 60) -> None:
    import httpx

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server at {url} exited with {proc.returncode}")
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise SystemExit(f"the server at {url} never became healthy")


def client(urls: tuple[str, str], go: Any, start_at: Any, slice_seconds: float, slices: int, out: Any) -> None:
    """One load generator, sending requests back to back; puts ({url: latencies}, {url: failures}) on ``out``.

    Time is cut into slices shared by every client (wall clock): slices go to the servers in the
    order A B B A A B B A..., so a machine whose load changes meanwhile weighs on both alike.
    """
    import httpx

    latencies: dict[str, list[float]] = {u: [] for u in urls}
    failures = dict.fromkeys(urls, 0)
    clients = {u: httpx.Client(base_url=u, timeout=10) for u in urls}
    for http in clients.values():
        http.get("/health")  # connected before the clock starts
    out.put("ready")
    go.wait()
    start_at = start_at.value
    while time.time() < start_at:
        time.sleep(0.001)
    for i in range(2 * slices):
        url = urls[0] if i % 4 in (0, 3) else urls[1]
        end = start_at + (i + 1) * slice_seconds
        http = clients[url]
        while time.time() < end:
            start = time.perf_counter()
            try:
                ok = http.post("/predict", json={"records": [RECORD]}).status_code == 200
            except httpx.HTTPError:
                ok = False
            if ok:
                latencies[url].append(time.perf_counter() - start)
            else:
                failures[url] += 1
    for http in clients.values():
        http.close()
    out.put((latencies, failures))


def load(urls: tuple[str, str], clients: int, seconds: float, slice_seconds: float) -> dict[str, dict[str, float]]:
    """``clients`` processes, ``seconds`` per server in slices: p50, p99 (ms), requests/s and failures per url."""
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    slices = max(1, round(seconds / slice_seconds))
    go, start_at = ctx.Event(), ctx.Value("d", 0.0)
    procs = [ctx.Process(target=client, args=(urls, go, start_at, slice_seconds, slices, out))
             for _ in range(clients)]
    for p in procs:
        p.start()
    for _ in procs:
        assert out.get() == "ready"
    start_at.value = time.time() + 0.05  # every client process is up and connected
    go.set()
    results = [out.get() for _ in procs]
    for p in procs:
        p.join()
    report = {}
    for url in urls:
        latencies = sorted(x for lat, _ in results for x in lat[url])
        cuts = statistics.quantiles(latencies, n=100)
        report[url] = {"p50": cuts[49] * 1e3, "p99": cuts[98] * 1e3, "rps": len(latencies) / (slices * slice_seconds),
                       "n": len(latencies), "failed": sum(f[url] for _, f in results)}
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=4, help="concurrent client processes (default 4)")
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds of load per server (default 10)")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of warm-up load per server (default 2)")
    parser.add_argument("--slice", type=float, default=0.5, help="seconds per turn of a server (default 0.5)")
    args = parser.parse_args()

    import pandas as pd
    import sklearn
    from sklearn.linear_model import LogisticRegression

    import flowkit as fk
    from flowkit.store import Store

    print(f"flowkit {fk.__version__}, scikit-learn {sklearn.__version__}, Python {platform.python_version()} on "
          f"{platform.machine()} ({os.cpu_count()} CPUs); {args.clients} clients x {args.seconds:g} s per server, "
          f"single-record POST /predict\n")
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        store = Store.open(home)
        n = 500
        x = pd.DataFrame({"age": [20 + i % 50 for i in range(n)], "income": [1000.0 + 7.5 * (i % 97) for i in range(n)],
                          "tenure": [i % 11 for i in range(n)], "visits": [float(i % 13) for i in range(n)]})
        y = (x["age"] + 2 * x["tenure"] > 50).astype(int)
        model = LogisticRegression(max_iter=1000).fit(x, y)
        fk.registry.register("churn", model, input_example=x.head(), aliases=["production"], store=store)
        pickled = Path(tmp) / "model.pkl"
        pickled.write_bytes(pickle.dumps(model))
        env = {**os.environ, "FLOWKIT_HOME": str(home), "PYTHONPATH": os.pathsep.join(
            p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}

        ports = {"bare": free_port(), "flowkit": free_port()}
        commands = {"bare": [sys.executable, "-c", BARE, str(pickled), str(ports["bare"])],
                    "flowkit": [sys.executable, "-m", "flowkit", "serve", "churn@production", "--port",
                                str(ports["flowkit"]), "--log-level", "warning"]}
        urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
        procs = {name: subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL) for name, cmd in commands.items()}
        try:
            for name, proc in procs.items():
                wait_healthy(urls[name], proc)
            pair = (urls["bare"], urls["flowkit"])
            load(pair, args.clients, args.warmup, args.slice)
            measured = load(pair, args.clients, args.seconds, args.slice)
        finally:
            for proc in procs.values():
                proc.send_signal(signal.SIGTERM)
            for proc in procs.values():
                proc.wait(60)
        results = {name: measured[url] for name, url in urls.items()}
        logged = len(fk.registry.predictions("churn", store=store))
        answered = int(results["flowkit"]["n"])  # the warm-up's answers are logged too

        header = f"{'server':<9} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>8} {'requests':>9} {'failed':>7}"
        print(header)
        print("-" * len(header))
        for name, r in results.items():
            print(f"{name:<9} {r['p50']:>8.2f} {r['p99']:>8.2f} {r['rps']:>8.0f} {r['n']:>9.0f} {r['failed']:>7.0f}")
        ratio = results["flowkit"]["p50"] / results["bare"]["p50"]
        print(f"\nflowkit / bare: p50 {ratio:.2f}x, p99 {results['flowkit']['p99'] / results['bare']['p99']:.2f}x, "
              f"req/s {results['flowkit']['rps'] / results['bare']['rps']:.2f}x")
        print(f"prediction log after SIGTERM: {logged} rows for {answered} measured answers plus the warm-up's")
        print("\ntargets")
        print(f"  flowkit p50 <= {RATIO_TARGET:g}x bare p50: ratio {ratio:.2f} ({verdict(ratio <= RATIO_TARGET)})")
        print(f"  no failed request: {results['flowkit']['failed']:.0f} failed "
              f"({verdict(results['flowkit']['failed'] == 0)})")
        print(f"  every answer logged: {logged} >= {answered} ({verdict(logged >= answered)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
