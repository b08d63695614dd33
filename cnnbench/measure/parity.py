"""Parity: does a backend compute what eager fp32 computes, on the same inputs?

After the timed loop (never inside it), the worker runs the case's seeded example batch (the
same values the timed loop used, never zeros) through a fresh eager fp32 forward of the same
model under `torch.inference_mode()`, and through the backend's own `predict`, and compares:

- `max_abs_err`: the largest absolute difference over every output element.
- `max_rel_err`: `max_abs_err` divided by the output scale, `max|reference|`. Relative to the
  *scale*, not element-wise: an element-wise ratio explodes on logits near zero, while what
  matters for a classifier is the error against the size of its outputs. Randomly initialised
  networks (no weights are downloaded) have very different scales, e.g. ~6 for resnet18, ~3e-9
  for mobilenet_v2 and ~4e-14 for efficientnet_b0, so an absolute tolerance would be meaningless.
- `top1_agreement`: the fraction of rows whose argmax agrees with the reference's.

The gate (`ok`) is: same output shapes, every value finite, and `max_rel_err <= tolerance`.
Top-1 agreement is recorded, not gated: with random weights many rows are near-ties, and a flip
on a row whose top-2 margin exceeds `2 * tolerance * scale` is impossible once the error gate
passes, so a top-1 gate would only add noise from legitimate rounding on near-ties.

Tolerances (`TOLERANCES`, relative to the output scale), chosen from measurements across the zoo
on this machine kind (random weights, batch 8; docs/backends.md has the table):

- fp32: 1e-3. ONNX Runtime (either exporter) stayed at or below 1.7e-6 on 22 zoo models and
  torch.compile (inductor, freezing) at or below 1.2e-6, so a real fault (a wrong op, stale
  weights, a layout mix-up) shows up as an error of order 1e-2..1 while reordered float sums,
  or a Winograd convolution (~1e-4), never come near. On CUDA both the reference and the
  backends may use TF32 (torch's cuDNN default, ORT's CUDA default), whose 10-bit mantissa
  costs about 1e-3: fp32 on CUDA gets 5e-3.
- fp16: 3e-2. Eager fp16 autocast measured 3e-4..1e-3 (30x margin). Randomly initialised
  mobilenet_v2 and efficientnet_b0 produce outputs of 3e-9 and 4e-14, below fp16's smallest
  subnormal (6e-8): they come out as zeros and fail parity, which is the truth about fp16 there.
- bf16: 1e-1. Eager bf16 autocast measured 2e-3..1.5e-2 (8-bit mantissa, unit roundoff 3.9e-3).
- int8: 0.25. Static PTQ (cnnbench.backends.quantize; ORT QDQ, NNCF, PT2E) measured 7.7e-3..1.8e-2 on
  lenet5 and resnet18 with random weights and random calibration. Quantization error is a few
  percent of the scale by design: what int8 costs a model is its measured accuracy on a dataset
  (an int8 case carries the change vs fp32 eager), while this gate catches a broken graph.
  An int8 case calibrated on a dataset is checked on that dataset's training images that
  calibration did not see (`parity.inputs` says so; cnnbench.backends.quantize.parity_example): the
  seeded normal batch lies outside its calibrated ranges (trained lenet5: 0.37 of the scale).
"""

from __future__ import annotations

from typing import Any

__all__ = ["TOLERANCES", "tolerance_for", "check_parity", "compare_outputs"]

# Maximum error relative to the output scale (max |reference|), per precision.
TOLERANCES: dict[str, float] = {"fp32": 1e-3, "fp16": 3e-2, "bf16": 1e-1, "int8": 0.25}
# fp32 on CUDA: TF32 convolutions/matmuls (see the module docstring).
CUDA_FP32_TOLERANCE = 5e-3


def tolerance_for(precision: str, device: str) -> float:
    """The parity tolerance of a case, relative to the output scale."""
    if precision == "fp32" and device == "cuda":
        return CUDA_FP32_TOLERANCE
    return TOLERANCES[precision]


def output_tensors(out: Any) -> list[Any]:
    """The tensors of a model output (a tensor, or tuples/lists/dicts/namedtuples of them)."""
    import torch

    if isinstance(out, torch.Tensor):
        return [out]
    if hasattr(out, "__array__") and not isinstance(out, (list, tuple, dict)):
        return [torch.as_tensor(out)]
    if isinstance(out, dict):
        return [t for v in out.values() for t in output_tensors(v)]
    if isinstance(out, (list, tuple)):
        return [t for v in out for t in output_tensors(v)]
    return []


