"""Early cutoff, and values nobody needs: what a rerun computes, and what it does not."""

from __future__ import annotations

import threading
from collections import Counter

import pytest

import flowkit as fk

RAN: Counter[str] = Counter()


@pytest.fixture(autouse=True)
def _reset_ran():
    RAN.clear()


@fk.task
def load(rows: int) -> list[float]:
    RAN["load"] += 1
    return [float(i) for i in range(rows)]


@fk.task
def scale(x: float, factor: float) -> float:
    RAN[f"scale({x})"] += 1
    return x * factor


@fk.task
def total(xs: list[float]) -> float:
    RAN["total"] += 1
    return sum(xs)


@fk.flow
def pipeline(rows: int = 4, factor: float = 2.0) -> float:
    return total(scale.map(load(rows), factor=factor))


def statuses(run: fk.Run) -> dict[str, str]:
    return {tr.node: tr.status for tr in run.task_runs}


def test_a_run_time_list_that_grows_by_one_runs_only_the_new_item(executor):
    flow = pipeline.with_options(executor=executor)
    first = flow.run(rows=5)
    assert first.result() == 20.0
    RAN.clear()
    grown = flow.run(rows=6)
    assert grown.result() == 30.0
    assert RAN == Counter({"load": 1, "scale(5.0)": 1, "total": 1})
    got = statuses(grown)
    assert [got[f"scale[{k}]"] for k in range(6)] == ["cached"] * 5 + ["completed"]
    # an item found by its element's content leads back to the run that computed it
    assert grown.task_run("scale[2]").source == f"{first.id}/scale[2]"
    # and is filed under its new key: the same run again is all hits by key
    RAN.clear()
    again = flow.run(rows=6)
    assert RAN == Counter() and set(statuses(again).values()) == {"cached"}


def test_a_changed_keyword_still_reruns_every_item():
    pipeline.run(rows=3, factor=2.0)
    RAN.clear()
    assert pipeline(rows=3, factor=3.0) == 9.0
    assert RAN == Counter({"scale(0.0)": 1, "scale(1.0)": 1, "scale(2.0)": 1, "total": 1})


def _flow_with_source(fn):
    """Flow ``cutoff`` whose first task is ``fn``: the same flow, its upstream edited."""
    source = fk.task(name="source")(fn)

    @fk.task
    def mean(xs: list[float]) -> float:
        RAN["mean"] += 1
        return sum(xs) / len(xs)

    @fk.task
    def describe(m: float) -> str:
        RAN["describe"] += 1
        return f"mean {m}"

    @fk.flow(name="cutoff")
    def cutoff(n: int = 4) -> str:
        data = source(n)
        return describe(mean(data))

    return cutoff


def v1(n: int) -> list[float]:
    RAN["source"] += 1
    return [float(i) for i in range(n)]


def v2(n: int) -> list[float]:  # edited, and it gives the same list
    RAN["source"] += 1
    return list(map(float, range(n)))


def v3(n: int) -> list[float]:  # edited, and it gives another list
    RAN["source"] += 1
    return [float(i) * 2 for i in range(n)]


def test_an_upstream_edited_to_the_same_output_cuts_off_everything_below(executor):
    first = _flow_with_source(v1).with_options(executor=executor).run()
    assert first.result() == "mean 1.5"
    RAN.clear()
    edited = _flow_with_source(v2).with_options(executor=executor).run()
    assert edited.result() == "mean 1.5"
    assert RAN == Counter({"source": 1})
    assert statuses(edited) == {"source": "completed", "mean": "cached", "describe": "cached"}
    assert edited.task_run("mean").source == f"{first.id}/mean"
    RAN.clear()
    changed = _flow_with_source(v3).with_options(executor=executor).run()
    assert changed.result() == "mean 3.0"
    assert RAN == Counter({"source": 1, "mean": 1, "describe": 1})


def test_refresh_is_not_undone_by_early_cutoff():
    pipeline.run(rows=3)
    RAN.clear()
    pipeline.run(rows=3, refresh=["load"])
    assert RAN == Counter({"load": 1, "scale(0.0)": 1, "scale(1.0)": 1, "scale(2.0)": 1, "total": 1})


