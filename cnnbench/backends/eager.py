"""Eager PyTorch: eval(), inference_mode, autocast for fp16/bf16, optional channels_last."""

from __future__ import annotations

import contextlib
from typing import Any

from cnnbench.backends import Prepared, TrainStep
from cnnbench.backends.common import autocast_dtype, check_device, check_precision, device_sync
from cnnbench.backends.transfer import torch_transfer


def amp_context(device: str, precision: str):
    import torch

    if precision in ("fp32", "int8"):  # int8 is a quantized graph, never autocast
        return contextlib.nullcontext()
    return torch.autocast(device_type=device, dtype=autocast_dtype(precision))


class EagerBackend:
    name = "eager"

    def prepare(self, model: Any, example: Any, spec: Any, *, workdir: str) -> Prepared:
        import torch

        check_device(spec.device)
        check_precision(spec.device, spec.precision)
        model = model.eval().to(spec.device)
        x = example.to(spec.device)
        if spec.channels_last:
            model = model.to(memory_format=torch.channels_last)
            x = x.contiguous(memory_format=torch.channels_last)

        def run():
            with torch.inference_mode(), amp_context(spec.device, spec.precision):
                return model(x)

        def predict(batch):
            batch = batch.to(spec.device)
            if spec.channels_last:
                batch = batch.contiguous(memory_format=torch.channels_last)
            with torch.inference_mode(), amp_context(spec.device, spec.precision):
                return model(batch).float().cpu()

        return Prepared(
            run=run,
            sync=device_sync(spec.device),
            predict=predict,
            info={"autocast": spec.precision != "fp32", "channels_last": spec.channels_last},
            transfer=torch_transfer(x, run) if spec.device == "cuda" else None,
        )


    def train_step(self, model: Any, spec: Any, *, workdir: str) -> TrainStep:
        """Eager training: the model's own forward."""
        return TrainStep(net=model)


BACKEND = EagerBackend()
