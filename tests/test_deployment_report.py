"""The report's deployment table, from a golden results file with deployment cases added.

The expected numbers are computed here from the records (raw samples through `statistics`),
never copied from the report's output.
"""

from __future__ import annotations

import copy
import json
import statistics
from pathlib import Path

import pytest

from cnnbench.report import write_report
from cnnbench.core.units import fmt_ms, fmt_rate

GOLDEN = Path(__file__).parent / "data" / "report" / "host_a.json"

pytest.importorskip("matplotlib")


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _derived(case: dict, backend: str, precision: str, *, scale: float, info: dict, accuracy=None, status="ok") -> dict:
    c = copy.deepcopy(case)
    c["spec"]["backend"], c["spec"]["precision"] = backend, precision
    c["key"] = c["key"].replace("|onnxrt|fp32|", f"|{backend}|{precision}|")
    c["samples_ms"] = [s * scale for s in c["samples_ms"]]
    c["backend_info"] = info
    c["status"] = status
    if status != "ok":
        c["error"] = "Unsupported: int8 on aoti is PT2E with the X86InductorQuantizer: x86 CPUs only"
        for k in ("samples_ms", "latency_ms", "throughput_per_s", "first_call_ms", "warmup_ms"):
            c[k] = None if k != "samples_ms" else []
    else:
        med = statistics.median(c["samples_ms"])
        c["latency_ms"] = {**c["latency_ms"], "median": med}
        c["throughput_per_s"] = c["spec"]["batch_size"] / med * 1e3
    for run in c.get("runs") or []:
        run["samples_ms"] = list(c["samples_ms"])
    if accuracy is not None:
        c["accuracy"] = accuracy
    return c


@pytest.fixture(scope="module")
def deploy_md(tmp_path_factory):
    data = json.loads(GOLDEN.read_text(encoding="utf-8"))
    onnx = [c for c in data["cases"] if c["spec"]["model"] == "resnet18" and c["spec"]["backend"] == "onnxrt"]
    by_batch = {c["spec"]["batch_size"]: c for c in onnx}
    added = []
    for b, c in by_batch.items():
        fp32_acc = next(x["accuracy"] for x in data["cases"] if x["spec"]["model"] == "resnet18" and x.get("accuracy"))
        int8_acc = {**fp32_acc, "top1": fp32_acc["top1"] - 0.5, "correct1": fp32_acc["correct1"] - 50,
                    "fp32_eager": {"top1": fp32_acc["top1"]}, "change_vs_fp32_eager": {"top1_pp": -0.5}}  # fmt: skip
        common = {"export_ms": 5000.0, "session_create_ms": 200.0, "export_cached": False,
                  "execution_devices": ["CPU"]}  # fmt: skip
        added.append(_derived(c, "openvino", "fp32", scale=0.9, info={**common, "artifact_bytes": 46_800_000}))
        added.append(_derived(c, "openvino", "int8", scale=0.4, accuracy=int8_acc, info={
            **common, "artifact_bytes": 11_800_000,
            "calibration": {"label": "calibrated on random data (accuracy measured on the dataset)"}}))  # fmt: skip
        if b == 1:
            added.append(_derived(c, "aoti", "int8", scale=1, info={}, status="unsupported"))
    data["cases"] += added
    path = tmp_path_factory.mktemp("deploy") / "deploy.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    out = tmp_path_factory.mktemp("deploy_out")
    write_report([path], out, formats="md")
    return (out / "report.md").read_text(encoding="utf-8"), added, by_batch


def _table(md: str, model: str) -> dict[tuple[str, str], list[str]]:
    start = md.index(f"### Deployment: {model}\n")
    lines = md[start:].splitlines()[1:]
    rows = {}
    for ln in lines:
        if ln.startswith("#"):
            break
        if ln.startswith("|") and not ln.startswith("| Backend") and not set(ln) <= set("|-: "):
            cells = _cells(ln)
            rows[(cells[0], cells[1])] = cells
    return rows


