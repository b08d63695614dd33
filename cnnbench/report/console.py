"""Terminal output for `run`: a progress bar with ETA, a row per finished case, a final table.

Bookkeeping (`table_rows`) is kept apart from rendering (`render_table`), as in
torch.utils.benchmark's Compare: rows are plain dicts that tests can check and reports reuse.
"""

from __future__ import annotations

from typing import Any

from cnnbench.core.spec import CaseSpec
from cnnbench.core.terminal import message_line, visible

__all__ = ["make_console", "table_rows", "render_table", "render_notes", "grouped", "ProgressReporter", "ConsoleReporter", "QuietReporter"]

def make_console(**kwargs: Any):
    """A rich Console; when output is not a terminal (CI logs, pipes) it is 200 columns wide
    rather than rich's 80, so the table is not squeezed into unreadable wrapped cells."""
    import os
    import sys

    from rich.console import Console

    if not sys.stdout.isatty() and "COLUMNS" not in os.environ:
        kwargs.setdefault("width", 200)
    return Console(**kwargs)


def table_rows(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One plain row per case, in the records' order, made from the report's rows
    (`cnnbench.report.model.rows_of_records`): the terminal and the report decide validity,
    speedup over eager, memory and the accuracy check with the same code.

    Memory: `memory_mib` is the measured peak of a valid case (`CaseRow.memory_measured`: CPU
    RSS growth over the post-load baseline, CUDA torch peak allocated, device-level for ONNX
    Runtime) and `activations_mib` the analytic activation bytes of one forward at the measured
    batch. Accuracy: `top1`/`correct1`/`total` are the case's own measured accuracy (valid cases
    only), and `accuracy_flag` says why a non-eager backend's counts differ from eager's.
    """
    from cnnbench.report.energy import wide_cells
    from cnnbench.report.model import rows_of_records

    out = []
    for row in rows_of_records(records):
        rec = row.record
        lat = (rec.latency_ms if rec is not None else None) or {}
        peak = row.memory_measured if row.valid else None
        acts = row.memory.get("activation_bytes")
        acc = row.measured_accuracy if row.valid else None
        lowered = row.measured_batch_size is not None and row.measured_batch_size != row.batch_size
        raw = rec.to_json() if rec is not None else {}
        out.append(
            {
                "model": row.model,
                "batch": row.batch_label if lowered else row.batch_size,
                "backend": row.backend_name,
                "backend_label": row.backend,
                "options": dict(rec.spec.options) if rec is not None else {},
                "precision": row.precision,
                "device": row.device,
                "threads": row.threads,
                "mode": row.mode,
                "status": row.status,
                "median_ms": lat.get("median"),
                "iqr_ms": lat.get("iqr"),
                "valid": row.valid,
                "invalid_reason": row.invalid_reason,
                "throughput_per_s": row.throughput_per_s if row.valid else None,
                "speedup": row.speedup_vs_eager,
                "first_call_ms": row.first_call_ms,
                "cold_start_ms": row.cold_start_ms,
                "params_m": row.params / 1e6 if row.params is not None else None,
                "params": row.params,
                "gmacs": row.gmacs,
                "memory_mib": peak[1] / 2**20 if peak else None,
                "memory_kind": peak[0] if peak else None,
                "activations_mib": acts / 2**20 if isinstance(acts, (int, float)) and not isinstance(acts, bool) else None,
                "top1": acc.get("top1") if acc else None,
                "correct1": acc.get("correct1") if acc else None,
                "total": acc.get("total") if acc else None,
                "accuracy_flag": row.accuracy_vs_eager if acc else None,
                "warnings": list(row.warnings),
                "error": row.error,
                "throttled": throttle_label(raw),  # cnnbench.measure.devicestate: the GPU throttled in the window
                "energy_cells": wide_cells(raw if lat.get("median") is not None else {}),  # --wide only
            }
        )
    return out


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


# The compact table: what a reader needs to compare backends, readable at 80 columns.
COMPACT_COLUMNS = ("model", "batch", "backend", "prec.", "status", "median ms ± IQR", "images/s", "speedup")
# --wide adds these (the report's card and CSV hold them all).
WIDE_COLUMNS = ("cold start ms", "params", "MACs", "peak MiB", "act. MiB")
# Columns whose text may wrap at spaces; every other column keeps its text on one line.
_WRAPS = {"batch", "backend", "cold start ms", "peak MiB", "act. MiB", "top-1 (n/total)"}
_RIGHT = {"batch", "median ms ± IQR", "images/s", "speedup", "cold start ms", "params", "MACs", "peak MiB", "act. MiB", "top-1 (n/total)", "energy/img @ W", "images/J", "idle W"}
_GAP = 2  # columns apart (padding collapsed, a blank divider)


def _cells(row: dict[str, Any], columns: tuple[str, ...]) -> list[str]:
    """One row's cells as plain text (styles are added separately, so widths are exact)."""
    from cnnbench.report.fmt import DASH, fmt_count, fmt_latency, fmt_macs, fmt_rate, fmt_speedup

    backend = row["backend_label"] + (" train" if row["mode"] == "train" else "")
    status = row["status"] if row["status"] != "ok" else ("ok" if row["valid"] else str(row["invalid_reason"]))
    if row["status"] == "ok" and row.get("throttled"):
        status += " throttled"
    if row["status"] == "ok" and row["valid"] and row["warnings"]:
        status += " ⚠"
    if row["valid"]:
        latency = fmt_latency(row["median_ms"], row["iqr_ms"])
    elif row["median_ms"] is not None:
        latency = "(invalid)"
    else:
        latency = DASH
    top1 = DASH
    if row["top1"] is not None:
        top1 = f"{row['top1']:.1f}%"
        if row["correct1"] is not None and row["total"]:
            top1 += f" ({row['correct1']}/{row['total']})"
        top1 += " ⚠" if row["accuracy_flag"] else ""
    every = {
        "model": row["model"],
        "batch": str(row["batch"]),
        "backend": backend,
        "prec.": row["precision"],
        "status": status,
        "median ms ± IQR": latency,
        "images/s": fmt_rate(row["throughput_per_s"]),
        "speedup": fmt_speedup(row["speedup"]) if row["speedup"] is not None else "",
        "cold start ms": fmt_rate(row["cold_start_ms"] if row["valid"] else None),  # an invalid case's is no result
        "params": fmt_count(row["params"]),
        "MACs": fmt_macs(row["gmacs"]),
        "peak MiB": _fmt(row["memory_mib"], ",.1f", DASH),
        "act. MiB": _fmt(row["activations_mib"], ",.1f", DASH),
        "top-1 (n/total)": top1,
    }
    from cnnbench.report.energy import WIDE_COLUMNS as ENERGY_COLUMNS

    every.update(zip(ENERGY_COLUMNS, row.get("energy_cells") or ["-"] * len(ENERGY_COLUMNS)))
    return [visible(every[c]) for c in columns]  # a value from a file is one cell on one line


