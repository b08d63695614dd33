"""The report's energy figures: a column in the detail tables and an images-per-joule chart.

Both read the case's `energy` block (cnnbench.measure.energy) of valid rows only; a row whose energy is
unavailable shows a dash (its reason is in the results file), an unreliable one (an NVML window
under 1 s) a trailing "~".
"""

from __future__ import annotations

from typing import Any

from cnnbench.measure import energy as _energy

__all__ = ["ENERGY_HEADER", "draw", "energy_text", "has_energy", "images_per_j", "plot_specs"]

ENERGY_HEADER = "Energy/img @ W (images/J)"


def _block(row: Any) -> dict[str, Any] | None:
    return _energy.summary({"energy": row.energy}) if row.valid and isinstance(row.energy, dict) else None


def has_energy(rows: list[Any]) -> bool:
    return any(_block(r) is not None for r in rows)


def energy_text(row: Any) -> str:
    e = _block(row)
    if e is None:
        return "—"
    return f"{_energy.cell({'energy': e})} ({e['images_per_j']:,.1f})"


def images_per_j(row: Any) -> float | None:
    e = _block(row)
    return float(e["images_per_j"]) if e is not None else None


def plot_specs(env: Any, valid: list[Any], sfx: str, where: str) -> list[Any]:
    from cnnbench.report.plots import PlotSpec

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
    from cnnbench.report.plots import _per_model_chart

    return _per_model_chart(data, spec, value=images_per_j, ylabel="images / J", logy=True)
