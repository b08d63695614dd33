"""Backends behind one small protocol.

A backend turns an eager model and an example input into a `Prepared` case: a zero-argument
`run()` that performs one forward pass on inputs prepared in advance (outside the timed region)
and forces its outputs, a `sync()` for the device, and `info` recorded on the case (provider
actually used, exporter, compile settings...). `predict(x)` runs the prepared model on any CPU
input batch of the case's shape and returns CPU float32 outputs: it is what parity checks and
accuracy evaluation call, never timed.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol
from cnnbench.core.errors import Unsupported

__all__ = ["Prepared", "TrainStep", "Backend", "get_backend", "BACKEND_MODULES"]


@dataclass
class Prepared:
    run: Callable[[], Any]
    sync: Callable[[], None] | None
    predict: Callable[[Any], Any]
    info: dict[str, Any] = field(default_factory=dict)
    # Called after the timed loop; returns warnings to put on the case (e.g. recompiles seen).
    after_timing: Callable[[], list[str]] | None = None
    # CUDA only: returns cnnbench.backends.transfer.Parts (H2D copy, compute, D2H copy) for `measure.transfer`.
    transfer: Callable[[], Any] | None = None


@dataclass
class TrainStep:
    """What a backend makes of a model for a training step (`cnnbench.measure.training` builds the loss,
    backward and optimizer around `net`, the same for every backend)."""

    net: Callable[[Any], Any]  # the forward the step calls (the model itself, or compiled)
    info: dict[str, Any] = field(default_factory=dict)  # merged into the case's backend_info
    # Turns an exception raised in the forward into the case's failure (e.g. a compile failure).
    wrap_error: Callable[[BaseException], BaseException] | None = None
    # Called after the timed loop; returns warnings to put on the case (e.g. recompiles seen).
    after_timing: Callable[[], list[str]] | None = None


class Backend(Protocol):
    """A backend prepares a model for timed inference. Training is a capability: a backend that
    can run a training step also has `train_step(model, spec, *, workdir) -> TrainStep`; one
    that cannot may say why in `no_training` (a sentence)."""

    name: str

    def prepare(self, model: Any, example: Any, spec: Any, *, workdir: str) -> Prepared: ...


BACKEND_MODULES = {
    "eager": "cnnbench.backends.eager",
    "compile": "cnnbench.backends.compiled",
    "onnxrt": "cnnbench.backends.onnxrt",
    "openvino": "cnnbench.backends.openvino",
    "aoti": "cnnbench.backends.aoti",
    "tensorrt": "cnnbench.backends.tensorrt",
}


def get_backend(name: str) -> Backend:
    """Import a backend module on demand (each pulls in heavy dependencies of its own)."""

    try:
        module_name = BACKEND_MODULES[name]
    except KeyError:
        raise Unsupported(f"unknown backend {name!r}") from None
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise Unsupported(f"backend {name!r} is not available: {exc}") from exc
    return module.BACKEND
