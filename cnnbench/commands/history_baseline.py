"""`compare --baseline-db URL --branch B --window N CURRENT`: the base from the history store.

Not a command of its own (no `run`): the options and the loading step `compare` calls.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from cnnbench.core.errors import UserError
from cnnbench.results.format import load_results

DEFAULT_WINDOW = 5


def add_baseline_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--baseline-db",
        metavar="URL",
        help="take BASE from the history store at URL (sqlite:///PATH or postgresql://...): the last "
        "--window stored runs of each case on CURRENT's machine fingerprint, their processes pooled; "
        "then give only CURRENT",
    )
    parser.add_argument("--branch", metavar="NAME", help="with --baseline-db: only runs of this branch (e.g. main)")
    parser.add_argument(
        "--window", type=int, default=DEFAULT_WINDOW, metavar="N",
        help=f"with --baseline-db: how many stored runs per case (default {DEFAULT_WINDOW})",
    )  # fmt: skip


def load_from_store(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any], str, str]:
    """(base, current, base name, current name). Prints the line naming the commits used."""
    from cnnbench.history.baseline import baseline_from_store
    from cnnbench.history.store import open_store

    given = [p for p in (args.base, args.current) if p is not None]
    if len(given) != 1:
        raise UserError("with --baseline-db give only CURRENT (the base comes from the store)")
    if args.window < 1:
        raise UserError(f"--window must be at least 1, got {args.window}")
    current_path = given[0]
    current = load_results(current_path)
    with open_store(args.baseline_db, create=False) as store:
        baseline = baseline_from_store(store, current, branch=args.branch, window=args.window, current_name=current_path)
    print(baseline.summary, file=sys.stderr)
    return baseline.results, current, baseline.name, current_path
