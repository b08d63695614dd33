"""How a change of one memory figure is judged and shown in comparisons. Pure: no torch.

Memory has one figure per case (no distribution), so its verdict needs two thresholds, both
required: the relative one (the suite's `thresholds.memory`, default 10%) and an absolute one
(`ABSOLUTE_THRESHOLD_BYTES`: peak RSS moves in allocator-arena steps of megabytes, CUDA allocated
bytes in allocator blocks), so a few kilobytes over a tiny baseline never regress a case.

A percentage of a tiny baseline means nothing: a case whose peak RSS growth over its post-load
baseline is 4 KiB shows +56300% for 2.2 MiB more. Below `RELATIVE_FLOOR_BYTES` (1 MiB) of
baseline, the change is shown as an absolute amount (KiB/MiB), never as a percentage.
"""

from __future__ import annotations

from cnnbench.core.units import fmt_bytes, fmt_change

__all__ = ["RELATIVE_FLOOR_BYTES", "ABSOLUTE_THRESHOLD_BYTES", "fmt_memory_change", "memory_kind"]

# Baselines below this are shown as absolute changes only (a percentage of them is noise).
RELATIVE_FLOOR_BYTES = 2**20
# A memory regression (or improvement) must also move the figure by more than this many bytes.
ABSOLUTE_THRESHOLD_BYTES = {"cuda_peak_allocated_bytes": 2**20, "peak_rss_delta_bytes": 8 * 2**20}


def memory_kind(metric: str) -> str:
    return "CUDA" if metric.startswith("cuda") else "RSS"


def fmt_memory_change(metric: str, base: float, current: float, *, ratio: float | None) -> str:
    """The change as shown: a percentage when the baseline is at least RELATIVE_FLOOR_BYTES,
    else the absolute change ("+2.2 MiB"), never a percentage."""
    if ratio is None or base < RELATIVE_FLOOR_BYTES:
        return fmt_bytes(current - base, sign=True)
    return fmt_change(ratio)
