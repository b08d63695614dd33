"""Compare two results files: pair cases by key, decide with statistics, then render.

Compute, then render (as google/benchmark's `get_difference_report`): `compare_results` returns
plain records, a `Comparison` of `CaseComparison` rows; `render_markdown`, `render_terminal` and
`to_json` only present them and decide nothing. Pure Python: no torch, no numpy, no scipy.

Why the statistics look like this
---------------------------------
On a shared machine a resnet18 case moves about +-5% between worker processes and drifts about
8% over half an hour, while the thousands of calls *within* one process agree closely. So the
within-process samples are not independent evidence about a code change: a test that pools them
(thousands of "observations" per side) finds a "significant" difference between any two processes,
which is the false-alarm flood a CI gate must not produce. The unit of evidence is therefore one
number per worker process: a statistic of its own per-call samples, by default their 5th
percentile (`--statistic`, `STATISTICS`).

Why a low percentile by default: the noise of a shared machine is one-sided. Another tenant only
ever slows a call down, so a process's samples are a mix of uncontended calls and interfered
ones, and its *median* moves whenever more than half of its short timed window was interfered
with. Measured here (benchmarks/compare_validation.py, 30 A/A process pairs of a ~0.55 ms case):
per-process medians ranged 0.53..1.02 ms (between-process sd 14%) while the p5 stayed within
0.517..0.537 ms except for one process that was slow throughout (sd 7.8% with it); the rule
below then gave 0 false alarms per 100 A/A comparisons instead of 2.25, and detected a +10%
slowdown in 83% of comparisons instead of 35%. The price: a change that slows only some calls
(under 95% of them) does not move the p5. `--statistic median` catches it, on a machine quiet
enough for medians.

Point estimate: the ratio of the medians of the per-process figures, current / base (> 1 is slower).

With at least two repeats per side (the *rank* path), a case is

* `regressed` when the ratio exceeds 1 + threshold **and** a one-sided Mann-Whitney U test on the
  per-process figures says current is slower at level `alpha` (exact permutation p-value, ties
  handled). Under "no change" the per-process figures of both sides are exchangeable, so the test
  alone already bounds the false-alarm rate per case by `alpha` (1% by default); requiring the
  estimate to clear the threshold as well removes real-but-tiny changes and makes false alarms
  from noise far rarer still. The test is against "no change", not against "change = threshold"
  (which would need the whole interval above the threshold): with 5 repeats per side and 2.5%
  between-process noise, the latter catches a real +10% slowdown half the time, this rule 97%.
* `improved`: the mirror image (ratio below 1 / (1 + threshold), test in the other direction).
  The band is symmetric in log space, so "+5% then back" is a round trip.
* `unchanged` when a bootstrap confidence interval of the ratio (level 1 - 2*alpha, i.e. an
  equivalence test at `alpha` from each side) lies inside the band [1/(1+t), 1+t].
* `noisy` otherwise: too little evidence either way. The row says roughly how many repeats per
  side would settle it (`repeats_needed`).

A rank test has a floor on its p-value: with n repeats per side the smallest attainable one-sided
p is 1 / C(2n, n): 0.17 for 2, 0.05 for 3, 0.014 for 4, 0.004 for 5. At the default alpha of
0.01 a case therefore needs **at least 5 repeats per side** to be called regressed or improved;
with fewer it is `noisy` (or `unchanged`), and the row says so rather than lowering the bar.

With a single repeat on a side (the *bootstrap* path) there is no between-process evidence at all.
The within-run bootstrap of the median alone would be a pooled-sample test in disguise, so it is
widened: each bootstrap replicate of a single-run side gets a random process effect with the
between-process spread (observed from the other side's repeats when it has at least 3, else the
assumed `ASSUMED_PROCESS_CV`). `regressed`/`improved` need that widened interval to clear the
threshold entirely; `unchanged` needs only the within-run interval inside the band (it never fails
a build); anything else is `noisy`. Conservative where it matters: a single slow process reads as
noisy, not as a regression.

Everything random is seeded from the case key, so the same files always give the same verdicts.

Memory has one figure per case (no distribution): it regresses when it grows by more than the
memory threshold and by more than a small absolute floor (RSS moves in allocator-sized steps).

Drift is a bias, not noise: no test on a stored baseline from half an hour ago can tell drift
from a slowdown. Interleaved A/B runs (`bench.py ab`) remove it; for stored baselines the
threshold is the only guard, and a baseline from another machine gives a warning.
"""

from __future__ import annotations

import math
import random
import re
import statistics
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

from cnnbench import stats
from cnnbench.errors import UserError

if TYPE_CHECKING:  # pragma: no cover
    from rich.console import Console

__all__ = [
    "VERDICTS",
    "Threshold",
    "ThresholdError",
    "parse_threshold",
    "CaseComparison",
    "Comparison",
    "compare_results",
    "STATISTICS",
    "DEFAULT_STATISTIC",
    "render_markdown",
    "render_terminal",
    "to_json",
]

# -- verdicts and named constants -------------------------------------------------------------

REGRESSED = "regressed"
IMPROVED = "improved"
UNCHANGED = "unchanged"
NOISY = "noisy"
FAILED = "failed"
INVALID = "invalid"
INCOMPARABLE = "incomparable"
MISSING = "missing"
NEW = "new"
# Also the order of the sections in the rendered report (regressions first, unchanged last).
VERDICTS = (REGRESSED, IMPROVED, NOISY, FAILED, MISSING, NEW, INCOMPARABLE, INVALID, UNCHANGED)
# Verdicts whose ratio is a valid comparison (enter the geometric mean).
_TIMED = (REGRESSED, IMPROVED, UNCHANGED, NOISY)

