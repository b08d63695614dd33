"""Deployment backends (openvino, aoti, tensorrt), int8 static PTQ, `list backends`.

The detection and labelling logic is tested with small fakes; the slow tests run the real
runtimes end to end on LeNet-5 (in this process, few iterations; one through a worker).
"""

from __future__ import annotations

import json

import pytest

from cnnbench.core.errors import SuiteError, Unsupported
from cnnbench.core.spec import CaseSpec, Measure, canonical_evaluation

SHORT = Measure(warmup=1, min_time_s=0.02, max_time_s=0.2, min_samples=3, max_samples=50)


def _spec(backend: str, precision: str = "fp32", *, batch: int = 2, evaluation=None, options=()) -> CaseSpec:
    return CaseSpec(
        model="lenet5", batch_size=batch, input_size=(1, 32, 32), backend=backend, precision=precision,
        options=tuple(options), evaluation=canonical_evaluation(evaluation), measure=SHORT,
    )  # fmt: skip


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CNNBENCH_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


# ---------------------------------------------------------------------------------------------
# TensorRT detection, with fakes of the surface it reads


@pytest.fixture()
def trt(monkeypatch):
    from cnnbench.backends import tensorrt

    state = {"cuda": True, "providers": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
             "libs": None}  # fmt: skip
    monkeypatch.setattr(tensorrt, "_cuda_available", lambda: state["cuda"])
    monkeypatch.setattr(tensorrt, "_ort_providers", lambda: list(state["providers"]))
    monkeypatch.setattr(tensorrt, "_load_libraries", lambda: state["libs"])
    return tensorrt, state


def test_tensorrt_runs_only_with_a_gpu_the_provider_and_the_libraries(trt):
    tensorrt, state = trt
    assert tensorrt.tensorrt_status("cuda") is None
    assert "NVIDIA GPUs" in tensorrt.tensorrt_status("cpu")
    state["libs"] = "the TensorRT libraries do not load: libnvinfer.so.10 (...); pip install 'cnnbench[tensorrt]'"
    assert "cnnbench[tensorrt]" in tensorrt.tensorrt_status("cuda")
    state["providers"] = ["CPUExecutionProvider"]
    assert "no TensorrtExecutionProvider" in tensorrt.tensorrt_status("cuda")
    state["cuda"] = False
    assert "torch sees none" in tensorrt.tensorrt_status("cuda")


def test_tensorrt_prepare_is_unsupported_with_the_reason_before_building_anything(trt):
    tensorrt, state = trt
    state["cuda"] = False
    spec = _spec("tensorrt").replace(device="cuda")
    with pytest.raises(Unsupported, match="torch sees none"):
        tensorrt.BACKEND.prepare(object(), object(), spec, workdir=".")


def test_a_session_that_fell_back_from_tensorrt_is_never_labelled_tensorrt():
    from cnnbench.backends.tensorrt import check_session_provider

    check_session_provider(["TensorrtExecutionProvider", "CUDAExecutionProvider"])
    for fallback in (["CUDAExecutionProvider", "CPUExecutionProvider"], ["CPUExecutionProvider"], []):
        with pytest.raises(Unsupported, match="not be a TensorRT result"):
            check_session_provider(fallback)


def test_missing_tensorrt_libraries_name_the_library_and_the_extra(monkeypatch):
    from cnnbench.backends import tensorrt

    def no_lib(name, mode=0):
        raise OSError(f"{name}: cannot open shared object file")

    monkeypatch.setattr(tensorrt.ctypes, "CDLL", no_lib)
    monkeypatch.setattr(tensorrt, "_library_dirs", lambda: [])
    reason = tensorrt._load_libraries()
    assert "libnvinfer.so.10" in reason and "libnvonnxparser.so.10" in reason and "cnnbench[tensorrt]" in reason


def test_tensorrt_on_this_machine_is_unsupported_with_a_reason():
    """This CPU machine (and CI): never a silent fallback; the reason names what is missing."""
    from cnnbench.backends.tensorrt import tensorrt_status

    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    assert "torch sees none" in tensorrt_status("cuda")


# ---------------------------------------------------------------------------------------------
# Precision rules, calibration data, suite schema


def test_eager_int8_is_unsupported_and_names_the_backends_that_have_it():
    from cnnbench.backends.common import check_precision

    with pytest.raises(Unsupported, match="onnxrt, openvino, compile or aoti"):
        check_precision("cpu", "int8")


def test_openvino_precision_hint_is_explicit_and_needs_the_cpu_capability():
    from cnnbench.backends.openvino import inference_precision

    caps = ["FP32", "INT8", "BF16"]
    assert inference_precision("fp32", caps) == "f32"  # never OpenVINO's implicit bf16
    assert inference_precision("int8", caps) == "f32"
    assert inference_precision("bf16", caps) == "bf16"
    with pytest.raises(Unsupported, match="FP16"):
        inference_precision("fp16", caps)


