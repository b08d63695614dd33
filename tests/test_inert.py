"""Outputs are inert: a formula, a link, HTML, a mention or mathtext that came from data (a
model name, a hostname, an error message) reaches no spreadsheet, pull request or plot as such."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import pytest

from cnnbench.core.inert import csv_cell, md_code, md_text
from cnnbench.results.format import load_results, write_results

DATA = Path(__file__).parent / "data"
EVIL_CELLS = ["=HYPERLINK(\"http://x\",\"y\")", "+SUM(1,2)", "-2+3", "@SUM(A1)", "\t=1", "\r=1"]
EVIL_MD = '<img src=x onerror=alert(1)> [click](http://evil.example) ![i](http://e/x.png) @everyone #1 $x$ `code` | pipe'


def test_csv_cells_that_would_start_a_formula_are_prefixed():
    for cell in EVIL_CELLS:
        assert csv_cell(cell) == "'" + cell.replace("\r", "\n")
    assert csv_cell("resnet18") == "resnet18" and csv_cell(-2.5) == -2.5 and csv_cell(-3) == -3


def test_the_report_csv_holds_no_formula(tmp_path):
    from cnnbench.report.csv import render_csv
    from cnnbench.report.model import load_report_data

    results = load_results(DATA / "report" / "host_a.json")
    for case, evil in zip(results["cases"], EVIL_CELLS * 10):
        case["spec"]["model"] = evil
        case["error"] = evil
    results["environment"]["hostname"] = "=cmd|' /C calc'!A0"
    path = tmp_path / "evil.json"
    write_results(path, results)
    rows = list(csv.reader(io.StringIO(render_csv(load_report_data([str(path)])))))
    assert len(rows) > 5
    checked = 0
    for row in rows[1:]:
        for cell in row:
            if cell[:1] in ("=", "+", "-", "@", "\t", "\r"):
                float(cell)  # only a number may start so (a negative value)
            checked += cell.startswith("'")
    assert checked >= len(rows) - 1  # every row's model (and host) was prefixed


def _has_live_markup(md: str) -> list[str]:
    """Markup that GitHub would act on: raw HTML tags, inline links or images, an unescaped
    @mention or #reference, $math$."""
    found = []
    if re.search(r"(?<!\\)<img", md):
        found.append("html")
    if re.search(r"(?<!\\)\]\(http", md):
        found.append("link")
    if re.search(r"(?<![\\\w])@everyone", md):
        found.append("mention")
    if re.search(r"(?<!\\)\$x(?<!\\)\$", md):
        found.append("math")
    return found


def test_md_text_and_md_code():
    assert _has_live_markup(EVIL_MD) == ["html", "link", "mention", "math"]  # the detector works
    assert _has_live_markup(md_text(EVIL_MD)) == []
    code = md_code("a `b` ``c`` | d")
    assert code.startswith("``` ") and code.endswith(" ```") and "\\|" in code


def test_compare_markdown_escapes_html_links_and_mentions_from_data(tmp_path):
    from cnnbench.compare import compare_results, render_markdown

    base = load_results(DATA / "compare" / "mixed_base.json")
    current = load_results(DATA / "compare" / "mixed_current.json")
    for case in current["cases"]:
        if case["status"] != "ok":
            case["error"] = EVIL_MD
    current["environment"]["hostname"] = EVIL_MD
    current["suite"]["name"] = EVIL_MD
    md = render_markdown(compare_results(base, current))
    assert "onerror" in md  # the text is there, as text
    assert _has_live_markup(md) == [], md
    header = None
    for line in md.splitlines():  # every table row keeps its header's column count
        if not line.startswith("|"):
            header = None
            continue
        cells = len(re.findall(r"(?<!\\)\|", line))
        header = header or cells
        assert cells == header, line


def test_report_markdown_escapes_links_from_data(tmp_path):
    from cnnbench.cli import main

    results = json.loads((DATA / "report" / "host_a.json").read_text())
    for case in results["cases"]:
        if case["status"] != "ok":
            case["error"] = EVIL_MD
    results["environment"]["hostname"] = EVIL_MD
    path = tmp_path / "r.json"
    path.write_text(json.dumps(results))
    assert main(["report", str(path), "--out", str(tmp_path / "rep"), "--format", "md"]) == 0
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "onerror" in md and [m for m in _has_live_markup(md) if m != "mention"] == []


@pytest.mark.parametrize("name", [r"$\macro$", r"$x^{$", "a$b$c", r"\$"])
def test_a_model_name_with_mathtext_draws_as_written(tmp_path, name):
    pytest.importorskip("matplotlib")
    from cnnbench.cli import main

    results = json.loads((DATA / "report" / "host_a.json").read_text())
    for case in results["cases"]:
        case["spec"]["model"] = name + case["spec"]["model"]
    path = tmp_path / "r.json"
    path.write_text(json.dumps(results))
    assert main(["report", str(path), "--out", str(tmp_path / "rep"), "--format", "svg"]) == 0
    assert any((tmp_path / "rep" / "plots").glob("*.svg"))
