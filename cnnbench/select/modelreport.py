"""The model report the course's "Reporting a model" slide asks for, for the selected configuration.

What is the model and the configuration, what were the alternatives and why was each rejected
(which constraint, or dominated by which), parameters, MACs, latency (p50/p99) and throughput
with their intervals, memory, accuracy (measured on which dataset and split, or published with
its source) and parity, training time per epoch when a training case was measured, the hardware
and software, and what was not measured (said, never omitted). Markdown, a self-contained HTML
page and the frontier chart (PNG), written under one directory through `core.safeio`.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any, Mapping, Sequence

from cnnbench.core.inert import md_text
from cnnbench.core.safeio import atomic_write
from cnnbench.core.units import fmt_duration, fmt_ms
from cnnbench.results.records import ResultsFile
from cnnbench.select.chart import frontier_png
from cnnbench.select.figures import Config, training_cases
from cnnbench.select.frontier import Selection
from cnnbench.select.render import fmt_value

__all__ = ["report_lines", "write_report"]

_ENV = (
    ("CPU", "cpu_model"), ("cores", "cpu_count"), ("GPU", "gpu_name"), ("OS", "os"), ("Python", "python"),
    ("torch", "torch"), ("torchvision", "torchvision"), ("onnxruntime", "onnxruntime"), ("host", "hostname"), ("git", "git"),
)  # fmt: skip


def _v(figure: str, value: Any) -> str:
    return md_text(fmt_value(figure, value))


def _environment(env: Mapping[str, Any]) -> str:
    parts = []
    for label, name in _ENV:
        value = env.get(name)
        if isinstance(value, Mapping):  # git: {"commit", "dirty", ...}
            value = str(value.get("commit") or "")[:12] + (" (dirty)" if value.get("dirty") else "")
        if value not in (None, ""):
            parts.append(f"{label} {value}")
    return ", ".join(parts) or "not recorded"


def _why_rejected(sel: Selection, c: Config) -> str:
    v = sel.verdict(c.label)
    if c is sel.recommended:
        return "selected"
    if c.unreliable:
        return f"unreliable timing: {c.unreliable}"
    if v.status == "infeasible":
        return "; ".join(k.why for k in v.failed())
    if v.status == "unknown":
        return "unknown: " + "; ".join(k.why for k in v.checks if k.status == "unknown")
    if c.label in sel.dominated_by:
        return f"dominated by {sel.dominated_by[c.label]} (intervals separate)"
    if c in sel.tied_best:
        return "tied with the selection (intervals overlap); not chosen by the tie rule only"
    if c in sel.frontier:
        return "on the frontier, but the selection is better on " + sel.objectives[0].figure + " beyond its interval"
    return "lacks an objective's figure"


def _accuracy_text(c: Config) -> str:
    top1 = c.figures.get("top1")
    if top1 is None:
        return "not measured" + (f" ({c.notes[0]})" if c.notes else "")
    acc = c.record.measured_accuracy
    text = f"top-1 {fmt_value('top1', top1)}, {top1.how}"
    if acc and isinstance(acc.get("dataset"), dict):
        ds = acc["dataset"]
        text += f"; split {ds.get('split', '?')}, {ds.get('size', acc.get('total', '?'))} images, source {ds.get('source', '?')}"
    if c.figures.get("top5"):
        text += f"; top-5 {fmt_value('top5', c.figures['top5'])}"
    return text


def _parity_text(c: Config) -> str:
    p = c.record.parity
    if p is None:
        return "not checked (eager fp32 is the reference)" if c.record.is_eager_baseline else "not recorded"
    agree = p.get("top1_agreement")
    text = ("ok" if p.get("ok") else "FAILED") + f": max abs err {p.get('max_abs_err')}"
    if isinstance(agree, (int, float)):
        text += f", top-1 agreement with fp32 eager {100 * float(agree):.1f}%"
        if agree < 0.99:
            text += " (low: check the accuracy before shipping)"
    return text


def _training_text(files: Sequence[ResultsFile], model: str) -> str:
    cases = training_cases(files, model)
    if not cases:
        return "not measured (no training case of this model in the results)"
    parts = []
    for r in cases:
        epochs = (r.train or {}).get("time_per_epoch") or {}
        per = [f"{name} {fmt_duration(float(e['seconds']))}" for name, e in epochs.items()
               if isinstance(e, Mapping) and isinstance(e.get("seconds"), (int, float))]  # fmt: skip
        text = f"{r.backend_label} {r.spec.precision} b{r.batch} on {r.spec.device}: {fmt_ms(r.median_ms)} ms per step"
        parts.append(text + (f", per epoch: {', '.join(per)}" if per else ""))
    return "; ".join(parts) + " (median step x steps per epoch, data loading excluded)"


def report_lines(sel: Selection, files: Sequence[ResultsFile], *, chart: str | None = "frontier.png") -> list[str]:
    """The Markdown of the model report."""
    out = ["# Model report", ""]
    out.append("Constraints: " + (", ".join(f"`{k.text}`" for k in sel.constraints) or "none")
               + "; objectives: " + ", ".join(o.figure for o in sel.objectives) + ". Rule: A beats B only when their "
               "intervals separate; overlapping configurations are ties (docs/select.md).")  # fmt: skip
    out.append("")
    c = sel.recommended
    if c is None:
        out += ["**No configuration is selected**: " + md_text(sel.reason), ""]
    else:
        r, f = c.record, c.figures
        env = c.environment
        not_measured = [n for n in ("p99", "top1", "memory", "size", "energy", "qps") if n not in f]
        out += [
            f"## Selected: {md_text(c.label)}", "",
            f"- **Why**: {md_text(sel.reason)}",
            f"- **Model and configuration**: {md_text(r.spec.model)}, backend {md_text(r.backend_label)}, precision "
            f"{md_text(r.spec.precision)}, batch {md_text(r.batch_label)}, {md_text(r.spec.device)}, {r.spec.threads} threads "
            f"(case key `{r.key}`, from {md_text(c.source)})",
            f"- **Parameters**: {_v('params', f.get('params'))}; **MACs per image**: {_v('macs', f.get('macs'))}",
            f"- **Latency**: p50 {_v('latency', f.get('latency'))} ({md_text(f['latency'].how if 'latency' in f else '')}); "
            f"p99 {_v('p99', f.get('p99'))}",
            f"- **Throughput**: {_v('throughput', f.get('throughput'))} at batch {r.batch}",
            f"- **Memory**: {_v('memory', f.get('memory'))}; **artefact**: {_v('size', f.get('size'))}",
            f"- **Accuracy**: {md_text(_accuracy_text(c))}",
            f"- **Parity**: {md_text(_parity_text(c))}",
            f"- **Training time**: {md_text(_training_text(files, r.spec.model))}",
            "- **Hardware and software**: " + md_text(_environment(env)),
            "- **Not measured**: " + (md_text(", ".join(not_measured)) if not_measured else "nothing the selection uses"),
            "",
        ]  # fmt: skip
    out += ["## Alternatives considered", "", "| Configuration | " + " | ".join(o.figure for o in sel.objectives) + " | Why not |",
            "|---|" + "---|" * len(sel.objectives) + "---|"]  # fmt: skip
    for v in sel.verdicts:
        cells = [md_text(fmt_value(o.figure, v.config.figures.get(o.figure))) for o in sel.objectives]
        out.append(f"| {md_text(v.config.label)} | " + " | ".join(cells) + f" | {md_text(_why_rejected(sel, v.config))} |")
    for label, why in sel.left_out:
        if not any(v.config.label == label for v in sel.verdicts):
            out.append(f"| {md_text(label)} | " + " | ".join("—" for _ in sel.objectives) + f" | {md_text(why)} |")
    out.append("")
    if sel.misses:
        out += ["Nearest misses (would have won without a constraint):", ""]
        out += [f"- {md_text(m.config.label)} (without `{m.without}`): " + md_text("; ".join(k.why for k in m.checks)) for m in sel.misses]
        out.append("")
    if chart:
        out += [f"![frontier]({chart})", ""]
    return out


def write_report(sel: Selection, files: Sequence[ResultsFile], directory: str) -> list[Path]:
    """Write select.md, select.html (the chart inlined) and frontier.png under `directory`."""
    out = Path(directory)
    png, caption = frontier_png(sel)
    lines = report_lines(sel, files)
    lines.insert(len(lines) - 1, f"*{md_text(caption)}*")
    md = "\n".join(lines) + "\n"
    paths = [out / "frontier.png", out / "select.md", out / "select.html"]
    atomic_write(paths[0], png)
    atomic_write(paths[1], md)
    atomic_write(paths[2], _html(lines, png, caption))
    return paths


def _html(lines: list[str], png: bytes, caption: str) -> str:
    """A plain page: each Markdown line as escaped text (a table as <pre>), the chart inlined."""
    body: list[str] = []
    for line in lines:
        if line.startswith("!["):
            data = base64.b64encode(png).decode("ascii")
            body.append(f'<figure><img alt="frontier" src="data:image/png;base64,{data}"><figcaption>{html.escape(caption)}</figcaption></figure>')
        elif line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            body.append(f"<h{level}>{html.escape(line.lstrip('# '))}</h{level}>")
        elif line.startswith("|"):
            body.append(f"<pre>{html.escape(line)}</pre>")
        elif line:
            body.append(f"<p>{html.escape(line)}</p>")
    return "<!doctype html><meta charset='utf-8'><title>Model report</title>\n" + "\n".join(body) + "\n"


