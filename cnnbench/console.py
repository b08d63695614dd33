"""Terminal output for `run`: a progress bar with ETA, a row per finished case, a final table.

Bookkeeping (`table_rows`) is kept apart from rendering (`render_table`), as in
torch.utils.benchmark's Compare: rows are plain dicts that tests can check and reports reuse.
"""

from __future__ import annotations

from typing import Any

from cnnbench.spec import CaseSpec

__all__ = ["CONVENTIONS", "make_console", "table_rows", "render_table", "ProgressReporter", "ConsoleReporter", "QuietReporter"]

CONVENTIONS = (
    "latency = per-call median ± IQR over timed samples (ms), warmup and first call excluded; "
    "throughput = batch / median; GMACs = multiply-accumulates per batch (fvcore; torchvision's "
    "\"GFLOPS\"), FLOPs = 2 × MACs; params = all parameters as built (no auxiliary heads); "
    "speedup = eager median / this median"
)


def make_console(**kwargs: Any):
    """A rich Console; when output is not a terminal (CI logs, pipes) it is 200 columns wide
    rather than rich's 80, so the table is not squeezed into unreadable wrapped cells."""
    import os
    import sys

    from rich.console import Console

    if not sys.stdout.isatty() and "COLUMNS" not in os.environ:
        kwargs.setdefault("width", 200)
    return Console(**kwargs)


def _group_key(spec: dict[str, Any]) -> tuple:
    """Everything but the backend: the cases a backend's speedup over eager is computed within."""
    return (
        spec["model"], spec.get("mode"), spec["precision"], spec["batch_size"],
        tuple(spec["input_size"]), spec["device"], spec["threads"], spec.get("channels_last"),
    )


def _valid_latency(record: dict[str, Any]) -> float | None:
    lat = record.get("latency_ms")
    if record.get("status") != "ok" or not lat:
        return None
    parity = record.get("parity")
    if parity and parity.get("ok") is False:
        return None
    return lat["median"]


