"""Case records: what `build_record` derives from a worker's raw runs, and the one rule for a
backend's setup time."""

from __future__ import annotations

import pytest

from cnnbench.report.console import render_table, table_rows
from cnnbench.results.format import build_record, setup_time
from cnnbench.core.spec import CaseSpec, Measure


def spec(backend: str = "eager", min_samples: int = 10) -> CaseSpec:
    return CaseSpec(model="m", batch_size=4, input_size=(1, 8, 8), backend=backend, measure=Measure(min_samples=min_samples))


def ok_run(samples: list[float]) -> dict:
    return {"status": "ok", "error": None, "samples_ms": samples, "warmup_ms": [9.0], "first_call_ms": 20.0}


def test_steady_samples_give_statistics_and_no_warning():
    samples = [2.0 + 0.01 * (i % 5) for i in range(40)]
    rec = build_record(spec(), [ok_run(samples)])
    assert rec["status"] == "ok" and rec["warnings"] == []
    assert rec["latency_ms"]["median"] == pytest.approx(2.02) and rec["latency_ms"]["n"] == 40
    assert rec["throughput_per_s"] == pytest.approx(4 / (2.02 / 1000))
    assert rec["warmup_ms"] == [9.0] and 9.0 not in rec["samples_ms"]  # warmup never a sample


def test_high_dispersion_and_few_samples_are_visible_warnings_not_silent_numbers():
    rec = build_record(spec(min_samples=10), [ok_run([1.0, 1.0, 1.5, 2.0, 2.0, 3.0])])
    assert any(w.startswith("high dispersion: IQR is") and "(> 10%)" in w for w in rec["warnings"])
    assert "few samples: 6 < 10" in rec["warnings"]
    assert rec["latency_ms"]["median"] == pytest.approx(1.75)  # the number is still there, with its warnings


def test_a_parity_failure_keeps_its_timings_in_the_record_but_they_are_shown_invalid():
    run = {**ok_run([3.0] * 20), "status": "fail_accuracy", "error": "parity: rel err 0.2 > 0.001"}
    rec = build_record(spec("onnxrt"), [run])
    assert rec["status"] == "fail_accuracy" and rec["error"].startswith("parity")
    assert rec["samples_ms"] == [3.0] * 20 and rec["latency_ms"]["median"] == 3.0 and rec["repeat_medians_ms"] == [3.0]
    (row,) = table_rows([rec])
    assert row.case.valid is False and row.case.throughput_per_s is None and row.case.speedup_vs_eager is None
    from rich.console import Console

    console = Console(width=200, record=True, color_system=None)
    console.print(render_table([rec]))
    assert "(invalid)" in console.export_text()


def test_a_failed_run_has_no_timings():
    rec = build_record(spec(), [{"status": "timeout", "error": "killed after 5 s"}])
    assert rec["status"] == "timeout" and rec["samples_ms"] == [] and rec["latency_ms"] is None


def test_setup_time_is_compile_in_the_first_call_or_export_plus_session():
    compiled = {"first_call_ms": 15000.0, "backend_info": {"compile_in_first_call": True}}
    assert setup_time(compiled) == (15000.0, "compile (first call)")
    fresh = {"first_call_ms": 2.0, "backend_info": {"export_ms": 6400.0, "session_create_ms": 120.0, "export_cached": False}}
    assert setup_time(fresh) == (6520.0, "export + session")
    cached = {"first_call_ms": 2.0, "backend_info": {**fresh["backend_info"], "export_cached": True}}
    assert setup_time(cached)[0] == 6520.0 and "cached" in setup_time(cached)[1]
    assert setup_time({"first_call_ms": 3.0, "backend_info": {}}) == (None, None)  # eager sets nothing up


def test_the_table_groups_each_model_and_batch_with_eager_first():
    def rec(model, batch, backend):
        s = CaseSpec(model=model, batch_size=batch, input_size=(1, 8, 8), backend=backend)
        return build_record(s, [ok_run([1.0] * 20)])

    # measured in matrix order: all eager cases first, then the other backends
    records = [rec("a", 1, "eager"), rec("a", 8, "eager"), rec("b", 1, "eager"), rec("a", 1, "onnxrt"), rec("a", 8, "compile")]
    from cnnbench.report.console import grouped

    order = [(r["spec"]["model"], r["spec"]["batch_size"], r["spec"]["backend"]) for r in grouped(records)]
    assert order == [("a", 1, "eager"), ("a", 1, "onnxrt"), ("a", 8, "eager"), ("a", 8, "compile"), ("b", 1, "eager")]


def test_cold_start_is_the_first_call_plus_what_was_set_up_before_it():
    from cnnbench.results.format import cold_start_ms

    assert cold_start_ms({"first_call_ms": 15000.0, "backend_info": {"compile_in_first_call": True}}) == 15000.0
    onnx = {"first_call_ms": 2.0, "backend_info": {"export_ms": 6400.0, "session_create_ms": 120.0, "export_cached": True}}
    assert cold_start_ms(onnx) == 6522.0  # the export's own time, cached or not
    assert cold_start_ms({"first_call_ms": 3.0, "backend_info": {}}) == 3.0
    assert cold_start_ms({"status": "timeout"}) is None
