"""The device's state around the timed window: clocks, temperature, power limit, throttling.

A latency is only as good as the state the device was in: a GPU at its power cap or thermal
limit runs at lower clocks, another process on the same GPU takes its share of it, and a CPU
under the `powersave` governor ramps its frequency with the load. So every case records, at
the start and at the end of its timed window (the same two instants as the energy reading):

- on CUDA, through NVML (`nvidia-ml-py`, imported as `pynvml`): SM and memory clocks (MHz),
  GPU temperature (C), the enforced power limit (W), the current clock-throttle reasons
  (decoded bit names), and NVML's cumulative violation counters for the power and thermal
  policies, whose difference over the window says how long the GPU was held back *during* it
  (a snapshot at each end would miss a throttle that came and went);
- the other processes that hold a context on the GPU (pid and name; a warning names them);
- on every case, where `/sys/devices/system/cpu/cpufreq` is readable: each policy's governor
  and current frequency (MHz).

A case whose GPU throttled (power cap, hardware slowdown, thermal slowdown, power brake, at
either end of the window or in the violation counters) gets `throttled: true`, the reasons, and
a warning, so its row says so. Idle clock-down (`gpu_idle`) and application clock settings are
recorded but are not throttling.

Everything is read through a small surface (the `nvml` module, a cpufreq root path) so tests
pass fakes; nothing here raises for a missing reading: it says what could not be read.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

__all__ = [
    "CPUFREQ_ROOT",
    "THROTTLE_BITS",
    "THROTTLING",
    "StateProbe",
    "cpu_snapshot",
    "gpu_snapshot",
    "open_nvml",
    "other_processes",
]

CPUFREQ_ROOT = "/sys/devices/system/cpu/cpufreq"

# NVML clock event ("throttle") reason bits (nvmlClocksEventReason*), named as nvidia-smi does.
THROTTLE_BITS: dict[int, str] = {
    0x1: "gpu_idle",
    0x2: "applications_clocks_setting",
    0x4: "sw_power_cap",
    0x8: "hw_slowdown",
    0x10: "sync_boost",
    0x20: "sw_thermal_slowdown",
    0x40: "hw_thermal_slowdown",
    0x80: "hw_power_brake_slowdown",
    0x100: "display_clock_setting",
    0x200: "board_limit",
    0x400: "reliability",
}
# The reasons that mean the GPU ran slower than it could for this work.
THROTTLING = frozenset(
    {"sw_power_cap", "hw_slowdown", "sw_thermal_slowdown", "hw_thermal_slowdown", "hw_power_brake_slowdown", "board_limit"}
)
# NVML performance policies whose violation counters are read (NVML_PERF_POLICY_*).
_VIOLATION_POLICIES = {"power": 0, "thermal": 1}
# Counted as throttling only above this much violation time in the window (counter granularity).
VIOLATION_MIN_MS = 1.0


def _err(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def open_nvml(device_index: int = 0, *, nvml: Any = None, pci_bus_id: str | None = None) -> tuple[Any, Any]:
    """`(nvml, handle)` for the GPU, or raises `RuntimeError` with the reason NVML is not usable.

    The handle is looked up by PCI bus id when given (CUDA and NVML may number GPUs
    differently, e.g. under CUDA_VISIBLE_DEVICES), else by index.
    """
    if nvml is None:
        try:
            import pynvml as nvml  # nvidia-ml-py
        except ImportError as exc:  # pragma: no cover - a core dependency
            raise RuntimeError(f"nvidia-ml-py is not installed ({exc})") from None
    try:
        nvml.nvmlInit()
    except Exception as exc:  # noqa: BLE001 - NVMLError_LibraryNotFound, DriverNotLoaded...
        raise RuntimeError(f"NVML could not start: {_err(exc)}") from None
    try:
        if pci_bus_id:
            handle = nvml.nvmlDeviceGetHandleByPciBusId(pci_bus_id)
        else:
            handle = nvml.nvmlDeviceGetHandleByIndex(device_index)
    except Exception as exc:  # noqa: BLE001
        raise RuntimeError(f"NVML has no handle for GPU {pci_bus_id or device_index}: {_err(exc)}") from None
    return nvml, handle


def cuda_pci_bus_id(index: int = 0) -> str | None:
    """The PCI bus id of torch's CUDA device `index` in NVML's format, None if unknown."""
    try:
        import torch

        props = torch.cuda.get_device_properties(index)
        return f"{props.pci_domain_id:08x}:{props.pci_bus_id:02x}:{props.pci_device_id:02x}.0"
    except Exception:  # noqa: BLE001 - an older torch without the fields: fall back to the index
        return None


def _try(values: dict[str, Any], errors: dict[str, str], name: str, fn: Any, *args: Any) -> Any:
    try:
        values[name] = fn(*args)
    except Exception as exc:  # noqa: BLE001 - NotSupported on this GPU, NoPermission...
        errors[name] = _err(exc)
    return values.get(name)


def decode_reasons(mask: int) -> list[str]:
    return [name for bit, name in THROTTLE_BITS.items() if mask & bit]


def gpu_snapshot(nvml: Any, handle: Any) -> dict[str, Any]:
    """Clocks, temperature, power limit and throttle reasons now; unreadable fields in `errors`."""
    raw: dict[str, Any] = {}
    errors: dict[str, str] = {}
    _try(raw, errors, "sm_clock_mhz", nvml.nvmlDeviceGetClockInfo, handle, 1)  # NVML_CLOCK_SM
    _try(raw, errors, "mem_clock_mhz", nvml.nvmlDeviceGetClockInfo, handle, 2)  # NVML_CLOCK_MEM
    _try(raw, errors, "temperature_c", nvml.nvmlDeviceGetTemperature, handle, 0)  # NVML_TEMPERATURE_GPU
    limit = _try(raw, errors, "power_limit_mw", nvml.nvmlDeviceGetEnforcedPowerLimit, handle)
    reasons_fn = getattr(nvml, "nvmlDeviceGetCurrentClocksEventReasons", None) or nvml.nvmlDeviceGetCurrentClocksThrottleReasons
    mask = _try(raw, errors, "throttle_mask", reasons_fn, handle)
    out: dict[str, Any] = {k: int(v) for k, v in raw.items() if k not in ("power_limit_mw",)}
    if limit is not None:
        out["power_limit_w"] = limit / 1000.0
    if mask is not None:
        out["throttle_reasons"] = decode_reasons(int(mask))
    violations: dict[str, int] = {}
    for name, policy in _VIOLATION_POLICIES.items():
        try:
            violations[name] = int(nvml.nvmlDeviceGetViolationStatus(handle, policy).violationTime)
        except Exception:  # noqa: BLE001 - not every GPU has these counters; optional
            pass
    if violations:
        out["violation_ns"] = violations
    if errors:
        out["errors"] = errors
    return out


def _process_name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text(encoding="utf-8").strip() or "?"
    except OSError:
        return "name unknown (not visible from this process, e.g. another container)"


def other_processes(nvml: Any, handle: Any, *, own_pid: int | None = None) -> list[dict[str, Any]]:
    """Processes other than this one holding a compute or graphics context on the GPU."""
    own = os.getpid() if own_pid is None else own_pid
    seen: dict[int, dict[str, Any]] = {}
    for fn_name in ("nvmlDeviceGetComputeRunningProcesses", "nvmlDeviceGetGraphicsRunningProcesses"):
        fn = getattr(nvml, fn_name, None)
        if fn is None:
            continue
        try:
            procs = fn(handle)
        except Exception:  # noqa: BLE001 - NotSupported (e.g. MIG without permission)
            continue
        for p in procs or ():
            pid = int(p.pid)
            if pid == own or pid in seen:
                continue
            used = getattr(p, "usedGpuMemory", None)
            seen[pid] = {"pid": pid, "name": _process_name(pid), "used_memory_bytes": int(used) if used is not None else None}
    return sorted(seen.values(), key=lambda p: p["pid"])


def cpu_snapshot(root: str | os.PathLike[str] = CPUFREQ_ROOT) -> dict[str, Any]:
    """Each cpufreq policy's governor and current frequency, or the reason none is readable."""
    base = Path(root)
    try:
        policies = sorted((p for p in base.glob("policy*") if p.is_dir()), key=lambda p: int(p.name[6:] or 0))
    except (OSError, ValueError) as exc:
        return {"unavailable": f"cannot list {base}: {_err(exc)}"}
    if not policies:
        return {"unavailable": f"no cpufreq policies under {base} (a VM or container without cpufreq)"}
    governors: dict[str, str] = {}
    freqs: dict[str, float] = {}
    errors: list[str] = []
    for p in policies:
        try:
            governors[p.name] = (p / "scaling_governor").read_text(encoding="utf-8").strip()
        except OSError as exc:
            errors.append(f"{p / 'scaling_governor'}: {_err(exc)}")
        try:
            freqs[p.name] = int((p / "scaling_cur_freq").read_text(encoding="utf-8").strip()) / 1000.0
        except (OSError, ValueError) as exc:
            errors.append(f"{p / 'scaling_cur_freq'}: {_err(exc)}")
    if not governors and not freqs:
        return {"unavailable": "; ".join(errors[:2])}
    out: dict[str, Any] = {"governors": sorted(set(governors.values())), "policies": len(policies)}
    if freqs:
        values = list(freqs.values())
        out["cur_freq_mhz"] = {"min": min(values), "max": max(values), "mean": sum(values) / len(values)}
    if errors:
        out["errors"] = errors[:4]
    return out