def compare_outputs(reference: Any, actual: Any, *, tolerance: float) -> dict[str, Any]:
    """Compare backend outputs with reference outputs (both CPU, any nesting of tensors).

    Returns:
        `max_abs_err`, `max_rel_err` (over the output scale), `scale` (max |reference|),
        `top1_agreement` (over the rows of the first output, None if it is not 2-D or more),
        `rows`, `tolerance`, `ok`, and `reason` (None when ok).
    """
    import torch

    refs = [t.detach().float().cpu() for t in output_tensors(reference)]
    acts = [t.detach().float().cpu() for t in output_tensors(actual)]
    result: dict[str, Any] = {
        "max_abs_err": None,
        "max_rel_err": None,
        "scale": None,
        "top1_agreement": None,
        "rows": None,
        "tolerance": tolerance,
        "ok": False,
        "reason": None,
    }
    if len(refs) != len(acts) or not refs:
        result["reason"] = f"the backend returned {len(acts)} output tensor(s), eager returned {len(refs)}"
        return result
    for i, (r, a) in enumerate(zip(refs, acts)):
        if tuple(r.shape) != tuple(a.shape):
            result["reason"] = f"output {i} has shape {tuple(a.shape)}, eager's is {tuple(r.shape)}"
            return result
    if not all(bool(torch.isfinite(a).all()) for a in acts):
        result["reason"] = "the backend's outputs contain NaN or inf"
        return result

    scale = max(float(r.abs().max()) if r.numel() else 0.0 for r in refs)
    max_abs = max(float((a - r).abs().max()) if r.numel() else 0.0 for r, a in zip(refs, acts))
    if scale > 0:
        max_rel: float | None = max_abs / scale
    else:  # an all-zero reference (e.g. vit_* with its zero-initialised head)
        max_rel = 0.0 if max_abs == 0 else None  # None: infinitely far off (JSON has no inf)
    result.update(max_abs_err=max_abs, max_rel_err=max_rel, scale=scale)

    first_ref, first_act = refs[0], acts[0]
    if first_ref.dim() >= 2 and first_ref.shape[0] > 0:
        r2, a2 = first_ref.flatten(1), first_act.flatten(1)
        agree = (r2.argmax(dim=1) == a2.argmax(dim=1)).float().mean()
        result["top1_agreement"] = float(agree)
        result["rows"] = int(r2.shape[0])

    result["ok"] = max_rel is not None and max_rel <= tolerance
    if max_rel is None:
        result["reason"] = f"parity failed: eager's outputs are all zero, the backend's are up to {max_abs:.3g}"
    elif not result["ok"]:
        result["reason"] = (
            f"parity failed: max error {max_abs:.3g} is {max_rel:.3g} of the output scale {scale:.3g}"
            f" (tolerance {tolerance:g})"
        )
    return result


def _reference_outputs(model: Any, example: Any, device: str) -> Any:
    """Eager fp32 outputs of `model` on `example`, on `device` (true fp32: TF32 off on CUDA)."""
    import contextlib

    import torch

    params = list(model.parameters())
    if device == "cuda" and (not params or params[0].device.type != "cuda"):
        model = model.to("cuda")
    elif device != "cuda" and params and params[0].device.type != "cpu":
        model = model.to("cpu")
    model = model.float().eval()
    x = example.to(device).float()

    tf32 = contextlib.ExitStack()
    if device == "cuda":
        saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False

        def restore() -> None:
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved

        tf32.callback(restore)
    with tf32, torch.inference_mode():
        out = model(x)
        return [t.detach().float().cpu() for t in output_tensors(out)]


def check_parity(spec: Any, model: Any, example: Any, prepared: Any) -> dict[str, Any]:
    """Parity of a prepared backend against eager fp32 on the case's seeded example batch.

    Args:
        spec: the `CaseSpec` (its precision and device choose the tolerance).
        model: the eager model the backend was prepared from (same weights).
        example: the seeded CPU input batch the timed loop used.
        prepared: the backend's `Prepared`; its `predict` is called once.

    Returns:
        The `compare_outputs` dict plus `reference` (what the reference was). A failure to run
        either side is returned as `ok: False` with the reason, never raised: the timings stay.
    """
    tolerance = tolerance_for(spec.precision, spec.device)
    reference_desc = f"eager fp32 on {spec.device}, inference_mode" + (", TF32 off" if spec.device == "cuda" else "")
    try:
        actual = prepared.predict(example)
    except Exception as exc:  # noqa: BLE001 - a parity failure is data on the case
        return _failed(tolerance, reference_desc, f"parity not computed: the backend's predict failed: {_line(exc)}")
    try:
        reference = _reference_outputs(model, example, spec.device)
    except Exception as exc:  # noqa: BLE001
        return _failed(tolerance, reference_desc, f"parity not computed: the eager reference failed: {_line(exc)}")
    result = compare_outputs(reference, actual, tolerance=tolerance)
    result["reference"] = reference_desc
    return result


def _failed(tolerance: float, reference: str, reason: str) -> dict[str, Any]:
    return {
        "max_abs_err": None,
        "max_rel_err": None,
        "scale": None,
        "top1_agreement": None,
        "rows": None,
        "tolerance": tolerance,
        "ok": False,
        "reason": reason,
        "reference": reference,
    }


def _line(exc: BaseException) -> str:
    text = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), "")
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