def test_one_row_per_backend_and_precision_with_latency_b1_and_best_throughput(deploy_md):
    md, added, _ = deploy_md
    rows = _table(md, "resnet18")
    assert {("eager", "fp32"), ("onnxrt", "fp32"), ("openvino", "fp32"), ("openvino", "int8"), ("aoti", "int8")} <= set(rows)
    ov8 = [c for c in added if c["spec"]["backend"] == "openvino" and c["spec"]["precision"] == "int8"]
    b1 = next(c for c in ov8 if c["spec"]["batch_size"] == 1)
    row = rows[("openvino", "int8")]
    golden = json.loads(GOLDEN.read_text(encoding="utf-8"))["cases"]
    eager = next(c for c in golden if (c["spec"]["model"], c["spec"]["backend"], c["spec"]["precision"], c["spec"]["batch_size"], c["status"])
                 == ("resnet18", "eager", "fp32", 1, "ok"))  # fmt: skip
    speedup = eager["latency_ms"]["median"] / statistics.median(b1["samples_ms"])
    assert row[2] == f"{fmt_ms(statistics.median(b1['samples_ms']))} ms ({speedup:.2f}× vs fp32 eager)"  # int8 over fp32 eager
    assert rows[("eager", "fp32")][2].endswith(" ms")  # the reference itself has none
    best = max(ov8, key=lambda c: c["spec"]["batch_size"] / statistics.median(c["samples_ms"]))
    rate = best["spec"]["batch_size"] / statistics.median(best["samples_ms"]) * 1e3
    assert row[3] == f"{fmt_rate(rate)}/s (batch {best['spec']['batch_size']})"


def test_artefact_setup_accuracy_and_calibration_label_are_shown(deploy_md):
    md, _, _ = deploy_md
    rows = _table(md, "resnet18")
    ov8, ov32 = rows[("openvino", "int8")], rows[("openvino", "fp32")]
    assert ov8[4] != ov32[4] and ov8[4] != "—"  # 11.8 MB vs 46.8 MB
    assert ov8[5] == f"{fmt_ms(5200.0)} ms"  # export + session
    assert "measured" in ov8[6] and "-0.50 pp vs fp32 eager" in ov8[6]
    assert "calibrated on random data" in ov8[7] and "ran on CPU" in ov8[7]


def test_a_combination_that_could_not_run_shows_its_reason_not_numbers(deploy_md):
    md, _, _ = deploy_md
    row = _table(md, "resnet18")[("aoti", "int8")]
    assert row[2] == row[3] == "—" and row[7].startswith("unsupported: ") and "x86 CPUs only" in row[7]


def test_reports_without_deployment_formats_have_no_deployment_section(tmp_path):
    write_report([GOLDEN], tmp_path, formats="md")
    assert "## Deployment" not in (tmp_path / "report.md").read_text(encoding="utf-8")


def test_results_csv_carries_the_deployment_fields(deploy_md, tmp_path):
    import csv

    _, added, _ = deploy_md
    data = json.loads(GOLDEN.read_text(encoding="utf-8"))
    data["cases"] += added
    path = tmp_path / "deploy.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    write_report([path], tmp_path / "out", formats="csv")
    with open(tmp_path / "out" / "results.csv", newline="", encoding="utf-8") as fh:
        rows = {r["key"]: r for r in csv.DictReader(fh)}
    for c in added:
        row = rows[c["key"]]
        info = c["backend_info"]
        if c["status"] == "ok":
            assert int(row["artifact_bytes"]) == info["artifact_bytes"] and row["artifact_cached"] == "False"
            assert row["ran_on"] == "CPU"
            assert row["calibration"] == (info.get("calibration") or {}).get("label", "")
        else:  # nothing ran: no artefact, no device
            assert row["artifact_bytes"] == row["ran_on"] == "" and row["status"] == "unsupported"