METRICS = ("latency", "memory")
DEFAULT_LATENCY_THRESHOLD = 0.05
DEFAULT_MEMORY_THRESHOLD = 0.10
DEFAULT_ALPHA = 0.01
# The one figure taken from each worker process for the comparison: the percentile of that
# process's own per-call samples. A low percentile is the default because the noise of a shared
# machine is one-sided (other tenants only ever slow a call down): on this 2-core machine the
# p5 of a ~0.55 ms case stayed within 0.517..0.537 ms across processes while the medians ranged
# from 0.53 to 1.02 ms (benchmarks/compare_validation.py; docs/compare.md). "median" catches a
# regression that slows only some calls; choose it on a quiet, dedicated machine.
STATISTICS: dict[str, float] = {"median": 50.0, "p25": 25.0, "p10": 10.0, "p5": 5.0, "min": 0.0}
DEFAULT_STATISTIC = "p5"

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
# Memory figures, in order of preference, and the growth below which a change is not reported
# (peak RSS moves in allocator-arena steps; CUDA allocated bytes are deterministic).
MEMORY_METRICS = ("cuda_peak_allocated_bytes", "peak_rss_delta_bytes")
MEMORY_NOISE_FLOOR_BYTES = {"cuda_peak_allocated_bytes": 0, "peak_rss_delta_bytes": 8 * 2**20}

# Environment fields that make timings incomparable, and which cases each one concerns.
_BLOCKING_ENV = (
    ("torch", lambda spec: True),
    ("gpu_name", lambda spec: spec.get("device") == "cuda"),
    ("onnxruntime", lambda spec: spec.get("backend") == "onnxrt"),
)
# Environment fields that only earn a warning on the whole comparison.
_MACHINE_ENV = ("hostname", "machine_fingerprint", "cpu_model")
_SOFT_ENV = ("python", "torchvision")
_SPEC_FIELDS = ("device", "precision")

_NORMAL = statistics.NormalDist()


# -- thresholds -------------------------------------------------------------------------------


class ThresholdError(UserError, ValueError):
    """A threshold that cannot be parsed (shown as one line, exit code 2)."""


@dataclass(frozen=True)
class Threshold:
    """A relative threshold for one metric, parsed once (as pytest-benchmark's rules are).

    `rel` is a fraction (0.05 for 5%). A ratio current/base *exceeds* it above 1 + rel and
    *undercuts* it below 1 / (1 + rel): the band is symmetric in log space.
    """

    rel: float
    metric: str = "latency"
    source: str = "default"

    @property
    def upper(self) -> float:
        return 1.0 + self.rel

    @property
    def lower(self) -> float:
        return 1.0 / (1.0 + self.rel)

    def exceeded(self, ratio: float) -> bool:
        """True when `ratio` is worse (larger) than the threshold allows."""
        return ratio > self.upper

    def undercut(self, ratio: float) -> bool:
        """True when `ratio` is better (smaller) than the threshold's mirror image."""
        return ratio < self.lower

    def contains(self, low: float, high: float) -> bool:
        """True when the whole interval [low, high] lies inside the band."""
        return self.lower <= low and high <= self.upper

    def __str__(self) -> str:
        return f"{self.rel * 100:g}%"


_THRESHOLD_RE = re.compile(r"^\s*(?:(?P<metric>[A-Za-z_]+)\s*:)?\s*(?P<num>[+]?(\d+(\.\d*)?|\.\d+))\s*(?P<pct>%)?\s*$")


def parse_threshold(value: str | float | Threshold, *, metric: str = "latency", source: str = "argument") -> Threshold:
    """Parse a threshold: "5%", "latency:5%", "memory:10%", 0.05 or "0.05" (a fraction).

    A bare number is a fraction, so it must be below 1: `5` is refused rather than read as 500%
    (write "5%"). A "metric:" prefix overrides `metric`.

    Raises:
        ThresholdError: the value does not parse, is negative, or names an unknown metric.
    """
    if isinstance(value, Threshold):
        return value
    if isinstance(value, bool):
        raise ThresholdError(f"threshold must be a percentage like '5%' or a fraction like 0.05, got {value!r}")
    if isinstance(value, (int, float)):
        number, percent = float(value), False
        shown = repr(value)
    elif isinstance(value, str):
        m = _THRESHOLD_RE.match(value)
        if not m:
            raise ThresholdError(f"threshold must look like '5%', 'memory:10%' or 0.05, got {value!r}")
        metric = (m.group("metric") or metric).lower()
        number, percent = float(m.group("num")), bool(m.group("pct"))
        shown = repr(value)
    else:
        raise ThresholdError(f"threshold must be a percentage like '5%' or a fraction, got {type(value).__name__}")
    if metric not in METRICS:
        raise ThresholdError(f"unknown threshold metric {metric!r} (known: {', '.join(METRICS)})")
    if not math.isfinite(number) or number < 0:
        raise ThresholdError(f"threshold must be a non-negative percentage, got {shown}")
    if percent:
        rel = number / 100.0
    elif number >= 1:
        raise ThresholdError(f"threshold {shown} is ambiguous: write '{number:g}%' or a fraction like 0.05")
    else:
        rel = number
    return Threshold(rel=rel, metric=metric, source=source)


