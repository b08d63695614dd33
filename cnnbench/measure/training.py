"""Training-step benchmarks (`mode: train`): one timed call is one full optimizer step.

A step is what a training loop does per batch, on inputs and labels prepared in advance:

    forward (under autocast for fp16/bf16) -> cross-entropy loss -> backward -> optimizer step
    -> optimizer.zero_grad(set_to_none=True)

with the model in `train()` mode (BatchNorm updates its running statistics, dropout is on). The
labels are random class indices drawn once from a seeded generator, of the model's class count
(read from the shape of one probe output), so the loss is the same work a real batch costs. SGD
with momentum 0.9 is the default optimizer; `optimizer: adamw` (a backend option of `eager` and
`compile`) selects AdamW. fp16 uses a `torch.amp.GradScaler`, as real fp16 training must.

**What the memory figures include.** The worker takes the memory baseline *before* the first
step (the timing's first call) and reads the peak of warmup and the timed steps over it
(`cnnbench.measure.memory`). The optimizer allocates its state lazily in its first `step()` and keeps
it, so the peak covers gradients, optimizer state (momentum buffers; AdamW's two moments) and
the activations saved for backward, together; the first step's own transient peak (for the
compile backend, the compiler's working memory) is kept apart in `first_call_peak_*`. The
weights are allocated before the baseline: on CUDA they are inside `cuda_peak_allocated_bytes`
(the peak counts what is live when it was reset), on CPU they are in the RSS baseline, so
`peak_rss_delta_bytes` is gradients + optimizer state + activations + allocator/workspace
growth without them. `train_total_peak_bytes` is the step's whole footprint, weights included
(CPU: `peak_rss_delta_bytes + param_bytes`), and is what the report's training tables show.

**Why one probe forward.** The class count is the size of dim 1 of the model's output, found by
one batch-1 forward of the eager model in eval mode before anything is measured: it covers user
models and `num_classes=` kwargs, which the catalog cannot know. An output with spatial
dimensions `(N, C, H, W)` (e.g. a lone Inception module) gets per-position labels `(N, H, W)`.

`detail: true` (a `measure` setting) adds a split of the step into forward (with the loss),
backward and optimizer (with `zero_grad`) times: median ms of each over a few extra steps after
the timed loop, each part between two synchronized clock reads. The parts' sum is slightly above
the step median (three synchronizations instead of one); the samples never include these steps.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from cnnbench.backends import Prepared, get_backend
from cnnbench.core.errors import Unsupported
from cnnbench.backends.common import check_device, check_precision, device_sync
from cnnbench.backends.eager import amp_context
from cnnbench.stats import basic as stats

__all__ = [
    "OPTIMIZERS",
    "DATASET_SIZES",
    "TrainPrepared",
    "prepare_train",
    "time_per_epoch",
]

# Optimizer name -> (constructor name in torch.optim, keyword arguments). Learning rates are the
# usual starting points; the time of a step does not depend on them.
OPTIMIZERS: dict[str, tuple[str, dict[str, Any]]] = {
    "sgd": ("SGD", {"lr": 0.01, "momentum": 0.9}),
    "adamw": ("AdamW", {"lr": 1e-3, "weight_decay": 0.01}),
}
DEFAULT_OPTIMIZER = "sgd"

# Training-set sizes the time-per-epoch block of a train record is given for (images).
DATASET_SIZES: dict[str, int] = {
    "imagenet1k": 1_281_167,
    "cifar10": 50_000,
}

LABEL_SEED = 1  # the example input uses seed 0 (backends.common.example_batch)
DETAIL_MIN_STEPS = 3
DETAIL_MAX_STEPS = 20
DETAIL_TARGET_S = 1.0  # extra steps for `detail`: about this long, within the bounds above


@dataclass
class TrainPrepared(Prepared):
    """A prepared training step. `run()` is one step; `train_record` summarizes after timing.

    `after_timing` (called by the worker after the timed loop and the memory read-out) runs the
    `detail` sub-timings when asked and checks the loss; `train_record(samples_ms)` then returns
    the `train` block of the case's record.
    """

    state: dict[str, Any] = field(default_factory=dict)

    def train_record(self, samples_ms: list[float]) -> dict[str, Any]:
        out: dict[str, Any] = {
            "optimizer": self.info.get("optimizer"),
            "loss": "cross_entropy",
            "num_classes": self.info.get("num_classes"),
            "loss_first": self.state.get("loss_first"),
            "loss_last": self.state.get("loss_last"),
            "steps_done": self.state.get("steps", 0),
        }
        if self.state.get("detail_ms") is not None:
            out["detail_ms"] = self.state["detail_ms"]
        if samples_ms:
            median_ms = stats.median(samples_ms)
            out["time_per_epoch"] = time_per_epoch(median_ms, self.state["batch_size"])
        return out


def _epoch_seconds(median_ms: float, batch_size: int, dataset_size: int) -> float:
    if dataset_size <= 0:
        raise ValueError(f"dataset_size must be positive, got {dataset_size}")
    steps = math.ceil(dataset_size / batch_size)
    return steps * median_ms / 1000.0


def time_per_epoch(median_ms: float, batch_size: int, sizes: dict[str, int] | None = None) -> dict[str, Any]:
    """The `time_per_epoch` block of a train record: seconds per epoch for each named dataset."""
    sizes = DATASET_SIZES if sizes is None else sizes
    out: dict[str, Any] = {
        "basis": "median step latency x ceil(images / batch_size), at the case's input size; "
        "data loading excluded",
    }
    for name, n in sizes.items():
        out[name] = {
            "images": n,
            "steps": math.ceil(n / batch_size),
            "seconds": _epoch_seconds(median_ms, batch_size, n),
        }
    return out


# --------------------------------------------------------------------------------------------
# Preparing a step.


def _main_output(out: Any) -> Any:
    """The logits of a model output: a tensor, or the first element of a tuple / namedtuple
    (torchvision's InceptionOutputs, GoogLeNetOutputs: the aux logits are not in the loss)."""
    import torch

    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    if isinstance(out, dict) and out:
        first = out.get("out", next(iter(out.values())))
        if isinstance(first, torch.Tensor):
            return first
    raise Unsupported(f"cannot train on a model output of type {type(out).__name__}: expected logits")


def _label_shape(out_shape: tuple[int, ...], batch_size: int) -> tuple[int, tuple[int, ...]]:
    """(number of classes, label shape) for cross-entropy on an output of `out_shape`."""
    if len(out_shape) < 2:
        raise Unsupported(f"model output has shape {tuple(out_shape)}: no class dimension to train against")
    num_classes = int(out_shape[1])
    if num_classes < 1:
        raise Unsupported(f"model output has shape {tuple(out_shape)}: no classes")
    return num_classes, (batch_size, *out_shape[2:])


def _grad_scaler(device: str, precision: str):
    """A GradScaler for fp16 (loss scaling keeps small gradients from flushing to zero)."""
    import torch

    if precision != "fp16":
        return None
    try:
        return torch.amp.GradScaler(device)
    except Exception as exc:  # an older torch without a CPU GradScaler
        raise Unsupported(f"fp16 training needs a GradScaler on {device}, which this torch lacks: {exc}") from exc


def _check_fp16_autocast(device: str, precision: str) -> None:
    """fp16 autocast on CPU is recent: try a tiny conv + backward and refuse with the reason."""
    import torch

    if precision != "fp16" or device != "cpu":
        return
    try:
        w = torch.randn(2, 1, 3, 3, requires_grad=True)
        with torch.autocast(device_type="cpu", dtype=torch.float16):
            y = torch.nn.functional.conv2d(torch.randn(1, 1, 5, 5), w)
        y.float().sum().backward()
    except Exception as exc:
        raise Unsupported(f"fp16 autocast training is not available on CPU in this torch build: {exc}") from exc


def prepare_train(model: Any, example: Any, spec: Any, *, workdir: str) -> TrainPrepared:
    """Prepare one training step of `model` on `example` for `spec` (mode train).

    Everything that is not the step itself happens here, outside the timed region: the probe
    forward for the class count, seeded labels, moving the model and batch to the device,
    channels_last, building the optimizer (whose state is allocated lazily by its first step,
    i.e. inside the measured memory peak) and, for the compile backend, wrapping the model
    (compilation itself happens in the first call, whose time is `first_call_ms`).

    Args:
        model: the eager model as built (eval mode, CPU, fp32).
        example: the seeded example batch (CPU), `backends.common.example_batch(spec)`.
        spec: the CaseSpec; `spec.mode` should be "train".
        workdir: a directory for the run's files (the per-run inductor cache).

    Returns:
        A TrainPrepared whose `run()` performs one step and returns its (device) loss tensor.

    Raises:
        Unsupported: onnxrt (inference-only), a device or precision the machine lacks, an
            unknown optimizer, a model output with no class dimension.
    """
    import torch

    make_step, opt_name = _check_trainable(spec)
    num_classes, label_shape, labels = _seeded_labels(model, example, spec)
    eager, x = _to_device(model, example, spec)
    step = make_step(eager, spec, workdir=workdir)
    info: dict[str, Any] = dict(step.info)

    ctor, opt_kwargs = OPTIMIZERS[opt_name]
    optimizer = getattr(torch.optim, ctor)(eager.parameters(), **opt_kwargs)
    scaler = _grad_scaler(spec.device, spec.precision)
    sync = device_sync(spec.device)
    state: dict[str, Any] = {"steps": 0, "batch_size": spec.batch_size, "loss": None}
    parts = _step_parts(step, x, labels, optimizer, scaler, spec)

    info.update(
        {
            "mode": "train",
            "optimizer": {"name": opt_name, "class": f"torch.optim.{ctor}", **opt_kwargs},
            "num_classes": num_classes,
            "label_shape": list(label_shape),
            "autocast": spec.precision != "fp32",
            "grad_scaler": scaler is not None,
            "channels_last": spec.channels_last,
            "zero_grad": "set_to_none",
        }
    )
    return TrainPrepared(
        run=_step_runner(parts, state),
        sync=sync,
        predict=_eval_predict(eager, spec),
        info=info,
        after_timing=_after_timing(step, parts, sync, state, spec),
        state=state,
    )


def _check_trainable(spec: Any) -> tuple[Callable[..., Any], str]:
    """The backend's `train_step` factory and the optimizer name, or Unsupported with the reason
    (training is a capability of the backend; device, precision and optimizer are checked here)."""

    backend = get_backend(spec.backend)
    make_step = getattr(backend, "train_step", None)
    if make_step is None:  # training is a capability of the backend
        raise Unsupported(getattr(backend, "no_training", None) or f"backend {spec.backend!r} has no training step")
    check_device(spec.device)
    check_precision(spec.device, spec.precision)
    _check_fp16_autocast(spec.device, spec.precision)
    opt_name = spec.option_dict.get("optimizer", DEFAULT_OPTIMIZER)
    if opt_name not in OPTIMIZERS:
        raise Unsupported(f"unknown optimizer {opt_name!r}; choose from {', '.join(OPTIMIZERS)}")
    return make_step, opt_name


def _seeded_labels(model: Any, example: Any, spec: Any) -> tuple[int, tuple[int, ...], Any]:
    """(number of classes, label shape, labels on the device): the class count from one batch-1
    probe forward of the eager model, the labels drawn once from a seeded generator."""
    import torch

    with torch.no_grad():
        probe = _main_output(model.eval()(example[:1]))
    num_classes, label_shape = _label_shape(tuple(probe.shape), spec.batch_size)
    del probe
    gen = torch.Generator().manual_seed(LABEL_SEED)
    labels = torch.randint(0, num_classes, label_shape, generator=gen).to(spec.device)
    return num_classes, label_shape, labels


def _to_device(model: Any, example: Any, spec: Any) -> tuple[Any, Any]:
    """The model in train mode and the batch, on the case's device and memory format."""
    import torch

    eager = model.to(spec.device).train()
    x = example.to(spec.device)
    if spec.channels_last:
        eager = eager.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    return eager, x


def _step_parts(step: Any, x: Any, labels: Any, optimizer: Any, scaler: Any, spec: Any) -> tuple[Callable, Callable, Callable]:
    """The three parts of a step, (forward_loss, backward, optimizer_step), kept apart so that
    `detail` can time each between synchronized clock reads."""
    import torch

    net = step.net
    cross_entropy = torch.nn.functional.cross_entropy

    def forward_loss():
        try:  # free until something raises (CPython 3.11+)
            with amp_context(spec.device, spec.precision):
                return cross_entropy(_main_output(net(x)), labels)
        except Exception as exc:
            if step.wrap_error is not None:  # e.g. a compile failure, which surfaces in the first call
                raise step.wrap_error(exc) from exc
            raise

    def backward(loss) -> None:
        (scaler.scale(loss) if scaler is not None else loss).backward()

    def optimizer_step() -> None:
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return forward_loss, backward, optimizer_step


def _step_runner(parts: tuple[Callable, Callable, Callable], state: dict[str, Any]) -> Callable[[], Any]:
    """`run()`: one whole step, counted in `state`, returning the loss as a device tensor."""
    forward_loss, backward, optimizer_step = parts

    def run():
        loss = forward_loss()
        backward(loss)
        optimizer_step()
        loss = loss.detach()
        if state["steps"] == 0:
            state["first_loss_t"] = loss
        state["loss"] = loss  # read after timing: .item() here would synchronize every step
        state["steps"] += 1
        return loss

    return run


def _eval_predict(eager: Any, spec: Any) -> Callable[[Any], Any]:
    """`predict(batch)` for the accuracy check: the trained weights as they are, in eval mode."""
    import torch

    def predict(batch):
        """Eval-mode forward of the (eager) model with the current weights; back to train()."""
        batch = batch.to(spec.device)
        if spec.channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        eager.eval()
        try:
            with torch.inference_mode(), amp_context(spec.device, spec.precision):
                return _main_output(eager(batch)).float().cpu()
        finally:
            eager.train()

    return predict


def _after_timing(step: Any, parts: tuple[Callable, Callable, Callable], sync: Callable[[], None] | None,
                  state: dict[str, Any], spec: Any) -> Callable[[], list[str]]:
    """`after_timing()`: the backend's own check, the `detail` split when asked, and the losses
    read back (a loss that is not finite is a warning: the model diverged)."""

    def after_timing() -> list[str]:
        warnings: list[str] = []
        if step.after_timing is not None:
            warnings.extend(step.after_timing())
        if getattr(spec.measure, "detail", False):
            state["detail_ms"] = _detail(*parts, sync, state)
        for name, key in (("loss_first", "first_loss_t"), ("loss_last", "loss")):
            t = state.get(key)
            state[name] = float(t.float().cpu()) if t is not None else None
        last = state.get("loss_last")
        if last is not None and not math.isfinite(last):
            warnings.append(
                f"training loss is not finite ({last}) after {state['steps']} steps: the model diverged "
                "on its random labels, so later steps computed on non-finite values"
            )
        return warnings

    return after_timing


def _detail(
    forward_loss: Callable[[], Any],
    backward: Callable[[Any], None],
    optimizer_step: Callable[[], None],
    sync: Callable[[], None] | None,
    state: dict[str, Any],
    *,
    clock: Callable[[], int] = time.perf_counter_ns,
) -> dict[str, Any]:
    """Median forward / backward / optimizer ms over a few extra, separately timed steps."""

    sync = sync or (lambda: None)
    parts: dict[str, list[float]] = {"forward": [], "backward": [], "optimizer": []}
    steps = DETAIL_MIN_STEPS
    started = clock()
    i = 0
    while i < steps:
        sync()
        t0 = clock()
        loss = forward_loss()
        sync()
        t1 = clock()
        backward(loss)
        sync()
        t2 = clock()
        optimizer_step()
        sync()
        t3 = clock()
        parts["forward"].append((t1 - t0) / 1e6)
        parts["backward"].append((t2 - t1) / 1e6)
        parts["optimizer"].append((t3 - t2) / 1e6)
        state["loss"] = loss.detach()
        state["steps"] += 1
        i += 1
        if i == 1:  # size the run from the first step: about DETAIL_TARGET_S in all
            per_step_s = (t3 - t0) / 1e9
            want = math.ceil(DETAIL_TARGET_S / per_step_s) if per_step_s > 0 else DETAIL_MAX_STEPS
            steps = max(DETAIL_MIN_STEPS, min(DETAIL_MAX_STEPS, want))
    out: dict[str, Any] = {name: stats.median(values) for name, values in parts.items()}
    out["sum"] = out["forward"] + out["backward"] + out["optimizer"]
    out["steps"] = steps
    out["seconds"] = (clock() - started) / 1e9
    return out
