"""The per-layer profile (the textbook table, measured) and the analytic memory figures.

`profile_model` runs one forward pass with hooks on every module and returns a `Profile`: one
row per leaf-module call, in execution order, with its output volume, activations (elements and
bytes at a precision), parameters, MACs and the receptive field and cumulative stride (jump) the
textbook recurrence gives at that layer:

    r_out = r_in + (k - 1) * d * j_in        j_out = j_in * s

`activation_bytes` and `param_bytes` are the analytic memory figures every case record carries.

How the numbers are obtained (see docs/profile.md for the long version):

- **Rows.** A row is a *leaf call*: a module call during which no other module was called. That
  is every `nn.Conv2d`, `nn.ReLU`, ... and also modules such as `nn.MultiheadAttention` that use
  their children's weights without calling them. A module called twice gets two rows.
- **MACs** come from fvcore (`FlopCountAnalysis(...).by_module()`), the counter behind the
  case's GMACs, so the totals row equals fvcore's total by construction. Ops that a non-leaf
  module runs itself (fvcore-counted functional calls in a `forward`) get a "functional" row
  after that module's last layer. A module called several times has its fvcore count split over
  its calls in proportion to their output sizes (exact for conv, linear and norm layers, whose
  MACs per output element are fixed).
- **Parameters** of a module are counted on its first call only (shared weights once). The
  parameters a non-leaf module's own ops read (a class token, a layer scale, the weights of a
  child it uses without calling it) go on its functional row, and parameters no op read (e.g.
  auxiliary heads in eval mode) on one final "not executed" row, so the column sums to the
  model's parameter count.
- **Receptive field.** Every tensor carries its (r, j) (kept by object identity, through weak
  references). Module outputs get the recurrence from their input's (r, j); the tensors made by
  functional ops between modules (`+`, `torch.cat`, `flatten`, views) get, through a
  `TorchFunctionMode`, the element-wise largest (r, j) over the tracked tensors they were made
  from. For branching models (Inception, ResNet) that is the largest over the branches that
  reach a layer. A layer whose input was not tracked at all falls back to the largest (r, j)
  seen so far and is marked approximate. Layers that mix every position (a Linear on flattened
  features, global pooling, attention) make the field `global`, reported as the input size.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import weakref
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any, Callable, Iterator

from cnnbench.measure.parity import output_tensors
from cnnbench.core.errors import UserError
from cnnbench.measure.counting import counting_context, fvcore_analysis, import_fvcore

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn

__all__ = [
    "PRECISION_BYTES",
    "LayerRow",
    "Profile",
    "InputShapeError",
    "profile_model",
    "activation_bytes",
    "param_bytes",
    "time_layers",
    "fvcore_by_module",
]

# Bytes per floating-point element at each precision the suites know.
PRECISION_BYTES = {"fp32": 4, "fp16": 2, "bf16": 2, "int8": 1}

MAC_CONVENTION = "MACs = multiply-accumulates (fvcore's unit, torchvision's 'GFLOPS'); FLOPs = 2 x MACs"


class InputShapeError(UserError):
    """An input size the model cannot take: names the layer where the shape broke, in one line."""


def _bytes_per_element(precision: str) -> int:
    try:
        return PRECISION_BYTES[precision]
    except KeyError:
        raise UserError(
            f"unknown precision {precision!r}; choose one of {', '.join(PRECISION_BYTES)}"
        ) from None


@dataclass(frozen=True)
class LayerRow:
    """One row of the per-layer table.

    `kind` is "layer" (a leaf-module call), "functional" (ops a non-leaf module runs itself, and
    its direct parameters) or "not_executed" (parameters of modules the forward never called).
    Only "layer" rows have shapes and a receptive field. Spatial tuples (`kernel`, `stride`,
    `receptive_field`, `jump`) have one entry per spatial dimension (H, W for images).
    """

    index: int
    name: str
    type: str
    kind: str = "layer"
    call: int = 0  # 0 for a module's first call, 1 for its second, ...
    kernel: tuple[int, ...] | None = None
    stride: tuple[int, ...] | None = None
    padding: tuple[int, ...] | str | None = None
    dilation: tuple[int, ...] | None = None
    output_shape: tuple[int, ...] | None = None  # first output tensor, batch included
    activations: int = 0  # output elements (all output tensors)
    activation_bytes: int = 0  # at the profile's precision
    shares_input_memory: bool = False  # in-place or a view of its input: no new memory
    params: int = 0
    macs: int = 0
    receptive_field: tuple[int, ...] | None = None
    jump: tuple[int, ...] | None = None
    rf_global: bool = False
    rf_approx: bool = False
    time_ms: float | None = None  # profiler-attributed CPU time per call, with --time

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Profile:
    """The per-layer table for one model, input shape (batch included) and precision.

    Totals: `params` equals the model's parameter count, `macs` fvcore's total for this input
    (at batch 1 that is the case's GMACs x 1e9). `activation_bytes` adds each layer's output once
    (outputs that share their input's memory are not added again); `param_bytes` is every
    parameter at the precision's element size.
    """

    model: str
    input_shape: tuple[int, ...]
    precision: str
    bytes_per_element: int
    rows: tuple[LayerRow, ...]
    params: int
    macs: int
    activations: int
    activation_bytes: int
    param_bytes: int
    counter: str = "fvcore"
    forward_time_ms: float | None = None  # profiler CPU time of the whole forward, with --time
    notes: tuple[str, ...] = field(default=())

    @property
    def batch_size(self) -> int:
        return self.input_shape[0]

    @property
    def flops(self) -> int:
        return 2 * self.macs

    @property
    def gmacs(self) -> float:
        return self.macs / 1e9

    @property
    def layers(self) -> tuple[LayerRow, ...]:
        """Only the leaf-module rows (no functional / not-executed rows)."""
        return tuple(r for r in self.rows if r.kind == "layer")

    def row(self, name: str, call: int = 0) -> LayerRow:
        """The row of a module by qualified name (and call number)."""
        for r in self.rows:
            if r.name == name and r.call == call and r.kind == "layer":
                return r
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "input_shape": list(self.input_shape),
            "batch_size": self.batch_size,
            "precision": self.precision,
            "bytes_per_element": self.bytes_per_element,
            "counter": self.counter,
            "mac_convention": MAC_CONVENTION,
            "rows": [r.to_dict() for r in self.rows],
            "totals": {
                "params": self.params,
                "macs": self.macs,
                "flops": self.flops,
                "gmacs": self.gmacs,
                "activations": self.activations,
                "activation_bytes": self.activation_bytes,
                "param_bytes": self.param_bytes,
                "forward_time_ms": self.forward_time_ms,
                "layer_time_ms": (
                    sum(r.time_ms for r in self.rows if r.time_ms is not None)
                    if self.forward_time_ms is not None
                    else None
                ),
            },
            "notes": list(self.notes),
        }


# --------------------------------------------------------------------------------------------
# Receptive-field bookkeeping


@dataclass(frozen=True)
class _RF:
    r: tuple[int, ...]
    j: tuple[int, ...]
    glob: bool = False
    approx: bool = False


def _combine(rfs: list[_RF]) -> _RF:
    """The element-wise largest (r, j) over tensors that meet (add, cat, ...)."""
    first = rfs[0]
    if len(rfs) == 1:
        return first
    j = tuple(max(x.j[i] for x in rfs) for i in range(len(first.j)))
    approx = any(x.approx for x in rfs)
    glob = [x for x in rfs if x.glob]
    if glob:  # a global input makes the result global: the whole input, reported as its size
        return _RF(glob[0].r, j, True, approx)
    r = tuple(max(x.r[i] for x in rfs) for i in range(len(first.r)))
    return _RF(r, j, False, approx)


class _Tracker:
    """(r, j) per live tensor, keyed by identity. Weak references stop a recycled id() from
    handing a new tensor a dead tensor's field."""

    def __init__(self, input_hw: tuple[int, ...]):
        self.input_hw = input_hw
        self._map: dict[int, tuple[weakref.ref, _RF]] = {}
        self.largest = _RF(tuple(1 for _ in input_hw), tuple(1 for _ in input_hw))

    def get(self, t: Any) -> _RF | None:
        entry = self._map.get(id(t))
        if entry is None or entry[0]() is not t:
            return None
        return entry[1]

    def set(self, t: Any, rf: _RF) -> None:
        try:
            ref = weakref.ref(t)
        except TypeError:  # pragma: no cover - every torch.Tensor is weak-referenceable
            return
        self._map[id(t)] = (ref, rf)
        self.largest = _combine([self.largest, rf])

    def global_rf(self, base: _RF) -> _RF:
        return _RF(tuple(self.input_hw), base.j, True, base.approx)


# Functions whose every output element depends on every input position.
_GLOBAL_FUNCS = {"scaled_dot_product_attention", "multi_head_attention_forward"}
# Reductions that are global when they collapse all spatial positions (x.mean((2, 3)), ...).
_REDUCTIONS = {
    "mean", "sum", "amax", "amin", "max", "min", "std", "var", "logsumexp", "norm",
    "adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_avg_pool3d",
    "adaptive_max_pool1d", "adaptive_max_pool2d", "adaptive_max_pool3d",
}  # fmt: skip


def _collapses_space(inp: "torch.Tensor", out: "torch.Tensor") -> bool:
    if inp.dim() < 3 or math.prod(inp.shape[2:]) <= 1:
        return False
    if out.dim() < 2:
        return True
    return tuple(out.shape[:2]) == tuple(inp.shape[:2]) and math.prod(out.shape[2:]) == 1


def _make_mode(tracker: _Tracker, on_params: Callable[[list[Any]], None]):
    from torch import nn
    from torch.overrides import TorchFunctionMode

    class _Propagate(TorchFunctionMode):
        """Gives each tensor a functional op makes the largest (r, j) of its tracked inputs,
        and reports the parameters each op reads (to find who uses a module's weights)."""

        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            out = func(*args, **kwargs)
            outs = list(output_tensors(out))
            if not outs:
                return out
            ins = [t for t in output_tensors((args, kwargs))]
            params = [t for t in ins if isinstance(t, nn.Parameter)]
            if params:
                on_params(params)
            rfs = [rf for t in ins if (rf := tracker.get(t)) is not None]
            if not rfs:
                return out
            rf = _combine(rfs)
            name = getattr(func, "__name__", "")
            if name in _GLOBAL_FUNCS or (name in _REDUCTIONS and _collapses_space(ins[0], outs[0])):
                rf = tracker.global_rf(rf)
            for t in outs:
                tracker.set(t, rf)
            return out

    return _Propagate()


def _ntuple(v: Any, n: int) -> tuple[int, ...]:
    if isinstance(v, (tuple, list)):
        vals = tuple(int(x) for x in v)
        return vals if len(vals) == n else (vals + (vals[-1],) * n)[:n]
    return (int(v),) * n


def _layer_geometry(module: "nn.Module", nsp: int) -> dict[str, Any]:
    """kernel/stride/padding/dilation of conv and pooling layers, as per-dimension tuples."""
    from torch import nn

    if nsp == 0:
        return {}
    if isinstance(module, nn.modules.conv._ConvNd):
        pad = module.padding if isinstance(module.padding, str) else _ntuple(module.padding, nsp)
        return {
            "kernel": _ntuple(module.kernel_size, nsp),
            "stride": _ntuple(module.stride, nsp),
            "padding": pad,
            "dilation": _ntuple(module.dilation, nsp),
        }
    pools = (nn.modules.pooling._MaxPoolNd, nn.modules.pooling._AvgPoolNd, nn.modules.pooling._LPPoolNd)
    if isinstance(module, pools):
        k = _ntuple(module.kernel_size, nsp)
        s = _ntuple(module.stride if module.stride is not None else module.kernel_size, nsp)
        p = _ntuple(getattr(module, "padding", 0), nsp)
        d = _ntuple(getattr(module, "dilation", 1), nsp)
        return {"kernel": k, "stride": s, "padding": p, "dilation": d}
    return {}


def _is_pointwise(module: "nn.Module") -> bool:
    """Layers that leave every position's receptive field as it is."""
    from torch import nn

    if isinstance(module, nn.MultiheadAttention):
        return False
    kinds = (
        nn.modules.batchnorm._NormBase,
        nn.LayerNorm,
        nn.GroupNorm,
        nn.LocalResponseNorm,
        nn.modules.dropout._DropoutNd,
        nn.Identity,
        nn.Flatten,
        nn.Unflatten,
        nn.ChannelShuffle,
        nn.Softmax,
        nn.LogSoftmax,
        nn.Softmax2d,
    )
    if isinstance(module, kinds):
        return True
    if type(module).__module__ == "torch.nn.modules.activation":
        return True
    # torchvision's channels-last helpers and stochastic depth (by name: no torchvision import).
    return type(module).__name__ in {"Permute", "StochasticDepth", "FrozenBatchNorm2d"}


def _module_rf(module: "nn.Module", rf_in: _RF, inp: Any, out: Any, tracker: _Tracker) -> _RF:
    """The textbook recurrence for one layer call."""
    from torch import nn

    nsp = len(rf_in.r)
    if rf_in.glob:
        return rf_in
    if isinstance(module, nn.MultiheadAttention):
        return tracker.global_rf(rf_in)
    if isinstance(module, (nn.Linear, nn.Bilinear)):
        # A Linear on flattened features mixes every position; on [B, ..., C] it is pointwise.
        if inp is not None and inp.dim() <= 2:
            return tracker.global_rf(rf_in)
        return rf_in
    geo = _layer_geometry(module, nsp)
    if geo and not isinstance(module, nn.modules.conv._ConvTransposeNd):
        k, s, d = geo["kernel"], geo["stride"], geo["dilation"]
        r = tuple(rf_in.r[i] + (k[i] - 1) * d[i] * rf_in.j[i] for i in range(nsp))
        j = tuple(rf_in.j[i] * s[i] for i in range(nsp))
        return _RF(r, j, False, rf_in.approx)
    if geo:  # transposed conv: each output sees ceil(k_eff / s) inputs; the jump shrinks
        k, s, d = geo["kernel"], geo["stride"], geo["dilation"]
        r = tuple(rf_in.r[i] + (math.ceil(((k[i] - 1) * d[i] + 1) / s[i]) - 1) * rf_in.j[i] for i in range(nsp))
        j = tuple(max(1, rf_in.j[i] // s[i]) for i in range(nsp))
        return _RF(r, j, False, True)
    adaptive = (nn.modules.pooling._AdaptiveAvgPoolNd, nn.modules.pooling._AdaptiveMaxPoolNd)
    if isinstance(module, adaptive) and inp is not None and out is not None and inp.dim() >= 2 + nsp:
        hin = tuple(inp.shape[-nsp:])
        hout = tuple(out.shape[-nsp:])
        if hout == hin:
            return rf_in  # identity (VGG's 7x7 pool on a 7x7 map)
        if all(h == 1 for h in hout):
            return tracker.global_rf(rf_in)
        exact = all(a % b == 0 for a, b in zip(hin, hout))
        k = tuple(math.ceil(a / b) for a, b in zip(hin, hout))
        s = tuple(max(1, a // b) for a, b in zip(hin, hout))
        r = tuple(rf_in.r[i] + (k[i] - 1) * rf_in.j[i] for i in range(nsp))
        j = tuple(rf_in.j[i] * s[i] for i in range(nsp))
        return _RF(r, j, False, rf_in.approx or not exact)
    if _is_pointwise(module):
        return rf_in
    return replace(rf_in, approx=True)  # a layer type the recurrence does not know


# --------------------------------------------------------------------------------------------
# The traced forward


@dataclass
class _Frame:
    module: Any
    name: str
    call: int
    rf_in: _RF | None
    input: Any
    input_ptrs: set[int]
    had_child: bool = False
    used: dict[int, Any] = field(default_factory=dict)  # parameters its own ops read, by id


def _shape_str(shape: Any) -> str:
    return "x".join(str(int(s)) for s in shape)


@dataclass
class _Trace:
    rows: list[LayerRow]  # leaf calls, without MACs yet
    row_modules: dict[int, list[int]]  # id(module) -> row positions
    nonleaf_end: dict[int, tuple[int, int]]  # id(module) -> (rows so far at its last call's end, order)
    called: set[int]  # id(module) of every module called
    counted: set[int]  # id(param) already attributed to a row
    used_in: dict[int, dict[int, Any]]  # id(non-leaf module) -> parameters its own ops read
    activations: int
    activation_bytes: int


def _storage_ptr(t: "torch.Tensor") -> int:
    try:
        return t.untyped_storage().data_ptr() if t.numel() else 0
    except Exception:  # noqa: BLE001 - tensor subclasses without storage  # pragma: no cover
        return 0


def _trace(model: "nn.Module", example: "torch.Tensor", bpe: int) -> _Trace:
    """One forward of `model` on `example` with a `_Tracer`'s hooks on every module; a shape
    error becomes an `InputShapeError` naming the layer where it happened."""
    import torch

    tracer = _Tracer(model, example, bpe)
    handles = []
    for m in model.modules():
        handles.append(m.register_forward_pre_hook(tracer.pre_hook))
        handles.append(m.register_forward_hook(tracer.post_hook))
    try:
        with torch.no_grad(), _make_mode(tracer.tracker, tracer.on_params):
            model(example)
    except (RuntimeError, ValueError, AssertionError, IndexError) as exc:
        raise _shape_error(model, example, tracer.stack, tracer.rows, exc) from exc
    finally:
        for h in handles:
            h.remove()
    return tracer.result()


class _Tracer:
    """The bookkeeping of one traced forward: the stack of module calls in progress, a row per
    leaf call, and the activations counted once (outputs that share their input's memory add
    nothing)."""

    def __init__(self, model: "nn.Module", example: "torch.Tensor", bpe: int):
        self.bpe = bpe
        self.names: dict[int, str] = {}
        for n, m in model.named_modules():
            self.names.setdefault(id(m), n)
        self.nsp = max(0, example.dim() - 2)
        self.tracker = _Tracker(tuple(int(s) for s in example.shape[2:]) if self.nsp else ())
        self.tracker.set(example, self.tracker.largest)

        self.stack: list[_Frame] = []
        self.calls: dict[int, int] = {}
        self.rows: list[LayerRow] = []
        self.row_modules: dict[int, list[int]] = {}
        self.nonleaf_end: dict[int, tuple[int, int]] = {}
        self.counted: set[int] = set()
        self.order = 0
        self.activations = 0
        self.activation_bytes = 0
        self.used_in: dict[int, dict[int, Any]] = {}

    def result(self) -> _Trace:
        return _Trace(
            self.rows, self.row_modules, self.nonleaf_end, set(self.calls), self.counted, self.used_in,
            self.activations, self.activation_bytes,
        )

    def on_params(self, params: list[Any]) -> None:
        if self.stack:
            for p in params:
                self.stack[-1].used.setdefault(id(p), p)

    def pre_hook(self, module, args):
        if self.stack:
            self.stack[-1].had_child = True
        key = id(module)
        call = self.calls.get(key, 0)
        self.calls[key] = call + 1
        ins = list(output_tensors(args))
        rfs = [rf for t in ins if (rf := self.tracker.get(t)) is not None]
        rf_in = _combine(rfs) if rfs else None
        self.stack.append(
            _Frame(module, self.names.get(key, ""), call, rf_in, ins[0] if ins else None, {_storage_ptr(t) for t in ins})
        )

    def post_hook(self, module, args, output):
        frame = self.stack.pop()
        self.order += 1
        if frame.had_child:
            self.nonleaf_end[id(module)] = (len(self.rows), self.order)
            self.used_in.setdefault(id(module), {}).update(frame.used)
            return
        outs = list(output_tensors(output))
        out0 = outs[0] if outs else None
        rf_in = frame.rf_in
        if rf_in is None:  # input made outside any tracked path: fall back, and say so
            rf_in = replace(self.tracker.largest, approx=True)
        rf = _module_rf(module, rf_in, frame.input, out0, self.tracker) if self.nsp else None
        if rf is not None:
            for t in outs:
                self.tracker.set(t, rf)
        self._add_row(module, frame, outs, rf)

    def _add_row(self, module: Any, frame: _Frame, outs: list[Any], rf: _RF | None) -> None:
        """The row of one leaf call, and its fresh outputs added to the activation totals."""
        bpe = self.bpe
        out0 = outs[0] if outs else None
        n_act = sum(t.numel() for t in outs)
        n_bytes = sum(t.numel() * (bpe if t.is_floating_point() else t.element_size()) for t in outs)
        fresh = [t for t in outs if _storage_ptr(t) == 0 or _storage_ptr(t) not in frame.input_ptrs]
        shares = bool(outs) and not fresh
        self.activations += sum(t.numel() for t in fresh)
        self.activation_bytes += sum(t.numel() * (bpe if t.is_floating_point() else t.element_size()) for t in fresh)
        params = 0
        # Its own weights (also those of children it uses without calling them, as attention
        # layers do) and any other module's weights its ops read (tied weights).
        for p in [*module.parameters(), *frame.used.values()]:
            if id(p) not in self.counted:
                self.counted.add(id(p))
                params += p.numel()
        geo = _layer_geometry(module, self.nsp)
        self.row_modules.setdefault(id(module), []).append(len(self.rows))
        self.rows.append(
            LayerRow(
                index=len(self.rows),
                name=frame.name,
                type=type(module).__name__,
                call=frame.call,
                kernel=geo.get("kernel"),
                stride=geo.get("stride"),
                padding=geo.get("padding"),
                dilation=geo.get("dilation"),
                output_shape=tuple(int(s) for s in out0.shape) if out0 is not None else None,
                activations=n_act,
                activation_bytes=n_bytes,
                shares_input_memory=shares,
                params=params,
                receptive_field=rf.r if rf is not None else None,
                jump=rf.j if rf is not None else None,
                rf_global=bool(rf and rf.glob),
                rf_approx=bool(rf and rf.approx),
            )
        )


def _shape_error(model, example, stack: list[_Frame], rows: list[LayerRow], exc: Exception) -> InputShapeError:
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    why = lines[0] if lines else type(exc).__name__
    head = f"input {_shape_str(example.shape)} does not fit {type(model).__name__}"
    if not stack:
        return InputShapeError(f"{head}: {why}")
    frame = stack[-1]
    kind = type(frame.module).__name__
    where = f"layer '{frame.name}' ({kind})" if frame.name else f"the model ({kind})"
    if not frame.had_child:
        got = _shape_str(frame.input.shape) if frame.input is not None else "no tensor"
        return InputShapeError(f"{head}: {where} got input {got}: {why}")
    where = f"'{frame.name}' ({kind}).forward" if frame.name else f"{kind}.forward"
    if rows:
        last = rows[-1]
        shape = _shape_str(last.output_shape) if last.output_shape else "?"
        return InputShapeError(
            f"{head}: a functional op in {where} after layer '{last.name}' ({last.type}, output {shape}) failed: {why}"
        )
    return InputShapeError(f"{head}: a functional op in {where} failed: {why}")


# --------------------------------------------------------------------------------------------
# MACs (fvcore) and the assembled profile


def fvcore_by_module(model: "nn.Module", example: "torch.Tensor") -> dict[str, int]:
    """fvcore's MAC counts per qualified module name ("" is the total).

    Configured exactly as `cnnbench.measure.counting` configures it for the case's GMACs (the same op
    handles for `padding='same'` convolutions and attention, the MHA fast path off), so the
    totals agree.
    """

    if import_fvcore() is None:
        raise UserError("the per-layer profile needs fvcore for MACs: pip install fvcore")
    with counting_context():
        return {k: int(v) for k, v in fvcore_analysis(model, example).by_module().items()}


def _split(total: int, weights: list[int]) -> list[int]:
    """Split an integer over calls in proportion to weights, exactly (remainder on the last)."""
    if len(weights) == 1:
        return [total]
    wsum = sum(weights)
    if wsum <= 0:
        parts = [total // len(weights)] * len(weights)
    else:
        parts = [total * w // wsum for w in weights]
    parts[-1] += total - sum(parts)
    return parts


def profile_model(model: "nn.Module", example: "torch.Tensor", *, precision: str = "fp32") -> Profile:
    """Profile one forward pass of `model` on `example` ([B, C, H, W], batch included).

    The model is put in eval mode and run on the example's device in fp32; bytes are computed
    at `precision` (4 bytes per element for fp32, 2 for fp16/bf16). Raises `InputShapeError`
    naming the layer where the shape broke when the input does not fit.

    Args:
        model: any `nn.Module` taking one tensor.
        example: the input batch.
        precision: "fp32", "fp16" or "bf16".

    Returns:
        The `Profile`: rows in execution order and totals (params, MACs, memory).
    """
    bpe = _bytes_per_element(precision)
    model.eval()
    tr = _trace(model, example, bpe)
    by_module = fvcore_by_module(model, example)

    module_of, names = _modules_by_id(model)
    rows = _leaf_rows(tr, by_module, names)
    counted = set(tr.counted)
    extra = _functional_rows(tr, by_module, module_of, names, counted, len(rows))
    unexec, owners = _unexecuted_params(tr, module_of, names, counted)
    for pos, _order, row in sorted(extra, key=lambda e: (e[0], e[1]), reverse=True):
        rows.insert(pos, row)
    if unexec:
        rows.append(
            LayerRow(index=0, name=", ".join(owners[:4]) + (", ..." if len(owners) > 4 else ""), type="(not executed)", kind="not_executed", params=unexec)
        )
    fv_total = by_module.get("", 0)
    gap = fv_total - sum(r.macs for r in rows)
    if gap:  # a module called in a way hooks do not see (e.g. `.forward()` directly)
        rows.append(LayerRow(index=0, name="(unattributed)", type="(functional)", kind="functional", macs=gap))
    rows = [replace(r, index=i) for i, r in enumerate(rows)]

    nparams = _count_params(model)
    notes = []
    if any(r.rf_approx for r in rows):
        notes.append("receptive fields marked approximate come from a layer type or input the recurrence does not cover")
    return Profile(
        model=type(model).__name__,
        input_shape=tuple(int(s) for s in example.shape),
        precision=precision,
        bytes_per_element=bpe,
        rows=tuple(rows),
        params=nparams,
        macs=fv_total,
        activations=tr.activations,
        activation_bytes=tr.activation_bytes,
        param_bytes=param_bytes(model, precision),
        notes=tuple(notes),
    )


def _modules_by_id(model: "nn.Module") -> tuple[dict[int, Any], dict[int, str]]:
    """Each distinct module by id, and its (first) qualified name."""
    module_of: dict[int, Any] = {}
    names: dict[int, str] = {}
    for n, m in model.named_modules():
        if id(m) not in names:
            names[id(m)] = n
            module_of[id(m)] = m
    return module_of, names


def _leaf_rows(tr: _Trace, by_module: dict[str, int], names: dict[int, str]) -> list[LayerRow]:
    """The traced leaf rows with MACs: the module's fvcore count, split over its calls by output size."""
    rows = list(tr.rows)
    for key, positions in tr.row_modules.items():
        total = by_module.get(names.get(key, ""), 0)
        for pos, macs in zip(positions, _split(total, [rows[p].activations for p in positions])):
            rows[pos] = replace(rows[pos], macs=macs)
    return rows


def _functional_rows(
    tr: _Trace, by_module: dict[str, int], module_of: dict[int, Any], names: dict[int, str], counted: set[int], n_rows: int
) -> list[tuple[int, int, LayerRow]]:
    """(position, order, row) of each functional row: what a non-leaf module runs itself, and the
    parameters its own ops read (a class token, a layer scale, the weights of children it uses
    without calling them). Marks those parameters in `counted`."""
    extra: list[tuple[int, int, LayerRow]] = []
    for key, m in module_of.items():
        if key in tr.row_modules:
            continue
        name = names[key]
        prefix = f"{name}." if name else ""
        child_macs = sum(
            by_module.get(prefix + cname, 0) for cname, c in m.named_children() if names.get(id(c)) == prefix + cname
        )
        own = by_module.get(name, 0) - child_macs if key in tr.called else 0
        direct = 0
        for pid, p in tr.used_in.get(key, {}).items():
            if pid not in counted:
                counted.add(pid)
                direct += p.numel()
        if own or direct:
            pos, order = tr.nonleaf_end.get(key, (n_rows, 1 << 60))
            extra.append(
                (pos, order, LayerRow(index=0, name=name, type=type(m).__name__, kind="functional", params=direct, macs=own))
            )
    return extra


def _unexecuted_params(
    tr: _Trace, module_of: dict[int, Any], names: dict[int, str], counted: set[int]
) -> tuple[int, list[str]]:
    """Anything still unattributed: parameters no op of this forward read (modules never called,
    such as auxiliary heads in eval mode), named by their outermost module that never ran.
    Returns (their count, the owners' names)."""
    by_name = {n: m for m, n in ((module_of[k], names[k]) for k in module_of)}
    unexec = 0
    owners: list[str] = []
    for key, m in module_of.items():
        n_own = 0
        for p in m.parameters(recurse=False):
            if id(p) not in counted:
                counted.add(id(p))
                n_own += p.numel()
        if n_own:
            unexec += n_own
            parts = names[key].split(".") if names[key] else []
            owner = names[key]
            for i in range(1, len(parts) + 1):
                prefix = ".".join(parts[:i])
                if prefix in by_name and id(by_name[prefix]) not in tr.called:
                    owner = prefix
                    break
            owner = owner or "(model)"
            if owner not in owners:
                owners.append(owner)
    return unexec, owners


def _unique_params(model: "nn.Module"):
    seen: set[int] = set()
    for p in model.parameters():
        if id(p) not in seen:
            seen.add(id(p))
            yield p


def _count_params(model: "nn.Module") -> int:
    return sum(p.numel() for p in _unique_params(model))


def activation_bytes(model: "nn.Module", example: "torch.Tensor", precision: str = "fp32") -> int:
    """Analytic activation memory: every leaf layer's output bytes for one forward pass.

    At the example's batch size, with floating-point outputs at `precision`'s element size.
    An output that shares its input's memory (in-place ReLU, Identity, Dropout in eval, a
    Flatten view) adds nothing: it allocates nothing. The input itself is not included.
    """
    model.eval()
    return _trace(model, example, _bytes_per_element(precision)).activation_bytes


def param_bytes(model: "nn.Module", precision: str = "fp32") -> int:
    """Analytic parameter memory: every (distinct) parameter at `precision`'s element size.

    This is the size of the weights stored at that precision (a `.half()` model). Under
    autocast the stored weights stay fp32 and are cast per op; the measured peak shows that.
    Integer parameters keep their own element size; buffers (BatchNorm statistics) are excluded.
    """
    bpe = _bytes_per_element(precision)
    return sum(p.numel() * (bpe if p.is_floating_point() else p.element_size()) for p in _unique_params(model))


# --------------------------------------------------------------------------------------------
# Measured time per layer (torch.profiler)


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Send file descriptor 2 to /dev/null for a moment: the profiler's C++ side writes status
    lines there that Python cannot filter."""
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # pragma: no cover - no fd 2 at all
        yield
        return
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def time_layers(
    model: "nn.Module",
    example: "torch.Tensor",
    profile: Profile,
    *,
    warmup: int = 2,
    runs: int = 5,
) -> Profile:
    """Add profiler-attributed CPU time per layer call to `profile` (averaged over `runs`).

    Each leaf-module call runs inside a `torch.profiler.record_function` region named after its
    row; the time is that region's CPU time under torch.profiler (profiler overhead included, ops
    a parent module runs itself are in the forward's total but in no layer). Warmup runs are
    excluded. Non-fp32 precisions run under CPU autocast.
    """
    import torch
    from torch.autograd.profiler import record_function
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    if runs < 1:
        raise UserError("the number of timed runs must be at least 1")
    labels: dict[tuple[int, int], str] = {}
    by_name: dict[str, Any] = {}
    for n, m in model.named_modules():
        by_name.setdefault(n, m)
    for r in profile.rows:
        if r.kind == "layer":
            m = by_name.get(r.name)
            if m is not None:
                labels[(id(m), r.call)] = f"cnnbench.layer.{r.index}"
    calls: dict[int, int] = {}
    open_regions: list[Any] = []

    def pre_hook(module, args):
        key = id(module)
        call = calls.get(key, 0)
        calls[key] = call + 1
        label = labels.get((key, call))
        if label is not None:
            region = record_function(label)
            region.__enter__()
            open_regions.append((module, region))

    def post_hook(module, args, output):
        if open_regions and open_regions[-1][0] is module:
            open_regions.pop()[1].__exit__(None, None, None)

    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(profile.precision)
    autocast = (
        torch.autocast(example.device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()
    )
    handles = []
    for m in model.modules():
        handles.append(m.register_forward_pre_hook(pre_hook))
        handles.append(m.register_forward_hook(post_hook))
    prof = torch_profile(activities=[ProfilerActivity.CPU])
    try:
        with torch.inference_mode(), autocast:
            for _ in range(warmup):
                calls.clear()
                model(example)
            with _quiet_stderr():  # kineto logs its start/stop (and a GPU probe) to fd 2
                prof.__enter__()
            try:
                for _ in range(runs):
                    calls.clear()
                    with record_function("cnnbench.forward"):
                        model(example)
            finally:
                with _quiet_stderr():
                    prof.__exit__(None, None, None)
    finally:
        for h in handles:
            h.remove()
    per_call: dict[str, float] = {}
    for ev in prof.key_averages():
        if ev.key.startswith("cnnbench."):
            per_call[ev.key] = ev.cpu_time_total / 1000.0 / runs
    rows = tuple(
        replace(r, time_ms=per_call.get(f"cnnbench.layer.{r.index}", 0.0)) if r.kind == "layer" else r
        for r in profile.rows
    )
    return replace(profile, rows=rows, forward_time_ms=per_call.get("cnnbench.forward"))
