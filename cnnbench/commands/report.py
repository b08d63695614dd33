"""`bench.py report RESULTS... --out DIR`: Markdown, HTML, CSV and plots from results files."""

from __future__ import annotations

import argparse
from typing import Any
from cnnbench.core.errors import UserError
from cnnbench.report import parse_formats, write_report

from cnnbench.results import records
from cnnbench.report.blocks import B, Heading, P
from cnnbench.select import configs_of, parse_constraint, parse_objective, select

HELP = "write a report (Markdown, self-contained HTML, CSV, PNG/SVG plots) from results files"
DESCRIPTION = (
    "Merge one or more results files (shards, machines, days) into one report: report.md, "
    "report.html (plots embedded, readable offline, printable), results.csv (one row per case) "
    "and plots/*.png|svg. Rows say where they were measured; different environments are reported "
    "separately and never averaged. Failed and invalid cases are listed with their status and error."
)
ORDER = 20
_ALL_FORMATS = "md,html,csv,png,svg"


def _formats(value: str) -> tuple[str, ...]:
    try:
        return parse_formats(value)
    except UserError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("results", nargs="+", metavar="RESULTS", help="results files (JSON) written by `bench.py run`")
    p.add_argument("--out", "-o", required=True, metavar="DIR", help="output directory (created if missing)")
    p.add_argument(
        "--format",
        dest="formats",
        type=_formats,
        default=_ALL_FORMATS,
        metavar="LIST",
        help=f"comma-separated outputs among {_ALL_FORMATS} (default: all)",
    )
    p.add_argument("--title", default=None, help="report title (default: 'cnnbench report')")
    p.add_argument(
        "--epoch-images",
        action="append",
        default=[],
        type=_epoch_images,
        metavar="LABEL=N",
        help="also give each training case's time per epoch for a training set of N images "
        "(repeatable; ImageNet-1k and CIFAR-10 are always given), e.g. --epoch-images 'my data=120000'",
    )
    add_select_arguments(p)


def add_select_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--select", metavar="CONSTRAINTS", default=None,
                   help="also write the model report for the configuration `bench.py select` picks under these "
                   "comma-separated constraints (e.g. 'p99<=1ms,top1>=fp32-0.5pp'): select.md, select.html, "
                   "frontier.png (docs/select.md)")  # fmt: skip
    p.add_argument("--objective", action="append", default=[], metavar="FIGURE",
                   help="with --select: the objective(s), default throughput")


def _epoch_images(text: str) -> tuple[str, int]:
    label, sep, number = text.rpartition("=")
    try:
        images = int(number.replace(",", "").replace("_", ""))
    except ValueError:
        images = 0
    if not sep or not label.strip() or images <= 0:
        raise argparse.ArgumentTypeError(f"expected LABEL=N with N a whole number of images >= 1, got {text!r}")
    return label.strip(), images


def run(args: argparse.Namespace) -> int:
    formats = args.formats if isinstance(args.formats, tuple) else parse_formats(args.formats)
    chosen = _parse_select(args)  # a constraint that cannot be read fails before anything is written
    selection = _selection(args, *chosen) if chosen is not None else None
    extra = _selection_section(args, selection) if selection is not None else ()
    out = write_report(args.results, args.out, formats=formats, title=args.title, epoch_images=args.epoch_images, extra=extra)
    for path in out.files:
        if path.parent == out.out_dir:
            print(path)
    n_plots = sum(1 for p in out.files if p.parent != out.out_dir)
    if n_plots:
        print(f"{out.out_dir / 'plots'}/ ({n_plots} images)")
    summary = f"{out.n_cases} cases: {out.n_valid} valid"
    if out.n_invalid:
        summary += f", {out.n_invalid} failed or invalid (listed in the report)"
    if len(out.environments) > 1:
        summary += f"; {len(out.environments)} environments reported separately: {', '.join(out.environments)}"
    print(summary)
    if selection is not None:
        for path in _write_select(args, selection):
            print(path)
    return 0


def _parse_select(args: argparse.Namespace):
    if args.select is None:
        return None
    constraints = [parse_constraint(c) for c in args.select.split(",") if c.strip()]
    objectives = [parse_objective(o) for part in args.objective for o in part.split(",") if o.strip()]
    return constraints, objectives


def _selection(args: argparse.Namespace, constraints, objectives):
    files = [records.load(p) for p in args.results]
    configs, left = configs_of(files)
    return files, select(configs, constraints, objectives, left)


def _selection_section(args: argparse.Namespace, chosen) -> list[Any]:
    """The report's "Model selection" section: what `--select` picked and why, and where the
    model report that answers the course's questions is (select.md, select.html, frontier.png)."""
    _, sel = chosen
    picked = sel.recommended.label if sel.recommended is not None else "nothing is feasible"
    return [
        Heading(2, "Model selection", "model-selection"),
        P(B("Constraints:"), " ", args.select, ". ", B("Selected:"), " ", picked, ". ", sel.reason),
        P("The model report (the model and its configuration, the alternatives and why each was rejected, "
          "parameters, MACs, latency and throughput with their intervals, memory, accuracy and its dataset, "
          "the hardware, and what was not measured) is select.md / select.html, with the frontier chart "
          "frontier.png, beside this report (docs/select.md)."),  # fmt: skip
    ]


def _write_select(args: argparse.Namespace, chosen):
    from cnnbench.select.modelreport import write_report as write_model_report  # matplotlib

    files, sel = chosen
    return write_model_report(sel, files, args.out)
