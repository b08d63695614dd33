"""The report's chart kit: the plot descriptor and the drawing helpers that every chart shares.

`plots` (the standard charts), `energy` and `landscape` each draw their own charts with these;
keeping them here lets those modules import the kit without importing one another. matplotlib
is imported inside the helpers that draw.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from cnnbench.report.model import CaseRow, EnvGroup, ReportData, backend_sort_key

__all__ = ["PlotSpec", "per_model_chart", "plain_log_axis", "nice_sizes", "backend_style", "series_style", "PRECISION_MARKERS", "inference_rows"]

_PANEL_W, _PANEL_H, _MAX_COLS = 4.3, 3.1, 3


_BACKEND_STYLE = {
    "eager": ("#1f77b4", "o"),
    "compile": ("#d62728", "s"),
    "onnxrt": ("#2ca02c", "^"),
}


_OTHER_COLORS = ("#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf", "#ff7f0e")


@dataclass(frozen=True)
class PlotSpec:
    name: str  # file stem, unique in a report
    kind: str  # latency | throughput | speedup | memory | gflops | training | accuracy | energy | landscape
    env: str | None  # environment fingerprint, None for cross-environment charts
    title: str
    caption: str


# One colour per backend and one marker per precision, the same in every chart of the report and
# of `bench.py select`, so a backend x precision pair is recognised across plots.
_FIXED_COLORS = {"eager": "#1f77b4", "compile": "#d62728", "onnxrt": "#2ca02c", "openvino": "#9467bd",
                 "aoti": "#8c564b", "tensorrt": "#ff7f0e"}  # fmt: skip
PRECISION_MARKERS = {"fp32": "o", "fp16": "^", "bf16": "v", "int8": "s"}


def series_style(backend: str, precision: str) -> tuple[str, str]:
    """(colour, marker) of a backend (with its options) and a precision: fixed per backend name,
    an option-carrying backend (compile[mode=...]) a stable colour of its own; marker per precision."""
    if backend in _FIXED_COLORS:
        color = _FIXED_COLORS[backend]
    else:
        free = [c for c in _OTHER_COLORS if c not in _FIXED_COLORS.values()]
        color = free[zlib.crc32(backend.encode("utf-8")) % len(free)]  # two option sets may share one
    return color, PRECISION_MARKERS.get(precision, "D")


def backend_style(backend: str, index: int) -> tuple[str, str]:
    name = backend.split("[", 1)[0]
    if backend in _BACKEND_STYLE:
        return _BACKEND_STYLE[backend]
    color = _OTHER_COLORS[index % len(_OTHER_COLORS)]
    return color, _BACKEND_STYLE.get(name, ("", "D"))[1]


def _grid(n: int):
    from matplotlib.figure import Figure

    cols = max(1, min(_MAX_COLS, n))
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(_PANEL_W * cols, _PANEL_H * rows + 0.7), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    flat = [ax for row in axes for ax in row]
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def _series(rows: list[CaseRow]) -> dict[str, list[CaseRow]]:
    """Lines of one panel: one per backend (and per variant when a model has several)."""
    variants = {r.variant_label for r in rows}
    out: dict[str, list[CaseRow]] = {}
    for r in sorted(rows, key=lambda r: (backend_sort_key(r.backend), r.variant_label, r.batch)):
        label = r.backend if len(variants) == 1 else f"{r.backend} {r.variant_label}"
        out.setdefault(label, []).append(r)
    return out


def plain_log_axis(axis, ax, which: str) -> None:
    """Log scale labelled 2, 5, 10, 20 ... instead of 2x10^1 (readers compare values, not powers)."""
    from matplotlib.ticker import FuncFormatter, LogLocator

    (ax.set_yscale if which == "y" else ax.set_xscale)("log")
    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_minor_locator(LogLocator(base=10, subs=(3.0, 4.0, 6.0, 7.0, 8.0, 9.0)))
    axis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:,.6g}"))
    axis.set_minor_formatter(FuncFormatter(lambda v, _pos: ""))


def _batch_axis(ax, batches: Sequence[int]) -> None:
    from matplotlib.ticker import FixedLocator, NullLocator

    ax.set_xscale("log", base=2)
    ticks = sorted(set(batches))
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticklabels([str(t) for t in ticks])
    if len(ticks) == 1:
        ax.set_xlim(ticks[0] / 2, ticks[0] * 2)
    ax.set_xlabel("batch size")


def inference_rows(data: ReportData, env: str, model: str) -> list[CaseRow]:
    return [r for r in data.rows_of(env, model, valid_only=True) if not r.is_train]


def per_model_chart(
    data: ReportData,
    spec: PlotSpec,
    *,
    value: Callable[[CaseRow], float | None],
    ylabel: str,
    logy: bool = False,
    yerr: Callable[[CaseRow], tuple[float, float]] | None = None,
    skip: Callable[[CaseRow], bool] = lambda r: False,
    decorate: Callable[[Any, str, EnvGroup], None] | None = None,
    panel_if: Callable[[CaseRow], bool] | None = None,
    extra_legend: Sequence[tuple[Any, str]] = (),
):
    """One panel per model with a valid inference row (`panel_if`, default: a value to plot).
    x is the batch each case actually ran (lower than asked only after --oom-retry)."""
    env = data.env(spec.env)  # type: ignore[arg-type]
    wanted = panel_if or (lambda r: value(r) is not None and not skip(r))
    models = [
        m
        for m in data.model_names(env.fingerprint)
        if any(wanted(r) for r in inference_rows(data, env.fingerprint, m))
    ]
    fig, axes = _grid(len(models))
    handles: dict[str, Any] = {}
    for ax, model in zip(axes, models):
        rows = [r for r in inference_rows(data, env.fingerprint, model) if value(r) is not None and not skip(r)]
        for i, (label, series) in enumerate(_series(rows).items()):
            color, marker = series_style(series[0].backend, series[0].precision)
            xs = [r.batch for r in series]
            ys = [value(r) for r in series]
            if yerr is not None:
                lo_hi = [yerr(r) for r in series]
                err = [[max(0.0, y - lo) for y, (lo, _) in zip(ys, lo_hi)], [max(0.0, hi - y) for y, (_, hi) in zip(ys, lo_hi)]]
                cont = ax.errorbar(xs, ys, yerr=err, color=color, marker=marker, ms=4, lw=1.4, capsize=3, label=label)
                handles.setdefault(label, cont)
            else:
                (line,) = ax.plot(xs, ys, color=color, marker=marker, ms=4, lw=1.4, label=label)
                handles.setdefault(label, line)
        _batch_axis(ax, [r.batch for r in inference_rows(data, env.fingerprint, model) if wanted(r)])
        if logy:
            plain_log_axis(ax.yaxis, ax, "y")
        if decorate is not None:
            decorate(ax, model, env)
        ax.set_title(model)
        ax.set_ylabel(ylabel)
    fig.suptitle(spec.title, fontsize=11)
    for handle, label in extra_legend:
        handles.setdefault(label, handle)
    if handles:
        fig.legend(list(handles.values()), list(handles), loc="outside lower center", ncols=min(6, len(handles)), frameon=False)
    return fig


def nice_sizes(lo: float, hi: float) -> list[float]:
    """Up to three round parameter counts spanning [lo, hi] for the size legend."""
    nice = [m * 10**e for e in range(3, 10) for m in (1, 2, 5)]
    inside = [n for n in nice if lo * 0.7 <= n <= hi * 1.3]
    if len(inside) > 3:
        inside = [inside[0], inside[len(inside) // 2], inside[-1]]
    return inside or [hi]
