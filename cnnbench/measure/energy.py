"""Energy per case over exactly the timed window: joules per image, average watts, images per joule.

The meter is read immediately before the first timed sample and immediately after the last one
(`cnnbench.measure.timing.time_callable`'s `on_timed_start` / `on_timed_end` hooks), so the first call,
the calibration and the warmup are never in the figure, and both ends sit on a synchronized
device (the warmup's last block and the last sample both end with `sync()`). Meters, in order
of preference:

- `nvml_energy_counter` (CUDA): `nvmlDeviceGetTotalEnergyConsumption`, the board's cumulative
  energy in mJ (Volta and newer). The driver updates it about every 100 ms, so a window under
  `UNRELIABLE_WINDOW_S` (1 s) is flagged `reliable: false`: its error can be +-10% or more.
- `nvml_power_polling` (CUDA, when the counter is not supported): `nvmlDeviceGetPowerUsage`
  (mW) sampled every `POLL_INTERVAL_S` by a thread and integrated (trapezoids) over the window;
  the interval is recorded. On Ampere and newer NVML itself averages that reading over ~1 s.
- `rapl` (CPU): the Linux powercap counters `/sys/class/powercap/intel-rapl:*` (`energy_uj`),
  package domains plus their `dram` subdomains where present, with one wrap-around per window
  undone through `max_energy_range_uj`. RAPL measures the whole socket: every process on it
  is counted, so on a shared machine the figure is an upper bound for this case. Since Linux
  5.10 `energy_uj` is readable by root only (CVE-2020-8694, "Platypus").

The idle power is measured before the window (`IDLE_S`, 1 s for NVML's counter, with the device doing nothing, after the
backend is prepared and before the first call), so a reader can tell the work's energy from the
floor: `above_idle_j_per_image` subtracts idle W x window s.

Nothing is ever reported as zero: a meter that cannot be read, a counter that does not advance
or goes backwards, a permission error, all give `{"available": false, "reason": ...}`.
"""

from __future__ import annotations

import itertools
import os
import statistics
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from cnnbench.measure import devicestate

__all__ = [
    "IDLE_S",
    "POLL_INTERVAL_S",
    "POWERCAP_ROOT",
    "UNRELIABLE_WINDOW_S",
    "CaseProbes",
    "MeterUnavailable",
    "NvmlCounterMeter",
    "NvmlPowerMeter",
    "RaplMeter",
    "energy_record",
]

POWERCAP_ROOT = "/sys/class/powercap"
UNRELIABLE_WINDOW_S = 1.0  # NVML's energy counter updates about every 100 ms
NVML_COUNTER_UPDATE_S = 0.1
POLL_INTERVAL_S = 0.05
IDLE_S = 0.5

Clock = Callable[[], int]


class MeterUnavailable(Exception):
    """No energy figure can be given; the message says why (it goes on the record)."""


