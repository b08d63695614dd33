"""Reports from the golden results files in tests/data/report (see make_golden.py there).

Expected numbers are computed here from the golden files' raw samples with the standard library
(`statistics`), never copied from the report's output.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import re
import shutil
import statistics
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from cnnbench.cli import main
from cnnbench.errors import ResultsFileError, UserError
from cnnbench.report import FORMATS, parse_formats, write_report
from cnnbench.report.fmt import fmt_latency, fmt_rate, fmt_speedup

GOLDEN = Path(__file__).parent / "data" / "report"
HOST_A = GOLDEN / "host_a.json"
HOST_B = GOLDEN / "host_b.json"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
PLOTS_A = ("latency", "throughput", "speedup", "memory", "gflops", "accuracy_vs_gmacs")

pytest.importorskip("matplotlib", reason="the report's plots need matplotlib (a cnnbench dependency)")


def _golden(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _q(samples: list[float]) -> tuple[float, float, float]:
    """(p25, median, p75) with linear interpolation between order statistics."""
    q1, q2, q3 = statistics.quantiles(samples, n=4, method="inclusive")
    return q1, q2, q3


def _is_valid(case: dict) -> bool:
    return case["status"] == "ok" and (case.get("parity") or {}).get("ok", True)


def _section(md: str, heading: str) -> str:
    """The text of a Markdown section, up to the next heading of the same or a higher level."""
    level = heading.split(" ", 1)[0]
    start = md.index(heading + "\n")
    rest = md[start + len(heading) + 1 :]
    stop = re.search(rf"^#{{1,{len(level)}}} ", rest, flags=re.M)
    return rest[: stop.start()] if stop else rest


@pytest.fixture(scope="module")
def report_a(tmp_path_factory):
    out = tmp_path_factory.mktemp("report_a")
    result = write_report([HOST_A], out)
    return out, result


@pytest.fixture(scope="module")
def report_ab(tmp_path_factory):
    out = tmp_path_factory.mktemp("report_ab")
    result = write_report([HOST_A, HOST_B], out, formats="md,csv,html")
    return out, result


# ---------------------------------------------------------------------------------------------
# Golden data


def test_golden_files_match_their_generator():
    """The committed golden files are what make_golden.py writes with today's build_record."""
    spec = importlib.util.spec_from_file_location("make_golden", GOLDEN / "make_golden.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    for path, results in ((HOST_A, mod.host_a()), (HOST_B, mod.host_b())):
        assert json.loads(json.dumps(results)) == _golden(path), f"regenerate {path.name} with make_golden.py"


# ---------------------------------------------------------------------------------------------
# Files


def test_every_output_file_is_written(report_a):
    out, result = report_a
    for name in ("report.md", "report.html", "results.csv"):
        assert (out / name).stat().st_size > 0
    for plot in PLOTS_A:
        for ext in ("png", "svg"):
            assert (out / "plots" / f"{plot}.{ext}").stat().st_size > 0
    assert set(result.files) == {p for p in out.rglob("*") if p.is_file()}
    assert (result.n_cases, result.n_valid, result.n_invalid) == (27, 25, 2)


def test_pngs_are_valid_images(report_a):
    from matplotlib.image import imread

    out, _ = report_a
    pngs = sorted((out / "plots").glob("*.png"))
    assert len(pngs) == len(PLOTS_A)
    for path in pngs:
        assert path.read_bytes()[:8] == PNG_MAGIC, path
        pixels = imread(path)
        assert pixels.ndim == 3 and pixels.shape[0] > 200 and pixels.shape[1] > 400, path
        assert pixels.std() > 0.01, f"{path} is blank"


def test_svgs_parse_with_an_svg_root(report_a):
    out, _ = report_a
    svgs = sorted((out / "plots").glob("*.svg"))
    assert len(svgs) == len(PLOTS_A)
    for path in svgs:
        root = ET.parse(path).getroot()
        assert root.tag in ("svg", "{http://www.w3.org/2000/svg}svg"), path
        assert len(list(root.iter())) > 50, f"{path} draws nothing"


def test_markdown_links_every_plot(report_a):
    out, _ = report_a
    md = (out / "report.md").read_text(encoding="utf-8")
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert sorted(links) == sorted(f"plots/{p}.png" for p in PLOTS_A)
    assert all((out / link).exists() for link in links)


# ---------------------------------------------------------------------------------------------
# Numbers


def test_detail_tables_hold_the_medians_iqrs_throughputs_and_speedups(report_a):
    out, _ = report_a
    md = (out / "report.md").read_text(encoding="utf-8")
    cases = _golden(HOST_A)["cases"]
    eager = {
        (c["spec"]["model"], c["spec"]["batch_size"]): _q(c["samples_ms"])[1]
        for c in cases
        if c["spec"]["backend"] == "eager" and _is_valid(c)
    }
    checked = 0
    for c in cases:
        if not _is_valid(c):
            continue
        model, batch, backend = c["spec"]["model"], c["spec"]["batch_size"], c["spec"]["backend"]
        p25, median, p75 = _q(c["samples_ms"])
        throughput = batch / (median / 1000.0)
        speedup = eager[(model, batch)] / median
        prefix = (
            f"| {backend} | {batch} | fp32 | {fmt_latency(median, p75 - p25)} | {fmt_rate(throughput)} "
            f"| {fmt_speedup(speedup)} |"
        )
        section = _section(md, f"### {model}")
        assert any(line.startswith(prefix) for line in section.splitlines()), prefix
        checked += 1
    assert checked == 25


def test_csv_has_one_full_precision_row_per_case(report_a):
    out, _ = report_a
    with open(out / "results.csv", newline="", encoding="utf-8") as fh:
        rows = {r["key"]: r for r in csv.DictReader(fh)}
    golden = _golden(HOST_A)
    peak = golden["environment"]["peak_gflops"]
    assert len(rows) == len(golden["cases"]) == 27
    for c in golden["cases"]:
        row = rows[c["key"]]
        assert row["host"] == "bench-a"
        assert row["status"] == c["status"]
        if not _is_valid(c):
            assert row["valid"] == "False"
            assert row["latency_median_ms"] == row["throughput_per_s"] == row["achieved_gflops_per_s"] == ""
            continue
        p25, median, p75 = _q(c["samples_ms"])
        batch = c["spec"]["batch_size"]
        assert float(row["latency_median_ms"]) == pytest.approx(median, rel=1e-12)
        assert float(row["latency_iqr_ms"]) == pytest.approx(p75 - p25, rel=1e-9)
        assert int(row["n_samples"]) == len(c["samples_ms"])
        assert float(row["throughput_per_s"]) == pytest.approx(batch * 1000.0 / median, rel=1e-12)
        achieved = 2 * c["gmacs_per_image"] * batch / (median / 1000.0)
        assert float(row["achieved_gflops_per_s"]) == pytest.approx(achieved, rel=1e-9)
        assert float(row["pct_of_peak"]) == pytest.approx(100 * achieved / peak, rel=1e-9)
        assert int(row["memory_peak_rss_delta_bytes"]) == c["memory"]["peak_rss_delta_bytes"]


def test_model_cards_answer_what_params_compute_accuracy_memory_alternatives(report_a):
    out, _ = report_a
    md = (out / "report.md").read_text(encoding="utf-8")
    cases = _golden(HOST_A)["cases"]
    b1_eager = {c["spec"]["model"]: c for c in cases if c["spec"]["backend"] == "eager" and c["spec"]["batch_size"] == 1}

    def top1(model: str) -> float:
        acc = next((c["accuracy"] for c in cases if c["spec"]["model"] == model and c.get("accuracy")), None)
        return 100.0 * acc["correct1"] / acc["total"] if acc else b1_eager[model]["published"]["acc@1"]

    for model, case in b1_eager.items():
        card = _section(md, f"### {model}")
        assert f"**Parameters:** {case['params'] / 1e6:.2f} M = {case['params']:,}" in card
        assert f"{case['gmacs_per_image']:.3g} GMACs per image" in card
        assert f"{2 * case['gmacs_per_image']:.3g} GFLOPs" in card
        assert "cross-checked with torch.utils.flop_counter" in card
        assert "**What:**" in card and "**Memory:** parameters" in card
        assert "Latency, ms (median ± IQR)" in card and "Throughput, images/s" in card
        kind = "measured" if any(c.get("accuracy") for c in cases if c["spec"]["model"] == model) else "published"
        assert re.search(rf"\*\*Accuracy:\*\* top-1 {top1(model):.2f}%, top-5 [0-9.]+% — {kind}", card), model
        me = _q(case["samples_ms"])[1]
        better = [
            m for m, c in b1_eager.items()
            if m != model and _q(c["samples_ms"])[1] < me and top1(m) >= top1(model)
        ]
        for m in better:
            assert f"- **{m}** — faster, at least as accurate" in card, (model, m)
        if not better:
            assert "no other model measured at the same setting" in card
    # resnet18 (measured 69.75%) is beaten by mobilenet_v2 (72.15% published, half the latency).
    assert "- **mobilenet_v2** — faster, at least as accurate" in _section(md, "### resnet18")


def test_failed_and_invalid_cases_are_listed_without_numbers(report_a):
    out, _ = report_a
    md = (out / "report.md").read_text(encoding="utf-8")
    failed = _section(md, "## Failed and invalid cases")
    bad = [c for c in _golden(HOST_A)["cases"] if not _is_valid(c)]
    assert len(bad) == 2
    for c in bad:
        key = c["key"].replace("|", "\\|")
        line = next(line for line in failed.splitlines() if line.startswith(f"| {key} |"))
        if c["status"] != "ok":
            assert f"| {c['status']} | {c['error']} |" in line
        else:
            assert "parity failed" in line
        # In the model's detail table the row carries the status and no timing number.
        spec = c["spec"]
        card = _section(md, f"### {spec['model']}")
        row = next(
            line for line in card.splitlines() if line.startswith(f"| {spec['backend']} | {spec['batch_size']} | fp32 |")
        )
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        assert cells[3:9] == ["—"] * 6, row
        if c["samples_ms"]:
            assert fmt_latency(*(lambda q: (q[1], q[2] - q[0]))(_q(c["samples_ms"]))) not in md
    assert "INVALID: parity failed" in md


def test_conventions_are_stated(report_a):
    out, _ = report_a
    md = (out / "report.md").read_text(encoding="utf-8")
    conv = _section(md, "## Conventions")
    for phrase in ("MACs are multiply-accumulates", "FLOPs = 2 × MACs", "Warmup calls run first and are excluded",
                   "batch size / median latency", "fvcore", "torchvision"):
        assert phrase in conv
    env = _section(md, "## Environments")
    assert "Intel(R) Xeon(R) Gold 6338" in env and "| Peak GFLOP/s | 850 |" in env


def test_reports_are_deterministic(report_a, tmp_path):
    from cnnbench.report.model import load_report_data
    from cnnbench.report.plots import plan_plots, render_plot

    out, _ = report_a
    a = write_report([HOST_A], tmp_path / "a", formats="md,csv")
    b = write_report([HOST_A], tmp_path / "b", formats="md,csv")
    for pa, pb in zip(a.files, b.files):
        assert pa.read_bytes() == pb.read_bytes(), pa.name
    assert (tmp_path / "a" / "results.csv").read_bytes() == (out / "results.csv").read_bytes()
    data = load_report_data([HOST_A])
    spec = next(s for s in plan_plots(data) if s.kind == "accuracy")
    assert render_plot(data, spec, ["svg"])["svg"] == (out / "plots" / f"{spec.name}.svg").read_bytes()


# ---------------------------------------------------------------------------------------------
# HTML


def test_html_is_self_contained_and_printable(report_a):
    out, _ = report_a
    page = (out / "report.html").read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    assert not re.search(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", page), "external resource"
    assert "<script" not in page and "<link" not in page
    assert page.count('<img src="data:image/png;base64,') == len(PLOTS_A)
    assert "@media print" in page and "@page" in page
    assert "Failed and invalid cases" in page and 'class="invalid"' in page


def _chromium_check(html_path: Path, work: Path) -> dict[str, int]:
    """Open a copy of the page with a checking script in headless Chromium; return its verdict.

    After the load event the script counts images, those not decoded (complete with a natural
    width > 0) and resources fetched from anywhere but a data: URI, and writes them into an
    attribute that --dump-dom shows.
    """
    script = """<script>
window.addEventListener("load", function () {
  var imgs = Array.from(document.images);
  var broken = imgs.filter(function (i) { return !(i.complete && i.naturalWidth > 0); }).length;
  var ext = performance.getEntriesByType("resource")
    .filter(function (e) { return e.name.indexOf("data:") !== 0; }).length;
  document.documentElement.setAttribute("data-check",
    "images=" + imgs.length + ";broken=" + broken + ";external=" + ext);
});
</script>"""
    page = html_path.read_text(encoding="utf-8").replace("</body>", script + "</body>")
    probe = work / f"probe-{html_path.stem}.html"
    probe.write_text(page, encoding="utf-8")
    cmd = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={work / 'chromium-profile'}", "--virtual-time-budget=10000",
        "--dump-dom", probe.as_uri(),
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    m = re.search(r'data-check="images=(\d+);broken=(\d+);external=(\d+)"', proc.stdout)
    assert m, f"no verdict from chromium (exit {proc.returncode}): {proc.stderr[-2000:]}"
    return dict(zip(("images", "broken", "external"), map(int, m.groups())))


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium)")
def test_html_renders_in_headless_chromium_with_no_broken_image(report_a, tmp_path):
    out, _ = report_a
    verdict = _chromium_check(out / "report.html", tmp_path)
    assert verdict == {"images": len(PLOTS_A), "broken": 0, "external": 0}
    # Control: the same check does see a broken image.
    spoiled = tmp_path / "spoiled.html"
    spoiled.write_text(
        (out / "report.html").read_text(encoding="utf-8").replace(
            "</body>", '<img src="data:image/png;base64,AAAA" alt="broken"></body>'
        ),
        encoding="utf-8",
    )
    assert _chromium_check(spoiled, tmp_path)["broken"] == 1


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium)")
def test_merged_html_renders_in_headless_chromium(report_ab, tmp_path):
    out, _ = report_ab
    verdict = _chromium_check(out / "report.html", tmp_path)
    n_plots = len(PLOTS_A) + 4  # bench-b: latency, throughput, speedup, memory (no peak measured)
    assert verdict == {"images": n_plots, "broken": 0, "external": 0}


