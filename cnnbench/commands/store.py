"""`bench.py store FILE...`: append results files to the history store (idempotent).

The work is `cnnbench.history.store`; this module reads the files, opens the store and prints
one line per file. No torch import.
"""

from __future__ import annotations

import argparse
from typing import Any
from cnnbench.core.errors import UserError
from cnnbench.history import DEFAULT_STORE_URL
from cnnbench.results.format import load_results

from cnnbench.core.terminal import message_line

HELP = "append results files to the performance history (SQLite by default, or PostgreSQL)"
ORDER = 35
DESCRIPTION = """\
Store each results FILE in the history: one run per file, keyed by commit x machine fingerprint x
case key, with the branch, the time, the environment and every case record (raw samples and
per-process figures included). Commit, branch and time come from the git checkout the run was
made in (recorded in the file's environment); --commit, --branch and --time override them.
Storing the same file twice is a no-op. Every file is read and checked before anything is written.
Exit codes: 0 stored (or already stored), 2 a file or the store cannot be used (one line, nothing
written). See docs/history.md.
"""


def add_db_argument(parser: argparse.ArgumentParser, *, help_suffix: str = "") -> None:
    """`--db URL`, shared by `store`, `history` and `run --store` (one definition, one default)."""

    parser.add_argument(
        "--db",
        metavar="URL",
        default=None,
        help=f"the history store: sqlite:///PATH or postgresql://USER@HOST/DB (default: $CNNBENCH_STORE, "
        f"else {DEFAULT_STORE_URL}){help_suffix}",
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", metavar="FILE", help="results files written by `bench.py run`")
    add_db_argument(parser)
    parser.add_argument("--commit", metavar="SHA", help="the commit measured (default: from the file's environment)")
    parser.add_argument("--branch", metavar="NAME", help="its branch (default: from the file's environment)")
    parser.add_argument("--time", metavar="ISO8601", help="its time, e.g. 2026-12-01T17:36:01Z (default: the commit's time)")


def db_url(args: argparse.Namespace) -> str:
    from cnnbench.history.store import default_store_url

    return args.db or default_store_url()


def store_files(paths: list[str], *, url: str, commit: str | None = None, branch: str | None = None,
                time: str | None = None) -> list[tuple[str, Any]]:
    """Load every file first (a bad one stops everything before the store is touched), then
    store them in order. Returns (path, IngestResult) pairs."""
    from cnnbench.history.store import open_store, parse_url, prepare_ingest

    parse_url(url)
    prepared = [
        (p, prepare_ingest(load_results(p), source=p, commit=commit, branch=branch, time=time)) for p in paths
    ]
    with open_store(url, create=True) as store:
        return [(p, store.store_prepared(ingest)) for p, ingest in prepared]


def describe(path: str, result: Any, url: str) -> str:
    """One line per stored file; its values (commit, branch, fingerprint) shown, never obeyed."""
    return message_line(_describe(path, result, url))


def _describe(path: str, result: Any, url: str) -> str:
    where = f"commit {result.commit[:10]}" + (f" ({result.branch})" if result.branch else "")
    if not result.stored:
        return f"{path}: already stored (run {result.run_id}, {where}): nothing changed"
    return f"{path}: stored {result.cases} case(s), {where}, machine {result.machine_fingerprint} -> {url}"


def run(args: argparse.Namespace) -> int:
    from cnnbench.history.store import parse_url

    url = db_url(args)
    shown = parse_url(url).render_as_string(hide_password=True)
    for path, result in store_files(args.files, url=url, commit=args.commit, branch=args.branch, time=args.time):
        print(describe(path, result, shown))
    return 0


def add_run_store_arguments(parser: argparse.ArgumentParser) -> None:
    """`run --store [--db URL]`: store the results file once the run has written it."""
    parser.add_argument(
        "--store", action="store_true",
        help="when the run is done, also append its results file to the history store (docs/history.md)",
    )  # fmt: skip
    add_db_argument(parser, help_suffix="; implies --store")


def store_after_run(args: argparse.Namespace, out: Any, code: int) -> int:
    """Store the results file a finished run wrote. A store that fails is one line and exit 2;
    the results file is already on disk and stays."""
    import sys

    if not (args.store or args.db):
        return code
    url = db_url(args)
    try:
        from cnnbench.history.store import parse_url

        shown = parse_url(url).render_as_string(hide_password=True)
        [(path, result)] = store_files([str(out)], url=url)
    except UserError as exc:
        print(message_line(f"error: not stored: {exc} (the results file {out} is kept)"), file=sys.stderr)
        return 2
    print(describe(path, result, shown))
    return code
