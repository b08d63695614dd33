"""Measured memory of one case, inside its worker.

CPU method: the kernel keeps a high-water mark of the process's resident set (VmHWM in
/proc/self/status). Writing "5" to /proc/self/clear_refs resets it to the current RSS. After the
model is built and prepared we reset it and record the RSS as the baseline (`start`). The first
call follows; it is where torch.compile compiles and allocators grow, so its own peak is read and
kept apart (`first_call_peak_rss_delta_bytes`) and the mark is reset again when warmup starts
(`first_call_done`). After the timed loop, `peak_rss_delta_bytes` = VmHWM - baseline: the peak
of warmup and timing over the post-load baseline. What the first call leaves resident (compiled
kernels, allocator caches, optimizer state) still counts, since a deployed model keeps it; the
compiler's transient working memory does not. Where the reset is not permitted, the lifetime
peak (getrusage) is used instead and the method says so.

CUDA method: the same two steps with `torch.cuda.reset_peak_memory_stats()`, then the
allocator's `max_memory_allocated` / `max_memory_reserved` after the timed loop. ONNX Runtime
does not allocate through torch, so for it the device-level used memory is read from NVML
(`nvidia-ml-py`) when installed, at the end of the timed loop (NVML keeps no peak); otherwise it
is recorded as unavailable, never guessed.
"""

from __future__ import annotations

import os
import resource
from typing import Any

__all__ = ["MemoryTracker", "rss_bytes"]


def _status_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def rss_bytes() -> int | None:
    kb = _status_kb("VmRSS")
    if kb is not None:
        return kb * 1024
    try:
        import psutil

        return int(psutil.Process().memory_info().rss)
    except Exception:  # noqa: BLE001 - memory is best-effort, never fails a case
        return None


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


class MemoryTracker:
    """Baseline after prepare (`start`), first call's peak kept apart and peaks reset when
    warmup starts (`first_call_done`), peaks read after the timed loop (`stop`)."""

    def __init__(self, device: str, *, backend: str = "eager"):
        self.device = device
        self.backend = backend
        self.baseline_rss: int | None = None
        self.method = ""
        self._nvml_handle: Any = None
        self._nvml_baseline: int | None = None
        self._first_call: dict[str, Any] = {}

    def start(self) -> None:
        reset = _reset_peak_rss()
        self.baseline_rss = rss_bytes()
        self.method = "VmHWM reset via /proc/self/clear_refs" if reset else "lifetime peak (getrusage ru_maxrss)"
        if self.device == "cuda":
            import torch

            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self._nvml_start()

    def first_call_done(self) -> None:
        """Keep the first call's peaks apart and reset the marks, so the peak `stop` reads is
        that of warmup and the timed loop (a compile's working memory is not the model's)."""
        peak_kb = _status_kb("VmHWM")
        if peak_kb is not None and self.baseline_rss is not None:
            self._first_call["first_call_peak_rss_delta_bytes"] = max(0, peak_kb * 1024 - self.baseline_rss)
        _reset_peak_rss()
        if self.device == "cuda":
            import torch

            torch.cuda.synchronize()
            self._first_call["first_call_cuda_peak_allocated_bytes"] = int(torch.cuda.max_memory_allocated())
            torch.cuda.reset_peak_memory_stats()

    def stop(self) -> dict[str, Any]:
        out: dict[str, Any] = {"rss_baseline_bytes": self.baseline_rss, "cpu_method": self.method}
        out.update(self._first_call)
        peak_kb = _status_kb("VmHWM")
        if peak_kb is None:
            peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        peak = peak_kb * 1024
        out["peak_rss_bytes"] = peak
        if self.baseline_rss is not None:
            out["peak_rss_delta_bytes"] = max(0, peak - self.baseline_rss)
        if self.device == "cuda":
            import torch

            torch.cuda.synchronize()
            out["cuda_peak_allocated_bytes"] = int(torch.cuda.max_memory_allocated())
            out["cuda_peak_reserved_bytes"] = int(torch.cuda.max_memory_reserved())
            out.update(self._nvml_stop())
        return out

    def _nvml_start(self) -> None:
        try:
            import pynvml  # nvidia-ml-py

            pynvml.nvmlInit()
            index = int(os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0] or 0)
            self._nvml_handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            self._nvml_baseline = int(pynvml.nvmlDeviceGetMemoryInfo(self._nvml_handle).used)
        except Exception:  # noqa: BLE001 - NVML absent or not permitted
            self._nvml_handle = None

    def _nvml_stop(self) -> dict[str, Any]:
        if self._nvml_handle is None:
            return {"device_used_bytes": None, "device_method": "unavailable (install nvidia-ml-py for NVML)"}
        import pynvml

        used = int(pynvml.nvmlDeviceGetMemoryInfo(self._nvml_handle).used)
        return {
            "device_used_bytes": used,
            "device_used_delta_bytes": used - (self._nvml_baseline or 0),
            "device_method": "NVML device-level used memory at the end of the timed loop (includes other processes)",
        }