def _err(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# ---------------------------------------------------------------------------------------------
# Meters: begin() at the start of a window, end() -> {"joules", "seconds", ...} at its end.


class NvmlCounterMeter:
    """The NVML total-energy counter (mJ since the driver loaded)."""

    method = "nvml_energy_counter"
    scope = "whole GPU board (every process on it)"
    idle_s = UNRELIABLE_WINDOW_S  # the idle reading needs a window the counter resolves too

    def __init__(self, nvml: Any, handle: Any, *, clock: Clock = time.perf_counter_ns):
        self.nvml, self.handle, self.clock = nvml, handle, clock
        self.interval_s = NVML_COUNTER_UPDATE_S
        self._start: tuple[int, int] | None = None

    def _read(self) -> int:
        try:
            return int(self.nvml.nvmlDeviceGetTotalEnergyConsumption(self.handle))
        except Exception as exc:  # noqa: BLE001
            raise MeterUnavailable(f"nvmlDeviceGetTotalEnergyConsumption failed: {_err(exc)}") from None

    def begin(self) -> None:
        self._start = (self._read(), self.clock())

    def end(self) -> dict[str, Any]:
        assert self._start is not None, "end() before begin()"
        e1, t1 = self._read(), self.clock()
        e0, t0 = self._start
        seconds = (t1 - t0) / 1e9
        if e1 < e0:
            raise MeterUnavailable(f"NVML energy counter went backwards ({e0} -> {e1} mJ; driver reloaded?)")
        if e1 == e0:
            raise MeterUnavailable(
                f"NVML energy counter did not advance over the {seconds:.3f} s window "
                f"(it updates about every {NVML_COUNTER_UPDATE_S * 1000:.0f} ms)"
            )
        out: dict[str, Any] = {"joules": (e1 - e0) / 1000.0, "seconds": seconds, "reliable": True}
        if seconds < UNRELIABLE_WINDOW_S:
            out["reliable"] = False
            out["unreliable_reason"] = (
                f"window {seconds:.2f} s < {UNRELIABLE_WINDOW_S:g} s: NVML's counter updates about every "
                f"{NVML_COUNTER_UPDATE_S * 1000:.0f} ms (raise measure.min_time_s)"
            )
        return out


class NvmlPowerMeter:
    """NVML board power sampled by a thread every `interval_s` and integrated over the window."""

    method = "nvml_power_polling"
    scope = "whole GPU board (every process on it)"

    def __init__(self, nvml: Any, handle: Any, *, interval_s: float = POLL_INTERVAL_S, clock: Clock = time.perf_counter_ns):
        self.nvml, self.handle, self.clock = nvml, handle, clock
        self.interval_s = interval_s
        self.samples: list[tuple[int, float]] = []  # (ns, W)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: str | None = None

    def sample(self) -> None:
        try:
            watts = self.nvml.nvmlDeviceGetPowerUsage(self.handle) / 1000.0
        except Exception as exc:  # noqa: BLE001
            self._error = f"nvmlDeviceGetPowerUsage failed: {_err(exc)}"
            return
        self.samples.append((self.clock(), float(watts)))

    def _loop(self) -> None:
        # Event.wait is the sampling period, not a synchronisation: the window's ends are read
        # by begin()/end() themselves.
        while not self._stop.wait(self.interval_s):
            self.sample()

    def begin(self, *, thread: bool = True) -> None:
        self.samples = []
        self._error = None
        self.sample()
        if thread:
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="cnnbench-power", daemon=True)
            self._thread.start()

    def end(self) -> dict[str, Any]:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
        self.sample()
        if self._error:
            raise MeterUnavailable(self._error)
        pts = self.samples
        if len(pts) < 2 or pts[-1][0] <= pts[0][0]:
            raise MeterUnavailable("fewer than two power samples over the window")
        joules = sum((t1 - t0) / 1e9 * (w0 + w1) / 2 for (t0, w0), (t1, w1) in itertools.pairwise(pts))
        seconds = (pts[-1][0] - pts[0][0]) / 1e9
        if joules <= 0:
            raise MeterUnavailable(f"NVML power read {pts[0][1]:g} W throughout: no energy can be derived")
        gaps = [(b[0] - a[0]) / 1e9 for a, b in itertools.pairwise(pts)]
        out: dict[str, Any] = {
            "joules": joules,
            "seconds": seconds,
            "samples": len(pts),
            "achieved_interval_s": statistics.median(gaps),
            "reliable": len(pts) >= 5,
        }
        if not out["reliable"]:
            out["unreliable_reason"] = f"only {len(pts)} power samples over {seconds:.2f} s (interval {self.interval_s:g} s)"
        return out


