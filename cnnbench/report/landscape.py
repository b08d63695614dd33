"""The landscape chart: top-1 accuracy against compute for every torchvision classifier.

The course's slide (Canziani, Paszke and Culurciello, "An Analysis of Deep Neural Network Models
for Practical Applications", 2016: top-1 against operations, marker size by parameters) is the
first thing a report reader looks for. Left panel: every torchvision classifier's *published*
ImageNet-1K top-1 (its DEFAULT weights) against GMACs per image, marker area proportional to the
parameter count, colour by family, all from the offline metadata (`cnnbench.models.published`;
nothing is imported from torch). The models this report measured are highlighted (a black ring
and their name) and, where a measured top-1 exists, it is drawn on top with its own marker (a
star) joined to the published point. Right panel(s), one per environment: the measured models
again, published top-1 against *measured* latency (the model's reference configuration: eager,
fp32, its smallest batch), the same markers.

`landscape_plan` is pure; `draw_landscape` imports matplotlib. Text that comes from data (model
names, environment labels) is drawn with `parse_math=False`, so a `$` in it is never mathtext.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from cnnbench.models.published import PUBLISHED, Published
from cnnbench.report.model import ReportData, reference_row
from cnnbench.report.charts import nice_sizes, plain_log_axis

__all__ = ["LandscapePoint", "landscape_plan", "draw_landscape", "LANDMARKS", "NAME", "TITLE", "CAPTION"]

NAME = "landscape"
TITLE = "The landscape: published top-1 vs GMACs per image (torchvision), and vs measured latency"
CAPTION = (
    "Left: every torchvision classifier's published ImageNet-1K val top-1 (DEFAULT weights; torchvision's "
    "metadata, not measured here) against GMACs per image (log scale); marker area is proportional to the "
    "parameter count, colour gives the family. Models measured in this report have a black ring and their "
    "name; a star is a top-1 measured here (on the dataset named in the legend), joined to the published "
    "point. Right: the measured models' published (circle) and measured (star) top-1 against the latency "
    "measured here at their reference configuration (eager, fp32, smallest batch), one panel per environment."
)
# Labelled even when not measured: the course's architectures, so the cloud has landmarks.
LANDMARKS = frozenset({
    "alexnet", "vgg16", "googlenet", "inception_v3", "resnet18", "resnet50", "resnet152", "densenet121",
    "squeezenet1_1", "mobilenet_v2", "efficientnet_b0", "convnext_tiny", "vit_b_16",
})  # fmt: skip
_FAMILY_COLOURS = {
    "AlexNet": "#7f7f7f", "VGG": "#8c564b", "GoogLeNet/Inception": "#9467bd", "ResNet": "#d62728",
    "ResNeXt / Wide ResNet": "#ff9896", "DenseNet": "#2ca02c", "SqueezeNet": "#bcbd22",
    "MobileNet / MnasNet": "#17becf", "ShuffleNet": "#aec7e8", "EfficientNet": "#ff7f0e",
    "RegNet": "#1f77b4", "ConvNeXt": "#e377c2", "Vision Transformer": "#393b79",
}  # fmt: skip
_OTHER_COLOUR = "#c7c7c7"
_MAX_AREA, _MIN_AREA = 900.0, 6.0
_MIN_MEASURED_AREA = 40.0  # a measured model's ring stays visible however small the model


@dataclass(frozen=True)
class LandscapePoint:
    pub: Published
    measured_here: bool  # a valid case of this model is in the report
    measured_top1: float | None = None  # a top-1 measured in this report, if any
    measured_dataset: str | None = None
    latency_ms: dict[str, tuple[float, str]] | None = None  # env fingerprint -> (ms, configuration)


def landscape_plan(data: ReportData) -> list[LandscapePoint]:
    """Every published torchvision classifier, with what this report measured of it."""
    points = []
    for name, pub in sorted(PUBLISHED.items(), key=lambda kv: kv[1].gmacs):
        rows = [r for r in data.rows if r.model == name and r.valid and not r.is_train]
        if not rows:
            points.append(LandscapePoint(pub, False))
            continue
        measured = next(
            (m.measured for (env, model), m in sorted(data.models.items()) if model == name and m.measured), None
        )
        latency: dict[str, tuple[float, str]] = {}
        for env in data.envs:
            ref = reference_row([r for r in rows if r.env == env.fingerprint])
            if ref is not None and ref.median_ms:
                latency[env.fingerprint] = (ref.median_ms, f"{ref.backend} {ref.precision} b{ref.batch}")
        points.append(
            LandscapePoint(
                pub, True,
                measured_top1=measured.top1 if measured else None,
                measured_dataset=measured.dataset if measured else None,
                latency_ms=latency,
            )
        )  # fmt: skip
    return points


def _area(params: int, biggest: int) -> float:
    return max(_MIN_AREA, _MAX_AREA * params / biggest)


def draw_landscape(data: ReportData, spec: Any):
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    points = landscape_plan(data)
    measured = [p for p in points if p.measured_here]
    envs = [e for e in data.envs if any(p.latency_ms and e.fingerprint in p.latency_ms for p in measured)]
    families = sorted({p.pub.family for p in points})
    colour = {f: _FAMILY_COLOURS.get(f, _OTHER_COLOUR) for f in families}
    biggest = max(p.pub.params for p in points)
    n = 1 + len(envs)
    fig = Figure(figsize=(9.5 + 5.0 * len(envs), 6.4), layout="constrained")
    axes = fig.subplots(1, n, squeeze=False, width_ratios=[1.9] + [1.0] * len(envs))[0]

    def scatter(ax, x: float, p: LandscapePoint, *, label: bool) -> None:
        c = colour[p.pub.family]
        area = _area(p.pub.params, biggest)
        if p.measured_here:
            area = max(area, _MIN_MEASURED_AREA)
        ax.scatter([x], [p.pub.top1], s=area, color=c, alpha=0.45 if not p.measured_here else 0.75,
                   edgecolors="black" if p.measured_here else c, linewidths=1.8 if p.measured_here else 0.6,
                   zorder=3 if p.measured_here else 2)  # fmt: skip
        if p.measured_top1 is not None:
            ax.plot([x, x], [p.pub.top1, p.measured_top1], color="black", lw=0.8, ls=":", zorder=4)
            ax.scatter([x], [p.measured_top1], s=110, marker="*", color="black", edgecolors="white", linewidths=0.6,
                       zorder=5)  # fmt: skip
        if label:
            r = math.sqrt(area) / 2.0
            ax.annotate(p.pub.model, (x, p.pub.top1), xytext=(0.72 * r + 2, 0.72 * r + 1), textcoords="offset points",
                        fontsize=8 if p.measured_here else 7, fontweight="bold" if p.measured_here else "normal",
                        color="black" if p.measured_here else "0.3", parse_math=False, zorder=6)  # fmt: skip

    left = axes[0]
    for p in points:
        scatter(left, p.pub.gmacs, p, label=p.measured_here or p.pub.model in LANDMARKS)
    plain_log_axis(left.xaxis, left, "x")
    left.set_xlabel("GMACs per image (multiply-accumulates; FLOPs = 2 × MACs), published")
    left.set_ylabel("top-1 accuracy (%)")
    left.set_title("published: torchvision, ImageNet-1K val", parse_math=False)
    tops = [p.pub.top1 for p in points] + [p.measured_top1 for p in points if p.measured_top1 is not None]
    left.set_ylim(min(tops) - 3, max(tops) + 3)
    xs = [p.pub.gmacs for p in points]
    left.set_xlim(min(xs) / 1.6, max(xs) * 1.6)

    for ax, env in zip(axes[1:], envs):
        here = [p for p in measured if p.latency_ms and env.fingerprint in p.latency_ms]
        for p in here:
            scatter(ax, p.latency_ms[env.fingerprint][0], p, label=True)  # type: ignore[index]
        plain_log_axis(ax.xaxis, ax, "x")
        lat = [p.latency_ms[env.fingerprint][0] for p in here]  # type: ignore[index]
        ax.set_xlim(min(lat) / 2.0, max(lat) * 2.5)
        ys = [p.pub.top1 for p in here] + [p.measured_top1 for p in here if p.measured_top1 is not None]
        ax.set_ylim(min(ys) - 3, max(ys) + 3)
        configs = sorted({p.latency_ms[env.fingerprint][1] for p in here})  # type: ignore[index]
        ax.set_xlabel(f"measured latency per call (ms), {', '.join(configs) if len(configs) <= 2 else 'eager fp32, smallest batch'}",
                      parse_math=False)  # fmt: skip
        ax.set_ylabel("top-1 accuracy (%)")
        ax.set_title(f"measured here — {env.label}" if len(data.envs) > 1 else "measured here", parse_math=False)

    handles = [Line2D([], [], ls="", marker="o", ms=7, color=colour[f], alpha=0.7, label=f) for f in families]
    handles.append(Line2D([], [], ls="", marker="o", ms=7, markerfacecolor="none", markeredgecolor="black",
                          markeredgewidth=1.8, label="measured in this report"))  # fmt: skip
    datasets = sorted({p.measured_dataset for p in points if p.measured_dataset})
    if datasets:
        handles.append(Line2D([], [], ls="", marker="*", ms=11, color="black",
                              label=f"top-1 measured here ({', '.join(datasets)})"))  # fmt: skip
    for size in nice_sizes(min(p.pub.params for p in points), biggest):
        handles.append(Line2D([], [], ls="", marker="o", ms=math.sqrt(_area(int(size), biggest)), markerfacecolor="none",
                              markeredgecolor="0.4", label=f"{size / 1e6:g} M params"))  # fmt: skip
    legend = fig.legend(handles=handles, loc="outside right upper", fontsize=8, frameon=False, labelspacing=1.1)
    for text in legend.get_texts():
        text.set_parse_math(False)
    fig.suptitle(spec.title, fontsize=11, parse_math=False)
    return fig

