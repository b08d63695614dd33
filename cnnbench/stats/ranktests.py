"""The statistics behind a verdict: pure functions of lists of floats (no torch, numpy or scipy).

An exact one-sided Mann-Whitney U test on per-process figures, the repeats a rank test needs at a
level, and bootstrap intervals of a ratio of medians. Why these: docs/compare.md.
"""

from __future__ import annotations

import math
import random
import statistics
from typing import Sequence

from cnnbench.stats import basic as stats

__all__ = ["mann_whitney_greater", "min_attainable_p", "min_repeats_for_alpha", "repeats_needed", "bootstrap_ratio"]

# Power used when estimating how many repeats would settle a noisy case.
POWER = 0.80
# Bootstrap replicates; each draws a resampled median in O(1) (see `_draw_resample_median`).
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = "cnnbench.compare/1"
# Between-process spread (sd of log medians) assumed when no side has >= 3 repeats to measure it:
# the +-5% seen between processes on this machine kind, read as about two standard deviations.
ASSUMED_PROCESS_CV = 0.025
# Exact Mann-Whitney p-values up to this many values in total; a normal approximation beyond.
EXACT_MWU_MAX_N = 30
# Above this, `repeats_needed` is reported as None ("more than REPEATS_CAP").
REPEATS_CAP = 100
_NORMAL = statistics.NormalDist()



