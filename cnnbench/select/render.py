"""Text and JSON of a `Selection` (computed in `cnnbench.select.frontier`); no decisions here."""

from __future__ import annotations

from typing import Any

from cnnbench.select.figures import Config, Value, fmt_figure as _x
from cnnbench.select.frontier import Selection

__all__ = ["fmt_value", "render_text", "to_json"]


def fmt_value(figure: str, v: Value | None) -> str:
    if v is None:
        return "unknown"
    if v.low == v.high:
        return _x(figure, v.point)
    return f"{_x(figure, v.point)} [{_x(figure, v.low)}, {_x(figure, v.high)}]"


def _figures(c: Config, names: list[str]) -> str:
    def one(n: str) -> str:
        v = c.figures.get(n)
        label = " (published, not measured)" if v is not None and v.how.startswith("published") else ""
        return f"{n} {fmt_value(n, v)}{label}"

    return ", ".join(one(n) for n in names)


def render_text(sel: Selection) -> list[str]:
    """The lines `bench.py select` prints."""
    names = list(dict.fromkeys([o.figure for o in sel.objectives] + [k.figure for k in sel.constraints]))
    out = [
        "constraints: " + (", ".join(k.text for k in sel.constraints) or "none"),
        "objectives: " + ", ".join(o.figure + (" (higher is better)" if o.higher_is_better else " (lower is better)") for o in sel.objectives),
        "intervals: latency/throughput from the between-process interval of the median where a case has >= 2 "
        "processes, else its own sample interval; each figure says which. A beats B only when intervals separate.",
        "",
        f"feasible ({len(sel.feasible)} of {len(sel.verdicts)}):",
    ]
    for v in sel.verdicts:
        if v.status == "feasible":
            flags = [c.constraint.text + " borderline (interval straddles the bound)" for c in v.checks if c.borderline]
            note = f"  ! {'; '.join(flags)}" if flags else ""
            out.append(f"  {v.config.label}: {_figures(v.config, names)}{note}")
    unknown = [v for v in sel.verdicts if v.status == "unknown"]
    if unknown:
        out.append(f"unknown ({len(unknown)}: a constrained figure is missing, so not counted feasible):")
        for v in unknown:
            out.append(f"  {v.config.label}: " + "; ".join(c.why for c in v.checks if c.status == "unknown"))
    infeasible = [v for v in sel.verdicts if v.status == "infeasible"]
    if infeasible:
        out.append(f"infeasible ({len(infeasible)}):")
        for v in infeasible:
            out.append(f"  {v.config.label}: " + "; ".join(c.why for c in v.failed()))
    out.append("")
    out.append(f"Pareto frontier over {', '.join(o.figure for o in sel.objectives)} ({len(sel.frontier)}):")
    for c in sel.frontier:
        tie = sel.ties.get(c.label)
        out.append(f"  {c.label}: {_figures(c, [o.figure for o in sel.objectives])}" + (f"  (tie with {', '.join(tie)})" if tie else ""))
    for label, by in sel.dominated_by.items():
        out.append(f"  dominated: {label} (by {by}, intervals separate)")
    out.append("")
    if sel.recommended:
        out.append(f"recommended: {sel.recommended.label}")
        out.append(f"  why: {sel.reason}")
    else:
        out.append(f"recommended: none ({sel.reason})")
    if sel.misses:
        out.append("nearest misses (would have won without a constraint):")
        for m in sel.misses:
            out.append(f"  {m.config.label} (winner without {m.without}): " + "; ".join(c.why for c in m.checks))
    if sel.left_out or sel.missing_objective:
        out.append("left out:")
        for label, why in [*sel.left_out, *sel.missing_objective]:
            out.append(f"  {label}: {why}")
    return out


def _config(c: Config) -> dict[str, Any]:
    s = c.record.spec
    return {
        "label": c.label, "key": c.record.key, "source": c.source, "model": s.model, "backend": c.record.backend_label,
        "precision": s.precision, "batch": c.record.batch, "figures": {k: v.to_dict() for k, v in c.figures.items()},
        "unreliable": c.unreliable, "notes": list(c.notes),
    }  # fmt: skip


def to_json(sel: Selection) -> dict[str, Any]:
    return {
        "constraints": [k.to_dict() for k in sel.constraints],
        "objectives": [o.figure for o in sel.objectives],
        "configurations": [{**_config(v.config), "status": v.status, "checks": [c.to_dict() for c in v.checks]} for v in sel.verdicts],
        "feasible": [c.label for c in sel.feasible],
        "frontier": [{"label": c.label, "ties": list(sel.ties.get(c.label, ()))} for c in sel.frontier],
        "dominated_by": dict(sel.dominated_by),
        "recommended": sel.recommended.label if sel.recommended else None,
        "reason": sel.reason,
        "tied_best": [c.label for c in sel.tied_best],
        "nearest_misses": [{"label": m.config.label, "without": m.without, "checks": [c.to_dict() for c in m.checks]} for m in sel.misses],
        "left_out": [{"label": a, "why": b} for a, b in [*sel.left_out, *sel.missing_objective]],
    }