def _suite_threshold(value: Any, metric: str, where: str) -> Threshold:
    """A threshold as the suite file wrote it: "5%" or a bare number that means *percent*."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return parse_threshold(f"{float(value)}%", metric=metric, source=where)
    try:
        return parse_threshold(value, metric=metric, source=where)
    except ThresholdError as exc:
        raise ThresholdError(f"{where}: {exc}") from exc


def _resolve_thresholds(
    explicit: Mapping[str, Any] | None, base: dict[str, Any], current: dict[str, Any], fallback_latency: Any
) -> tuple[dict[str, Threshold], list[str]]:
    """Per metric: an explicit threshold, else the current file's suite, else the base's, else the default.

    A suite's `throughput` threshold (a drop in throughput) is turned into the latency threshold
    it implies (1 / (1 - x) - 1) when the suite sets no latency threshold.
    """
    explicit = dict(explicit or {})
    notes: list[str] = []
    out: dict[str, Threshold] = {}
    for metric in METRICS:
        if metric in explicit and explicit[metric] is not None:
            out[metric] = parse_threshold(explicit[metric], metric=metric, source="command line")
            continue
        for label, results in (("current", current), ("base", base)):
            suite_thr = ((results.get("suite") or {}).get("thresholds")) or {}
            if metric in suite_thr:
                out[metric] = _suite_threshold(suite_thr[metric], metric, f"{label} suite")
                break
            if metric == "latency" and "throughput" in suite_thr:
                thr = _suite_threshold(suite_thr["throughput"], "latency", f"{label} suite")
                if thr.rel >= 1:
                    raise ThresholdError(f"{label} suite: a throughput threshold must be below 100%")
                out[metric] = Threshold(1.0 / (1.0 - thr.rel) - 1.0, "latency", f"{label} suite (throughput {thr})")
                break
        else:
            if metric == "latency":
                out[metric] = parse_threshold(fallback_latency, metric="latency", source="default")
            else:
                out[metric] = Threshold(DEFAULT_MEMORY_THRESHOLD, metric, "default")
    for label, results in (("base", base), ("current", current)):
        suite_thr = ((results.get("suite") or {}).get("thresholds")) or {}
        for metric, value in suite_thr.items():
            if metric not in METRICS and metric != "throughput":
                notes.append(f"{label} suite sets a threshold for {metric!r}, which compare does not check")
    return out, notes


# -- statistics (pure functions of lists of floats) ---------------------------------------------


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


def _pooled_log_sd(*groups: Sequence[float]) -> float | None:
    """Pooled standard deviation of log values over groups with at least 2 values (None if none)."""
    ss, dof = 0.0, 0
    for g in groups:
        if len(g) >= 2:
            logs = [math.log(v) for v in g]
            mean = sum(logs) / len(logs)
            ss += sum((v - mean) ** 2 for v in logs)
            dof += len(logs) - 1
    return math.sqrt(ss / dof) if dof else None


# -- records ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CaseComparison:
    """One paired (or unpaired) case and its verdict. Plain data: rendering decides nothing.

    Ratios are current / base (above 1 is slower or bigger). `base_median_ms`/`current_median_ms`
    are the medians over each side's worker processes of the per-process figure compared
    (`statistic`; for a missing or new case, of its repeat medians). `ci_low`/`ci_high` bound the
    latency ratio at `confidence`; `p_value` is the one-sided Mann-Whitney p in the direction of the
    estimate (rank path only). `method` is "mann-whitney" or "bootstrap". `gating` marks rows
    that make the comparison fail: a latency or memory regression, or a case that was ok in base
    and fails (or fails parity) in current.
    """

    key: str
    verdict: str
    label: str
    reason: str = ""
    spec: dict[str, Any] = field(default_factory=dict)
    base_status: str | None = None
    current_status: str | None = None
    error: str | None = None
    base_median_ms: float | None = None
    current_median_ms: float | None = None
    ratio: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    confidence: float | None = None
    p_value: float | None = None
    method: str | None = None
    base_repeats: int = 0
    current_repeats: int = 0
    repeats_needed: int | None = None
    memory_metric: str | None = None
    base_memory_bytes: float | None = None
    current_memory_bytes: float | None = None
    memory_ratio: float | None = None
    memory_verdict: str | None = None
    gating: bool = False
    statistic: str | None = None  # the per-process figure this row compared (None: no timing)

    @property
    def section(self) -> str:
        """The report section: regressions (latency or memory) first, then by verdict."""
        if self.verdict == REGRESSED or self.memory_verdict == REGRESSED:
            return REGRESSED
        return self.verdict


@dataclass(frozen=True)
class Comparison:
    """The whole comparison: rows in file order, thresholds used, summary and warnings."""

    rows: tuple[CaseComparison, ...]
    thresholds: dict[str, Threshold]
    alpha: float
    geomean_ratio: float | None
    geomean_cases: int
    warnings: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    base_info: dict[str, Any] = field(default_factory=dict)
    current_info: dict[str, Any] = field(default_factory=dict)
    statistic: str = DEFAULT_STATISTIC  # the per-process figure compared (STATISTICS)

    @property
    def confidence(self) -> float:
        return 1.0 - 2.0 * self.alpha

    @property
    def has_regression(self) -> bool:
        """True when any row gates (latency or memory regression, or a newly failing case)."""
        return any(r.gating for r in self.rows)

    @property
    def counts(self) -> dict[str, int]:
        out = {v: 0 for v in VERDICTS}
        for r in self.rows:
            out[r.verdict] += 1
        return out

    def section(self, name: str) -> list[CaseComparison]:
        """Rows of one report section, the worst first where there is an order."""
        rows = [r for r in self.rows if r.section == name]
        if name == REGRESSED:
            rows.sort(key=lambda r: -max(r.ratio or 0.0, r.memory_ratio or 0.0))
        elif name == IMPROVED:
            rows.sort(key=lambda r: r.ratio or 0.0)
        return rows


# -- the comparison -----------------------------------------------------------------------------


def compare_results(
    base: dict[str, Any],
    current: dict[str, Any],
    *,
    threshold: float | str | Threshold = DEFAULT_LATENCY_THRESHOLD,
    alpha: float = DEFAULT_ALPHA,
    thresholds: Mapping[str, Any] | None = None,
    base_name: str | None = None,
    current_name: str | None = None,
    statistic: str = DEFAULT_STATISTIC,
    alpha_by_key: Mapping[str, float] | None = None,
) -> Comparison:
    """Pair the cases of two loaded results files by key and give each a verdict.

    Args:
        base: the reference results (as `cnnbench.results.load_results` returns them).
        current: the results under test.
        threshold: the latency threshold used when neither `thresholds` nor a suite sets one.
        alpha: the significance level of each one-sided test (false-alarm rate per case).
        thresholds: explicit per-metric thresholds ("latency", "memory"), e.g. from the command
            line; they win over the suite's (`suite.thresholds` in the files, current first).
        base_name: how to call the base in reports (e.g. its path).
        current_name: how to call the current results in reports.
        statistic: the figure taken from each worker process's samples (a key of STATISTICS):
            the tests, intervals and ratios are on these per-process figures.
        alpha_by_key: a level per case key that replaces `alpha` for that case (a sequential
            A/B run judges each case at the level of the look it stopped at: cnnbench.sequential).

    Returns:
        A `Comparison`; nothing is printed.

    Raises:
        ThresholdError: a threshold that does not parse.
        UserError: alpha outside (0, 0.5), or an unknown statistic.
    """
    if not (isinstance(alpha, (int, float)) and 0 < alpha < 0.5):
        raise UserError(f"alpha must be between 0 and 0.5, got {alpha!r}")
    if statistic not in STATISTICS:
        raise UserError(f"unknown statistic {statistic!r} (choose from {', '.join(STATISTICS)})")
    thr, notes = _resolve_thresholds(thresholds, base, current, threshold)
    base_env = base.get("environment") or {}
    cur_env = current.get("environment") or {}
    warnings: list[str] = []
    blocking = _environment_differences(base_env, cur_env, warnings)

    base_cases = _index(base, "base", warnings)
    cur_cases = _index(current, "current", warnings)
    rows: list[CaseComparison] = []
    for key, b in base_cases.items():
        c = cur_cases.get(key)
        if c is None:
            rows.append(_unpaired(key, b, MISSING, "in base only"))
        else:
            case_alpha = (alpha_by_key or {}).get(key, alpha)
            rows.append(_compare_case(key, b, c, thr, case_alpha, blocking, statistic))
    for key, c in cur_cases.items():
        if key not in base_cases:
            rows.append(_unpaired(key, c, NEW, "in current only"))

    timed = [r.ratio for r in rows if r.verdict in _TIMED and r.ratio and r.ratio > 0]
    geomean = math.exp(sum(math.log(x) for x in timed) / len(timed)) if timed else None

    n_incomp = sum(r.verdict == INCOMPARABLE for r in rows)
    if n_incomp:
        warnings.append(f"{n_incomp} case(s) incomparable: their timings are not compared")
    floor = min_repeats_for_alpha(alpha)
    single = [r for r in rows if r.verdict in _TIMED and min(r.base_repeats, r.current_repeats) == 1]
    few = [r for r in rows if r.verdict in _TIMED and 2 <= min(r.base_repeats, r.current_repeats) < floor]
    if single:
        warnings.append(
            f"{len(single)} case(s) have a single repeat on a side: between-process noise is not measured there, "
            f"so only large changes can be called (use `measure.repeats: {max(floor, 2)}` or more)"
        )
    if few:
        warnings.append(
            f"{len(few)} case(s) have fewer than {floor} repeats on a side: at alpha {alpha:g} a rank "
            f"test cannot call them regressed or improved (use `measure.repeats: {floor}` or more)"
        )
    fallback = [r for r in rows if r.statistic is not None and r.statistic != statistic]
    if fallback:
        warnings.append(
            f"{len(fallback)} case(s) compared on per-repeat medians, not {statistic}: "
            "their files keep no per-call samples"
        )
    if rows and not timed:
        warnings.append("no case could be compared")
    return Comparison(
        rows=tuple(rows),
        thresholds=thr,
        alpha=float(alpha),
        geomean_ratio=geomean,
        geomean_cases=len(timed),
        warnings=tuple(warnings),
        notes=tuple(notes),
        base_info=_file_info(base, base_name),
        current_info=_file_info(current, current_name),
        statistic=statistic,
    )


def _file_info(results: dict[str, Any], name: str | None) -> dict[str, Any]:
    env = results.get("environment") or {}
    suite = results.get("suite") or {}
    return {
        "name": name,
        "created": results.get("created"),
        "hostname": env.get("hostname"),
        "git_commit": (env.get("git") or {}).get("commit") if isinstance(env.get("git"), dict) else None,
        "suite": suite.get("name"),
        "cases": len(results.get("cases") or []),
    }


def _index(results: dict[str, Any], label: str, warnings: list[str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for rec in results.get("cases") or []:
        if not isinstance(rec, dict) or "key" not in rec:
            warnings.append(f"{label}: a case without a key was skipped")
            continue
        if rec["key"] in out:
            warnings.append(f"{label}: case {rec['key']} appears twice; the last one is used")
        out[rec["key"]] = rec
    return out


def _env_value(env: dict[str, Any], name: str) -> Any:
    value = env.get(name)
    return None if value in ("", None) else value


def _environment_differences(base_env: dict[str, Any], cur_env: dict[str, Any], warnings: list[str]) -> list:
    """Blocking differences (field, base, current, applies) and warnings for the soft ones."""
    blocking = []
    for name, applies in _BLOCKING_ENV:
        b, c = _env_value(base_env, name), _env_value(cur_env, name)
        if b is not None and c is not None and b != c:
            blocking.append((name, b, c, applies))
        elif (b is None) != (c is None):
            side = "base" if b is None else "current"
            warnings.append(f"environment field {name!r} is missing in {side}: cannot check that it matches")
    machine = [n for n in _MACHINE_ENV if _differs(base_env, cur_env, n)]
    if machine:
        what = ", ".join(f"{n} {_env_value(base_env, n)!r} vs {_env_value(cur_env, n)!r}" for n in machine)
        warnings.append(f"base and current were measured on different machines ({what}): compare on the same machine when gating")
    for name in _SOFT_ENV:
        if _differs(base_env, cur_env, name):
            warnings.append(f"{name} differs: {_env_value(base_env, name)!r} (base) vs {_env_value(cur_env, name)!r} (current)")
    return blocking


def _differs(a: dict[str, Any], b: dict[str, Any], name: str) -> bool:
    x, y = _env_value(a, name), _env_value(b, name)
    return x is not None and y is not None and x != y


def _label(key: str) -> str:
    """A shorter, still unique, label: the key without the default mode and separators."""
    return " ".join(p for p in key.split("|") if p != "inference")


def _one_line(text: Any, limit: int = 200) -> str | None:
    if text in (None, ""):
        return None
    lines = [ln.strip() for ln in str(text).strip().splitlines() if ln.strip()]
    line = lines[-1] if lines else ""  # a traceback's last line says what went wrong
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _unpaired(key: str, rec: dict[str, Any], verdict: str, reason: str) -> CaseComparison:
    status = rec.get("status")
    med = _median_ms(rec)
    return CaseComparison(
        key=key,
        verdict=verdict,
        label=_label(key),
        reason=reason + (f" ({status})" if status and status != "ok" else ""),
        spec=dict(rec.get("spec") or {}),
        base_status=status if verdict == MISSING else None,
        current_status=status if verdict == NEW else None,
        error=_one_line(rec.get("error")),
        base_median_ms=med if verdict == MISSING else None,
        current_median_ms=med if verdict == NEW else None,
    )


def _parity_failed(rec: dict[str, Any]) -> bool:
    parity = rec.get("parity")
    return rec.get("status") == "fail_accuracy" or (isinstance(parity, dict) and parity.get("ok") is False)


def _repeat_medians(rec: dict[str, Any]) -> list[float]:
    meds = [float(m) for m in (rec.get("repeat_medians_ms") or []) if m is not None]
    if not meds and rec.get("samples_ms"):
        meds = [stats.median(rec["samples_ms"])]
    return meds


def _repeat_values(rec: dict[str, Any], statistic: str) -> list[float] | None:
    """One figure per worker process: the `statistic` of that process's own samples (for
    "median", the record's `repeat_medians_ms`). A record without per-run samples but with
    pooled ones counts as one process; None when the record keeps no samples at all (only
    `repeat_medians_ms`), so the statistic cannot be computed."""
    if statistic == "median":
        return _repeat_medians(rec)
    q = STATISTICS[statistic]
    runs = [r for r in rec.get("runs") or [] if r.get("status") == "ok" and r.get("samples_ms")]
    if runs:
        return [stats.percentile([float(x) for x in r["samples_ms"]], q) for r in runs]
    if rec.get("samples_ms"):
        return [stats.percentile([float(x) for x in rec["samples_ms"]], q)]
    return None if rec.get("repeat_medians_ms") else []


def _median_ms(rec: dict[str, Any]) -> float | None:
    meds = _repeat_medians(rec)
    return stats.median(meds) if meds else None


def _run_samples(rec: dict[str, Any]) -> list[float]:
    """The samples of a single-run side: its one ok run's samples, else the pooled ones."""
    ok_runs = [r for r in rec.get("runs") or [] if r.get("status") == "ok" and r.get("samples_ms")]
    samples = ok_runs[0]["samples_ms"] if len(ok_runs) == 1 else rec.get("samples_ms") or []
    return sorted(float(s) for s in samples)


