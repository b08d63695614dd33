"""The timed loop: first call apart, warmup excluded, calibrated blocks, adaptive stopping.

Pure Python around two injected callables, so the logic is tested with a fake clock (as pyperf
tests its runner) and the same code times CPU and CUDA work:

- `clock()` returns nanoseconds (`time.perf_counter_ns` by default).
- `sync()` waits for queued device work (`torch.cuda.synchronize` on CUDA, None on CPU). It is
  called immediately before *every* clock read that opens or closes a timed sample: without it a
  CUDA kernel launched in sample k would be billed to sample k+1, and the first sample would look
  fast because it measures only the launches.

Why blocks: a call shorter than ~1 ms is dominated by clock-read and synchronization overhead
and by timer granularity, so such calls are timed `block_size` at a time and each sample is the
block's time divided by `block_size` (torch.utils.benchmark's `number_per_run`). The block size
is recorded with the samples.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from cnnbench.stats import basic as stats
from cnnbench.core.spec import Measure

__all__ = ["Timing", "time_callable", "MAX_BLOCK_SIZE"]

MAX_BLOCK_SIZE = 1 << 16
_NS_PER_MS = 1_000_000


@dataclass
class Timing:
    """Raw outcome of one timed loop. All latencies are per call, in milliseconds."""

    first_call_ms: float
    warmup_ms: list[float]
    samples_ms: list[float]
    block_size: int
    stop_reason: str  # converged | max_time | max_samples
    rel_ci: float  # half-width of the median's 95% CI over the median, when it stopped
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "first_call_ms": self.first_call_ms,
            "warmup_ms": self.warmup_ms,
            "samples_ms": self.samples_ms,
            "block_size": self.block_size,
            "stop_reason": self.stop_reason,
            "rel_ci": None if math.isinf(self.rel_ci) else self.rel_ci,
            "warnings": self.warnings,
        }


def _noop() -> None:
    return None


def time_callable(
    fn: Callable[[], Any],
    *,
    measure: Measure,
    sync: Callable[[], None] | None = None,
    clock: Callable[[], int] = time.perf_counter_ns,
    on_warmup_start: Callable[[], None] | None = None,
    on_timed_start: Callable[[], None] | None = None,
    on_timed_end: Callable[[], None] | None = None,
) -> Timing:
    """Time `fn` as DESIGN.md prescribes and return the raw samples.

    Order of events: one first call (its time is `first_call_ms`: compile, export, session
    creation, allocator growth; never a sample), block calibration, `measure.warmup` warmup
    blocks (stored in `warmup_ms`, never samples), then timed blocks until the stopping rule
    holds. The stopping rule is checked only after `min_time_s` and `min_samples`: stop when the
    median's 95% CI half-width is within `target_rel_ci` of the median (`converged`), or at
    `max_time_s` / `max_samples`, whichever comes first.

    `on_timed_start` runs right before the first timed sample and `on_timed_end` right after
    the last one, both on a synchronized device (the previous block ended with `sync()`): the
    energy meter and device state are read there (cnnbench.measure.energy), so they cover exactly the
    samples, never the first call or warmup.
    """
    sync = sync or _noop

    def run_block(n: int) -> float:
        """One sample: n calls between two synchronized clock reads, in ms per call."""
        sync()
        t0 = clock()
        for _ in range(n):
            fn()
        sync()
        return (clock() - t0) / _NS_PER_MS / n

    first_call_ms = run_block(1)
    if on_warmup_start is not None:
        on_warmup_start()

    warmup_ms: list[float] = []
    block_size = _calibrate(run_block, measure.block_min_ms, warmup_ms)
    for _ in range(measure.warmup):
        warmup_ms.append(run_block(block_size))

    samples: list[float] = []
    min_ns = measure.min_time_s * 1e9
    max_ns = measure.max_time_s * 1e9
    next_check = measure.min_samples
    rel_ci = math.inf
    if on_timed_start is not None:
        on_timed_start()
    start = clock()
    while True:
        samples.append(run_block(block_size))
        n = len(samples)
        elapsed = clock() - start
        if n >= next_check and elapsed >= min_ns:
            rel_ci = stats.relative_ci_half_width(samples)
            if rel_ci <= measure.target_rel_ci:
                stop_reason = "converged"
                break
            # Re-check at ~10% more samples: sorting on every sample would cost O(n^2 log n).
            next_check = max(n + 1, int(n * 1.1))
        if elapsed >= max_ns:
            stop_reason = "max_time"
            break
        if n >= measure.max_samples:
            stop_reason = "max_samples"
            break
    if on_timed_end is not None:
        on_timed_end()

    warnings: list[str] = []
    if stop_reason != "converged":
        rel_ci = stats.relative_ci_half_width(samples)
        if not rel_ci <= measure.target_rel_ci:
            shown = "undefined" if math.isinf(rel_ci) else f"±{rel_ci:.1%}"
            warnings.append(
                f"not converged: median 95% CI {shown} (target ±{measure.target_rel_ci:.1%}) "
                f"after {len(samples)} samples ({stop_reason})"
            )
        else:
            stop_reason = "converged"
    return Timing(
        first_call_ms=first_call_ms,
        warmup_ms=warmup_ms,
        samples_ms=samples,
        block_size=block_size,
        stop_reason=stop_reason,
        rel_ci=rel_ci,
        warnings=warnings,
    )


def _calibrate(run_block: Callable[[int], float], block_min_ms: float, warmup_ms: list[float]) -> int:
    """Smallest block size whose block lasts at least `block_min_ms`.

    Calibration calls are warmup too, and are stored with it. A block is grown from an estimate
    of the per-call time, then doubled until a measured block is long enough.
    """
    per_call = run_block(1)
    warmup_ms.append(per_call)
    if per_call >= block_min_ms:
        return 1
    block = min(MAX_BLOCK_SIZE, max(2, math.ceil(block_min_ms / max(per_call, 1e-6))))
    while True:
        per_call = run_block(block)
        warmup_ms.append(per_call)
        if per_call * block >= block_min_ms or block >= MAX_BLOCK_SIZE:
            return block
        block = min(MAX_BLOCK_SIZE, block * 2)
