"""The compile and onnxrt backends, and parity against eager fp32.

Fast tests run backends in this process on LeNet-size models; the slow ones run real worker
processes through the CLI (a cold torch.compile and a dynamo export are seconds each).
"""

from __future__ import annotations

import json
import statistics
import tempfile
from pathlib import Path

import pytest
import torch

from cnnbench import backends as backends_pkg
from cnnbench.core.errors import ExportFailed, Unsupported
from cnnbench.measure.parity import TOLERANCES, compare_outputs, tolerance_for
from cnnbench.core.spec import CaseSpec, Measure

ROOT = Path(__file__).resolve().parent.parent
SUITES = ROOT / "suites"
FIXTURE = "tests.fixtures.backend_fixtures"
QUICK = Measure(warmup=1, min_time_s=0.05, max_time_s=0.3, min_samples=3, timeout_s=300)


def lenet(backend: str = "eager", *, batch: int = 1, precision: str = "fp32", **options) -> CaseSpec:
    return CaseSpec(
        model="lenet5", batch_size=batch, input_size=(1, 32, 32), backend=backend, precision=precision,
        threads=1, options=tuple(sorted(options.items())), measure=QUICK,
    )


def tiny(backend: str, source: str = "tests.fixtures.usermodels:tiny", **options) -> CaseSpec:
    return CaseSpec(
        model=source.rpartition(":")[2], source=source, batch_size=2, input_size=(1, 8, 8), backend=backend,
        threads=1, options=tuple(sorted(options.items())), measure=QUICK,
    )


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    """A private CNNBENCH_CACHE_DIR (counts and ONNX exports) for this test and its workers."""
    path = tmp_path / "cache"
    monkeypatch.setenv("CNNBENCH_CACHE_DIR", str(path))
    return path


def prepare(spec: CaseSpec, model=None, workdir=None):
    from cnnbench.backends import get_backend
    from cnnbench.backends.common import example_batch
    from cnnbench.models.registry import build_model

    torch.manual_seed(0)
    if model is None:
        model = build_model(spec.model, source=spec.source, input_size=spec.input_size)
    example = example_batch(spec)
    prepared = get_backend(spec.backend).prepare(model, example, spec, workdir=workdir or tempfile.mkdtemp())
    return model, example, prepared


# ---------------------------------------------------------------------------------------------
# Parity arithmetic


def test_identical_outputs_pass_and_top1_is_counted_per_row():
    ref = torch.randn(4, 10, generator=torch.Generator().manual_seed(0))
    p = compare_outputs(ref, ref.clone(), tolerance=1e-3)
    assert p["ok"] and p["max_abs_err"] == 0 and p["max_rel_err"] == 0
    assert p["top1_agreement"] == 1.0 and p["rows"] == 4


def test_error_is_relative_to_the_output_scale_not_elementwise():
    ref = torch.tensor([[1e-9, 2.0], [3.0, -4.0]])
    near = ref + torch.tensor([[1e-4, 0.0], [0.0, 0.0]])  # huge element-wise, tiny vs scale 4
    p = compare_outputs(ref, near, tolerance=1e-3)
    assert p["scale"] == 4.0 and p["max_rel_err"] == pytest.approx(2.5e-5) and p["ok"]
    far = ref * 1.01
    q = compare_outputs(ref, far, tolerance=1e-3)
    assert not q["ok"] and q["max_rel_err"] == pytest.approx(0.01, rel=1e-3)
    assert "tolerance 0.001" in q["reason"]


def test_a_flipped_argmax_lowers_top1_agreement():
    ref = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    act = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    assert compare_outputs(ref, act, tolerance=1e-3)["top1_agreement"] == 0.5


def test_nan_shape_and_count_mismatches_fail_with_a_reason():
    ref = torch.ones(2, 3)
    assert "NaN" in compare_outputs(ref, torch.full((2, 3), float("nan")), tolerance=1)["reason"]
    assert "shape" in compare_outputs(ref, torch.ones(3, 2), tolerance=1)["reason"]
    assert "output tensor(s)" in compare_outputs(ref, [ref, ref], tolerance=1)["reason"]


def test_an_all_zero_reference_only_matches_zeros():
    zero = torch.zeros(2, 5)  # e.g. vit_* with its zero-initialised head and random weights
    assert compare_outputs(zero, zero.clone(), tolerance=1e-3)["ok"]
    p = compare_outputs(zero, zero + 1e-6, tolerance=1e-3)
    assert not p["ok"] and p["max_rel_err"] is None and "all zero" in p["reason"]


