"""Measured memory: the CPU peak is taken over the post-load baseline, CUDA peaks are reset first."""

from __future__ import annotations

import pytest
import torch

from cnnbench.measure.memory import MemoryTracker
from cnnbench.run.runner import run_worker
from cnnbench.core.spec import CaseSpec, Measure

MiB = 1 << 20


def resident(nbytes: int):
    """`nbytes` of fresh anonymous memory, every page written: exactly that much more resident,
    whatever the test process's allocator holds or returns (no malloc involved); closing it
    unmaps it, and the resident set drops by as much at once."""
    import mmap

    block = mmap.mmap(-1, nbytes)
    for offset in range(0, nbytes, mmap.PAGESIZE):
        block[offset] = 1
    return block


class OneCPU:
    """Run the block on one CPU; `with OneCPU() as slack` gives how far from exact the
    kernel's RSS figures can then be.

    Linux keeps a process's RSS in per-CPU counters (anon, file, shmem) and folds a CPU's count
    into the total once it has moved by `batch` pages (max(32, 2 x CPUs)); VmRSS and VmHWM read
    the total. A measurement whose page faults all happen on one CPU is therefore exact to within
    3 x batch pages (seen here: 71 pages short with the faults spread over both CPUs of 2)."""

    def __enter__(self) -> int:
        import mmap
        import os

        self.before = os.sched_getaffinity(0)
        os.sched_setaffinity(0, {min(self.before)})
        return 3 * max(32, 2 * (os.cpu_count() or 1)) * mmap.PAGESIZE

    def __exit__(self, *exc) -> None:
        import os

        os.sched_setaffinity(0, self.before)


@pytest.mark.measured
def test_cpu_peak_counts_what_is_allocated_during_the_run_not_before():
    """The tracker's peak is the growth while it measures: the block written during the run
    counts in full, the larger block written and freed before it does not (a lifetime peak
    would be at least that block)."""
    before, during = 160 * MiB, 96 * MiB
    with OneCPU() as slack:
        resident(before).close()  # touched and released before the tracker starts
        tracker = MemoryTracker("cpu")
        tracker.start()
        resident(during).close()  # touched while measuring
        mem = tracker.stop()
    assert mem["cpu_method"].startswith("VmHWM reset")
    assert during - slack <= mem["peak_rss_delta_bytes"] < before - slack, mem


@pytest.mark.measured
def test_the_first_calls_transient_peak_is_kept_apart_from_the_cases_peak():
    """A compile's working memory during the first call is not the model's footprint; what the
    first call leaves resident (compiled code, caches) still is."""
    scratch, kept, during = 200 * MiB, 64 * MiB, 48 * MiB
    with OneCPU() as slack:
        tracker = MemoryTracker("cpu")
        tracker.start()
        compile_scratch = resident(scratch)  # touched during the first call, then freed
        left = resident(kept)  # left resident by the first call
        compile_scratch.close()
        tracker.first_call_done()
        resident(during).close()  # touched during warmup and timing
        mem = tracker.stop()
        left.close()
    # the first call's peak held the scratch and what it left, both at once
    assert mem["first_call_peak_rss_delta_bytes"] >= scratch + kept - slack, mem
    # the case's peak: what the first call left plus the timed loop's own, never the scratch
    # (a peak not reset after the first call would be at least scratch + kept)
    assert kept + during - slack <= mem["peak_rss_delta_bytes"] < scratch + kept - slack, mem


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


def largest_activation_bytes(model: torch.nn.Module, example: torch.Tensor) -> int:
    """The bytes of the largest output of any layer of one forward (shapes only, on `meta`)."""
    sizes = []
    hooks = [m.register_forward_hook(lambda m, i, out: sizes.append(out.numel() * out.element_size()))
             for m in model.modules() if not list(m.children())]  # fmt: skip
    with torch.no_grad():
        model.to("meta")(example.to("meta"))
    for h in hooks:
        h.remove()
    return max(sizes)


@pytest.mark.slow
@pytest.mark.measured
def test_resnet18_peak_memory_grows_with_batch_size(tmp_path, warm_counts, jemalloc_workers):
    """The peak at batch 8 holds 8 times the activations batch 1 holds. At its peak one forward
    holds at least its largest activation (conv1's output: 3.06 MiB per image), so going from 1
    to 8 images adds at least 7 times that (21.4 MiB; 72.3 MiB measured). Both workers start
    alike (counts cached, jemalloc without decay), so what is not an activation (code,
    allocator) is the same on both sides. One thread: two threads against a busy machine cost
    minutes in OpenMP's barriers and measure nothing more."""
    from torchvision.models import resnet18

    measure = Measure(warmup=1, min_time_s=0.0, max_time_s=1.0, min_samples=2, timeout_s=300)
    specs = {b: CaseSpec(model="resnet18", batch_size=b, input_size=(3, 224, 224), threads=1, measure=measure)
             for b in (1, 8)}  # fmt: skip
    warm_counts(specs[1])
    runs = {}
    for batch, spec in specs.items():
        run = run_worker(spec, workdir=str(tmp_path))
        assert run["status"] == "ok", run.get("error")
        runs[batch] = run["memory"]
    largest = largest_activation_bytes(resnet18(), torch.zeros(1, 3, 224, 224))
    assert largest == 64 * 112 * 112 * 4  # conv1's output
    growth = runs[8]["peak_rss_delta_bytes"] - runs[1]["peak_rss_delta_bytes"]
    assert growth >= 7 * largest, (growth / MiB, runs[1]["peak_rss_delta_bytes"] / MiB, runs[8]["peak_rss_delta_bytes"] / MiB)
    assert runs[8]["activation_bytes"] == 8 * runs[1]["activation_bytes"]
    assert runs[1]["param_bytes"] == 11_689_512 * 4
