"""`bench.py show RESULTS... [--wide]`: the table of existing results files (as `pyperf show`).

The same table `run` prints at its end, made from the same rows as the report. No torch import.
"""

from __future__ import annotations

import argparse
from cnnbench.report.console import make_console, render_notes, render_table
from cnnbench.results import records

HELP = "print the table of existing results files (compact; --wide for every column)"
ORDER = 22
DESCRIPTION = """\
Print the table `bench.py run` prints at its end, for results files already written: model,
batch, backend, precision, status, median ± IQR, images/s and speedup over eager, readable at 80
columns (a table too wide for the terminal is split into one table per model). --wide adds cold
start, parameters, MACs, measured and analytic memory and measured top-1. Warnings and errors are
listed under each table. Every file is checked before anything is printed: a damaged file is one
error line and exit 2. Exit codes: 0 shown, 2 usage or file error.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("results", nargs="+", metavar="RESULTS", help="results files (JSON) written by `bench.py run` or `merge`")
    parser.add_argument("--wide", action="store_true", help="every column (cold start, params, MACs, memory, top-1)")


def run(args: argparse.Namespace) -> int:
    loaded = [records.load(p) for p in args.results]  # every file checked before any output
    console = make_console(soft_wrap=False)
    for results in loaded:
        cases = [c.to_json() for c in results.cases]
        suite = results.suite.get("name")
        title = f"{results.path}" + (f" (suite {suite})" if suite else "")
        if not cases:
            console.print(f"{title}: no cases", markup=False, highlight=False)
            continue
        console.print(render_table(cases, title=title, wide=args.wide, width=console.width))
        for line in render_notes(cases):
            console.print(line, highlight=False, markup=False)
    return 0