class RaplMeter:
    """RAPL package (+ DRAM) energy counters from Linux powercap.

    Args:
        root: the powercap directory (tests pass a fake tree).
        read: reads one sysfs file as text (tests inject a PermissionError; as root, CI's
            chmod would not raise one).
    """

    method = "rapl"
    scope = "whole CPU package(s) and DRAM (every process on the socket)"
    interval_s = None  # a counter read at both ends; no sampling

    def __init__(
        self,
        root: str | os.PathLike[str] = POWERCAP_ROOT,
        *,
        clock: Clock = time.perf_counter_ns,
        read: Callable[[Path], str] = lambda p: p.read_text(encoding="utf-8"),
    ):
        self.root, self.clock, self.read = Path(root), clock, read
        self.domains = self._discover()
        self._read()  # a permission error is known now, not after the idle wait
        self._start: tuple[list[int], int] | None = None

    def _discover(self) -> list[tuple[str, Path, int]]:
        """(label, energy_uj path, max_energy_range_uj) of each package and its dram subzone."""
        try:
            zones = sorted(p for p in self.root.glob("intel-rapl:*") if p.is_dir())
        except OSError as exc:
            raise MeterUnavailable(f"cannot list {self.root}: {_err(exc)}") from None
        if not zones:
            raise MeterUnavailable(f"no RAPL domains under {self.root} (not an Intel/AMD host, or powercap not exposed here)")
        found = []
        for zone in zones:
            parts = zone.name.split(":")
            try:
                name = self.read(zone / "name").strip()
            except OSError:
                continue
            top = len(parts) == 2
            if (top and name.startswith("package")) or (not top and name == "dram"):
                label = name if top else f"dram-{parts[1]}"
                try:
                    max_range = int(self.read(zone / "max_energy_range_uj").strip())
                except (OSError, ValueError):
                    max_range = 0
                found.append((label, zone / "energy_uj", max_range))
        if not found:
            raise MeterUnavailable(f"no RAPL package domain under {self.root}")
        return found

    def _read(self) -> list[int]:
        values = []
        for _, path, _ in self.domains:
            try:
                values.append(int(self.read(path).strip()))
            except PermissionError:
                raise MeterUnavailable(
                    f"permission denied reading {path}: RAPL counters are root-only since Linux 5.10 "
                    "(CVE-2020-8694); run as root or `chmod a+r` them"
                ) from None
            except (OSError, ValueError) as exc:
                raise MeterUnavailable(f"cannot read {path}: {_err(exc)}") from None
        return values

    def begin(self) -> None:
        self._start = (self._read(), self.clock())

    def end(self) -> dict[str, Any]:
        assert self._start is not None, "end() before begin()"
        v1, t1 = self._read(), self.clock()
        v0, t0 = self._start
        seconds = (t1 - t0) / 1e9
        domains: dict[str, float] = {}
        wrapped = []
        for (label, _, max_range), a, b in zip(self.domains, v0, v1):
            delta = b - a
            if delta < 0:  # the counter wrapped (once: a window lasts seconds, a wrap minutes)
                if max_range <= 0:
                    raise MeterUnavailable(f"RAPL {label} counter went backwards and max_energy_range_uj is unknown")
                delta += max_range
                wrapped.append(label)
            domains[label] = delta / 1e6
        joules = sum(domains.values())
        if joules <= 0:
            raise MeterUnavailable(f"RAPL counters did not advance over the {seconds:.3f} s window")
        out: dict[str, Any] = {"joules": joules, "seconds": seconds, "domains": domains, "reliable": True}
        if wrapped:
            out["wrapped"] = wrapped
        return out


# ---------------------------------------------------------------------------------------------
# One case: idle power, the window, the record.


def open_meter(device: str, *, nvml: Any = None, handle: Any = None, powercap_root: str = POWERCAP_ROOT) -> Any:
    """The best meter for `device`, or raises MeterUnavailable with the reason."""
    if device == "cuda":
        if nvml is None:
            raise MeterUnavailable("NVML is not usable on this machine")
        try:
            nvml.nvmlDeviceGetTotalEnergyConsumption(handle)
        except Exception:  # noqa: BLE001 - NotSupported before Volta: poll the power instead
            try:
                nvml.nvmlDeviceGetPowerUsage(handle)
            except Exception as exc:  # noqa: BLE001
                raise MeterUnavailable(f"NVML reads neither the energy counter nor the power: {_err(exc)}") from None
            return NvmlPowerMeter(nvml, handle)
        return NvmlCounterMeter(nvml, handle)
    return RaplMeter(powercap_root)


