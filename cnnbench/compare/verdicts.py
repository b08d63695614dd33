"""Pair the cases of two checked results files by key and give each a verdict (plain records).

Compute, then render (google/benchmark's `get_difference_report`): `compare_results` returns a
`Comparison` of `CaseComparison` rows and prints nothing; `cnnbench.compare.render` presents
them. The unit of evidence is one figure per worker process (`CaseRecord.per_process`); the
rules and their measured rationale are in docs/compare.md.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping

from cnnbench.stats import basic as stats, processes
from cnnbench.stats.ranktests import (
    ASSUMED_PROCESS_CV,
    BOOTSTRAP_SEED,
    REPEATS_CAP,
    pooled_log_sd,
    bootstrap_ratio,
    mann_whitney_greater,
    min_attainable_p,
    min_repeats_for_alpha,
    repeats_needed,
)
from cnnbench.compare.thresholds import (
    DEFAULT_LATENCY_THRESHOLD,
    Threshold,
    resolve_thresholds,
)
from cnnbench.core.errors import UserError
from cnnbench.compare.memchange import ABSOLUTE_THRESHOLD_BYTES
from cnnbench.core.text import last_line
from cnnbench.core.units import fmt_change, fmt_pct
from cnnbench.compare.energy import energy_note, energy_verdict
from cnnbench.results.records import from_dict, thaw
from cnnbench.core.errors import EXIT_NOT_OK, EXIT_OK
from cnnbench.results import frame

if TYPE_CHECKING:  # pragma: no cover
    from cnnbench.results.records import CaseRecord, ResultsFile

__all__ = ["VERDICTS", "CaseComparison", "Comparison", "compare_results", "STATISTICS", "DEFAULT_STATISTIC", "DEFAULT_ALPHA"]

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
TIMED_VERDICTS = (REGRESSED, IMPROVED, UNCHANGED, NOISY)

DEFAULT_ALPHA = 0.01
# The one figure taken from each worker process for the comparison: the percentile of that
# process's own per-call samples. A low percentile is the default because the noise of a shared
# machine is one-sided (other tenants only ever slow a call down; the measurements are in
# docs/compare.md). "median" catches a regression that slows only some calls, on a quiet machine.
STATISTICS: dict[str, float] = {"median": 50.0, "p25": 25.0, "p10": 10.0, "p5": 5.0, "min": 0.0}
DEFAULT_STATISTIC = "p5"

# Memory figures, in order of preference, and the growth below which a change is not reported
# (peak RSS moves in allocator-arena steps; CUDA allocated bytes are deterministic).
MEMORY_METRICS = ("cuda_peak_allocated_bytes", "peak_rss_delta_bytes")
MEMORY_NOISE_FLOOR_BYTES = ABSOLUTE_THRESHOLD_BYTES  # cnnbench.compare.memchange: 1 MiB CUDA, 8 MiB RSS

# Environment fields that make timings incomparable, and which cases each one concerns.
_BLOCKING_ENV = (
    ("torch", lambda spec: True),
    ("gpu_name", lambda spec: spec.get("device") == "cuda"),
    ("onnxruntime", lambda spec: spec.get("backend") == "onnxrt"),
)
# Environment fields that only earn a warning on the whole comparison.
_MACHINE_ENV = ("hostname", "machine_fingerprint", "cpu_model")
_SOFT_ENV = ("python", "torchvision", "allocator")
_SPEC_FIELDS = ("device", "precision")


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
    # cnnbench.stats.processes: each side's per-process figures and the smallest detectable slowdown
    base_process_ms: tuple[float, ...] = ()
    current_process_ms: tuple[float, ...] = ()
    detectable_ratio: float | None = None
    base_j_per_image: float | None = None  # energy over the timed window (cnnbench.measure.energy)
    current_j_per_image: float | None = None
    energy_ratio: float | None = None
    energy_verdict: str | None = None  # regressed | improved | unchanged | unreliable | incomparable

    @property
    def section(self) -> str:
        """The report section: regressions (latency or memory) first, then by verdict."""
        if self.verdict == REGRESSED or self.memory_verdict == REGRESSED or self.energy_verdict == REGRESSED:
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

    @property
    def exit_code(self) -> int:
        """What `bench.py compare` exits with: 1 when a row gates (a regression), else 0."""
        return EXIT_NOT_OK if self.has_regression else EXIT_OK

    def rows_as_dicts(self) -> list[dict[str, Any]]:
        """One flat dict per case: the key's fields, verdict, medians (ms), ratio and its interval,
        p-value, repeats, memory figures (bytes) and whether it gates."""
        out = []
        for r in self.rows:
            spec = r.spec or {}
            out.append({
                "key": r.key, "model": spec.get("model"), "backend": spec.get("backend"),
                "precision": spec.get("precision"), "batch_size": spec.get("batch_size"),
                "verdict": r.verdict, "section": r.section, "gating": r.gating, "reason": r.reason,
                "base_status": r.base_status, "current_status": r.current_status,
                "statistic": r.statistic, "base_median_ms": r.base_median_ms, "current_median_ms": r.current_median_ms,
                "ratio": r.ratio, "ci_low": r.ci_low, "ci_high": r.ci_high, "confidence": r.confidence,
                "p_value": r.p_value, "method": r.method, "base_repeats": r.base_repeats,
                "current_repeats": r.current_repeats, "repeats_needed": r.repeats_needed,
                "memory_metric": r.memory_metric, "base_memory_bytes": r.base_memory_bytes,
                "current_memory_bytes": r.current_memory_bytes, "memory_ratio": r.memory_ratio,
                "memory_verdict": r.memory_verdict, "energy_verdict": r.energy_verdict,
            })  # fmt: skip
        return out

    def to_pandas(self) -> Any:
        """A pandas DataFrame, one row per case (`rows_as_dicts`); pandas is an optional extra.

        Example:
            >>> cmp = cnnbench.compare("base.json", "current.json")
            >>> cmp.to_pandas().query("verdict == 'regressed'")
        """
        return frame.to_pandas(self.rows_as_dicts())

    def _repr_html_(self) -> str:
        """The comparison's table, its reasons and warnings, for a notebook."""
        headline = "Performance regression" if self.has_regression else "No performance regression"
        header = ["case", "verdict", f"base {self.statistic} ms", f"current {self.statistic} ms", "current/base",
                  f"{self.confidence:.0%} CI", "p", "repeats"]  # fmt: skip
        body = []
        notes = []
        for name in VERDICTS:
            for r in self.section(name):
                ci = f"{r.ci_low:.3f}-{r.ci_high:.3f}" if r.ci_low is not None and r.ci_high is not None else ""
                body.append([
                    r.label, r.section, _ms(r.base_median_ms), _ms(r.current_median_ms),
                    f"{r.ratio:.3f}" if r.ratio is not None else "", ci,
                    f"{r.p_value:.3g}" if r.p_value is not None else "", f"{r.base_repeats}/{r.current_repeats}",
                ])  # fmt: skip
                if r.verdict != UNCHANGED and r.reason:
                    notes.append(f"{r.label}: {r.reason}")
        notes += [f"⚠ {w}" for w in self.warnings] + list(self.notes)
        return frame.html_table(header, body, title=f"cnnbench compare: {headline} (exit {self.exit_code})", notes=notes)

    def section(self, name: str) -> list[CaseComparison]:
        """Rows of one report section, the worst first where there is an order."""
        rows = [r for r in self.rows if r.section == name]
        if name == REGRESSED:
            rows.sort(key=lambda r: -max(r.ratio or 0.0, r.memory_ratio or 0.0))
        elif name == IMPROVED:
            rows.sort(key=lambda r: r.ratio or 0.0)
        return rows