def test_tolerances_loosen_with_precision_and_for_tf32_on_cuda():
    assert TOLERANCES["fp32"] < TOLERANCES["fp16"] < TOLERANCES["bf16"]
    assert tolerance_for("fp32", "cpu") == 1e-3 < tolerance_for("fp32", "cuda") < tolerance_for("fp16", "cuda")


# ---------------------------------------------------------------------------------------------
# Parity in the worker


def test_a_perturbed_backend_is_caught_as_fail_accuracy_and_its_timings_stay(monkeypatch, cache_dir):
    from cnnbench.report.console import table_rows
    from cnnbench.results.format import build_record
    from cnnbench.measure.worker import run_case

    monkeypatch.setitem(backends_pkg.BACKEND_MODULES, "perturbed", FIXTURE)
    spec = lenet("perturbed", batch=4)
    out = run_case(spec, workdir=tempfile.mkdtemp())
    assert out["status"] == "fail_accuracy"
    assert out["parity"]["ok"] is False and out["parity"]["max_rel_err"] == pytest.approx(0.05, rel=1e-3)
    assert "parity failed" in out["error"] and "of the output scale" in out["error"]
    assert out["samples_ms"], "the timings stay in the worker's result"
    record = build_record(spec, [out])
    assert record["status"] == "fail_accuracy" and record["parity"]["ok"] is False
    assert record["runs"][0]["samples_ms"] == out["samples_ms"], "and in the results file"
    assert table_rows([record])[0].case.valid is False


def test_parity_is_stored_for_non_eager_and_low_precision_eager_only(cache_dir):
    from cnnbench.measure.worker import run_case

    eager = run_case(lenet("eager"), workdir=tempfile.mkdtemp())
    assert eager["status"] == "ok" and "parity" not in eager
    bf16 = run_case(lenet("eager", batch=4, precision="bf16"), workdir=tempfile.mkdtemp())
    assert bf16["status"] == "ok", bf16.get("error")
    p = bf16["parity"]
    assert p["ok"] and p["tolerance"] == TOLERANCES["bf16"] and 0 < p["max_rel_err"] < TOLERANCES["bf16"]
    assert p["rows"] == 4 and p["reference"].startswith("eager fp32 on cpu")


# ---------------------------------------------------------------------------------------------
# onnxrt in this process (legacy exporter where speed matters; the dynamo one in the slow tests)


def test_onnxrt_records_the_provider_the_session_really_uses(cache_dir):
    import onnxruntime as ort

    spec = tiny("onnxrt", exporter="legacy")
    model, example, prepared = prepare(spec)
    info = prepared.info
    fresh = ort.InferenceSession(info["export_path"], providers=["CPUExecutionProvider"])
    assert info["provider"] == fresh.get_providers()[0] == "CPUExecutionProvider"
    assert info["provider_requested"] == "CPUExecutionProvider" and info["io_binding"] is False
    assert info["session_options"]["intra_op_num_threads"] == 1
    assert info["session_options"]["graph_optimization_level"] == "ORT_ENABLE_ALL"
    assert info["exporter"] == "legacy" and isinstance(info["opset"], int)
    out = prepared.run()
    assert isinstance(out[0], type(example.numpy())) and out[0].shape == (2, 10)
    assert prepared.after_timing() == []


def test_a_cuda_request_that_falls_back_to_cpu_is_never_labelled_cuda(cache_dir, monkeypatch):
    """ORT's own silent fallback: the CUDA provider is asked for on a machine where it cannot
    load (no GPU libraries here), and the session quietly runs on CPU."""
    from cnnbench.backends import onnxrt

    if onnxrt.cuda_usable():
        pytest.skip("CUDA really works here")
    monkeypatch.setattr(onnxrt, "cuda_usable", lambda: True)
    monkeypatch.setattr(onnxrt, "check_device", lambda device: None)
    spec = tiny("onnxrt", exporter="legacy").replace(device="cuda")
    with pytest.raises(Unsupported, match="asked for CUDAExecutionProvider but the session runs on CPUExecutionProvider"):
        prepare(spec)
    # and with no CUDA provider in the build at all: refused the same way, with the reason
    monkeypatch.setattr(onnxrt, "cuda_usable", lambda: False)
    with pytest.raises(Unsupported, match="needs the CUDA provider, which this onnxruntime build lacks"):
        prepare(spec)


