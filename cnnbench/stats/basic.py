"""Statistics on latency samples. Pure functions of lists of floats: no torch, no numpy.

The one place that decides how a median, a percentile or a confidence interval is computed, so a
table, a report and a regression check can never disagree about the same samples.
"""

from __future__ import annotations

import math
from typing import Sequence

__all__ = [
    "IQR_WARN_THRESHOLD",
    "percentile",
    "median",
    "summarize",
    "median_ci",
    "relative_ci_half_width",
]

# Named as in torch.utils.benchmark: above this IQR/median a row carries a visible warning.
IQR_WARN_THRESHOLD = 0.10


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) with linear interpolation (numpy's default method)."""
    if not values:
        raise ValueError("percentile of no values")
    xs = sorted(values)
    if len(xs) == 1:
        return float(xs[0])
    pos = (len(xs) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    frac = pos - lo
    return float(xs[lo] + (xs[hi] - xs[lo]) * frac)


def median(values: Sequence[float]) -> float:
    return percentile(values, 50.0)


def _binomial_ci_ranks(n: int, z: float = 1.959964) -> tuple[int, int]:
    """Ranks (0-based, inclusive) bounding a distribution-free ~95% CI of the median.

    Uses the normal approximation to the binomial order-statistic interval, which is what
    pyperf-style tools use; for small n the interval is simply the whole sample range.
    """
    half = z * math.sqrt(n) / 2.0
    lo = max(0, math.floor(n / 2.0 - half) - 1)
    hi = min(n - 1, math.ceil(n / 2.0 + half))
    return lo, hi


def median_ci(values: Sequence[float]) -> tuple[float, float]:
    """A distribution-free ~95% confidence interval for the median (order statistics)."""
    if not values:
        raise ValueError("median_ci of no values")
    xs = sorted(values)
    lo, hi = _binomial_ci_ranks(len(xs))
    return float(xs[lo]), float(xs[hi])


def relative_ci_half_width(values: Sequence[float]) -> float:
    """Half the width of the median's 95% CI, relative to the median (inf when undefined)."""
    if len(values) < 3:
        return math.inf
    lo, hi = median_ci(values)
    med = median(values)
    if med <= 0:
        return math.inf
    return (hi - lo) / 2.0 / med


def summarize(values: Sequence[float]) -> dict[str, float]:
    """The latency summary stored on every case (`latency_ms`), from raw per-call samples."""
    if not values:
        raise ValueError("summarize of no values")
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    q1, q3 = percentile(values, 25), percentile(values, 75)
    ci_lo, ci_hi = median_ci(values)
    return {
        "median": median(values),
        "mean": mean,
        "std": std,
        "iqr": q3 - q1,
        "min": float(min(values)),
        "max": float(max(values)),
        "p5": percentile(values, 5),
        "p25": q1,
        "p75": q3,
        "p90": percentile(values, 90),
        "p95": percentile(values, 95),
        "p99": percentile(values, 99),
        "ci95_low": ci_lo,
        "ci95_high": ci_hi,
        "n": n,
    }
