"""Rounding for display: the only place numbers become text (records keep full precision)."""

from __future__ import annotations

__all__ = [
    "DASH",
    "fmt_ms",
    "fmt_latency",
    "fmt_rate",
    "fmt_speedup",
    "fmt_count",
    "fmt_gmacs",
    "fmt_macs",
    "fmt_bytes",
    "fmt_pct",
    "fmt_gflops",
    "fmt_duration",
]

DASH = "—"  # no value (not measured, not applicable)


def _sig(x: float) -> str:
    """Three significant figures without scientific notation for the ranges we show."""
    ax = abs(x)
    if ax >= 100:
        return f"{x:,.0f}"
    if ax >= 10:
        return f"{x:.1f}"
    if ax >= 1:
        return f"{x:.2f}"
    if ax >= 0.01 or ax == 0:
        return f"{x:.3f}"
    return f"{x:.3g}"  # 0.000417; scientific only below 1e-4


def fmt_ms(x: float | None) -> str:
    return DASH if x is None else _sig(x)


def fmt_latency(median: float | None, iqr: float | None) -> str:
    """`median ± IQR` in ms (the IQR is the spread p75 - p25, not a symmetric error)."""
    if median is None:
        return DASH
    return fmt_ms(median) + ("" if iqr is None else f" ± {fmt_ms(iqr)}")


def fmt_rate(x: float | None) -> str:
    return DASH if x is None else _sig(x)


def fmt_speedup(x: float | None) -> str:
    return DASH if x is None else f"{x:.2f}×"


def fmt_count(n: float | None) -> str:
    """Parameters: 11.69 M, 61.7 k."""
    if n is None:
        return DASH
    n = float(n)
    if n >= 1e6:
        return f"{n / 1e6:.2f} M"
    if n >= 1e3:
        return f"{n / 1e3:.1f} k"
    return f"{n:.0f}"


def fmt_gmacs(x: float | None) -> str:
    return DASH if x is None else _sig(x)


def fmt_macs(gmacs: float | None) -> str:
    """MACs with a unit that reads for any model: 1.82 G, 421 M, 0.42 M (LeNet), 655 k."""
    if gmacs is None:
        return DASH
    n = float(gmacs) * 1e9
    for scale, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= scale:
            return f"{_sig(n / scale)} {unit}"
    return f"{n:.0f}"


def fmt_bytes(n: float | None) -> str:
    if n is None:
        return DASH
    mib = float(n) / 2**20
    if abs(mib) >= 1024:
        return f"{mib / 1024:.2f} GiB"
    if abs(mib) >= 1:
        return f"{mib:.1f} MiB"
    return f"{float(n) / 1024:.1f} KiB"


def fmt_pct(x: float | None, digits: int = 2) -> str:
    return DASH if x is None else f"{x:.{digits}f}%"


def fmt_gflops(x: float | None) -> str:
    return DASH if x is None else _sig(x)


def fmt_duration(seconds: float | None) -> str:
    """A duration a person reads (an epoch): 42.1 s, 7.3 min, 2.4 h, 1.6 d."""
    if seconds is None:
        return DASH
    if seconds < 90:
        return f"{seconds:.3g} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.3g} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.3g} h"
    return f"{seconds / 86400:.3g} d"
