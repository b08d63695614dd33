"""`bench.py select`: constraints parsed, figures with intervals, a frontier that respects them.

The constructed results file (`_results`) has a known answer: on lenet5 under p99<=2ms and
top1>=0.99*fp32, throughput objective,
- onnxrt fp32 b1 and openvino fp32 b1 have medians 1% apart with overlapping intervals: a tie;
- onnxrt int8 b1 is faster than both (intervals separate) but its top-1 fails 0.99*fp32: a
  nearest miss;
- aoti fp32 b1 has no p99 recorded: unknown, never feasible;
- eager fp32 b1 is slower beyond doubt: dominated;
- compile fp32 b1 has 4 samples ("few samples"): unreliable, left out though fastest.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cnnbench.results import records
from cnnbench.select import SelectError, configs_of, parse_constraint, parse_objective, select
from cnnbench.select.figures import quantile_ci, wilson

ROOT = Path(__file__).resolve().parent.parent


def _case(backend, precision, median, lo, hi, *, p99=None, correct=None, warnings=(), batch=1, procs=3):
    spec = {"model": "lenet5", "batch_size": batch, "backend": backend, "precision": precision,
            "input_size": [1, 32, 32], "device": "cpu", "threads": 2, "mode": "inference", "options": {}}  # fmt: skip
    lat = {"median": median, "iqr": median * 0.02, "ci95_low": lo, "ci95_high": hi, "n": 200}
    if p99 is not None:
        lat["p99"] = p99
    rec = {
        "key": f"lenet5|inference|{backend}|{precision}|b{batch}", "spec": spec, "status": "ok",
        "params": 61706, "gmacs": 0.000417, "latency_ms": lat, "warnings": list(warnings),
        "memory": {"peak_rss_delta_bytes": 9 * 2**20},
        "processes": {"statistic": "median", "n": procs, "figures_ms": [lo, median, hi], "median_ms": median,
                      "min_ms": lo, "max_ms": hi, "cv": 0.01, "ci_low_ms": lo, "ci_high_ms": hi,
                      "ci_coverage": 0.75, "modes": None},
    }  # fmt: skip
    if correct is not None:
        rec["accuracy"] = {"kind": "measured", "top1": 100.0 * correct / 450, "correct1": correct, "total": 450,
                           "dataset": {"kind": "digits", "name": "digits test", "split": "test"}}  # fmt: skip
    return rec


def _results(tmp_path: Path) -> Path:
    cases = [
        _case("eager", "fp32", 1.00, 0.95, 1.05, p99=1.4, correct=438),
        _case("onnxrt", "fp32", 0.500, 0.48, 0.52, p99=0.7, correct=438),
        _case("openvino", "fp32", 0.505, 0.49, 0.53, p99=0.8, correct=438),
        _case("onnxrt", "int8", 0.300, 0.29, 0.31, p99=0.5, correct=420),  # 93.3% < 0.99 * 97.3%
        _case("aoti", "fp32", 0.200, 0.19, 0.21, p99=None, correct=438),
        _case("compile", "fp32", 0.100, 0.05, 0.4, p99=0.3, correct=438, warnings=["few samples: 4 < 10"]),
    ]
    path = tmp_path / "constructed.json"
    path.write_text(json.dumps({"schema_version": _version(), "environment": {"cpu_model": "test"}, "suite": {"name": "t"}, "cases": cases}))
    return path


def _version() -> int:
    from cnnbench.results.schema import SCHEMA_VERSION

    return SCHEMA_VERSION


def _select(path, constraints, objectives=("throughput",)):
    configs, left = configs_of([records.load(path)])
    return select(configs, [parse_constraint(c) for c in constraints], [parse_objective(o) for o in objectives], left)


# -- parsing ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, figure, op, bound, factor",
    [
        ("p99<=20ms", "p99", "<=", 20.0, None),
        ("latency<=10ms", "latency", "<=", 10.0, None),
        ("latency<=500us", "latency", "<=", 0.5, None),
        ("p50 < 2s", "p50", "<", 2000.0, None),
        ("qps>=200", "qps", ">=", 200.0, None),
        ("throughput>=1000/s", "throughput", ">=", 1000.0, None),
        ("top1>=0.99*fp32", "top1", ">=", 0.0, 0.99),
        ("top1>=fp32-0.5pp", "top1", ">=", -0.5, 1.0),
        ("top1>=75", "top1", ">=", 75.0, None),
        ("top1>=75%", "top1", ">=", 75.0, None),
        ("memory<=512MiB", "memory", "<=", 512 * 2**20, None),
        ("memory<=1GB", "memory", "<=", 1e9, None),
        ("params<=10M", "params", "<=", 10e6, None),
        ("energy<=0.05J/image", "energy", "<=", 0.05, None),
        ("energy<=50mJ", "energy", "<=", 0.05, None),
        ("size<=20MB", "size", "<=", 20e6, None),
        ("latency<=0.5*fp32", "latency", "<=", 0.0, 0.5),
    ],
)
def test_every_constraint_form_parses(text, figure, op, bound, factor):
    c = parse_constraint(text)
    assert (c.figure, c.op, c.factor) == (figure, op, factor)
    assert c.bound == pytest.approx(bound)


@pytest.mark.parametrize("text", ["p99<=", "top1>=abc", "memory<=-1GiB", "speed>=3", "memory<=5ms", "p99 20ms", "<=3"])
def test_bad_constraints_are_refused(text):
    with pytest.raises(SelectError):
        parse_constraint(text)


@pytest.mark.parametrize("text", ["p99<=", "top1>=abc", "memory<=-1GiB", "speed>=3"])
def test_bad_constraint_is_one_line_and_exit_2(tmp_path, text):
    path = _results(tmp_path)
    proc = subprocess.run([sys.executable, str(ROOT / "bench.py"), "select", str(path), "--constraint", text],
                          capture_output=True, text=True, cwd=ROOT)  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and proc.stderr.startswith("error:"), proc.stderr


def test_intervals():
    lo, hi = wilson(438, 450)
    assert lo < 100 * 438 / 450 < hi and hi - lo < 4
    xs = list(range(1, 1001))
    lo, hi = quantile_ci(xs, 99)
    assert lo <= 990 <= hi


# -- the decision ----------------------------------------------------------------------------------


def test_known_frontier(tmp_path):
    sel = _select(_results(tmp_path), ["p99<=2ms", "top1>=0.99*fp32"])
    status = {v.config.label: v.status for v in sel.verdicts}
    assert status["lenet5 onnxrt int8 b1"] == "infeasible"
    assert status["lenet5 aoti fp32 b1"] == "unknown"  # no p99: never silently feasible
    assert status["lenet5 onnxrt fp32 b1"] == "feasible"
    front = {c.label for c in sel.frontier}
    assert front == {"lenet5 onnxrt fp32 b1", "lenet5 openvino fp32 b1"}  # a tie, not a winner
    assert sel.ties["lenet5 onnxrt fp32 b1"] == ("lenet5 openvino fp32 b1",)
    assert sel.dominated_by["lenet5 eager fp32 b1"] in front
    # the tie rule (simpler backend), not the 1% lower median, picks it; the reason says so
    assert sel.recommended.label == "lenet5 onnxrt fp32 b1"
    assert "tied with lenet5 openvino fp32 b1" in sel.reason and "not by the medians" in sel.reason
    # unreliable, though fastest: left out with its reason
    assert any(label == "lenet5 compile fp32 b1" and "few samples" in why for label, why in sel.left_out)
    assert sel.recommended.label != "lenet5 compile fp32 b1"
    # the int8 case would have won without the accuracy constraint: a nearest miss, by how much
    miss = {m.config.label: m for m in sel.misses}
    assert "lenet5 onnxrt int8 b1" in miss
    assert miss["lenet5 onnxrt int8 b1"].without == "top1>=0.99*fp32"
    why = miss["lenet5 onnxrt int8 b1"].checks[0].why
    assert "misses by" in why and "pp" in why


def test_tie_goes_the_other_way_by_rule_not_median(tmp_path):
    """Swap which of the tied pair has the lower median: the recommendation does not move."""
    path = _results(tmp_path)
    data = json.loads(path.read_text())
    data["cases"][1]["latency_ms"]["median"], data["cases"][2]["latency_ms"]["median"] = 0.505, 0.500
    path.write_text(json.dumps(data))
    sel = _select(path, ["p99<=2ms", "top1>=0.99*fp32"])
    assert sel.recommended.label == "lenet5 onnxrt fp32 b1"


def test_separated_winner_and_multi_objective(tmp_path):
    sel = _select(_results(tmp_path), ["p99<=2ms"], ["latency"])
    assert sel.recommended.label == "lenet5 onnxrt int8 b1"  # separates from every other
    assert "separates" in sel.reason
    sel2 = _select(_results(tmp_path), ["p99<=2ms"], ["latency", "top1"])
    front = {c.label for c in sel2.frontier}
    # int8 is faster, fp32 onnxrt more accurate (Wilson intervals of 420 vs 438 of 450 separate)
    assert {"lenet5 onnxrt int8 b1", "lenet5 onnxrt fp32 b1"} <= front
    assert "lenet5 eager fp32 b1" not in front


def test_nothing_feasible_exit_1_and_json(tmp_path):
    path = _results(tmp_path)
    cmd = [sys.executable, str(ROOT / "bench.py"), "select", str(path)]
    proc = subprocess.run([*cmd, "--constraint", "p99<=0.01ms", "--json"], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 1, proc.stderr
    out = json.loads(proc.stdout)
    assert out["feasible"] == [] and out["recommended"] is None
    proc = subprocess.run([*cmd, "-c", "p99<=2ms", "-c", "top1>=0.99*fp32"], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert "recommended: lenet5 onnxrt fp32 b1" in proc.stdout
    assert "tie with" in proc.stdout and "nearest misses" in proc.stdout


def test_model_report_answers_the_course_questions(tmp_path):
    pytest.importorskip("matplotlib")
    from cnnbench.select.modelreport import write_report

    path = _results(tmp_path)
    sel = _select(path, ["p99<=2ms", "top1>=0.99*fp32"])
    written = write_report(sel, [records.load(path)], str(tmp_path / "rep"))
    assert [p.name for p in written] == ["frontier.png", "select.md", "select.html"]
    assert written[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = written[1].read_text()
    for needle in ("## Selected: lenet5 onnxrt fp32 b1", "**Parameters**: 61.7 k", "**MACs per image**",
                   "**Latency**: p50", "p99", "**Throughput**", "**Memory**", "measured on digits test",
                   "**Training time**: not measured", "**Hardware and software**: CPU test",
                   "**Not measured**", "## Alternatives considered", "dominated by", "misses by",
                   "unreliable timing: few samples", "unknown: no p99"):  # fmt: skip
        assert needle in md, needle
    html_text = written[2].read_text()
    assert "data:image/png;base64," in html_text and "<script" not in html_text


def test_report_select_writes_the_model_report(tmp_path):
    pytest.importorskip("matplotlib")
    path = _results(tmp_path)
    out = tmp_path / "rep"
    cmd = [sys.executable, str(ROOT / "bench.py"), "report", str(path), "--out", str(out), "--format", "md"]
    bad = subprocess.run([*cmd, "--select", "p99<="], capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode == 2 and not out.exists(), bad.stderr  # refused before anything is written
    proc = subprocess.run([*cmd, "--select", "p99<=2ms,top1>=0.99*fp32"], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert (out / "report.md").exists() and (out / "frontier.png").exists()
    assert "## Selected: lenet5 onnxrt fp32 b1" in (out / "select.md").read_text()
    section = (out / "report.md").read_text().split("## Model selection", 1)[1].split("\n## ", 1)[0]
    assert "**Selected:** lenet5 onnxrt fp32 b1" in section and "select.md" in section  # the report points at it


def test_report_headlines_follow_the_select_rules(tmp_path):
    """An unreliable case never drives the summary or an alternative; a faster alternative must
    separate beyond both intervals; the summary names the precision."""
    pytest.importorskip("matplotlib")
    from cnnbench.report import write_report

    def other(model, median, lo, hi, *, warnings=(), precision="fp32", backend="eager"):
        c = _case(backend, precision, median, lo, hi, p99=median * 1.5, correct=440, warnings=warnings)
        c["spec"]["model"] = model
        c["key"] = c["key"].replace("lenet5", model)
        return c

    cases = [
        _case("eager", "fp32", 1.00, 0.95, 1.05, p99=1.4, correct=438),
        other("fastbad", 0.10, 0.05, 0.9, warnings=["few samples: 4 < 10"]),  # faster, unreliable
        other("overlap", 0.97, 0.90, 1.02),  # 3% faster, intervals overlap: not "faster"
        other("clear", 0.50, 0.48, 0.52),  # faster beyond doubt
        _case("onnxrt", "int8", 0.30, 0.29, 0.31, p99=0.5, correct=420),
    ]
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"schema_version": _version(), "environment": {"cpu_model": "test"}, "suite": {"name": "t"}, "cases": cases}))
    write_report([str(path)], str(tmp_path / "out"), formats=("md",))
    md = (tmp_path / "out" / "report.md").read_text()
    card = md[md.index("### lenet5"):]
    card = card[: card.index("\n### ", 5)] if "\n### " in card[5:] else card
    assert "**clear** — faster, at least as accurate" in card
    assert "**overlap** — faster" not in card and "**fastbad** — faster" not in card
    assert "0.300 ms (onnxrt int8, batch 1)" in md  # the summary says the figure was int8
    bad = md[md.index("### fastbad"):]
    assert "not compared: this model's case at eager, batch 1, fp32" in bad and "few samples" in bad
    assert "none reliable" in md  # fastbad's only case is unreliable: no summary figure from it


def test_int8_rows_note_low_agreement_and_no_fp32_peak_share():
    from cnnbench.report.model import rows_of_records

    fp32 = _case("onnxrt", "fp32", 0.5, 0.48, 0.52, p99=0.7)
    int8 = _case("onnxrt", "int8", 0.3, 0.29, 0.31, p99=0.5)
    for c in (fp32, int8):
        c["parity"] = {"ok": True, "max_abs_err": 0.01, "max_rel_err": 0.01, "tolerance": 0.1, "top1_agreement": 0.75}
    rows = rows_of_records([fp32, int8])
    assert all("low top-1 agreement" in r.parity_label for r in rows)
    by = {r.precision: dataclasses.replace(r, peak_gflops=100.0) for r in rows}
    assert by["fp32"].pct_of_peak is not None
    assert by["int8"].pct_of_peak is None  # an fp32 GEMM peak is not an int8 case's ceiling


def test_each_backend_and_precision_has_one_style_everywhere():
    from cnnbench.report.charts import series_style

    pairs = [(b, p) for b in ("eager", "compile", "onnxrt", "openvino", "aoti", "tensorrt", "compile[mode=max-autotune]")
             for p in ("fp32", "fp16", "bf16", "int8")]  # fmt: skip
    styles = [series_style(b, p) for b, p in pairs]
    assert len(set(styles)) == len(pairs)  # every backend x precision its own colour and marker
    assert series_style("onnxrt", "int8") == series_style("onnxrt", "int8")  # stable, whatever the plot


def test_tail_latency_in_show_wide_and_the_report_tables(tmp_path):
    pytest.importorskip("matplotlib")
    from cnnbench.report import write_report

    path = _results(tmp_path)
    data = json.loads(path.read_text())
    data["cases"][1]["latency_ms"].update({"p90": 0.61, "p99": 0.7})
    path.write_text(json.dumps(data))
    proc = subprocess.run([sys.executable, str(ROOT / "bench.py"), "show", str(path), "--wide"],
                          capture_output=True, text=True, cwd=ROOT, env={**os.environ, "COLUMNS": "250"})  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "p99 ms" in proc.stdout and "0.610" in proc.stdout and "0.700" in proc.stdout
    write_report([str(path)], str(tmp_path / "out"), formats=("md",))
    md = (tmp_path / "out" / "report.md").read_text()
    assert "Tail ms (p90 / p99)" in md and "| 0.610 / 0.700 |" in md


def test_published_accuracy_is_labelled_and_int8_has_none(tmp_path):
    from cnnbench.select.render import render_text

    path = _results(tmp_path)
    data = json.loads(path.read_text())
    for c in data["cases"]:
        c.pop("accuracy", None)
        c["published"] = {"acc@1": 98.0, "dataset": "digits", "weights": "paper"}
    path.write_text(json.dumps(data))
    sel = _select(path, ["top1>=75"])
    text = "\n".join(render_text(sel))
    assert "top1 98.00% (published, not measured)" in text
    assert {v.config.label: v.status for v in sel.verdicts}["lenet5 onnxrt int8 b1"] == "unknown"  # fp32 weights' figure


def test_model_report_gives_training_time_when_a_training_case_was_measured(tmp_path):
    pytest.importorskip("matplotlib")
    from cnnbench.select.modelreport import report_lines

    path = _results(tmp_path)
    data = json.loads(path.read_text())
    train = _case("eager", "fp32", 4.0, 3.9, 4.1, p99=5.0, batch=32)
    train["spec"]["mode"] = "train"
    train["key"] += "|train"
    train["train"] = {"time_per_epoch": {"basis": "median step x steps", "cifar10": {"images": 50000, "steps": 1563, "seconds": 6.252}}}
    data["cases"].append(train)
    path.write_text(json.dumps(data))
    sel = _select(path, ["p99<=2ms"])
    assert all("train" not in v.config.label for v in sel.verdicts)  # never a deployment candidate
    md = "\n".join(report_lines(sel, [records.load(path)], chart=None))
    assert "**Training time**: eager fp32 b32 on cpu: 4.00 ms per step, per epoch: cifar10 6.25 s" in md


def test_several_files_and_machines(tmp_path):
    a = _results(tmp_path)
    data = json.loads(a.read_text())
    data["environment"] = {"cpu_model": "other", "machine_fingerprint": "m2"}
    b = tmp_path / "other.json"
    b.write_text(json.dumps(data))
    proc = subprocess.run([sys.executable, str(ROOT / "bench.py"), "select", str(a), str(b), "-c", "p99<=2ms", "--json"],
                          capture_output=True, text=True, cwd=ROOT)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "measured on 2 machines" in proc.stderr
    labels = [c["label"] for c in json.loads(proc.stdout)["configurations"]]
    assert len(labels) == len(set(labels)) == 12  # the same case from two files, told apart by its file


def test_relative_latency_bound_uses_fp32_eager_at_the_same_batch(tmp_path):
    sel = _select(_results(tmp_path), ["latency<=0.5*fp32"])
    status = {v.config.label: v.status for v in sel.verdicts}
    assert status["lenet5 onnxrt fp32 b1"] == "feasible"  # 0.500 <= 0.5 x 1.00
    assert status["lenet5 openvino fp32 b1"] == "infeasible"  # 0.505
    why = next(c.why for c in sel.verdict("lenet5 openvino fp32 b1").checks)
    assert "(= 0.5*fp32 = 0.500 ms)" in why
