"""Present a `Comparison`: Markdown for a pull-request comment, the terminal table, JSON.

Rendering decides nothing: every verdict and figure comes from `cnnbench.compare.verdicts`.
"""

from __future__ import annotations

import math
from dataclasses import asdict
from typing import TYPE_CHECKING, Any, Iterable, Sequence

from cnnbench.core.inert import Markdown, md_code, md_text  # data never becomes HTML, a link or a mention
from cnnbench.core.terminal import message_line, visible
from cnnbench.core.units import DASH, fmt_bytes, fmt_change, fmt_ms, fmt_pct
from cnnbench.stats.processes import process_stats
from cnnbench.compare.verdicts import (
    FAILED,
    IMPROVED,
    INCOMPARABLE,
    INVALID,
    MISSING,
    NEW,
    NOISY,
    REGRESSED,
    UNCHANGED,
    VERDICTS,
    CaseComparison,
    TIMED_VERDICTS,
    Comparison,
)
from cnnbench.compare.memchange import fmt_memory_change, memory_kind

if TYPE_CHECKING:  # pragma: no cover
    from rich.console import Console

__all__ = ["render_markdown", "render_terminal", "to_json", "MAX_MARKDOWN_ROWS"]

_SECTION_TITLES = {
    REGRESSED: "Regressions",
    IMPROVED: "Improvements",
    NOISY: "Noisy (too little evidence either way)",
    FAILED: "Failed",
    MISSING: "Missing (in base only)",
    NEW: "New (in current only)",
    INCOMPARABLE: "Incomparable",
    INVALID: "Invalid (failed parity: timing not valid)",
    UNCHANGED: "Unchanged",
}
# Rows per Markdown section; GitHub truncates comments at 65536 characters.
MAX_MARKDOWN_ROWS = 200


def _fmt_ci(r: CaseComparison) -> str:
    if r.ci_low is None or r.ci_high is None:
        return DASH
    return f"{fmt_change(r.ci_low)} … {fmt_change(r.ci_high)}"


def _fmt_p(p: float | None) -> str:
    if p is None:
        return DASH
    return f"{p:.3f}" if p >= 0.001 else f"{p:.1e}"


def _fmt_memory(r: CaseComparison) -> str:
    if r.memory_metric is None:
        return DASH

    base, cur = r.base_memory_bytes or 0, r.current_memory_bytes or 0
    change = fmt_memory_change(r.memory_metric, base, cur, ratio=r.memory_ratio)
    if r.memory_verdict == UNCHANGED:
        return change
    mark = " ❌" if r.memory_verdict == REGRESSED else ""
    return f"{change} ({memory_kind(r.memory_metric)} {fmt_bytes(base)} → {fmt_bytes(cur)}){mark}"


def _headline(comp: Comparison) -> tuple[bool, str]:
    counts = comp.counts
    gating = [r for r in comp.rows if r.gating]
    if gating:
        lat = sum(r.verdict == REGRESSED for r in gating)
        mem = sum(r.memory_verdict == REGRESSED for r in gating)
        energy = sum(r.energy_verdict == REGRESSED for r in gating)
        broke = sum(r.verdict in (FAILED, INVALID) for r in gating)
        parts = [
            f"{lat} latency regression(s)" if lat else "",
            f"{mem} memory regression(s)" if mem else "",
            f"{energy} energy regression(s)" if energy else "",
            f"{broke} case(s) newly failing (run or parity)" if broke else "",
        ]
        return False, "Performance regression: " + ", ".join(p for p in parts if p)
    compared = sum(counts[v] for v in TIMED_VERDICTS)
    if not compared:
        return True, "No regression found, but no case could be compared"
    return True, f"No performance regression ({compared} case(s) compared)"


def _summary_line(comp: Comparison) -> str:
    """Counts per report section (a memory regression counts as regressed, as its table does)."""
    counts = {v: 0 for v in VERDICTS}
    for r in comp.rows:
        counts[r.section] += 1
    return ", ".join(f"{counts[v]} {v}" for v in VERDICTS if counts[v])


def _geomean_line(comp: Comparison) -> str:
    if comp.geomean_ratio is None:
        return "Geometric mean of current/base: n/a (no comparable case)"
    return (
        f"Geometric mean of current/base latency over {comp.geomean_cases} comparable case(s): "
        f"{comp.geomean_ratio:.3f} ({fmt_change(comp.geomean_ratio)})"
    )


def _rules_line(comp: Comparison) -> str:
    lat, mem = comp.thresholds["latency"], comp.thresholds["memory"]
    return (
        f"Thresholds: latency {lat} ({lat.source}), memory {mem} ({mem.source}), "
        f"energy {comp.thresholds['energy']} ({comp.thresholds['energy'].source}); alpha {comp.alpha:g}, "
        f"intervals at {comp.confidence:.0%}. Each worker process gives one figure, the {comp.statistic} of its "
        f"per-call times (Base/Current: the median of those figures); a case regresses when it is slower by more "
        f"than the threshold and a one-sided Mann-Whitney U test on the per-process figures is significant."
    )


