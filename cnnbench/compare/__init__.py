"""Compare two results files: pair cases by key, decide with statistics, then render.

`verdicts.compare_results` computes a `Comparison` of plain rows from two checked results files;
`render` presents it (Markdown, terminal, JSON) and decides nothing; `thresholds` parses the
regression rules and `ranktests` holds the pure statistics (Mann-Whitney U, bootstrap). Why the
statistics look as they do, with the measurements behind them: docs/compare.md.
"""

from __future__ import annotations

from cnnbench.stats import basic as stats  # noqa: F401 - `compare.stats` is the stats the verdicts use
from cnnbench.stats.ranktests import (
    ASSUMED_PROCESS_CV,
    BOOTSTRAP_RESAMPLES,
    EXACT_MWU_MAX_N,
    POWER,
    REPEATS_CAP,
    bootstrap_ratio,
    mann_whitney_greater,
    min_attainable_p,
    min_repeats_for_alpha,
    repeats_needed,
)
from cnnbench.compare.render import MAX_MARKDOWN_ROWS, render_markdown, render_terminal, to_json
from cnnbench.compare.thresholds import (
    DEFAULT_LATENCY_THRESHOLD,
    DEFAULT_MEMORY_THRESHOLD,
    METRICS,
    Threshold,
    ThresholdError,
    parse_threshold,
)
from cnnbench.compare.verdicts import (
    DEFAULT_ALPHA,
    DEFAULT_STATISTIC,
    FAILED,
    IMPROVED,
    INCOMPARABLE,
    INVALID,
    MEMORY_METRICS,
    MEMORY_NOISE_FLOOR_BYTES,
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

# Re-exported for callers and tests that reach one level down (kept stable across the split).
_REEXPORTED = (
    ASSUMED_PROCESS_CV, BOOTSTRAP_RESAMPLES, EXACT_MWU_MAX_N, POWER, REPEATS_CAP, 
    bootstrap_ratio, mann_whitney_greater, min_attainable_p,
    min_repeats_for_alpha, repeats_needed, MAX_MARKDOWN_ROWS, DEFAULT_LATENCY_THRESHOLD, DEFAULT_MEMORY_THRESHOLD,
    METRICS, DEFAULT_ALPHA, FAILED, IMPROVED, INCOMPARABLE, INVALID, MEMORY_METRICS, MEMORY_NOISE_FLOOR_BYTES,
    MISSING, NEW, NOISY, REGRESSED, UNCHANGED,
)