def test_onnxrt_refuses_what_it_cannot_run_with_reasons(cache_dir):
    for spec, words in (
        (tiny("onnxrt").replace(precision="bf16"), "bf16"),
        (tiny("onnxrt").replace(precision="fp16"), "CUDA provider"),
        (tiny("onnxrt").replace(channels_last=True), "channels_last"),
    ):
        with pytest.raises(Unsupported, match=words):
            prepare(spec)


def test_the_fp16_graph_for_the_cuda_provider_keeps_fp32_inputs_and_outputs(cache_dir, tmp_path):
    """The conversion runs anywhere (the CUDA provider that runs the graph does not): weights in
    fp16, inputs and outputs fp32 as with autocast, the fp32 export reused from the cache."""
    import onnx

    from cnnbench.backends.onnxrt import export_onnx
    from cnnbench.models.registry import build_model

    spec = tiny("onnxrt", exporter="legacy").replace(precision="fp16")
    torch.manual_seed(0)
    model = build_model(spec.model, source=spec.source, input_size=spec.input_size).eval()
    fp32 = export_onnx(model, spec, exporter="legacy", opset=None, precision="fp32", log_path=tmp_path / "log")
    fp16 = export_onnx(model, spec, exporter="legacy", opset=None, precision="fp16", log_path=tmp_path / "log")
    assert fp16["path"] != fp32["path"] and fp16["export_cached"] is False
    assert fp16["export_ms"] == pytest.approx(fp32["export_ms"] + fp16["fp16_convert_ms"])
    graph = onnx.load(fp16["path"]).graph
    assert {t.data_type for t in graph.initializer} == {onnx.TensorProto.FLOAT16}
    assert [i.type.tensor_type.elem_type for i in [*graph.input, *graph.output]] == [onnx.TensorProto.FLOAT] * 2
    again = export_onnx(model, spec, exporter="legacy", opset=None, precision="fp16", log_path=tmp_path / "log")
    assert again["export_cached"] is True and again["path"] == fp16["path"]


def test_the_export_cache_is_reused_across_batch_sizes_and_keyed_by_weights(cache_dir):
    first = prepare(tiny("onnxrt", exporter="legacy"))[2].info
    assert first["export_cached"] is False and first["export_ms"] > 0
    other_batch = prepare(tiny("onnxrt", exporter="legacy").replace(batch_size=5))[2].info
    assert other_batch["export_cached"] is True
    assert other_batch["export_ms"] == first["export_ms"] and other_batch["export_path"] == first["export_path"]
    torch.manual_seed(1)
    from tests.fixtures.usermodels import tiny as build_tiny

    reseeded = prepare(tiny("onnxrt", exporter="legacy"), model=build_tiny())[2].info
    assert reseeded["export_cached"] is False and reseeded["export_path"] != first["export_path"]
    assert len(list((cache_dir / "onnx").glob("*.onnx"))) == 2


def test_an_op_the_exporter_rejects_is_export_failed_with_its_reason_and_no_prints(cache_dir, capfd):
    from cnnbench.measure.worker import classify_exception

    workdir = tempfile.mkdtemp()
    spec = tiny("onnxrt", source=f"{FIXTURE}:running_max_net", exporter="legacy")
    with pytest.raises(ExportFailed) as err:
        prepare(spec, workdir=workdir)
    assert classify_exception(err.value) == "export_failed"
    assert str(err.value).startswith("legacy exporter: ") and "cummax" in str(err.value)
    assert "\n" not in str(err.value)
    printed = capfd.readouterr()
    assert "Torch IR graph" not in printed.out + printed.err  # the exporter's dump went to the log
    assert "Torch IR graph" in (Path(workdir) / "onnx-export.log").read_text()
    assert not list((cache_dir / "onnx").glob("*.onnx")), "nothing half-written is left in the cache"


@pytest.mark.parametrize("exporter", ["legacy", pytest.param("dynamo", marks=pytest.mark.slow)])
def test_a_graph_with_a_baked_in_batch_is_refused_not_cached(cache_dir, exporter):
    spec = tiny("onnxrt", source=f"{FIXTURE}:BatchAsConstant", exporter=exporter)
    with pytest.raises(ExportFailed, match="batch") as err:
        prepare(spec)
    assert str(err.value).startswith(f"{exporter} exporter: ")
    assert not list((cache_dir / "onnx").glob("*.onnx"))


