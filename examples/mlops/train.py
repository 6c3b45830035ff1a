"""Train, evaluate, gate and promote a classifier: the MLOps lifecycle in one flow.

The data is scikit-learn's breast cancer dataset (shipped with the library, no
download). The flow:

    load (checked) -> features -> split -> train one candidate per C (.map)
      -> evaluate each (metrics logged) -> pick the best
      -> gate: auc >= 0.95 and no worse than the model in production
      -> register the winner and promote it to production

Run it twice: the second run is fully cached and registers nothing new. Change
``--C`` values or the features and the gate compares the new winner with the
model now in production; a candidate that is worse fails the gate, and the
production alias stays where it was. Then score new data with whatever is in
production (``fk.Model("tumor-classifier@production")`` as a task input)::

    python examples/mlops/train.py            # train, gate, promote; then score
    flowkit models show tumor-classifier@production
    flowkit runs compare RUN1 RUN2
"""

from __future__ import annotations

import sys

import pandas as pd

import flowkit as fk

MODEL = "tumor-classifier"


@fk.task(checks=[fk.checks.rows(min=500), fk.checks.no_nulls(), fk.checks.in_range("mean radius", 0, 100),
                 fk.checks.schema({"target": "int"})])
def load(shift: float = 1.0) -> pd.DataFrame:
    """The raw table, validated before anything uses it.

    ``shift`` simulates the data collected after the lab changed its instrument: the size
    measurements read ``shift`` times higher (the retraining data of ``loop.py``).
    """
    from sklearn.datasets import load_breast_cancer

    return shifted(load_breast_cancer(as_frame=True).frame, shift)


SIZE_COLUMNS = ["mean radius", "mean perimeter", "mean area", "worst radius", "worst perimeter", "worst area"]


def shifted(table: pd.DataFrame, shift: float) -> pd.DataFrame:
    """The table with its size measurements multiplied by ``shift`` (1.0: unchanged)."""
    if shift == 1.0:
        return table
    out = table.copy()
    out[SIZE_COLUMNS] = out[SIZE_COLUMNS] * shift
    return out


@fk.task
def features(raw: pd.DataFrame) -> pd.DataFrame:
    """A few ratio features beside the raw measurements."""
    out = raw.copy()
    out["radius_ratio"] = out["worst radius"] / out["mean radius"]
    out["texture_ratio"] = out["worst texture"] / out["mean texture"]
    return out


@fk.task(nout=2)
def split(table: pd.DataFrame, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A stratified train/test split: the test part is never seen in training."""
    from sklearn.model_selection import train_test_split

    train, test = train_test_split(table, test_size=0.3, random_state=seed, stratify=table["target"])
    return train, test


@fk.task
def train(C: float, data: pd.DataFrame):  # noqa: N803 - the name scikit-learn uses
    """One candidate: standardized logistic regression with regularization C."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    fk.log_param("C", C)
    model = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=2000))
    return model.fit(data.drop(columns="target"), data["target"])


@fk.task
def evaluate(model, test: pd.DataFrame) -> dict:
    """Metrics on the held-out part, logged and returned."""
    from sklearn.metrics import accuracy_score, roc_auc_score

    x, y = test.drop(columns="target"), test["target"]
    scores = {"auc": float(roc_auc_score(y, model.predict_proba(x)[:, 1])),
              "accuracy": float(accuracy_score(y, model.predict(x)))}
    fk.log_metrics(scores)
    return scores


@fk.task(nout=2)
def pick(models: list, scores: list[dict]) -> tuple[object, dict]:
    """The candidate with the best auc."""
    best = max(range(len(scores)), key=lambda i: scores[i]["auc"])
    fk.log_metric("best_auc", scores[best]["auc"])
    return models[best], scores[best]


@fk.task(checks=[fk.checks.metric("auc", ">=", 0.95),
                 fk.checks.better_than(f"{MODEL}@production", "auc", min_delta=0.0)])
def gate(scores: dict) -> dict:
    """Passes the winner's metrics on only if they clear the bar and beat production."""
    return scores


@fk.task
def promote(model, scores: dict) -> int:
    """Register the winner (linked to this task run, so to its data and code) and move production to it."""
    version = fk.registry.register(MODEL, model, metrics=scores)
    fk.registry.promote(MODEL, version.version, to="production", reason=f"auc {scores['auc']:.4f}")
    return version.version


@fk.flow
def training(cs: list[float] = [0.01, 0.1, 1.0, 10.0], seed: int = 0,  # noqa: B006 - a flow parameter
             shift: float = 1.0) -> int:
    table = features(load(shift))
    train_part, test_part = split(table, seed=seed)
    models = train.map(cs, data=train_part)
    scores = evaluate.map(models, test=test_part)
    best, best_scores = pick(models, scores)
    return promote(best, gate(best_scores))


@fk.task
def score(model, batch: pd.DataFrame) -> pd.DataFrame:
    """Predictions of the production model for a batch of new rows."""
    x = batch.drop(columns="target", errors="ignore")
    return pd.DataFrame({"probability": model.predict_proba(x)[:, 1]}, index=batch.index)


@fk.task
def new_batch(rows: int = 20) -> pd.DataFrame:
    return features.fn(load.fn()).sample(rows, random_state=1)


@fk.flow
def scoring(rows: int = 20) -> pd.DataFrame:
    """Scores with whichever version is in production: moving the alias reruns exactly this task."""
    return score(fk.Model(f"{MODEL}@production"), new_batch(rows))


if __name__ == "__main__":
    run = training.run()
    print(run.summary())
    if run.status != "completed":
        print(run.checks()[["task", "check", "passed", "message"]].to_string(index=False))
        sys.exit(1)
    version = fk.registry.get(f"{MODEL}@production")
    print(f"{MODEL}@production is version {version.version} (auc {version.metrics['auc']:.4f})")
    print(fk.compare_runs([run.id]).T.to_string(header=False))
    predictions = scoring()
    print(f"scored {len(predictions)} rows with {MODEL}:{version.version}; mean probability "
          f"{predictions['probability'].mean():.3f}")
