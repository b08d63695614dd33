"""`bench.py history [GLOB...]`: trends and change points over commits, from the store.

Compute, then render: `cnnbench.history` builds the series and finds change points; this
module prints a table, the JSON contract (--json) or writes the trend page (--html DIR).
"""

from __future__ import annotations

import argparse
import json
import sys

from cnnbench.core.units import fmt_change, fmt_ms
from cnnbench.commands.compare import add_statistic_argument
from cnnbench.commands.store import add_db_argument, db_url
from cnnbench.core.errors import UserError
from cnnbench.history.series import build_series
from cnnbench.core.terminal import message_line, visible

HELP = "trends over commits from the history store: change points, JSON, static trend page"
ORDER = 36
DESCRIPTION = """\
For each stored case (a case key on a machine fingerprint) matching GLOB (a model name or case key
pattern; default all): its statistic per commit (the median of the worker processes' figures,
p5 by default as in compare), the change points over commits (e-divisive means with Student's
t-test significance, as Apache Otava finds them), each naming the last commit before and the first
after, the ratio, its confidence and the direction, and a verdict: stable, changed, unstable
(noise between commits above 10%) or insufficient data (fewer than 6 commits).
--json prints the JSON contract on stdout; --html DIR writes DIR/index.html. Exit codes: 0 done,
2 the store cannot be read or nothing matches. See docs/history.md.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("patterns", nargs="*", metavar="GLOB", help="model or case-key globs, e.g. 'resnet*'")
    add_db_argument(parser)
    parser.add_argument("--branch", metavar="NAME", help="only runs of this branch (default: every branch)")
    parser.add_argument("--machine", metavar="FINGERPRINT", help="only runs of this machine fingerprint")
    add_statistic_argument(parser)
    out = parser.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print the history as JSON on stdout (docs/history.md)")
    out.add_argument("--html", metavar="DIR", help="write the static trend page DIR/index.html")


def run(args: argparse.Namespace) -> int:
    from cnnbench.history.store import open_store
    from cnnbench.history.trends import analyze_series, history_json

    with open_store(db_url(args), create=False) as store:
        rows = store.history(statistic=args.statistic, machine=args.machine, branch=args.branch)
        shown = store.shown_url
    series = build_series(rows, patterns=args.patterns)
    if not series:
        what = " ".join(repr(p) for p in args.patterns) or "any case"
        scope = "".join(
            [f", branch {args.branch!r}" if args.branch else "", f", machine {args.machine}" if args.machine else ""]
        )
        raise UserError(f"{shown}: no valid stored run matches {what}{scope}")
    trends = analyze_series(series)
    if args.json:
        doc = history_json(trends, store=shown, statistic=args.statistic, branch=args.branch)
        sys.stdout.write(json.dumps(doc, allow_nan=False) + "\n")  # one line: the C encoder, fast
        return 0
    if args.html:
        from cnnbench.history.trend_html import write_page

        path = write_page(trends, args.html, store=shown, statistic=args.statistic, branch=args.branch)
        print(visible(f"{path} ({len(trends)} series)"))
        return 0
    _render_terminal(trends, statistic=args.statistic, store=shown)
    return 0


def _render_terminal(trends, *, statistic: str, store: str) -> None:
    """One line per series, then one indented line per change point (fits any width)."""
    print(message_line(f"history: {store} ({statistic} of each process, median per commit)"))
    for t in trends:
        s = t.series
        pts = s.points
        label = " ".join(p for p in s.key.split("|") if p != "inference")
        print(visible(f"{label}  [machine {s.machine[:8]}]  {len(pts)} commit(s), latest {fmt_ms(pts[-1].value_ms)} ms: {t.verdict}"))
        for c in t.analysis.change_points:
            print(visible(
                f"  {pts[c.index - 1].commit[:8]}..{pts[c.index].commit[:8]}  {fmt_change(c.ratio)} {c.direction} "
                f"(ratio {c.ratio:.3f}, 95% {c.ratio_low:.3f}-{c.ratio_high:.3f}, confidence {c.confidence_text})"
            ))