def _fmt(value: float | None, spec: str, missing: str = "-") -> str:
    return missing if value is None else format(value, spec)


def _min_width(text: str, wraps: bool) -> int:
    from rich.cells import cell_len

    if not text:
        return 0
    return max(cell_len(w) for w in text.split()) if wraps and text.split() else cell_len(text)


def table_width(rows: list[list[str]], columns: tuple[str, ...]) -> int:
    """The narrowest the table can be with no cell cut: each column as wide as its longest
    unbreakable text (headers included), plus the gaps between columns."""
    widths = [
        max([_min_width(col, True)] + [_min_width(r[i], col in _WRAPS) for r in rows]) for i, col in enumerate(columns)
    ]
    return sum(widths) + _GAP * (len(columns) - 1)


def _make_table(cells: list[list[str]], rows: list[dict[str, Any]], columns: tuple[str, ...], *, title: str | None, caption: str | None):
    from rich import box
    from rich.table import Table
    from rich.text import Text

    table = Table(
        title=title, caption=caption, caption_justify="left", header_style="bold", box=box.SIMPLE_HEAD,
        show_edge=False, pad_edge=False, collapse_padding=True, padding=(0, 1),
    )
    for i, name in enumerate(columns):
        wraps = name in _WRAPS
        width = max([_min_width(name, True)] + [_min_width(r[i], wraps) for r in cells])
        table.add_column(
            name, justify="right" if name in _RIGHT else "left", no_wrap=not wraps, min_width=width,
            overflow="fold",
        )
    for text_cells, row in zip(cells, rows):
        styled = []
        for name, text in zip(columns, text_cells):
            cell = Text(text)
            if name == "status":
                cell.stylize("green" if row["valid"] else "red", 0, len(text.rstrip(" ⚠")))
                if text.endswith("⚠"):
                    cell.stylize("yellow", len(text) - 1)
            elif name == "median ms ± IQR" and not row["valid"] and row["median_ms"] is not None:
                cell.stylize("strike")
            elif name == "top-1 (n/total)" and text.endswith("⚠"):
                cell.stylize("yellow", len(text) - 1)
            styled.append(cell)
        table.add_row(*styled)
    return table


