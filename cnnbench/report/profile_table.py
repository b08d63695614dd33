"""The per-layer table of `bench.py profile`: plain strings first (tests read these), then the
rich table, and CSV. The figures come from `cnnbench.measure.profile`; this only formats them."""

from __future__ import annotations

import csv
import io
from typing import TYPE_CHECKING, Any

from cnnbench.core.units import fmt_bytes, fmt_ms
from cnnbench.core.inert import csv_cell

if TYPE_CHECKING:  # pragma: no cover
    from cnnbench.measure.profile import LayerRow, Profile

__all__ = ["table_rows", "render_table", "caption_lines", "to_csv", "fmt_dims", "fmt_rf", "fmt_shape"]


def fmt_dims(values: Any) -> str:
    """(3, 3) -> '3'; (1, 7) -> '1x7'; 'same' -> 'same'; None -> ''."""
    if values is None:
        return ""
    if isinstance(values, str):
        return values
    vals = [int(v) for v in values]
    if not vals:
        return ""
    return str(vals[0]) if len(set(vals)) == 1 else "x".join(map(str, vals))


def fmt_rf(row: "LayerRow") -> str:
    if row.receptive_field is None:
        return ""
    text = fmt_dims(row.receptive_field)
    if row.rf_global:
        text = f"global ({text})"
    return ("~" if row.rf_approx else "") + text


def _scale(max_value: float, units: list[tuple[str, float]], *, least: float = 10) -> tuple[str, float]:
    """The largest unit in which the column's largest value still reads 10 or more, so small
    rows keep some digits (VGG's 1,849.69 M MACs rather than 1.85 G)."""
    chosen = units[0]
    for unit in units:
        if max_value >= least * unit[1]:
            chosen = unit
    return chosen


_BYTE_UNITS = [("B", 1), ("KiB", 1024), ("MiB", 1024**2), ("GiB", 1024**3)]
_COUNT_UNITS = [("", 1), ("K", 1e3), ("M", 1e6), ("G", 1e9)]


def _num(value: float, divisor: float) -> str:
    if divisor == 1:
        return f"{int(value):,}"
    return f"{value / divisor:,.2f}"


def table_rows(prof: "Profile") -> tuple[list[str], list[list[str]]]:
    """Header and string cells of the terminal table (the input line first, totals last)."""
    show_dil = any(r.dilation and any(d != 1 for d in r.dilation) for r in prof.rows)
    show_time = prof.forward_time_ms is not None
    b_unit, b_div = _scale(max([r.activation_bytes for r in prof.rows] + [1]), _BYTE_UNITS, least=1)
    m_unit, m_div = _scale(max([r.macs for r in prof.rows] + [1]), _COUNT_UNITS)
    header = ["#", "Layer", "Type", "Kernel", "Stride", "Pad"] + (["Dil"] if show_dil else [])
    header += [
        "Output (NxCxHxW)",
        "Activations (elements)",
        f"Act. memory ({b_unit}, {prof.precision})",
        "Params",
        f"MACs ({m_unit})" if m_unit else "MACs",
        "RF (px)",
        "Jump (px)",
    ] + (["Time (ms, CPU)"] if show_time else [])

    def line(cells: dict[str, str]) -> list[str]:
        out = [cells.get(h, "") for h in header]
        return out

    rows: list[list[str]] = []
    n_in = 1
    for s in prof.input_shape:
        n_in *= int(s)
    in_hw = prof.input_shape[2:]
    rows.append(
        line(
            {
                "#": "",
                "Layer": "input",
                "Output (NxCxHxW)": fmt_shape(prof.input_shape),
                "Activations (elements)": f"{n_in:,}",
                header[header.index("Output (NxCxHxW)") + 2]: _num(n_in * prof.bytes_per_element, b_div),
                "RF (px)": fmt_dims(tuple(1 for _ in in_hw)) if in_hw else "",
                "Jump (px)": fmt_dims(tuple(1 for _ in in_hw)) if in_hw else "",
            }
        )
    )
    act_col = header[header.index("Output (NxCxHxW)") + 2]
    mac_col = header[header.index("Params") + 1]
    for r in prof.rows:
        if r.kind == "layer":
            typ = r.type
        elif r.kind == "functional":
            typ = f"{r.type} (own ops)" if r.type != "(functional)" else r.type
        else:
            typ = r.type
        cells = {
            "#": str(r.index),
            "Layer": r.name or "(model)",
            "Type": typ,
            "Kernel": fmt_dims(r.kernel),
            "Stride": fmt_dims(r.stride),
            "Pad": fmt_dims(r.padding),
            "Dil": fmt_dims(r.dilation),
            "Output (NxCxHxW)": fmt_shape(r.output_shape) if r.output_shape else "",
            "Activations (elements)": f"{r.activations:,}" if r.kind == "layer" else "",
            act_col: (_num(r.activation_bytes, b_div) + (" =" if r.shares_input_memory else ""))
            if r.kind == "layer"
            else "",
            "Params": f"{r.params:,}" if r.params or r.kind != "layer" else "0",
            mac_col: _num(r.macs, m_div),
            "RF (px)": fmt_rf(r),
            "Jump (px)": fmt_dims(r.jump),
            "Time (ms, CPU)": fmt_ms(r.time_ms) if r.time_ms is not None else "",
        }
        rows.append(line(cells))
    total = {
        "#": "",
        "Layer": "Total",
        "Activations (elements)": f"{prof.activations:,}",
        act_col: _num(prof.activation_bytes, b_div),
        "Params": f"{prof.params:,}",
        mac_col: _num(prof.macs, m_div),
        "Time (ms, CPU)": fmt_ms(prof.forward_time_ms) if show_time else "",
    }
    rows.append(line(total))
    return header, rows


