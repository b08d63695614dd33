"""Comparison reports from results files: Markdown, a self-contained HTML page, CSV and plots.

Import-light: nothing here imports matplotlib (only drawing does) or torch (never needed).

    from cnnbench.report import write_report
    out = write_report(["results/a.json", "results/b.json"], "report/", formats=("md", "html"))

Pipeline: `model.load_report_data` (load, merge, compute every number) -> `plots.plan_plots`
and `plots.render_plot` -> `document.build_document` (format-neutral blocks) -> the renderers
`markdown`, `html` and `csv`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from cnnbench.core.errors import UserError
from cnnbench.core.safeio import atomic_write
from cnnbench.report import csv as csv_out, document, html as html_out, markdown, plots
from cnnbench.report.blocks import Figure
from cnnbench.report.model import EPOCH_DATASETS, load_report_data

__all__ = ["FORMATS", "ReportOutput", "epoch_datasets", "parse_formats", "write_report"]

FORMATS = ("md", "html", "csv", "png", "svg")
MARKDOWN_NAME, HTML_NAME, CSV_NAME, PLOTS_DIR = "report.md", "report.html", "results.csv", "plots"


@dataclass(frozen=True)
class ReportOutput:
    """What `write_report` wrote, and the counts a caller may print."""

    out_dir: Path
    files: tuple[Path, ...]
    n_cases: int
    n_valid: int
    n_invalid: int
    environments: tuple[str, ...] = field(default=())


def parse_formats(value: str | Iterable[str]) -> tuple[str, ...]:
    """`"md,html"` or an iterable of names -> a tuple in canonical order; UserError on unknown."""
    items = value.split(",") if isinstance(value, str) else list(value)
    names = [s.strip().lower() for s in items if s.strip()]
    aliases = {"markdown": "md", "htm": "html"}
    names = [aliases.get(n, n) for n in names]
    unknown = [n for n in names if n not in FORMATS]
    if unknown:
        raise UserError(f"unknown report format {', '.join(unknown)!s}; choose from {','.join(FORMATS)}")
    if not names:
        raise UserError(f"no report format given; choose from {','.join(FORMATS)}")
    return tuple(f for f in FORMATS if f in names)


def epoch_datasets(extra: Sequence[tuple[str, int]] = ()) -> tuple[tuple[str, str, int], ...]:
    """The built-in training-set sizes, then the user's `(label, images)`, each with the id its
    CSV column takes (`epoch_<id>_s`). UserError for a size that is not positive."""
    import re

    out = list(EPOCH_DATASETS)
    for label, images in extra:
        if images <= 0:
            raise UserError(f"--epoch-images {label}={images}: the number of images must be at least 1")
        ident = re.sub(r"[^a-z0-9]+", "_", label.lower()).strip("_") or "dataset"
        if any(ident == i for i, _, _ in out):
            raise UserError(f"--epoch-images {label}: a training-set size named {ident!r} is given already")
        out.append((ident, label, int(images)))
    return tuple(out)


def write_report(
    results: Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    *,
    formats: str | Iterable[str] = FORMATS,
    title: str | None = None,
    epoch_images: Sequence[tuple[str, int]] = (),
    extra: Sequence[Any] = (),
) -> ReportOutput:
    """Load and merge `results`, then write the requested formats into `out_dir`.

    Args:
        results: results files (shards, machines, days); merged, grouped by environment.
        out_dir: created if missing; existing report files in it are overwritten.
        extra: blocks (`cnnbench.report.blocks`) placed after the summary, such as the section
            that points at the model report of `--select`.
        formats: any of "md", "html", "csv", "png", "svg" (a comma list or an iterable).
        title: the report's title (default "cnnbench report").
        epoch_images: (label, images) training-set sizes to give each training case's time per
            epoch for, after the built-in ImageNet-1k and CIFAR-10.

    Returns:
        A ReportOutput listing the files written and the case counts.

    Raises:
        ResultsFileError: a file is not a results file, is corrupt or is from a newer cnnbench.
        UserError: no ok case in any file, an unknown format, or matplotlib missing for plots.
    """

    fmts = parse_formats(formats)
    data = load_report_data([str(p) for p in results])  # every input error before any output
    data.epoch_datasets = epoch_datasets(epoch_images)
    image_fmts = [f for f in plots.IMAGE_FORMATS if f in fmts]
    render_fmts = list(image_fmts)
    if "html" in fmts and "png" not in render_fmts:
        render_fmts.insert(0, "png")  # the HTML page embeds PNGs
    specs = plots.plan_plots(data)
    if render_fmts and specs:
        plots.require_matplotlib()

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: exists and is not a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{out}: cannot create the output directory ({exc.strerror or exc})") from exc

    written: list[Path] = []
    images: dict[str, dict[str, bytes]] = {}
    if render_fmts:
        for spec in specs:
            images[spec.name] = plots.render_plot(data, spec, render_fmts)
    figure_links: dict[str, str] = {}
    if image_fmts and specs:
        plots_dir = out / PLOTS_DIR
        if plots_dir.is_symlink() or (plots_dir.exists() and not plots_dir.is_dir()):
            raise UserError(f"{plots_dir}: exists and is not a directory (the report puts its images there)")
        try:
            plots_dir.mkdir(exist_ok=True)
        except OSError as exc:
            raise UserError(f"{plots_dir}: cannot create the directory ({exc.strerror or exc})") from None
        for spec in specs:
            for fmt in image_fmts:
                path = out / PLOTS_DIR / f"{spec.name}.{fmt}"
                _write(path, images[spec.name][fmt])
                written.append(path)
            # Markdown shows the PNG when there is one (GitHub renders both).
            figure_links[spec.name] = f"{PLOTS_DIR}/{spec.name}.{image_fmts[0]}"

    figures = [Figure(s.name, s.title, s.caption) for s in specs]
    doc_title = title or "cnnbench report"
    if "md" in fmts:
        blocks = document.build_document(data, [f for f in figures if f.name in figure_links], title=doc_title, extra=extra)
        path = out / MARKDOWN_NAME
        _write(path, markdown.render_markdown(blocks, figure_links=figure_links).encode("utf-8"))
        written.append(path)
    if "html" in fmts:
        blocks = document.build_document(data, figures, title=doc_title, extra=extra)
        embedded = {name: ("image/png", imgs["png"]) for name, imgs in images.items()}
        path = out / HTML_NAME
        _write(path, html_out.render_html(blocks, images=embedded, title=doc_title).encode("utf-8"))
        written.append(path)
    if "csv" in fmts:
        path = out / CSV_NAME
        _write(path, csv_out.render_csv(data).encode("utf-8"))
        written.append(path)
    return ReportOutput(
        out_dir=out,
        files=tuple(written),
        n_cases=len(data.rows),
        n_valid=len(data.valid_rows),
        n_invalid=len(data.invalid_rows),
        environments=tuple(e.label for e in data.envs),
    )


def _write(path: Path, blob: bytes) -> None:
    """Write through a fresh temporary file and rename (cnnbench.core.safeio), so a reader never sees
    half a report and a planted link is never written through."""

    atomic_write(path, blob)
