"""Static metrics: parameter counts and multiply-accumulates, cross-checked and cached on disk.

Conventions (DESIGN.md, "Counting conventions"):
- **MACs** are multiply-accumulates: the unit of fvcore's FlopCountAnalysis (which calls one
  MAC a "flop") and of torchvision's published `_ops` ("GFLOPS" in its docs). **FLOPs = 2 x
  MACs**, the unit of `torch.utils.flop_counter`. GMACs are the primary figure.
- The primary counter is fvcore. It counts convolutions, linear layers and matmuls, and also
  BatchNorm/LayerNorm/GroupNorm (1-2 per element) and adaptive average pooling (1 per input
  element); activations, max/avg pooling and element-wise additions count zero.
  `torch.utils.flop_counter.FlopCounterMode` is the cross-check: it counts convolutions,
  matmuls and attention only (as torchvision's `_ops` do), so on small networks heavy in
  BatchNorm fvcore is a few percent higher (disagreement: mobilenet_v3_small 5.3%, resnet18
  0.3%). A disagreement over `DISAGREEMENT_WARN_THRESHOLD` becomes a warning that says which
  counter is higher and how many of fvcore's GMACs are in ops the cross-check ignores.
- fvcore is taught two ops it does not know: `aten::_convolution_mode` (a Conv2d with
  `padding='same'`, which it would silently count as zero) and
  `aten::scaled_dot_product_attention`. PyTorch's fused multi-head-attention inference fast
  path (`aten::_native_multi_head_attention`) is invisible to both counters, so it is switched
  off while counting (`torch.backends.mha.set_fastpath_enabled(False)`); the math is the same.
  FlopCounterMode in turn is taught the CPU attention kernel
  (`aten._scaled_dot_product_flash_attention_for_cpu`) with its own sdpa formula.
- Counting runs eagerly at batch 1, fp32, on CPU, under `torch.no_grad()`, and is never timed.
  The figures are per image; a caller scales MACs by its batch size.

`counts_for` caches its result in one small JSON file per (model, source, kwargs, input size,
torch/torchvision/fvcore versions) under `$CNNBENCH_CACHE_DIR` (default `~/.cache/cnnbench`),
so a suite whose cases each run in a fresh worker process counts each model once.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import warnings
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cnnbench.backends.artifacts import cache_dir, source_fingerprint
from cnnbench.core.environment import package_versions
from cnnbench.core.errors import UserError
from cnnbench.core.safeio import WriteError, atomic_write
from cnnbench.models.catalog import get_info
from cnnbench.models.registry import aux_heads_included, build_model

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn

__all__ = [
    "DISAGREEMENT_WARN_THRESHOLD",
    "COUNTING_VERSION",
    "count_params",
    "count_macs",
    "counts_for",
    "cache_dir",
]

# Relative difference between the two counters above which a row carries a warning.
DISAGREEMENT_WARN_THRESHOLD = 0.05

# Bump when what is counted changes, so cached figures from older code are not reused.
# 1: fvcore + _convolution_mode/sdpa handles, MHA fast path off, FlopCounterMode cross-check.
COUNTING_VERSION = 1

PRIMARY_COUNTER = "fvcore"
CROSSCHECK_COUNTER = "torch.utils.flop_counter"

# fvcore reports every op it has no handle for: mostly activations, pooling, element-wise and
# shape ops, which do no multiply-accumulates by convention. Only unsupported ops whose names
# look like real MAC work (these substrings) are worth a warning.
_MAC_OP_HINTS = (
    "conv", "mm", "matmul", "linear", "attention", "einsum", "tensordot",
    "lstm", "gru", "rnn", "norm", "upsample", "interpolate", "grid_sampl", "fft",
)  # fmt: skip

# Ops that fvcore counts and FlopCounterMode does not (named by fvcore's by_operator keys).
_FVCORE_ONLY_OPS = (
    "batch_norm", "group_norm", "layer_norm", "instance_norm",
    "adaptive_avg_pool2d", "upsample_nearest2d", "upsample_bilinear2d", "grid_sampler",
)  # fmt: skip


def count_params(model: "nn.Module") -> tuple[int, int]:
    """Parameters of the model as built: (total, trainable). Shared tensors count once."""
    total = trainable = 0
    for p in model.parameters():  # parameters() yields a shared (tied) tensor once
        total += p.numel()
        if p.requires_grad:
            trainable += p.numel()
    return total, trainable


@contextlib.contextmanager
def counting_context():
    """no_grad, MHA fast path off, and fvcore's and the tracer's chatter silenced."""
    import torch

    mha = getattr(torch.backends, "mha", None)
    fastpath = mha.get_fastpath_enabled() if mha is not None else None
    fv_logger = logging.getLogger("fvcore")
    old_level = fv_logger.level
    try:
        if mha is not None:
            mha.set_fastpath_enabled(False)
        fv_logger.setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with torch.no_grad():
                yield
    finally:
        fv_logger.setLevel(old_level)
        if mha is not None:
            mha.set_fastpath_enabled(fastpath)


def import_fvcore() -> Any:
    """fvcore.nn.FlopCountAnalysis, or None when fvcore is not installed."""
    try:
        with warnings.catch_warnings():
            # fvcore.nn uses torch.jit.script at import time, which torch deprecates.
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            from fvcore.nn import FlopCountAnalysis
    except ImportError:
        return None
    return FlopCountAnalysis


def conv_mode_macs(inputs: list[Any], outputs: list[Any]) -> Counter:
    """fvcore handle for aten::_convolution_mode (Conv2d with padding='same' or 'valid').

    Its inputs are (input, weight, bias, stride, padding: str, dilation, groups); the weight
    shape (Cout, Cin/groups, kh, kw) already accounts for groups.
    """
    from fvcore.nn.jit_handles import conv_flop_count, get_shape

    return Counter({"conv": conv_flop_count(get_shape(inputs[0]), get_shape(inputs[1]), get_shape(outputs[0]))})


def sdpa_macs(inputs: list[Any], outputs: list[Any]) -> int:
    """fvcore handle for aten::scaled_dot_product_attention: Q @ K^T plus attn @ V.

    q (..., L, E), k (..., S, E), v (..., S, Ev): L*S*E + L*S*Ev MACs per batch/head, as
    FlopCounterMode counts it (it reports twice that in FLOPs).
    """
    from fvcore.nn.jit_handles import get_shape

    q, k, v = (get_shape(x) for x in inputs[:3])
    batch = math.prod(q[:-2])
    length, e = q[-2], q[-1]
    s, ev = k[-2], v[-1]
    return batch * length * s * (e + ev)


def fvcore_analysis(model: "nn.Module", example: "torch.Tensor") -> Any:
    """fvcore's FlopCountAnalysis configured as cnnbench counts: the op handles for
    `padding='same'` convolutions and attention, its warnings off (the case's GMACs and the
    per-layer profile both use this one configuration, so their totals agree)."""
    return (
        import_fvcore()(model, (example,))
        .set_op_handle(**{"aten::_convolution_mode": conv_mode_macs, "aten::scaled_dot_product_attention": sdpa_macs})
        .unsupported_ops_warnings(False)
        .uncalled_modules_warnings(False)
        .tracer_warnings("none")
    )


def _fvcore_macs(model: "nn.Module", example: "torch.Tensor") -> tuple[int, dict[str, int], Counter]:
    analysis = fvcore_analysis(model, example)
    total = int(analysis.total())
    by_op = {k: int(v) for k, v in analysis.by_operator().items()}
    return total, by_op, Counter(analysis.unsupported_ops())


def _crosscheck_macs(model: "nn.Module", example: "torch.Tensor") -> float:
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False, custom_mapping=_crosscheck_extra_formulas())
    with counter:
        model(example)
    return counter.get_total_flops() / 2


def _crosscheck_extra_formulas() -> dict[Any, Any]:
    """FlopCounterMode knows the CUDA attention kernels but not the CPU one that
    scaled_dot_product_attention dispatches to here; count it with torch's own sdpa formula."""
    import torch
    from torch.utils import flop_counter

    op = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    count = getattr(flop_counter, "sdpa_flop_count", None)
    if op is None or count is None:
        return {}

    def formula(query_shape: Any, key_shape: Any, value_shape: Any, *args: Any, **kwargs: Any) -> int:
        return count(query_shape, key_shape, value_shape)

    return {op: formula}


