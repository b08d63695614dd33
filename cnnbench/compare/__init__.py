"""Compare two results files: pair cases by key, decide with statistics, then render.

`verdicts.compare_results` computes a `Comparison` of plain rows from two checked results files;
`render` presents it (Markdown, terminal, JSON) and decides nothing; `thresholds` parses the
regression rules; `cnnbench.stats.ranktests` holds the pure statistics (Mann-Whitney U, bootstrap). Why the
statistics look as they do, with the measurements behind them: docs/compare.md.
"""

from __future__ import annotations

from cnnbench.stats import basic as stats  # noqa: F401 - `compare.stats`: the statistics the verdicts use
from cnnbench.stats.ranktests import mann_whitney_greater, min_attainable_p, min_repeats_for_alpha, repeats_needed
from cnnbench.compare.render import render_markdown, render_terminal, to_json
from cnnbench.compare.thresholds import DEFAULT_MEMORY_THRESHOLD, Threshold, ThresholdError, parse_threshold
from cnnbench.compare.verdicts import (
    DEFAULT_ALPHA,
    DEFAULT_STATISTIC,
    FAILED,
    IMPROVED,
    INCOMPARABLE,
    INVALID,
    MISSING,
    NEW,
    NOISY,
    REGRESSED,
    STATISTICS,
    UNCHANGED,
    VERDICTS,
    CaseComparison,
    Comparison,
    compare_results,
)

__all__ = [
    "VERDICTS",
    "REGRESSED",
    "IMPROVED",
    "UNCHANGED",
    "NOISY",
    "FAILED",
    "INVALID",
    "INCOMPARABLE",
    "MISSING",
    "NEW",
    "Threshold",
    "ThresholdError",
    "parse_threshold",
    "DEFAULT_MEMORY_THRESHOLD",
    "CaseComparison",
    "Comparison",
    "compare_results",
    "STATISTICS",
    "DEFAULT_STATISTIC",
    "DEFAULT_ALPHA",
    "render_markdown",
    "render_terminal",
    "to_json",
    "mann_whitney_greater",
    "min_attainable_p",
    "min_repeats_for_alpha",
    "repeats_needed",
]
