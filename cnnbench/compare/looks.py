"""One look of a sequential A/B: `compare`'s verdict on the pairs so far, at the level the plan
(`cnnbench.stats.sequential`) gives that look, and the A/B summary's "Sequential stopping" table.

The plan is pure statistics (how much error each look may spend); a look asks `compare` for a
verdict, so it lives with the verdicts, above the statistics.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from cnnbench.stats.sequential import RULE, SETTLED, STOPPED_REASONS
from cnnbench import compare

__all__ = ["look", "look_values", "figures_record", "settled", "render_markdown"]


def look(
    base_record: Mapping[str, Any],
    current_record: Mapping[str, Any],
    *,
    level: float,
    equivalence_level: float | None = None,
    thresholds: Mapping[str, Any] | None = None,
    statistic: str | None = None,
    base_env: Mapping[str, Any] | None = None,
    current_env: Mapping[str, Any] | None = None,
) -> Any:
    """`compare`'s verdict row for one case at one look: the rank test at `level`, the
    `unchanged` interval at `equivalence_level` (default: `level`); `Plan.look_at` gives both."""

    eq = level if equivalence_level is None else equivalence_level
    for what, value in (("level", level), ("equivalence level", eq)):
        if not 0 < value < 0.5:
            raise ValueError(f"a look's {what} must be in (0, 0.5), got {value!r} (Plan.look_at: None is no look)")
    key = str(current_record.get("key"))
    comp = compare.compare_results(
        {"environment": dict(base_env or {}), "cases": [dict(base_record)]},
        {"environment": dict(current_env or {}), "cases": [dict(current_record)]},
        alpha=level,
        thresholds=thresholds,
        statistic=statistic or compare.DEFAULT_STATISTIC,
        equivalence_alpha_by_key={key: eq},
    )
    return comp.rows[0]


def look_values(base: Sequence[float], current: Sequence[float], *, level: float, equivalence_level: float | None = None,
                thresholds: Mapping[str, Any] | None = None, key: str = "k") -> Any:  # fmt: skip
    """`look` on per-process figures given directly (simulations, tests): each figure becomes one
    process's figure, compared on the path `compare` takes for them (same test, same bootstrap)."""
    return look(figures_record(base, key=key), figures_record(current, key=key), level=level,
                equivalence_level=equivalence_level, thresholds=thresholds, statistic="median")  # fmt: skip


def figures_record(values: Sequence[float], *, key: str = "k") -> dict[str, Any]:
    """The smallest valid case record (`cnnbench.results.records`) holding one figure per process:
    what simulations and the validation benchmark hand to `compare`."""
    spec = {"model": key, "batch_size": 1, "input_size": [1, 8, 8], "device": "cpu", "precision": "fp32", "backend": "eager"}
    return {"key": key, "spec": spec, "status": "ok", "repeat_medians_ms": [float(v) for v in values]}


def settled(verdict: str) -> bool:
    return verdict in SETTLED


def render_markdown(ab: Mapping[str, Any]) -> list[str]:
    """Lines for the A/B summary: how many repeats each case used and why it stopped."""
    seq = ab.get("sequential") or {}
    cases = seq.get("cases") or {}
    if not cases:
        return []
    plan_info = seq.get("plan") or {}
    used = sum(2 * int(c.get("repeats") or 0) for c in cases.values())
    planned = 2 * int(plan_info.get("max_repeats") or 0) * len(cases)
    early = sum(c.get("stopped") == "settled" and c.get("repeats", 0) < plan_info.get("max_repeats", 0) for c in cases.values())
    eq_levels = plan_info.get("equivalence_levels") or {}
    levels = ", ".join(f"{n}: {c:.4g}" + (f"/{eq_levels[n]:.4g}" if n in eq_levels else "")
                       for n, c in (plan_info.get("levels") or {}).items())  # fmt: skip
    n_ext = sum(bool(c.get("extended")) for c in cases.values())
    lines = [
        "",
        (
            f"Sequential stopping ({plan_info.get('rule', RULE)}, overall alpha {plan_info.get('alpha')}; "
            f"nominal level per look, by pairs{' (rank test/unchanged interval)' if eq_levels else ''}: {levels}): "
            f"{early} of {len(cases)} case(s) stopped early; "
            f"{used} of {planned} planned worker processes ran"
            + (f" ({n_ext} case(s) whose processes split went past {plan_info.get('max_repeats')} repeats)." if n_ext else ".")
        ),
        "",
        "| Case | Repeats per side | Stopped | Why |",
        "|---|---:|---|---|",
    ]
    for key, c in cases.items():
        why = STOPPED_REASONS.get(c.get("stopped"), c.get("stopped") or "?")
        if c.get("verdict"):
            at = c.get("equivalence_level") if c["verdict"] == "unchanged" and c.get("equivalence_level") else c.get("level")
            why += f": {c['verdict']} at level {at or 0:.3g}"
        if c.get("extended"):
            ext = c["extended"]
            why += f" (went past {ext.get('from')} repeats, up to {ext.get('to')}: {ext.get('modes')})"
        lines.append(f"| `{key.replace('|', ' ')}` | {c.get('repeats')} | {c.get('stopped')} | {why} |")
    return lines