def render_table(records: list[dict[str, Any]], *, title: str = "cnnbench results", wide: bool = False, width: int | None = None):
    """The table of `records`: the compact columns, or with `wide` every column.

    Made from the report's rows (`table_rows`), so a number here is the report's. No column is
    ever squeezed: each is at least as wide as its longest unbreakable text. When the table does
    not fit `width` (the terminal's), a precision shared by every row moves to the title, and if
    that is not enough the table is split into one table per model (its name the title, so no
    model column). The measured top-1 column appears (with --wide) only when some
    case measured accuracy.
    """
    from rich.console import Group

    rows = table_rows(grouped(records))
    columns = COMPACT_COLUMNS + (WIDE_COLUMNS if wide else ())
    if wide and any(r["top1"] is not None for r in rows):
        columns += ("top-1 (n/total)",)
    if wide and any(c != "-" for r in rows for c in r["energy_cells"]):  # energy over the timed window, where measured
        from cnnbench.report.energy import WIDE_COLUMNS as ENERGY_COLUMNS

        columns += ENERGY_COLUMNS
    caption = _caption(wide=wide, top1="top-1 (n/total)" in columns, energy="idle W" in columns)
    cells = [_cells(r, columns) for r in rows]
    if width is None or table_width(cells, columns) <= width or not rows:
        return _make_table(cells, rows, columns, title=title, caption=caption)
    # Too wide for the terminal. First a precision shared by every row moves to the title ...
    precisions = {r["precision"] for r in rows}
    if len(precisions) == 1:
        columns = tuple(c for c in columns if c != "prec.")
        title = f"{title} · {rows[0]['precision']}"
        cells = [_cells(r, columns) for r in rows]
        if table_width(cells, columns) <= width:
            return _make_table(cells, rows, columns, title=title, caption=caption)
    # ... then one table per model, the model name as its title (no model column).
    from rich.text import Text

    per_model = columns[1:]
    parts: list[Any] = [Text(title, style="bold", justify="center")]
    for model in dict.fromkeys(r["model"] for r in rows):
        mine = [r for r in rows if r["model"] == model]
        parts.append(_make_table([_cells(r, per_model) for r in mine], mine, per_model, title=model, caption=None))
    parts.append(Text(caption))
    return Group(*parts)


