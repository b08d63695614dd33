"""One formatter per unit, used by every view (the terminal table, the report, compare, history).

A figure is rounded only here, when it is rendered: records keep full precision. Each formatter
keeps what the most precise view used to show, so no view loses a digit by sharing it:

- milliseconds, rates, GMACs, GFLOP/s (`fmt_ms`, `fmt_rate`, `fmt_gmacs`, `fmt_gflops`): never
  fewer than three significant figures, one decimal from 100 on: 0.0152, 0.512, 1.50, 12.34,
  120.4, 1,234.5;
- bytes (`fmt_bytes`): binary units, B as an integer, KiB to TiB with two decimals: 500 B (never
  "0.5 KiB"), 4.00 KiB, 44.62 MiB, 1.50 GiB; `sign=True` for a change (+2.20 MiB);
- percentages (`fmt_pct`, of a figure already in percent; `fmt_change`, of a ratio): two decimals,
  69.75%, +5.23%.
"""

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
    "fmt_change",
    "fmt_gflops",
    "fmt_duration",
    "fmt_joules",
]

DASH = "—"  # no value (not measured, not applicable)


def _figure(x: float) -> str:
    """At least three significant figures, without scientific notation down to 1e-4."""
    ax = abs(x)
    if ax >= 100:
        return f"{x:,.1f}"
    if ax >= 1:
        return f"{x:.2f}"
    if ax == 0:
        return "0"
    return f"{x:#.3g}"  # 0.500, 0.0152, 0.000417; scientific only below 1e-4


def fmt_ms(x: float | None) -> str:
    """Milliseconds (no unit: the caller says "ms" once, in a header or after the figure)."""
    return DASH if x is None else _figure(x)


def fmt_latency(median: float | None, iqr: float | None) -> str:
    """`median ± IQR` in ms (the IQR is the spread p75 - p25, not a symmetric error)."""
    if median is None:
        return DASH
    return fmt_ms(median) + ("" if iqr is None else f" ± {fmt_ms(iqr)}")


def fmt_rate(x: float | None) -> str:
    """Images (samples) per second, images per joule."""
    return DASH if x is None else _figure(x)


def fmt_speedup(x: float | None) -> str:
    """A ratio of two latencies: 1.25×."""
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
    return DASH if x is None else _figure(x)


def fmt_macs(gmacs: float | None) -> str:
    """MACs with a unit that reads for any model: 1.82 G, 421.0 M, 0.420 M (LeNet), 655.4 k."""
    if gmacs is None:
        return DASH
    n = float(gmacs) * 1e9
    for scale, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= scale:
            return f"{_figure(n / scale)} {unit}"
    return f"{n:.0f}"


_BYTE_UNITS = (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10))


def fmt_bytes(n: float | None, *, sign: bool = False) -> str:
    """Bytes in binary units: 500 B, 4.00 KiB, 44.62 MiB, 1.50 GiB; `sign` adds + or - (± for no
    change), for a change of memory."""
    if n is None:
        return DASH
    n = float(n)
    prefix = ("+" if n > 0 else "-" if n < 0 else "±") if sign else ("-" if n < 0 else "")
    a = abs(n)
    for unit, size in _BYTE_UNITS:
        if a >= size:
            return f"{prefix}{a / size:.2f} {unit}"
    return f"{prefix}{a:.0f} B"


def fmt_pct(x: float | None, *, sign: bool = False) -> str:
    """A figure already in percent (top-1 accuracy, % of peak, a CV times 100): 69.75%; `sign`
    adds + or - (a change)."""
    if x is None:
        return DASH
    return f"{x:+.2f}%" if sign else f"{x:.2f}%"


def fmt_change(ratio: float | None) -> str:
    """A ratio (current / base) as a signed percent change: 1.0523 -> '+5.23%'."""
    return DASH if ratio is None else fmt_pct((ratio - 1.0) * 100.0, sign=True)


def fmt_gflops(x: float | None) -> str:
    return DASH if x is None else _figure(x)


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


def fmt_joules(j: float | None) -> str:
    """Energy: 1.25 J, 50.0 mJ, 3.2 µJ."""
    if j is None:
        return DASH
    if j >= 1:
        return f"{j:.2f} J"
    if j >= 1e-3:
        return f"{j * 1e3:.1f} mJ"
    return f"{j * 1e6:.1f} µJ"