def table_rows(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One plain row per case, in the records' order, with speedup over the eager case.

    Memory: `memory_mib` is the measured peak of a valid case (CPU: `peak_rss_delta_bytes`, the
    RSS growth over the post-load baseline; CUDA: `cuda_peak_allocated_bytes`, device-level for
    ONNX Runtime; the report's rule, `cnnbench.report.model.measured_memory`) and
    `activations_mib` the analytic activation bytes of one forward at the measured batch
    (`memory.activation_bytes`). Accuracy: `top1`/`correct1`/`total` are the case's own measured
    accuracy (valid cases only), and `accuracy_flag` says why a non-eager backend's counts differ
    from the eager case's by more than `cnnbench.accuracy.tolerance_images(total)`.
    """
    from cnnbench.accuracy import accuracy_difference
    from cnnbench.processes import warnings_with_split
    from cnnbench.report.model import measured_memory
    from cnnbench.results import cold_start_ms

    def measured_acc(rec: dict[str, Any]) -> dict[str, Any] | None:
        acc = rec.get("accuracy")
        if isinstance(acc, dict) and acc.get("kind", "measured") == "measured" and acc.get("total"):
            return acc
        return None

    def group(rec: dict[str, Any]) -> tuple:
        """The speedup group at the batch actually measured (lower only after --oom-retry)."""
        return _group_key({**rec["spec"], "batch_size": rec.get("measured_batch_size") or rec["spec"]["batch_size"]})

    eager: dict[tuple, float] = {}
    eager_acc: dict[tuple, dict[str, Any]] = {}
    for rec in records:
        med = _valid_latency(rec)
        if rec["spec"]["backend"] == "eager" and not rec["spec"].get("options") and med:
            eager[group(rec)] = med
            if measured_acc(rec):
                eager_acc[_group_key(rec["spec"])] = measured_acc(rec)  # type: ignore[assignment]
    rows = []
    for rec in records:
        spec = rec["spec"]
        lat = rec.get("latency_ms") or {}
        med = _valid_latency(rec)
        base = eager.get(group(rec))
        measured_batch = rec.get("measured_batch_size")  # lower than asked only after --oom-retry
        lowered = measured_batch is not None and measured_batch != spec["batch_size"]
        memory = rec.get("memory") if isinstance(rec.get("memory"), dict) else {}
        peak = measured_memory(memory, device=spec["device"], backend=spec["backend"]) if med is not None else None
        acts = memory.get("activation_bytes")
        acc = measured_acc(rec) if med is not None else None
        flag = None
        ref = eager_acc.get(_group_key(spec))
        if acc and ref is not None and spec["backend"] != "eager":
            try:
                flag = accuracy_difference(acc, ref)
            except (KeyError, TypeError, ValueError):
                flag = None
        same_computation = spec["backend"] != "eager" and not (spec.get("mode") == "train" and spec.get("options"))
        rows.append(
            {
                "model": spec["model"],
                "batch": f"{measured_batch} (of {spec['batch_size']})" if lowered else spec["batch_size"],
                "backend": spec["backend"],
                "options": dict(spec.get("options") or {}),
                "precision": spec["precision"],
                "device": spec["device"],
                "threads": spec["threads"],
                "mode": spec.get("mode", "inference"),
                "status": rec["status"],
                "median_ms": lat.get("median"),
                "iqr_ms": lat.get("iqr"),
                "valid": med is not None,
                "throughput_per_s": rec.get("throughput_per_s") if med is not None else None,
                "speedup": (base / med) if (base and med and same_computation) else None,
                "first_call_ms": rec.get("first_call_ms"),
                "cold_start_ms": cold_start_ms(rec),
                "params_m": rec["params"] / 1e6 if rec.get("params") is not None else None,
                "gmacs": rec.get("gmacs"),
                "memory_mib": peak[1] / 2**20 if peak else None,
                "memory_kind": peak[0] if peak else None,
                "activations_mib": acts / 2**20 if isinstance(acts, (int, float)) and not isinstance(acts, bool) else None,
                "top1": acc.get("top1") if acc else None,
                "correct1": acc.get("correct1") if acc else None,
                "total": acc.get("total") if acc else None,
                "accuracy_flag": flag,
                "warnings": warnings_with_split(rec),  # cnnbench.processes: + "processes split"
                "error": rec.get("error"),
            }
        )
    return rows


def _fmt(value: float | None, spec: str, missing: str = "-") -> str:
    return missing if value is None else format(value, spec)


def _latency_cell(row: dict[str, Any]) -> str:
    if row["median_ms"] is None:
        return "-"
    text = f"{row['median_ms']:.3f} ± {row['iqr_ms']:.3f}"
    if not row["valid"]:
        text = f"[strike]{text}[/strike] (invalid)"
    return text


def _status_cell(row: dict[str, Any]) -> str:
    status = row["status"]
    if status == "ok":
        return "[green]ok[/green]" + (" [yellow]⚠[/yellow]" if row["warnings"] else "")
    return f"[red]{status}[/red]"


def grouped(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records for display: each model's cases together (models in the order they first
    appear), then by mode, batch, input size and precision, eager first within a group and the
    other backends after it in their own order, so the speedups sit beside their baseline. The
    results file keeps the order the cases were measured in."""
    first: dict[tuple, int] = {}

    def seen(*key: Any) -> int:
        return first.setdefault(key, len(first))

    for rec in records:
        spec = rec["spec"]
        seen("model", spec["model"])
        seen("precision", spec["precision"])

    def order(item: tuple[int, dict[str, Any]]) -> tuple:
        i, rec = item
        spec = rec["spec"]
        return (
            first[("model", spec["model"])], spec.get("mode") or "inference", spec["batch_size"],
            tuple(spec["input_size"]), first[("precision", spec["precision"])], spec["backend"] != "eager", i,
        )

    return [rec for _, rec in sorted(enumerate(records), key=order)]


def render_table(records: list[dict[str, Any]], *, title: str = "cnnbench results"):
    """A rich Table of the records, with units and conventions in the header and caption.

    The measured top-1 column appears only when some case measured accuracy; at most 14 columns
    with short headers, so the table stays readable at 200 columns (CI logs).
    """
    from rich.markup import escape
    from rich.table import Table

    rows = table_rows(grouped(records))
    with_top1 = any(r["top1"] is not None for r in rows)
    caption = (
        CONVENTIONS
        + "; cold start ms = time before the first warmup call: the first call (torch.compile compiles in it), "
        "plus for onnxrt the ONNX export (made once and cached; the export's own time is counted) and session creation"
        "; peak MiB = measured peak memory of warmup and timing (CPU: worker RSS growth over its post-load "
        "baseline; CUDA: torch peak allocated), act. MiB = analytic activation bytes of one forward at "
        "the batch measured; MiB = 2^20 bytes; batch \"16 (of 32)\" = measured at 16 after an OOM at 32 "
        "(--oom-retry); a train row times one optimizer step (images/s = samples/s)"
    )
    if with_top1:
        caption += (
            "; top-1 = measured on the case's dataset through its backend (correct/total images), "
            "⚠ = differs from eager by more than max(1, 0.1%) images"
        )
    table = Table(title=title, caption=caption, caption_justify="left", header_style="bold")
    columns = [
        ("model", "left"), ("batch", "right"), ("backend", "left"), ("precision", "left"),
        ("status", "left"), ("median ms ± IQR", "right"), ("images/s", "right"),
        ("speedup", "right"), ("cold start ms", "right"), ("params M", "right"),
        ("GMACs", "right"), ("peak MiB", "right"), ("act. MiB", "right"),
    ]
    if with_top1:
        columns.append(("top-1 (n/total)", "right"))
    for name, justify in columns:
        # Numbers never wrap; when 200 columns are not enough, the backend label wraps instead.
        wraps = name in ("model", "backend")
        table.add_column(name, justify=justify, no_wrap=not wraps, overflow="fold" if wraps else "ellipsis")  # type: ignore[arg-type]

    def top1_cell(row: dict[str, Any]) -> str:
        if row["top1"] is None:
            return "-"
        text = f"{row['top1']:.1f}%"
        if row["correct1"] is not None and row["total"]:
            text += f" ({row['correct1']}/{row['total']})"
        return text + (" [yellow]⚠[/yellow]" if row["accuracy_flag"] else "")

    for row in rows:
        backend = row["backend"]
        if row["options"]:
            backend += "[" + ",".join(f"{k}={v}" for k, v in sorted(row["options"].items())) + "]"
        if row["mode"] == "train":
            backend += " train"
        cells = [
            escape(row["model"]), str(row["batch"]), escape(backend), row["precision"], _status_cell(row),
            _latency_cell(row), _fmt(row["throughput_per_s"], ",.1f"),
            _fmt(row["speedup"], ".2f", "") + ("x" if row["speedup"] else ""),
            # an invalid case's cold start is not a result either
            _fmt(row["cold_start_ms"] if row["valid"] else None, ",.1f"),
            _fmt(row["params_m"], ".3f"), _fmt(row["gmacs"], ".3f"),
            _fmt(row["memory_mib"], ",.1f"), _fmt(row["activations_mib"], ",.1f"),
        ]
        if with_top1:
            cells.append(top1_cell(row))
        table.add_row(*cells)
    return table


def render_notes(records: list[dict[str, Any]]) -> list[str]:
    """Warnings and errors, one line each, printed under the table so no number stands alone."""
    flags = {id(rec): row["accuracy_flag"] for rec, row in zip(records, table_rows(records))}
    lines = []
    from cnnbench.processes import warnings_with_split

    for rec in records:
        for w in warnings_with_split(rec):
            lines.append(f"⚠ {rec['key']}: {w}")
        if flags.get(id(rec)):
            lines.append(f"⚠ {rec['key']}: measured accuracy differs from eager: {flags[id(rec)]}")
        if rec["status"] != "ok":
            lines.append(f"✗ {rec['key']}: {rec['status']}: {rec.get('error') or ''}")
    return lines


def _row_line(record: dict[str, Any], run: dict[str, Any]) -> str:
    from rich.markup import escape

    spec = CaseSpec.from_dict(record["spec"])
    key = escape(spec.key)  # backend options look like markup: compile[mode=max-autotune]
    lat = record.get("latency_ms")
    rep = f" (repeat {run.get('repeat', 0) + 1}/{record['repeats_planned']})" if record["repeats_planned"] > 1 else ""
    if run.get("status") == "ok" and lat:
        med = (record["runs"][-1].get("median_ms") if record.get("runs") else None) or lat["median"]
        batch = record.get("measured_batch_size") or spec.batch_size  # --oom-retry may lower it
        shown = f" at batch {batch} (of {spec.batch_size})" if batch != spec.batch_size else ""
        extra = " [yellow]⚠[/yellow]" if record["warnings"] else ""
        return f"[green]✓[/green] {key}{rep}: {med:.3f} ms median{shown}, {batch / (med / 1000.0):,.1f} images/s{extra}"
    return f"[red]✗[/red] {key}{rep}: [red]{run.get('status')}[/red]: {escape(str(run.get('error') or ''))}"


class ProgressReporter:
    """A progress bar with ETA at the bottom of the terminal; subclasses print a line per run."""

    def __init__(self, console=None, *, title: str = "cnnbench"):
        self.console = console or make_console()
        self.title = title
        self._progress = None
        self._task = None

    def start(self, total_runs: int) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self._progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
            console=self.console, transient=True,
        )
        self._progress.start()
        self._task = self._progress.add_task(self.title, total=total_runs)

    def stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()


class ConsoleReporter(ProgressReporter):
    """Progress bar with ETA at the bottom, one line per finished run above it, then the table."""

    def case_started(self, spec: CaseSpec, repeat: int) -> None:
        if self._progress is not None:
            self._progress.update(self._task, description=f"{spec.model} b{spec.batch_size} {spec.backend}")

    def case_finished(self, record: dict[str, Any], run: dict[str, Any]) -> None:
        if self._progress is not None:
            self._progress.console.print(_row_line(record, run), highlight=False)
            self._progress.advance(self._task)

    def finish(self, results: dict[str, Any]) -> None:
        self.stop()
        self.console.print(render_table(results["cases"], title=f"cnnbench: {results['suite'].get('name', '')}"))
        for line in render_notes(results["cases"]):
            self.console.print(line, highlight=False, markup=False)


class QuietReporter:
    def start(self, total_runs: int) -> None: ...
    def case_started(self, spec: CaseSpec, repeat: int) -> None: ...
    def case_finished(self, record: dict[str, Any], run: dict[str, Any]) -> None: ...
    def finish(self, results: dict[str, Any]) -> None: ...
