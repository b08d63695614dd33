"""Energy per image as its own check in a comparison: one figure per case, like memory."""

from __future__ import annotations

from typing import Any

from cnnbench.core.units import fmt_change, fmt_joules
from cnnbench.results.blocks import energy_summary

__all__ = ["energy_verdict", "energy_note"]




def energy_verdict(b: dict[str, Any], c: dict[str, Any], threshold: Any) -> dict[str, Any]:
    """J/image current vs base as its own check (one figure per case, like memory).

    Both sides need an available figure from the same method; an unreliable side is compared
    but never gates. Returns the `energy_*` fields of a `CaseComparison` (empty: no figure).
    """
    eb, ec = energy_summary(b), energy_summary(c)
    if eb is None or ec is None:
        return {}
    out: dict[str, Any] = {"base_j_per_image": eb["j_per_image"], "current_j_per_image": ec["j_per_image"]}
    if eb.get("method") != ec.get("method"):
        out["energy_verdict"] = "incomparable"
        return out
    ratio = ec["j_per_image"] / eb["j_per_image"]
    out["energy_ratio"] = ratio
    reliable = eb.get("reliable", True) and ec.get("reliable", True)
    if threshold.exceeded(ratio):
        out["energy_verdict"] = "regressed" if reliable else "unreliable"
    elif threshold.undercut(ratio):
        out["energy_verdict"] = "improved" if reliable else "unreliable"
    else:
        out["energy_verdict"] = "unchanged"
    return out


def energy_note(fields: dict[str, Any], threshold: Any) -> str:
    """The words `compare` appends to a case's reason about its J/image ('' without figures)."""
    verdict, ratio = fields.get("energy_verdict"), fields.get("energy_ratio")
    if verdict is None:
        return ""
    if verdict == "incomparable":
        return "; energy not compared (different meters)"
    change = fmt_change(ratio)
    shown = f"{fmt_joules(fields['base_j_per_image'])} -> {fmt_joules(fields['current_j_per_image'])}"
    if verdict == "regressed":
        return f"; energy/img {change} ({shown}) > +{threshold}"
    if verdict == "unreliable":
        return f"; energy/img {change} ({shown}), beyond ±{threshold} but unreliable (NVML window < 1 s): not gating"
    return f"; energy/img {change}"