def _relevant_unsupported(unsupported: Counter) -> list[str]:
    out = []
    for op, n in sorted(unsupported.items()):
        base = op.split("::")[-1].lower()
        if any(hint in base for hint in _MAC_OP_HINTS):
            out.append(f"{op} x{n}")
    return out


def count_macs(model: "nn.Module", example: "torch.Tensor") -> dict[str, Any]:
    """Multiply-accumulates of one forward pass, by fvcore, cross-checked by FlopCounterMode.

    Args:
        model: the eager model; put in eval() mode here.
        example: an input batch, normally batch 1 (figures are for this batch as given).

    Returns:
        `gmacs` (fvcore total / 1e9), `gflops` (2 x gmacs), `counter` ("fvcore"),
        `by_operator` (GMACs per fvcore op kind), `crosscheck_gmacs` (FlopCounterMode FLOPs / 2
        / 1e9, None if it failed), `crosscheck_counter`, `disagreement` (|a - b| / max(a, b),
        None without a cross-check) and `warnings` (short strings for the row).
    """
    model.eval()
    notes: list[str] = []
    primary: float | None = None
    by_op: dict[str, float] = {}
    counter = PRIMARY_COUNTER
    with counting_context():
        if import_fvcore() is None:
            notes.append("fvcore is not installed: MACs come from torch.utils.flop_counter alone")
        else:
            try:
                total, by_op_raw, unsupported = _fvcore_macs(model, example)
            except Exception as exc:  # noqa: BLE001 - tracing fails on some models; the cross-check still runs
                notes.append(
                    f"fvcore failed ({type(exc).__name__}: {_first_line(exc)}); MACs from torch.utils.flop_counter"
                )
            else:
                primary = total / 1e9
                by_op = {k: v / 1e9 for k, v in sorted(by_op_raw.items())}
                skipped = _relevant_unsupported(unsupported)
                if skipped:
                    more = " ..." if len(skipped) > 6 else ""
                    notes.append("fvcore counted zero MACs for unsupported ops: " + ", ".join(skipped[:6]) + more)
        try:
            crosscheck: float | None = _crosscheck_macs(model, example) / 1e9
        except Exception as exc:  # noqa: BLE001 - the cross-check is an extra, never fails a case
            crosscheck = None
            notes.append(f"cross-check (torch.utils.flop_counter) failed: {type(exc).__name__}: {_first_line(exc)}")
    if primary is None:
        if crosscheck is None:
            raise RuntimeError("; ".join(notes))
        primary, crosscheck, counter = crosscheck, None, CROSSCHECK_COUNTER

    disagreement = None
    if crosscheck is not None:
        larger = max(primary, crosscheck)
        disagreement = abs(primary - crosscheck) / larger if larger > 0 else 0.0
        if disagreement > DISAGREEMENT_WARN_THRESHOLD:
            hi, lo = (PRIMARY_COUNTER, CROSSCHECK_COUNTER)
            if primary < crosscheck:
                hi, lo = lo, hi
            msg = (
                f"MAC counters disagree by {disagreement:.1%}: {PRIMARY_COUNTER} {primary:.4g} vs "
                f"{CROSSCHECK_COUNTER} {crosscheck:.4g} GMACs ({hi} higher than {lo})"
            )
            extra = sum(by_op.get(k, 0.0) for k in _FVCORE_ONLY_OPS)
            if primary > crosscheck and extra > 0:
                msg += f"; {extra:.4g} GMACs of fvcore's are norm/adaptive-pool ops the other does not count"
            notes.append(msg)
    return {
        "gmacs": primary,
        "gflops": 2 * primary,
        "counter": counter,
        "by_operator": by_op,
        "crosscheck_gmacs": crosscheck,
        "crosscheck_counter": CROSSCHECK_COUNTER if crosscheck is not None else None,
        "disagreement": disagreement,
        "warnings": notes,
    }


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else ""


