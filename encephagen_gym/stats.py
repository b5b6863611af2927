"""Summary statistics shared by every script and table that prints a confidence interval.

One rule everywhere: a mean over n independent values (seeds, episodes, presentations) is reported with a
two-sided Student-t interval, ``mean ± t_{(1+c)/2, n−1} · s / √n`` — not the normal approximation, which is
too narrow for the few seeds a comparison usually has (n = 3: t = 4.30 vs z = 1.96).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
from scipy import stats

__all__ = ["format_mean_ci", "mean_ci", "t_interval_half_width"]


def t_interval_half_width(values: Iterable[float], confidence: float = 0.95) -> float:
    """Half-width of the t-interval of the mean of the finite ``values`` (NaN when fewer than two)."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence!r}")
    array = np.asarray(list(values), dtype=np.float64)
    array = array[np.isfinite(array)]
    if array.size < 2:
        return float("nan")
    quantile = stats.t.ppf(0.5 + confidence / 2.0, df=array.size - 1)
    return float(quantile * array.std(ddof=1) / math.sqrt(array.size))


def mean_ci(values: Iterable[float], confidence: float = 0.95) -> tuple[float, float]:
    """``(mean, half_width)`` of the finite ``values`` with a Student-t interval; NaN mean when none is
    finite, NaN half-width when fewer than two are."""
    array = np.asarray(list(values), dtype=np.float64)
    finite = array[np.isfinite(array)]
    mean = float(finite.mean()) if finite.size else float("nan")
    return mean, t_interval_half_width(finite, confidence)


def _clean(value: float, digits: int) -> str:
    text = f"{value:.{digits}f}"
    if float(text) == 0.0:  # "-0.00" → "0.00"
        text = f"{0.0:.{digits}f}"
    return text


def format_mean_ci(mean: float, half_width: float, digits: int = 2) -> str:
    """``"m ± h"`` with ``digits`` decimals; ``"m"`` alone when the half-width is NaN or rounds to zero,
    ``"n/a"`` when the mean is NaN. Negative zero prints as zero."""
    if not math.isfinite(mean):
        return "n/a"
    if not math.isfinite(half_width) or float(_clean(half_width, digits)) == 0.0:
        return _clean(mean, digits)
    return f"{_clean(mean, digits)} ± {_clean(half_width, digits)}"
