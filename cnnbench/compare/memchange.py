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

__all__ = ["RELATIVE_FLOOR_BYTES", "ABSOLUTE_THRESHOLD_BYTES", "fmt_bytes", "fmt_memory_change", "memory_kind"]

# Baselines below this are shown as absolute changes only (a percentage of them is noise).
RELATIVE_FLOOR_BYTES = 2**20
# A memory regression (or improvement) must also move the figure by more than this many bytes.
ABSOLUTE_THRESHOLD_BYTES = {"cuda_peak_allocated_bytes": 2**20, "peak_rss_delta_bytes": 8 * 2**20}


def memory_kind(metric: str) -> str:
    return "CUDA" if metric.startswith("cuda") else "RSS"


def fmt_bytes(n: float, *, sign: bool = False) -> str:
    """Bytes in B, KiB, MiB or GiB (binary units), one decimal; `sign` adds +/-."""
    prefix = ("+" if n > 0 else "-" if n < 0 else "±") if sign else ("-" if n < 0 else "")
    a = abs(n)
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if a >= size:
            return f"{prefix}{a / size:.1f} {unit}"
    return f"{prefix}{a:.0f} B"


def fmt_memory_change(metric: str, base: float, current: float, *, ratio: float | None) -> str:
    """The change as shown: a percentage when the baseline is at least RELATIVE_FLOOR_BYTES,
    else the absolute change ("+2.2 MiB"), never a percentage."""
    if ratio is None or base < RELATIVE_FLOOR_BYTES:
        return fmt_bytes(current - base, sign=True)
    return f"{(ratio - 1) * 100:+.1f}%"