# ---------------------------------------------------------------------------------------------
# Cached counts per model and input size






def _spec_fields(
    spec_like: Any, source: str | None, kwargs: dict | None, input_size: Any
) -> tuple[str, str | None, dict, tuple[int, ...] | None]:
    if isinstance(spec_like, str):
        return spec_like, source, dict(kwargs or {}), tuple(input_size) if input_size is not None else None
    # A CaseSpec (or anything shaped like one).
    mk = getattr(spec_like, "model_kwargs", ()) or ()
    return (
        spec_like.model,
        getattr(spec_like, "source", None),
        dict(mk),
        tuple(getattr(spec_like, "input_size", None) or ()) or None,
    )


def counts_for(
    spec_like: Any,
    *,
    source: str | None = None,
    kwargs: dict[str, Any] | None = None,
    input_size: tuple[int, int, int] | None = None,
) -> dict[str, Any]:
    """Parameters and per-image MACs of a model at an input size, computed once and cached.

    Args:
        spec_like: a model name, or a `CaseSpec` (its model, source, model_kwargs and
            input_size are used and the other arguments ignored).
        source: "package.module:callable" of a user model.
        kwargs: builder keyword arguments.
        input_size: (C, H, W); the catalog default for registry models when None.

    Returns:
        `params`, `trainable_params`, `aux_heads_included`, `input_size`, `gmacs` and `gflops`
        (per image, batch 1), `counter`, `by_operator`, `crosscheck` ({counter, gmacs,
        disagreement}), `warnings`, `versions`. The caller multiplies MACs by its batch size.
    """
    model, source, kwargs, size = _spec_fields(spec_like, source, kwargs, input_size)
    if size is None:
        if source is not None:

            raise UserError(f"model {model!r} from {source!r} needs an input_size to be counted")

        size = get_info(model).input_size
    size = tuple(int(v) for v in size)
    key = {
        "counting_version": COUNTING_VERSION,
        "model": model,
        "source": source,
        "source_sha256": source_fingerprint(source),
        "kwargs": kwargs,
        "input_size": list(size),
        "versions": package_versions(("torchvision", "fvcore", "timm"), torch_runtime=True),
    }
    blob = json.dumps(key, sort_keys=True, default=repr)
    path = cache_dir() / "counts" / f"{model.replace('/', '_')}-{hashlib.sha256(blob.encode()).hexdigest()[:24]}.json"
    cached = _read_cache(path, blob)
    if cached is not None:
        return cached
    result = _compute_counts(model, source, kwargs, size)
    result["versions"] = key["versions"]
    _write_cache(path, blob, result)
    return result


