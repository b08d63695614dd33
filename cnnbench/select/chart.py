"""The frontier chart of a `Selection`: latency (or throughput) against top-1, with interval bars,
the frontier drawn, the constraints' infeasible regions shaded and the selection ringed. PNG bytes
from matplotlib's object API on the Agg canvas (never pyplot)."""

from __future__ import annotations

import io

import matplotlib
from matplotlib.figure import Figure

from cnnbench.core.inert import MPL_RC
from cnnbench.report.charts import PRECISION_MARKERS, plain_log_axis, series_style
from cnnbench.select.figures import Config
from cnnbench.select.frontier import Selection, reference_value

__all__ = ["PRECISION_MARKERS", "x_figure", "frontier_png"]


def x_figure(sel: Selection) -> str:
    """throughput when it is the first objective (or qps), else latency."""
    first = sel.objectives[0].figure
    return first if first in ("throughput", "qps") else "latency"


def _style(c: Config, order: list[str]) -> tuple[str, str]:
    """The report's colour per backend and marker per precision (`report.charts.series_style`)."""
    return series_style(c.record.backend_label, c.precision)


def frontier_png(sel: Selection, *, dpi: int = 110) -> tuple[bytes, str]:
    """(PNG bytes, caption) of the chart."""
    xf = x_figure(sel)
    configs = [v.config for v in sel.verdicts]
    plotted = [c for c in configs if xf in c.figures and "top1" in c.figures]
    skipped = [c.label for c in configs if c not in plotted]
    order = sorted({c.record.backend_label for c in configs})
    status = {v.config.label: v.status for v in sel.verdicts}
    with _rc():
        fig = Figure(figsize=(7.5, 4.8), layout="constrained")
        ax = fig.add_subplot()
        for c in plotted:
            x, y = c.figures[xf], c.figures["top1"]
            color, marker = _style(c, order)
            filled = status[c.label] == "feasible" and not c.unreliable
            ax.errorbar(
                [x.point], [y.point], xerr=[[x.point - x.low], [x.high - x.point]], yerr=[[y.point - y.low], [y.high - y.point]],
                fmt=marker, color=color, mfc=color if filled else "none", ms=7, capsize=3, lw=1,
                label=f"{c.record.backend_label} {c.precision}",
            )  # fmt: skip
            ax.annotate(f"b{c.record.batch}", (x.point, y.point), textcoords="offset points", xytext=(5, 4), fontsize=7)
        lows = [c.figures[xf].low for c in plotted if c.figures[xf].low > 0]
        highs = [c.figures[xf].high for c in plotted]
        log_x = bool(lows) and max(highs) / min(lows) > 20  # configurations 100x apart stay readable
        if log_x:
            plain_log_axis(ax.xaxis, ax, "x")  # 0.1, 1, 10 (mathtext is off for data text)
        front = sorted((c for c in sel.frontier if c in plotted), key=lambda c: c.figures[xf].point)
        if len(front) >= 2:
            ax.plot([c.figures[xf].point for c in front], [c.figures["top1"].point for c in front], "k--", lw=1, label="frontier")
        if sel.recommended is not None and sel.recommended in plotted:
            r = sel.recommended
            ax.plot([r.figures[xf].point], [r.figures["top1"].point], "o", ms=18, mfc="none", mec="red", mew=2, label="selected")
        for k in sel.constraints:
            if k.figure not in (xf, "top1"):
                continue
            limit = k.bound if not k.relative else _relative_limit(sel, k)
            if limit is None:
                continue
            if k.figure == xf:
                lo, hi = (limit, ax.get_xlim()[1]) if k.upper else (ax.get_xlim()[0], limit)
                ax.axvspan(lo, hi, color="grey", alpha=0.15, lw=0)
            else:
                lo, hi = (ax.get_ylim()[0], limit) if not k.upper else (limit, ax.get_ylim()[1])
                ax.axhspan(lo, hi, color="grey", alpha=0.15, lw=0)
        ax.set_xlabel(f"{xf} ({'images/s' if xf == 'throughput' else 'ms per call, median'}), interval bars"
                      + (", log scale" if log_x else ""))  # fmt: skip
        ax.set_ylabel("top-1 (%), Wilson 95% where measured")
        ax.set_title("Configurations: filled = feasible, hollow = not; grey = outside a constraint")
        handles, labels = ax.get_legend_handles_labels()
        seen: dict[str, object] = {}
        for h, lab in zip(handles, labels):
            seen.setdefault(lab, h)
        ax.legend(list(seen.values()), list(seen.keys()), fontsize=7, loc="best")
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
    caption = f"{xf} against top-1; " + (f"not drawn (no {xf} or top-1): {', '.join(skipped)}" if skipped else "every configuration drawn")
    return buf.getvalue(), caption


def _relative_limit(sel: Selection, k) -> float | None:
    """The bound of a relative constraint when every drawn configuration shares one model."""
    models = {v.config.model for v in sel.verdicts}
    if len(models) != 1:
        return None
    ref = reference_value(next(iter(sel.verdicts)).config, [v.config for v in sel.verdicts], k.figure)
    return k.limit(ref)


def _rc():
    return matplotlib.rc_context({"font.size": 9, "axes.grid": True, "grid.alpha": 0.3, **MPL_RC})
