"""The table `bench.py accuracy` prints: each backend's measured accuracy beside eager's."""

from __future__ import annotations

import os
from typing import Any
from cnnbench.accuracy import TOLERANCE_FRACTION, accuracy_difference, is_torchvision_weights_name

__all__ = ["table_rows", "render_table", "published_lines", "title"]


def title(spec: Any, runs: list[tuple[Any, dict[str, Any]]]) -> str:
    acc = next((r["accuracy"] for _, r in runs if r.get("accuracy")), None)
    title = f"measured accuracy: {spec.model}"
    if acc:
        ds = acc["dataset"]
        title += f" on {ds.get('name', ds.get('kind'))} ({acc['total']:,} images)"
        if acc.get("weights"):
            title += f", weights {os.path.basename(acc['weights']['name'])}"
    return title


def table_rows(runs: list[tuple[Any, dict[str, Any]]]) -> list[dict[str, Any]]:
    """One plain row per backend: its measured accuracy and how it compares with eager's."""

    eager = next((r.get("accuracy") for s, r in runs if s.backend == "eager" and r.get("accuracy")), None)
    rows = []
    for spec, run in runs:
        acc = run.get("accuracy") if run.get("status") == "ok" else None
        delta = flag = None
        if acc and eager and spec.backend != "eager":
            if acc["total"] == eager["total"]:
                delta = acc["correct1"] - eager["correct1"]
            flag = accuracy_difference(acc, eager)
        rows.append(
            {
                "backend": spec.backend,
                "status": run.get("status"),
                "top1": acc["top1"] if acc else None,
                "top5": acc["top5"] if acc else None,
                "correct1": acc["correct1"] if acc else None,
                "correct5": acc["correct5"] if acc else None,
                "total": acc["total"] if acc else None,
                "skipped": acc["skipped"] if acc else None,
                "delta_vs_eager": delta,
                "flag": flag,
                "error": run.get("error"),
            }
        )
    return rows


def render_table(rows: list[dict[str, Any]], *, title: str):
    from rich.table import Table

    caption = (
        "top-1/top-5 in percent, measured on the images in the title; Δ = correct top-1 images vs eager; "
        f"⚠ = a correct count (top-1 or top-5) differs from eager's by more than max(1 image, "
        f"{TOLERANCE_FRACTION:.1%} of the images)"
    )
    columns = ("backend", "status", "top-1 %", "top-5 %", "correct top-1", "correct top-5", "skipped", "Δ vs eager", "")
    cells = [
        [
            r["backend"],
            "[green]ok[/green]" if r["status"] == "ok" else f"[red]{r['status']}[/red]",
            "-" if r["top1"] is None else f"{r['top1']:.2f}",
            "-" if r["top5"] is None else f"{r['top5']:.2f}",
            "-" if r["correct1"] is None else f"{r['correct1']:,}/{r['total']:,}",
            "-" if r["correct5"] is None else f"{r['correct5']:,}/{r['total']:,}",
            "" if not r["skipped"] else str(r["skipped"]),
            "" if r["delta_vs_eager"] is None else f"{r['delta_vs_eager']:+d}",
            f"[yellow]⚠ {r['flag']}[/yellow]" if r["flag"] else "",
        ]
        for r in rows
    ]
    # A column that carries nothing (no image skipped, no backend beside eager, nothing flagged)
    # is dropped rather than shown empty.
    keep = [i for i in range(len(columns)) if any(row[i] for row in cells)]
    if any(r["skipped"] == 0 for r in rows) and columns.index("skipped") not in keep:
        caption += "; no image was skipped"
    table = Table(title=title, caption=caption, caption_justify="left", header_style="bold")
    for i in keep:
        name = columns[i]
        table.add_column(name, justify="left" if name in ("backend", "status", "") else "right")
    for row in cells:
        table.add_row(*(row[i] for i in keep))
    return table


def published_lines(runs: list[tuple[Any, dict[str, Any]]], weights: str | None) -> list[str]:
    """torchvision's published figures, labelled as such: of the named torchvision weights when
    given, else of the model's DEFAULT weights (which may not be the weights measured above)."""

    pub = None
    if weights and is_torchvision_weights_name(weights):
        from torchvision.models import get_weight

        meta = get_weight(weights).meta
        dataset, scores = next(iter((meta.get("_metrics") or {}).items()), (None, {}))
        pub = {"weights": weights, "dataset": dataset, "acc@1": scores.get("acc@1"), "acc@5": scores.get("acc@5")}
    else:
        pub = next((r["published"] for _, r in runs if r.get("published")), None)
    if not pub or pub.get("acc@1") is None:
        return []
    line = (
        f"published ({'timm results table' if pub.get('source') == 'timm' else 'torchvision metadata'}, not measured here): "
        f"{pub['weights']} on {pub.get('dataset') or 'ImageNet-1K'} "
        f"val: top-1 {pub['acc@1']:.3f}%, top-5 {pub['acc@5']:.3f}%"
    )
    if pub["weights"] != weights:
        line += " (the model's DEFAULT weights" + (f", not {os.path.basename(weights)})" if weights else ")")
    return [line]
