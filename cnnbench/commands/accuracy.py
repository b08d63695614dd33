"""`bench.py accuracy MODEL --dataset KIND[:PATH]`: measured top-1/top-5 through each backend.

The case is validated by the suite schema (`suite.expand`, the same checks and messages as an
`accuracy:` mapping in a suite), then each backend runs in its own worker process, like `run`
(or in this process with --in-process). Timing is kept short: the point is the answers.
No torch import at module import.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
from typing import Any, Iterator

from cnnbench.errors import UserError

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
    p.add_argument("model", metavar="MODEL", help="registry name or 'package.module:callable'")
    p.add_argument("--dataset", required=True, metavar="KIND[:PATH]",
                   help="imagefolder:DIR, digits (or digits:train), tensors:FILE.pt")  # fmt: skip
    p.add_argument("--weights", metavar="W", help="state-dict file or torchvision weights name (ResNet18_Weights.IMAGENET1K_V1)")
    p.add_argument("--backend", action="append", metavar="NAME",
                   help="eager, compile or onnxrt; repeatable (default: all three)")  # fmt: skip
    p.add_argument("--limit", type=int, metavar="N", help="evaluate at most N images")
    p.add_argument("--batch-size", type=int, default=64, metavar="N", help="images per forward pass (default: 64)")
    p.add_argument("--input-size", metavar="CxHxW", help="input size (default: the model's own)")
    p.add_argument("--strict", action="store_true", help="imagefolder: an undecodable image is an error, not skipped")
    p.add_argument("--threads", type=int, metavar="N", help="CPU threads (default: all cores available)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--timeout", type=float, default=3600.0, metavar="S", help="per-backend worker timeout (default: 3600)")
    p.add_argument("--in-process", action="store_true", help="run each backend in this process, not a worker")


def _dataset(text: str) -> dict[str, Any]:
    from cnnbench.accuracy import DATASET_KINDS

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
    from cnnbench.spec import BACKENDS
    from cnnbench.suite import expand

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
        model = {"import": args.model, "input_size": args.input_size} if ":" in args.model else {
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

    from cnnbench.console import make_console
    from cnnbench.runner import StopFlag, run_worker

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
    console.print(render_table(rows, title=_title(cases[0], runs)))
    for line in published_lines(runs, args.weights):
        console.print(line, highlight=False)
    for row in rows:
        if row["error"]:
            console.print(f"✗ {row['backend']}: {row['status']}: {row['error']}", highlight=False, markup=False)
    if stop.requested:
        return 130
    return 0 if all(r["status"] == "ok" and not r["flag"] for r in rows) else 1


@contextlib.contextmanager
def worker_progress(label: str, workdir: str) -> Iterator[None]:
    """On a terminal, a progress bar for the evaluation inside the worker started in the block:
    the worker learns of a progress file through PROGRESS_FILE_ENV and writes to it; a thread
    here reads it four times a second. Elsewhere (CI logs, pipes) nothing."""
    import sys

    if not sys.stderr.isatty():
        yield
        return
    import threading

    from cnnbench.accuracy import PROGRESS_FILE_ENV, _progress_bar, read_progress

    path = os.path.join(workdir, f"progress-{label}.txt")
    previous = os.environ.get(PROGRESS_FILE_ENV)
    os.environ[PROGRESS_FILE_ENV] = path  # the worker's environment is a copy of ours
    bar, task = _progress_bar(None, label)  # indeterminate while the worker times the model
    done = threading.Event()

    def poll() -> None:
        while not done.wait(0.25):
            got = read_progress(path)
            if got is not None:
                bar.update(task, completed=got[0], total=got[1])

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join(timeout=2)
        bar.stop()
        if previous is None:
            os.environ.pop(PROGRESS_FILE_ENV, None)
        else:
            os.environ[PROGRESS_FILE_ENV] = previous


def _title(spec: Any, runs: list[tuple[Any, dict[str, Any]]]) -> str:
    acc = next((r["accuracy"] for _, r in runs if r.get("accuracy")), None)
    title = f"measured accuracy: {spec.model}"
    if acc:
        ds = acc["dataset"]
        title += f" on {ds.get('name', ds.get('kind'))} ({acc['total']:,} images)"
        if acc.get("weights"):
            title += f", weights {os.path.basename(acc['weights']['name'])}"
    return title


def _run_in_process(spec: Any, workdir: str) -> dict[str, Any]:
    from cnnbench.errors import CaseFailure
    from cnnbench.worker import classify_exception, run_case

    try:
        return run_case(spec, workdir=workdir)
    except Exception as exc:  # noqa: BLE001 - as the worker would record it
        text = " ".join(str(exc).split())
        plain = isinstance(exc, (CaseFailure, UserError))
        return {"status": classify_exception(exc), "error": text if plain else f"{type(exc).__name__}: {text}"}


def table_rows(runs: list[tuple[Any, dict[str, Any]]]) -> list[dict[str, Any]]:
    """One plain row per backend: its measured accuracy and how it compares with eager's."""
    from cnnbench.accuracy import accuracy_difference

    eager = next((r.get("accuracy") for s, r in runs if s.backend == "eager" and r.get("accuracy")), None)
    rows = []
    for spec, run in runs:
        acc = run.get("accuracy") if run.get("status") == "ok" else None
        delta = flag = None
        if acc and eager and spec.backend != "eager":
            if acc["total"] == eager["total"]:
                delta = acc["correct1"] - eager["correct1"]
            flag = accuracy_difference(acc, eager)
        rows.append(
            {
                "backend": spec.backend,
                "status": run.get("status"),
                "top1": acc["top1"] if acc else None,
                "top5": acc["top5"] if acc else None,
                "correct1": acc["correct1"] if acc else None,
                "correct5": acc["correct5"] if acc else None,
                "total": acc["total"] if acc else None,
                "skipped": acc["skipped"] if acc else None,
                "delta_vs_eager": delta,
                "flag": flag,
                "error": run.get("error"),
            }
        )
    return rows