# ---------------------------------------------------------------------------------------------
# Merging


def test_merging_two_hosts_keeps_environments_apart(report_ab):
    out, result = report_ab
    assert result.environments == ("bench-a", "bench-b")
    with open(out / "results.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 27 + 8
    golden = {h: {c["key"]: c for c in _golden(p)["cases"]} for h, p in (("bench-a", HOST_A), ("bench-b", HOST_B))}
    assert len({r["environment_id"] for r in rows}) == 2
    shared = set(golden["bench-a"]) & set(golden["bench-b"])
    assert len(shared) == 8
    for key in shared:
        mine = [r for r in rows if r["key"] == key]
        assert sorted(r["host"] for r in mine) == ["bench-a", "bench-b"]  # one row per machine, not averaged
        for r in mine:
            assert float(r["latency_median_ms"]) == pytest.approx(_q(golden[r["host"]][key]["samples_ms"])[1], rel=1e-12)
    for r in rows:  # speedups only against eager of the same machine
        if r["host"] == "bench-b" and r["backend"] == "onnxrt":
            eager_key = r["key"].replace("|onnxrt|", "|eager|")
            expected = _q(golden["bench-b"][eager_key]["samples_ms"])[1] / _q(golden["bench-b"][r["key"]]["samples_ms"])[1]
            assert float(r["speedup_vs_eager"]) == pytest.approx(expected, rel=1e-12)
    md = (out / "report.md").read_text(encoding="utf-8")
    assert "### Measured on bench-a" in md and "### Measured on bench-b" in md
    assert "#### resnet18 on bench-a" in md and "#### resnet18 on bench-b" in md
    card_b = _section(md, "#### resnet18 on bench-b")
    assert all(line.split("|")[12].strip() == "bench-b" for line in card_b.splitlines()
               if line.startswith("| eager |") or line.startswith("| onnxrt |"))
    assert "never averaged" in md


def test_same_machine_shards_share_tables_and_newest_duplicate_wins(tmp_path):
    golden = _golden(HOST_A)
    first, second = dict(golden), json.loads(json.dumps(golden))
    first["cases"] = golden["cases"][:15]
    second["cases"] = golden["cases"][12:]  # 3 cases overlap
    second["environment"]["hostname"] = "bench-a2"  # same hardware fingerprint and versions
    second["updated"] = "2026-03-05T00:00:00+00:00"
    p1, p2 = tmp_path / "shard1.json", tmp_path / "shard2.json"
    p1.write_text(json.dumps(first))
    p2.write_text(json.dumps(second))
    result = write_report([p1, p2], tmp_path / "out", formats="md,csv")
    assert result.environments == ("bench-a +1",)
    with open(tmp_path / "out" / "results.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 27
    overlap = {c["key"] for c in golden["cases"][12:15]}
    assert {r["host"] for r in rows if r["key"] in overlap} == {"bench-a2"}
    md = (tmp_path / "out" / "report.md").read_text(encoding="utf-8")
    superseded = _section(md, "### Superseded measurements")
    assert sum(line.startswith("| ") for line in superseded.splitlines()) == 1 + len(overlap)


# ---------------------------------------------------------------------------------------------
# Bad input and the command line


def test_not_a_results_file(tmp_path):
    bad = tmp_path / "notes.json"
    bad.write_text('{"hello": 1}')
    with pytest.raises(ResultsFileError, match="not a cnnbench results file"):
        write_report([bad], tmp_path / "out")
    garbage = tmp_path / "garbage.json"
    garbage.write_text("{ this is not json")
    with pytest.raises(ResultsFileError, match="not valid JSON"):
        write_report([garbage], tmp_path / "out")
    assert not (tmp_path / "out").exists()  # nothing written before the input is known good


def test_newer_schema_is_refused(tmp_path):
    newer = _golden(HOST_A)
    newer["schema_version"] += 1
    path = tmp_path / "newer.json"
    path.write_text(json.dumps(newer))
    with pytest.raises(ResultsFileError, match="newer cnnbench"):
        write_report([path], tmp_path / "out")


def test_no_ok_case_is_an_error(tmp_path):
    results = _golden(HOST_A)
    results["cases"] = [c for c in results["cases"] if not _is_valid(c)]
    path = tmp_path / "failed.json"
    path.write_text(json.dumps(results))
    with pytest.raises(UserError, match=r"no ok cases in .*failed\.json: nothing to report") as exc:
        write_report([path], tmp_path / "out")
    assert "1 timeout" in str(exc.value) and "1 ok but parity failed" in str(exc.value)


@pytest.mark.parametrize(
    "content, message",
    [
        ("[1, 2]", "not a cnnbench results file"),
        (json.dumps({"schema_version": 99, "cases": []}), "newer cnnbench"),
        (json.dumps({"schema_version": 1, "cases": [{"key": "x"}]}), "has no `spec`"),
        (json.dumps({"schema_version": 1, "environment": {}, "cases": []}), "no ok cases"),
    ],
)
def test_cli_prints_one_line_errors_and_exits_2(tmp_path, capsys, content, message):
    path = tmp_path / "in.json"
    path.write_text(content)
    assert main(["report", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_cli_report_with_chosen_formats(tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["report", str(HOST_A), str(HOST_B), "--out", str(out), "--format", "md,csv"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["report.md", "results.csv"]
    md = (out / "report.md").read_text(encoding="utf-8")
    assert "![" not in md and "## Plots" not in md
    printed = capsys.readouterr().out
    assert "35 cases: 33 valid, 2 failed or invalid" in printed and "2 environments" in printed


def test_unknown_format_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["report", str(HOST_A), "--out", str(tmp_path), "--format", "md,pdf"])
    assert exc.value.code == 2
    assert "unknown report format pdf" in capsys.readouterr().err
    assert parse_formats("svg, MD,markdown") == ("md", "svg")
    assert parse_formats(FORMATS) == FORMATS


def test_importing_the_report_command_is_light():
    code = (
        "import sys, cnnbench.report, cnnbench.commands.report, cnnbench.report.model, cnnbench.report.plots; "
        "heavy = [m for m in ('torch', 'matplotlib', 'numpy') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parent.parent)


def test_minimal_records_still_report(tmp_path):
    """Missing environment keys and optional fields; `acc1` spelling of published accuracy."""
    results = _golden(HOST_A)
    results["environment"] = {}
    for c in results["cases"]:
        for name in ("memory", "parity", "accuracy", "counts", "backend_info", "gmacs", "gflops", "gmacs_per_image"):
            c.pop(name, None)
        if c.get("published"):
            pub = c["published"]
            c["published"] = {"weights": pub["weights"], "acc1": pub["acc@1"], "acc5": pub["acc@5"]}
    path = tmp_path / "minimal.json"
    path.write_text(json.dumps(results))
    result = write_report([path], tmp_path / "out", formats="md,csv")
    assert result.environments == ("unknown host",)
    assert result.n_invalid == 1  # the timeout; without a parity record the other case counts as valid
    md = (tmp_path / "out" / "report.md").read_text(encoding="utf-8")
    assert "top-1 69.76%, top-5 89.08% — published for ResNet18_Weights.IMAGENET1K_V1 on ImageNet-1K val" in md
    assert "**Compute:** —" in md and "**Memory:** parameters 44.6 MiB (fp32, 4 bytes each)." in md
