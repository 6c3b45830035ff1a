"""The model registry (``fk.registry``): versions, aliases, history, gates, lineage, the CLI.

Real SQLite stores in temporary folders (the ``home`` fixture), real processes for
concurrent registration, a manual clock for ``as_of``.
"""

from __future__ import annotations

import datetime as dt
import json
import multiprocessing
import os
import threading
import warnings

import pytest
from click.testing import CliRunner

import flowkit as fk
from flowkit.cli import main
from flowkit.ml import registry


class Doubler:
    """A model: picklable by reference, predicts 2x (or k x)."""

    def __init__(self, k: int = 2) -> None:
        self.k = k

    def predict(self, x: float) -> float:
        return self.k * x


class FittedOnFrame(Doubler):
    """Looks like a scikit-learn estimator fitted on a DataFrame."""

    feature_names_in_ = ("age", "plan")


ATTEMPTS: list[int] = []


@fk.task
def prepare(rows: int) -> list[int]:
    return list(range(rows))


@fk.task
def train(data: list[int], k: int = 2) -> int:
    return fk.registry.register("churn", Doubler(k), metrics={"auc": 0.8}, params={"k": k}).version


@fk.task(retries=2)
def train_flaky(k: int) -> int:
    version = fk.registry.register("churn", Doubler(k)).version
    ATTEMPTS.append(version)
    if len(ATTEMPTS) < 3:
        raise ConnectionError("lost the connection after registering")
    return version


@fk.task
def produce(k: int) -> Doubler:
    return Doubler(k)


@fk.task(checks=[fk.checks.metric("auc", ">=", 0.9)])
def evaluate_and_register(k: int) -> dict:
    fk.registry.register("churn", Doubler(k), metrics={"auc": 0.5})
    return {"auc": 0.5}


@fk.flow
def training(rows: int = 3, k: int = 2) -> int:
    return train(prepare(rows), k=k)


@fk.flow
def flaky_training(k: int = 2) -> int:
    return train_flaky(k)


@fk.flow
def producing(k: int = 3) -> Doubler:
    return produce(k)


@fk.flow
def gated_training(k: int = 4) -> dict:
    return evaluate_and_register(k)


@pytest.fixture(autouse=True)
def _fresh():
    ATTEMPTS.clear()
    registry._MEMO.clear()
    yield
    registry._MEMO.clear()


# --- registering ---------------------------------------------------------------------------------

def test_a_model_registered_inside_a_task_is_linked_to_that_task_run():
    run = training.run(rows=3, k=5)
    mv = fk.registry.get("churn")
    train_run = run.task_run("train")
    assert (mv.name, mv.version, run.result()) == ("churn", 1, 1)
    assert mv.run_id == run.id and mv.task_run_id == train_run.id
    assert mv.metrics == {"auc": 0.8} and mv.params == {"k": 5}
    assert fk.Store.open().load(mv.artifact_id).k == 5  # recorded as an artifact like any other value
    assert mv.created_by and mv.library_versions["python"].count(".") == 2


def test_lineage_of_a_registered_model_reaches_its_data_code_and_params():
    run = training.run(rows=3, k=5)
    mv = fk.registry.get("churn:1")
    g = fk.lineage(mv.artifact_id)
    train_run = run.task_run("train")
    assert list(g.predecessors(mv.artifact_id)) == [train_run.id]
    assert g.nodes[train_run.id]["cache_key"] == train_run.cache_key  # the code and inputs behind it
    inputs = {g.nodes[n]["kind"]: n for n in g.predecessors(train_run.id)}
    assert g.nodes[inputs["param"]]["repr"] == "5"
    data = inputs["artifact"]
    assert [g.nodes[p]["task"] for p in g.predecessors(data)] == ["prepare"]


def test_versions_count_up_per_name():
    first = fk.registry.register("churn", Doubler(1))
    second = fk.registry.register("churn", Doubler(2))
    other = fk.registry.register("fraud", Doubler(3))
    assert [first.version, second.version, other.version] == [1, 2, 1]
    assert [v.version for v in fk.registry.versions("churn")] == [1, 2]
    assert [(m.name, m.versions, m.latest) for m in fk.registry.models()] == [("churn", 2, 2), ("fraud", 1, 1)]


def test_a_retried_task_gets_back_the_version_it_registered_before():
    run = flaky_training.run(k=2)
    assert run.status == "completed" and run.task_run("train_flaky").attempts == 3
    assert ATTEMPTS == [1, 1, 1]
    assert [v.version for v in fk.registry.versions("churn")] == [1]


