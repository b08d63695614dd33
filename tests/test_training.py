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
    # that the parts add up to a step is checked on a fake clock (the next test): here the detail
    # steps run after the timed loop, so comparing them with its median compared two moments
    # of a shared machine, not cnnbench's arithmetic
    assert detail["forward"] > 0 and detail["backward"] > 0 and detail["optimizer"] > 0 and step > 0
    assert set(train["time_per_epoch"]) >= {"imagenet1k", "cifar10"}
    assert train["time_per_epoch"]["cifar10"]["steps"] == math.ceil(50_000 / 32)
    record = build_record(spec, [out])
    assert record["train"]["detail_ms"] == detail  # kept on the record


def test_the_detail_parts_partition_each_step_on_a_fake_clock():
    """`detail: true` times forward (with the loss), backward and optimizer of extra steps
    between synchronized reads of one clock: the parts of a step leave no gap and overlap
    nothing, so their medians add up to the step's time exactly, and the run is sized from the
    first step (1 s of steps, at least 3, at most 20)."""
    training = sys.modules[prepare_train.__module__]
    now, events = [0], []

    def clock() -> int:
        events.append("clock")
        return now[0]

    def part(name: str, ms: float):
        def run(*args):
            events.append(name)
            now[0] += int(ms * 1_000_000)
            return torch.tensor(1.0) if name == "forward" else None

        return run

    state = {"steps": 0}
    out = training._detail(part("forward", 3.0), part("backward", 5.5), part("optimizer", 1.5),
                           lambda: events.append("sync"), state, clock=clock)  # fmt: skip
    assert (out["forward"], out["backward"], out["optimizer"]) == (3.0, 5.5, 1.5)
    assert out["sum"] == 10.0  # one step on this clock: 3 + 5.5 + 1.5 ms, nothing between the parts
    assert out["steps"] == state["steps"] == training.DETAIL_MAX_STEPS  # 1 s / 10 ms = 100, capped at 20
    bounds = [i for i, e in enumerate(events) if e == "clock"][1:-1]  # not the run's own start and end
    assert len(bounds) == 4 * out["steps"] and all(events[i - 1] == "sync" for i in bounds)
    slow = training._detail(part("forward", 300.0), part("backward", 550.0), part("optimizer", 150.0),
                            None, {"steps": 0}, clock=clock)  # fmt: skip
    assert slow["steps"] == training.DETAIL_MIN_STEPS and slow["sum"] == 1000.0  # 1 s steps: the minimum


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


def _grad_and_state_bytes(model, example, optimizer: dict) -> int:
    """Bytes of the gradients and optimizer state a training step holds, counted by doing one
    step on `model` with the optimizer a train record names (its class and settings)."""
    settings = {k: v for k, v in optimizer.items() if k not in ("name", "class")}
    opt = getattr(torch.optim, optimizer["class"].rsplit(".", 1)[-1])(model.parameters(), **settings)
    model.train()(example).sum().backward()
    grads = sum(p.grad.nbytes for p in model.parameters() if p.grad is not None)
    opt.step()
    state = sum(t.nbytes for per_param in opt.state.values() for t in per_param.values() if torch.is_tensor(t))
    return grads + state


@pytest.mark.slow
@pytest.mark.measured
def test_train_peak_memory_exceeds_inference_peak_memory(tmp_path, warm_counts, jemalloc_workers):
    """Each in its own worker process (as the runner does), started alike: counts cached before
    either starts, jemalloc without decay (tests/conftest.py). A training step holds what
    inference never does: a gradient per weight and SGD's momentum buffer per weight (2 x 44.6
    MiB for resnet18, counted by doing a step), on top of the activations it keeps for backward.
    The bound is those counted bytes; the activations kept (79 MiB summed at batch 4) are the
    margin over what inference holds at its peak, and over the code and caches only one side
    maps after its baseline. It used to be `training > 1.3 x inference` for mnist_cnn at batch
    256, whose 1.6 MiB of weights left the difference to glibc: 1.33x to 1.87x between runs."""
    lean = Measure(warmup=1, min_time_s=0.0, max_time_s=0.5, min_samples=2, timeout_s=300)  # the peak needs 2 steps
    train = train_spec("resnet18", 4, measure=lean)
    warm_counts(train)
    results = {mode: _worker(train.replace(mode=mode), tmp_path, mode) for mode in ("inference", "train")}
    for out in results.values():
        assert out["status"] == "ok", out.get("error")
    inference = results["inference"]["memory"]["peak_rss_delta_bytes"]
    training = results["train"]["memory"]["peak_rss_delta_bytes"]
    assert results["train"]["train"]["optimizer"]["name"] == "sgd"
    mem = results["train"]["memory"]  # the whole footprint: the weights sit in the RSS baseline
    torch.manual_seed(0)
    tiny = train.replace(batch_size=2, input_size=(3, 32, 32))  # the weights do not depend on the input size
    counted = _grad_and_state_bytes(build_model("resnet18"), example_batch(tiny), results["train"]["train"]["optimizer"])
    assert counted == 2 * mem["param_bytes"]  # SGD with momentum: one gradient, one buffer per weight
    assert training - inference >= counted, (training / 2**20, inference / 2**20, counted / 2**20)
    assert mem["train_total_peak_bytes"] == training + mem["param_bytes"] and mem["param_bytes"] > 0
    assert "train_total_peak_bytes" not in results["inference"]["memory"]


@pytest.mark.slow
def test_compiled_training_step(tmp_path):
    spec = train_spec("lenet5", 8, backend="compile", measure=Measure(warmup=1, min_time_s=0.1, max_time_s=1, min_samples=3, timeout_s=600))
    out = _worker(spec, tmp_path, "compile")
    assert out["status"] == "ok", out.get("error")
    assert out["backend_info"]["compile"]["cache"] == "per-run"
    # compile is in the first call: dynamo's time for it lies inside that call's time
    assert 0 < out["backend_info"]["compile"]["first_call_compile_ms"] <= out["first_call_ms"]
    assert math.isfinite(out["train"]["loss_last"])
    assert not [w for w in out["warnings"] if "recompiled" in w]