def _compute_counts(model_name: str, source: str | None, kwargs: dict, size: tuple[int, ...]) -> dict[str, Any]:
    import torch

    model = build_model(model_name, source=source, kwargs=kwargs, input_size=size).float().to("cpu")
    total, trainable = count_params(model)
    gen = torch.Generator().manual_seed(0)
    example = torch.randn((1, *size), generator=gen)
    macs = count_macs(model, example)
    return {
        "params": total,
        "trainable_params": trainable,
        "aux_heads_included": aux_heads_included(model),
        "input_size": list(size),
        "gmacs": macs["gmacs"],
        "gflops": macs["gflops"],
        "counter": macs["counter"],
        "by_operator": macs["by_operator"],
        "crosscheck": {
            "counter": macs["crosscheck_counter"],
            "gmacs": macs["crosscheck_gmacs"],
            "disagreement": macs["disagreement"],
        },
        "warnings": macs["warnings"],
    }


def _read_cache(path: Path, blob: str) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("key") != blob or not isinstance(data.get("counts"), dict):
        return None  # a stale or foreign file: recompute and overwrite
    return data["counts"]


def _write_cache(path: Path, blob: str, counts: dict[str, Any]) -> None:
    """Write atomically (temporary file, then os.replace); a cache that cannot be written is
    only a lost optimisation, never an error."""

    with contextlib.suppress(WriteError):
        atomic_write(path, json.dumps({"key": blob, "counts": counts}, indent=1, sort_keys=True))