def fmt_shape(shape: Any) -> str:
    return "x".join(str(int(s)) for s in shape)


def caption_lines(prof: "Profile", timing_note: str | None = None) -> list[str]:
    lines = [
        f"{prof.model}: input {fmt_shape(prof.input_shape)}, {prof.precision} ({prof.bytes_per_element} bytes/element). "
        f"Params {prof.params:,} ({fmt_bytes(prof.param_bytes)} at {prof.precision}); "
        f"{prof.gmacs:,.4f} GMACs = {2 * prof.gmacs:,.4f} GFLOPs for this batch (counter: fvcore).",
        "MACs = multiply-accumulates (fvcore's unit, torchvision's 'GFLOPS'); FLOPs = 2 x MACs.",
        f"Activations: every layer's output once, {fmt_bytes(prof.activation_bytes)} in total; "
        "'=' marks outputs that share their input's memory (in-place, views), not added again.",
        "RF = receptive field, r_out = r_in + (k-1)*d*j_in; Jump = cumulative stride, j_out = j_in*s; "
        "branches meet at their largest (r, j); 'global' = the whole input; '~' = approximate.",
    ]
    if timing_note:
        lines.append(timing_note)
    return lines


def render_table(prof: "Profile"):
    from rich.table import Table

    header, rows = table_rows(prof)
    table = Table(title=f"{prof.model} per-layer profile", show_lines=False)
    left = {"#", "Layer", "Type", "Kernel", "Stride", "Pad", "Dil", "Output (NxCxHxW)"}
    for h in header:
        table.add_column(h, justify="left" if h in left else "right", no_wrap=h in {"Layer", "Output (NxCxHxW)"})
    for i, cells in enumerate(rows):
        last = i == len(rows) - 1
        table.add_row(*cells, style="bold" if last else ("dim" if i == 0 else None), end_section=(i == 0 or i == len(rows) - 2))
    return table


def to_csv(prof: "Profile") -> str:
    """One row per layer row plus a totals row (kind 'total'); tuples written as '3x3'."""
    fields = [
        "index", "name", "type", "kind", "call", "kernel", "stride", "padding", "dilation", "output_shape",
        "activations", "activation_bytes", "shares_input_memory", "params", "macs", "receptive_field",
        "jump", "rf_global", "rf_approx", "time_ms",
    ]  # fmt: skip

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(fields + ["precision"])
    for r in prof.rows:
        d = r.to_dict()
        cells = []
        for f in fields:
            v = d[f]
            if f in ("kernel", "stride", "padding", "dilation", "receptive_field", "jump") or f == "output_shape":
                v = fmt_shape(v) if f == "output_shape" and v else fmt_dims(v)
            cells.append("" if v is None else csv_cell(v))
        w.writerow(cells + [prof.precision])
    total = {f: "" for f in fields}
    total.update(
        name="Total", kind="total", activations=prof.activations, activation_bytes=prof.activation_bytes,
        params=prof.params, macs=prof.macs, time_ms=prof.forward_time_ms if prof.forward_time_ms is not None else "",
    )  # fmt: skip
    w.writerow([total[f] for f in fields] + [prof.precision])
    return buf.getvalue()