def test_calibration_without_a_dataset_is_seeded_random_data_with_the_loud_label():
    pytest.importorskip("torch")
    from cnnbench.backends.common import example_batch
    from cnnbench.backends.quantize import RANDOM_LABEL, calibration_data

    spec = _spec("onnxrt", "int8", options=[("calibration_images", 12)])
    a, b = calibration_data(spec), calibration_data(spec)
    assert a.info["random"] and a.info["label"] == RANDOM_LABEL == "calibrated on random data: accuracy unknown"
    assert tuple(a.images.shape) == (12, 1, 32, 32) and bool((a.images == b.images).all())
    assert not bool((a.images[:2] == example_batch(spec)).all())  # never the parity inputs
    assert [int(x.shape[0]) for x in a.batches(5)] == [5, 5, 2]


def test_calibration_with_digits_uses_the_train_split_never_the_test_images():
    torch = pytest.importorskip("torch")
    pytest.importorskip("sklearn")
    from cnnbench.accuracy import digits_tensors
    from cnnbench.backends.quantize import calibration_data

    spec = _spec("openvino", "int8", evaluation={"dataset": {"kind": "digits", "split": "test"}},
                 options=[("calibration_images", 40)])  # fmt: skip
    cal = calibration_data(spec)
    train, _ = digits_tensors("train", input_size=(1, 32, 32))
    test, _ = digits_tensors("test", input_size=(1, 32, 32))
    assert not cal.info["random"] and "train split" in cal.info["label"]
    assert torch.equal(cal.images, train[:40])
    assert not any(torch.equal(img, t) for img in cal.images[:5] for t in test)


def test_calibration_on_an_evaluation_folder_is_random_and_says_why():
    pytest.importorskip("torch")
    from cnnbench.backends.quantize import calibration_data

    spec = _spec("onnxrt", "int8", evaluation={"dataset": {"kind": "tensors", "path": "/x.pt"}})
    cal = calibration_data(spec)
    assert cal.info["random"] and "evaluation set" in cal.info["why"]
    assert "accuracy measured" in cal.info["label"]


def test_suites_accept_the_new_backends_int8_and_validate_calibration_images(tmp_path):
    from cnnbench.suite.schema import load_suite

    path = tmp_path / "s.yaml"
    path.write_text(
        "name: s\nmodels: [lenet5]\nbatch_sizes: [1]\n"
        "backends: [openvino, aoti, tensorrt, {onnxrt: {calibration_images: 16}}, {openvino: {hint: throughput}}]\n"
        "precisions: [fp32, int8]\ndevice: cpu\n",
        encoding="utf-8",
    )
    keys = [c.key for c in load_suite(path).cases]
    assert any("|onnxrt[calibration_images=16]|int8|" in k for k in keys)
    assert any("|openvino[hint=throughput]|fp32|" in k for k in keys) and any("|tensorrt|int8|" in k for k in keys)
    path.write_text(path.read_text().replace("calibration_images: 16", "calibration_images: 0"), encoding="utf-8")
    with pytest.raises(SuiteError, match="calibration_images"):
        load_suite(path)


def test_shipped_deploy_suite_has_every_backend_and_int8(tmp_path):
    """suites/deploy.yaml validates (with a stand-in weights file) and covers the table."""
    import shutil
    from pathlib import Path

    from cnnbench.suite.schema import load_suite

    root = Path(__file__).resolve().parent.parent
    (tmp_path / "suites").mkdir()
    shutil.copy(root / "suites" / "deploy.yaml", tmp_path / "suites" / "deploy.yaml")
    (tmp_path / "examples" / "digits").mkdir(parents=True)
    (tmp_path / "examples" / "digits" / "lenet5_digits.pt").write_bytes(b"stand-in")
    cases = load_suite(tmp_path / "suites" / "deploy.yaml").cases
    combos = {(c.model, c.backend, c.precision) for c in cases}
    for backend in ("eager", "compile", "onnxrt", "openvino", "aoti"):
        assert ("lenet5", backend, "fp32") in combos
    assert {("lenet5", b, "int8") for b in ("compile", "onnxrt", "openvino", "aoti")} <= combos
    assert ("resnet18", "tensorrt", "int8") in combos and ("mobilenet_v2", "openvino", "int8") in combos
    assert all(c.evaluation for c in cases if c.model == "lenet5")
    assert not any(c.backend == "eager" and c.precision == "int8" for c in cases)


# ---------------------------------------------------------------------------------------------
# list backends


