"""What ``fk.drift.compare`` costs over calling the same scipy statistics directly.

On a reference and a current frame of ``--rows`` rows (default 100,000) and ``--columns``
(default 20) float64 columns (the current one shifted in half of them), it times, each as the
best of ``--repeat`` runs (gc.collect() before each):

* fk.drift.compare  ``fk.drift.compare(reference, current)``: the automatic choice (above
                    1,000 reference rows and more than 5 values: the Wasserstein distance
                    normed by the reference's std), NaN handling, notes, the report
* scipy directly    per column ``scipy.stats.wasserstein_distance(ref, cur) / max(np.std(ref),
                    0.001)`` on the columns' numpy arrays (the floor: the same statistic, no
                    framework)

and prints both, their ratio and PASS/FAIL against the target (at most 1.5x). It checks that
both computed the same distances first. Both run in the same process on the same data, so the
machine's speed cancels out of the ratio. Exit code 0 whatever the numbers.

    python benchmarks/drift.py [--rows 100000] [--columns 20] [--repeat 5]
"""

from __future__ import annotations

import argparse
import gc
import platform
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import scipy
from scipy import stats

import flowkit as fk
from shapes import verdict

RATIO_TARGET = 1.5


def frames(rows: int, columns: int, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    ref = pd.DataFrame({f"f{i}": rng.normal(0.0, 1.0 + i / 10, rows) for i in range(columns)})
    cur = pd.DataFrame({f"f{i}": rng.normal(0.3 * (i % 2), 1.0 + i / 10, rows) for i in range(columns)})
    return ref, cur


def scipy_directly(ref: pd.DataFrame, cur: pd.DataFrame) -> list[float]:
    out = []
    for col in ref.columns:
        r, c = ref[col].to_numpy(), cur[col].to_numpy()
        out.append(stats.wasserstein_distance(r, c) / max(float(np.std(r)), 0.001))
    return out


def best_seconds(fn: Callable[[], Any], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        gc.collect()
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000, help="rows of each frame (default: 100,000)")
    parser.add_argument("--columns", type=int, default=20, help="numeric columns (default: 20)")
    parser.add_argument("--repeat", type=int, default=5, help="repetitions per measurement; the best is kept")
    args = parser.parse_args()
    print(f"flowkit {fk.__version__}, scipy {scipy.__version__}, numpy {np.__version__}, pandas {pd.__version__}, "
          f"Python {platform.python_version()} on {platform.machine()}; best of {args.repeat}\n")

    ref, cur = frames(args.rows, args.columns)
    report = fk.drift.compare(ref, cur)  # also the warm-up: imports and first calls are not timed
    direct = scipy_directly(ref, cur)
    assert [c.test for c in report.columns] == ["wasserstein"] * args.columns, report.to_frame()
    np.testing.assert_allclose([c.statistic for c in report.columns], direct, rtol=1e-12)
    print(f"{args.rows:,} rows x {args.columns} columns; {len(report.drifted_columns)} drifted "
          f"(same distances as scipy directly)\n")

    ours = best_seconds(lambda: fk.drift.compare(ref, cur), args.repeat)
    floor = best_seconds(lambda: scipy_directly(ref, cur), args.repeat)
    ratio = ours / floor
    print(f"{'fk.drift.compare':<18} {ours * 1e3:>9.1f} ms")
    print(f"{'scipy directly':<18} {floor * 1e3:>9.1f} ms")
    print(f"{'ratio':<18} {ratio:>9.2f}x")
    print("\ntargets")
    print(f"  fk.drift.compare <= {RATIO_TARGET:g}x scipy directly: ratio {ratio:.2f} ({verdict(ratio <= RATIO_TARGET)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
