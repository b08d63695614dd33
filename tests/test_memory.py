"""Measured memory: the CPU peak is taken over the post-load baseline, CUDA peaks are reset first."""

from __future__ import annotations

import pytest
import torch

from cnnbench.measure.memory import MemoryTracker
from cnnbench.run.runner import run_worker
from cnnbench.core.spec import CaseSpec, Measure

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


def test_the_first_calls_transient_peak_is_kept_apart_from_the_cases_peak():
    """A compile's working memory during the first call is not the model's footprint; what the
    first call leaves resident (compiled code, caches) still is."""
    # Every block is above glibc's largest mmap threshold (32 MiB), so each is fresh pages that
    # move the RSS, whatever earlier tests left in the heap.
    tracker = MemoryTracker("cpu")
    tracker.start()
    compile_scratch = torch.ones(200 * MiB // 4)  # touched during the first call, then freed
    kept = torch.ones(64 * MiB // 4)  # left resident by the first call
    del compile_scratch
    tracker.first_call_done()
    during = torch.ones(48 * MiB // 4)  # touched during warmup and timing
    del during
    mem = tracker.stop()
    assert mem["first_call_peak_rss_delta_bytes"] >= 250 * MiB
    assert 100 * MiB <= mem["peak_rss_delta_bytes"] < 200 * MiB  # kept + during, not the scratch
    del kept


def test_cuda_peaks_are_reset_before_and_read_after(monkeypatch):
    """With a fake of the small torch.cuda surface: the order of calls is what matters."""
    calls = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a: calls.append("sync"))
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda *a: calls.append("reset"))
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda *a: calls.append("allocated") or 123)
    monkeypatch.setattr(torch.cuda, "max_memory_reserved", lambda *a: calls.append("reserved") or 456)
    tracker = MemoryTracker("cuda", backend="onnxrt")
    tracker.start()
    calls.append("first call")
    tracker.first_call_done()
    calls.append("work")
    mem = tracker.stop()
    resets = [i for i, c in enumerate(calls) if c == "reset"]
    assert len(resets) == 2 and resets[0] < calls.index("first call") < resets[1] < calls.index("work")
    assert all(calls[i - 1] in ("sync", "allocated") for i in resets)  # queued work is done first
    assert calls.index("work") < len(calls) - 1 - calls[::-1].index("allocated")  # read after the work
    assert mem["first_call_cuda_peak_allocated_bytes"] == 123
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
