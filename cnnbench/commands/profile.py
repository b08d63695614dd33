"""`bench.py profile MODEL`: the per-layer table (the textbook view, measured) for one model.

Computing lives in `cnnbench.measure.profile`, the table in `cnnbench.report.profile_table`; this module
parses arguments and writes (rich table on the terminal, JSON or CSV for scripts). torch is imported inside `run`, never at import time.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

from cnnbench.core.errors import UserError
from cnnbench.core.safeio import atomic_write
from cnnbench.measure.profile import profile_model, time_layers
from cnnbench.models.catalog import get_info
from cnnbench.models.registry import build_model
from cnnbench.report.console import make_console
from cnnbench.report.profile_table import caption_lines, render_table, to_csv

if TYPE_CHECKING:  # pragma: no cover
    pass

HELP = "per-layer table: output shapes, activations, parameters, MACs, receptive field (and time)"
DESCRIPTION = (
    "Profile one forward pass of MODEL layer by layer: output shape, activations (elements and "
    "bytes at the precision), parameters, MACs (multiply-accumulates, fvcore; FLOPs = 2 x MACs), "
    "and the receptive field and cumulative stride (jump) from the textbook recurrence. "
    "--time adds profiler-attributed CPU time per layer."
)
ORDER = 40

_PRECISIONS = ("fp32", "fp16", "bf16")
_TIME_WARMUP = 2


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="registry name (see `bench.py list models`), timm:<arch>[.<tag>], or a label with --source")
    p.add_argument("--batch-size", "-b", default="1", metavar="N", help="batch size (default 1)")
    p.add_argument(
        "--input-size", metavar="SIZE",
        help="input size per image, as in a suite: 224, 224x160, 3x224x224, or train/test for a timm model "
        "(default: the model's own; the channels of a size without them are the model's)",
    )  # fmt: skip
    p.add_argument("--precision", choices=_PRECISIONS, default="fp32", help="element size for bytes (default fp32)")
    p.add_argument("--json", metavar="FILE", help="write the profile as JSON to FILE ('-' for stdout)")
    p.add_argument("--csv", metavar="FILE", help="write the rows as CSV to FILE ('-' for stdout)")
    p.add_argument("--time", action="store_true", help="add profiler-attributed CPU time per layer (torch.profiler)")
    p.add_argument("--runs", default="5", metavar="N", help="timed runs averaged with --time (default 5)")
    p.add_argument("--source", metavar="pkg.mod:callable", help="profile a user model; MODEL is then only its label")


def parse_positive_int(text: str, what: str) -> int:
    try:
        value = int(str(text).strip())
    except ValueError:
        raise UserError(f"{what} must be a whole number, got {text!r}") from None
    if value <= 0:
        raise UserError(f"{what} must be at least 1, got {value}")
    return value


def parse_input_size(text: str, *, model: str | None = None, source: str | None = None) -> tuple[int, int, int]:
    """An input size in the suites' grammar (one grammar everywhere: `cnnbench.suite.sections.
    InputSizes`): 224, "224x160", "3x224x224", train/test; a size without channels takes the
    model's (a user model has none: give CxHxW). Anything else is a one-line UserError."""
    from cnnbench.suite.reader import from_python
    from cnnbench.suite.sections import Context, InputSizes, ModelEntry

    text = str(text).strip().replace("×", "x")
    node = from_python(int(text) if text.isdigit() else text, "")
    ctx = Context("--input-size", cuda_available=False, check_imports=False, python_path=(), default_threads=lambda: 1)
    sizes = InputSizes(ctx)
    size = sizes.one(node)
    if model is None:
        model, source = "model", "user:model"
    default = None if source is not None else get_info(model).input_size  # unknown model: UnknownModelError
    return sizes.resolve(ModelEntry(model, source, default, (), node), size, node)


def run(args: argparse.Namespace) -> int:
    batch = parse_positive_int(args.batch_size, "--batch-size")
    runs = parse_positive_int(args.runs, "--runs")
    if args.json == "-" and args.csv == "-":
        raise UserError("--json - and --csv - cannot both write to stdout; give one of them a file")
    if args.input_size is not None:
        size = parse_input_size(args.input_size, model=args.model, source=args.source)
    elif args.source is not None:
        raise UserError(f"--input-size is required with --source (the size {args.source!r} takes)")
    else:
        size = get_info(args.model).input_size  # unknown model: UnknownModelError, did you mean

    import dataclasses

    import torch

    model = build_model(args.model, source=args.source, input_size=size)
    example = torch.randn((batch, *size), generator=torch.Generator().manual_seed(0))
    prof = profile_model(model, example, precision=args.precision)
    prof = dataclasses.replace(prof, model=args.model)
    timing_note = None
    if args.time:
        prof = time_layers(model, example, prof, warmup=_TIME_WARMUP, runs=runs)
        timing_note = (
            f"time = profiler-attributed CPU time per call (torch.profiler record_function around each layer; "
            f"mean of {runs} runs after {_TIME_WARMUP} warmups, {torch.get_num_threads()} threads"
            + (f", CPU autocast {args.precision}" if args.precision != "fp32" else "")
            + "); profiler overhead included, ops run by parent modules are only in the forward total"
        )

    if args.json:
        data = prof.to_dict()
        if timing_note:
            data["timing_method"] = timing_note
        _write(args.json, json.dumps(data, indent=2) + "\n")
    if args.csv:
        _write(args.csv, to_csv(prof))
    if "-" not in (args.json, args.csv):

        console = make_console()
        console.print(render_table(prof))
        for line in caption_lines(prof, timing_note):
            console.print(line, highlight=False, markup=False)
    return 0


def _write(target: str, text: str) -> None:
    if target == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return

    atomic_write(target, text)