def _doubled_midranks(values: Sequence[float]) -> list[int]:
    """Ranks 1..N with ties averaged, doubled so that they are integers."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        doubled = (i + 1) + (j + 1)  # 2 * mean of positions i+1 .. j+1
        for k in range(i, j + 1):
            ranks[order[k]] = doubled
        i = j + 1
    return ranks


def mann_whitney_greater(x: Sequence[float], y: Sequence[float]) -> tuple[float, float]:
    """One-sided Mann-Whitney U test that `x` tends to be larger than `y`.

    Returns (U of x, p). The p-value is exact (the permutation distribution of the rank sum,
    conditional on the observed ties) up to EXACT_MWU_MAX_N values in total, and a normal
    approximation with tie and continuity corrections beyond. Exact matters here: repeat counts
    are small, where the normal approximation is poor.
    """
    nx, ny = len(x), len(y)
    if nx == 0 or ny == 0:
        return float("nan"), 1.0
    ranks = _doubled_midranks(list(x) + list(y))
    r2x = sum(ranks[:nx])
    u = r2x / 2.0 - nx * (nx + 1) / 2.0
    n = nx + ny
    if n <= EXACT_MWU_MAX_N:
        # counts[k][s]: subsets of size k of the items seen so far with doubled rank sum s.
        total = sum(sorted(ranks)[-nx:])
        counts = [[0] * (total + 1) for _ in range(nx + 1)]
        counts[0][0] = 1
        for seen, r in enumerate(ranks):
            for k in range(min(seen + 1, nx), 0, -1):
                row, prev = counts[k], counts[k - 1]
                for s in range(total, r - 1, -1):
                    if prev[s - r]:
                        row[s] += prev[s - r]
        hits = sum(counts[nx][r2x:])
        return u, hits / math.comb(n, nx)
    ties: dict[int, int] = {}
    for r in ranks:
        ties[r] = ties.get(r, 0) + 1
    tie_term = sum(t**3 - t for t in ties.values()) / (n * (n - 1))
    var = nx * ny / 12.0 * ((n + 1) - tie_term)
    if var <= 0:
        return u, 1.0
    z = (u - nx * ny / 2.0 - 0.5) / math.sqrt(var)
    return u, 1.0 - _NORMAL.cdf(z)


def min_attainable_p(n_x: int, n_y: int) -> float:
    """The smallest one-sided p a rank test can give with these sample sizes: 1 / C(n, n_x)."""
    if n_x <= 0 or n_y <= 0:
        return 1.0
    return 1.0 / math.comb(n_x + n_y, n_x)


def min_repeats_for_alpha(alpha: float) -> int:
    """The fewest repeats per side with which a rank test can reach `alpha` (5 for 0.01)."""
    n = 1
    while min_attainable_p(n, n) > alpha and n < 1000:
        n += 1
    return n


def repeats_needed(sigma: float, delta: float, *, alpha: float, power: float = POWER) -> int | None:
    """Roughly how many repeats per side would settle a case, or None if more than REPEATS_CAP.

    The usual two-sample size formula n = 2 ((z_alpha + z_power) sigma / delta)^2, times pi/2
    because the estimate is a median (its efficiency under normal noise is 2/pi), and never fewer
    than a rank test needs to reach `alpha` at all. `sigma` is the between-repeat spread of log
    medians, `delta` the distance (in log ratio) the data has to resolve: from "no change" when
    the estimate lies outside the band, from the band's edge when it lies inside. An estimate,
    not a promise: sigma itself is measured from a handful of repeats.
    """
    floor = min_repeats_for_alpha(alpha)
    if delta <= 0:
        return None
    z = _NORMAL.inv_cdf(1.0 - alpha) + _NORMAL.inv_cdf(power)
    n = math.ceil(math.pi * (z * sigma / delta) ** 2) if sigma > 0 else floor
    n = max(n, floor)
    return n if n <= REPEATS_CAP else None


_DIRECT_RESAMPLE_MAX_N = 64


def _draw_resample_median(xs: Sequence[float], rng: random.Random) -> float:
    """The median of one bootstrap resample of sorted `xs`, drawn in O(1) instead of O(n log n).

    A resample is n indices floor(n * U_i) with U_i uniform; floor is monotone, so its k-th
    smallest index is floor(n * U_(k)), and U_(k) ~ Beta(k, n + 1 - k). For an even n the next
    order statistic is U_(k) + (1 - U_(k)) * Beta(1, n - k). This is exact, and lets a bootstrap
    run over thousands of within-run samples per case without numpy.
    """
    n = len(xs)
    if n == 1:
        return xs[0]
    if n <= _DIRECT_RESAMPLE_MAX_N:  # a few repeat medians: drawing them directly is cheaper
        ys = sorted(rng.choices(xs, k=n))
        return ys[n // 2] if n % 2 else (ys[n // 2 - 1] + ys[n // 2]) / 2.0
    k = (n + 1) // 2
    u = rng.betavariate(k, n + 1 - k)
    lo = xs[min(int(u * n), n - 1)]
    if n % 2:
        return lo
    v = u + (1.0 - u) * rng.betavariate(1, n - k)
    return (lo + xs[min(int(v * n), n - 1)]) / 2.0


def _draw_resample_quantile(xs: Sequence[float], rng: random.Random, q: float) -> float:
    """The q-th percentile of one bootstrap resample of sorted `xs` (the median exactly as
    `_draw_resample_median`; otherwise the nearest-rank order statistic, drawn in O(1) the same
    way: the k-th smallest of n uniform indices is floor(n * U_(k)), U_(k) ~ Beta(k, n + 1 - k))."""
    if q == 50.0:
        return _draw_resample_median(xs, rng)
    n = len(xs)
    if n == 1:
        return xs[0]
    if n <= _DIRECT_RESAMPLE_MAX_N:
        return stats.percentile(rng.choices(xs, k=n), q)
    k = max(1, math.ceil(q / 100.0 * n))
    u = rng.betavariate(k, n + 1 - k)
    return xs[min(int(u * n), n - 1)]


def pooled_log_sd(*groups: Sequence[float]) -> float | None:
    """Pooled standard deviation of log values over groups with at least 2 values (None if none)."""
    ss, dof = 0.0, 0
    for g in groups:
        if len(g) >= 2:
            logs = [math.log(v) for v in g]
            mean = sum(logs) / len(logs)
            ss += sum((v - mean) ** 2 for v in logs)
            dof += len(logs) - 1
    return math.sqrt(ss / dof) if dof else None



def bootstrap_ratio(
    rb: list[float],
    rc: list[float],
    sb: list[float] | None,
    sc: list[float] | None,
    sigma: float,
    rng: random.Random,
    alpha: float,
    q: float = 50.0,
) -> tuple[float, float, float, float]:
    """Percentile bootstrap interval (level 1 - 2 alpha) of the ratio of the medians of the
    per-process figures.

    A side with several repeats is resampled over its per-process figures (between-process
    evidence). A single-run side (`sb`/`sc` given: its sorted samples) is resampled over its
    samples, taking the q-th percentile of each replicate (the per-process statistic), and
    for the widened interval each replicate also gets a process effect exp(N(0, sigma)).
    Returns (low, high) without and (low, high) with that widening. Small-sample percentile
    intervals are a little narrow; they only decide `unchanged`/`noisy`, never an alarm on the
    rank path.
    """
    xb, xc = sorted(sb if sb is not None else rb), sorted(sc if sc is not None else rc)
    raw, wide = [], []
    for _ in range(BOOTSTRAP_RESAMPLES):
        cur = _draw_resample_quantile(xc, rng, q) if sc is not None else _draw_resample_median(xc, rng)
        base = _draw_resample_quantile(xb, rng, q) if sb is not None else _draw_resample_median(xb, rng)
        d = math.log(cur) - math.log(base)
        raw.append(d)
        if sigma > 0 and (sb is not None or sc is not None):
            d += (rng.gauss(0.0, sigma) if sc is not None else 0.0) - (rng.gauss(0.0, sigma) if sb is not None else 0.0)
        wide.append(d)
    q = alpha * 100.0
    lo, hi = stats.percentile(raw, q), stats.percentile(raw, 100.0 - q)
    wlo, whi = stats.percentile(wide, q), stats.percentile(wide, 100.0 - q)
    return math.exp(lo), math.exp(hi), math.exp(wlo), math.exp(whi)