def test_a_reexecuted_task_with_the_same_key_registers_no_duplicate():
    first = training.run(rows=3, k=2)
    again = fk.run_flow(training, {"rows": 3, "k": 2}, refresh=True)
    assert again.task_run("train").status == "completed"  # it ran again...
    assert first.result() == again.result() == 1  # ...and got its version back
    assert len(fk.registry.versions("churn")) == 1
    training.run(rows=3, k=3)  # another call, another key: a new version
    assert len(fk.registry.versions("churn")) == 2


def _register_many(home: str, n: int, queue: multiprocessing.Queue) -> None:
    store = fk.Store(home)
    queue.put([fk.registry.register("churn", {"model": i}, store=store).version for i in range(n)])


def test_concurrent_registrations_from_several_processes_get_distinct_versions(tmp_path):
    home = str(tmp_path / "shared")
    fk.Store(home)  # the schema exists before the processes race on versions
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_register_many, args=(home, 8, queue)) for _ in range(3)]
    for p in procs:
        p.start()
    got = [queue.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0
    every = sorted(v for vs in got for v in vs)
    assert every == list(range(1, 25))  # no duplicate, no gap
    assert all(vs == sorted(vs) for vs in got)
    assert [v.version for v in fk.registry.versions("churn", store=fk.Store(home))] == list(range(1, 25))


def test_registering_an_artifact_links_it_to_the_task_run_that_produced_it():
    run = producing.run(k=3)
    artifact_id = run.task_run("produce").artifact_id
    first = fk.registry.register("churn", artifact_id[:10])  # a unique prefix will do
    second = fk.registry.register("churn", artifact_id)
    assert (first.version, second.version) == (1, 2)  # from outside: always a new version
    assert first.artifact_id == artifact_id and first.task_run_id == run.task_run("produce").id
    assert first.run_id == run.id
    assert fk.registry.load("churn:1").k == 3


def test_an_unknown_artifact_id_is_a_clear_error():
    with pytest.raises(fk.RegistryError, match="no artifact 'deadbeef'.*model 'churn'|model 'churn'.*deadbeef"):
        fk.registry.register("churn", "deadbeef")
    assert fk.registry.models() == []


def test_a_model_that_cannot_be_serialized_is_refused_and_nothing_is_recorded():
    with pytest.raises(fk.RegistryError, match="model 'churn'.*cannot be serialized"):
        fk.registry.register("churn", threading.Lock(), aliases=["production"])
    store = fk.Store.open()
    assert fk.registry.models() == [] and store.db.artifacts() == []
    assert fk.registry.history("churn") == []


@pytest.mark.parametrize("name", ["a/b", "..", "x..y", "a\x00b", "", " churn", "churn@prod", "churn:3"])
def test_bad_model_names_are_refused(name):
    with pytest.raises(fk.RegistryError):
        fk.registry.register(name, Doubler())
    assert fk.registry.models() == []


@pytest.mark.parametrize("metrics", [{"auc": float("nan")}, {"auc": "high"}, {"auc": True}, {"": 1.0}, [1.0],
                                     {"auc": float("inf")}])
def test_metrics_must_be_finite_numbers(metrics):
    with pytest.raises(fk.RegistryError, match="metric"):
        fk.registry.register("churn", Doubler(), metrics=metrics)
    assert fk.registry.models() == []


def test_numpy_metrics_are_stored_as_numbers():
    np = pytest.importorskip("numpy")
    mv = fk.registry.register("churn", Doubler(), metrics={"auc": np.float64(0.9), "n": np.int64(3)})
    assert fk.registry.get("churn").metrics == {"auc": 0.9, "n": 3.0} == mv.metrics


# --- finding and loading -------------------------------------------------------------------------

def test_get_and_load_take_every_uri_form():
    fk.registry.register("churn", Doubler(1))
    fk.registry.register("churn", Doubler(2), aliases=["staging"])
    fk.registry.register("churn", Doubler(3))
    assert fk.registry.get("churn").version == 3
    assert fk.registry.get("churn:1").version == 1
    assert fk.registry.get("churn@staging").version == 2
    assert fk.registry.get("churn", alias="staging").version == 2
    assert fk.registry.get("churn", stage="staging").version == 2
    assert fk.registry.get("churn", version=1).version == 1
    assert fk.registry.get("churn@staging").aliases == ("staging",)
    assert fk.registry.load("churn@staging").k == 2 and fk.registry.load("churn:3").k == 3


def test_unknown_models_versions_and_aliases_raise_model_not_found():
    with pytest.raises(fk.ModelNotFoundError, match="no model named 'churn'.*none is registered"):
        fk.registry.get("churn")
    fk.registry.register("churn", Doubler())
    with pytest.raises(fk.ModelNotFoundError, match="no version 7; its versions are 1 to 1"):
        fk.registry.get("churn:7")
    with pytest.raises(fk.ModelNotFoundError, match="no alias 'production'"):
        fk.registry.load("churn@production")
    with pytest.raises(LookupError):
        fk.registry.versions("fraud")


def test_asking_for_a_version_and_an_alias_at_once_is_refused():
    fk.registry.register("churn", Doubler(), aliases=["staging"])
    with pytest.raises(fk.RegistryError, match="one version or one alias"):
        fk.registry.get("churn:1", alias="staging")
    with pytest.raises(fk.RegistryError, match="disagree"):
        fk.registry.get("churn", alias="staging", stage="production")
    with pytest.raises(fk.RegistryError, match="name:version"):
        fk.registry.get("churn:latest")


def test_load_is_memoized_per_process_by_artifact():
    fk.registry.register("churn", Doubler(), aliases=["production"])
    assert fk.registry.load("churn@production") is fk.registry.load("churn:1")


def test_a_scikit_learn_style_model_records_its_input_columns():
    mv = fk.registry.register("churn", FittedOnFrame())
    assert mv.signature == {"inputs": [{"name": "age", "dtype": None}, {"name": "plan", "dtype": None}]}
    assert fk.registry.register("plain", Doubler()).signature is None


def test_an_input_example_records_columns_and_dtypes():
    pd = pytest.importorskip("pandas")
    example = pd.DataFrame({"age": [30, 40], "plan": ["a", "b"]})
    mv = fk.registry.register("churn", Doubler(), input_example=example)
    assert [c["name"] for c in mv.signature["inputs"]] == ["age", "plan"]
    assert mv.signature["inputs"][0]["dtype"] == "int64"
    with pytest.raises(fk.RegistryError, match="input_example must be a pandas DataFrame"):
        fk.registry.register("churn", Doubler(), input_example=[1, 2])


def test_a_real_scikit_learn_model_round_trips_with_its_signature():
    pd = pytest.importorskip("pandas")
    linear = pytest.importorskip("sklearn.linear_model")
    df = pd.DataFrame({"x": [0.0, 1.0, 2.0, 3.0], "z": [1.0, 0.0, 1.0, 0.0]})
    model = linear.LinearRegression().fit(df, [0.0, 2.0, 4.0, 6.0])
    mv = fk.registry.register("reg", model, aliases=["production"])
    assert [c["name"] for c in mv.signature["inputs"]] == ["x", "z"]
    assert "scikit-learn" in mv.library_versions
    loaded = fk.registry.load("reg@production")
    assert loaded.predict(df).round(6).tolist() == [0.0, 2.0, 4.0, 6.0]


def test_loading_under_another_major_library_version_warns_naming_both():
    mv = fk.registry.register("churn", Doubler())
    recorded = {**mv.library_versions, "numpy": "0.9.1"}
    fk.Store.open().db.write(lambda c: c.execute("UPDATE model_versions SET library_versions = ? WHERE name = ?",
                                                 (json.dumps(recorded), "churn")))
    with pytest.warns(registry.ModelVersionWarning, match=r"numpy 0\.9\.1.*numpy " + mv.library_versions["numpy"]):
        fk.registry.load("churn:1")
    registry._MEMO.clear()
    fk.registry.register("fraud", Doubler())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fk.registry.load("fraud")  # same versions: no warning


# --- aliases, history, gates ---------------------------------------------------------------------

def test_set_and_delete_alias():
    fk.registry.register("churn", Doubler(1))
    fk.registry.register("churn", Doubler(2))
    assert fk.registry.set_alias("churn", "staging", 1).aliases == ("staging",)
    fk.registry.set_alias("churn", "staging", 2)
    assert fk.registry.aliases("churn") == {"staging": 2}
    fk.registry.delete_alias("churn", "staging")
    assert fk.registry.aliases("churn") == {}
    with pytest.raises(fk.ModelNotFoundError, match="no alias 'staging' to delete"):
        fk.registry.delete_alias("churn", "staging")
    assert [(c.action, c.version, c.previous) for c in fk.registry.history("churn", "staging")] == [
        ("set", 1, None), ("set", 2, 1), ("delete", None, 2)]


def test_an_alias_on_a_missing_version_or_with_a_bad_name_is_refused():
    fk.registry.register("churn", Doubler())
    with pytest.raises(fk.ModelNotFoundError, match="no version 5"):
        fk.registry.set_alias("churn", "production", 5)
    with pytest.raises(fk.ModelNotFoundError):
        fk.registry.promote("fraud", 1)
    for alias in ("3", "a/b", "", "x..y"):
        with pytest.raises(fk.RegistryError):
            fk.registry.set_alias("churn", alias, 1)
    with pytest.raises(fk.RegistryError, match="all digits"):
        fk.registry.register("churn", Doubler(), aliases=["2"])
    assert fk.registry.history("churn") == [] and len(fk.registry.versions("churn")) == 1


def test_promote_records_the_previous_holder_and_rollback_restores_it():
    clock = fk.ManualClock(1_000.0)
    for k in (1, 2, 3):
        fk.registry.register("churn", Doubler(k), clock=clock)
    fk.registry.promote("churn", 1, clock=clock)
    clock.advance(10)
    fk.registry.promote("churn", 2, reason="better auc", clock=clock)
    clock.advance(10)
    fk.registry.promote("churn", 3, clock=clock)
    assert fk.registry.get("churn@production").version == 3
    assert fk.registry.rollback("churn").version == 2
    assert fk.registry.rollback("churn", "production").version == 1  # one holder further back each time
    with pytest.raises(fk.RegistryError, match="no previous holder"):
        fk.registry.rollback("churn")
    changes = fk.registry.history("churn", alias="production")
    assert [(c.action, c.version, c.previous) for c in changes] == [
        ("promote", 1, None), ("promote", 2, 1), ("promote", 3, 2), ("rollback", 2, 3), ("rollback", 1, 2)]
    assert changes[1].reason == "better auc" and changes[1].when == 1_010.0 and changes[1].who


def test_rollback_restores_a_deleted_alias():
    fk.registry.register("churn", Doubler(), aliases=["production"])
    fk.registry.delete_alias("churn", "production")
    assert fk.registry.rollback("churn").version == 1


def test_the_user_comes_from_flowkit_user(monkeypatch):
    monkeypatch.setenv("FLOWKIT_USER", "ada")
    mv = fk.registry.register("churn", Doubler())
    fk.registry.promote("churn", 1)
    assert mv.created_by == "ada" and fk.registry.history("churn")[0].who == "ada"


def test_as_of_answers_which_version_held_an_alias_then():
    clock = fk.ManualClock(dt.datetime(2024, 3, 1, 12, 0).timestamp())
    for k in (1, 2):
        fk.registry.register("churn", Doubler(k), clock=clock)
    fk.registry.promote("churn", 1, clock=clock)  # March 1st
    clock.advance(86400 * 2)
    fk.registry.promote("churn", 2, clock=clock)  # March 3rd
    at = fk.registry.get("churn", alias="production", as_of=dt.datetime(2024, 3, 2))
    assert at.version == 1
    assert fk.registry.get("churn@production", as_of=dt.datetime(2024, 3, 4)).version == 2
    assert fk.registry.load("churn", stage="production", as_of=dt.datetime(2024, 3, 2, 9)).k == 1
    with pytest.raises(fk.ModelNotFoundError, match="had no alias 'production' at 2024-02-28"):
        fk.registry.get("churn@production", as_of=dt.datetime(2024, 2, 28))


def test_a_gate_refuses_a_version_whose_run_failed_a_check():
    run = gated_training.run(k=4)
    assert run.status == "failed"
    mv = fk.registry.get("churn")
    assert mv.run_id == run.id
    with pytest.raises(fk.RegistryError, match=r"did not pass the gate.*(failed|check)"):
        fk.registry.promote("churn", mv.version, require_gate=True)
    assert fk.registry.aliases("churn") == {}
    fk.registry.promote("churn", mv.version)  # without the gate it is the user's call
    assert fk.registry.aliases("churn") == {"production": 1}


def test_a_gate_passes_a_version_from_a_completed_run_and_refuses_one_without_a_run():
    training.run(rows=3, k=2)
    assert fk.registry.promote("churn", 1, require_gate=True).aliases == ("production",)
    fk.registry.register("churn", Doubler())
    with pytest.raises(fk.RegistryError, match="cannot pass a gate: no run produced it"):
        fk.registry.promote("churn", 2, require_gate=True)


def test_better_than_compares_with_the_version_an_alias_names():
    fk.registry.register("churn", Doubler(), metrics={"auc": 0.8}, aliases=["production"])

    @fk.task(checks=[fk.checks.better_than("churn@production", "auc", min_delta=0.05)])
    def evaluate(auc: float) -> dict:
        return {"auc": auc}

    @fk.flow
    def evaluation(auc: float) -> dict:
        return evaluate(auc)

    assert evaluation.run(auc=0.9).status == "completed"
    assert evaluation.run(auc=0.82).status == "failed"


def test_gc_keeps_registered_models():
    fk.registry.register("churn", Doubler(), aliases=["production"])
    store = fk.Store.open()
    report = store.gc(keep_days=0, now=10**12, grace_seconds=0)
    assert report.artifacts == [] and fk.registry.load("churn@production").k == 2


# --- the CLI -------------------------------------------------------------------------------------

def cli(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_models_commands_list_show_promote_roll_back_and_show_history(home):
    training.run(rows=3, k=2)
    training.run(rows=3, k=3)
    listed = cli("models", "ls", "--json")
    assert [(m["name"], m["versions"], m["latest"]) for m in json.loads(listed.output)] == [("churn", 2, 2)]
    assert "churn" in cli("models", "--home", str(home), "ls").output
    versions = json.loads(cli("models", "ls", "churn", "--json").output)
    assert [v["version"] for v in versions] == [1, 2]
    promoted = cli("models", "promote", "churn", "1", "--reason", "first")
    assert promoted.exit_code == 0 and "churn@production -> version 1" in promoted.output
    cli("models", "promote", "churn", "2", "--to", "production")
    shown = cli("models", "show", "churn@production")
    assert "model churn:2" in shown.output and "auc=0.8" in shown.output and "param k = 3" in shown.output
    shown_json = json.loads(cli("models", "show", "churn:1", "--json").output)
    assert shown_json["version"] == 1 and any("prepare" in line for line in shown_json["inputs"])
    rolled = cli("models", "rollback", "churn", "production")
    assert "version 1 (was 2)" in rolled.output
    history = json.loads(cli("models", "history", "churn", "--alias", "production", "--json").output)
    assert [(h["action"], h["version"], h["previous"]) for h in history] == [
        ("promote", 1, None), ("promote", 2, 1), ("rollback", 1, 2)]
    assert "first" in cli("models", "history", "churn").output


def test_models_command_errors_are_one_line_and_exit_2():
    fk.registry.register("churn", Doubler())
    for args, words in [(["models", "show", "churn:9"], "no version 9"),
                        (["models", "show", "fraud"], "no model named 'fraud'"),
                        (["models", "promote", "churn", "1", "--to", "12"], "all digits"),
                        (["models", "rollback", "churn", "production"], "no previous holder")]:
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 2, (args, result.output)
        assert words in result.output and "Traceback" not in result.output


def test_a_version_first_registered_by_a_run_that_failed_belongs_to_the_run_that_completed(home, monkeypatch):
    monkeypatch.setenv("UPLOAD_FAILS", "1")  # outside the task's code, so its cache key stays the same

    @fk.task
    def train() -> int:
        version = fk.registry.register("relinked", {"w": 1}, metrics={"auc": 0.9})
        if os.environ.get("UPLOAD_FAILS") == "1":
            raise ConnectionError("the upload after registering failed")
        return version.version

    @fk.flow
    def training() -> int:
        return train()

    failed = training.run()
    assert failed.status == "failed"
    monkeypatch.setenv("UPLOAD_FAILS", "0")
    done = training.run()
    assert done.result() == 1 and [v.version for v in fk.registry.versions("relinked")] == [1]
    version = fk.registry.get("relinked:1")
    assert version.run_id == done.id and version.task_run_id == f"{done.id}/train"
    assert fk.registry.promote("relinked", 1, require_gate=True).version == 1


def test_the_gate_refuses_a_version_whose_run_has_not_finished(home):
    @fk.task
    def train_and_promote() -> str:
        version = fk.registry.register("early", {"w": 1})
        with pytest.raises(fk.RegistryError, match="has not finished"):
            fk.registry.promote("early", version.version, require_gate=True)
        return "refused"

    @fk.flow
    def f() -> str:
        return train_and_promote()

    run = f.run()
    assert run.result() == "refused"
    assert fk.registry.promote("early", 1, require_gate=True).version == 1  # once it has completed
