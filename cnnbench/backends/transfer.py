"""Transfers apart on CUDA: host-to-device copy, compute and device-to-host copy per call.

The timed loop measures what a deployment pays once its inputs are on the device (inputs are
device-resident, outputs stay there): that is the default, and it is what the samples are.
`measure: {transfer: true}` adds, after the timed loop and outside the energy window, trtexec's
split of a full request: per call, the H2D copy of the input batch, the compute, and the D2H
copy of the outputs, each timed on its own, then the medians.

- eager and compile: the input is copied from a pinned host tensor into the very device tensor
  the timed loop used (`copy_(non_blocking=True)`), the outputs into pinned host buffers;
  timed with CUDA events recorded on torch's current stream (no host clock between parts),
  one synchronize per call so calls never overlap.
- onnxrt (CUDA provider, IO binding): the input numpy array is copied into the bound device
  OrtValue (`update_inplace`, a cudaMemcpy from pageable memory) and the outputs with
  `copy_outputs_to_cpu()`; ONNX Runtime computes on its own CUDA stream, which torch's events
  do not see, so each part is timed with synchronize + host clock (`timer: host_clock`).

On CPU there is nothing to copy: the record says `applicable: false` with the reason, and the
case is measured as usual (a suite with `device: auto` runs unchanged on a CPU-only machine).
Training cases and backends without a split say the same.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from cnnbench.stats import basic as stats

__all__ = ["EventTimer", "HostTimer", "Parts", "measure_split", "ort_parts", "time_split", "torch_parts", "torch_transfer"]

SPLIT_MIN_CALLS = 5
SPLIT_MAX_CALLS = 200
SPLIT_TARGET_S = 1.0
PARTS = ("h2d", "compute", "d2h")


@dataclass
class Parts:
    """The three stages of one request; `compute()` returns what `d2h(out)` copies back."""

    h2d: Callable[[], Any]
    compute: Callable[[], Any]
    d2h: Callable[[Any], Any]
    timer: str = "cuda_events"  # or host_clock
    info: dict[str, Any] = field(default_factory=dict)


class HostTimer:
    """Marks are host clock reads after a device synchronize (ns)."""

    name = "host_clock"

    def __init__(self, sync: Callable[[], None] | None, clock: Callable[[], int] = time.perf_counter_ns):
        self.sync = sync or (lambda: None)
        self.clock = clock

    def mark(self) -> Any:
        self.sync()
        return self.clock()

    def finish(self) -> None:
        return None

    def elapsed_ms(self, a: Any, b: Any) -> float:
        return (b - a) / 1e6


class EventTimer:
    """Marks are CUDA events recorded on the current stream; read after one synchronize."""

    name = "cuda_events"

    def __init__(self) -> None:
        import torch

        self.torch = torch

    def mark(self) -> Any:
        event = self.torch.cuda.Event(enable_timing=True)
        event.record()
        return event

    def finish(self) -> None:
        self.torch.cuda.synchronize()

    def elapsed_ms(self, a: Any, b: Any) -> float:
        return float(a.elapsed_time(b))


def _summary(values: list[float]) -> dict[str, float]:
    return {"median": stats.median(values), "min": min(values), "max": max(values)}


def time_split(
    parts: Parts,
    timer: Any,
    *,
    min_calls: int = SPLIT_MIN_CALLS,
    max_calls: int = SPLIT_MAX_CALLS,
    target_s: float = SPLIT_TARGET_S,
    clock: Callable[[], int] = time.perf_counter_ns,
) -> dict[str, Any]:
    """Time `parts` call after call; medians of each part (ms) and of their per-call sum.

    One untimed call first (pinned output buffers are allocated in it). The number of calls is
    sized from the first timed one to last about `target_s`, within [min_calls, max_calls].
    `share` is each part's median over the sum of the three medians.
    """
    parts.h2d()
    parts.d2h(parts.compute())
    timer.finish()
    per: dict[str, list[float]] = {p: [] for p in PARTS}
    totals: list[float] = []
    calls = min_calls
    started = clock()
    i = 0
    while i < calls:
        m0 = timer.mark()
        parts.h2d()
        m1 = timer.mark()
        out = parts.compute()
        m2 = timer.mark()
        parts.d2h(out)
        m3 = timer.mark()
        timer.finish()
        times = (timer.elapsed_ms(m0, m1), timer.elapsed_ms(m1, m2), timer.elapsed_ms(m2, m3))
        for name, ms in zip(PARTS, times):
            per[name].append(ms)
        totals.append(sum(times))
        i += 1
        if i == 1:
            per_call_s = totals[0] / 1e3
            want = math.ceil(target_s / per_call_s) if per_call_s > 0 else max_calls
            calls = max(min_calls, min(max_calls, want))
    out_rec: dict[str, Any] = {f"{p}_ms": _summary(per[p]) for p in PARTS}
    out_rec["total_ms"] = _summary(totals)
    medians = [out_rec[f"{p}_ms"]["median"] for p in PARTS]
    whole = sum(medians)
    out_rec["share"] = {p: (m / whole if whole > 0 else None) for p, m in zip(PARTS, medians)}
    out_rec["calls"] = calls
    out_rec["timer"] = timer.name
    out_rec["seconds"] = (clock() - started) / 1e9
    out_rec.update(parts.info)
    return out_rec


def _tensors(out: Any) -> list[Any]:
    import torch

    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, dict):
        out = list(out.values())
    if isinstance(out, (list, tuple)):
        return [t for o in out for t in _tensors(o)]
    return [t for t in (getattr(out, name, None) for name in ("logits",)) if isinstance(t, torch.Tensor)]


def torch_parts(x: Any, compute: Callable[[], Any]) -> Parts:
    """Parts for a torch backend whose `compute()` reads the device tensor `x`."""
    import torch

    host = x.detach().to("cpu").pin_memory()
    buffers: list[Any] = []

    def h2d() -> None:
        x.copy_(host, non_blocking=True)

    def d2h(out: Any) -> list[Any]:
        """Copies every output tensor into its pinned host buffer; returns the buffers."""
        tensors = _tensors(out)
        if len(buffers) != len(tensors) or any(b.shape != t.shape or b.dtype != t.dtype for b, t in zip(buffers, tensors)):
            buffers[:] = [torch.empty(t.shape, dtype=t.dtype).pin_memory() for t in tensors]
        for b, t in zip(buffers, tensors):
            b.copy_(t, non_blocking=True)
        return buffers

    return Parts(
        h2d=h2d,
        compute=compute,
        d2h=d2h,
        timer="cuda_events",
        info={"host_memory": "pinned", "input_bytes": int(x.numel() * x.element_size())},
    )


def torch_transfer(x: Any, compute: Callable[[], Any]) -> Callable[[], Parts]:
    """What a torch backend puts in `Prepared.transfer`: the parts, built only when asked
    (pinning host memory costs time and memory a case without `transfer: true` never pays)."""
    return lambda: torch_parts(x, compute)


def ort_parts(x_dev: Any, x_np: Any, binding: Any, run: Callable[[], Any]) -> Parts:
    """Parts for ONNX Runtime with IO binding: `run()` reads the bound OrtValue `x_dev`."""

    def d2h(_: Any) -> None:
        binding.copy_outputs_to_cpu()

    return Parts(
        h2d=lambda: x_dev.update_inplace(x_np),
        compute=run,
        d2h=d2h,
        timer="host_clock",
        info={"host_memory": "pageable numpy (update_inplace / copy_outputs_to_cpu)", "input_bytes": int(x_np.nbytes)},
    )


def measure_split(spec: Any, prepared: Any, *, clock: Callable[[], int] = time.perf_counter_ns) -> dict[str, Any]:
    """The `transfer` block of a run: the split, or `applicable: false` and the reason."""
    if spec.device != "cuda":
        return {
            "applicable": False,
            "reason": f"device {spec.device}: inputs and outputs are already in host memory, there is no copy to time",
        }
    if spec.mode != "inference":
        return {"applicable": False, "reason": "train mode: the split times inference requests"}
    factory = getattr(prepared, "transfer", None)
    if factory is None:
        return {"applicable": False, "reason": f"backend {spec.backend} does not offer a transfer split"}
    parts = factory()
    timer = EventTimer() if parts.timer == "cuda_events" else HostTimer(prepared.sync, clock)
    return {"applicable": True, **time_split(parts, timer, clock=clock)}