def _caption(*, wide: bool, top1: bool, energy: bool = False) -> str:
    text = (
        "latency = per-call median ± IQR (ms), warmup and first call excluded; images/s = batch / median "
        "(a train row times one optimizer step: samples/s); speedup = eager median / this median (same "
        "model, precision, batch measured, optimizer); batch \"16 (of 32)\" = measured at 16 after an OOM at "
        "32 (--oom-retry)"
    )
    if not wide:
        return text + "; more columns: --wide"
    text += (
        "; cold start ms = time before the first warmup call: the first call (torch.compile compiles in it), "
        "plus for onnxrt the ONNX export (made once and cached; the export's own time is counted) and session "
        "creation; MACs = multiply-accumulates per batch (fvcore; torchvision's \"GFLOPS\"), FLOPs = 2 × MACs; "
        "params = all parameters as built (no auxiliary heads); peak MiB = measured peak memory of warmup and "
        "timing (CPU: worker RSS growth over its post-load baseline; CUDA: torch peak allocated), act. MiB = "
        "analytic activation bytes of one forward at the batch measured; MiB = 2^20 bytes"
    )
    if top1:
        text += (
            "; top-1 = measured on the case's dataset through its backend (correct/total images), "
            "⚠ = differs from eager by more than max(1, 0.1%) images"
        )
    if energy:
        from cnnbench.report.energy import WIDE_CAPTION

        text += "; " + WIDE_CAPTION
    return text


def render_notes(records: list[dict[str, Any]]) -> list[str]:
    """Warnings and errors, one line each, printed under the table so no number stands alone."""
    flags = {id(rec): row["accuracy_flag"] for rec, row in zip(records, table_rows(records))}
    lines = []
    from cnnbench.stats.processes import warnings_with_split

    for rec in records:
        for w in warnings_with_split(rec):
            lines.append(f"⚠ {rec['key']}: {w}")
        if flags.get(id(rec)):
            lines.append(f"⚠ {rec['key']}: measured accuracy differs from eager: {flags[id(rec)]}")
        if rec["status"] != "ok":
            lines.append(f"✗ {rec['key']}: {rec['status']}: {rec.get('error') or ''}")
    return [message_line(line) for line in lines]


def _row_line(record: dict[str, Any], run: dict[str, Any]) -> str:
    from rich.markup import escape

    spec = CaseSpec.from_dict(record["spec"])
    key = escape(visible(spec.key))  # backend options look like markup: compile[mode=max-autotune]
    lat = record.get("latency_ms")
    rep = f" (repeat {run.get('repeat', 0) + 1}/{record['repeats_planned']})" if record["repeats_planned"] > 1 else ""
    if run.get("status") == "ok" and lat:
        med = (record["runs"][-1].get("median_ms") if record.get("runs") else None) or lat["median"]
        batch = record.get("measured_batch_size") or spec.batch_size  # --oom-retry may lower it
        shown = f" at batch {batch} (of {spec.batch_size})" if batch != spec.batch_size else ""
        extra = " [yellow]⚠[/yellow]" if record["warnings"] else ""
        return f"[green]✓[/green] {key}{rep}: {med:.3f} ms median{shown}, {batch / (med / 1000.0):,.1f} images/s{extra}"
    return f"[red]✗[/red] {key}{rep}: [red]{run.get('status')}[/red]: {escape(message_line(run.get('error') or ''))}"


class ProgressReporter:
    """A progress bar with ETA at the bottom of the terminal; subclasses print a line per run."""

    def __init__(self, console=None, *, title: str = "cnnbench", wide: bool = False):
        self.console = console or make_console()
        self.title = title
        self.wide = wide  # --wide: energy columns in the final table
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
        title = f"cnnbench: {results['suite'].get('name', '')}"
        self.console.print(render_table(results["cases"], title=title, wide=self.wide, width=self.console.width))
        for line in render_notes(results["cases"]):
            self.console.print(line, highlight=False, markup=False)


class QuietReporter:
    def start(self, total_runs: int) -> None: ...
    def case_started(self, spec: CaseSpec, repeat: int) -> None: ...
    def case_finished(self, record: dict[str, Any], run: dict[str, Any]) -> None: ...
    def finish(self, results: dict[str, Any]) -> None: ...


def throttle_label(record: dict[str, Any]) -> str | None:
    """"throttled: reasons" for a case record whose GPU throttled, else None (old files too)."""
    state = record.get("device_state")
    if not isinstance(state, dict) or not state.get("throttled"):
        return None
    return "throttled: " + ", ".join(str(r) for r in state.get("throttle_reasons") or ())