def energy_record(
    window: dict[str, Any], meter: Any, *, images: int, idle_w: float | None, idle_reason: str | None, idle_s: float = IDLE_S
) -> dict[str, Any]:
    """The `energy` block of a run from a meter's window and the images computed in it."""
    joules, seconds = float(window["joules"]), float(window["seconds"])
    out: dict[str, Any] = {
        "available": True,
        "method": meter.method,
        "scope": meter.scope,
        "joules": joules,
        "window_s": seconds,
        "images": int(images),
        "j_per_image": joules / images if images else None,
        "avg_w": joules / seconds if seconds > 0 else None,
        "images_per_j": images / joules,
        "interval_s": getattr(meter, "interval_s", None),
        "idle_w": idle_w,
        "reliable": bool(window.get("reliable", True)),
    }
    for name in ("unreliable_reason", "domains", "wrapped", "samples", "achieved_interval_s"):
        if name in window:
            out[name] = window[name]
    if idle_w is not None and images:
        out["idle_s"] = idle_s
        out["above_idle_j_per_image"] = max(0.0, joules - idle_w * seconds) / images
    elif idle_reason:
        out["idle_reason"] = idle_reason
    return out


class CaseProbes:
    """Energy meter and device state around one case's timed window (`cnnbench.measure.worker`).

    Order: `measure_idle()` before the first call, `window_start()` right before the first
    timed sample, `window_end()` right after the last one, then `record(images=...)`.
    Every failure is kept as a reason; nothing here raises into the case.
    """

    def __init__(
        self,
        *,
        meter: Any = None,
        reason: str | None = None,
        state: Any = None,
        sleep: Callable[[float], None] = time.sleep,
        idle_s: float | None = None,
    ):
        self.meter, self.reason, self.state = meter, reason, state
        self.sleep = sleep
        # A meter may need a longer idle window (NVML's counter: 1 s); an explicit idle_s wins.
        self.idle_s = idle_s if idle_s is not None else getattr(meter, "idle_s", IDLE_S)
        self.idle_w: float | None = None
        self.idle_reason: str | None = None
        self.window: dict[str, Any] | None = None
        self.calls = {"start": 0, "end": 0}

    @classmethod
    def for_spec(cls, spec: Any) -> CaseProbes:
        """Open what this machine offers for the case: NVML on CUDA, RAPL on CPU, cpufreq always."""

        nvml = handle = None
        gpu_reason = None
        if spec.device == "cuda":
            try:
                import torch

                index = torch.cuda.current_device()
                nvml, handle = devicestate.open_nvml(index, pci_bus_id=devicestate.cuda_pci_bus_id(index))
            except Exception as exc:  # noqa: BLE001 - no NVML (or no CUDA): a reason, never a failed case
                gpu_reason = str(exc) or type(exc).__name__
        state = devicestate.StateProbe(nvml, handle, gpu_reason=gpu_reason)
        if not getattr(spec.measure, "energy", True):
            return cls(reason="not measured (measure.energy: false)", state=state)
        try:
            meter = open_meter(spec.device, nvml=nvml, handle=handle)
        except MeterUnavailable as exc:
            reason = str(exc) if not gpu_reason else f"{exc}: {gpu_reason}"
            return cls(reason=reason, state=state)
        return cls(meter=meter, state=state)

    def measure_idle(self) -> None:
        if self.meter is None:
            return
        try:
            self.meter.begin()
            self.sleep(self.idle_s)
            window = self.meter.end()
            self.idle_w = window["joules"] / window["seconds"]
        except MeterUnavailable as exc:
            self.idle_reason = f"idle power not measured: {exc}"

    def window_start(self) -> None:
        self.calls["start"] += 1
        if self.state is not None:
            self.state.snapshot("start")
        if self.meter is not None:
            try:
                self.meter.begin()
            except MeterUnavailable as exc:
                self.meter, self.reason = None, str(exc)

    def window_end(self) -> None:
        self.calls["end"] += 1
        if self.meter is not None:
            try:
                self.window = self.meter.end()
            except MeterUnavailable as exc:
                self.reason = str(exc)
        if self.state is not None:
            self.state.snapshot("end")

    def record(self, *, images: int) -> dict[str, Any]:
        """`energy` and `device_state` for the run record."""
        out: dict[str, Any] = {}
        if self.window is not None and self.meter is not None and images > 0:
            out["energy"] = energy_record(
                self.window, self.meter, images=images, idle_w=self.idle_w, idle_reason=self.idle_reason, idle_s=self.idle_s
            )
        else:
            out["energy"] = {"available": False, "reason": self.reason or "the timed window was not measured"}
        if self.state is not None:
            out["device_state"] = self.state.record()
        return out

    def warnings(self) -> list[str]:
        return self.state.warnings() if self.state is not None else []
