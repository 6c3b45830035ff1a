"""``flowkit ui``: the pages and the JSON API over a real store, a real server process, a real browser.

In-process tests drive the Starlette app with its TestClient against a store with
real runs (completed, failed with markup in its error, cached, a map of 200 items, a
model whose alias moved); one test starts ``python -m flowkit ui`` and stops it with
SIGTERM; one renders the pages in headless Chromium when it is installed.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

pytest.importorskip("jinja2")
pytest.importorskip("starlette")
from starlette.testclient import TestClient  # noqa: E402

import flowkit as fk  # noqa: E402
from flowkit.store import Store  # noqa: E402
from flowkit.ui.app import PAGE_SIZE, create_app  # noqa: E402

ROOT = Path(fk.__file__).parent.parent
XSS = "<script>alert(1)</script>"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"


@fk.task(checks=[fk.checks.metric("rows", ">=", 1)])
def make_table(n: int) -> pd.DataFrame:
    fk.log_metric("rows", float(n))
    return pd.DataFrame({"x": range(n), "label": [f"row {i}" for i in range(n)]})


@fk.task
def width(df: pd.DataFrame) -> int:
    return len(df.columns)


@fk.flow
def tables(n: int = 30) -> int:
    return width(make_table(n))


@fk.task
def shout(note: str) -> str:
    print(f"log line {note}")
    raise ValueError(f"bad note {note}")


@fk.flow
def failing(note: str = XSS) -> str:
    return shout(note)


@fk.task
def items(n: int) -> list[int]:
    return list(range(n))


@fk.task
def square(x: int) -> int:
    return x * x


@fk.task
def total(xs: list[int]) -> int:
    return sum(xs)


@fk.flow
def fanout(n: int = 200) -> int:
    return total(square.map(items(n)))


class Model:
    def predict(self, frame):
        return [0] * len(frame)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A store with a completed run, its cached rerun, a failed run, a map of 200, and a model moved twice."""
    home = tmp_path_factory.mktemp("ui") / "home"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FLOWKIT_HOME", str(home))
        store = Store.open(home)
        done = tables.run()
        cached = tables.run()
        failed = failing.run()
        mapped = fanout.run()
        fk.registry.register("churn", Model(), metrics={"auc": 0.81}, store=store)
        fk.registry.register("churn", Model(), metrics={"auc": 0.86}, store=store)
        fk.registry.promote("churn", 1, to="production", reason="first", store=store)
        fk.registry.promote("churn", 2, to="production", reason="better auc", store=store)
    assert (done.status, cached.status, failed.status, mapped.status) == ("completed", "completed", "failed",
                                                                          "completed")
    return {"store": store, "done": done, "cached": cached, "failed": failed, "mapped": mapped}


@pytest.fixture(scope="module")
def client(world):
    with TestClient(create_app(world["store"])) as c:
        yield c


