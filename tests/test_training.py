"""Tests for `cnnbench.measure.training`: the training step, its memory, its detail split, epoch time."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from cnnbench.backends.common import example_batch  # noqa: E402
from cnnbench.core.errors import Unsupported  # noqa: E402
from cnnbench.models.registry import build_model  # noqa: E402
from cnnbench.results.format import build_record  # noqa: E402
from cnnbench.core.spec import CaseSpec, Measure  # noqa: E402
from cnnbench.measure.training import prepare_train, time_per_epoch  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
QUICK = Measure(warmup=1, min_time_s=0.05, max_time_s=0.5, min_samples=3, timeout_s=120)
SIZES = {"lenet5": (1, 32, 32), "mnist_cnn": (1, 28, 28), "mnist_cnn_bn": (1, 28, 28), "resnet18": (3, 224, 224)}


def train_spec(model="lenet5", batch=8, **kw) -> CaseSpec:
    kw.setdefault("measure", QUICK)
    return CaseSpec(model, batch, SIZES[model], mode="train", threads=1, **kw)


def prepare(spec: CaseSpec, tmp_path):
    torch.manual_seed(0)
    model = build_model(spec.model, input_size=spec.input_size)
    return model, prepare_train(model, example_batch(spec), spec, workdir=str(tmp_path))


def test_a_training_step_changes_the_weights_and_the_loss_is_finite(tmp_path):
    spec = train_spec("mnist_cnn_bn", 16)
    model, prepared = prepare(spec, tmp_path)
    assert model.training
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    losses = [float(prepared.run()) for _ in range(5)]
    after = model.state_dict()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    weights = [name for name, _ in model.named_parameters()]
    assert set(weights) <= set(changed)  # every parameter moved
    assert any("running_mean" in k for k in changed)  # BatchNorm in train mode
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < losses[0]  # five steps on one batch: the loss goes down
    for p in model.parameters():  # zero_grad(set_to_none=True) after the step
        assert p.grad is None
    assert prepared.after_timing() == []
    assert prepared.state["loss_first"] == pytest.approx(losses[0])
    assert prepared.info["optimizer"]["name"] == "sgd" and prepared.info["optimizer"]["momentum"] == 0.9
    assert prepared.info["num_classes"] == 10


def test_labels_and_first_loss_are_seeded(tmp_path):
    spec = train_spec("lenet5", 8)
    first = [float(prepare(spec, tmp_path)[1].run()) for _ in range(2)]
    assert first[0] == first[1]


def test_adamw_is_selectable_and_keeps_two_moments(tmp_path):
    spec = train_spec("lenet5", 8, options=(("optimizer", "adamw"),))
    model, prepared = prepare(spec, tmp_path)
    prepared.run()
    assert prepared.info["optimizer"]["class"] == "torch.optim.AdamW"
    assert "adamw" in spec.key


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_autocast_precisions_train_on_cpu(tmp_path, precision):
    spec = train_spec("lenet5", 8, precision=precision)
    _, prepared = prepare(spec, tmp_path)
    for _ in range(3):
        prepared.run()
    assert prepared.after_timing() == []
    assert math.isfinite(prepared.state["loss_last"])
    assert prepared.info["grad_scaler"] is (precision == "fp16")


def test_channels_last(tmp_path):
    spec = train_spec("lenet5", 8, channels_last=True)  # mnist_cnn .view()s: not channels_last-safe
    _, prepared = prepare(spec, tmp_path)
    assert math.isfinite(float(prepared.run()))
    assert prepared.info["channels_last"] is True


def test_onnxrt_training_is_unsupported(tmp_path):
    with pytest.raises(Unsupported, match="inference-only"):
        prepare(train_spec(backend="onnxrt"), tmp_path)


def test_compile_freezing_is_refused_for_training(tmp_path):
    with pytest.raises(Unsupported, match="inference only"):
        prepare(train_spec(backend="compile", options=(("freezing", True),)), tmp_path)


def test_predict_is_an_eval_forward_and_leaves_train_mode(tmp_path):
    spec = train_spec("mnist_cnn_bn", 4)
    model, prepared = prepare(spec, tmp_path)
    out = prepared.predict(example_batch(spec))
    assert out.shape == (4, 10) and out.dtype == torch.float32
    assert model.training


def test_a_non_finite_loss_is_a_warning(tmp_path):
    spec = train_spec("lenet5", 8)
    model, prepared = prepare(spec, tmp_path)
    with torch.no_grad():
        next(model.parameters()).fill_(float("nan"))
    prepared.run()
    (warning,) = prepared.after_timing()
    assert "not finite" in warning


def test_the_worker_records_train_detail_and_time_per_epoch(tmp_path):
    from cnnbench.measure.worker import run_case

    spec = train_spec("mnist_cnn", 32, measure=Measure(warmup=1, min_time_s=0.3, max_time_s=1.5, min_samples=5, detail=True))
    out = run_case(spec, workdir=str(tmp_path))
    assert out["status"] == "ok"
    assert len(out["warnings"]) == len(set(out["warnings"]))  # each warning once
    train = out["train"]
    step = sorted(out["samples_ms"])[len(out["samples_ms"]) // 2]
    detail = train["detail_ms"]
    assert detail["steps"] >= 3
    assert detail["sum"] == pytest.approx(detail["forward"] + detail["backward"] + detail["optimizer"])
    # the parts add up to the step, give or take synchronization and a shared machine's noise
    assert 0.5 * step < detail["sum"] < 2.0 * step
    assert detail["backward"] > 0 and detail["optimizer"] > 0
    assert set(train["time_per_epoch"]) >= {"imagenet1k", "cifar10"}
    assert train["time_per_epoch"]["cifar10"]["steps"] == math.ceil(50_000 / 32)
    record = build_record(spec, [out])
    assert record["train"]["detail_ms"] == detail  # kept on the record


def test_time_per_epoch_of_a_named_dataset():
    block = time_per_epoch(100.0, 8, {"digits": 1_437})
    assert block["digits"] == {"images": 1_437, "steps": 180, "seconds": pytest.approx(18.0)}


def _worker(spec: CaseSpec, tmp_path: Path, name: str) -> dict:
    spec_path = tmp_path / f"{name}.spec.json"
    result_path = tmp_path / f"{name}.result.json"
    spec_path.write_text(json.dumps(spec.to_dict()))
    subprocess.run(
        [sys.executable, "-m", "cnnbench.measure.worker", str(spec_path), str(result_path)],
        cwd=ROOT, check=True, timeout=spec.measure.timeout_s,
    )  # fmt: skip
    return json.loads(result_path.read_text())


@pytest.mark.slow
def test_train_peak_memory_exceeds_inference_peak_memory(tmp_path):
    """Each in its own worker process (as the runner does), so the RSS peaks are clean. Batch 256,
    so the activations kept for backward outweigh the ~40 MiB that the first call leaves resident
    in either mode (library kernels, allocator arenas), which does not grow with the batch."""
    train = train_spec("mnist_cnn", 256)
    results = {mode: _worker(train.replace(mode=mode), tmp_path, mode) for mode in ("inference", "train")}
    for out in results.values():
        assert out["status"] == "ok", out.get("error")
    inference = results["inference"]["memory"]["peak_rss_delta_bytes"]
    training = results["train"]["memory"]["peak_rss_delta_bytes"]
    # activations kept for backward, gradients and momentum buffers: clearly more
    assert training > 1.3 * inference, (training, inference, results["train"]["memory"].get("activation_bytes"))
    assert results["train"]["train"]["optimizer"]["name"] == "sgd"
    mem = results["train"]["memory"]  # the whole footprint: the weights sit in the RSS baseline
    assert mem["train_total_peak_bytes"] == training + mem["param_bytes"] and mem["param_bytes"] > 0
    assert "train_total_peak_bytes" not in results["inference"]["memory"]


@pytest.mark.slow
def test_compiled_training_step(tmp_path):
    spec = train_spec("lenet5", 8, backend="compile", measure=Measure(warmup=1, min_time_s=0.1, max_time_s=1, min_samples=3, timeout_s=600))
    out = _worker(spec, tmp_path, "compile")
    assert out["status"] == "ok", out.get("error")
    assert out["backend_info"]["compile"]["cache"] == "per-run"
    assert out["first_call_ms"] > 5 * sorted(out["samples_ms"])[len(out["samples_ms"]) // 2]  # compile is in the first call
    assert math.isfinite(out["train"]["loss_last"])
    assert not [w for w in out["warnings"] if "recompiled" in w]
