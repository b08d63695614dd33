"""Regression thresholds: a parsed rule per metric ("5%", "memory:10%"), from the command line or
the suite, as pytest-benchmark's `--benchmark-compare-fail=median:5%` is a parsed check."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping

from cnnbench.core.errors import UserError

if TYPE_CHECKING:  # pragma: no cover
    from cnnbench.results.records import ResultsFile

__all__ = ["METRICS", "DEFAULT_LATENCY_THRESHOLD", "DEFAULT_MEMORY_THRESHOLD", "Threshold", "ThresholdError", "parse_threshold"]

METRICS = ("latency", "memory", "energy")  # energy: J/image over the timed window (cnnbench.measure.energy)
DEFAULT_LATENCY_THRESHOLD = 0.05
DEFAULT_MEMORY_THRESHOLD = 0.10
DEFAULT_ENERGY_THRESHOLD = 0.10  # J/image over the timed window (cnnbench.measure.energy)


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


def _suite_thresholds(results: "ResultsFile") -> Mapping[str, Any]:
    thresholds = results.suite.get("thresholds")
    return thresholds if isinstance(thresholds, Mapping) else {}


def resolve_thresholds(
    explicit: Mapping[str, Any] | None, base: "ResultsFile", current: "ResultsFile", fallback_latency: Any
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
            suite_thr = _suite_thresholds(results)
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
                out[metric] = Threshold(DEFAULT_ENERGY_THRESHOLD if metric == "energy" else DEFAULT_MEMORY_THRESHOLD, metric, "default")
    for label, results in (("base", base), ("current", current)):
        suite_thr = _suite_thresholds(results)
        for metric, value in suite_thr.items():
            if metric not in METRICS and metric != "throughput":
                notes.append(f"{label} suite sets a threshold for {metric!r}, which compare does not check")
    return out, notes


