"""Drift (``fk.drift``): each test against scipy itself, the automatic choice, awkward data, the check task."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from scipy.spatial import distance
from scipy.stats import contingency

import flowkit as fk
from flowkit.ml import drift
from flowkit.store import Store

RNG = np.random.default_rng(7)


def _numeric(n: int, shift: float = 0.0, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(shift, 1.0, n)


# --- each statistic is scipy's, on the same data -------------------------------------------------

def test_ks_is_scipys_two_sample_ks_with_d_as_the_effect():
    ref, cur = _numeric(300), _numeric(200, 0.3, seed=1)
    row = drift.compare(pd.DataFrame({"x": ref}), pd.DataFrame({"x": cur}))["x"]
    expected = stats.ks_2samp(ref, cur)
    assert (row.type, row.test) == ("numeric", "ks")
    assert row.statistic == pytest.approx(expected.statistic) and row.p_value == pytest.approx(expected.pvalue)
    assert row.effect == row.statistic and row.threshold == 0.05
    assert row.drifted is bool(expected.pvalue < 0.05)


def test_wasserstein_is_normed_by_the_reference_std():
    ref, cur = _numeric(5000), _numeric(3000, 0.05, seed=1) * 2
    row = drift.compare(pd.DataFrame({"x": ref}), pd.DataFrame({"x": cur}))["x"]
    assert row.test == "wasserstein" and row.p_value is None and row.threshold == 0.1
    assert row.statistic == pytest.approx(stats.wasserstein_distance(ref, cur) / np.std(ref))
    assert row.drifted is bool(row.statistic >= 0.1)


def test_a_constant_reference_norms_by_a_floor_not_by_zero():
    ref = pd.DataFrame({"x": np.r_[np.zeros(1990), np.arange(10.0)]})
    cur = pd.DataFrame({"x": np.arange(100.0)})
    row = drift.compare(ref, cur)["x"]
    assert row.statistic == pytest.approx(stats.wasserstein_distance(ref["x"], cur["x"]) / max(np.std(ref["x"]), 1e-3))


def test_chisquare_is_scipys_contingency_test_with_cramers_v():
    ref = pd.Series(RNG.choice(["a", "b", "c"], 400, p=[0.5, 0.3, 0.2]), name="plan")
    cur = pd.Series(RNG.choice(["a", "b", "c"], 300, p=[0.4, 0.3, 0.3]), name="plan")
    row = drift.compare(ref.to_frame(), cur.to_frame())["plan"]
    table = np.array([[(ref == k).sum() for k in "abc"], [(cur == k).sum() for k in "abc"]])
    expected = stats.chi2_contingency(table, correction=False)
    assert (row.type, row.test) == ("categorical", "chisquare")
    assert row.statistic == pytest.approx(expected.statistic) and row.p_value == pytest.approx(expected.pvalue)
    assert row.effect == pytest.approx(contingency.association(table, method="cramer"))


def test_the_z_test_is_the_pooled_two_proportion_test_with_cohens_h():
    ref = pd.DataFrame({"churned": RNG.choice([True, False], 500, p=[0.2, 0.8])})
    cur = pd.DataFrame({"churned": RNG.choice([True, False], 400, p=[0.3, 0.7])})
    row = drift.compare(ref, cur)["churned"]
    p1, p2 = ref["churned"].mean(), cur["churned"].mean()
    pooled = (ref["churned"].sum() + cur["churned"].sum()) / (len(ref) + len(cur))
    z = (p1 - p2) / math.sqrt(pooled * (1 - pooled) * (1 / len(ref) + 1 / len(cur)))
    assert row.test == "z"
    assert abs(row.statistic) == pytest.approx(abs(z))
    assert row.p_value == pytest.approx(2 * stats.norm.sf(abs(z)))
    assert row.effect == pytest.approx(abs(2 * math.asin(math.sqrt(p1)) - 2 * math.asin(math.sqrt(p2))))


def test_jensen_shannon_is_scipys_on_the_category_shares():
    ref = pd.DataFrame({"plan": RNG.choice(["a", "b", "c"], 3000, p=[0.5, 0.3, 0.2])})
    cur = pd.DataFrame({"plan": RNG.choice(["a", "b", "c"], 2000, p=[0.2, 0.3, 0.5])})
    row = drift.compare(ref, cur)["plan"]
    p = ref["plan"].value_counts(normalize=True).reindex(list("abc")).to_numpy()
    q = cur["plan"].value_counts(normalize=True).reindex(list("abc")).to_numpy()
    assert row.test == "jensenshannon" and row.p_value is None
    assert row.statistic == pytest.approx(distance.jensenshannon(p, q, base=2))
    assert row.drifted


def test_psi_matches_a_hand_computed_example():
    # shares 0.5/0.3/0.2 against 0.3/0.3/0.4: (0.3-0.5)ln(0.3/0.5) + 0 + (0.4-0.2)ln(0.4/0.2)
    ref = pd.DataFrame({"plan": ["a"] * 50 + ["b"] * 30 + ["c"] * 20})
    cur = pd.DataFrame({"plan": ["a"] * 30 + ["b"] * 30 + ["c"] * 40})
    row = drift.compare(ref, cur, method="psi")["plan"]
    hand = -0.2 * math.log(0.6) + 0.2 * math.log(2.0)
    assert row.test == "psi" and row.statistic == pytest.approx(hand) and row.statistic == pytest.approx(0.24079, 1e-4)
    assert row.drifted and row.threshold == 0.1


def test_psi_on_a_numeric_column_bins_it_and_stays_finite_with_empty_bins():
    ref, cur = pd.DataFrame({"x": _numeric(2000)}), pd.DataFrame({"x": _numeric(2000, 3.0, seed=2)})
    row = drift.compare(ref, cur, method="psi")["x"]
    assert row.type == "numeric" and math.isfinite(row.statistic) and row.drifted
    same = drift.compare(ref, ref, method="psi")["x"]
    assert same.statistic == pytest.approx(0.0) and not same.drifted


# --- the automatic choice -------------------------------------------------------------------------

@pytest.mark.parametrize("rows, values, expected", [
    (1000, None, ("numeric", "ks")),
    (1001, None, ("numeric", "wasserstein")),
    (1000, [1, 2, 3, 4, 5], ("categorical", "chisquare")),
    (1000, [1, 2, 3, 4, 5, 6], ("numeric", "ks")),
    (1000, [0, 1], ("categorical", "z")),
    (1001, [1, 2, 3], ("categorical", "jensenshannon")),
    (1001, [0, 1], ("categorical", "jensenshannon")),
])
def test_the_automatic_choice_follows_evidentlys_boundaries(rows, values, expected):
    gen = np.random.default_rng(rows)
    data = gen.normal(size=rows) if values is None else gen.choice(values, rows)
    ref = pd.DataFrame({"x": data})
    row = drift.compare(ref, ref.sample(frac=0.5, random_state=0))["x"]
    assert (row.type, row.test) == expected


def test_unique_values_are_counted_over_both_frames():
    ref = pd.DataFrame({"x": np.tile([1, 2, 3], 100)})
    cur = pd.DataFrame({"x": np.tile([4, 5, 6], 100)})  # 3 each, 6 together: numeric
    assert drift.compare(ref, cur)["x"].type == "numeric"
    assert drift.compare(ref, ref)["x"].test == "chisquare"


def test_an_explicit_method_overrides_and_a_misfit_is_noted_or_refused():
    ref = pd.DataFrame({"x": _numeric(200), "plan": RNG.choice(list("abc"), 200)})
    report = drift.compare(ref, ref, method="ks")
    assert report["x"].test == "ks"
    assert report["plan"].test == "chisquare" and "ks does not apply" in report["plan"].note
    assert drift.compare(ref, ref, method={"x": "wasserstein"})["x"].test == "wasserstein"
    with pytest.raises(ValueError, match="column 'plan': ks does not apply to a categorical column"):
        drift.compare(ref, ref, method={"plan": "ks"})
    with pytest.raises(ValueError, match="unknown method 'kolmogorov'"):
        drift.compare(ref, ref, method="kolmogorov")


# --- effect sizes and thresholds -------------------------------------------------------------------

def test_min_effect_keeps_a_significant_but_tiny_difference_from_counting():
    ref, cur = _numeric(1000), _numeric(1000, 0.15, seed=3)
    plain = drift.compare(pd.DataFrame({"x": ref}), pd.DataFrame({"x": cur}))["x"]
    assert plain.drifted and plain.p_value < 0.05 and plain.effect < 0.2
    strict = drift.compare(pd.DataFrame({"x": ref}), pd.DataFrame({"x": cur}), min_effect=0.2)
    assert not strict["x"].drifted and strict["x"].p_value == plain.p_value and strict.min_effect == 0.2
    loose = drift.compare(pd.DataFrame({"x": ref}), pd.DataFrame({"x": cur}), min_effect=plain.effect)
    assert loose["x"].drifted


def test_a_custom_threshold_applies_to_the_p_value():
    ref, cur = pd.DataFrame({"x": _numeric(300)}), pd.DataFrame({"x": _numeric(300, 0.2, seed=4)})
    p = drift.compare(ref, cur)["x"].p_value
    assert drift.compare(ref, cur, threshold=p * 2)["x"].drifted
    assert not drift.compare(ref, cur, threshold=p / 2)["x"].drifted


@given(st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=300),
       st.sampled_from(["auto", "ks", "wasserstein", "psi", "jensenshannon"]))
@settings(max_examples=60, deadline=None)
def test_identical_samples_never_drift(values, method):
    frame = pd.DataFrame({"x": values, "c": [str(int(v) % 3) for v in values]})
    report = drift.compare(frame, frame.copy(), method=method)
    assert not report.drifted and report.drifted_columns == []


def test_dataset_drift_is_the_share_of_drifted_columns_against_drift_share():
    ref = pd.DataFrame({k: _numeric(500, seed=i) for i, k in enumerate("abcd")})
    cur = ref.copy()
    cur["a"] = cur["a"] + 2
    one = drift.compare(ref, cur)
    assert one.drifted_columns == ["a"] and one.share_drifted == 0.25 and not one.drifted
    cur["b"] = cur["b"] + 2
    two = drift.compare(ref, cur)
    assert two.share_drifted == 0.5 and two.drifted  # at least the share, as Evidently
    assert not drift.compare(ref, cur, drift_share=0.75).drifted
    assert drift.compare(ref, cur, drift_share=0.25, columns=["a", "c"]).drifted
    with pytest.raises(ValueError, match="drift_share must be between 0 and 1"):
        drift.compare(ref, cur, drift_share=2)


# --- awkward data is reported, never a crash ----------------------------------------------------------

def test_missing_columns_are_reported_and_left_out_of_the_share():
    ref = pd.DataFrame({"a": _numeric(100), "gone": _numeric(100)})
    cur = pd.DataFrame({"a": _numeric(100), "new": _numeric(100)})
    report = drift.compare(ref, cur, columns=["a", "gone", "new", "nowhere"])
    assert report.skipped == {"gone": "missing from the current data", "new": "missing from the reference",
                              "nowhere": "in neither the reference nor the current data"}
    assert [c.column for c in report.compared] == ["a"] and report.share_drifted == 0.0
    assert report["gone"].n_ref == 100 and report["gone"].test is None


def test_new_categories_are_named_and_still_tested():
    ref = pd.DataFrame({"plan": ["a", "b", "c"] * 50})
    cur = pd.DataFrame({"plan": ["a", "b", "c", "enterprise"] * 30})
    row = drift.compare(ref, cur)["plan"]
    assert row.test == "chisquare" and row.drifted and "new categories: enterprise" in row.note
    big = drift.compare(pd.concat([ref] * 10), cur)["plan"]
    assert big.test == "jensenshannon" and math.isfinite(big.statistic) and big.drifted


def test_all_nan_columns_and_empty_frames_are_reported():
    ref = pd.DataFrame({"a": _numeric(50), "empty": np.nan, "text": ["x"] * 50})
    cur = pd.DataFrame({"a": _numeric(50), "empty": np.nan, "text": [None] * 50})
    report = drift.compare(ref, cur)
    assert report.skipped == {"empty": "all values are missing in the reference",
                              "text": "all values are missing in the current data"}
    nothing = drift.compare(ref.iloc[:0], cur)
    assert nothing.compared == [] and not nothing.drifted and nothing.share_drifted == 0.0
    assert set(nothing.skipped.values()) == {"the reference data has no rows"}
    assert drift.compare(pd.DataFrame(), pd.DataFrame()).columns == ()


def test_nans_are_left_out_and_mismatched_dtypes_compare_as_categories():
    ref = pd.DataFrame({"x": np.r_[_numeric(90), [np.nan] * 10], "y": [1, 2] * 50, "when": pd.Timestamp("2024-01-01")})
    cur = pd.DataFrame({"x": _numeric(100, seed=5), "y": ["1", "2"] * 50, "when": pd.Timestamp("2024-02-01")})
    report = drift.compare(ref, cur)
    assert report["x"].n_ref == 90 and report["x"].n_cur == 100
    assert report["y"].type == "categorical" and "dtypes differ" in report["y"].note
    assert report["when"].skipped and "datetime" in report["when"].note


def test_pandas_categoricals_nullable_dtypes_and_unhashable_values_do_not_crash():
    cats = ["a", "b", "c", "unused"]
    ref = pd.DataFrame({"plan": pd.Categorical(["a", "b"] * 50, categories=cats),
                        "n": pd.array([1, 2, None, 4, 5, 6, 7, 8, 9, 10] * 10, dtype="Int64"),
                        "flag": pd.array([True, False, None, True] * 25, dtype="boolean"), "tags": [["x"]] * 100})
    cur = ref.assign(plan=pd.Categorical(["a", "c"] * 50, categories=cats))
    report = drift.compare(ref, cur)
    assert report["plan"].test == "chisquare" and report["plan"].drifted  # unobserved categories left out
    assert report["n"].n_ref == 90 and report["flag"].test == "z" and not report["flag"].drifted
    assert report["tags"].skipped and "could not be compared: TypeError" in report["tags"].note


def test_the_report_is_a_frame_and_a_dict_that_round_trips():
    ref = pd.DataFrame({"a": _numeric(100), "b": ["x", "y"] * 50, "c": np.nan})
    report = drift.compare(ref, ref.assign(a=ref["a"] + 1), name="features")
    frame = report.to_frame()
    assert list(frame.columns) == ["column", "type", "test", "statistic", "p_value", "effect", "threshold", "drifted",
                                   "n_ref", "n_cur", "note"]
    assert frame["drifted"].tolist() == [True, False, False]
    data = report.to_dict()
    assert data["drifted_columns"] == ["a"] and data["name"] == "features" and data["skipped"] == {"c": report["c"].note}
    import json

    assert drift.DriftReport.from_dict(json.loads(json.dumps(data))) == report
    assert "features" in repr(report) and "a (ks" in repr(report)


def test_series_and_arrays_are_one_column_and_other_types_are_refused():
    assert drift.compare(_numeric(100), _numeric(100, 2, seed=1)).drifted_columns == ["value"]
    with pytest.raises(TypeError, match="must be a pandas DataFrame"):
        drift.compare({"a": [1]}, pd.DataFrame({"a": [1]}))


# --- prediction drift -------------------------------------------------------------------------------

class _Model:
    def predict(self, X):
        return (X["x"] > 0).astype(int).to_numpy()

    def predict_proba(self, X):
        p = 1 / (1 + np.exp(-X["x"].to_numpy()))
        return np.c_[1 - p, p]


def test_prediction_drift_compares_a_models_outputs():
    ref, cur = pd.DataFrame({"x": _numeric(500)}), pd.DataFrame({"x": _numeric(500, 1.0, seed=6)})
    labels = drift.compare_predictions(ref, cur, model=_Model())
    assert labels.drifted and labels["prediction"].test == "z" and labels.name == "predictions"
    probs = drift.compare_predictions(ref, cur, model=_Model(), proba=True)
    assert [c.column for c in probs.columns] == ["prediction_0", "prediction_1"] and probs.drifted
    same = drift.compare_predictions(_Model().predict(ref), pd.Series(_Model().predict(ref)))
    assert not same.drifted and same["prediction"].p_value == pytest.approx(1.0)


def test_one_drifted_output_of_several_is_prediction_drift():
    ref = np.c_[_numeric(300), _numeric(300, seed=1)]
    cur = np.c_[_numeric(300, seed=2), _numeric(300, 3, seed=3)]
    report = drift.compare_predictions(ref, cur)
    assert report.drifted_columns == ["prediction_1"] and report.drifted


# --- the check task, its history, the gate ----------------------------------------------------------------

@fk.task
def reference_batch() -> pd.DataFrame:
    return pd.DataFrame({"age": _numeric(400), "plan": ["a", "b"] * 200})


@fk.task
def current_batch(shift: float) -> pd.DataFrame:
    return pd.DataFrame({"age": _numeric(400, shift, seed=9), "plan": ["a", "b"] * 200})


@fk.task
def act(report: drift.DriftReport) -> str:
    return "retrain" if report.drifted else "keep"


@fk.flow
def monitoring(shift: float = 0.0, gate: bool = False) -> str:
    report = fk.drift.check(reference_batch(), current_batch(shift), name="churn-features", gate=gate,
                            drift_share=0.5)
    return act(report)


def test_check_in_a_flow_stores_the_report_and_history_returns_it(home):
    calm = monitoring.run(shift=0.0)
    moved = monitoring.run(shift=2.0)
    assert calm.result() == "keep" and moved.result() == "retrain"
    (tr,) = [t for t in moved.task_runs if t.name == "drift_check"]
    stored = Store.open().load(tr.artifact_id)
    assert isinstance(stored, drift.DriftReport) and stored.drifted_columns == ["age"]
    assert stored.name == "churn-features"
    metrics = moved.metrics().set_index("name")["value"]
    assert metrics["drift.share"] == 0.5 and metrics["drift.drifted"] == 1.0
    assert metrics["drift.column.age"] == pytest.approx(stored["age"].statistic)

    again = monitoring.run(shift=2.0)  # served from the cache: a row too, with the same report
    frame = fk.drift.history("churn-features")
    assert list(frame.columns)[:6] == ["run", "time", "drifted", "share_drifted", "drifted_columns", "artifact_id"]
    assert frame["run"].tolist() == [calm.id, moved.id, again.id]
    assert frame["drifted"].tolist() == [False, True, True]
    assert frame["share_drifted"].tolist() == [0.0, 0.5, 0.5]
    assert frame["drifted_columns"].tolist() == [[], ["age"], ["age"]]
    assert frame["artifact_id"].iloc[1] == frame["artifact_id"].iloc[2] == tr.artifact_id
    assert frame["status"].tolist() == ["completed", "completed", "cached"]
    assert str(frame["time"].dtype).startswith("datetime64")
    assert fk.drift.history("other-name").empty


def test_a_gate_fails_the_run_naming_the_drifted_columns(home):
    ok = monitoring.run(shift=0.0, gate=True)
    assert ok.status == "completed"
    run = monitoring.run(shift=2.0, gate=True)
    assert run.status == "failed"
    statuses = {t.name: t.status for t in run.task_runs}
    assert statuses["drift_check"] == "failed" and statuses["act"] == "skipped"
    with pytest.raises(fk.FlowRunError) as info:
        run.result()
    cause = info.value.__cause__
    assert isinstance(cause, fk.CheckFailedError) and cause.check == "drift gate"
    assert "dataset drift: 1 of 2 column(s) drifted" in str(cause) and "age (ks" in str(cause)
    frame = fk.drift.history("churn-features")
    assert frame["drifted"].tolist() == [False, True]  # the failed gate's metrics are kept
    assert frame["artifact_id"].iloc[1] is None and frame["status"].iloc[1] == "failed"


def test_a_warning_gate_records_the_failed_check_and_lets_the_report_through(home):
    @fk.flow
    def watch() -> str:
        return act(fk.drift.check(reference_batch(), current_batch(2.0), name="w", gate="warn"))

    run = watch.run()
    assert run.status == "completed" and run.result() == "retrain"
    checks = run.checks()
    assert checks["check"].tolist() == ["drift gate"] and not checks["passed"].iloc[0]


def test_check_outside_a_flow_is_a_plain_comparison_and_bad_options_fail_early():
    report = fk.drift.check(pd.DataFrame({"a": [1.0, 2.0] * 20}), pd.DataFrame({"a": [1.0, 2.0] * 20}))
    assert isinstance(report, drift.DriftReport) and not report.drifted and report.name == "drift"
    with pytest.raises(fk.DefinitionError, match="gate must be True, False or 'warn'"):
        fk.drift.check(pd.DataFrame(), pd.DataFrame(), gate="loud")
    with pytest.raises(ValueError, match="min_effect must be a non-negative number"):
        fk.drift.check(pd.DataFrame(), pd.DataFrame(), min_effect=-1)


# --- the reference from the registry -------------------------------------------------------------------

@fk.task
def training_table() -> pd.DataFrame:
    return pd.DataFrame({"age": _numeric(300), "plan": ["a", "b", "c"] * 100})


@fk.task
def holdout_table() -> pd.DataFrame:
    return pd.DataFrame({"age": _numeric(50, seed=1), "plan": ["a", "b"] * 25})


@fk.task
def fit(train: pd.DataFrame, C: float = 1.0) -> dict:
    return {"mean_age": float(train["age"].mean()), "C": C}


@fk.task
def evaluate(model: dict, test: pd.DataFrame) -> dict:
    return {"model": model, "auc": 0.9}


@fk.flow
def training() -> dict:
    return evaluate(fit(training_table()), holdout_table())


def test_the_training_data_is_the_dataframe_the_model_was_fitted_on(home):
    run = training.run()
    store = Store.open()
    model = next(t for t in run.task_runs if t.name == "fit")
    table = next(t for t in run.task_runs if t.name == "training_table")
    assert drift._training_artifact(store, model.artifact_id, None) == table.artifact_id
    # from the task run that registered it (downstream, with the test data nearer): still the training table
    evaluated = next(t for t in run.task_runs if t.name == "evaluate")
    assert drift._training_artifact(store, model.artifact_id, f"{run.id}/{evaluated.node}") == table.artifact_id


def test_a_registry_reference_compares_against_the_training_data(home):
    from flowkit.ml import registry

    @fk.task
    def register(model: dict) -> int:
        return registry.register("churn", model).version

    @fk.flow
    def train_and_register() -> int:
        return register(fit(training_table()))

    version = train_and_register.run().result()
    registry.promote("churn", version, to="production")
    current = training_table.fn().assign(age=lambda f: f["age"] + 3)
    report = drift.compare("churn@production", current)
    assert report.drifted_columns == ["age"] and "churn@production" in report.reference
    assert fk.drift.check("churn@production", training_table.fn()).drifted is False


def test_a_boolean_column_that_arrives_as_integers_is_compared_and_drifts():
    ref = pd.DataFrame({"x": [True, False] * 200})
    report = fk.drift.compare(ref, pd.DataFrame({"x": [1] * 400}))
    assert not report.skipped and report.drifted_columns == ["x"]