class StateProbe:
    """Device state at the start and the end of the timed window, and the warnings it earns.

    Args:
        nvml, handle: an open NVML device (None on CPU cases or when NVML is not usable, with
            `gpu_reason` saying why).
        cpufreq_root: where to read CPU governors and frequencies.
    """

    def __init__(
        self, nvml: Any = None, handle: Any = None, *, gpu_reason: str | None = None, cpufreq_root: str = CPUFREQ_ROOT
    ):
        self.nvml, self.handle = nvml, handle
        self.gpu_reason = gpu_reason
        self.cpufreq_root = cpufreq_root
        self.gpu: dict[str, Any] = {}
        self.cpu: dict[str, Any] = {}
        self.procs: dict[int, dict[str, Any]] = {}

    def snapshot(self, when: str) -> None:
        """Read the state now (`when` is "start" or "end")."""
        if self.nvml is not None:
            self.gpu[when] = gpu_snapshot(self.nvml, self.handle)
            for p in other_processes(self.nvml, self.handle):
                self.procs.setdefault(p["pid"], p)
        self.cpu[when] = cpu_snapshot(self.cpufreq_root)

    def record(self) -> dict[str, Any]:
        out: dict[str, Any] = {"cpu": dict(self.cpu)}
        if self.nvml is not None:
            out["gpu"] = dict(self.gpu)
            reasons = self.throttle_reasons()
            out["throttled"] = bool(reasons)
            out["throttle_reasons"] = reasons
            window = self._violation_ms()
            if window:
                out["gpu"]["violation_ms"] = window
            out["other_gpu_processes"] = list(self.procs.values())
        elif self.gpu_reason:
            out["gpu"] = {"unavailable": self.gpu_reason}
        return out

    def _violation_ms(self) -> dict[str, float]:
        a = self.gpu.get("start", {}).get("violation_ns") or {}
        b = self.gpu.get("end", {}).get("violation_ns") or {}
        return {k: (b[k] - a[k]) / 1e6 for k in a if k in b and b[k] >= a[k]}

    def throttle_reasons(self) -> list[str]:
        """Throttling seen at either end of the window or in the violation counters over it."""
        seen: list[str] = []
        for when in ("start", "end"):
            for name in self.gpu.get(when, {}).get("throttle_reasons") or ():
                if name in THROTTLING and name not in seen:
                    seen.append(name)
        for policy, ms in self._violation_ms().items():
            if ms >= VIOLATION_MIN_MS:
                seen.append(f"{policy}_violation_{ms:.0f}ms")
        return seen

    def warnings(self) -> list[str]:
        out = []
        reasons = self.throttle_reasons() if self.nvml is not None else []
        if reasons:
            start = self.gpu.get("start", {}).get("sm_clock_mhz")
            end = self.gpu.get("end", {}).get("sm_clock_mhz")
            clocks = f" (SM clock {start} -> {end} MHz)" if start is not None and end is not None else ""
            out.append(f"GPU throttled during the timed window: {', '.join(reasons)}{clocks}")
        if self.procs:
            names = ", ".join(f"{p['pid']} ({p['name']})" for p in self.procs.values())
            out.append(f"other processes on the GPU during the timed window: {names}: they share it with this case")
        return out