def _compare_case(
    key: str,
    b: dict[str, Any],
    c: dict[str, Any],
    thr: dict[str, Threshold],
    alpha: float,
    blocking: list,
    statistic: str = DEFAULT_STATISTIC,
) -> CaseComparison:
    spec = dict(c.get("spec") or b.get("spec") or {})
    bs, cs = b.get("status"), c.get("status")
    common = dict(key=key, label=_label(key), spec=spec, base_status=bs, current_status=cs)
    base_good = bs == "ok" and not _parity_failed(b)

    hard = [s for s in (bs, cs) if s not in ("ok", "fail_accuracy")]
    if hard:
        side = "current" if cs not in ("ok", "fail_accuracy") else "base"
        sides = "both" if len(hard) == 2 else side
        error = _one_line(c.get("error") if side == "current" else b.get("error"))
        return CaseComparison(
            verdict=FAILED,
            reason=f"{sides} failed: base {bs}, current {cs}",
            error=error,
            gating=base_good and cs not in ("ok", "fail_accuracy"),
            **common,
        )
    if _parity_failed(b) or _parity_failed(c):
        sides = [n for n, rec in (("base", b), ("current", c)) if _parity_failed(rec)]
        detail = _parity_detail(c if "current" in sides else b)
        return CaseComparison(
            verdict=INVALID,
            reason=f"parity failed in {' and '.join(sides)}: timing not valid{detail}",
            gating=base_good and _parity_failed(c),
            **common,
        )

    rb, rc = _repeat_values(b, statistic), _repeat_values(c, statistic)
    if rb is None or rc is None:  # a side keeps only repeat medians: compare both sides on those
        statistic = "median"
        rb, rc = _repeat_medians(b), _repeat_medians(c)
    common["statistic"] = statistic
    if not rb or not rc or min(rb + rc) <= 0:
        side = "base" if not rb else "current"
        return CaseComparison(verdict=FAILED, reason=f"{side} is ok but has no latency samples", **common)

    reasons = []
    for name in _SPEC_FIELDS:
        bv, cv = (b.get("spec") or {}).get(name), (c.get("spec") or {}).get(name)
        if bv != cv:
            reasons.append(f"{name} {bv} vs {cv}")
    for name, bv, cv, applies in blocking:
        if applies(spec):
            reasons.append(f"{name} {bv} vs {cv}")
    base_med, cur_med = stats.median(rb), stats.median(rc)
    if reasons:
        return CaseComparison(
            verdict=INCOMPARABLE,
            reason="different " + "; ".join(reasons),
            base_median_ms=base_med,
            current_median_ms=cur_med,
            base_repeats=len(rb),
            current_repeats=len(rc),
            **common,
        )

    latency = _latency_verdict(key, b, c, rb, rc, thr["latency"], alpha, statistic)
    memory = _memory_verdict(b, c, thr["memory"])
    gating = latency["verdict"] == REGRESSED or memory.get("memory_verdict") == REGRESSED
    return CaseComparison(
        base_median_ms=base_med,
        current_median_ms=cur_med,
        base_repeats=len(rb),
        current_repeats=len(rc),
        gating=gating,
        **latency,
        **memory,
        **common,
    )


