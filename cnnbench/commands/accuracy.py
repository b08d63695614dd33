"""`bench.py accuracy MODEL --dataset KIND[:PATH]`: measured top-1/top-5 through each backend.

The case is validated by the suite schema (`suite.expand`, the same checks and messages as an
`accuracy:` mapping in a suite), then each backend runs in its own worker process, like `run`
(or in this process with --in-process). Timing is kept short: the point is the answers.
No torch import at module import.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from typing import Any

from cnnbench.core.options import positive_float, positive_int
from cnnbench.core.errors import CaseFailure, UserError, classify_exception
from cnnbench.accuracy import DATASET_KINDS
from cnnbench.accuracy.progress import worker_progress
from cnnbench.measure.worker import run_case
from cnnbench.report.accuracy_table import published_lines, render_table, table_rows, title
from cnnbench.report.console import make_console
from cnnbench.run.runner import StopFlag, run_worker

HELP = "measure top-1/top-5 on a dataset through each backend and flag a backend that differs from eager"
ORDER = 25
DESCRIPTION = """\
Evaluate MODEL on a dataset with the given weights through each backend (eager, compile,
onnxrt), each in a fresh worker process, after a short timing run. Prints backend, top-1, top-5
and correct/total, and flags a backend whose correct count differs from eager's by more than
0.1% of the images (at least one image). Published figures (torchvision's metadata) are shown
apart, labelled as published. Datasets: imagefolder:PATH (class subfolders), digits[:train|test]
(scikit-learn's digits), tensors:FILE.pt. Weights: a state-dict file, or a torchvision weights
name found in the local torch hub cache (nothing is downloaded). Exit codes: 0 every backend ok
and within tolerance, 1 a backend failed or was flagged, 2 usage or input error. See
docs/accuracy.md.
"""

_SHORT_MEASURE = {"warmup": 1, "min_time_s": 0.05, "max_time_s": 0.5, "min_samples": 3, "max_samples": 100}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", metavar="MODEL", help="registry name, timm:<arch>[.<tag>] or 'package.module:callable'")
    p.add_argument("--dataset", required=True, metavar="KIND[:PATH]",
                   help="imagefolder:DIR, digits (or digits:train), tensors:FILE.pt")  # fmt: skip
    p.add_argument("--weights", metavar="W", help="state-dict file or torchvision weights name (ResNet18_Weights.IMAGENET1K_V1)")
    p.add_argument("--backend", action="append", metavar="NAME",
                   help="eager, compile, onnxrt, openvino, aoti or tensorrt; repeatable (default: eager, compile, onnxrt)")  # fmt: skip
    p.add_argument("--limit", type=positive_int, metavar="N", help="evaluate at most N images")
    p.add_argument("--batch-size", type=positive_int, default=64, metavar="N", help="images per forward pass (default: 64)")
    p.add_argument("--input-size", metavar="CxHxW", help="input size (default: the model's own)")
    p.add_argument("--strict", action="store_true", help="imagefolder: an undecodable image is an error, not skipped")
    p.add_argument("--threads", type=positive_int, metavar="N", help="CPU threads (default: all cores available)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--timeout", type=positive_float, default=3600.0, metavar="S", help="per-backend worker timeout (default: 3600)")
    p.add_argument("--in-process", action="store_true", help="run each backend in this process, not a worker")


def _dataset(text: str) -> dict[str, Any]:
    kind, sep, rest = text.partition(":")
    if kind not in DATASET_KINDS:
        raise UserError(f"--dataset: unknown kind {kind!r}; use imagefolder:DIR, digits[:train|test] or tensors:FILE.pt")
    if kind == "digits":
        return {"kind": kind, "split": rest or "test"}
    if not rest:
        raise UserError(f"--dataset: {kind} needs a path, e.g. {kind}:{'val/' if kind == 'imagefolder' else 'data.pt'}")
    return {"kind": kind, "path": rest}


def build_cases(args: argparse.Namespace, *, cuda_available: bool) -> list:
    """The CaseSpecs, one per backend, validated as a suite would be (a SuiteError otherwise)."""
    BACKENDS = ("eager", "compile", "onnxrt")  # the default; any of spec.BACKENDS may be asked for
    from cnnbench.suite.schema import expand

    backends = args.backend or list(BACKENDS)
    dataset = _dataset(args.dataset)
    if args.limit is not None:
        dataset["limit"] = args.limit
    if args.strict:
        dataset["strict"] = True
    accuracy: dict[str, Any] = {"dataset": dataset}
    if args.weights:
        accuracy["weights"] = args.weights
    model: Any = args.model
    if args.input_size:
        model = {"import": args.model, "input_size": args.input_size} if ":" in args.model and not args.model.startswith("timm:") else {
            "name": args.model, "input_size": args.input_size}  # fmt: skip
    data = {
        "models": [model],
        "batch_sizes": [args.batch_size],
        "backends": backends,
        "threads": args.threads,
        "device": args.device,
        "measure": {**_SHORT_MEASURE, "timeout_s": args.timeout},
        "accuracy": accuracy,
    }
    return expand(data, path="bench.py accuracy", cuda_available=cuda_available, check_imports=True)


def run(args: argparse.Namespace) -> int:
    import torch

    cases = build_cases(args, cuda_available=torch.cuda.is_available())
    console = make_console()
    runs: list[tuple[Any, dict[str, Any]]] = []
    stop = StopFlag()
    restore = stop.install()
    try:
        with tempfile.TemporaryDirectory(prefix="cnnbench-acc-") as workdir:
            for spec in cases:
                console.print(f"[dim]{spec.backend}: evaluating...[/dim]", highlight=False)
                if args.in_process:
                    run = _run_in_process(spec, workdir)
                else:
                    with worker_progress(spec.backend, workdir):
                        run = run_worker(spec, workdir=workdir, stop=stop, extra_paths=(os.getcwd(),))
                runs.append((spec, run))
                if stop.requested:
                    break
    finally:
        restore()
    rows = table_rows(runs)
    console.print(render_table(rows, title=title(cases[0], runs)))
    for line in published_lines(runs, args.weights):
        console.print(line, highlight=False)
    for row in rows:
        if row["error"]:
            console.print(f"✗ {row['backend']}: {row['status']}: {row['error']}", highlight=False, markup=False)
    if stop.requested:
        return stop.exit_code
    return 0 if all(r["status"] == "ok" and not r["flag"] for r in rows) else 1


def _run_in_process(spec: Any, workdir: str) -> dict[str, Any]:
    try:
        return run_case(spec, workdir=workdir)
    except Exception as exc:  # noqa: BLE001 - as the worker would record it
        text = " ".join(str(exc).split())
        plain = isinstance(exc, (CaseFailure, UserError))
        return {"status": classify_exception(exc), "error": text if plain else f"{type(exc).__name__}: {text}"}
