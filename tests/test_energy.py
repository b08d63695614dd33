"""Energy over the timed window and device state (cnnbench.measure.energy, cnnbench.measure.devicestate).

NVML is a small fake exposing the pynvml functions the code calls; RAPL and cpufreq are fake
sysfs trees under tmp_path; the clock is fake. No GPU, no root, no real timing.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest

from cnnbench.measure import devicestate
from cnnbench.measure import energy
from cnnbench.core.units import fmt_joules, fmt_rate
from cnnbench.report import energy as report_energy
from cnnbench.results.blocks import combine_energy
from cnnbench.measure.energy import (
    CaseProbes,
    MeterUnavailable,
    NvmlCounterMeter,
    NvmlPowerMeter,
    RaplMeter,
)
from cnnbench.core.spec import Measure
from cnnbench.measure.timing import time_callable

MS = 1_000_000
S = 1_000_000_000


class FakeClock:
    def __init__(self, start: int = 0):
        self.now = start

    def __call__(self) -> int:
        return self.now


class FakeNvml:
    """The pynvml surface cnnbench uses. `energy_mj` and `power_mw` are callables of the clock."""

    def __init__(self, *, energy_mj=None, power_mw=None, reasons=(0, 0), violation=None, procs=(), clock=None):
        self.energy_mj = energy_mj
        self.power_mw = power_mw
        self.reasons = list(reasons)  # mask per snapshot, in order
        self.violation = violation or {}
        self.procs = list(procs)
        self.clock = clock or FakeClock()
        self.snapshots = 0

    def nvmlInit(self):
        return None

    def nvmlDeviceGetHandleByIndex(self, i):
        return ("gpu", i)

    def nvmlDeviceGetHandleByPciBusId(self, bus):
        return ("gpu", bus)

    def nvmlDeviceGetTotalEnergyConsumption(self, h):
        if self.energy_mj is None:
            raise RuntimeError("Not Supported")
        return self.energy_mj(self.clock())

    def nvmlDeviceGetPowerUsage(self, h):
        if self.power_mw is None:
            raise RuntimeError("Not Supported")
        return self.power_mw(self.clock())

    def nvmlDeviceGetClockInfo(self, h, kind):
        return {1: 1980, 2: 2619}[kind] - (300 * self.snapshots if kind == 1 else 0)

    def nvmlDeviceGetTemperature(self, h, sensor):
        return 71

    def nvmlDeviceGetEnforcedPowerLimit(self, h):
        return 700_000

    def nvmlDeviceGetCurrentClocksEventReasons(self, h):
        mask = self.reasons[min(self.snapshots, len(self.reasons) - 1)]
        self.snapshots += 1
        return mask

    def nvmlDeviceGetViolationStatus(self, h, policy):
        values = self.violation.get(policy)
        if values is None:
            raise RuntimeError("Not Supported")
        return SimpleNamespace(referenceTime=0, violationTime=values.pop(0))

    def nvmlDeviceGetComputeRunningProcesses(self, h):
        return [SimpleNamespace(pid=pid, usedGpuMemory=mem) for pid, mem in self.procs]

    def nvmlDeviceGetGraphicsRunningProcesses(self, h):
        return []


def rapl_tree(root: Path, *, pkg_uj: int, dram_uj: int | None = None, max_uj: int = 262_143_328_850) -> Path:
    pkg = root / "intel-rapl:0"
    pkg.mkdir(parents=True)
    (pkg / "name").write_text("package-0\n")
    (pkg / "energy_uj").write_text(f"{pkg_uj}\n")
    (pkg / "max_energy_range_uj").write_text(f"{max_uj}\n")
    core = root / "intel-rapl:0:0"
    core.mkdir()
    (core / "name").write_text("core\n")  # not counted: inside the package figure
    (core / "energy_uj").write_text("5\n")
    if dram_uj is not None:
        dram = root / "intel-rapl:0:1"
        dram.mkdir()
        (dram / "name").write_text("dram\n")
        (dram / "energy_uj").write_text(f"{dram_uj}\n")
        (dram / "max_energy_range_uj").write_text("65532610987\n")
    return root


def set_uj(root: Path, zone: str, value: int) -> None:
    (root / zone / "energy_uj").write_text(f"{value}\n")


# ---------------------------------------------------------------------------------------------
# RAPL


def test_rapl_package_and_dram_over_the_window(tmp_path):
    root = rapl_tree(tmp_path / "powercap", pkg_uj=1_000_000, dram_uj=500_000)
    clock = FakeClock()
    meter = RaplMeter(root, clock=clock)
    meter.begin()
    set_uj(root, "intel-rapl:0", 31_000_000)  # +30 J
    set_uj(root, "intel-rapl:0:1", 3_500_000)  # +3 J
    clock.now = 2 * S
    window = meter.end()
    assert window["domains"] == {"package-0": pytest.approx(30.0), "dram-0": pytest.approx(3.0)}
    assert window["joules"] == pytest.approx(33.0)
    assert window["seconds"] == pytest.approx(2.0)


def test_rapl_counter_wrap_around(tmp_path):
    max_uj = 262_143_328_850
    root = rapl_tree(tmp_path / "powercap", pkg_uj=max_uj - 2_000_000, max_uj=max_uj)
    meter = RaplMeter(root, clock=FakeClock())
    meter.begin()
    set_uj(root, "intel-rapl:0", 3_000_000)  # wrapped: 2 J to the top, then 3 J
    window = meter.end()
    assert window["joules"] == pytest.approx(5.0)
    assert window["wrapped"] == ["package-0"]


def test_rapl_counter_that_does_not_advance_is_unavailable_never_zero(tmp_path):
    root = rapl_tree(tmp_path / "powercap", pkg_uj=42)
    clock = FakeClock()
    probes = CaseProbes(meter=RaplMeter(root, clock=clock), sleep=lambda s: None)
    probes.measure_idle()
    probes.window_start()
    clock.now = S
    probes.window_end()
    rec = probes.record(images=100)["energy"]
    assert rec["available"] is False
    assert "did not advance" in rec["reason"]
    assert "joules" not in rec and "j_per_image" not in rec
    assert report_energy.cell({"energy": rec}) == "-"


def test_rapl_permission_error_is_a_reason(tmp_path):
    root = rapl_tree(tmp_path / "powercap", pkg_uj=42)

    def read(path: Path) -> str:
        if path.name == "energy_uj":
            raise PermissionError(13, "Permission denied")
        return path.read_text()

    with pytest.raises(MeterUnavailable, match="permission denied.*root-only since Linux 5.10"):
        RaplMeter(root, read=read)


def test_no_powercap_tree(tmp_path):
    with pytest.raises(MeterUnavailable, match="no RAPL domains"):
        RaplMeter(tmp_path / "absent")


# ---------------------------------------------------------------------------------------------
# NVML


def test_nvml_counter_window_and_reliability():
    clock = FakeClock()
    nvml = FakeNvml(energy_mj=lambda t: 10_000 + (t // MS) * 300, clock=clock)
    meter = NvmlCounterMeter(nvml, "h", clock=clock)
    meter.begin()
    clock.now = 2 * S  # 300 mJ per ms = 300 W
    window = meter.end()
    assert window["joules"] == pytest.approx(600.0)
    assert window["reliable"] is True
    meter.begin()
    clock.now += 500 * MS
    short = meter.end()
    assert short["reliable"] is False and "< 1 s" in short["unreliable_reason"]


def test_nvml_counter_that_does_not_advance_or_goes_back():
    clock = FakeClock()
    values = iter([5000, 5000, 9000, 100])
    nvml = FakeNvml(energy_mj=lambda t: next(values), clock=clock)
    meter = NvmlCounterMeter(nvml, "h", clock=clock)
    meter.begin()
    clock.now = 2 * S
    with pytest.raises(MeterUnavailable, match="did not advance"):
        meter.end()
    meter.begin()
    with pytest.raises(MeterUnavailable, match="went backwards"):
        meter.end()


def test_power_polling_when_the_counter_is_not_supported():
    clock = FakeClock()
    nvml = FakeNvml(energy_mj=None, power_mw=lambda t: 100_000 + 100_000 * t // S, clock=clock)  # 100 W rising 100 W/s
    meter = energy.open_meter("cuda", nvml=nvml, handle="h")
    assert isinstance(meter, NvmlPowerMeter) and meter.method == "nvml_power_polling"
    meter.clock = clock
    meter.begin(thread=False)
    for _ in range(10):
        clock.now += 100 * MS
        meter.sample()
    window = meter.end()  # a final sample at the same instant as the last one
    # Power rises linearly from 100 W to 200 W over 1 s: the trapezoids are exact, 150 J.
    assert window["joules"] == pytest.approx(150.0)
    assert window["seconds"] == pytest.approx(1.0)
    assert window["achieved_interval_s"] == pytest.approx(0.1, abs=0.1)
    rec = energy.energy_record(window, meter, images=300, idle_w=None, idle_reason=None)
    assert rec["interval_s"] == energy.POLL_INTERVAL_S
    assert rec["j_per_image"] == pytest.approx(0.5) and rec["images_per_j"] == pytest.approx(2.0)
    assert rec["avg_w"] == pytest.approx(150.0)


def test_nvml_neither_counter_nor_power():
    nvml = FakeNvml(energy_mj=None, power_mw=None)
    with pytest.raises(MeterUnavailable, match="neither"):
        energy.open_meter("cuda", nvml=nvml, handle="h")


# ---------------------------------------------------------------------------------------------
# The window: exactly the timed samples


class CountingWork:
    """Each call 'takes' 2 ms on the fake clock and 'uses' 1 J on a fake NVML counter."""

    def __init__(self, clock: FakeClock):
        self.clock = clock
        self.calls = 0

    def __call__(self) -> None:
        self.calls += 1
        self.clock.now += 2 * MS

    def energy_mj(self, t: int) -> int:
        return 1000 * self.calls


def test_energy_window_never_includes_first_call_calibration_or_warmup():
    clock = FakeClock()
    work = CountingWork(clock)
    nvml = FakeNvml(energy_mj=work.energy_mj, clock=clock)
    idle_sleeps = []
    probes = CaseProbes(meter=NvmlCounterMeter(nvml, "h", clock=clock), state=None, sleep=idle_sleeps.append)
    before_idle = work.calls
    probes.measure_idle()  # no work in the idle window: the counter does not move, so no idle W
    assert idle_sleeps == [energy.UNRELIABLE_WINDOW_S] and work.calls == before_idle  # NVML's counter: 1 s
    assert probes.idle_reason and "did not advance" in probes.idle_reason
    measure = Measure(warmup=7, min_time_s=1.5, max_time_s=10.0, min_samples=5, target_rel_ci=0.5, block_min_ms=1.0)
    timing = time_callable(
        work, measure=measure, clock=clock, on_timed_start=probes.window_start, on_timed_end=probes.window_end
    )
    timed_calls = timing.block_size * len(timing.samples_ms)
    untimed = 1 + 1 + 7  # first call, calibration, warmup (block size 1 at 2 ms per call)
    assert timing.block_size == 1 and work.calls == untimed + timed_calls
    assert probes.calls == {"start": 1, "end": 1}
    rec = probes.record(images=8 * timed_calls)["energy"]
    assert rec["available"] is True
    assert rec["joules"] == pytest.approx(timed_calls)  # 1 J per timed call: nothing from warmup
    assert rec["j_per_image"] == pytest.approx(1 / 8)
    assert rec["window_s"] == pytest.approx(timed_calls * 0.002)
    assert rec["reliable"] is (rec["window_s"] >= 1.0)
    assert "idle_w" in rec and rec["idle_w"] is None and "did not advance" in rec["idle_reason"]


def test_idle_power_is_measured_before_the_window_and_subtracted():
    clock = FakeClock()
    nvml = FakeNvml(energy_mj=lambda t: 60 * t // MS, clock=clock)  # a steady 60 W
    probes = CaseProbes(meter=NvmlCounterMeter(nvml, "h", clock=clock), sleep=lambda s: setattr(clock, "now", clock.now + int(s * S)))
    probes.measure_idle()
    assert probes.idle_w == pytest.approx(60.0)
    nvml.energy_mj = lambda t: 30_000 + 160 * (t - clock_at_start) // MS  # 160 W during the window
    clock_at_start = clock.now
    probes.window_start()
    clock.now += 2 * S
    probes.window_end()
    rec = probes.record(images=1000)["energy"]
    assert rec["avg_w"] == pytest.approx(160.0)
    assert rec["above_idle_j_per_image"] == pytest.approx((320.0 - 120.0) / 1000)


def test_unavailable_meter_gives_a_reason_and_the_case_still_runs():
    probes = CaseProbes(reason="no RAPL domains under /x")
    probes.measure_idle()
    probes.window_start()
    probes.window_end()
    assert probes.record(images=10)["energy"] == {"available": False, "reason": "no RAPL domains under /x"}


def test_energy_off_in_the_suite(tmp_path):
    spec = SimpleNamespace(device="cpu", measure=Measure(energy=False))
    probes = CaseProbes.for_spec(spec)
    assert probes.meter is None and "measure.energy: false" in probes.reason


def test_repeats_combine_to_medians():
    blocks = [
        {"available": True, "method": "rapl", "j_per_image": j, "avg_w": 10.0 * j, "images_per_j": 1 / j, "images": 10, "reliable": True}
        for j in (0.3, 0.1, 0.2)
    ]
    out = combine_energy(blocks + [{"available": False, "reason": "x"}])
    assert out["j_per_image"] == pytest.approx(0.2) and out["repeat_j_per_image"] == [0.3, 0.1, 0.2]
    assert out["images"] == 30
    assert combine_energy([{"available": False, "reason": "x"}]) == {"available": False, "reason": "x"}
    assert combine_energy([None]) is None


# ---------------------------------------------------------------------------------------------
# Device state


def test_gpu_state_at_both_ends_throttle_and_other_processes():
    nvml = FakeNvml(
        energy_mj=lambda t: 0,
        reasons=(0x1, 0x4 | 0x20),  # idle at the start (not throttling), power cap + thermal at the end
        violation={0: [1_000_000, 41_000_000], 1: [0, 0]},
        procs=[(4242, 1 << 30)],
    )
    probe = devicestate.StateProbe(nvml, "h", cpufreq_root="/nonexistent")
    probe.snapshot("start")
    probe.snapshot("end")
    rec = probe.record()
    assert rec["gpu"]["start"]["sm_clock_mhz"] == 1980 and rec["gpu"]["end"]["sm_clock_mhz"] == 1680
    assert rec["gpu"]["start"]["throttle_reasons"] == ["gpu_idle"]
    assert rec["gpu"]["end"]["power_limit_w"] == pytest.approx(700.0)
    assert rec["gpu"]["violation_ms"] == {"power": pytest.approx(40.0), "thermal": 0.0}
    assert rec["throttled"] is True
    assert rec["throttle_reasons"] == ["sw_power_cap", "sw_thermal_slowdown", "power_violation_40ms"]
    assert [p["pid"] for p in rec["other_gpu_processes"]] == [4242]
    warnings = probe.warnings()
    assert any("GPU throttled" in w and "sw_power_cap" in w and "1980 -> 1680" in w for w in warnings)
    assert any("other processes on the GPU" in w and "4242" in w for w in warnings)


def test_an_idle_gpu_is_not_throttled():
    nvml = FakeNvml(reasons=(0x1, 0x0))
    probe = devicestate.StateProbe(nvml, "h", cpufreq_root="/nonexistent")
    probe.snapshot("start")
    probe.snapshot("end")
    assert probe.record()["throttled"] is False and probe.warnings() == []


def test_cpu_governor_and_frequency(tmp_path):
    for i, (gov, khz) in enumerate((("performance", 3_000_000), ("powersave", 1_200_000))):
        p = tmp_path / f"policy{i}"
        p.mkdir()
        (p / "scaling_governor").write_text(gov + "\n")
        (p / "scaling_cur_freq").write_text(f"{khz}\n")
    snap = devicestate.cpu_snapshot(tmp_path)
    assert snap["governors"] == ["performance", "powersave"] and snap["policies"] == 2
    assert snap["cur_freq_mhz"] == {"min": 1200.0, "max": 3000.0, "mean": 2100.0}
    assert "unavailable" in devicestate.cpu_snapshot(tmp_path / "none")


def test_a_throttled_case_says_so_on_its_row():
    from rich.console import Console

    from cnnbench.report.console import render_table, table_rows

    record = {
        "key": "k", "status": "ok", "warnings": ["GPU throttled during the timed window: sw_power_cap"],
        "spec": {"model": "resnet18", "batch_size": 8, "backend": "eager", "precision": "fp32", "input_size": [3, 224, 224],
                 "device": "cuda", "threads": 1, "mode": "inference", "options": {}},
        "latency_ms": {"median": 2.0, "iqr": 0.01}, "throughput_per_s": 4000.0,
        "device_state": {"throttled": True, "throttle_reasons": ["sw_power_cap"]},
        "energy": {"available": True, "method": "nvml_energy_counter", "j_per_image": 0.05, "avg_w": 200.0,
                   "images_per_j": 20.0, "reliable": True},
    }  # fmt: skip
    row = table_rows([record])[0]
    assert row.throttled == "throttled: sw_power_cap"
    console = Console(width=250, record=True)
    console.print(render_table([record], wide=True))
    text = console.export_text()
    assert "throttled" in text
    assert "50.0 mJ @ 200.0 W" in text and "20.0" in text
    narrow = Console(width=250, record=True)
    narrow.print(render_table([record]))
    assert "mJ" not in narrow.export_text()  # energy only under --wide


def test_suite_accepts_energy_and_transfer(tmp_path):
    from cnnbench.core.errors import SuiteError
    from cnnbench.suite.schema import load_suite

    path = tmp_path / "s.yaml"
    path.write_text(textwrap.dedent("""
        name: t
        models: [lenet5]
        measure: {energy: false, transfer: true}
    """))
    (case,) = load_suite(path).cases
    assert case.measure.energy is False and case.measure.transfer is True
    path.write_text("name: t\nmodels: [lenet5]\nmeasure: {transfer: 3}\n")
    with pytest.raises(SuiteError, match="transfer"):
        load_suite(path)


# ---------------------------------------------------------------------------------------------
# compare: J/image with its own threshold


def _with_energy(results: dict, j: float, *, reliable: bool = True, method: str = "nvml_energy_counter") -> dict:
    import copy

    out = copy.deepcopy(results)
    for case in out["cases"]:
        case["energy"] = {"available": True, "method": method, "j_per_image": j, "avg_w": 100.0,
                          "images_per_j": 1 / j, "reliable": reliable}  # fmt: skip
    return out


def test_compare_energy_has_its_own_threshold_and_gates():
    from cnnbench.compare import compare_results, parse_threshold, render_markdown
    from cnnbench.results.format import load_results

    data = Path(__file__).parent / "data" / "compare"
    base = load_results(data / "base.json")
    same = load_results(data / "aa.json")  # latency unchanged against base
    plain = compare_results(base, same)
    assert not plain.has_regression and all(r.energy_verdict is None for r in plain.rows)

    comp = compare_results(_with_energy(base, 0.10), _with_energy(same, 0.125))  # +25% J/image
    timed = [r for r in comp.rows if r.energy_ratio is not None]
    assert timed and all(r.energy_verdict == "regressed" and r.gating for r in timed)
    assert comp.has_regression and comp.thresholds["energy"].rel == pytest.approx(0.10)
    md = render_markdown(comp)
    assert "energy regression(s)" in md and "energy/img +25.00%" in md and "energy 10% (default)" in md

    looser = compare_results(_with_energy(base, 0.10), _with_energy(same, 0.125), thresholds={"energy": parse_threshold("energy:30%")})
    assert all(r.energy_verdict == "unchanged" for r in looser.rows if r.energy_ratio is not None)
    assert not looser.has_regression

    shaky = compare_results(_with_energy(base, 0.10), _with_energy(same, 0.125, reliable=False))
    assert all(r.energy_verdict == "unreliable" and not r.gating for r in shaky.rows if r.energy_ratio is not None)

    other = compare_results(_with_energy(base, 0.10), _with_energy(same, 0.125, method="rapl"))
    assert all(r.energy_verdict in (None, "incomparable") for r in other.rows) and not other.has_regression


# ---------------------------------------------------------------------------------------------
# report: an energy column and an images-per-joule chart


def test_report_has_an_energy_column_and_an_images_per_joule_plot(tmp_path):
    import json

    pytest.importorskip("matplotlib")
    from cnnbench.report import write_report

    golden = Path(__file__).parent / "data" / "report" / "host_a.json"
    data = json.loads(golden.read_text(encoding="utf-8"))
    given = {}
    for i, case in enumerate(data["cases"]):
        if case.get("status") == "ok" and case["spec"].get("mode", "inference") == "inference":
            j = 0.01 * (i + 1)
            case["energy"] = {"available": True, "method": "rapl", "j_per_image": j, "avg_w": 50.0,
                              "images_per_j": 1 / j, "reliable": True}  # fmt: skip
            given[case["key"]] = j
    assert given
    src = tmp_path / "with_energy.json"
    src.write_text(json.dumps(data), encoding="utf-8")
    write_report([src], tmp_path / "out", formats="md,png")
    md = (tmp_path / "out" / "report.md").read_text(encoding="utf-8")
    assert "Energy/img @ W (images/J)" in md
    first = min(given.values())
    assert f"{fmt_joules(first)} @ 50.0 W ({fmt_rate(1 / first)})" in md
    assert "Images per joule vs batch size" in md
    assert list((tmp_path / "out").rglob("energy*.png"))
    # the CSV carries the same block, full precision, for valid rows only
    import csv

    write_report([src], tmp_path / "csv", formats="csv")
    with open(tmp_path / "csv" / "results.csv", newline="", encoding="utf-8") as fh:
        rows = {r["key"]: r for r in csv.DictReader(fh)}
    for key, j in given.items():
        row = rows[key]
        if row["valid"] == "True":
            assert float(row["energy_j_per_image"]) == j and float(row["energy_images_per_j"]) == 1 / j
            assert row["energy_method"] == "rapl" and row["energy_avg_w"] == "50.0"
        else:
            assert row["energy_j_per_image"] == ""
    assert any(rows[k]["valid"] == "True" for k in given)
    # without energy blocks: neither the column nor the chart
    write_report([golden], tmp_path / "plain", formats="md")
    plain = (tmp_path / "plain" / "report.md").read_text(encoding="utf-8")
    assert "Energy/img" not in plain and "Images per joule" not in plain


def test_a_cuda_case_opens_nvml_by_pci_bus_id_and_prefers_the_counter(monkeypatch):
    torch = pytest.importorskip("torch")
    nvml = FakeNvml(energy_mj=lambda t: 0)
    opened = {}

    def fake_open(index, *, nvml=None, pci_bus_id=None):
        opened.update(index=index, bus=pci_bus_id)
        return fake, ("gpu", pci_bus_id)

    fake = nvml
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(devicestate, "cuda_pci_bus_id", lambda i: "00000000:3b:00.0")
    monkeypatch.setattr(devicestate, "open_nvml", fake_open)
    probes = CaseProbes.for_spec(SimpleNamespace(device="cuda", measure=Measure()))
    assert opened == {"index": 0, "bus": "00000000:3b:00.0"}
    assert isinstance(probes.meter, NvmlCounterMeter) and probes.state.nvml is nvml

    def no_nvml(index, *, nvml=None, pci_bus_id=None):
        raise RuntimeError("NVML could not start: NVMLError_LibraryNotFound")

    monkeypatch.setattr(devicestate, "open_nvml", no_nvml)
    probes = CaseProbes.for_spec(SimpleNamespace(device="cuda", measure=Measure()))
    assert probes.meter is None and "LibraryNotFound" in probes.reason
    assert probes.record(images=1)["device_state"]["gpu"] == {"unavailable": "NVML could not start: NVMLError_LibraryNotFound"}
