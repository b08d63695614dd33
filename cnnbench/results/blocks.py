"""The per-case blocks a record derives from its worker processes' own blocks.

Each process measures its own energy and device state over its timed window; the case record
keeps one block of each, combined here. Pure data in, data out: building a record needs these,
and they must not pull the meters (`cnnbench.measure`) into the results layer.
"""

from __future__ import annotations

import math
import statistics
from typing import Any

__all__ = ["combine_energy", "energy_summary", "combine_device_state"]


def combine_energy(blocks: list[Any]) -> dict[str, Any] | None:
    """One `energy` block for a case from its repeats' blocks: medians over available repeats."""
    blocks = [b for b in blocks if isinstance(b, dict)]
    if not blocks:
        return None
    ok = [b for b in blocks if b.get("available") and isinstance(b.get("j_per_image"), (int, float))]
    if not ok:
        return dict(blocks[0])
    if len(ok) == 1:
        return dict(ok[0])
    out = dict(ok[0])
    for name in ("j_per_image", "avg_w", "images_per_j", "idle_w", "above_idle_j_per_image", "joules", "window_s"):
        values = [b[name] for b in ok if isinstance(b.get(name), (int, float))]
        if values:
            out[name] = statistics.median(values)
    out["repeat_j_per_image"] = [b["j_per_image"] for b in ok]
    out["images"] = sum(int(b.get("images") or 0) for b in ok)
    out["reliable"] = all(b.get("reliable", True) for b in ok)
    if not out["reliable"]:
        out["unreliable_reason"] = next((b.get("unreliable_reason") for b in ok if b.get("unreliable_reason")), None)
    methods = {b.get("method") for b in ok}
    if len(methods) > 1:
        out["method"] = "mixed: " + ", ".join(sorted(str(m) for m in methods))
    return out


def energy_summary(record: dict[str, Any]) -> dict[str, Any] | None:
    """The available energy block of a case record (None when absent or unavailable)."""
    energy = record.get("energy") if isinstance(record, dict) else None
    if not isinstance(energy, dict) or not energy.get("available"):
        return None
    value = energy.get("j_per_image")
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or value <= 0:
        return None
    return energy


def combine_device_state(states: list[Any]) -> dict[str, Any] | None:
    """One `device_state` for a case from its repeats': the first repeat's readings, throttled
    if any repeat throttled (reasons and other processes of every repeat)."""
    states = [s for s in states if isinstance(s, dict)]
    if not states:
        return None
    out = dict(states[0])
    if len(states) > 1:
        reasons: list[str] = []
        procs: dict[Any, Any] = {}
        for s in states:
            reasons += [r for r in s.get("throttle_reasons") or () if r not in reasons]
            for p in s.get("other_gpu_processes") or ():
                procs.setdefault(p.get("pid"), p)
        if "throttled" in out:
            out["throttled"] = any(s.get("throttled") for s in states)
            out["throttle_reasons"] = reasons
            out["other_gpu_processes"] = list(procs.values())
        out["repeats"] = len(states)
    return out
