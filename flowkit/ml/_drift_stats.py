"""The statistics behind :mod:`flowkit.ml.drift`, one function per method; scipy does the work.

Each takes the two samples without their missing values (numpy arrays for a numeric column,
Series otherwise) and the column's kind (``"numeric"`` or ``"categorical"``), and returns
``(statistic, p-value or None, effect size)``: a test's effect size beside its p-value (the KS
statistic D, Cramér's V, |Cohen's h|), a distance's effect size being the distance itself.
numpy, pandas and scipy are imported where they are used, so importing flowkit stays light.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

__all__ = ["STATS"]

BIN_ABOVE = 20          # a numeric column with more unique values than this is binned for psi/js
PSI_FLOOR = 1e-4        # an empty bin's share, so that PSI stays finite


def _counts(rv: Any, cv: Any) -> tuple[np.ndarray, np.ndarray]:
    """Counts per category, over the categories either sample has (in one order)."""
    import pandas as pd

    r, c = pd.Series(rv), pd.Series(cv)
    if (r.dtype == bool) != (c.dtype == bool):  # True == 1 would merge categories across a change of type
        r, c = r.astype(str), c.astype(str)
    ref, cur = r.value_counts(), c.value_counts()
    keys = ref.index.union(cur.index, sort=False)
    ref, cur = ref.reindex(keys, fill_value=0).to_numpy(), cur.reindex(keys, fill_value=0).to_numpy()
    seen = (ref + cur) > 0  # a pandas categorical counts its unobserved categories too
    return ref[seen], cur[seen]


def _shares(rv: Any, cv: Any, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """The two samples as distributions: binned (a numeric column of many values) or per category."""
    import numpy as np

    if kind == "numeric" and len(np.unique(rv)) > BIN_ABOVE:
        edges = np.histogram_bin_edges(np.concatenate([rv, cv]), bins="sturges")
        ref, cur = np.histogram(rv, edges)[0], np.histogram(cv, edges)[0]
    else:
        ref, cur = _counts(rv, cv)
    return ref / ref.sum(), cur / cur.sum()


def _ks(rv: Any, cv: Any, kind: str) -> tuple[float, float, float]:
    from scipy import stats

    result = stats.ks_2samp(rv, cv)
    return result.statistic, result.pvalue, result.statistic


def _wasserstein(rv: Any, cv: Any, kind: str) -> tuple[float, None, float]:
    import numpy as np
    from scipy import stats

    distance = stats.wasserstein_distance(rv, cv) / max(float(np.std(rv)), 0.001)
    return distance, None, distance


def _chisquare(rv: Any, cv: Any, kind: str) -> tuple[float, float, float]:
    import numpy as np
    from scipy.stats import chi2_contingency, contingency

    table = np.vstack(_counts(rv, cv))
    if table.shape[1] < 2:  # one value on both sides: nothing differs
        return 0.0, 1.0, 0.0
    result = chi2_contingency(table, correction=False)
    return result.statistic, result.pvalue, contingency.association(table, method="cramer")


def _z(rv: Any, cv: Any, kind: str) -> tuple[float, float, float]:
    """The pooled two-proportion z-test: on a 2x2 table, chi-squared without correction is z squared."""
    import numpy as np
    from scipy.stats import chi2_contingency

    table = np.vstack(_counts(rv, cv))
    if table.shape[1] < 2:
        return 0.0, 1.0, 0.0
    result = chi2_contingency(table, correction=False)
    p_ref, p_cur = table[0, 0] / table[0].sum(), table[1, 0] / table[1].sum()
    z = math.copysign(math.sqrt(result.statistic), p_cur - p_ref)
    h = 2 * math.asin(math.sqrt(p_cur)) - 2 * math.asin(math.sqrt(p_ref))  # Cohen's h
    return z, result.pvalue, abs(h)


def _jensenshannon(rv: Any, cv: Any, kind: str) -> tuple[float, None, float]:
    from scipy.spatial import distance

    ref, cur = _shares(rv, cv, kind)
    value = float(distance.jensenshannon(ref, cur, base=2))
    return value, None, value


def _psi(rv: Any, cv: Any, kind: str) -> tuple[float, None, float]:
    """Population stability index: sum of (cur - ref) * ln(cur / ref) over bins, empty bins floored."""
    import numpy as np

    ref, cur = _shares(rv, cv, kind)
    ref, cur = np.where(ref == 0, PSI_FLOOR, ref), np.where(cur == 0, PSI_FLOOR, cur)
    value = float(np.sum((cur - ref) * np.log(cur / ref)))
    return value, None, value


STATS: dict[str, Callable[[Any, Any, str], tuple[float, float | None, float]]] = {
    "ks": _ks, "wasserstein": _wasserstein, "chisquare": _chisquare, "z": _z, "jensenshannon": _jensenshannon,
    "psi": _psi,
}
