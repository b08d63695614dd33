"""`bench.py compare BASE CURRENT`: pair cases, decide with statistics, exit non-zero on a regression.

The work is `cnnbench.compare` (compute, then render); this module only reads the files, writes
the requested outputs and picks the exit code. No torch import.
"""

from __future__ import annotations

from typing import Any

import argparse
import json
import os

from cnnbench.core.errors import EXIT_NOT_OK, EXIT_OK, UserError
from cnnbench import compare
from cnnbench.commands.history_baseline import add_baseline_arguments, load_from_store
from cnnbench.compare import DEFAULT_STATISTIC, STATISTICS
from cnnbench.core.safeio import append_text, atomic_write
from cnnbench.results.records import load

HELP = "compare two results files and decide, with statistics, whether anything regressed"
ORDER = 30
DESCRIPTION = """\
Pair the cases of BASE and CURRENT by key and give each a verdict: regressed, improved,
unchanged, noisy (too little evidence; says how many repeats would settle it), failed, invalid
(failed parity), incomparable, missing or new. A case regresses only when its median is slower
than the threshold allows AND a one-sided Mann-Whitney U test on the per-repeat medians is
significant at --alpha (this needs at least 5 repeats per side at the default alpha 0.01).
Memory growth beyond the memory threshold is a regression too.

Prints a table, writes Markdown (for a pull-request comment) to --markdown and appends it to
$GITHUB_STEP_SUMMARY when that is set. With --baseline-db URL give only CURRENT: BASE is then the
last --window stored runs of each case on CURRENT's machine (and --branch), their processes pooled,
and the commits used are named (docs/history.md). Exit codes: 0 no regression, 1 at least one regression
(or a case that was ok in BASE and fails in CURRENT), 2 usage or file error. See docs/compare.md.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("base", metavar="BASE", nargs="?", help="the reference results file (omitted with --baseline-db)")
    parser.add_argument("current", metavar="CURRENT", nargs="?", help="the results file under test")

    add_baseline_arguments(parser)
    parser.add_argument(
        "--threshold",
        action="append",
        default=[],
        metavar="[METRIC:]PCT",
        help="slowdown that counts as a regression, e.g. 5%% (latency), memory:10%% or energy:10%% (J/image); "
        "repeatable. Default: the suite's `thresholds`, else latency 5%%, memory 10%% and energy 10%%",
    )
    parser.add_argument(
        "--alpha",
        type=float,  # checked with the suite's own alpha (NaN, inf, <= 0, >= 0.5 refused in one line)
        default=None,
        metavar="P",
        help="significance level of each one-sided test, i.e. the false-alarm rate per case (default 0.01)",
    )
    add_statistic_argument(parser)
    parser.add_argument("--markdown", metavar="FILE", help="write the Markdown summary to FILE")
    parser.add_argument("--json", metavar="FILE", help="write the comparison as JSON to FILE")


def add_statistic_argument(parser: argparse.ArgumentParser) -> None:
    """`--statistic`, shared by `compare` and `ab` (one definition, one default)."""

    parser.add_argument(
        "--statistic",
        choices=tuple(STATISTICS),
        default=DEFAULT_STATISTIC,
        help=f"the figure taken from each worker process's per-call times, which the test compares "
        f"(default {DEFAULT_STATISTIC}: robust to the one-sided noise of a shared machine; median also "
        f"catches a change that slows only some calls, on a quiet machine). See docs/compare.md",
    )


def run(args: argparse.Namespace) -> int:
    thresholds: dict[str, compare.Threshold] = {}
    for text in args.threshold:
        thr = compare.parse_threshold(text, source="command line")
        thresholds[thr.metric] = thr
    alpha = compare.DEFAULT_ALPHA if args.alpha is None else args.alpha
    if not 0 < alpha < 0.5:
        raise UserError(f"--alpha must be between 0 and 0.5, got {alpha:g}")

    if args.baseline_db:  # BASE is the last --window stored runs (docs/history.md)

        base, current, args.base, args.current = load_from_store(args)
    else:
        if args.base is None or args.current is None:
            raise UserError("compare needs BASE and CURRENT (or --baseline-db URL and CURRENT)")
        base = load(args.base)
        current = load(args.current)
    comparison = compare.compare_results(
        base,
        current,
        alpha=alpha,
        thresholds=thresholds,
        base_name=args.base,
        current_name=args.current,
        statistic=args.statistic,
    )

    write_outputs(comparison, compare.render_markdown(comparison), markdown_path=args.markdown, json_path=args.json)

    from rich.console import Console

    compare.render_terminal(comparison, Console(soft_wrap=False))
    return EXIT_NOT_OK if comparison.has_regression else EXIT_OK


def write_outputs(comparison: Any, markdown: str, *, markdown_path: str | None, json_path: str | None) -> None:
    """The files a comparison goes to (shared by `compare` and `ab`): --markdown, --json, and
    GitHub's step summary when `$GITHUB_STEP_SUMMARY` is set."""

    if markdown_path:
        _write(markdown_path, markdown)
    if json_path:
        _write(json_path, json.dumps(compare.to_json(comparison), indent=1, allow_nan=False) + "\n")
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        _write(summary, markdown + "\n", append=True)


def _write(path: str, text: str, *, append: bool = False) -> None:
    if append:
        append_text(path, text)
    else:  # a --markdown/--json path in a missing directory is a typo: refused, not created
        atomic_write(path, text, make_parents=False)