def _md_cell(text: Any) -> str:
    if isinstance(text, Markdown):
        return text
    return DASH if text in (None, "") else md_text(text)


def _md_table(header: list[str], rows: Iterable[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(_md_cell(x) for x in row) + " |")
    return lines


def _section_table(name: str, rows: list[CaseComparison], comp: Comparison) -> list[str]:
    conf = f"{comp.confidence:.0%} CI"
    if name in (REGRESSED, IMPROVED, NOISY, UNCHANGED):
        header = ["Case", f"Base {comp.statistic} (ms)", f"Current {comp.statistic} (ms)", "Change", conf, "p", "Repeats", "Memory", "Why"]
        body = [
            [md_code(r.label), fmt_ms(r.base_median_ms), fmt_ms(r.current_median_ms), fmt_change(r.ratio), _fmt_ci(r),
             _fmt_p(r.p_value), f"{r.base_repeats}/{r.current_repeats}", _fmt_memory(r), r.reason]
            for r in rows
        ]
    elif name == FAILED:
        header = ["Case", "Base", "Current", "Error", "Gates"]
        body = [[md_code(r.label), r.base_status, r.current_status, r.error or r.reason, "yes" if r.gating else "no"] for r in rows]
    elif name in (MISSING, NEW):
        header = ["Case", "Status", "Median (ms)"]
        body = [[md_code(r.label), r.base_status or r.current_status, fmt_ms(r.base_median_ms or r.current_median_ms)] for r in rows]
    elif name == INCOMPARABLE:
        header = ["Case", f"Base {comp.statistic} (ms)", f"Current {comp.statistic} (ms)", "Why"]
        body = [[md_code(r.label), fmt_ms(r.base_median_ms), fmt_ms(r.current_median_ms), r.reason] for r in rows]
    else:  # INVALID: no timing shown, it is not a valid result
        header = ["Case", "Base", "Current", "Why", "Gates"]
        body = [[md_code(r.label), r.base_status, r.current_status, r.reason, "yes" if r.gating else "no"] for r in rows]
    lines = _md_table(header, body[:MAX_MARKDOWN_ROWS])
    if len(body) > MAX_MARKDOWN_ROWS:
        lines.append(f"\n… and {len(body) - MAX_MARKDOWN_ROWS} more (see the JSON output).")
    return lines


def _md_source(info: dict[str, Any], default: str) -> str:
    text = md_code(info.get("name") or default)
    if info.get("git_commit"):
        text += f" (commit {md_text(str(info['git_commit'])[:10])})"
    return text


def render_markdown(comparison: Comparison) -> str:
    """A Markdown summary fit for a pull-request comment or `$GITHUB_STEP_SUMMARY`.

    A headline verdict, the thresholds and statistics used, warnings, then one table per
    section: regressions first, unchanged cases last and collapsed in a <details> block.
    """
    comp = comparison
    ok, headline = _headline(comp)
    lines = [f"## {'✅' if ok else '❌'} cnnbench compare: {headline}", ""]
    b, c = comp.base_info, comp.current_info
    if b.get("name") or c.get("name") or b.get("git_commit") or c.get("git_commit"):
        lines += [f"Base {_md_source(b, 'base')} vs current {_md_source(c, 'current')}.", ""]
    if comp.rows:
        lines += [f"**{_summary_line(comp)}.** {_geomean_line(comp)}.", ""]
    else:
        lines += ["Neither file has any case.", ""]
    lines += [f"<sub>{_rules_line(comp)}</sub>", ""]
    for w in comp.warnings:
        lines.append(f"> ⚠️ {_md_cell(w)}")
    for n in comp.notes:
        lines.append(f"> {_md_cell(n)}")
    if comp.warnings or comp.notes:
        lines.append("")
    for name in VERDICTS:
        rows = comp.section(name)
        if not rows:
            continue
        title = f"{_SECTION_TITLES[name]} ({len(rows)})"
        if name == UNCHANGED:
            lines += ["<details>", f"<summary>{title}</summary>", ""]
            lines += _section_table(name, rows, comp)
            lines += ["", "</details>", ""]
        else:
            lines += [f"### {title}", ""]
            lines += _section_table(name, rows, comp)
            lines.append("")
    lines += markdown_section(comp.rows, statistic=comp.statistic)
    return "\n".join(lines).rstrip() + "\n"


_STYLES = {
    REGRESSED: "bold red",
    IMPROVED: "green",
    NOISY: "yellow",
    FAILED: "red",
    INVALID: "magenta",
    INCOMPARABLE: "cyan",
    MISSING: "dim",
    NEW: "blue",
    UNCHANGED: "",
}


def _fmt_memory_short(r: CaseComparison) -> str:
    if r.memory_metric is None or r.base_memory_bytes is None or r.current_memory_bytes is None:
        return DASH

    change = fmt_memory_change(r.memory_metric, r.base_memory_bytes, r.current_memory_bytes, ratio=r.memory_ratio)
    return f"{change} {memory_kind(r.memory_metric)}"


# Terminal columns in the order shown, and the order they are kept when the terminal is narrow
# (Case and Verdict always; the rest while they fit, so nothing is squeezed to nothing).
_TERMINAL_PRIORITY = ("Change", "CI", "p", "Memory", "Base", "Cur", "Reps")
_CASE_MIN_WIDTH = 24  # the case label wraps at spaces, never narrower than this


def _terminal_columns(cells: list[dict[str, str]], names: dict[str, str], width: int) -> list[str]:
    """The columns that fit `width`: each as wide as its longest text, two spaces apart."""
    from rich.cells import cell_len

    def need(col: str) -> int:
        texts = [names[col]] + [c[col] for c in cells]
        if col == "Case":
            words = [w for t in texts for w in t.split()]
            return max([_CASE_MIN_WIDTH] + [cell_len(w) for w in words])
        return max(cell_len(t) for t in texts)

    chosen = ["Case", "Verdict"]
    used = need("Case") + 2 + need("Verdict")
    for col in _TERMINAL_PRIORITY:
        if used + 2 + need(col) <= width:
            chosen.append(col)
            used += 2 + need(col)
    order = ("Case", "Verdict", "Base", "Cur", "Change", "CI", "p", "Reps", "Memory")
    return [c for c in order if c in chosen]


def render_terminal(comparison: Comparison, console: "Console") -> None:
    """Print the comparison with rich: a table of every case (regressions first), then the
    reason for every case that is not unchanged, the warnings and a headline.

    The table fits the console's width (80 columns when piped): the case label wraps at its
    spaces and the columns that do not fit are left out (their figures are in the reasons
    below, the Markdown and the JSON), never squeezed.
    """
    from rich import box
    from rich.table import Table
    from rich.text import Text

    comp = comparison
    names = {
        "Case": "Case", "Verdict": "Verdict", "Base": f"Base {comp.statistic}", "Cur": f"Cur {comp.statistic}",
        "Change": "Change", "CI": f"{comp.confidence:.0%} CI", "p": "p", "Reps": "Reps", "Memory": "Memory",
    }
    entries: list[tuple[CaseComparison, str, dict[str, str]]] = []
    for name in VERDICTS:
        for r in comp.section(name):
            verdict = r.verdict if r.section == r.verdict else "regressed (energy)" if r.energy_verdict == REGRESSED and r.memory_verdict != REGRESSED else "regressed (memory)"
            entries.append((r, verdict, {
                "Case": visible(r.label), "Verdict": verdict, "Base": fmt_ms(r.base_median_ms),
                "Cur": fmt_ms(r.current_median_ms), "Change": fmt_change(r.ratio), "CI": _fmt_ci(r),
                "p": _fmt_p(r.p_value),
                "Reps": f"{r.base_repeats}/{r.current_repeats}" if r.base_repeats or r.current_repeats else DASH,
                "Memory": _fmt_memory_short(r),
            }))
    columns = _terminal_columns([e[2] for e in entries], names, console.width)
    table = Table(
        title="cnnbench compare: current / base", header_style="bold", box=box.SIMPLE_HEAD, show_edge=False,
        pad_edge=False, collapse_padding=True, padding=(0, 1),
    )
    for col in columns:
        if col == "Case":
            table.add_column(names[col], overflow="fold", min_width=_CASE_MIN_WIDTH)
        else:
            table.add_column(names[col], justify="left" if col == "Verdict" else "right", no_wrap=True)
    details: list[Text] = []
    for r, verdict, cells in entries:
        style = _STYLES.get(r.section, "")
        styled = {
            "Verdict": Text(verdict, style=style),
            "Memory": Text(cells["Memory"], style="bold red" if r.memory_verdict == REGRESSED else ""),
        }
        table.add_row(*[styled.get(col, Text(cells[col])) for col in columns])
        if r.verdict != UNCHANGED or r.memory_verdict == REGRESSED or r.energy_verdict == REGRESSED:
            line = Text("  ")
            line.append(visible(r.label), style="bold")
            line.append(f" {verdict}: ", style=style)
            line.append(message_line(r.reason + (f": {r.error}" if r.error else "")))
            if r.memory_verdict == REGRESSED:
                line.append(f"; memory {_fmt_memory(r).replace(' ❌', '')} > +{comp.thresholds['memory']}", style="red")
            details.append(line)
    console.print(table)
    for line in details:
        console.print(line)
    for w in comp.warnings:
        console.print(Text(f"warning: {message_line(w)}", style="yellow"))
    for line in split_lines(comp.rows):
        console.print(Text(f"warning: {message_line(line)}", style="yellow"))
    for n in comp.notes:
        console.print(Text(f"note: {message_line(n)}"))
    if comp.rows:
        console.print(Text(f"{_summary_line(comp)}. {_geomean_line(comp)}."))
    console.print(Text(_rules_line(comp), style="dim"))
    ok, headline = _headline(comp)
    console.print(Text(headline, style="bold green" if ok else "bold red"))


def _finite(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    return x


def to_json(comparison: Comparison) -> dict[str, Any]:
    """The comparison as a JSON-ready dict (what `--json FILE` writes); stable keys, no NaN."""
    comp = comparison
    ok, headline = _headline(comp)
    rows = []
    for r in comp.rows:
        row = asdict(r)
        row["section"] = r.section
        rows.append(row)
    return _finite(
        {
            "tool": "cnnbench",
            "kind": "comparison",
            "format_version": 1,
            "has_regression": comp.has_regression,
            "headline": headline,
            "alpha": comp.alpha,
            "statistic": comp.statistic,
            "confidence": comp.confidence,
            "thresholds": {m: {"rel": t.rel, "text": str(t), "source": t.source} for m, t in comp.thresholds.items()},
            "geomean_ratio": comp.geomean_ratio,
            "geomean_cases": comp.geomean_cases,
            "counts": comp.counts,
            "warnings": list(comp.warnings),
            "notes": list(comp.notes),
            "base": comp.base_info,
            "current": comp.current_info,
            "cases": rows,
        }
    )


def _side_cells(figures: Sequence[float]) -> tuple[str, str | None]:
    ps = process_stats(figures)
    if ps is None:
        return (f"1 process, {fmt_ms(figures[0])} ms" if figures else DASH), None
    return f"{ps.n}: {fmt_ms(ps.min_ms)}–{fmt_ms(ps.max_ms)} ms, CV {fmt_pct(100.0 * ps.cv)}", ps.warning


def _detectable_cell(row: Any) -> str:
    if row.detectable_ratio is not None:
        return fmt_change(row.detectable_ratio)
    if min(row.base_repeats, row.current_repeats) >= 2:
        return "none at this alpha (too few repeats)"
    return "— (1 process on a side)"


def split_lines(rows: Iterable[Any], *, code: bool = False) -> list[str]:
    """'<case> (base|current): processes split: ...' for each compared side whose processes split
    (`code`: the case in Markdown backticks)."""
    out = []
    for r in rows:
        for side, figures in (("base", r.base_process_ms), ("current", r.current_process_ms)):
            ps = process_stats(figures) if figures else None
            if ps is not None and ps.split:
                out.append(f"{f'`{r.label}`' if code else r.label} ({side}): {ps.warning}")
    return out


def markdown_section(rows: Sequence[Any], *, statistic: str) -> list[str]:
    """The compare Markdown's "Between-process spread and power" section (empty: nothing compared).

    One row per compared case: each side's processes (count, range of their `statistic`, CV),
    the smallest slowdown detectable with these repeats, and the modes of a side whose processes
    split; collapsed unless some side split."""
    rows = [r for r in rows if r.base_process_ms or r.current_process_ms]
    if not rows:
        return []
    table = [
        f"| Case | Base processes ({statistic}) | Current processes ({statistic}) | Smallest detectable slowdown | Modes |",
        "|---|---|---|---|---|",
    ]
    splits = []
    for r in rows:
        base, wb = _side_cells(r.base_process_ms)
        cur, wc = _side_cells(r.current_process_ms)
        modes = "; ".join(f"{side}: {w}" for side, w in (("base", wb), ("current", wc)) if w) or DASH
        if wb or wc:
            splits.append(r)
        table.append(f"| `{r.label}` | {base} | {cur} | {_detectable_cell(r)} | {modes} |")
    title = f"Between-process spread and power ({len(rows)})"
    intro = (
        "One figure per worker process; the smallest slowdown is what a one-sided rank test detects with 80% "
        "power from these repeats and this spread (a case whose processes split needs more repeats)."
    )
    if splits:
        lines = [f"### {title}", ""]
        lines += [f"> ⚠️ {line}" for line in split_lines(splits, code=True)]
        return lines + ["", intro, "", *table, ""]
    return ["<details>", f"<summary>{title}</summary>", "", intro, "", *table, "", "</details>", ""]