@pytest.mark.slow
def test_list_backends_says_what_runs_here_and_why_not(capsys):
    pytest.importorskip("openvino")
    from cnnbench.cli import main

    assert main(["list", "backends"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert any(ln.startswith("openvino") and "cpu" in ln and "fp32" in ln and "int8" in ln for ln in lines)
    assert any(ln.startswith("onnxrt") and "cpu" in ln and "int8" in ln for ln in lines)
    assert "int8: int8 needs a quantized graph" in out  # eager
    import torch

    if not torch.cuda.is_available():
        assert "TensorRT needs a CUDA GPU" in out and "runs: nothing here" in out


# ---------------------------------------------------------------------------------------------
# End to end, in this process (tiny model, few iterations)


def _run(spec, tmp_path):
    from cnnbench.measure.worker import run_case

    work = tmp_path / f"w-{spec.backend}-{spec.precision}"
    work.mkdir(exist_ok=True)
    return run_case(spec, workdir=str(work))


@pytest.mark.slow
def test_openvino_fp32_runs_with_parity_recorded_settings_and_a_cached_ir(tmp_path, cache):
    pytest.importorskip("openvino")
    out = _run(_spec("openvino"), tmp_path)
    assert out["status"] == "ok", out.get("error")
    info = out["backend_info"]
    assert info["execution_devices"] == ["CPU"] and info["performance_hint"] == "LATENCY"
    assert info["inference_num_threads"] == 1 and info["inference_precision"] == "f32"
    assert out["parity"]["ok"] and out["parity"]["max_rel_err"] < 1e-4
    assert info["artifact_bytes"] > 200_000 and not info["export_cached"]  # lenet5: 61.7k fp32 weights
    xml = info["export_path"]
    assert xml.endswith(".xml") and str(cache) in xml and len(out["samples_ms"]) >= 3
    again = _run(_spec("openvino", batch=3), tmp_path)  # another batch reuses the same IR
    assert again["backend_info"]["export_cached"] and again["backend_info"]["export_path"] == xml
    assert again["backend_info"]["compiled_shape"] == [3, 1, 32, 32]


@pytest.mark.parametrize(
    ("machine", "flags", "reduce"),
    [
        ("x86_64", "fpu sse2 avx avx2 fma", True),  # AVX2 only: VPMADDUBSW saturates at 8 bits
        ("x86_64", "fpu avx2 avx512f avx512bw", True),  # AVX-512 without VNNI: the same
        ("x86_64", "fpu avx2 avx512f avx512_vnni", False),
        ("x86_64", "fpu avx2 avx_vnni", False),
        ("aarch64", "fp asimd", False),
    ],
)
def test_ort_int8_weights_are_7_bit_on_x86_without_vnni(tmp_path, monkeypatch, machine, flags, reduce):
    import platform

    from cnnbench.backends.quantize import ort_reduce_range

    info = tmp_path / "cpuinfo"
    info.write_text(f"processor\t: 0\nmodel name\t: X\nflags\t\t: {flags}\n\nprocessor\t: 1\nflags\t\t: {flags}\n")
    monkeypatch.setattr(platform, "machine", lambda: machine)
    got, why = ort_reduce_range(str(info))
    assert got is reduce and why
    assert ("7-bit" in why) is reduce
    monkeypatch.setattr(platform, "machine", lambda: "x86_64")
    assert ort_reduce_range(str(tmp_path / "missing"))[0] is False  # unreadable: ORT's default, said so


@pytest.mark.slow
def test_int8_onnxrt_and_openvino_quantize_calibrate_and_report_accuracy_change(tmp_path, cache):
    """digits configured: calibration on its train split; accuracy on test images with the
    change vs fp32 eager measured on the same images; the int8 artefacts are smaller."""
    pytest.importorskip("openvino")
    pytest.importorskip("sklearn")
    evaluation = {"dataset": {"kind": "digits", "split": "test", "limit": 64}}
    for backend, path_word in (("onnxrt", "QDQ"), ("openvino", "nncf")):
        fp32 = _run(_spec(backend, evaluation=evaluation, batch=16), tmp_path)
        out = _run(_spec(backend, "int8", evaluation=evaluation, options=[("calibration_images", 32)], batch=16), tmp_path)
        assert out["status"] == "ok", out.get("error")
        info = out["backend_info"]
        assert path_word in info["precision_path"] and info["calibration"]["source"] == "dataset"
        if backend == "onnxrt":  # this machine's CPU decides the weights' bits, and says why
            from cnnbench.backends.quantize import ort_reduce_range

            reduce, why = ort_reduce_range()
            assert info["quantize"]["reduce_range"] is reduce and info["quantize"]["reduce_range_why"] == why
        assert info["calibration"]["images"] == 32 and info["quantize_ms"] > 0
        assert info["artifact_bytes"] < 0.6 * fp32["backend_info"]["artifact_bytes"]
        parity = out["parity"]
        assert parity["ok"] and parity["tolerance"] == 0.25 and parity["max_rel_err"] > 1e-5  # really quantized
        assert "not used for calibration" in parity["inputs"]  # in the calibrated range, unseen
        acc = out["accuracy"]
        ref = acc["fp32_eager"]
        assert acc["total"] == ref["total"] == 64
        assert acc["change_vs_fp32_eager"]["top1_pp"] == pytest.approx(acc["top1"] - ref["top1"])
        assert ref["correct1"] == fp32["accuracy"]["correct1"]  # the same eager answers as the fp32 case


@pytest.mark.slow
def test_int8_without_a_dataset_is_labelled_random_and_keyed_by_the_calibration(tmp_path, cache):
    pytest.importorskip("onnxruntime")
    from cnnbench.backends.quantize import RANDOM_LABEL

    a = _run(_spec("onnxrt", "int8", options=[("calibration_images", 8)]), tmp_path)
    b = _run(_spec("onnxrt", "int8", options=[("calibration_images", 8)], batch=3), tmp_path)
    c = _run(_spec("onnxrt", "int8", options=[("calibration_images", 16)]), tmp_path)
    assert a["status"] == b["status"] == c["status"] == "ok"
    assert a["backend_info"]["calibration"]["label"] == RANDOM_LABEL and "accuracy" not in a
    assert b["backend_info"]["export_path"] == a["backend_info"]["export_path"]  # batch not in the key
    assert c["backend_info"]["export_path"] != a["backend_info"]["export_path"]  # calibration is


@pytest.mark.slow
def test_aoti_fp32_and_pt2e_int8_packages(tmp_path, cache):
    """One AOT compile each (the slow part): parity, package cached by shape, compile apart."""
    pytest.importorskip("torchao")
    fp32 = _run(_spec("aoti"), tmp_path)
    assert fp32["status"] == "ok", fp32.get("error")
    info = fp32["backend_info"]
    assert info["export_path"].endswith(".pt2") and info["artifact_bytes"] > 0 and not info["export_cached"]
    assert info["export_split_ms"]["aoti_compile_ms"] > 0 and fp32["parity"]["max_rel_err"] < 1e-4
    assert max(fp32["samples_ms"]) < info["export_split_ms"]["aoti_compile_ms"]  # compile never in the samples
    again = _run(_spec("aoti"), tmp_path)
    assert again["backend_info"]["export_cached"] and again["backend_info"]["export_path"] == info["export_path"]
    q = _run(_spec("aoti", "int8", options=[("calibration_images", 8)]), tmp_path)
    assert q["status"] == "ok", q.get("error")
    assert "PT2E" in q["backend_info"]["precision_path"] and q["parity"]["ok"]
    assert q["backend_info"]["export_path"] != info["export_path"]


@pytest.mark.slow
def test_openvino_int8_through_a_worker_process(tmp_path, cache):
    """The real path: a worker process, its JSON record, the int8 label and parity."""
    pytest.importorskip("openvino")
    from cnnbench.run.runner import run_worker

    run = run_worker(_spec("openvino", "int8", options=[("calibration_images", 8)]), workdir=str(tmp_path))
    assert run["status"] == "ok", run.get("error")
    info = run["backend_info"]
    assert info["calibration"]["random"] and info["execution_devices"] == ["CPU"]
    assert run["parity"]["ok"] and json.dumps(run)


def test_support_lines_group_what_runs_and_give_each_reason_once():
    from cnnbench.backends.support import Support, render_support

    rows = [
        Support("onnxrt", "cpu", "fp32", None), Support("onnxrt", "cpu", "int8", None),
        Support("onnxrt", "cpu", "bf16", "no bf16 path"),
        Support("tensorrt", "cpu", "fp32", "needs a GPU"), Support("tensorrt", "cpu", "int8", "needs a GPU"),
    ]  # fmt: skip
    lines = render_support(rows)
    assert lines[0].split() == ["onnxrt", "cpu", "runs:", "fp32,", "int8"]
    assert lines[1].strip() == "bf16: no bf16 path"
    assert lines[2].split()[:4] == ["tensorrt", "cpu", "runs:", "nothing"]
    assert lines[3].strip() == "all precisions: needs a GPU" and len(lines) == 4


def test_checking_for_pt2e_prints_no_torchao_import_noise():
    """`list backends` and every int8 worker import torchao; its import-time deprecation line from
    torch.utils._pytree must not reach the user's terminal or the worker logs."""
    import subprocess
    import sys

    pytest.importorskip("torchao")
    proc = subprocess.run([sys.executable, "-c", "from cnnbench.backends.quantize import _pt2e_api, pt2e_available; "
                           "print(pt2e_available()); _pt2e_api()"], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0 and proc.stdout.strip() == "None", proc.stderr
    assert "_pytree" not in proc.stderr and "deprecated" not in proc.stderr, proc.stderr
