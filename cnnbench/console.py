"""Terminal output for `run`: a progress bar with ETA, a row per finished case, a final table.

Bookkeeping (`table_rows`) is kept apart from rendering (`render_table`), as in
torch.utils.benchmark's Compare: rows are plain dicts that tests can check and reports reuse.
"""

from __future__ import annotations

from typing import Any

from cnnbench.spec import CaseSpec

__all__ = ["CONVENTIONS", "make_console", "table_rows", "render_table", "ConsoleReporter", "QuietReporter"]

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
    """One plain row per case, in the records' order, with speedup over the eager case."""
    eager: dict[tuple, float] = {}
    for rec in records:
        med = _valid_latency(rec)
        if rec["spec"]["backend"] == "eager" and med:
            eager[_group_key(rec["spec"])] = med
    rows = []
    for rec in records:
        spec = rec["spec"]
        lat = rec.get("latency_ms") or {}
        med = _valid_latency(rec)
        base = eager.get(_group_key(spec))
        measured_batch = rec.get("measured_batch_size")  # lower than asked only after --oom-retry
        lowered = measured_batch is not None and measured_batch != spec["batch_size"]
        rows.append(
            {
                "model": spec["model"],
                "batch": f"{measured_batch} (of {spec['batch_size']})" if lowered else spec["batch_size"],
                "backend": spec["backend"],
                "precision": spec["precision"],
                "device": spec["device"],
                "threads": spec["threads"],
                "status": rec["status"],
                "median_ms": lat.get("median"),
                "iqr_ms": lat.get("iqr"),
                "valid": med is not None,
                "throughput_per_s": rec.get("throughput_per_s") if med is not None else None,
                "speedup": (base / med) if (base and med and spec["backend"] != "eager") else None,
                "first_call_ms": rec.get("first_call_ms"),
                "params_m": rec["params"] / 1e6 if rec.get("params") is not None else None,
                "gmacs": rec.get("gmacs"),
                "warnings": list(rec.get("warnings") or []),
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


def render_table(records: list[dict[str, Any]], *, title: str = "cnnbench results"):
    """A rich Table of the records, with units and conventions in the header and caption."""
    from rich.table import Table

    rows = table_rows(records)
    table = Table(title=title, caption=CONVENTIONS, caption_justify="left", header_style="bold")
    for name, justify in (
        ("model", "left"), ("batch", "right"), ("backend", "left"), ("precision", "left"),
        ("status", "left"), ("median ms ± IQR", "right"), ("images/s", "right"),
        ("speedup vs eager", "right"), ("first call ms", "right"), ("params M", "right"),
        ("GMACs", "right"),
    ):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for row in rows:
        table.add_row(
            row["model"], str(row["batch"]), row["backend"], row["precision"], _status_cell(row),
            _latency_cell(row), _fmt(row["throughput_per_s"], ",.1f"),
            _fmt(row["speedup"], ".2f", "") + ("x" if row["speedup"] else ""),
            _fmt(row["first_call_ms"], ",.1f"), _fmt(row["params_m"], ".3f"), _fmt(row["gmacs"], ".3f"),
        )
    return table


def render_notes(records: list[dict[str, Any]]) -> list[str]:
    """Warnings and errors, one line each, printed under the table so no number stands alone."""
    lines = []
    for rec in records:
        for w in rec.get("warnings") or []:
            lines.append(f"⚠ {rec['key']}: {w}")
        if rec["status"] != "ok":
            lines.append(f"✗ {rec['key']}: {rec['status']}: {rec.get('error') or ''}")
    return lines


def _row_line(record: dict[str, Any], run: dict[str, Any]) -> str:
    spec = CaseSpec.from_dict(record["spec"])
    lat = record.get("latency_ms")
    rep = f" (repeat {run.get('repeat', 0) + 1}/{record['repeats_planned']})" if record["repeats_planned"] > 1 else ""
    if run.get("status") == "ok" and lat:
        med = (record["runs"][-1].get("median_ms") if record.get("runs") else None) or lat["median"]
        tp = spec.batch_size / (med / 1000.0)
        extra = " [yellow]⚠[/yellow]" if record["warnings"] else ""
        return f"[green]✓[/green] {spec.key}{rep}: {med:.3f} ms median, {tp:,.1f} images/s{extra}"
    return f"[red]✗[/red] {spec.key}{rep}: [red]{run.get('status')}[/red]: {run.get('error') or ''}"


class ConsoleReporter:
    """Progress bar with ETA at the bottom, one line per finished run above it."""

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

    def case_started(self, spec: CaseSpec, repeat: int) -> None:
        if self._progress is not None:
            self._progress.update(self._task, description=f"{spec.model} b{spec.batch_size} {spec.backend}")

    def case_finished(self, record: dict[str, Any], run: dict[str, Any]) -> None:
        if self._progress is not None:
            self._progress.console.print(_row_line(record, run), highlight=False)
            self._progress.advance(self._task)

    def finish(self, results: dict[str, Any]) -> None:
        if self._progress is not None:
            self._progress.stop()
        self.console.print(render_table(results["cases"], title=f"cnnbench: {results['suite'].get('name', '')}"))
        for line in render_notes(results["cases"]):
            self.console.print(line, highlight=False, markup=False)


class QuietReporter:
    def start(self, total_runs: int) -> None: ...
    def case_started(self, spec: CaseSpec, repeat: int) -> None: ...
    def case_finished(self, record: dict[str, Any], run: dict[str, Any]) -> None: ...
    def finish(self, results: dict[str, Any]) -> None: ...
