"""Between-process statistics: what the worker processes of one case say together. Pure: no torch.

Why processes, not samples: the worker processes of one case can disagree far more than the
calls inside any one of them (they land in separate *modes* of the host: docs/processes.md has
the measurements and their cause). A figure from one process lands in one mode at random, and an
interval from the pooled samples treats thousands of correlated calls as independent. So every
case with two or more processes gets, from one figure per process (its median by default,
`STATISTIC`):

- the figures themselves (in run order) and their spread: min, max, coefficient of variation;
- the median's confidence interval from the between-process variation: the distribution-free
  order-statistic interval of the per-process figures (exact binomial rule). With too few
  processes for 95% it is [min, max] with its true, lower coverage (`ci_coverage`), recorded and
  shown, never rounded up;
- **modes** (`detect_modes`): sort the figures and cut at the largest gaps (at most `MAX_CUTS`,
  no group under `MIN_GROUP`), keeping a set of cuts only while every gap exceeds `GAP_FACTOR`
  times the pooled within-group spread and `MIN_REL_GAP` of the median. Ties and a lone outlier
  are one mode; the rule needs 4 processes to see two. How often it warns wrongly and finds real
  modes: docs/processes.md (`benchmarks/mode_rule_simulation.py`).

Power: `min_detectable_ratio` inverts `cnnbench.stats.ranktests.repeats_needed`, so a comparison
of modal cases says which change it could have seen instead of a bare `noisy`.

The default number of processes of `bench.py run` is `DEFAULT_PROCESSES`, the one place it is set.
"""

from __future__ import annotations

import math
import statistics as _st
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

from cnnbench.stats import basic as stats
from cnnbench.core.spec import TIMED_STATUSES
from cnnbench.core.units import fmt_ms
from cnnbench.stats.ranktests import min_attainable_p

__all__ = [
    "DEFAULT_PROCESSES",
    "STATISTIC",
    "GAP_FACTOR",
    "MIN_GROUP",
    "MIN_REL_GAP",
    "MAX_CUTS",
    "Mode",
    "ProcessStats",
    "detect_modes",
    "median_ci_between",
    "process_figures",
    "process_stats",
    "split_warning",
    "record_block",
    "split_budget",
    "log_sd",
    "min_detectable_ratio",
    "comparison_fields",
    "warnings_with_split",
]

# `bench.py run` measures this many worker processes per case unless --repeats or the suite's
# measure.repeats (> 1) says otherwise, splitting the case's time budget among them, so a run takes
# about as long as one process did (docs/processes.md). Mode detection needs 4 or more.
DEFAULT_PROCESSES = 3
STATISTIC = "median"  # the per-process figure of the table, the record and the report
GAP_FACTOR = 6.0
MIN_GROUP = 2
MIN_REL_GAP = 0.05
MAX_CUTS = 3
CI_LEVEL = 0.95


@dataclass(frozen=True)
class Mode:
    """One group of processes whose figures agree."""

    n: int
    median_ms: float
    min_ms: float
    max_ms: float
    processes: tuple[int, ...]  # 0-based positions in run order

    def to_dict(self) -> dict[str, Any]:
        return {"n": self.n, "median_ms": self.median_ms, "min_ms": self.min_ms, "max_ms": self.max_ms,
                "processes": list(self.processes)}  # fmt: skip


@dataclass(frozen=True)
class ProcessStats:
    """Between-process statistics of one case (two or more processes)."""

    statistic: str
    figures_ms: tuple[float, ...]  # one per process, in run order
    median_ms: float
    min_ms: float
    max_ms: float
    cv: float  # sample sd / mean of the figures
    ci_low_ms: float
    ci_high_ms: float
    ci_coverage: float  # the interval's exact coverage (>= 0.95 from 6 processes on)
    modes: tuple[Mode, ...]  # empty: one mode

    @property
    def n(self) -> int:
        return len(self.figures_ms)

    @property
    def split(self) -> bool:
        return len(self.modes) >= 2

    @property
    def warning(self) -> str | None:
        if not self.split:
            return None
        return "processes split: " + ", ".join(f"{m.n} at {fmt_ms(m.median_ms)} ms" for m in self.modes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "statistic": self.statistic,
            "n": self.n,
            "figures_ms": list(self.figures_ms),
            "median_ms": self.median_ms,
            "min_ms": self.min_ms,
            "max_ms": self.max_ms,
            "cv": self.cv,
            "ci_low_ms": self.ci_low_ms,
            "ci_high_ms": self.ci_high_ms,
            "ci_coverage": self.ci_coverage,
            "modes": [m.to_dict() for m in self.modes] if self.split else None,
        }


