"""The whole loop: train, gate, promote, serve, watch production drift, retrain, promote, serve the new model.

    python examples/mlops/loop.py

1. ``training`` (train.py) trains candidates, gates the best against production and
   promotes it: version 1 is in production.
2. ``flowkit serve tumor-classifier@production`` starts on 127.0.0.1 (a real uvicorn
   process) and answers requests; each one goes to the store's prediction log.
3. Traffic: first rows like the training data, then rows measured by a new instrument that
   reads sizes 30% high (the shift).
4. ``monitoring`` (scheduled every 15 minutes with ``fk.Cron``; here run once by hand) reads
   the prediction log since its last run, compares it with the training
   data of the production version (found through lineage) and, since the sizes drifted,
   triggers ``training`` on the data collected after the change (``fk.trigger``, recorded as
   ``trigger="drift"`` with the drift report as its reason).
5. The retrained model passes the gate and is promoted; the service picks it up without a
   restart and answers with version 2.

Everything lands in one store (``$FLOWKIT_HOME``, else ``./.flowkit``): afterwards try
``flowkit runs`` (the trigger chain), ``flowkit models history tumor-classifier`` and
``flowkit show RUN``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pandas as pd

import flowkit as fk

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train import MODEL, SIZE_COLUMNS, features, load, shifted, training  # noqa: E402

SHIFT = 1.3  # the new instrument reads sizes 30% high


@fk.task(cache=False)
def recent_inputs(since: float | None = None) -> pd.DataFrame:
    """What the service was asked since ``since``, by default since the monitoring flow last completed."""
    if since is None:
        last = fk.runs(flow="monitoring", status="completed", limit=1)
        since = last[0].started if last else None
    log = fk.registry.predictions(MODEL, since=since)
    fk.log_metric("requests", float(len(log)))
    return log.drop(columns=[c for c in ("prediction", "probabilities", "version", "time", "request_id")
                             if c in log.columns])


@fk.task(cache=False)
def retrain_if_drifted(report, shift: float) -> str | None:
    """Start the training flow on the newest data when production has drifted; the run's id, else None."""
    if not report.drifted:
        return None
    run = fk.trigger(training, trigger="drift", shift=shift,
                     reason={"drifted": report.drifted_columns, "share": round(report.share_drifted, 3)})
    return run.id


@fk.flow(schedule=fk.Cron("*/15 * * * *"))  # `flowkit scheduler examples/mlops/loop.py` runs it every 15 min
def monitoring(since: float | None = None, shift: float = SHIFT) -> str | None:
    """Compare recent production traffic with the production model's training data; retrain on drift.

    ``since`` defaults to the start of the last completed monitoring run, so each run looks at
    what came in after the previous one looked.
    """
    # Retrain when a tenth of the features have moved: a few measurements going off is enough here.
    report = fk.drift.check(f"{MODEL}@production", recent_inputs(since), name="tumor-traffic", drift_share=0.1)
    return retrain_if_drifted(report, shift)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _request(url: str, body: object | None = None) -> dict:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as response:
        return json.loads(response.read())


def _wait_ready(url: str, process: subprocess.Popen, deadline: float = 30.0) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if process.poll() is not None:
            raise RuntimeError(f"flowkit serve exited with code {process.returncode}")
        try:
            _request(url + "/health")
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"flowkit serve did not answer on {url} within {deadline:.0f}s")


def _traffic(url: str, table: pd.DataFrame) -> list[int]:
    """Send the rows one request of 10 records at a time; the versions that answered."""
    records = json.loads(table.drop(columns="target").to_json(orient="records"))
    return [_request(url + "/predict", {"records": records[i:i + 10]})["model"]["version"]
            for i in range(0, len(records), 10)]


def main() -> None:
    first = training.run()
    print(first.summary())
    if first.status != "completed":
        sys.exit(1)
    print(f"{MODEL}@production: version {fk.registry.get(f'{MODEL}@production').version}")

    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    server = subprocess.Popen([sys.executable, "-m", "flowkit", "serve", f"{MODEL}@production", "--port", str(port),
                               "--poll-interval", "0.5"], env=env)
    try:
        _wait_ready(url, server)
        data = features.fn(load.fn())
        started = time.time()
        before = _traffic(url, data.sample(100, random_state=1))
        after = _traffic(url, features.fn(shifted(load.fn(), SHIFT)).sample(200, random_state=2))
        print(f"served {len(before) + len(after)} requests, all by version(s) {sorted(set(before + after))}")

        time.sleep(0.5)  # the prediction log is written in batches, off the request path
        watch = monitoring.run(since=started)
        print(watch.summary())
        report = fk.drift.history("tumor-traffic").iloc[-1]
        print(f"drift: {report['drifted']} (share {report['share_drifted']:.2f}; {report['drifted_columns']})")
        retrain_id = watch.result()
        if retrain_id is None:
            print("no drift found: nothing retrained")
            return
        retrain = fk.Store.open().run(retrain_id)
        print(f"retraining run {retrain.id[:12]} ({retrain.trigger}, by {retrain.info['triggered_by'][:12]}): "
              f"{retrain.status}")
        production = fk.registry.get(f"{MODEL}@production")
        print(f"{MODEL}@production: version {production.version}")

        deadline = time.monotonic() + 15
        answered = None
        while time.monotonic() < deadline:  # the service polls the alias every 0.5 s
            answered = _traffic(url, data.head(10))[0]
            if answered == production.version:
                break
            time.sleep(0.2)
        print(f"the service now answers with version {answered}")
        if answered != production.version:
            sys.exit(1)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    print(f"prediction log: {len(fk.registry.predictions(MODEL))} records")


if __name__ == "__main__":
    main()