def test_the_dynamo_exporters_reason_is_its_exception_summary_line():
    from cnnbench.backends.onnxrt import export_error_message

    text = (
        "Failed to convert the exported program to an ONNX model. \x1b[96mThis is step 3/3\x1b[0m of exporting.\n"
        "- If there is a missing ONNX function, implement it.\n\n## Exception summary\n\n"
        "<class 'torch.onnx._internal.exporter._errors.DispatchError'>: No ONNX function found for "
        "<OpOverload(op='aten.cummax', overload='default')>.\n⬆️\n<class 'x.ConversionError'>: Error when translating"
    )
    msg = export_error_message(RuntimeError(text))
    assert msg == "DispatchError: No ONNX function found for <OpOverload(op='aten.cummax', overload='default')>."
    assert export_error_message(ValueError("Exporting the operator 'aten::cummax' to ONNX\nmore")).endswith(
        "Exporting the operator 'aten::cummax' to ONNX"
    )


# ---------------------------------------------------------------------------------------------
# compile in this process, with dynamo's cheap "eager" backend standing in for inductor where
# the test is about our bookkeeping, not about inductor


@pytest.fixture
def dynamo_eager_backend(monkeypatch):
    import torch._dynamo

    real = torch.compile

    def compile_eager(model, **kwargs):
        kwargs.pop("mode", None)
        return real(model, backend="eager", **kwargs)

    monkeypatch.setattr(torch, "compile", compile_eager)
    yield
    torch._dynamo.reset()


def test_a_recompile_after_the_first_call_is_flagged_with_its_reason(dynamo_eager_backend, tmp_path):
    from tests.fixtures.backend_fixtures import Switchable

    model = Switchable()
    spec = tiny("compile", source=f"{FIXTURE}:Switchable")
    _, _, prepared = prepare(spec, model=model, workdir=str(tmp_path))
    prepared.run()
    prepared.run()
    assert prepared.after_timing() == [] and prepared.info["recompiles_in_timed_region"] == 0
    model.double = True  # a guard on this attribute fails: dynamo compiles again
    prepared.run()
    (warning,) = prepared.after_timing()
    assert "recompiled 1 time(s)" in warning and "double" in warning
    assert prepared.info["recompiles_in_timed_region"] == 1 and prepared.info["graphs"] == 2


def test_compile_options_and_the_per_run_cache_dir_are_recorded(dynamo_eager_backend, tmp_path):
    spec = tiny("compile")
    _, _, prepared = prepare(spec, workdir=str(tmp_path))
    info = prepared.info
    assert info["mode"] == "default" and info["freezing"] is True and info["dynamic"] is False
    assert info["cache"] == "per-run" and info["cache_dir"] == str((tmp_path / "inductor-cache").resolve())
    assert info["compile_in_first_call"] is True
    shared = prepare(tiny("compile", cache="shared", freezing=False), workdir=str(tmp_path))[2].info
    assert shared["cache_dir"].endswith("inductor") and shared["freezing"] is False


def test_a_compile_failure_is_an_error_with_the_real_reason(monkeypatch, tmp_path):
    import torch._dynamo

    from cnnbench.backends.compiled import CompileFailed
    from cnnbench.measure.worker import classify_exception

    real = torch.compile

    def broken_backend(gm, example_inputs):
        raise NotImplementedError("no lowering for aten.frobnicate")

    monkeypatch.setattr(torch, "compile", lambda model, **kw: real(model, backend=broken_backend, dynamic=False))
    try:
        _, _, prepared = prepare(tiny("compile"), workdir=str(tmp_path))
        with pytest.raises(CompileFailed) as err:
            prepared.run()
    finally:
        torch._dynamo.reset()
    assert classify_exception(err.value) == "error"
    assert str(err.value) == "torch.compile failed: NotImplementedError: no lowering for aten.frobnicate"


# ---------------------------------------------------------------------------------------------
# Suites


def test_the_backends_suite_is_the_documented_matrix():
    from cnnbench.suite.schema import load_suite

    cases = load_suite(SUITES / "backends.yaml").cases
    combos = {(c.model, c.backend, c.batch_size) for c in cases}
    assert combos == {
        (m, b, bs)
        for m in ("lenet5", "mnist_cnn_bn", "resnet18", "mobilenet_v2")
        for b in ("eager", "compile", "onnxrt")
        for bs in (1, 8)
    }
    assert len(cases) == 24