# -- the rules ------------------------------------------------------------------------------------


def _pooled_sd(groups: Sequence[Sequence[float]]) -> float:
    """The pooled within-group standard deviation (degrees of freedom: n - number of groups)."""
    ss = sum(sum((v - sum(g) / len(g)) ** 2 for v in g) for g in groups)
    dof = sum(len(g) for g in groups) - len(groups)
    return math.sqrt(ss / dof) if dof > 0 else 0.0


def detect_modes(values: Sequence[float]) -> list[list[int]]:
    """Groups of indices into `values` (ascending by value), by the rule of the module docstring.

    Returns a single group holding every index when the figures form one mode."""
    order = sorted(range(len(values)), key=lambda i: (values[i], i))
    xs = [float(values[i]) for i in order]
    n = len(xs)
    if n < 2 * MIN_GROUP:
        return [order]
    med = stats.median(xs)
    # Candidate cuts (before sorted position i) leave at least MIN_GROUP at either end; largest gap first.
    candidates = sorted(range(MIN_GROUP, n - MIN_GROUP + 1), key=lambda i: (-(xs[i] - xs[i - 1]), i))
    best: list[int] | None = None
    cuts: list[int] = []
    for cut in candidates:
        if len(cuts) == MAX_CUTS:
            break
        trial = sorted([*cuts, cut])
        bounds = [0, *trial, n]
        if any(bounds[j + 1] - bounds[j] < MIN_GROUP for j in range(len(bounds) - 1)):
            continue  # would leave a group of one: try the next gap
        cuts = trial
        sd = _pooled_sd([xs[bounds[j] : bounds[j + 1]] for j in range(len(bounds) - 1)])
        if all(xs[c] - xs[c - 1] > max(GAP_FACTOR * sd, MIN_REL_GAP * med) for c in cuts):
            best = list(cuts)
    if best is None:
        return [order]
    bounds = [0, *best, n]
    return [order[bounds[j] : bounds[j + 1]] for j in range(len(bounds) - 1)]


def _binom_cdf_half(k: int, n: int) -> float:
    """P(Bin(n, 1/2) <= k)."""
    return sum(math.comb(n, i) for i in range(0, k + 1)) / 2**n