def text_of(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


# --- the pages -------------------------------------------------------------------------------------

def test_runs_page_lists_runs_newest_first_with_counts_duration_and_cached_share(client, world):
    r = client.get("/")
    assert r.status_code == 200
    html = r.text
    ids = re.findall(r'href="/runs/([0-9a-f]+)"', html)
    newest_first = [world[k].id for k in ("mapped", "failed", "cached", "done")]
    assert ids == newest_first
    assert "3 completed" in text_of(html) and "1 failed" in text_of(html)
    cached_row = html[html.index(world["cached"].id):].split("</tr>")[0]
    assert "100%" in cached_row  # every task of the rerun came from the cache
    done_row = html[html.index(world["done"].id):].split("</tr>")[0]
    assert "0%" in done_row and re.search(r"\d+(\.\d+)? (ms|s)", done_row)


def test_runs_page_filters_by_flow_status_and_trigger(client, world):
    html = client.get("/", params={"flow": "tables"}).text
    assert set(re.findall(r'href="/runs/([0-9a-f]+)"', html)) == {world["done"].id, world["cached"].id}
    html = client.get("/", params={"status": "failed"}).text
    assert re.findall(r'href="/runs/([0-9a-f]+)"', html) == [world["failed"].id]
    trigger = world["done"].trigger
    assert len(re.findall(r'href="/runs/', client.get("/", params={"trigger": trigger}).text)) == 4
    assert "No runs match" in client.get("/", params={"trigger": "nothing-like-it"}).text


def test_runs_page_filters_by_start_date(client, world):
    today = dt.date.fromtimestamp(world["done"].started)
    runs_today = re.findall(r'href="/runs/([0-9a-f]+)"', client.get("/", params={"since": today.isoformat(),
                                                                                "until": today.isoformat()}).text)
    assert world["done"].id in runs_today
    later = (today + dt.timedelta(days=1)).isoformat()
    assert "No runs match" in client.get("/", params={"since": later}).text
    earlier = (today - dt.timedelta(days=1)).isoformat()
    assert "No runs match" in client.get("/", params={"until": earlier}).text
    assert f'value="{later}"' in client.get("/", params={"since": later}).text  # the form keeps the filter


def test_run_page_shows_params_timings_tasks_metrics_checks_and_the_graph(client, world):
    run = world["done"]
    r = client.get(f"/runs/{run.id}")
    assert r.status_code == 200
    html, text = r.text, text_of(r.text)
    assert "tables" in text and "completed" in text and run.trigger in text
    assert '<th>n</th><td><code>30</code>' in html  # the parameter
    assert 'http-equiv="refresh"' not in html  # only while running
    assert '<svg' in html and 'data-node="make_table"' in html and 'data-node="width"' in html
    assert html.count('class="edge"') == 1  # make_table -> width
    tr = run.task_run("make_table")
    assert tr.cache_key[:12] in html and f'href="/artifacts/{tr.artifact_id}"' in html
    assert "rows" in text and "30.0" in text  # the metric
    assert "metric" in text and "passed" in text  # the check result


def test_failed_run_escapes_the_error_the_log_and_the_params(client, world):
    html = client.get(f"/runs/{world['failed'].id}").text
    assert XSS not in html
    assert f"bad note {ESCAPED}" in html  # the error
    assert f"log line {ESCAPED}" in html  # the task's output
    assert 'class="node status-failed"' in html
    api = client.get(f"/api/runs/{world['failed'].id}").json()
    assert api["tasks"][0]["error"].endswith(f"bad note {XSS}")  # JSON carries the text as it is


def test_a_map_of_200_items_is_one_node_with_counts(client, world):
    html = client.get(f"/runs/{world['mapped'].id}").text
    assert 'data-node="square[*]"' in html and "square[0..199]" in html and "200 completed" in html
    assert 'data-node="square[7]"' not in html
    assert html.count('class="edge"') == 2  # items -> square[*] -> total
    assert html.count('<tr id="task-square[') == 200  # every item still has its row


def test_cached_run_links_each_task_to_the_run_that_computed_it(client, world):
    html = client.get(f"/runs/{world['cached'].id}").text
    assert 'class="node status-cached"' in html
    assert f'href="/runs/{world["done"].id}"' in html
    assert html.count('class="edge"') == 1  # the edges of the task runs that computed the values


def test_a_running_run_refreshes_itself(world, tmp_path):
    store = Store.open(tmp_path / "running")
    store.db.start_run({"id": "r" * 32, "flow": "slow", "status": "running", "started": time.time(),
                        "params": "{}", "host": socket.gethostname(), "owner_pid": os.getpid()})
    with TestClient(create_app(store)) as c:
        html = c.get("/runs/" + "r" * 32).text
    assert '<meta http-equiv="refresh" content="3">' in html


def test_models_pages_show_versions_aliases_history_and_the_training_run(client):
    html = client.get("/models").text
    assert 'href="/models/churn"' in html and "production &rarr; 2" in html
    html = client.get("/models/churn").text
    text = text_of(html)
    assert "auc=0.86" in text and "auc=0.81" in text
    assert "better auc" in text and "first" in text and "promote" in text
    assert text.index("better auc") < text.index("first")  # newest move first
    assert "outside any run" in text  # registered from outside a run: no run to link to


def test_a_version_registered_in_a_task_links_to_its_run(home):
    @fk.task
    def train() -> str:
        return fk.registry.register("inside", Model()).run_id

    @fk.flow
    def training() -> str:
        return train()

    run = training.run()
    store = Store.open(home)
    with TestClient(create_app(store)) as c:
        html = c.get("/models/inside").text
    assert f'href="/runs/{run.id}"' in html


def test_artifact_page_shows_schema_preview_and_lineage(client, world):
    tr = world["done"].task_run("make_table")
    r = client.get(f"/artifacts/{tr.artifact_id[:10]}")  # a prefix is enough
    assert r.status_code == 200
    html, text = r.text, text_of(r.text)
    assert "pandas.DataFrame" in text and re.search(r"<th>rows</th><td>30</td>", html)
    assert re.search(r"<td>x</td><td><code>int64</code>", html) and "label" in text
    assert html.count("<tr><td>") >= 20 and "row 19" in text and "row 20" not in text  # the first 20 rows
    assert f'href="/runs/{world["done"].id}#task-make_table"' in html  # lineage upstream
    assert "param n = 30" in text


def test_unknown_run_model_and_artifact_are_404_pages(client):
    for url in ("/runs/doesnotexist", "/models/nobody", "/artifacts/abcdef0123", "/artifacts/" + XSS,
                "/runs/" + XSS):
        r = client.get(url)
        assert r.status_code == 404, url
        assert "not found" in r.text and XSS not in r.text
    r = client.get("/api/runs/doesnotexist")
    assert r.status_code == 404 and r.json()["error"] == 404


# --- paging ----------------------------------------------------------------------------------------

def test_runs_page_through_120_runs_fifty_at_a_time(tmp_path):
    store = Store.open(tmp_path / "many")
    for i in range(120):
        store.db.start_run({"id": f"{i:032x}", "flow": "even" if i % 2 == 0 else "odd", "status": "completed",
                            "started": 1_000_000.0 + i, "ended": 1_000_001.0 + i, "params": "{}", "trigger": "cli"})
    with TestClient(create_app(store)) as c:
        pages = [re.findall(r'href="/runs/([0-9a-f]+)"', c.get("/", params={"page": p}).text) for p in (1, 2, 3)]
        assert [len(p) for p in pages] == [PAGE_SIZE, PAGE_SIZE, 20]
        assert sum(pages, []) == [f"{i:032x}" for i in range(119, -1, -1)]
        html = c.get("/", params={"page": 2}).text
        assert "page 2 of 3" in html and 'href="/?page=1"' in html and 'href="/?page=3"' in html
        assert "120 runs" in text_of(c.get("/").text)
        odd = c.get("/", params={"flow": "odd", "page": 2}).text
        assert "page 2 of 2" in odd and 'href="/?flow=odd&amp;page=1"' in odd
        assert len(re.findall(r'href="/runs/', odd)) == 10
        api = c.get("/api/runs", params={"page": 3}).json()
        assert (api["total"], api["page"], api["pages"], len(api["runs"])) == (120, 3, 3, 20)
        assert c.get("/", params={"page": "junk"}).status_code == 200
        assert len(re.findall(r'href="/runs/', c.get("/", params={"page": 99}).text)) == 20  # the last page


def test_a_page_of_runs_is_one_indexed_query_for_10000_runs(tmp_path):
    store = Store.open(tmp_path / "big")
    rows = [(f"{i:032x}", "f", "completed" if i % 7 else "failed", "{}", 1_000_000.0 + i, 1_000_002.0 + i, "cli")
            for i in range(10_000)]
    store.db.write(lambda c: c.executemany(
        "INSERT INTO runs (id, flow, status, params, started, ended, trigger) VALUES (?, ?, ?, ?, ?, ?, ?)", rows))
    with TestClient(create_app(store)) as c:
        c.get("/")
        started = time.perf_counter()
        r = c.get("/", params={"status": "failed", "page": 20})
        took = time.perf_counter() - started
    assert r.status_code == 200 and "page 20 of 29" in r.text
    assert took < 1.0, f"a page of 10,000 runs took {took:.2f}s"


# --- the JSON API ----------------------------------------------------------------------------------

def test_json_api_has_runs_a_run_and_models(client, world):
    runs = client.get("/api/runs").json()
    assert runs["total"] == 4 and runs["counts"] == {"completed": 3, "failed": 1}
    assert runs["runs"][0]["id"] == world["mapped"].id and runs["runs"][0]["tasks"] == 202
    one = client.get(f"/api/runs/{world['done'].id}").json()
    assert one["params"] == {"n": 30} and one["status"] == "completed"
    assert {t["node"] for t in one["tasks"]} == {"make_table", "width"}
    assert one["edges"] == [["make_table", "width"]]
    (metric,) = [t for t in one["tasks"] if t["node"] == "make_table"][0]["metrics"]
    assert (metric["name"], metric["value"]) == ("rows", 30.0)
    models = client.get("/api/models").json()["models"]
    assert models[0]["name"] == "churn" and models[0]["aliases"] == {"production": 2}
    assert [v["version"] for v in models[0]["versions_detail"]] == [2, 1]


# --- the token -------------------------------------------------------------------------------------

def test_a_token_is_needed_on_every_request(world):
    with TestClient(create_app(world["store"], token="s3cret")) as c:
        assert c.get("/").status_code == 401
        assert c.get("/api/runs").status_code == 401
        assert c.get("/static/style.css").status_code == 401
        assert c.get("/", params={"token": "wrong"}).status_code == 401
        assert c.get("/api/runs", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        r = c.get("/", params={"token": "s3cret"})
        assert r.status_code == 200 and "flowkit_ui_token" in r.headers["set-cookie"]
        assert c.get(f"/runs/{world['done'].id}").status_code == 200  # the cookie from now on


def test_a_public_host_without_a_token_is_refused():
    from flowkit.ml.serve import ServeError
    from flowkit.ui.app import serve

    with pytest.raises(ServeError, match="without a token"):
        serve(host="0.0.0.0", port=0)


def test_import_flowkit_does_not_import_the_ui_libraries():
    code = "import sys, flowkit, flowkit.ui; print([m for m in ('starlette', 'jinja2', 'uvicorn') if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.stdout.strip() == "[]"


# --- a real server -----------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(world):
    """``python -m flowkit ui --port P --home <the world's store>`` in its own process, until SIGTERM."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen([sys.executable, "-m", "flowkit", "ui", "--port", str(port), "--home",
                             str(world["store"].home)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(url + "/api/runs", timeout=2).read()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"flowkit ui did not answer: {proc.communicate()[0]}")
            time.sleep(0.1)
    yield proc, url
    if proc.poll() is None:
        proc.kill()
        proc.wait(10)


def test_the_port_in_use_is_said(server):
    _, url = server
    port = url.rsplit(":", 1)[1]
    out = subprocess.run([sys.executable, "-m", "flowkit", "ui", "--port", port], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=60)
    assert out.returncode == 2 and "already in use" in out.stderr and "flowkit ui" in out.stderr


def test_flowkit_ui_serves_over_http_and_stops_on_sigterm(server, world):
    proc, url = server
    html = urllib.request.urlopen(url + "/", timeout=10).read().decode()
    assert world["done"].id in html and 'id="runs"' in html
    api = json.loads(urllib.request.urlopen(url + "/api/runs", timeout=10).read())
    assert api["total"] == 4
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(url + "/runs/nothing", timeout=10)
    assert info.value.code == 404
    proc.send_signal(signal.SIGTERM)  # uvicorn shuts down gracefully, then exits by the signal it got
    out, _ = proc.communicate(timeout=20)
    assert proc.returncode in (0, -signal.SIGTERM), out
    assert "flowkit ui: http://127.0.0.1:" in out and "Finished server process" in out


# --- a real browser ----------------------------------------------------------------------------------

@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is not installed (apt-get install chromium)")
def test_headless_chromium_renders_the_runs_table_and_the_graph(world, tmp_path):
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "flowkit", "ui", "--port", str(port), "--home",
                             str(world["store"].home)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(url + "/api/runs", timeout=2)
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "flowkit ui did not start"
                time.sleep(0.1)

        def dom(path: str) -> str:
            out = subprocess.run([shutil.which("chromium"), "--headless", "--no-sandbox", "--disable-gpu",
                                  "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom",
                                  url + path], capture_output=True, text=True, timeout=90)
            assert out.returncode == 0, out.stderr[-2000:]
            return out.stdout

        runs = dom("/")
        assert '<table class="runs" id="runs">' in runs and world["done"].id in runs
        page = dom(f"/runs/{world['mapped'].id}")
        assert "<svg" in page and 'data-node="square[*]"' in page
        failed = dom(f"/runs/{world['failed'].id}")
        assert XSS not in failed and ESCAPED in failed  # the browser saw text, not a script
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)


# --- compare, timeline, lineage downstream -----------------------------------------------------------

_FLAKY: dict[str, int] = {}


@fk.task
def curve(lr: float, steps: int) -> float:
    loss = 1.0
    for step in range(steps):
        loss *= 1 - lr
        fk.log_metric("loss", loss, step=step)
    fk.log_metric("final", loss)
    return loss


@fk.task(retries=2)
def flaky(x: float) -> float:
    _FLAKY[str(x)] = _FLAKY.get(str(x), 0) + 1
    if _FLAKY[str(x)] == 1:
        time.sleep(0.02)
        raise RuntimeError("first attempt fails")
    time.sleep(0.02)
    return x * 2


@fk.flow
def learning(lr: float = 0.1, steps: int = 5) -> float:
    return flaky(curve(lr, steps))


@pytest.fixture(scope="module")
def learned(tmp_path_factory):
    """Two runs of a flow whose first task logs ``loss`` over steps and whose second is retried once."""
    home = tmp_path_factory.mktemp("ui-learn") / "home"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FLOWKIT_HOME", str(home))
        store = Store.open(home)
        a = learning.run(lr=0.1, steps=5)
        b = learning.run(lr=0.3, steps=8)
    assert a.status == b.status == "completed"
    with TestClient(create_app(store)) as c:
        yield {"store": store, "a": a, "b": b, "client": c}


def test_runs_page_has_checkboxes_and_a_compare_button(learned):
    html = learned["client"].get("/").text
    assert '<form method="get" action="/compare"' in html
    for run in (learned["a"], learned["b"]):
        assert f'<input type="checkbox" name="run" value="{run.id}"' in html
    assert "Compare the checked runs" in html


def test_compare_page_shows_params_last_metrics_and_a_plot_per_run(learned):
    a, b = learned["a"], learned["b"]
    r = learned["client"].get("/compare", params=[("run", a.id), ("run", b.id[:10]), ("metric", "loss")])
    assert r.status_code == 200
    html, text = r.text, text_of(r.text)
    assert f'href="/runs/{a.id}"' in html and f'href="/runs/{b.id}"' in html
    row = html[html.index("<th>lr</th>"):].split("</tr>")[0]
    assert "0.1" in row and "0.3" in row
    assert '<tr class="differs"><th>lr</th>' in html
    loss_last_a, loss_last_b = 0.9 ** 5, 0.7 ** 8
    assert f"{loss_last_a:.6g}"[:6] in text and f"{loss_last_b:.6g}"[:6] in text
    assert html.count("<polyline") == 2 and html.count('class="legend-item"') == 2
    assert f'data-run="{a.id[:12]}"' in html and f'data-run="{b.id[:12]}"' in html
    series = re.findall(r'<polyline points="([^"]+)"', html)
    assert [len(s.split()) for s in series] == [5, 8]  # one point per step
    assert re.search(r'class="axis"[^>]*>0</text>', html) and re.search(r'class="axis"[^>]*>7</text>', html)
    assert '<option selected>loss</option>' in html and "<option>final</option>" in html


def test_compare_picks_a_metric_and_the_json_api(learned):
    a, b = learned["a"], learned["b"]
    c = learned["client"]
    html = c.get("/compare", params=[("run", a.id), ("run", b.id), ("metric", "final")]).text
    assert html.count("<polyline") == 0 and html.count("<circle") == 2  # one value each: a point, no line
    api = c.get("/api/compare", params=[("run", a.id), ("run", b.id)]).json()
    assert [r["id"] for r in api["runs"]] == [a.id, b.id]
    lr = [p for p in api["params"] if p["name"] == "lr"][0]
    assert lr["values"] == [0.1, 0.3] and lr["differs"]
    final = [m for m in api["metrics"] if m["name"] == "final"][0]
    assert final["values"] == pytest.approx([0.9 ** 5, 0.7 ** 8])
    assert api["metric"] == "final" and {s["run"] for s in api["series"]} == {a.id, b.id}
    assert c.get("/compare").status_code == 400
    r = c.get("/compare", params={"run": XSS})
    assert r.status_code == 404 and XSS not in r.text
    assert c.get("/api/compare", params={"run": "nope"}).json()["error"] == 404


def test_run_page_timeline_draws_each_attempt_of_a_retried_task(learned):
    run = learned["a"]
    assert run.task_run("flaky").attempts == 2
    html = learned["client"].get(f"/runs/{run.id}").text
    assert '<svg xmlns="http://www.w3.org/2000/svg" class="timeline"' in html
    flaky_row = html[html.index('<g class="task" data-task="flaky"'):].split("</g>")[0]
    assert flaky_row.count('<rect class="bar') == 2
    assert 'class="bar status-failed"' in flaky_row and 'class="bar status-completed"' in flaky_row
    curve_row = html[html.index('<g class="task" data-task="curve"'):].split("</g>")[0]
    assert curve_row.count('<rect class="bar') == 1
    assert re.search(r'class="axis"[^>]*>\+0 ms</text>', html)  # time axis labels


def test_timeline_leaves_out_cached_task_runs_and_says_so(world, client):
    html = client.get(f"/runs/{world['cached'].id}").text
    assert "no task run has timings" in html and "2 task runs without timings" in text_of(html)


def test_artifact_page_shows_lineage_downstream(learned):
    run = learned["a"]
    curve_tr, flaky_tr = run.task_run("curve"), run.task_run("flaky")
    html = learned["client"].get(f"/artifacts/{curve_tr.artifact_id}").text
    down = html[html.index('id="downstream"'):].split("</ul>")[0]
    assert f'href="/runs/{run.id}#task-flaky"' in down and "task flaky of learning" in down
    assert f'href="/artifacts/{flaky_tr.artifact_id}"' in down and "status-completed" in down
    html = learned["client"].get(f"/artifacts/{flaky_tr.artifact_id}").text
    assert "No recorded task run consumed it." in html
    assert f'href="/runs/{run.id}#task-curve"' in html  # and upstream still


# --- a real browser: screenshots and following links ---------------------------------------------------

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None)


def _ui_process(home: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "flowkit", "ui", "--port", str(port), "--home", str(home)],
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(url + "/api/runs", timeout=2)
            return proc, url
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail("flowkit ui did not start")
            time.sleep(0.1)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium), so no "
                                             "screenshots or link walking in a real browser")
def test_headless_chromium_screenshots_the_pages_and_follows_the_links(learned, tmp_path):
    store, a, b = learned["store"], learned["a"], learned["b"]
    if not fk.registry.models(store=store):
        fk.registry.register("learner", a.task_run("curve").artifact_id, metrics={"loss": 0.59}, store=store)
        fk.registry.promote("learner", 1, to="production", store=store)
    proc, url = _ui_process(store.home)
    base = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--hide-scrollbars",
            f"--user-data-dir={tmp_path / 'profile'}"]

    def dom(path: str) -> str:
        out = subprocess.run([*base, "--dump-dom", url + path], capture_output=True, text=True, timeout=90)
        assert out.returncode == 0, out.stderr[-2000:]
        return out.stdout

    def shot(name: str, path: str) -> Path:
        png = tmp_path / f"{name}.png"
        out = subprocess.run([*base, f"--screenshot={png}", "--window-size=1400,1000", url + path],
                             capture_output=True, text=True, timeout=90)
        assert out.returncode == 0, out.stderr[-2000:]
        assert png.exists() and png.stat().st_size > 10_000, name
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        return png

    try:
        curve = a.task_run("curve")
        compare = f"/compare?run={a.id}&run={b.id}&metric=loss"
        for name, path in (("runs", "/"), ("run", f"/runs/{a.id}"), ("artifact", f"/artifacts/{curve.artifact_id}"),
                           ("models", "/models"), ("compare", compare)):
            shot(name, path)
        # follow the links: runs -> a run -> its first task's value -> downstream -> the model
        runs = dom("/")
        assert f'href="/runs/{a.id}"' in runs and 'action="/compare"' in runs
        run_page = dom(f"/runs/{a.id}")
        assert 'class="timeline"' in run_page and 'data-node="curve"' in run_page
        first_row = run_page[run_page.index('<tr id="task-curve">'):].split("</tr>")[0]
        assert "status-completed" in first_row
        artifact_link = re.search(r'href="(/artifacts/[0-9a-f]+)"', first_row).group(1)
        artifact = dom(artifact_link)
        assert f"<code>{curve.artifact_id}</code>" in artifact
        assert f'href="/runs/{a.id}#task-curve"' in artifact  # upstream: who made it
        downstream = artifact[artifact.index('id="downstream"'):].split("</ul>")[0]
        assert f'href="/runs/{a.id}#task-flaky"' in downstream and "status-completed" in downstream
        model_link = re.search(r'id="registered">.*?href="(/models/[^"]+)"', artifact, re.S).group(1)
        model = dom(model_link)
        assert "Model learner" in model and "production" in model and f'href="/runs/{a.id}"' in model
        compared = dom(compare)
        assert compared.count("<polyline") == 2 and 'class="differs"' in compared
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)


CHROMEDRIVER = shutil.which("chromedriver")


@pytest.mark.skipif(CHROMIUM is None or CHROMEDRIVER is None,
                    reason="chromium and chromedriver are not installed (apt-get install chromium chromium-driver), "
                           "so no clicking through the pages in a real browser")
def test_clicking_from_the_runs_page_to_a_run_its_artifact_and_the_model_in_chromium(learned, tmp_path):
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
    from selenium.webdriver.common.by import By

    store, a = learned["store"], learned["a"]
    if not fk.registry.models(store=store):
        fk.registry.register("learner", a.task_run("curve").artifact_id, metrics={"loss": 0.59}, store=store)
        fk.registry.promote("learner", 1, to="production", store=store)
    proc, url = _ui_process(store.home)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--window-size=1400,1000",
                f"--user-data-dir={tmp_path / 'driver-profile'}"):
        options.add_argument(arg)
    browser = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
    try:
        browser.get(url + "/")
        browser.find_element(By.CSS_SELECTOR, f'a[href="/runs/{a.id}"]').click()
        assert browser.current_url.endswith(f"/runs/{a.id}")
        row = browser.find_element(By.ID, "task-curve")
        assert "completed" in row.text
        row.find_element(By.CSS_SELECTOR, 'a[href^="/artifacts/"]').click()
        assert "/artifacts/" in browser.current_url
        assert a.task_run("curve").artifact_id in browser.page_source
        browser.find_element(By.CSS_SELECTOR, '#registered a[href^="/models/"]').click()
        assert "Model learner" in browser.find_element(By.TAG_NAME, "h1").text
        assert "production" in browser.page_source
        browser.save_screenshot(str(tmp_path / "model.png"))
        assert (tmp_path / "model.png").stat().st_size > 10_000
    finally:
        browser.quit()
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
