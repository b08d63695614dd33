"""What every backend shares: device and precision checks, the seeded example batch."""

from __future__ import annotations

from typing import Any

from cnnbench.core.errors import Unsupported

DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


def check_device(device: str) -> None:
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        raise Unsupported("device cuda requested but CUDA is not available on this machine")


def autocast_dtype(precision: str):
    import torch

    return getattr(torch, DTYPES[precision])


def check_precision(device: str, precision: str) -> None:
    """Refuse precisions the device cannot run, with the reason, instead of a fake number."""
    import torch

    if precision == "fp32":
        return
    if precision == "int8":  # backends with an int8 path (cnnbench.backends.quantize) never get here with it
        raise Unsupported(
            "int8 needs a quantized graph and its runtime: use onnxrt, openvino, compile or aoti (static PTQ)"
        )
    if not torch.amp.is_autocast_available(device):
        raise Unsupported(f"autocast is not available on {device} in this torch build")
    if device == "cuda" and precision == "bf16" and not torch.cuda.is_bf16_supported():
        raise Unsupported("bf16 is not supported by this GPU")


def example_batch(spec: Any, *, seed: int = 0):
    """The same seeded, non-constant input for every backend of a case (never zeros)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    return torch.randn((spec.batch_size, *spec.input_size), generator=gen)


def device_sync(device: str):
    """The function to call before reading a host clock around a timed sample."""
    import torch

    if device == "cuda":
        return torch.cuda.synchronize
    return None