# --- values nobody needs ---------------------------------------------------------------------


@fk.task
def make_lock(n: int) -> threading.Lock:
    RAN["make_lock"] += 1
    return threading.Lock()


@fk.task
def use_lock(lock: threading.Lock, n: int) -> int:
    RAN["use_lock"] += 1
    with lock:
        return n * 10


@fk.task
def lonely_lock() -> threading.Lock:
    RAN["lonely_lock"] += 1
    return threading.Lock()


@fk.flow
def locked(n: int = 2) -> int:
    lonely_lock()  # nothing takes its value: it runs for its own sake, every time
    return use_lock(make_lock(n), n)


def test_a_result_that_cannot_be_stored_is_not_computed_when_nothing_needs_it(executor, caplog):
    flow = locked.with_options(executor=executor)
    assert flow(n=2) == 20
    assert RAN == Counter({"make_lock": 1, "use_lock": 1, "lonely_lock": 1})
    RAN.clear()
    again = flow.run(n=2)
    assert again.result() == 20
    assert RAN == Counter({"lonely_lock": 1})
    assert statuses(again) == {"lonely_lock": "completed", "make_lock": "unneeded", "use_lock": "cached"}
    # when its consumer must run, it runs too
    RAN.clear()
    assert flow(n=3) == 30
    assert RAN == Counter({"make_lock": 1, "use_lock": 1, "lonely_lock": 1})


def test_an_unneeded_task_runs_when_the_value_it_feeds_is_damaged(home):
    locked.run(n=2)
    store = fk.Store.open()
    digest = locked.run(n=2).artifact_id("use_lock")
    store.db.write(lambda c: c.execute("UPDATE artifacts SET data = ? WHERE id = ?", (b"garbage", digest)))
    RAN.clear()
    assert locked(n=2) == 20  # use_lock must be recomputed: make_lock runs for it
    assert RAN == Counter({"make_lock": 1, "use_lock": 1, "lonely_lock": 1})


# --- files as results --------------------------------------------------------------------------


@fk.task
def write_report(text: str, path: str) -> fk.File:
    RAN["write_report"] += 1
    with open(path, "w") as fh:
        fh.write(text)
    return fk.File(path)


@fk.flow
def reporting(text: str = "hello") -> fk.File:
    return write_report(text, "report.txt")


def test_a_task_returning_a_file_reruns_when_the_file_is_gone(tmp_path):
    out = reporting()
    assert out.path.read_text() == "hello"
    assert reporting.run().task_run("write_report").status == "cached"
    assert RAN["write_report"] == 1
    (tmp_path / "report.txt").unlink()
    again = reporting.run()
    assert again.task_run("write_report").status == "completed" and RAN["write_report"] == 2
    assert (tmp_path / "report.txt").read_text() == "hello"


# --- what early cutoff must never do (each once served a stale value) -------------------------


@fk.task
def bundle(n: int) -> dict:
    return {"items": [1, 2], "scale": n}


@fk.task
def mul(x: int, scale: int) -> int:
    return x * scale


@fk.flow
def scaled_items(n: int = 10) -> list[int]:
    d = bundle(n)
    return mul.map(d["items"], scale=d["scale"])  # the keyword comes from the iterable's own node


def test_a_map_keyword_taken_from_the_iterables_own_node_counts():
    assert scaled_items(n=10) == [10, 20]
    assert scaled_items(n=100) == [100, 200]


@fk.task
def export(n: int, path: str) -> fk.File:
    with open(path, "w") as fh:
        fh.write(str(n))
    return fk.File(path)


@fk.task
def read_back(f: fk.File) -> str:
    return f.path.read_text()


@fk.flow
def exported(n: int = 1) -> str:
    return read_back(export(n, "out.txt"))


def test_a_returned_file_is_compared_by_its_bytes_not_its_path():
    assert exported(n=1) == "1"
    assert exported(n=2) == "2"  # the same File("out.txt") value, other bytes in it


@fk.task
def parity(n: int) -> int:
    return n % 2


