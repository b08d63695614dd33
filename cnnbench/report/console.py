"""Terminal output for `run`: a progress bar with ETA, a row per finished case, a final table.

Bookkeeping (`table_rows`) is kept apart from rendering (`render_table`), as in
torch.utils.benchmark's Compare: a row is the report's `CaseRow` (which wraps the checked
`CaseRecord`) plus the table's own display properties (`TableRow`), so tests check figures, not text.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from cnnbench.core.spec import CaseSpec
from cnnbench.core.units import DASH, fmt_bytes, fmt_count, fmt_latency, fmt_macs, fmt_ms, fmt_pct, fmt_rate, fmt_speedup
from cnnbench.report.energy import WIDE_CAPTION as ENERGY_CAPTION
from cnnbench.report.energy import WIDE_COLUMNS as ENERGY_COLUMNS
from cnnbench.report.energy import wide_cells
from cnnbench.report.model import CaseRow, rows_of_records
from cnnbench.results.records import CaseRecord
from cnnbench.core.terminal import message_line, visible

__all__ = [
    "make_console", "TableRow", "table_rows", "render_table", "render_notes", "grouped", "ProgressReporter",
    "ConsoleReporter", "QuietReporter",
]  # fmt: skip

def make_console(**kwargs: Any):
    """A rich Console; when output is not a terminal (CI logs, pipes) it is 200 columns wide
    rather than rich's 80, so the table is not squeezed into unreadable wrapped cells."""
    import os
    import sys

    from rich.console import Console

    if not sys.stdout.isatty() and "COLUMNS" not in os.environ:
        kwargs.setdefault("width", 200)
    return Console(**kwargs)


@dataclass(frozen=True, slots=True)
class TableRow:
    """One line of the terminal table: the report's row (`CaseRow`, which wraps the checked
    `CaseRecord`) and the few things only the table shows, each a property that reads it. The
    terminal and the report decide validity, speedup over eager, memory and the accuracy check
    with the same code because they hold the same row.
    """

    case: CaseRow

    @property
    def peak_memory(self) -> tuple[str, int] | None:
        """(record key, bytes) of the measured peak of a valid case (`CaseRow.memory_measured`:
        CPU RSS growth over the post-load baseline, CUDA torch peak allocated, device-level for
        ONNX Runtime); None for an invalid one (its figure is no result)."""
        return self.case.memory_measured if self.case.valid else None

    @property
    def activation_bytes(self) -> int | None:
        """The analytic activation bytes of one forward at the measured batch."""
        acts = self.case.memory.get("activation_bytes")
        return int(acts) if isinstance(acts, (int, float)) and not isinstance(acts, bool) else None

    @property
    def accuracy(self) -> dict[str, Any] | None:
        """The case's own measured accuracy (top1, correct1, total), valid cases only."""
        return self.case.measured_accuracy if self.case.valid else None

    @property
    def accuracy_flag(self) -> str | None:
        """Why a non-eager backend's counts differ from eager's (`CaseRow.accuracy_vs_eager`)."""
        return self.case.accuracy_vs_eager if self.accuracy else None

    def tail_ms(self, name: str) -> float | None:
        """The p90 or p99 latency of a valid case (--wide), from the record's summary of its samples."""
        lat = self.case.record.latency_ms if self.case.valid else None
        return lat.get(name) if lat else None

    @property
    def struck(self) -> bool:
        """Timed, but invalid (a failed parity check): its latency is shown struck through."""
        return not self.case.valid and self.case.record.latency_ms is not None

    @property
    def throttled(self) -> str | None:
        """"throttled: reasons" when the GPU throttled in the timed window (`cnnbench.measure.devicestate`)."""
        return throttle_label(self.case.record.device_state)

    @property
    def energy_cells(self) -> list[str]:
        """The --wide energy cells (all "-" for a case that timed nothing)."""
        timed = self.case.record.latency_ms is not None
        return wide_cells({"energy": self.case.energy} if timed else {})


def table_rows(records: Sequence[CaseRecord | dict[str, Any]]) -> list[TableRow]:
    """One row per case, in the records' order, made from the report's rows
    (`cnnbench.report.model.rows_of_records`)."""
    return [TableRow(row) for row in rows_of_records(records)]


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
WIDE_COLUMNS = ("p90 ms", "p99 ms", "cold start ms", "params", "MACs", "peak mem", "act. mem")
# Columns whose text may wrap at spaces; every other column keeps its text on one line.
_WRAPS = {"batch", "backend", "cold start ms", "peak mem", "act. mem", "top-1 (n/total)"}
_RIGHT = {"p90 ms", "p99 ms", "batch", "median ms ± IQR", "images/s", "speedup", "cold start ms", "params", "MACs", "peak mem", "act. mem", "top-1 (n/total)", "energy/img @ W", "images/J", "idle W"}
_GAP = 2  # columns apart (padding collapsed, a blank divider)


