"""Change points in a series over commits: e-divisive means, as Apache Otava (Hunter) runs it.

The method is published and validated: Matteson & James, "A Nonparametric Approach for Multiple
Change Point Analysis of Multivariate Data" (2014) for the e-divisive statistic, and Fleming et
al., "Hunter: Using Change Point Detection to Hunt for Performance Regressions" (ICPE 2023) for
the split/merge procedure with a Student's t-test that Otava ships (otava/analysis.py,
`compute_change_points`). This module re-implements Otava's procedure in numpy, step for step:

1. **Split**: slide a window of `window_len` points (step window_len/2) over the series. Inside
   each window, repeatedly take the split point tau that maximises the energy-distance
   statistic Q-hat(tau, kappa) over every interval between the change points found so far, and
   keep it while a two-sided Student's t-test between the two sides (the interval split at
   tau) is significant at a relaxed level (10 x `max_pvalue`): the "weak" change points.
2. **Merge**: repeatedly drop the weakest change point (largest p-value, each p recomputed
   between its neighbouring change points) until every remaining one is significant at
   `max_pvalue` and changes the level by more than `min_magnitude`.

Differences from Otava, deliberate: the tests run on log values (a slowdown is a ratio, and the
ratio's interval is then symmetric); the t-test uses the unbiased sample variance (Otava passes
numpy's ddof=0 standard deviation to scipy's `ttest_ind_from_stats`); after dropping a change
point every remaining one is recomputed (Otava recomputes two); and a side shorter than
`min_segment` points is not tested (Otava accepts one point against many, which on a noisy
benchmark flags single outliers).

Each change point names the last commit before it and the first after it, the ratio of the
geometric means after/before (> 1 is slower), its 95% interval, the confidence (1 - p) and
the direction. A series with fewer than `MIN_POINTS` commits is "insufficient data"; one whose
commit-to-commit noise (within its segments, robust) exceeds `UNSTABLE_NOISE` is "unstable":
its change points are still listed, but the verdict says they cannot be trusted.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from cnnbench.core.units import fmt_pct

__all__ = [
    "ChangePoint",
    "Analysis",
    "analyze",
    "detect",
    "MAX_PVALUE",
    "WINDOW_LEN",
    "MIN_POINTS",
    "UNSTABLE_NOISE",
    "VERDICTS",
]

# Otava's defaults (compute_change_points): window 50 points, p <= 0.001, no minimum magnitude.
WINDOW_LEN = 50
MAX_PVALUE = 0.001
MIN_MAGNITUDE = 0.0
# Each side of a change point has at least this many commits (see the module docstring).
MIN_SEGMENT = 3
# Fewer commits than this: "insufficient data" (two sides of MIN_SEGMENT, less one shared).
MIN_POINTS = 2 * MIN_SEGMENT
# Robust sd of log values around their segment's median above this: "unstable". At 10% the
# per-commit noise equals a 10% step, which no single commit can then show.
UNSTABLE_NOISE = 0.10
VERDICTS = ("stable", "changed", "unstable", "insufficient data")


@dataclass(frozen=True)
class ChangePoint:
    """A level shift between `index - 1` and `index` (indices into the series)."""

    index: int
    ratio: float  # geometric mean after / before: > 1 is slower
    ratio_low: float  # 95% interval of the ratio (Student's t on the log difference)
    ratio_high: float
    pvalue: float
    mean_before: float  # geometric means, in the series' unit
    mean_after: float
    n_before: int
    n_after: int

    @property
    def direction(self) -> str:
        return "slower" if self.ratio > 1 else "faster"

    @property
    def confidence(self) -> float:
        return 1.0 - self.pvalue

    @property
    def confidence_text(self) -> str:
        """The confidence as shown: "> 99.99%" rather than a rounded "100.00%"."""
        return "> 99.99%" if self.pvalue < 1e-4 else fmt_pct(100.0 * self.confidence)

    @property
    def magnitude(self) -> float:
        """Otava's `change_magnitude`: the larger relative change, forwards or backwards."""
        return max(abs(self.ratio - 1.0), abs(1.0 / self.ratio - 1.0))