def _ms(value: float | None) -> str:
    return f"{value:.3f}" if value is not None else "-"


# -- the comparison -----------------------------------------------------------------------------


def compare_results(
    base: "ResultsFile | dict[str, Any]",
    current: "ResultsFile | dict[str, Any]",
    *,
    threshold: float | str | Threshold = DEFAULT_LATENCY_THRESHOLD,
    alpha: float = DEFAULT_ALPHA,
    thresholds: Mapping[str, Any] | None = None,
    base_name: str | None = None,
    current_name: str | None = None,
    statistic: str = DEFAULT_STATISTIC,
    alpha_by_key: Mapping[str, float] | None = None,
    equivalence_alpha_by_key: Mapping[str, float] | None = None,
) -> Comparison:
    """Pair the cases of two loaded results files by key and give each a verdict.

    Args:
        base: the reference results: a checked `cnnbench.results.records.ResultsFile` (`records.load`),
            or a results dict (`cnnbench.results.format.load_results`), checked here.
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
            A/B run judges each case at the level of the look it stopped at: cnnbench.stats.sequential).
        equivalence_alpha_by_key: a level per case key for the `unchanged` test alone (the
            interval at 1 - 2 x that level must lie inside the band); by default the case's
            alpha. A sequential look spends its error on the regression test and stops a case
            `unchanged` at a level of its own (cnnbench.stats.sequential).

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
    base = _as_results(base, base_name or "base")
    current = _as_results(current, current_name or "current")
    thr, notes = resolve_thresholds(thresholds, base, current, threshold)
    base_env = base.environment
    cur_env = current.environment
    warnings: list[str] = []
    blocking = _environment_differences(base_env, cur_env, warnings)

    base_cases = _index(base, "base", warnings)
    cur_cases = _index(current, "current", warnings)
    rows = _pair_cases(base_cases, cur_cases, thr, alpha, blocking, statistic, alpha_by_key, equivalence_alpha_by_key)
    timed = [r.ratio for r in rows if r.verdict in TIMED_VERDICTS and r.ratio and r.ratio > 0]
    geomean = math.exp(sum(math.log(x) for x in timed) / len(timed)) if timed else None
    warnings.extend(_coverage_warnings(rows, alpha, statistic))
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


def _pair_cases(
    base_cases: dict[str, "CaseRecord"],
    cur_cases: dict[str, "CaseRecord"],
    thr: dict[str, Threshold],
    alpha: float,
    blocking: list,
    statistic: str,
    alpha_by_key: Mapping[str, float] | None,
    equivalence_alpha_by_key: Mapping[str, float] | None,
) -> list[CaseComparison]:
    """One row per case key: base cases in their order (`missing` when current lacks them), then
    the cases only current has (`new`)."""
    rows: list[CaseComparison] = []
    for key, b in base_cases.items():
        c = cur_cases.get(key)
        if c is None:
            rows.append(_unpaired(key, b, MISSING, "in base only"))
        else:
            case_alpha = (alpha_by_key or {}).get(key, alpha)
            eq_alpha = (equivalence_alpha_by_key or {}).get(key, case_alpha)
            rows.append(_compare_case(key, b, c, thr, case_alpha, blocking, statistic, eq_alpha))
    for key, c in cur_cases.items():
        if key not in base_cases:
            rows.append(_unpaired(key, c, NEW, "in current only"))
    return rows


def _coverage_warnings(rows: list[CaseComparison], alpha: float, statistic: str) -> list[str]:
    """What limits the comparison as a whole: incomparable cases, too few repeats for a rank test
    at `alpha` to call anything, and cases compared on per-repeat medians instead of `statistic`."""
    warnings: list[str] = []
    n_incomp = sum(r.verdict == INCOMPARABLE for r in rows)
    if n_incomp:
        warnings.append(f"{n_incomp} case(s) incomparable: their timings are not compared")
    floor = min_repeats_for_alpha(alpha)
    single = [r for r in rows if r.verdict in TIMED_VERDICTS and min(r.base_repeats, r.current_repeats) == 1]
    few = [r for r in rows if r.verdict in TIMED_VERDICTS and 2 <= min(r.base_repeats, r.current_repeats) < floor]
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
    return warnings


def _thaw(value: Any) -> Any:
    return thaw(value)


def _as_results(results: "ResultsFile | dict[str, Any]", name: str) -> "ResultsFile":
    return from_dict(results, path=name)


def _file_info(results: "ResultsFile", name: str | None) -> dict[str, Any]:
    env = results.environment
    git = env.get("git")
    return {
        "name": name,
        "created": results.created,
        "hostname": env.get("hostname"),
        "git_commit": git.get("commit") if isinstance(git, Mapping) else None,
        "suite": results.suite.get("name"),
        "cases": len(results.cases),
    }


def _index(results: "ResultsFile", label: str, warnings: list[str]) -> dict[str, "CaseRecord"]:
    out: dict[str, CaseRecord] = {}
    for rec in results.cases:
        if rec.key in out:
            warnings.append(f"{label}: case {rec.key} appears twice; the last one is used")
        out[rec.key] = rec
    return out


def _env_value(env: Mapping[str, Any], name: str) -> Any:
    value = env.get(name)
    return None if value in ("", None) else value


def _environment_differences(base_env: Mapping[str, Any], cur_env: Mapping[str, Any], warnings: list[str]) -> list:
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


def _differs(a: Mapping[str, Any], b: Mapping[str, Any], name: str) -> bool:
    x, y = _env_value(a, name), _env_value(b, name)
    return x is not None and y is not None and x != y


def _label(key: str) -> str:
    """A shorter, still unique, label: the key without the default mode and separators."""
    return " ".join(p for p in key.split("|") if p != "inference")


def _unpaired(key: str, rec: "CaseRecord", verdict: str, reason: str) -> CaseComparison:
    status = rec.status
    meds = rec.repeat_medians
    med = stats.median(meds) if meds else None
    return CaseComparison(
        key=key,
        verdict=verdict,
        label=_label(key),
        reason=reason + (f" ({status})" if status and status != "ok" else ""),
        spec=_thaw(rec.spec.raw),
        base_status=status if verdict == MISSING else None,
        current_status=status if verdict == NEW else None,
        error=last_line(rec.error),
        base_median_ms=med if verdict == MISSING else None,
        current_median_ms=med if verdict == NEW else None,
    )


def _repeat_values(rec: "CaseRecord", statistic: str) -> list[float] | None:
    """One figure per worker process (`CaseRecord.per_process`): the `statistic` of that
    process's own samples, for "median" the record's repeat medians."""
    return rec.per_process(None if statistic == "median" else STATISTICS[statistic])


def _compare_case(
    key: str,
    b: "CaseRecord",
    c: "CaseRecord",
    thr: dict[str, Threshold],
    alpha: float,
    blocking: list,
    statistic: str = DEFAULT_STATISTIC,
    equivalence_alpha: float | None = None,
) -> CaseComparison:
    spec = _thaw(c.spec.raw)
    bs, cs = b.status, c.status
    common = dict(key=key, label=_label(key), spec=spec, base_status=bs, current_status=cs)
    base_good = bs == "ok" and not b.parity_failed

    hard = [s for s in (bs, cs) if s not in ("ok", "fail_accuracy")]
    if hard:
        side = "current" if cs not in ("ok", "fail_accuracy") else "base"
        sides = "both" if len(hard) == 2 else side
        error = last_line(c.error if side == "current" else b.error)
        return CaseComparison(
            verdict=FAILED,
            reason=f"{sides} failed: base {bs}, current {cs}",
            error=error,
            gating=base_good and cs not in ("ok", "fail_accuracy"),
            **common,
        )
    if b.parity_failed or c.parity_failed:
        sides = [n for n, rec in (("base", b), ("current", c)) if rec.parity_failed]
        detail = _parity_detail(c if "current" in sides else b)
        return CaseComparison(
            verdict=INVALID,
            reason=f"parity failed in {' and '.join(sides)}: timing not valid{detail}",
            gating=base_good and c.parity_failed,
            **common,
        )

    rb, rc = _repeat_values(b, statistic), _repeat_values(c, statistic)
    if rb is None or rc is None:  # a side keeps only repeat medians: compare both sides on those
        statistic = "median"
        rb, rc = list(b.repeat_medians), list(c.repeat_medians)
    common["statistic"] = statistic
    if not rb or not rc or min(rb + rc) <= 0:
        side = "base" if not rb else "current"
        return CaseComparison(verdict=FAILED, reason=f"{side} is ok but has no latency samples", **common)

    reasons = []
    for name in _SPEC_FIELDS:
        bv, cv = b.spec.raw.get(name), c.spec.raw.get(name)
        if bv != cv:
            reasons.append(f"{name} {bv} vs {cv}")
    for name, bv, cv, applies in blocking:
        if applies(spec):
            reasons.append(f"{name} {bv} vs {cv}")
    if b.batch != c.batch:  # --oom-retry lowered one side's batch: not the same computation
        reasons.append(f"measured batch {b.batch} vs {c.batch} (--oom-retry)")
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

    latency = _latency_verdict(key, b, c, rb, rc, thr["latency"], alpha, statistic, equivalence_alpha)
    memory = _memory_verdict(b, c, thr["memory"], alpha)

    energy = energy_verdict(b.to_json(), c.to_json(), thr["energy"])
    latency["reason"] = latency.get("reason", "") + energy_note(energy, thr["energy"])
    gating = latency["verdict"] == REGRESSED or memory.get("memory_verdict") == REGRESSED
    gating = gating or energy.get("energy_verdict") == REGRESSED

    return CaseComparison(
        **processes.comparison_fields(rb, rc, alpha=alpha),
        base_median_ms=base_med,
        current_median_ms=cur_med,
        base_repeats=len(rb),
        current_repeats=len(rc),
        gating=gating,
        **latency,
        **memory,
        **energy,
        **common,
    )


def _parity_detail(rec: "CaseRecord") -> str:
    parity = rec.parity
    if parity is None:
        return f" ({last_line(rec.error)})" if rec.error else ""
    parts = [f"{k}={parity[k]:.3g}" for k in ("max_abs_err", "max_rel_err", "top1_agreement") if isinstance(parity.get(k), (int, float))]
    return f" ({', '.join(parts)})" if parts else ""


def _latency_verdict(
    key: str,
    b: "CaseRecord",
    c: "CaseRecord",
    rb: list[float],
    rc: list[float],
    thr: Threshold,
    alpha: float,
    statistic: str = DEFAULT_STATISTIC,
    equivalence_alpha: float | None = None,
) -> dict[str, Any]:
    """Verdict, interval, p-value and reason for one comparable pair (see the module docstring).
    `rb`/`rc` are the per-process figures (`statistic`) of each side; the rank test is at
    `alpha`, the interval that decides `unchanged` at `equivalence_alpha` (default: alpha)."""
    ratio = stats.median(rc) / stats.median(rb)
    eq_alpha = alpha if equivalence_alpha is None else equivalence_alpha
    confidence = 1.0 - 2.0 * eq_alpha
    rng = random.Random(f"{BOOTSTRAP_SEED}|{key}")
    floor = min_repeats_for_alpha(alpha)
    log_r, log_t = math.log(ratio), math.log(thr.upper)
    # Distance the data must resolve: from "no change" outside the band, from its edge inside.
    delta = abs(log_r) if abs(log_r) > log_t else log_t - abs(log_r)
    out: dict[str, Any] = {"ratio": ratio, "confidence": confidence}

    if len(rb) >= 2 and len(rc) >= 2:
        low, high, _, _ = bootstrap_ratio(rb, rc, None, None, 0.0, rng, eq_alpha, STATISTICS[statistic])
        _, p_up = mann_whitney_greater(rc, rb)
        _, p_down = mann_whitney_greater(rb, rc)
        p = p_up if ratio >= 1 else p_down
        sigma = pooled_log_sd(rb, rc) or 0.0
        out.update(ci_low=low, ci_high=high, p_value=p, method="mann-whitney")
        tested = f"Mann-Whitney U on {len(rb)}+{len(rc)} per-repeat {statistic}s"
        if thr.exceeded(ratio) and p_up <= alpha:
            return {**out, "verdict": REGRESSED, "reason": f"{fmt_change(ratio)} > +{thr}, p={p_up:.3g} <= {alpha:.3g} ({tested})"}
        if thr.undercut(ratio) and p_down <= alpha:
            return {**out, "verdict": IMPROVED, "reason": f"{fmt_change(ratio)}, faster by more than {thr}, p={p_down:.3g} <= {alpha:.3g} ({tested})"}
        if thr.contains(low, high):
            return {**out, "verdict": UNCHANGED, "reason": f"{_level(confidence)} CI {fmt_change(low)}…{fmt_change(high)} within ±{thr}"}
        n = max(repeats_needed(sigma, delta, alpha=alpha) or REPEATS_CAP + 1, min(len(rb), len(rc)) + 1)
        needed = n if n <= REPEATS_CAP else None
        if min_attainable_p(len(rb), len(rc)) > alpha and (thr.exceeded(ratio) or thr.undercut(ratio)):
            why = (
                f"{fmt_change(ratio)}, but {len(rb)} vs {len(rc)} repeats cannot reach alpha {alpha:.3g} with a rank test "
                f"(smallest p {min_attainable_p(len(rb), len(rc)):.3g}; needs >= {floor} per side)"
            )
        elif thr.exceeded(ratio) or thr.undercut(ratio):
            why = f"{fmt_change(ratio)} but not significant (p={p:.3g} > {alpha:.3g})"
        else:
            why = f"{_level(confidence)} CI {fmt_change(low)}…{fmt_change(high)} reaches past ±{thr}"
        return {**out, "verdict": NOISY, "repeats_needed": needed, "reason": why + _settle(needed)}

    # Bootstrap path: a side with one repeat has no between-process evidence (module docstring).
    sigma_obs = pooled_log_sd(*[g for g in (rb, rc) if len(g) >= 3])
    sigma = sigma_obs if sigma_obs is not None else ASSUMED_PROCESS_CV
    sb = b.single_run_samples if len(rb) == 1 else None
    sc = c.single_run_samples if len(rc) == 1 else None
    low, high, wlow, whigh = bootstrap_ratio(rb, rc, sb, sc, sigma, rng, alpha, STATISTICS[statistic])
    out.update(ci_low=wlow, ci_high=whigh, method="bootstrap")
    source = "observed" if sigma_obs is not None else "assumed"
    noise = f"{fmt_pct(100.0 * sigma)} between-process noise ({source})"
    if wlow > thr.upper:
        return {**out, "verdict": REGRESSED, "reason": f"{fmt_change(ratio)}: even allowing {noise}, the {_level(confidence)} CI is above +{thr}"}
    if whigh < thr.lower:
        return {**out, "verdict": IMPROVED, "reason": f"{fmt_change(ratio)}: even allowing {noise}, the {_level(confidence)} CI is below -{thr}"}
    if thr.contains(low, high):
        return {
            **out,
            "verdict": UNCHANGED,
            "reason": f"within-run {_level(confidence)} CI {fmt_change(low)}…{fmt_change(high)} within ±{thr} "
            f"({len(rb)} vs {len(rc)} repeats: a single process's own offset is not in that interval)",
        }
    n = repeats_needed(sigma, delta, alpha=alpha)
    needed = None if n is None else max(n, min(len(rb), len(rc)) + 1)
    why = f"{fmt_change(ratio)} with {len(rb)} vs {len(rc)} repeats could be {noise}"
    return {**out, "verdict": NOISY, "repeats_needed": needed, "reason": why + _settle(needed)}


def _settle(needed: int | None) -> str:
    if needed is None:
        return f"; more than {REPEATS_CAP} repeats per side would be needed (the change sits near the threshold)"
    return f"; about {needed} repeats per side would settle it"


def _level(confidence: float) -> str:
    """A confidence level as a percentage that never rounds up to a false "100%" (a sequential
    look at level 0.0014 gives a 99.72% interval)."""
    text = f"{confidence:.0%}"
    digits = 0
    while text == "100%" and confidence < 1 and digits < 4:
        digits += 1
        text = f"{math.floor(confidence * 10 ** (digits + 2)) / 10 ** digits:.{digits}f}%"
    return text


def _memory_figures(rec: "CaseRecord", metric: str) -> list[float]:
    """One memory figure per worker process that finished its timed loop (runs keep their own
    `memory` since issue 19's work; older files have none there)."""
    out = []
    for run in rec.runs:
        mem = run.get("memory")
        if run.get("status") in ("ok", "fail_accuracy") and isinstance(mem, Mapping):
            v = mem.get(metric)
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                out.append(float(v))
    return out


def _memory_verdict(b: "CaseRecord", c: "CaseRecord", thr: Threshold, alpha: float = DEFAULT_ALPHA) -> dict[str, Any]:
    """Memory growth as a second, separate check.

    With two or more processes per side it is judged on the per-process figures, as latency is:
    a peak RSS delta differs from process to process (where glibc's malloc serves the
    activations, docs/processes.md), so one process per side against one is noise; an A/A gate
    on 2 cores called 2 of 6 unchanged cases `regressed (memory)` that way. The medians are
    compared against the threshold and the noise floor, and the growth must also be significant:
    a one-sided Mann-Whitney test at `alpha` when both sides have the repeats to reach it, else
    complete separation (every current process above every base one by more than the floor).
    With one figure per side (a single process, or a file written before runs kept their own
    memory): the case's figures, threshold and floor alone."""
    mb, mc = b.memory, c.memory
    if mb is None or mc is None:
        return {}
    for metric in MEMORY_METRICS:
        vb, vc = mb.get(metric), mc.get(metric)
        if isinstance(vb, (int, float)) and isinstance(vc, (int, float)):
            break
    else:
        return {}
    floor = MEMORY_NOISE_FLOOR_BYTES.get(metric, 0)
    fb, fc = _memory_figures(b, metric), _memory_figures(c, metric)
    significant = shrank = True  # one figure per side: no test to make
    if len(fb) >= 2 and len(fc) >= 2:
        vb, vc = stats.median(fb), stats.median(fc)
        if min(len(fb), len(fc)) >= min_repeats_for_alpha(alpha):
            significant = mann_whitney_greater(fc, fb)[1] <= alpha
            shrank = mann_whitney_greater(fb, fc)[1] <= alpha
        else:
            significant = min(fc) - max(fb) > floor
            shrank = min(fb) - max(fc) > floor
    out: dict[str, Any] = {"memory_metric": metric, "base_memory_bytes": vb, "current_memory_bytes": vc}
    if vb <= 0:
        grew = vc - vb > max(floor, 0)
        out["memory_verdict"] = REGRESSED if grew and vc > floor and significant else UNCHANGED
        return out
    ratio = vc / vb
    out["memory_ratio"] = ratio
    if thr.exceeded(ratio) and vc - vb > floor and significant:
        out["memory_verdict"] = REGRESSED
    elif thr.undercut(ratio) and vb - vc > floor and shrank:
        out["memory_verdict"] = IMPROVED
    else:
        out["memory_verdict"] = UNCHANGED
    return out