def median_ci_between(values: Sequence[float], level: float = CI_LEVEL) -> tuple[float, float, float]:
    """(low, high, coverage): the order-statistic interval of the median of `values` (see the module
    docstring); [min, max] with its lower true coverage when no interval reaches `level`."""
    xs = sorted(float(v) for v in values)
    n = len(xs)
    if n == 0:
        raise ValueError("median_ci_between of no values")
    if n == 1:
        return xs[0], xs[0], 0.0
    best = (xs[0], xs[-1], 1.0 - 2.0 * _binom_cdf_half(0, n))
    for rank in range(2, n // 2 + 1):  # 1-based rank of the lower bound
        coverage = 1.0 - 2.0 * _binom_cdf_half(rank - 1, n)
        if coverage < level:
            break
        best = (xs[rank - 1], xs[n - rank], coverage)
    return best


def log_sd(values: Sequence[float]) -> float | None:
    """Sample standard deviation of log values (None for fewer than two, or a value <= 0)."""
    if len(values) < 2 or min(values) <= 0:
        return None
    return _st.stdev([math.log(v) for v in values])


def min_detectable_ratio(
    sigma: float, n_base: int, n_current: int, *, alpha: float, power: float = 0.8
) -> float | None:
    """The smallest slowdown ratio (> 1) the per-process spread `sigma` (sd of log figures) lets a
    one-sided rank test detect at `alpha` with `power` from these repeats; None when the repeats
    cannot reach `alpha` at all (module docstring, "Power")."""
    if n_base < 2 or n_current < 2 or min_attainable_p(n_base, n_current) > alpha:
        return None
    n_eff = 2.0 * n_base * n_current / (n_base + n_current)
    z = _st.NormalDist().inv_cdf(1.0 - alpha) + _st.NormalDist().inv_cdf(power)
    return math.exp(z * math.sqrt(math.pi / n_eff) * max(sigma, 0.0))


# -- records --------------------------------------------------------------------------------------


def process_figures(runs: Iterable[Mapping[str, Any]], statistic: str = STATISTIC) -> list[float]:
    """One figure per process whose timed loop finished: the median (or `statistic` "p5", "min"...)
    of that process's own samples, in run order."""
    q = _quantile(statistic)
    out = []
    for r in runs:
        samples = r.get("samples_ms") if isinstance(r, Mapping) else None
        if r.get("status") in TIMED_STATUSES and samples:
            out.append(stats.percentile([float(s) for s in samples], q))
    return out


def _quantile(statistic: str) -> float:
    named = {"median": 50.0, "min": 0.0}
    if statistic in named:
        return named[statistic]
    if statistic.startswith("p") and statistic[1:].replace(".", "", 1).isdigit():
        return float(statistic[1:])
    raise ValueError(f"unknown per-process statistic {statistic!r}")


def process_stats(figures: Sequence[float], statistic: str = STATISTIC) -> ProcessStats | None:
    """Between-process statistics of the per-process `figures` (None for fewer than two)."""
    xs = [float(v) for v in figures]
    if len(xs) < 2:
        return None
    mean = sum(xs) / len(xs)
    cv = _st.stdev(xs) / mean if mean > 0 else math.inf
    lo, hi, coverage = median_ci_between(xs)
    groups = detect_modes(xs)
    modes = tuple(
        Mode(len(g), stats.median([xs[i] for i in g]), min(xs[i] for i in g), max(xs[i] for i in g), tuple(sorted(g)))
        for g in groups
    ) if len(groups) > 1 else ()  # fmt: skip
    return ProcessStats(statistic, tuple(xs), stats.median(xs), min(xs), max(xs), cv, lo, hi, coverage, modes)


def record_block(runs: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """The optional per-case `processes` field of a results record (None: fewer than 2 processes)."""
    ps = process_stats(process_figures(runs))
    return ps.to_dict() if ps else None


def split_warning(record: Mapping[str, Any], statistic: str = STATISTIC) -> str | None:
    """The "processes split: ..." warning of a record, computed from its runs (so files written
    before the `processes` field existed get it too); None when its processes agree."""
    ps = process_stats(process_figures(record.get("runs") or [], statistic), statistic)
    return ps.warning if ps else None


def split_budget(measure: Any, processes: int = DEFAULT_PROCESSES) -> dict[str, Any]:
    """Measure changes that run `processes` shorter processes in about one long one's time: the
    case's min_time_s and max_time_s are shared among them (min_samples stays per process)."""
    return {
        "repeats": processes,
        "min_time_s": measure.min_time_s / processes,
        "max_time_s": measure.max_time_s / processes,
    }


# -- comparisons (compare and ab) -----------------------------------------------------------------


def comparison_fields(rb: Sequence[float], rc: Sequence[float], *, alpha: float) -> dict[str, Any]:
    """What a compared case carries about its processes: each side's per-process figures and the
    smallest slowdown their pooled spread lets the rank test detect with these repeats."""
    sds = [(len(g) - 1, s) for g in (rb, rc) if (s := log_sd(g)) is not None]
    dof = sum(d for d, _ in sds)
    sigma = math.sqrt(sum(d * s * s for d, s in sds) / dof) if dof else None
    detectable = None if sigma is None else min_detectable_ratio(sigma, len(rb), len(rc), alpha=alpha)
    return {"base_process_ms": tuple(rb), "current_process_ms": tuple(rc), "detectable_ratio": detectable}


def warnings_with_split(record: Mapping[str, Any]) -> list[str]:
    """A record's warnings, plus its "processes split" warning when the file predates it (the
    table, `show` and the report call this, so every results file gets the warning)."""
    warnings = [str(w) for w in record.get("warnings") or ()]
    split = split_warning(record)
    if split and split not in warnings:
        warnings.append(split)
    return warnings