@fk.task
def export_parity(v: int) -> fk.File:
    RAN["export_parity"] += 1
    with open("parity.txt", "w") as fh:
        fh.write(str(v))
    return fk.File("parity.txt")


@fk.flow
def parity_file(n: int = 1) -> fk.File:
    return export_parity(parity(n))


def test_an_entry_found_by_content_whose_file_is_gone_is_recomputed(tmp_path):
    parity_file(n=1)
    (tmp_path / "parity.txt").unlink()
    run = parity_file.run(n=3)  # parity(3) == parity(1): found by content, but the file is gone
    assert run.task_run("export_parity").status == "completed" and (tmp_path / "parity.txt").exists()


@fk.task(cache=False)
def poll() -> str:
    return "same"


@fk.task
def notify(v: str) -> int:
    RAN["notify"] += 1
    return len(v)


@fk.flow
def polling() -> int:
    return notify(poll())


def test_what_is_downstream_of_a_cache_false_task_always_runs():
    for _ in range(3):
        polling()
    assert RAN["notify"] == 3


@fk.task
def label(p: int) -> str:
    return f"parity={p}"


@fk.flow
def labelled(n: int = 1) -> str:
    return label(parity(n))


def test_a_value_found_by_content_has_this_runs_lineage():
    first = labelled.run(n=1)
    second = labelled.run(n=3)
    tr = second.task_run("label")
    assert tr.status == "cached" and tr.source == f"{first.id}/label"
    g = fk.lineage(tr)
    assert f"{second.id}/parity" in g and f"{first.id}/parity" not in g
    assert g.nodes[tr.id]["computed_by"] == f"{first.id}/label"
    params = [d["repr"] for _, d in g.nodes(data=True) if d["kind"] == "param"]
    assert params == ["3"]


def test_a_display_hears_the_total_before_any_task_and_every_run_ends_with_run_finished():
    linear_run = []

    class Watch:
        def on_event(self, event):
            linear_run.append(type(event).__name__)

    fk.run_flow(labelled, {"n": 1})
    fk.run_flow(labelled, {"n": 1}, listeners=[Watch()])  # all cached: recorded while planning
    # the hit nobody needs comes in one event; the output, loaded, finishes on its own
    assert linear_run == ["RunStarted", "RunPlanned", "TasksCached", "TaskFinished", "RunFinished"]

    class Broken(fk.LocalExecutor):
        def session(self, clock):
            raise KeyboardInterrupt

    ended = []

    class Ends:
        def on_event(self, event):
            if isinstance(event, fk.events.RunFinished):
                ended.append(event.run.status)

    with pytest.raises(KeyboardInterrupt):
        fk.run_flow(labelled.with_options(executor=Broken()), {"n": 5}, listeners=[Ends()])
    assert ended == ["cancelled"] and fk.runs(limit=1)[0].status == "cancelled"


def test_an_object_of_your_own_class_is_not_compared_by_its_bytes(tmp_path):
    import subprocess
    import sys
    import textwrap

    (tmp_path / "models.py").write_text(textwrap.dedent("""
        class Scaler:
            def __init__(self, k):
                self.k = k
            def transform(self, x):
                return x * self.k
    """))
    (tmp_path / "flowdef.py").write_text(textwrap.dedent("""
        import flowkit as fk
        from models import Scaler

        @fk.task
        def make_model(k):
            return Scaler(k)

        @fk.task
        def apply(model, x):
            return model.transform(x)

        @fk.flow
        def pipe(k: int = 2, x: int = 5):
            return apply(make_model(k), x)

        if __name__ == "__main__":
            run = pipe.run()
            print(run.result(), run.task_run("apply").status)
    """))

    def run() -> str:
        return subprocess.run([sys.executable, "flowdef.py"], cwd=tmp_path, capture_output=True, text=True,
                              check=True).stdout.strip()

    assert run() == "10 completed"
    (tmp_path / "models.py").write_text((tmp_path / "models.py").read_text().replace("x * self.k", "x + self.k"))
    assert run() == "7 completed"  # make_model reran with equal bytes; the class's code changed