def test_the_smoke_suite_has_small_compile_and_onnxrt_cases():
    from cnnbench.suite.schema import load_suite

    cases = load_suite(SUITES / "smoke.yaml").cases
    extra = [c for c in cases if c.backend != "eager"]
    assert {c.backend for c in extra} == {"compile", "onnxrt"}
    assert all(c.model == "lenet5" and c.batch_size == 1 for c in extra)


# ---------------------------------------------------------------------------------------------
# End to end, in worker processes (slow)


def _write_suite(path: Path, body: str) -> Path:
    path.write_text(body, encoding="utf-8")
    return path


def _records(out: Path) -> dict[tuple, dict]:
    data = json.loads(out.read_text(encoding="utf-8"))
    return {(c["spec"]["model"], c["spec"]["backend"]): c for c in data["cases"]}


@pytest.mark.slow
def test_end_to_end_compile_time_apart_export_cache_and_export_failed(tmp_path, cache_dir, monkeypatch):
    """One CLI run: lenet5 on eager, compile (cold, per-run inductor cache) and onnxrt (dynamo
    exporter), plus a user model that no exporter takes, on eager and onnxrt. Then a second
    run of the onnxrt case reuses the export."""
    from cnnbench.cli import main

    monkeypatch.chdir(ROOT)
    measure = "measure: {warmup: 2, min_time_s: 0.2, max_time_s: 1, min_samples: 5, timeout_s: 300, repeats: 1}"
    suite = _write_suite(tmp_path / "e2e.yaml", f"""
name: e2e
matrices:
  - models: [lenet5]
    batch_sizes: [1]
    backends: [eager, compile, onnxrt]
    threads: 1
    {measure}
  - models: [{{name: runmax, import: "{FIXTURE}:running_max_net", input_size: [1, 8, 8]}}]
    batch_sizes: [2]
    backends: [eager, onnxrt]
    threads: 1
    {measure}
""")
    out = tmp_path / "e2e.json"
    assert main(["run", str(suite), "--out", str(out), "--quiet"]) in (0, 1)
    recs = _records(out)

    comp = recs[("lenet5", "compile")]
    assert comp["status"] == "ok", comp["error"]
    info = comp["backend_info"]
    assert info["compile_in_first_call"] and info["recompiles_in_timed_region"] == 0 and info["freezing"]
    # the first call compiles: dynamo's own time for that compile lies inside it (a cold compile
    # takes seconds), and nothing compiled after it, so no sample holds a compile
    assert info["graphs"] >= 1 and 0 < info["first_call_compile_ms"] <= comp["first_call_ms"]
    assert comp["first_call_ms"] not in comp["samples_ms"]
    assert comp["latency_ms"]["median"] == pytest.approx(statistics.median(comp["samples_ms"]))  # the samples alone
    assert comp["parity"]["ok"] and comp["parity"]["max_rel_err"] < 1e-4

    ort_rec = recs[("lenet5", "onnxrt")]
    assert ort_rec["status"] == "ok", ort_rec["error"]
    oinfo = ort_rec["backend_info"]
    assert oinfo["provider"] == "CPUExecutionProvider" and oinfo["exporter"] == "dynamo"
    assert oinfo["export_cached"] is False and oinfo["export_ms"] > 0
    assert ort_rec["parity"]["ok"] and ort_rec["parity"]["max_rel_err"] < 1e-4
    assert recs[("lenet5", "eager")].get("parity") is None

    assert recs[("runmax", "eager")]["status"] == "ok"
    failed = recs[("runmax", "onnxrt")]
    assert failed["status"] == "export_failed"
    assert failed["error"].startswith("dynamo exporter: ") and "cummax" in failed["error"]
    assert "[torch.onnx]" not in json.dumps(failed)

    again = _write_suite(tmp_path / "again.yaml", f"""
name: again
models: [lenet5]
batch_sizes: [8]
backends: [onnxrt]
threads: 1
{measure}
""")
    out2 = tmp_path / "again.json"
    assert main(["run", str(again), "--out", str(out2), "--quiet"]) == 0
    second = _records(out2)[("lenet5", "onnxrt")]
    assert second["status"] == "ok", second["error"]
    assert second["backend_info"]["export_cached"] is True
    assert second["backend_info"]["export_ms"] == oinfo["export_ms"]
    assert second["backend_info"]["export_path"] == oinfo["export_path"]
