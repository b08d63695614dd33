"""Trends: each series analysed for change points, as plain records (compute, then render).

`history_json` is the contract scripts read (`bench.py history --json`, docs/history.md):

    {"tool": "cnnbench", "kind": "history", "format_version": 1, "store": URL, "statistic": "p5",
     "branch": B | null, "cases": [{"key": ..., "machine": ..., "model": ..., "backend": ...,
       "device": ..., "precision": ...,
       "points": [{"commit", "branch", "time", "value_ms", "low_ms", "high_ms", "processes", "runs"}],
       "change_points": [{"before_commit", "after_commit", "index", "ratio", "ratio_low",
                          "ratio_high", "confidence", "pvalue", "direction": "slower"|"faster"}],
       "verdict": "stable"|"changed"|"unstable"|"insufficient data", "noise": float | null}]}
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

from cnnbench.stats.changepoints import Analysis, analyze
from cnnbench.history.series import Series

__all__ = ["Trend", "analyze_series", "history_json", "FORMAT_VERSION"]

FORMAT_VERSION = 1


@dataclass(frozen=True)
class Trend:
    series: Series
    analysis: Analysis

    @property
    def verdict(self) -> str:
        return self.analysis.verdict


def analyze_series(series: Sequence[Series]) -> list[Trend]:
    return [Trend(s, analyze([p.value_ms for p in s.points])) for s in series]


def _finite(x: float | None) -> float | None:
    return x if x is not None and math.isfinite(x) else None


def trend_json(t: Trend) -> dict[str, Any]:
    s = t.series
    pts = s.points
    return {
        "key": s.key,
        "machine": s.machine,
        "model": s.model,
        "backend": s.backend,
        "device": s.device,
        "precision": s.precision,
        "points": [
            {
                "commit": p.commit,
                "branch": p.branch,
                "time": p.time,
                "value_ms": p.value_ms,
                "low_ms": p.low_ms,
                "high_ms": p.high_ms,
                "processes": len(p.figures),
                "runs": p.runs,
            }
            for p in pts
        ],
        "change_points": [
            {
                "before_commit": pts[c.index - 1].commit,
                "after_commit": pts[c.index].commit,
                "index": c.index,
                "ratio": c.ratio,
                "ratio_low": _finite(c.ratio_low),
                "ratio_high": _finite(c.ratio_high),
                "confidence": c.confidence,
                "pvalue": c.pvalue,
                "direction": c.direction,
            }
            for c in t.analysis.change_points
        ],
        "verdict": t.verdict,
        "noise": _finite(t.analysis.noise),
    }


def history_json(trends: Sequence[Trend], *, store: str, statistic: str, branch: str | None) -> dict[str, Any]:
    return {
        "tool": "cnnbench",
        "kind": "history",
        "format_version": FORMAT_VERSION,
        "store": store,
        "statistic": statistic,
        "branch": branch,
        "cases": [trend_json(t) for t in trends],
    }