def _parity_detail(rec: dict[str, Any]) -> str:
    parity = rec.get("parity")
    if not isinstance(parity, dict):
        return f" ({_one_line(rec.get('error'))})" if rec.get("error") else ""
    parts = [f"{k}={parity[k]:.3g}" for k in ("max_abs_err", "max_rel_err", "top1_agreement") if isinstance(parity.get(k), (int, float))]
    return f" ({', '.join(parts)})" if parts else ""


def _pct(ratio: float) -> str:
    return f"{(ratio - 1.0) * 100:+.1f}%"


def _latency_verdict(
    key: str,
    b: dict[str, Any],
    c: dict[str, Any],
    rb: list[float],
    rc: list[float],
    thr: Threshold,
    alpha: float,
    statistic: str = DEFAULT_STATISTIC,
) -> dict[str, Any]:
    """Verdict, interval, p-value and reason for one comparable pair (see the module docstring).
    `rb`/`rc` are the per-process figures (`statistic`) of each side."""
    ratio = stats.median(rc) / stats.median(rb)
    confidence = 1.0 - 2.0 * alpha
    rng = random.Random(f"{BOOTSTRAP_SEED}|{key}")
    floor = min_repeats_for_alpha(alpha)
    log_r, log_t = math.log(ratio), math.log(thr.upper)
    # Distance the data must resolve: from "no change" outside the band, from its edge inside.
    delta = abs(log_r) if abs(log_r) > log_t else log_t - abs(log_r)
    out: dict[str, Any] = {"ratio": ratio, "confidence": confidence}

    if len(rb) >= 2 and len(rc) >= 2:
        low, high, _, _ = _bootstrap_ratio(rb, rc, None, None, 0.0, rng, alpha, STATISTICS[statistic])
        _, p_up = mann_whitney_greater(rc, rb)
        _, p_down = mann_whitney_greater(rb, rc)
        p = p_up if ratio >= 1 else p_down
        sigma = _pooled_log_sd(rb, rc) or 0.0
        out.update(ci_low=low, ci_high=high, p_value=p, method="mann-whitney")
        tested = f"Mann-Whitney U on {len(rb)}+{len(rc)} per-repeat {statistic}s"
        if thr.exceeded(ratio) and p_up <= alpha:
            return {**out, "verdict": REGRESSED, "reason": f"{_pct(ratio)} > +{thr}, p={p_up:.3g} <= {alpha:g} ({tested})"}
        if thr.undercut(ratio) and p_down <= alpha:
            return {**out, "verdict": IMPROVED, "reason": f"{_pct(ratio)}, faster by more than {thr}, p={p_down:.3g} <= {alpha:g} ({tested})"}
        if thr.contains(low, high):
            return {**out, "verdict": UNCHANGED, "reason": f"{confidence:.0%} CI {_pct(low)}…{_pct(high)} within ±{thr}"}
        n = max(repeats_needed(sigma, delta, alpha=alpha) or REPEATS_CAP + 1, min(len(rb), len(rc)) + 1)
        needed = n if n <= REPEATS_CAP else None
        if min_attainable_p(len(rb), len(rc)) > alpha and (thr.exceeded(ratio) or thr.undercut(ratio)):
            why = (
                f"{_pct(ratio)}, but {len(rb)} vs {len(rc)} repeats cannot reach alpha {alpha:g} with a rank test "
                f"(smallest p {min_attainable_p(len(rb), len(rc)):.3g}; needs >= {floor} per side)"
            )
        elif thr.exceeded(ratio) or thr.undercut(ratio):
            why = f"{_pct(ratio)} but not significant (p={p:.3g} > {alpha:g})"
        else:
            why = f"{confidence:.0%} CI {_pct(low)}…{_pct(high)} reaches past ±{thr}"
        return {**out, "verdict": NOISY, "repeats_needed": needed, "reason": why + _settle(needed)}

    # Bootstrap path: a side with one repeat has no between-process evidence (module docstring).
    sigma_obs = _pooled_log_sd(*[g for g in (rb, rc) if len(g) >= 3])
    sigma = sigma_obs if sigma_obs is not None else ASSUMED_PROCESS_CV
    sb = _run_samples(b) if len(rb) == 1 else None
    sc = _run_samples(c) if len(rc) == 1 else None
    low, high, wlow, whigh = _bootstrap_ratio(rb, rc, sb, sc, sigma, rng, alpha, STATISTICS[statistic])
    out.update(ci_low=wlow, ci_high=whigh, method="bootstrap")
    source = "observed" if sigma_obs is not None else "assumed"
    noise = f"{sigma:.1%} between-process noise ({source})"
    if wlow > thr.upper:
        return {**out, "verdict": REGRESSED, "reason": f"{_pct(ratio)}: even allowing {noise}, the {confidence:.0%} CI is above +{thr}"}
    if whigh < thr.lower:
        return {**out, "verdict": IMPROVED, "reason": f"{_pct(ratio)}: even allowing {noise}, the {confidence:.0%} CI is below -{thr}"}
    if thr.contains(low, high):
        return {
            **out,
            "verdict": UNCHANGED,
            "reason": f"within-run {confidence:.0%} CI {_pct(low)}…{_pct(high)} within ±{thr} "
            f"({len(rb)} vs {len(rc)} repeats: a single process's own offset is not in that interval)",
        }
    n = repeats_needed(sigma, delta, alpha=alpha)
    needed = None if n is None else max(n, min(len(rb), len(rc)) + 1)
    why = f"{_pct(ratio)} with {len(rb)} vs {len(rc)} repeats could be {noise}"
    return {**out, "verdict": NOISY, "repeats_needed": needed, "reason": why + _settle(needed)}


