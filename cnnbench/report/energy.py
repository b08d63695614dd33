"""The report's energy figures: a column in the detail tables and an images-per-joule chart.

Both read the case's `energy` block (measured by cnnbench.measure.energy) of valid rows only; a row whose energy is
unavailable shows a dash (its reason is in the results file), an unreliable one (an NVML window
under 1 s) a trailing "~".
"""

from __future__ import annotations

from typing import Any

from cnnbench.core.units import DASH, fmt_joules, fmt_rate
from cnnbench.results.blocks import energy_summary
from cnnbench.report.charts import PlotSpec, per_model_chart

__all__ = ["ENERGY_HEADER", "WIDE_COLUMNS", "WIDE_CAPTION", "cell", "draw", "energy_text", "has_energy", "images_per_j", "plot_specs", "wide_cells"]

ENERGY_HEADER = "Energy/img @ W (images/J)"


def _block(row: Any) -> dict[str, Any] | None:
    return energy_summary({"energy": row.energy}) if row.valid and isinstance(row.energy, dict) else None


def has_energy(rows: list[Any]) -> bool:
    return any(_block(r) is not None for r in rows)


def energy_text(row: Any) -> str:
    e = _block(row)
    if e is None:
        return DASH
    return f"{cell({'energy': e})} ({fmt_rate(e['images_per_j'])})"


def images_per_j(row: Any) -> float | None:
    e = _block(row)
    return float(e["images_per_j"]) if e is not None else None


def plot_specs(env: Any, valid: list[Any], sfx: str, where: str) -> list[Any]:
    if not has_energy(valid):
        return []
    methods = sorted({str(_block(r)["method"]) for r in valid if _block(r) is not None})  # type: ignore[index]
    return [
        PlotSpec(
            f"energy{sfx}", "energy", env.fingerprint, f"Images per joule vs batch size{where}",
            "Images computed per joule of energy over exactly the timed window (warmup and first call "
            f"excluded), a line per backend; meter: {', '.join(methods)} (GPU: whole board; CPU: RAPL "
            "package + DRAM, the whole socket). Higher is better.",
        )
    ]


def draw(data: Any, spec: Any):
    return per_model_chart(data, spec, value=images_per_j, ylabel="images / J", logy=True)


def cell(record: dict[str, Any]) -> str:
    """'0.123 J/img, 45.6 W' for a table cell; '~' marks an unreliable figure; reason-free '-'."""
    energy = energy_summary(record)
    if energy is None:
        return "-"
    text = f"{fmt_joules(energy['j_per_image'])}"
    if isinstance(energy.get("avg_w"), (int, float)):
        text += f" @ {energy['avg_w']:.1f} W"
    return text + ("" if energy.get("reliable", True) else " ~")


WIDE_COLUMNS = ("energy/img @ W", "images/J", "idle W")


WIDE_CAPTION = (
    "energy/img @ W = joules per image and average power over exactly the timed window (GPU: NVML, whole "
    "board; CPU: RAPL package + DRAM, whole socket), ~ = unreliable (NVML window < 1 s), idle W = measured "
    "before the window, - = unavailable (the reason is in the results file)"
)


def wide_cells(record: dict[str, Any]) -> list[str]:
    """The `--wide` table's energy cells of a case record (all '-' when unavailable)."""
    e = energy_summary(record)
    if e is None:
        return ["-"] * len(WIDE_COLUMNS)
    idle = e.get("idle_w")
    return [cell(record), fmt_rate(e['images_per_j']), f"{idle:.1f}" if isinstance(idle, (int, float)) else "-"]
