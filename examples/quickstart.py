"""The quickstart pipeline: load data, build features, train a few models, pick the best.

Run it with ``python examples/quickstart.py`` (see the README). It uses pandas
and numpy only, so it runs anywhere flowkit installs.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

import flowkit as fk


@fk.task
def load(rows: int, seed: int = 0) -> pd.DataFrame:
    """A synthetic table: y depends linearly on two features, plus noise."""
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"x1": rng.normal(size=rows), "x2": rng.normal(size=rows)})
    df["y"] = 3.0 * df.x1 - 2.0 * df.x2 + rng.normal(scale=0.5, size=rows)
    return df


@fk.task(nout=2)
def split(df: pd.DataFrame, test_fraction: float = 0.25) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Hold out the last rows for evaluation."""
    cut = int(len(df) * (1 - test_fraction))
    return df.iloc[:cut], df.iloc[cut:]


@fk.task
def train(alpha: float, data: pd.DataFrame) -> dict:
    """Ridge regression in closed form, with regularisation ``alpha``."""
    x = data[["x1", "x2"]].to_numpy()
    y = data["y"].to_numpy()
    coef = np.linalg.solve(x.T @ x + alpha * np.eye(x.shape[1]), x.T @ y)
    return {"alpha": alpha, "coef": coef.round(3).tolist()}


@fk.task
def evaluate(model: dict, data: pd.DataFrame) -> dict:
    """Root-mean-square error of a model on held-out data."""
    pred = data[["x1", "x2"]].to_numpy() @ np.array(model["coef"])
    rmse = float(np.sqrt(np.mean((data["y"].to_numpy() - pred) ** 2)))
    return {**model, "rmse": round(rmse, 4)}


@fk.task
def best(scores: list[dict]) -> dict:
    """The model with the lowest error."""
    return min(scores, key=lambda s: s["rmse"])


@fk.flow
def pipeline(rows: int = 2000, alphas: list[float] = [0.01, 1.0, 100.0]) -> dict:  # noqa: B006
    train_df, test_df = split(load(rows))
    models = train.map(alphas, data=train_df)
    scores = evaluate.map(models, data=test_df)
    return best(scores)


if __name__ == "__main__":
    run = pipeline.run(rows=2000)
    for tr in run.task_runs:
        print(f"  {tr.status:<10} {tr.node:<14} {1000 * (tr.duration or 0):7.2f} ms")
    print(f"run {run.id[:8]} {run.status}; best model: {run.result()}")
    print()
    print(pipeline.graph().to_mermaid())