def _cells(t: TableRow, columns: tuple[str, ...]) -> list[str]:
    """One row's cells as plain text (styles are added separately, so widths are exact)."""
    r = t.case
    backend = r.backend + (" train" if r.is_train else "")
    status = r.status if r.status != "ok" else ("ok" if r.valid else str(r.invalid_reason))
    if r.status == "ok" and t.throttled:
        status += " throttled"
    if r.status == "ok" and r.valid and r.warnings:
        status += " ⚠"
    if r.valid:
        latency = fmt_latency(r.median_ms, r.iqr_ms)
    elif t.struck:
        latency = "(invalid)"
    else:
        latency = DASH
    top1 = DASH
    acc = t.accuracy
    if acc is not None:
        top1 = fmt_pct(float(acc["top1"]))
        if acc.get("correct1") is not None and acc.get("total"):
            top1 += f" ({acc['correct1']}/{acc['total']})"
        top1 += " ⚠" if t.accuracy_flag else ""
    peak = t.peak_memory
    every = {
        "model": r.model,
        "batch": r.batch_label,
        "backend": backend,
        "prec.": r.precision,
        "status": status,
        "median ms ± IQR": latency,
        "images/s": fmt_rate(r.throughput_per_s),
        "speedup": fmt_speedup(r.speedup_vs_eager) if r.speedup_vs_eager is not None else "",
        "p90 ms": fmt_ms(t.tail_ms("p90")),
        "p99 ms": fmt_ms(t.tail_ms("p99")),
        "cold start ms": fmt_ms(r.cold_start_ms if r.valid else None),  # an invalid case's is no result
        "params": fmt_count(r.params),
        "MACs": fmt_macs(r.gmacs),
        "peak mem": fmt_bytes(peak[1] if peak else None),
        "act. mem": fmt_bytes(t.activation_bytes),
        "top-1 (n/total)": top1,
    }
    every.update(zip(ENERGY_COLUMNS, t.energy_cells))
    return [visible(every[c]) for c in columns]  # a value from a file is one cell on one line


def _min_width(text: str, wraps: bool) -> int:
    from rich.cells import cell_len

    if not text:
        return 0
    return max(cell_len(w) for w in text.split()) if wraps and text.split() else cell_len(text)


def table_width(rows: list[list[str]], columns: tuple[str, ...]) -> int:
    """The width of the table with every cell on one line (headers included), plus the gaps
    between columns. A table that fits this way is drawn as it is; one that does not is made
    narrower by the rules of `render_table`, never by letting the terminal library squeeze or
    crop a column (rich's own narrowing can cut a cell's last characters)."""
    from rich.cells import cell_len

    widths = [max([cell_len(col)] + [cell_len(r[i]) for r in rows]) for i, col in enumerate(columns)]
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
                cell.stylize("green" if row.case.valid else "red", 0, len(text.rstrip(" ⚠")))
                if text.endswith("⚠"):
                    cell.stylize("yellow", len(text) - 1)
            elif name == "median ms ± IQR" and row.struck:
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
    if wide and any(r.accuracy is not None for r in rows):
        columns += ("top-1 (n/total)",)
    if wide and any(c != "-" for r in rows for c in r.energy_cells):  # energy over the timed window, where measured
        columns += ENERGY_COLUMNS
    caption = _caption(wide=wide, top1="top-1 (n/total)" in columns, energy="idle W" in columns)
    cells = [_cells(r, columns) for r in rows]
    if width is None or table_width(cells, columns) <= width or not rows:
        return _make_table(cells, rows, columns, title=title, caption=caption)
    # Too wide for the terminal. First a precision shared by every row moves to the title ...
    precisions = {r.case.precision for r in rows}
    if len(precisions) == 1:
        columns = tuple(c for c in columns if c != "prec.")
        title = f"{title} · {rows[0].case.precision}"
        cells = [_cells(r, columns) for r in rows]
        if table_width(cells, columns) <= width:
            return _make_table(cells, rows, columns, title=title, caption=caption)
    # ... then one table per model, the model name as its title (no model column).
    from rich.text import Text

    per_model = columns[1:]
    parts: list[Any] = [Text(title, style="bold", justify="center")]
    for model in dict.fromkeys(r.case.model for r in rows):
        mine = [r for r in rows if r.case.model == model]
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
        "; p90/p99 ms = the 90th/99th percentile per call over every timed sample (tail latency)"
        "; cold start ms = time before the first warmup call: the first call (torch.compile compiles in it), "
        "plus for onnxrt the ONNX export (made once and cached; the export's own time is counted) and session "
        "creation; MACs = multiply-accumulates per batch (fvcore; torchvision's \"GFLOPS\"), FLOPs = 2 × MACs; "
        "params = all parameters as built (no auxiliary heads); peak mem = measured peak memory of warmup and "
        "timing (CPU: worker RSS growth over its post-load baseline; CUDA: torch peak allocated), act. mem = "
        "analytic activation bytes of one forward at the batch measured; KiB = 2^10 bytes, MiB = 2^20 bytes, "
        "GiB = 2^30 bytes"
    )
    if top1:
        text += (
            "; top-1 = measured on the case's dataset through its backend (correct/total images), "
            "⚠ = differs from eager by more than max(1, 0.1%) images"
        )
    if energy:
        text += "; " + ENERGY_CAPTION
    return text


def render_notes(records: Sequence[CaseRecord | dict[str, Any]]) -> list[str]:
    """Warnings and errors, one line each, printed under the table so no number stands alone."""
    lines = []
    for t in table_rows(records):
        r = t.case
        lines.extend(f"⚠ {r.key}: {w}" for w in r.warnings)
        if t.accuracy_flag:
            lines.append(f"⚠ {r.key}: measured accuracy differs from eager: {t.accuracy_flag}")
        if r.status != "ok":
            lines.append(f"✗ {r.key}: {r.status}: {r.error or ''}")
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
        return f"[green]✓[/green] {key}{rep}: {fmt_ms(med)} ms median{shown}, {fmt_rate(batch / (med / 1000.0))} images/s{extra}"
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


def throttle_label(state: Mapping[str, Any] | None) -> str | None:
    """"throttled: reasons" for a record's `device_state` whose GPU throttled, else None (old files too)."""
    if not isinstance(state, Mapping) or not state.get("throttled"):
        return None
    return "throttled: " + ", ".join(str(r) for r in state.get("throttle_reasons") or ())