def _settle(needed: int | None) -> str:
    if needed is None:
        return f"; more than {REPEATS_CAP} repeats per side would be needed (the change sits near the threshold)"
    return f"; about {needed} repeats per side would settle it"


def _bootstrap_ratio(
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


def _memory_verdict(b: dict[str, Any], c: dict[str, Any], thr: Threshold) -> dict[str, Any]:
    """Memory growth as a second, separate check (one figure per case, so no statistics)."""
    mb, mc = b.get("memory"), c.get("memory")
    if not isinstance(mb, dict) or not isinstance(mc, dict):
        return {}
    for metric in MEMORY_METRICS:
        vb, vc = mb.get(metric), mc.get(metric)
        if isinstance(vb, (int, float)) and isinstance(vc, (int, float)):
            break
    else:
        return {}
    out: dict[str, Any] = {"memory_metric": metric, "base_memory_bytes": vb, "current_memory_bytes": vc}
    floor = MEMORY_NOISE_FLOOR_BYTES.get(metric, 0)
    if vb <= 0:
        grew = vc - vb > max(floor, 0)
        out["memory_verdict"] = REGRESSED if grew and vc > floor else UNCHANGED
        return out
    ratio = vc / vb
    out["memory_ratio"] = ratio
    if thr.exceeded(ratio) and vc - vb > floor:
        out["memory_verdict"] = REGRESSED
    elif thr.undercut(ratio) and vb - vc > floor:
        out["memory_verdict"] = IMPROVED
    else:
        out["memory_verdict"] = UNCHANGED
    return out


# -- rendering ------------------------------------------------------------------------------------

_SECTION_TITLES = {
    REGRESSED: "Regressions",
    IMPROVED: "Improvements",
    NOISY: "Noisy (too little evidence either way)",
    FAILED: "Failed",
    MISSING: "Missing (in base only)",
    NEW: "New (in current only)",
    INCOMPARABLE: "Incomparable",
    INVALID: "Invalid (failed parity: timing not valid)",
    UNCHANGED: "Unchanged",
}
# Rows per Markdown section; GitHub truncates comments at 65536 characters.
MAX_MARKDOWN_ROWS = 200


def _fmt_ms(x: float | None) -> str:
    if x is None:
        return "—"
    if x >= 100:
        return f"{x:.1f}"
    if x >= 1:
        return f"{x:.2f}"
    return f"{x:.3g}"


def _fmt_ci(r: CaseComparison) -> str:
    if r.ci_low is None or r.ci_high is None:
        return "—"
    return f"{_pct(r.ci_low)} … {_pct(r.ci_high)}"


def _fmt_p(p: float | None) -> str:
    if p is None:
        return "—"
    return f"{p:.3f}" if p >= 0.001 else f"{p:.1e}"


def _fmt_bytes(n: float) -> str:
    return f"{n / 2**20:.1f} MiB"


def _fmt_memory(r: CaseComparison) -> str:
    if r.memory_metric is None:
        return "—"
    kind = "CUDA" if r.memory_metric.startswith("cuda") else "RSS"
    change = _pct(r.memory_ratio) if r.memory_ratio is not None else "n/a"
    if r.memory_verdict == UNCHANGED:
        return change
    mark = " ❌" if r.memory_verdict == REGRESSED else ""
    return f"{change} ({kind} {_fmt_bytes(r.base_memory_bytes or 0)} → {_fmt_bytes(r.current_memory_bytes or 0)}){mark}"


def _fmt_change(r: CaseComparison) -> str:
    return _pct(r.ratio) if r.ratio is not None else "—"


def _headline(comp: Comparison) -> tuple[bool, str]:
    counts = comp.counts
    gating = [r for r in comp.rows if r.gating]
    if gating:
        lat = sum(r.verdict == REGRESSED for r in gating)
        mem = sum(r.memory_verdict == REGRESSED for r in gating)
        broke = sum(r.verdict in (FAILED, INVALID) for r in gating)
        parts = [
            f"{lat} latency regression(s)" if lat else "",
            f"{mem} memory regression(s)" if mem else "",
            f"{broke} case(s) newly failing (run or parity)" if broke else "",
        ]
        return False, "Performance regression: " + ", ".join(p for p in parts if p)
    compared = sum(counts[v] for v in _TIMED)
    if not compared:
        return True, "No regression found, but no case could be compared"
    return True, f"No performance regression ({compared} case(s) compared)"


def _summary_line(comp: Comparison) -> str:
    """Counts per report section (a memory regression counts as regressed, as its table does)."""
    counts = {v: 0 for v in VERDICTS}
    for r in comp.rows:
        counts[r.section] += 1
    return ", ".join(f"{counts[v]} {v}" for v in VERDICTS if counts[v])


def _geomean_line(comp: Comparison) -> str:
    if comp.geomean_ratio is None:
        return "Geometric mean of current/base: n/a (no comparable case)"
    return (
        f"Geometric mean of current/base latency over {comp.geomean_cases} comparable case(s): "
        f"{comp.geomean_ratio:.3f} ({_pct(comp.geomean_ratio)})"
    )


def _rules_line(comp: Comparison) -> str:
    lat, mem = comp.thresholds["latency"], comp.thresholds["memory"]
    return (
        f"Thresholds: latency {lat} ({lat.source}), memory {mem} ({mem.source}); alpha {comp.alpha:g}, "
        f"intervals at {comp.confidence:.0%}. Each worker process gives one figure, the {comp.statistic} of its "
        f"per-call times (Base/Current: the median of those figures); a case regresses when it is slower by more "
        f"than the threshold and a one-sided Mann-Whitney U test on the per-process figures is significant."
    )


def _md_cell(text: Any) -> str:
    s = "—" if text in (None, "") else str(text)
    return s.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ").replace("\r", " ")


def _md_table(header: list[str], rows: Iterable[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(_md_cell(x) for x in row) + " |")
    return lines


def _section_table(name: str, rows: list[CaseComparison], comp: Comparison) -> list[str]:
    conf = f"{comp.confidence:.0%} CI"
    if name in (REGRESSED, IMPROVED, NOISY, UNCHANGED):
        header = ["Case", f"Base {comp.statistic} (ms)", f"Current {comp.statistic} (ms)", "Change", conf, "p", "Repeats", "Memory", "Why"]
        body = [
            [f"`{r.label}`", _fmt_ms(r.base_median_ms), _fmt_ms(r.current_median_ms), _fmt_change(r), _fmt_ci(r),
             _fmt_p(r.p_value), f"{r.base_repeats}/{r.current_repeats}", _fmt_memory(r), r.reason]
            for r in rows
        ]
    elif name == FAILED:
        header = ["Case", "Base", "Current", "Error", "Gates"]
        body = [[f"`{r.label}`", r.base_status, r.current_status, r.error or r.reason, "yes" if r.gating else "no"] for r in rows]
    elif name in (MISSING, NEW):
        header = ["Case", "Status", "Median (ms)"]
        body = [[f"`{r.label}`", r.base_status or r.current_status, _fmt_ms(r.base_median_ms or r.current_median_ms)] for r in rows]
    elif name == INCOMPARABLE:
        header = ["Case", f"Base {comp.statistic} (ms)", f"Current {comp.statistic} (ms)", "Why"]
        body = [[f"`{r.label}`", _fmt_ms(r.base_median_ms), _fmt_ms(r.current_median_ms), r.reason] for r in rows]
    else:  # INVALID: no timing shown, it is not a valid result
        header = ["Case", "Base", "Current", "Why", "Gates"]
        body = [[f"`{r.label}`", r.base_status, r.current_status, r.reason, "yes" if r.gating else "no"] for r in rows]
    lines = _md_table(header, body[:MAX_MARKDOWN_ROWS])
    if len(body) > MAX_MARKDOWN_ROWS:
        lines.append(f"\n… and {len(body) - MAX_MARKDOWN_ROWS} more (see the JSON output).")
    return lines


def _md_source(info: dict[str, Any], default: str) -> str:
    text = f"`{_md_cell(info.get('name') or default)}`"
    if info.get("git_commit"):
        text += f" (commit {str(info['git_commit'])[:10]})"
    return text


def render_markdown(comparison: Comparison) -> str:
    """A Markdown summary fit for a pull-request comment or `$GITHUB_STEP_SUMMARY`.

    A headline verdict, the thresholds and statistics used, warnings, then one table per
    section: regressions first, unchanged cases last and collapsed in a <details> block.
    """
    comp = comparison
    ok, headline = _headline(comp)
    lines = [f"## {'✅' if ok else '❌'} cnnbench compare: {headline}", ""]
    b, c = comp.base_info, comp.current_info
    if b.get("name") or c.get("name") or b.get("git_commit") or c.get("git_commit"):
        lines += [f"Base {_md_source(b, 'base')} vs current {_md_source(c, 'current')}.", ""]
    if comp.rows:
        lines += [f"**{_summary_line(comp)}.** {_geomean_line(comp)}.", ""]
    else:
        lines += ["Neither file has any case.", ""]
    lines += [f"<sub>{_rules_line(comp)}</sub>", ""]
    for w in comp.warnings:
        lines.append(f"> ⚠️ {_md_cell(w)}")
    for n in comp.notes:
        lines.append(f"> {_md_cell(n)}")
    if comp.warnings or comp.notes:
        lines.append("")
    for name in VERDICTS:
        rows = comp.section(name)
        if not rows:
            continue
        title = f"{_SECTION_TITLES[name]} ({len(rows)})"
        if name == UNCHANGED:
            lines += ["<details>", f"<summary>{title}</summary>", ""]
            lines += _section_table(name, rows, comp)
            lines += ["", "</details>", ""]
        else:
            lines += [f"### {title}", ""]
            lines += _section_table(name, rows, comp)
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"


_STYLES = {
    REGRESSED: "bold red",
    IMPROVED: "green",
    NOISY: "yellow",
    FAILED: "red",
    INVALID: "magenta",
    INCOMPARABLE: "cyan",
    MISSING: "dim",
    NEW: "blue",
    UNCHANGED: "",
}


def _fmt_memory_short(r: CaseComparison) -> str:
    if r.memory_metric is None or r.memory_ratio is None:
        return "—"
    return f"{_pct(r.memory_ratio)} {'CUDA' if r.memory_metric.startswith('cuda') else 'RSS'}"


def render_terminal(comparison: Comparison, console: "Console") -> None:
    """Print the comparison with rich: a table of every case (regressions first), then the
    reason for every case that is not unchanged, the warnings and a headline."""
    from rich.table import Table
    from rich.text import Text

    comp = comparison
    table = Table(title="cnnbench compare: current / base", header_style="bold", pad_edge=False)
    table.add_column("Case", overflow="fold", ratio=1, min_width=16)
    table.add_column("Verdict", no_wrap=True)
    for name in (f"Base {comp.statistic}", f"Cur {comp.statistic}", "Change", f"{comp.confidence:.0%} CI", "p", "Reps", "Memory"):
        table.add_column(name, justify="right", no_wrap=True)
    details: list[Text] = []
    for name in VERDICTS:
        for r in comp.section(name):
            style = _STYLES.get(r.section, "")
            verdict = r.verdict if r.section == r.verdict else "regressed (memory)"
            table.add_row(
                Text(r.label),
                Text(verdict, style=style),
                _fmt_ms(r.base_median_ms),
                _fmt_ms(r.current_median_ms),
                _fmt_change(r),
                _fmt_ci(r),
                _fmt_p(r.p_value),
                f"{r.base_repeats}/{r.current_repeats}" if r.base_repeats or r.current_repeats else "—",
                Text(_fmt_memory_short(r), style="bold red" if r.memory_verdict == REGRESSED else ""),
            )
            if r.verdict != UNCHANGED or r.memory_verdict == REGRESSED:
                line = Text("  ")
                line.append(r.label, style="bold")
                line.append(f" {verdict}: ", style=style)
                line.append(r.reason + (f": {r.error}" if r.error else ""))
                if r.memory_verdict == REGRESSED:
                    line.append(f"; memory {_fmt_memory(r).replace(' ❌', '')} > +{comp.thresholds['memory']}", style="red")
                details.append(line)
    console.print(table)
    for line in details:
        console.print(line)
    for w in comp.warnings:
        console.print(Text(f"warning: {w}", style="yellow"))
    for n in comp.notes:
        console.print(Text(f"note: {n}"))
    if comp.rows:
        console.print(Text(f"{_summary_line(comp)}. {_geomean_line(comp)}."))
    console.print(Text(_rules_line(comp), style="dim"))
    ok, headline = _headline(comp)
    console.print(Text(headline, style="bold green" if ok else "bold red"))


def _finite(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    return x


def to_json(comparison: Comparison) -> dict[str, Any]:
    """The comparison as a JSON-ready dict (what `--json FILE` writes); stable keys, no NaN."""
    comp = comparison
    ok, headline = _headline(comp)
    rows = []
    for r in comp.rows:
        row = asdict(r)
        row["section"] = r.section
        rows.append(row)
    return _finite(
        {
            "tool": "cnnbench",
            "kind": "comparison",
            "format_version": 1,
            "has_regression": comp.has_regression,
            "headline": headline,
            "alpha": comp.alpha,
            "statistic": comp.statistic,
            "confidence": comp.confidence,
            "thresholds": {m: {"rel": t.rel, "text": str(t), "source": t.source} for m, t in comp.thresholds.items()},
            "geomean_ratio": comp.geomean_ratio,
            "geomean_cases": comp.geomean_cases,
            "counts": comp.counts,
            "warnings": list(comp.warnings),
            "notes": list(comp.notes),
            "base": comp.base_info,
            "current": comp.current_info,
            "cases": rows,
        }
    )
