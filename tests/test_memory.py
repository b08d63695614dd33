"""Measured memory: the CPU peak is taken over the post-load baseline, CUDA peaks are reset first."""

from __future__ import annotations

import pytest
import torch

from cnnbench.memory import MemoryTracker
from cnnbench.runner import run_worker
from cnnbench.spec import CaseSpec, Measure

MiB = 1 << 20


def test_cpu_peak_counts_what_is_allocated_during_the_run_not_before():
    before = torch.ones(64 * MiB // 4)  # 64 MiB touched before the tracker starts
    del before
    tracker = MemoryTracker("cpu")
    tracker.start()
    during = torch.ones(96 * MiB // 4)  # 96 MiB touched while measuring
    del during
    mem = tracker.stop()
    assert mem["cpu_method"].startswith("VmHWM reset")
    assert 90 * MiB <= mem["peak_rss_delta_bytes"] < 200 * MiB


def test_cuda_peaks_are_reset_before_and_read_after(monkeypatch):
    """With a fake of the small torch.cuda surface: the order of calls is what matters."""
    calls = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a: calls.append("sync"))
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda *a: calls.append("reset"))
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda *a: calls.append("allocated") or 123)
    monkeypatch.setattr(torch.cuda, "max_memory_reserved", lambda *a: calls.append("reserved") or 456)
    tracker = MemoryTracker("cuda", backend="onnxrt")
    tracker.start()
    calls.append("work")
    mem = tracker.stop()
    assert calls.index("reset") < calls.index("work") < calls.index("allocated")
    assert calls[calls.index("reset") - 1] == "sync"  # queued work finishes before the reset
    assert mem["cuda_peak_allocated_bytes"] == 123 and mem["cuda_peak_reserved_bytes"] == 456
    # ORT does not allocate through torch: without NVML the device figure says so, not a guess
    assert mem["device_used_bytes"] is None and "unavailable" in mem["device_method"]


@pytest.mark.slow
def test_resnet18_peak_memory_grows_with_batch_size(tmp_path):
    measure = Measure(warmup=1, min_time_s=0.1, max_time_s=1.0, min_samples=3, timeout_s=300)
    runs = {}
    for batch in (1, 32):
        spec = CaseSpec(model="resnet18", batch_size=batch, input_size=(3, 224, 224), threads=2, measure=measure)
        run = run_worker(spec, workdir=str(tmp_path))
        assert run["status"] == "ok", run.get("error")
        runs[batch] = run["memory"]
    assert runs[32]["peak_rss_delta_bytes"] > runs[1]["peak_rss_delta_bytes"] + 50 * MiB
    assert runs[32]["activation_bytes"] == 32 * runs[1]["activation_bytes"]
    assert runs[1]["param_bytes"] == 11_689_512 * 4