@dataclass(frozen=True)
class Analysis:
    verdict: str
    change_points: tuple[ChangePoint, ...]
    noise: float | None  # robust relative sd between commits within segments (None: too few points)


# -- the e-divisive statistic -------------------------------------------------------------------


@functools.lru_cache(maxsize=64)
def _split_grid(n: int, min_segment: int) -> tuple[np.ndarray, ...]:
    """The (tau, kappa) grid of `_best_split` for n points and its coefficients, made once per n."""
    tau, kappa = np.meshgrid(np.arange(1, n), np.arange(2, n + 1), indexing="ij")
    valid = (kappa > tau) & (tau >= min_segment) & (kappa - tau >= min_segment)
    nx = tau.astype(float)
    my = (kappa - tau).astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        c_xy = np.where(valid, 2.0 / kappa, 0.0)
        c_x = np.where(valid & (nx > 1), 2.0 * my / (kappa * (nx - 1)), 0.0)
        c_y = np.where(valid & (my > 1), 2.0 * nx / (kappa * (my - 1)), 0.0)
    return tau, kappa, valid, c_xy, c_x, c_y


def _best_split(z: np.ndarray, min_segment: int) -> tuple[int, float] | None:
    """The tau (1..n-1) maximising Q-hat(z[:tau], z[tau:kappa]) over kappa, and that Q-hat.

    Q-hat(X, Y) = 2/(n+m) sum|X_i - Y_j| - 2m/((n+m)(n-1)) sum_{i<k}|X_i - X_k|
                  - 2n/((n+m)(m-1)) sum_{j<k}|Y_j - Y_k|            (Matteson & James, alpha=1)
    with n = |X| = tau and m = |Y| = kappa - tau. W(a, b), the sum of |z_i - z_j| over
    a <= i < j < b, comes from one 2-D cumulative sum, so all (tau, kappa) cost O(n^2).
    """
    n = len(z)
    if n < 2 * min_segment:
        return None
    tau, kappa, valid, c_xy, c_x, c_y = _split_grid(n, min_segment)
    upper = np.triu(np.abs(z[:, None] - z[None, :]), k=1)
    # C[a, b] = sum_{i >= a} sum_{j < b} upper[i, j]  (= W(a, b), as upper[i, j] = 0 for j <= i)
    c = np.zeros((n + 1, n + 1))
    c[:n, 1:] = np.cumsum(np.cumsum(upper[::-1], axis=0)[::-1], axis=1)
    w_x = c[0, tau]
    w_y = c[tau, kappa]
    w_xy = c[0, kappa] - w_x - w_y
    q = np.where(valid, c_xy * w_xy - c_x * w_x - c_y * w_y, -np.inf)
    flat = int(np.argmax(q))
    return int(tau.flat[flat]), float(q.flat[flat])