def render_table(rows: list[dict[str, Any]], *, title: str):
    from rich.table import Table

    from cnnbench.accuracy import TOLERANCE_FRACTION

    caption = (
        "top-1/top-5 in percent, measured on the images in the title; Δ = correct top-1 images vs eager; "
        f"⚠ = a correct count (top-1 or top-5) differs from eager's by more than max(1 image, "
        f"{TOLERANCE_FRACTION:.1%} of the images)"
    )
    columns = ("backend", "status", "top-1 %", "top-5 %", "correct top-1", "correct top-5", "skipped", "Δ vs eager", "")
    cells = [
        [
            r["backend"],
            "[green]ok[/green]" if r["status"] == "ok" else f"[red]{r['status']}[/red]",
            "-" if r["top1"] is None else f"{r['top1']:.2f}",
            "-" if r["top5"] is None else f"{r['top5']:.2f}",
            "-" if r["correct1"] is None else f"{r['correct1']:,}/{r['total']:,}",
            "-" if r["correct5"] is None else f"{r['correct5']:,}/{r['total']:,}",
            "" if not r["skipped"] else str(r["skipped"]),
            "" if r["delta_vs_eager"] is None else f"{r['delta_vs_eager']:+d}",
            f"[yellow]⚠ {r['flag']}[/yellow]" if r["flag"] else "",
        ]
        for r in rows
    ]
    # A column that carries nothing (no image skipped, no backend beside eager, nothing flagged)
    # is dropped rather than shown empty.
    keep = [i for i in range(len(columns)) if any(row[i] for row in cells)]
    if any(r["skipped"] == 0 for r in rows) and columns.index("skipped") not in keep:
        caption += "; no image was skipped"
    table = Table(title=title, caption=caption, caption_justify="left", header_style="bold")
    for i in keep:
        name = columns[i]
        table.add_column(name, justify="left" if name in ("backend", "status", "") else "right")
    for row in cells:
        table.add_row(*(row[i] for i in keep))
    return table


def published_lines(runs: list[tuple[Any, dict[str, Any]]], weights: str | None) -> list[str]:
    """torchvision's published figures, labelled as such: of the named torchvision weights when
    given, else of the model's DEFAULT weights (which may not be the weights measured above)."""
    from cnnbench.accuracy import is_torchvision_weights_name

    pub = None
    if weights and is_torchvision_weights_name(weights):
        from torchvision.models import get_weight

        meta = get_weight(weights).meta
        dataset, scores = next(iter((meta.get("_metrics") or {}).items()), (None, {}))
        pub = {"weights": weights, "dataset": dataset, "acc@1": scores.get("acc@1"), "acc@5": scores.get("acc@5")}
    else:
        pub = next((r["published"] for _, r in runs if r.get("published")), None)
    if not pub or pub.get("acc@1") is None:
        return []
    line = (
        f"published (torchvision metadata, not measured here): {pub['weights']} on {pub.get('dataset') or 'ImageNet-1K'} "
        f"val: top-1 {pub['acc@1']:.3f}%, top-5 {pub['acc@5']:.3f}%"
    )
    if pub["weights"] != weights:
        line += " (the model's DEFAULT weights" + (f", not {os.path.basename(weights)})" if weights else ")")
    return [line]
