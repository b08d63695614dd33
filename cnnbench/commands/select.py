"""`bench.py select RESULTS... --constraint C --objective O`: which configuration to ship (docs/select.md)."""

from __future__ import annotations

import argparse
import json
import sys

from cnnbench.commands import warn
from cnnbench.core.errors import EXIT_NOT_OK, EXIT_OK
from cnnbench.results import records
from cnnbench.select import configs_of, parse_constraint, parse_objective, select
from cnnbench.select.render import render_text, to_json

HELP = "pick the configuration to ship: constraints, a Pareto frontier that respects intervals, a recommendation"
ORDER = 27
DESCRIPTION = """\
Check every measured configuration (model x backend x precision x batch, from one or several
results files) against constraints such as p99<=20ms, latency<=10ms, qps>=200, top1>=0.99*fp32,
top1>=fp32-0.5pp, top1>=75, memory<=512MiB, params<=10M, energy<=0.05J/image, size<=20MB, and print
the feasible set, the Pareto frontier over the objectives (throughput, latency, energy, size,
top1, ...), where A dominates B only when their confidence intervals separate (overlapping
configurations are ties, shown as such), the recommendation with its reason, and the nearest
misses (what would have won without a constraint, and by how much it missed). A configuration
lacking a constrained figure is "unknown", never feasible. Cases flagged unreliable (few
samples, processes split) are listed and never recommended. --report DIR also writes the model
report (Markdown and HTML) and the frontier chart (PNG). Exit codes: 0 something is feasible, 1
nothing is, 2 usage or file error (a constraint that cannot be read included).
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("results", nargs="+", metavar="RESULTS", help="results files (JSON) written by `bench.py run` or `merge`")
    parser.add_argument("--constraint", "-c", action="append", default=[], metavar="C",
                        help="a bound on a figure, e.g. 'p99<=20ms', 'top1>=0.99*fp32' (repeatable; quote it in a shell)")  # fmt: skip
    parser.add_argument("--objective", "-o", action="append", default=[], metavar="FIGURE",
                        help="throughput (default), latency, energy, size, top1, ... (repeatable: a multi-objective frontier, ranked by the first)")  # fmt: skip
    parser.add_argument("--json", action="store_true", help="print the decision as JSON (for scripts)")
    parser.add_argument("--report", metavar="DIR", help="also write DIR/select.md, DIR/select.html and DIR/frontier.png")


def run(args: argparse.Namespace) -> int:
    constraints = [parse_constraint(c) for part in args.constraint for c in part.split(",") if c.strip()]
    objectives = [parse_objective(o) for part in args.objective for o in part.split(",") if o.strip()]
    files = [records.load(p) for p in args.results]  # every file checked before any output
    configs, left = configs_of(files)
    machines = {str(c.environment.get("machine_fingerprint") or c.environment.get("hostname") or "?") for c in configs}
    if len(machines) > 1:
        warn(f"these configurations were measured on {len(machines)} machines: their figures are compared as they are, "
             "so a difference may be the machine's (run them on one machine to decide)")  # fmt: skip
    sel = select(configs, constraints, objectives, left)
    if args.json:
        json.dump(to_json(sel), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print("\n".join(render_text(sel)))
    if args.report:
        from cnnbench.select.modelreport import write_report  # matplotlib, for the chart

        for path in write_report(sel, files, args.report):
            print(f"wrote {path}", file=sys.stderr)
    return EXIT_OK if sel.feasible else EXIT_NOT_OK