def _betainc(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b), by its continued fraction (modified
    Lentz; Numerical Recipes' betacf, Press et al. 2007, sec. 6.4). Pure `math`: importing scipy
    for one function cost more than the whole change-point search of a history."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    if x > (a + 1.0) / (a + b + 2.0):  # the fraction converges fast only below this point
        return 1.0 - _betainc(b, a, 1.0 - x)
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        m2 = 2 * m
        for num in (m * (b - m) * x / ((a + m2 - 1.0) * (a + m2)), -(a + m) * (a + b + m) * x / ((a + m2) * (a + m2 + 1.0))):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return math.exp(log_front) * h / a


def student_t_two_sided_p(t: float, df: int) -> float:
    """P(|T| >= |t|) for Student's t with `df` degrees of freedom: I_{df/(df+t^2)}(df/2, 1/2)."""
    if not math.isfinite(t):
        return 0.0
    return min(1.0, max(0.0, _betainc(df / 2.0, 0.5, df / (df + t * t))))


@functools.lru_cache(maxsize=1024)
def student_t_quantile(q: float, df: int) -> float:
    """The t with P(T <= t) = q (0.5 < q < 1), by bisection on `student_t_two_sided_p`."""
    target = 2.0 * (1.0 - q)
    lo, hi = 0.0, 1.0
    while student_t_two_sided_p(hi, df) > target:
        hi *= 2.0
    for _ in range(60):  # hi - lo below 1e-18 of the start: far past what an interval shows
        mid = (lo + hi) / 2.0
        if student_t_two_sided_p(mid, df) > target:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2.0


class _Sums:
    """Prefix sums of a series (centred), so each t-test between z[a:t] and z[t:b] is O(1)."""

    def __init__(self, z: np.ndarray):
        centred = z - z.mean() if len(z) else z
        self.s1 = [0.0, *np.cumsum(centred).tolist()]
        self.s2 = [0.0, *np.cumsum(centred * centred).tolist()]

    def significant(self, a: int, t: int, b: int, max_pvalue: float) -> bool:
        """Is the t-test of z[a:t] vs z[t:b] significant at `max_pvalue`? (|t| against the
        cached critical value: no p-value to compute in the split step's many tests)."""
        _, diff, se = self.ttest(a, t, b, p_value=False)
        df = b - a - 2
        if df <= 0:
            return False
        if se == 0.0:
            return abs(diff) > 1e-12
        return abs(diff) / se >= student_t_quantile(1.0 - max_pvalue / 2.0, df)

    def ttest(self, a: int, t: int, b: int, *, p_value: bool = True) -> tuple[float, float, float]:
        """Two-sided Student's t-test (pooled variance) of z[a:t] vs z[t:b]:
        (p, mean difference right - left, its standard error); p is NaN without `p_value`."""
        s1, s2 = self.s1, self.s2
        n1, n2 = t - a, b - t
        sum1, sum2 = s1[t] - s1[a], s1[b] - s1[t]
        diff = sum2 / n2 - sum1 / n1
        df = n1 + n2 - 2
        if df <= 0:
            return 1.0, diff, math.inf
        ss = max(0.0, (s2[t] - s2[a]) - sum1 * sum1 / n1) + max(0.0, (s2[b] - s2[t]) - sum2 * sum2 / n2)
        se = math.sqrt(ss / df * (1.0 / n1 + 1.0 / n2))
        if se <= 1e-15 * max(1.0, abs(diff)):
            return (0.0 if abs(diff) > 1e-12 else 1.0), diff, 0.0
        return (student_t_two_sided_p(diff / se, df) if p_value else math.nan), diff, se


def _intervals(cps: Sequence[int], n: int) -> list[tuple[int, int]]:
    bounds = [0, *cps, n]
    return [(a, b) for a, b in zip(bounds, bounds[1:]) if b > a]


def _detect_window(z: np.ndarray, sums: _Sums, offset: int, max_pvalue: float, min_segment: int) -> list[int]:
    """E-divisive inside one window (z, starting at `offset` in the series `sums` sums): split
    the interval with the largest Q-hat while significant."""
    cps: list[int] = []
    while True:
        best: tuple[float, int, tuple[int, int]] | None = None
        for a, b in _intervals(cps, len(z)):
            found = _best_split(z[a:b], min_segment)
            if found is not None and (best is None or found[1] > best[0]):
                best = (found[1], a + found[0], (a, b))
        if best is None:
            return cps
        _, tau, (a, b) = best
        if not sums.significant(offset + a, offset + tau, offset + b, max_pvalue):
            return cps
        cps = sorted([*cps, tau])


def _split(z: np.ndarray, sums: _Sums, window_len: int, max_pvalue: float, min_segment: int) -> list[int]:
    """Otava's split step: e-divisive in sliding windows, the union of their change points."""
    step = max(1, window_len // 2)
    found: set[int] = set()
    start = 0
    while start < len(z):
        end = min(start + window_len, len(z))
        new = [start + i for i in _detect_window(z[start:end], sums, start, max_pvalue, min_segment)]
        found.update(new)
        start = max(new[-1] if new else 0, start + step)
    return sorted(found)


def _stats(sums: _Sums, n: int, cps: Sequence[int], min_segment: int) -> list[tuple[int, float, float, float, int, int]]:
    """For each change point: (index, p, log difference, its se, n before, n after), each
    tested between its neighbouring change points."""
    bounds = [0, *cps, n]
    out = []
    for k, idx in enumerate(cps):
        n1, n2 = idx - bounds[k], bounds[k + 2] - idx
        if n1 < min_segment or n2 < min_segment:
            out.append((idx, 1.0, 0.0, math.inf, n1, n2))
            continue
        p, diff, se = sums.ttest(bounds[k], idx, bounds[k + 2])
        out.append((idx, p, diff, se, n1, n2))
    return out


def _merge(sums: _Sums, n: int, cps: list[int], max_pvalue: float, min_magnitude: float, min_segment: int) -> list[int]:
    """Otava's merge step: drop the weakest change point until all are significant and large."""
    cps = sorted(set(cps))
    while cps:
        st = _stats(sums, n, cps, min_segment)
        weakest = max(range(len(st)), key=lambda i: st[i][1])
        if st[weakest][1] < max_pvalue:
            magnitude = [max(abs(math.expm1(s[2])), abs(math.expm1(-s[2]))) for s in st]
            weakest = min(range(len(st)), key=lambda i: magnitude[i])
            if magnitude[weakest] > min_magnitude:
                return cps
        del cps[weakest]
    return cps


def detect(
    values: Sequence[float],
    *,
    window_len: int = WINDOW_LEN,
    max_pvalue: float = MAX_PVALUE,
    min_magnitude: float = MIN_MAGNITUDE,
    min_segment: int = MIN_SEGMENT,
) -> list[ChangePoint]:
    """Change points of a positive series (e.g. per-commit latency in ms), oldest first."""
    x = np.asarray(values, dtype=float)
    if len(x) < 2 * min_segment or not np.all(np.isfinite(x)) or np.any(x <= 0):
        return []
    z = np.log(x)
    first_pass = max_pvalue * 10 if max_pvalue < 0.05 else (max_pvalue * 2 if max_pvalue < 0.5 else max_pvalue)
    sums = _Sums(z)
    weak = _split(z, sums, window_len, first_pass, min_segment)
    cps = _merge(sums, len(z), weak, max_pvalue, min_magnitude, min_segment)
    out = []
    bounds = [0, *cps, len(z)]
    for k, (idx, p, diff, se, n1, n2) in enumerate(_stats(sums, len(z), cps, min_segment)):
        df = n1 + n2 - 2
        half = student_t_quantile(0.975, df) * se if math.isfinite(se) and df > 0 else math.inf
        out.append(
            ChangePoint(
                index=idx,
                ratio=math.exp(diff),
                ratio_low=math.exp(diff - half) if math.isfinite(half) else 0.0,
                ratio_high=math.exp(diff + half) if math.isfinite(half) else math.inf,
                pvalue=p,
                mean_before=float(math.exp(z[bounds[k] : idx].mean())),
                mean_after=float(math.exp(z[idx : bounds[k + 2]].mean())),
                n_before=n1,
                n_after=n2,
            )
        )
    return out


def noise_level(values: Sequence[float], cps: Sequence[int]) -> float | None:
    """Robust relative sd between commits within segments: 1.4826 x MAD of the log values
    around their segment's median (None with fewer than 3 points)."""
    x = np.asarray(values, dtype=float)
    if len(x) < 3 or np.any(x <= 0):
        return None
    z = np.log(x)
    residuals = np.concatenate([z[a:b] - np.median(z[a:b]) for a, b in _intervals(list(cps), len(z))])
    return float(1.4826 * np.median(np.abs(residuals)))


def analyze(values: Sequence[float], **kwargs: float) -> Analysis:
    """The verdict of a series: "insufficient data", "unstable", "changed" or "stable"."""
    if len(values) < MIN_POINTS:
        return Analysis("insufficient data", (), None)
    cps = detect(values, **kwargs)  # type: ignore[arg-type]
    noise = noise_level(values, [c.index for c in cps])
    if noise is not None and noise > UNSTABLE_NOISE:
        return Analysis("unstable", tuple(cps), noise)
    return Analysis("changed" if cps else "stable", tuple(cps), noise)
