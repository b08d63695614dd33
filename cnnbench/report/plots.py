"""The report's charts, drawn with matplotlib's object API on the Agg canvas.

`plan_plots` (pure, no matplotlib) decides which charts the data supports; `render_plot` draws
one and returns its bytes per format. matplotlib is imported inside the drawing functions, and
`matplotlib.figure.Figure` is used directly (never pyplot), so reporting neither needs a display
nor changes the caller's global backend.

Charts, one set per environment (different environments are never drawn on the same axes):
latency vs batch size (one panel per model, a line per backend, IQR bars: p25..p75),
throughput vs batch size, speedup over eager, memory vs batch size (measured peak per backend,
analytic parameters + activations dashed), achieved GFLOP/s against the measured peak, all of
inference cases at the batch each case actually ran; training cases get their own chart (samples/s
per training step, with the time an ImageNet-1k epoch would take). And one accuracy vs GMACs chart with marker area proportional to the parameter count (the chart the
course shows for ImageNet models).
"""

from __future__ import annotations

import io
import math
from typing import Any, Callable, Sequence

from cnnbench.core.errors import UserError
from cnnbench.report.charts import PlotSpec, inference_rows, nice_sizes, per_model_chart, plain_log_axis, series_style
from cnnbench.core.units import fmt_duration, fmt_gflops, fmt_ms
from cnnbench.report.model import CaseRow, EnvGroup, ReportData
from cnnbench.core.inert import MPL_RC
from cnnbench.report import landscape
from cnnbench.report.energy import draw, plot_specs as energy_specs
from cnnbench.report.landscape import draw_landscape

__all__ = ["PlotSpec", "plan_plots", "render_plot", "IMAGE_FORMATS", "require_matplotlib"]

IMAGE_FORMATS = ("png", "svg")
PNG_DPI = 110


