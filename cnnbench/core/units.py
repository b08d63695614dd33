"""One formatter per unit, used by every view (the terminal table, the report, compare, history).

A figure is rounded only here, when it is rendered: records keep full precision.
"""

from __future__ import annotations

__all__ = ["fmt_joules", "fmt_ms_brief"]


def fmt_joules(j: float) -> str:
    if j >= 1:
        return f"{j:.2f} J"
    if j >= 1e-3:
        return f"{j * 1e3:.1f} mJ"
    return f"{j * 1e6:.1f} µJ"


def fmt_ms_brief(x: float) -> str:
    return f"{x:.3g}" if x < 100 else f"{x:.0f}"
