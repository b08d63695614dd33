"""Tabular views of a results file: one flat row per case, a pandas DataFrame, notebook HTML.

Compute, then render: `case_rows` returns plain dicts (the data), `to_pandas` wraps them in a
DataFrame (pandas is an optional extra, `pip install 'cnnbench[pandas]'`), `results_html` renders
the compact table of the terminal (model, batch, backend, precision, status, median ms ± IQR,
images/s, speedup) with the same warnings and errors under it, for `_repr_html_` in a notebook.
Column names carry their units (`median_ms`, `throughput_per_s`, `peak_rss_delta_bytes`).

This module reads records by their public attributes only (no import of `records`, which imports
this module for its methods).
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

from cnnbench.core.errors import UserError
from cnnbench.stats.processes import warnings_with_split

if TYPE_CHECKING:  # pragma: no cover
    from cnnbench.results.records import CaseRecord

__all__ = ["LATENCY_STATS", "PANDAS_MISSING", "case_rows", "to_pandas", "results_html", "html_table", "require_pandas"]

# The latency statistics a row carries, each as `latency_<stat>_ms` (`latency_n` is a count).
LATENCY_STATS = ("median", "mean", "std", "iqr", "min", "max", "p5", "p25", "p75", "p90", "p95", "p99", "ci95_low", "ci95_high")
PANDAS_MISSING = "to_pandas() needs pandas, an optional extra: pip install 'cnnbench[pandas]' (or pip install pandas)"


def require_pandas() -> Any:
    """The pandas module, or a `UserError` that says how to install it."""
    try:
        import pandas
    except ImportError as exc:
        raise UserError(PANDAS_MISSING) from exc
    return pandas


def _flat(prefix: str, mapping: Mapping[str, Any] | None, out: dict[str, Any]) -> None:
    """Scalar fields of a mapping as `<prefix>_<name>` (nested mappings flattened, lists skipped)."""
    for name, value in (mapping or {}).items():
        if isinstance(value, Mapping):
            _flat(f"{prefix}_{name}", value, out)
        elif value is None or isinstance(value, (bool, int, float, str)):
            out[f"{prefix}_{name}"] = value


def case_rows(cases: Sequence["CaseRecord"], speedups: Sequence[float | None] | None = None) -> list[dict[str, Any]]:
    """One flat dict per case: the key's fields, status, latency statistics (ms), throughput,
    counts, memory (bytes), accuracy, energy and scenario figures when present.

    Args:
        cases: the records, in file order.
        speedups: each case's speedup over its eager baseline (`records.speedups_over_eager`).
    """
    rows = []
    for i, rec in enumerate(cases):
        spec = rec.spec
        c, h, w = (tuple(spec.input_size) + (None, None, None))[:3]
        row: dict[str, Any] = {
            "key": rec.key,
            "model": spec.model,
            "mode": spec.mode,
            "backend": rec.backend_label,
            "precision": spec.precision,
            "batch_size": spec.batch_size,
            "measured_batch_size": rec.batch,
            "input_channels": c,
            "input_height": h,
            "input_width": w,
            "device": spec.device,
            "threads": spec.threads,
            "channels_last": spec.channels_last,
            "status": rec.status,
            "valid": rec.valid,
            "invalid_reason": rec.invalid_reason,
            "error": rec.error,
            "median_ms": rec.median_ms,
            "iqr_ms": rec.iqr_ms,
            "throughput_per_s": rec.throughput,
            "speedup_over_eager": speedups[i] if speedups is not None else None,
            "first_call_ms": rec.first_call_ms,
            "cold_start_ms": rec.cold_start_ms,
            "samples": len(rec.samples_ms),
            "block_size": rec.block_size,
            "repeats_done": rec.repeats_done,
            "stop_reason": rec.stop_reason,
            "params": rec.params,
            "trainable_params": rec.trainable_params,
            "gmacs": rec.gmacs,
            "gflops": rec.gflops,
            "warnings": len(rec.warnings),
        }
        latency = rec.latency_ms or {}
        for stat in LATENCY_STATS:
            row[f"latency_{stat}_ms"] = latency.get(stat)
        row["latency_n"] = latency.get("n")
        memory = rec.memory or {}
        for name, value in memory.items():
            if name.endswith("_bytes"):
                row[f"memory_{name}"] = value
        accuracy = rec.accuracy or {}
        for name in ("kind", "top1", "top5", "correct1", "correct5", "total"):
            if name in accuracy:
                row[f"accuracy_{name}" + ("_percent" if name in ("top1", "top5") else "")] = accuracy[name]
        _flat("energy", rec.energy, row)
        _flat("scenario", rec.extra.get("scenario") if isinstance(rec.extra.get("scenario"), Mapping) else None, row)
        rows.append(row)
    return rows


def to_pandas(rows: list[dict[str, Any]]) -> Any:
    """A DataFrame of `case_rows`' rows (one row per case, columns as the rows' union, in order)."""
    pd = require_pandas()
    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row))
    return pd.DataFrame(rows, columns=list(columns))


def _cell(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def html_table(header: Sequence[str], rows: Iterable[Sequence[Any]], *, title: str | None = None, notes: Sequence[str] = ()) -> str:
    """A plain HTML table (every cell escaped) with a title above and note lines under it."""
    parts = ["<div class='cnnbench'>"]
    if title:
        parts.append(f"<p><b>{_cell(title)}</b></p>")
    parts.append("<table><thead><tr>" + "".join(f"<th>{_cell(h)}</th>" for h in header) + "</tr></thead><tbody>")
    for row in rows:
        parts.append("<tr>" + "".join(f"<td>{_cell(v)}</td>" for v in row) + "</tr>")
    parts.append("</tbody></table>")
    if notes:
        parts.append("<ul>" + "".join(f"<li>{_cell(n)}</li>" for n in notes) + "</ul>")
    parts.append("</div>")
    return "".join(parts)


_COLUMNS = ("model", "batch", "backend", "prec.", "status", "median ms ± IQR", "images/s", "speedup")


def _latency_cell(rec: "CaseRecord") -> str:
    if rec.valid and rec.median_ms is not None:
        iqr = f" ± {rec.iqr_ms:.3f}" if rec.iqr_ms is not None else ""
        return f"{rec.median_ms:.3f}{iqr}"
    return "(invalid)" if rec.latency_ms else "-"


def results_html(cases: Sequence["CaseRecord"], speedups: Sequence[float | None], *, title: str) -> str:
    """The terminal's compact table and its notes (warnings, errors) as HTML."""
    rows = []
    notes = []
    for rec, speedup in zip(cases, speedups):
        status = rec.status if rec.status != "ok" else ("ok" if rec.valid else str(rec.invalid_reason))
        if rec.status == "ok" and rec.valid and rec.warnings:
            status += " ⚠"
        backend = rec.backend_label + (" train" if rec.is_train else "")
        throughput = f"{rec.throughput:,.1f}" if rec.throughput is not None else "-"
        rows.append([rec.spec.model, rec.batch_label, backend, rec.spec.precision, status, _latency_cell(rec),
                     throughput, f"{speedup:.2f}x" if speedup is not None else ""])  # fmt: skip
        for warning in warnings_with_split(rec.to_json()):
            notes.append(f"⚠ {rec.key}: {warning}")
        if rec.status != "ok":
            notes.append(f"✗ {rec.key}: {rec.status}: {rec.error or ''}")
    return html_table(_COLUMNS, rows, title=title, notes=notes)