def require_matplotlib() -> None:
    """Raise a one-line UserError when matplotlib is missing (plots and HTML need it)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise UserError(
            "plots and the HTML page need matplotlib: `pip install matplotlib`, "
            "or ask only for --format md,csv"
        ) from None


# --------------------------------------------------------------------------------------------
# Planning (pure)


def _accuracy_points(data: ReportData) -> list[dict[str, Any]]:
    """One point per model: accuracy (measured preferred) against GMACs per image."""
    points: dict[str, dict[str, Any]] = {}
    for (env, name), m in data.models.items():
        if m.accuracy is None or not m.gmacs_per_image:
            continue
        have = points.get(name)
        if have is not None and not (have["kind"] == "published" and m.accuracy.kind == "measured"):
            continue
        points[name] = {
            "model": name,
            "gmacs": m.gmacs_per_image,
            "params": m.params,
            "top1": m.accuracy.top1,
            "kind": m.accuracy.kind,
            "dataset": m.accuracy.dataset,
        }
    return sorted(points.values(), key=lambda p: p["gmacs"])


def _inference_specs(env: EnvGroup, valid: list[CaseRow], sfx: str, where: str) -> list[PlotSpec]:
    """The per-environment charts of inference cases (none without a valid one)."""
    specs: list[PlotSpec] = []
    if not valid:
        return specs
    specs.append(
        PlotSpec(
            f"latency{sfx}", "latency", env.fingerprint, f"Latency vs batch size{where}",
            "Median latency per call (ms, log scale) against batch size, one panel per model and a "
            "line per backend; bars span the interquartile range (p25 to p75). Invalid cases are omitted.",
        )
    )
    specs.append(
        PlotSpec(
            f"throughput{sfx}", "throughput", env.fingerprint, f"Throughput vs batch size{where}",
            "Images per second (batch size / median latency) against batch size, a line per backend.",
        )
    )
    if any(r.speedup_vs_eager is not None and r.backend != "eager" for r in valid):
        specs.append(
            PlotSpec(
                f"speedup{sfx}", "speedup", env.fingerprint, f"Speedup over eager{where}",
                "Eager median / backend median at each batch size (above 1: faster than eager).",
            )
        )
    if any(r.memory_measured or r.memory_analytic_bytes for r in valid):
        specs.append(
            PlotSpec(
                f"memory{sfx}", "memory", env.fingerprint, f"Memory vs batch size{where}",
                "Measured peak per backend (CPU: RSS growth over the post-load baseline; CUDA: peak "
                "allocated) and, dashed, the analytic parameter + activation bytes.",
            )
        )
    if env.peak_gflops and any(r.achieved_gflops_per_s for r in valid):
        specs.append(
            PlotSpec(
                f"gflops{sfx}", "gflops", env.fingerprint, f"Achieved GFLOP/s vs the machine's peak{where}",
                "2 × MACs / median latency per case; the dashed line is the peak measured by a large "
                "matrix multiply in the same worker settings (right axis: % of peak).",
            )
        )

    specs += energy_specs(env, valid, sfx, where)  # images per joule, when cases measured energy
    return specs


def plan_plots(data: ReportData) -> list[PlotSpec]:
    specs: list[PlotSpec] = []
    multi = len(data.envs) > 1
    for env in data.envs:
        sfx = f"-{env.slug}" if multi else ""
        where = f" — {env.label}" if multi else ""
        valid = [r for r in data.rows_of(env.fingerprint, valid_only=True) if not r.is_train]
        specs += _inference_specs(env, valid, sfx, where)
        if any(r.is_train for r in data.rows_of(env.fingerprint, valid_only=True)):
            specs.append(
                PlotSpec(
                    f"training{sfx}", "training", env.fingerprint, f"Training step throughput{where}",
                    "Samples per second of one training step (forward, loss, backward, optimizer step) per "
                    "training case; the label gives the step latency and the time one ImageNet-1k epoch "
                    "(1,281,167 images) would take at that rate, data loading excluded.",
                )
            )
    if _accuracy_points(data):
        specs.append(
            PlotSpec(
                "accuracy_vs_gmacs", "accuracy", None, "Top-1 accuracy vs GMACs per image",
                "Top-1 accuracy against compute (GMACs per image, log scale); marker area is proportional "
                "to the parameter count. Filled: measured; hollow: published (torchvision or timm, ImageNet-1K val).",
            )
        )

    specs.append(PlotSpec(landscape.NAME, "landscape", None, landscape.TITLE, landscape.CAPTION))
    return specs


# --------------------------------------------------------------------------------------------
# Drawing


def render_plot(data: ReportData, spec: PlotSpec, formats: Sequence[str] = IMAGE_FORMATS) -> dict[str, bytes]:
    """Draw one chart; returns {format: bytes} for each of `formats` ("png", "svg")."""
    require_matplotlib()
    import matplotlib

    drawers: dict[str, Callable[..., Any]] = {
        "latency": _draw_latency,
        "throughput": _draw_throughput,
        "speedup": _draw_speedup,
        "memory": _draw_memory,
        "gflops": _draw_gflops,
        "training": _draw_training,
        "accuracy": _draw_accuracy,
        "energy": _draw_energy,
        "landscape": _draw_landscape,
    }
    rc = {
        "svg.hashsalt": "cnnbench",  # stable element ids: identical data, identical SVG
        "svg.fonttype": "path",  # text as paths: renders the same without the fonts installed
        "font.size": 9,
        "axes.titlesize": 10,
        "axes.grid": True,
        "grid.alpha": 0.3,
        **MPL_RC,  # text from data (model names, hosts) is never parsed as mathtext
    }
    out: dict[str, bytes] = {}
    for fmt in formats:
        # A fresh figure per format: saving one figure twice lays it out twice, and the second
        # layout differs in the last digits, which would change the SVG's clip-path ids.
        with matplotlib.rc_context(rc):
            fig = drawers[spec.kind](data, spec)
            buf = io.BytesIO()
            if fmt == "png":
                fig.savefig(buf, format="png", dpi=PNG_DPI, metadata={"Software": None})
            elif fmt == "svg":
                fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
            else:
                raise ValueError(f"unknown image format {fmt!r}")
            out[fmt] = buf.getvalue()
    return out


def _draw_latency(data: ReportData, spec: PlotSpec):
    return per_model_chart(
        data,
        spec,
        value=lambda r: r.median_ms,
        yerr=lambda r: (r.latency_ms.get("p25", r.median_ms), r.latency_ms.get("p75", r.median_ms)),  # type: ignore[union-attr]
        ylabel="median latency (ms)",
        logy=True,
    )


def _draw_energy(data: ReportData, spec: PlotSpec):
    return draw(data, spec)


def _draw_throughput(data: ReportData, spec: PlotSpec):
    return per_model_chart(data, spec, value=lambda r: r.throughput_per_s, ylabel="images / s", logy=True)


def _draw_speedup(data: ReportData, spec: PlotSpec):
    def decorate(ax, model, env):
        ax.axhline(1.0, color="0.4", lw=1, ls="--")
        lo, hi = ax.get_ylim()
        ax.set_ylim(min(lo, 0.9), max(hi, 1.1))

    return per_model_chart(
        data,
        spec,
        value=lambda r: r.speedup_vs_eager,
        skip=lambda r: r.backend == "eager",
        ylabel="speedup over eager (×)",
        decorate=decorate,
    )


def _draw_memory(data: ReportData, spec: PlotSpec):
    from matplotlib.lines import Line2D

    def measured(r: CaseRow) -> float | None:
        m = r.memory_measured
        return None if m is None else m[1] / 2**20

    def decorate(ax, model, env):
        analytic: dict[int, int] = {}
        for r in sorted(inference_rows(data, env.fingerprint, model), key=lambda r: r.backend != "eager"):
            if r.memory_analytic_bytes is not None:
                analytic.setdefault(r.batch, r.memory_analytic_bytes)
        if analytic:
            xs = sorted(analytic)
            ax.plot(xs, [analytic[x] / 2**20 for x in xs], color="0.3", ls="--", lw=1.2, marker="x", ms=4)
        ax.set_ylim(bottom=0)

    return per_model_chart(
        data,
        spec,
        value=measured,
        ylabel="memory (MiB)",
        decorate=decorate,
        panel_if=lambda r: measured(r) is not None or r.memory_analytic_bytes is not None,
        extra_legend=[(Line2D([], [], color="0.3", ls="--", marker="x"), "analytic: params + activations")],
    )


def _draw_gflops(data: ReportData, spec: PlotSpec):
    env = data.env(spec.env)  # type: ignore[arg-type]
    peak = env.peak_gflops_median

    def decorate(ax, model, env):
        ax.axhline(peak, color="0.25", ls="--", lw=1.2)
        ax.text(0.02, 0.97, f"peak {fmt_gflops(peak)} GFLOP/s", transform=ax.transAxes, va="top", fontsize=8, color="0.25")
        ax.set_ylim(0, peak * 1.1)
        sec = ax.secondary_yaxis("right", functions=(lambda g: 100.0 * g / peak, lambda p: p * peak / 100.0))
        sec.set_ylabel("% of peak")

    return per_model_chart(
        data, spec, value=lambda r: r.achieved_gflops_per_s, ylabel="achieved GFLOP/s", decorate=decorate
    )


def _draw_training(data: ReportData, spec: PlotSpec):
    """Horizontal bars: samples/s of each valid training case, labelled with its epoch time."""
    from matplotlib.figure import Figure

    env = data.env(spec.env)  # type: ignore[arg-type]
    rows = [r for r in data.rows_of(env.fingerprint, valid_only=True) if r.is_train]
    name, label, images = data.epoch_datasets[0]
    fig = Figure(figsize=(9.0, 1.2 + 0.42 * len(rows)), layout="constrained")
    ax = fig.subplots()
    ys = list(range(len(rows)))[::-1]
    for i, (y, r) in enumerate(zip(ys, rows)):
        color, _ = series_style(r.backend, r.precision)
        ax.barh([y], [r.throughput_per_s], color=color, alpha=0.85, height=0.6)
        ax.text(
            r.throughput_per_s, y, f"  {fmt_ms(r.median_ms)} ms/step; {label} epoch {fmt_duration(r.epoch_seconds(images))}",  # type: ignore[arg-type]
            va="center", fontsize=8,
        )
    ax.set_yticks(ys)
    ax.set_yticklabels(
        [f"{r.model} {r.backend_name} {r.optimizer} b{r.batch_label} {r.precision}" for r in rows]
    )
    ax.set_xlabel("samples / s (batch / median step latency)")
    ax.set_xlim(0, max(r.throughput_per_s or 0.0 for r in rows) * 2.1)  # room for the labels
    ax.grid(axis="y", visible=False)
    ax.set_title(spec.title)
    return fig


def _draw_accuracy(data: ReportData, spec: PlotSpec):
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    points = _accuracy_points(data)
    fig = Figure(figsize=(9.0, 5.2), layout="constrained")
    ax = fig.subplots()
    datasets = sorted({(p["dataset"], p["kind"]) for p in points})
    colors = {d: c for d, c in zip(datasets, ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#8c564b"))}
    known = [p["params"] for p in points if p["params"]]
    # Area (points^2) proportional to parameters: the largest model gets ~1600 pt^2.
    scale = 1600.0 / max(known) if known else 1.0
    for p in points:
        area = (p["params"] or (min(known) if known else 1e6)) * scale
        color = colors[(p["dataset"], p["kind"])]
        ax.scatter(
            [p["gmacs"]],
            [p["top1"]],
            s=max(area, 12.0),
            facecolors=color if p["kind"] == "measured" else "none",
            edgecolors=color,
            alpha=0.75 if p["kind"] == "measured" else 1.0,
            linewidths=1.5,
            zorder=3,
        )
        r = math.sqrt(max(area, 12.0)) / 2.0  # marker radius in points: label just outside it
        ax.annotate(p["model"], (p["gmacs"], p["top1"]), xytext=(0.72 * r + 3, 0.72 * r + 2), textcoords="offset points",
                    fontsize=8)
    plain_log_axis(ax.xaxis, ax, "x")
    ax.set_xlabel("GMACs per image (multiply-accumulates; FLOPs = 2 × MACs)")
    ax.set_ylabel("top-1 accuracy (%)")
    ax.set_title(spec.title)
    ys = [p["top1"] for p in points]
    pad = max(2.0, (max(ys) - min(ys)) * 0.15)
    ax.set_ylim(min(ys) - pad, max(ys) + pad)
    xs = [p["gmacs"] for p in points]
    ax.set_xlim(min(xs) / 1.8, max(xs) * 1.8)
    handles = [
        Line2D([], [], ls="", marker="o", ms=8, markerfacecolor=colors[d] if d[1] == "measured" else "none",
               markeredgecolor=colors[d], label=f"{d[0]} ({d[1]})")
        for d in datasets
    ]
    if known:
        for n in nice_sizes(min(known), max(known)):
            handles.append(
                Line2D([], [], ls="", marker="o", ms=math.sqrt(n * scale), markerfacecolor="none",
                       markeredgecolor="0.4", label=f"{n / 1e6:g} M params")
            )
    fig.legend(handles=handles, loc="outside right upper", fontsize=8, labelspacing=2.2, handletextpad=1.6,
               borderpad=1.2, frameon=False)
    return fig


def _draw_landscape(data: ReportData, spec: PlotSpec):
    return draw_landscape(data, spec)


