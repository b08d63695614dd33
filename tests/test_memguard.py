"""Memory: every allocator failure is `oom`, the kernel's OOM killer is recognised, a case that
cannot fit is refused before it is built, `measure.memory_limit` caps a worker, and a worker's
output is kept as a bounded tail."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from cnnbench.measure import memguard
from cnnbench.run import runner
from cnnbench.core.errors import is_oom_message
from cnnbench.measure.memguard import killed_by_oom_killer, oom_kill_count, parse_bytes
from cnnbench.core.spec import CaseSpec, Measure
from cnnbench.suite.schema import expand
from cnnbench.measure.worker import classify_exception

FIXTURES = Path(__file__).resolve().parent / "fixtures"
FAST = Measure(warmup=1, min_time_s=0.05, max_time_s=0.2, timeout_s=120)

ALLOCATOR_MESSAGES = [
    "DefaultCPUAllocator: can't allocate memory: you tried to allocate 1099511627776 bytes. Error code 12 (Cannot allocate memory)",
    "[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: not enough memory: you tried to allocate 8 bytes.",
    "CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 15.78 GiB total capacity)",
    "CUDA error: out of memory\nCUDA kernel errors might be asynchronously reported",
    "HIP out of memory. Tried to allocate 20.00 MiB",
    "MPS backend out of memory (MPS allocated: 9.00 GB, other allocations: 0 bytes)",
    "CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`",
    "cuDNN error: CUDNN_STATUS_ALLOC_FAILED",
    "Unable to allocate 8.00 EiB for an array with shape (1152921504606846976,) and data type float64",
    "[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Non-zero status code returned while running Conv node. "
    "Name:'/conv1/Conv' Status Message: Failed to allocate memory for requested buffer of size 802816",
    "[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Available memory of 0 is smaller than requested bytes of 1048576",
    "onnxruntime::BFCArena::AllocateRawInternal ... CUDA failure 2: out of memory ; GPU=0",
    "std::bad_alloc",
]


@pytest.mark.parametrize("message", ALLOCATOR_MESSAGES)
def test_every_known_allocator_failure_is_oom(message):
    assert is_oom_message(message)
    assert classify_exception(RuntimeError(message)) == "oom"
    try:  # wrapped: the chain is searched
        raise ValueError("export failed") from RuntimeError(message)
    except ValueError as exc:
        assert classify_exception(exc) == "oom"


def test_a_real_numpy_allocation_failure_is_oom():
    np = pytest.importorskip("numpy")
    with pytest.raises(MemoryError) as info:
        np.empty(1 << 47, dtype=np.float64)  # 1 PiB: beyond the 47-bit address space
    assert classify_exception(info.value) == "oom"


@pytest.mark.parametrize("message", ["shape mismatch: [1, 3] vs [1, 4]", "no kernel for Half", "file not found"])
def test_other_errors_are_not_oom(message):
    assert not is_oom_message(message) and classify_exception(RuntimeError(message)) == "error"


def test_oom_killer_evidence(tmp_path):
    events = tmp_path / "memory.events"
    events.write_text("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n")
    assert oom_kill_count(str(events)) == 1
    none = str(tmp_path / "no-kmsg")
    assert killed_by_oom_killer(42, -9, 1, after=2, kmsg=none) == "cgroup memory.events oom_kill 1 -> 2"
    assert killed_by_oom_killer(42, -9, 2, after=2, kmsg=none) is None  # counter unmoved: someone's SIGKILL
    assert killed_by_oom_killer(42, -11, 1, after=2, kmsg=none) is None  # a segfault is no OOM kill
    kmsg = tmp_path / "kmsg"
    kmsg.write_text("6,1,2,-;Out of memory: Killed process 4242 (python) total-vm:99kB, anon-rss:98kB\n")
    assert killed_by_oom_killer(4242, -9, None, kmsg=str(kmsg)) == "kernel log: Killed process 4242"
    assert killed_by_oom_killer(4243, -9, 1, after=2, kmsg=str(kmsg)) is None  # the log names another pid


def test_cgroup_v1_and_v2_counter_files(tmp_path):
    cg = tmp_path / "cgroup"
    cg.write_text("4:memory:/job/7\n0::/user.slice/x\n")
    files = memguard._counter_files(str(cg), root="/sys/fs/cgroup")
    assert "/sys/fs/cgroup/memory/job/7/memory.oom_control" in files and "/sys/fs/cgroup/user.slice/x/memory.events" in files


def test_memory_limit_in_a_suite():
    (case,) = expand({"models": ["lenet5"], "measure": {"memory_limit": "8GiB"}})
    assert case.measure.memory_limit == 8 * 1024**3
    assert parse_bytes("512MiB") == 512 * 1024**2 and parse_bytes("2GB") == 2 * 10**9
    for bad in ("8 parsecs", "-1GiB", "1KiB", True, "nanGiB"):
        with pytest.raises(Exception, match="memory_limit"):
            expand({"models": ["lenet5"], "measure": {"memory_limit": bad}})


def test_the_estimate_is_params_and_activations_at_batch_and_precision():
    from cnnbench.models.registry import build_model

    def build():
        return build_model("resnet18", source=None, kwargs={}, input_size=(3, 224, 224))

    one = memguard.estimate_bytes(build, (3, 224, 224), batch=1, precision="fp32", train=False)
    assert one["param_bytes"] == 11_689_512 * 4
    eight = memguard.estimate_bytes(build, (3, 224, 224), batch=8, precision="fp16", train=True)
    assert eight["activation_bytes"] == one["activation_bytes"] * 8 // 2
    assert eight["estimate_bytes"] == 2 * eight["param_bytes"] + eight["activation_bytes"]


def test_preflight_refuses_what_cannot_fit_and_says_the_estimate(monkeypatch):
    from cnnbench.models.registry import build_model

    spec = CaseSpec(model="resnet18", batch_size=64, input_size=(3, 224, 224))
    build = lambda: build_model("resnet18", source=None, kwargs={}, input_size=(3, 224, 224))  # noqa: E731
    monkeypatch.setattr(memguard, "available_bytes", lambda device: (100 * 1024**2, "available host memory"))
    problem = memguard.preflight(build, spec)
    assert problem.startswith("pre-flight: needs at least ") and "100.00 MiB of available host memory" in problem
    monkeypatch.setattr(memguard, "available_bytes", lambda device: (64 * 1024**3, "available host memory"))
    assert memguard.preflight(build, spec) is None
    limited = spec.replace(measure=Measure(memory_limit=256 * 1024**2))
    assert "measure.memory_limit" in memguard.preflight(build, limited)


# ---------------------------------------------------------------------------------------------
# Real workers


@pytest.mark.slow
def test_a_case_that_cannot_fit_is_refused_before_it_is_built(tmp_path):
    big = CaseSpec(model="vgg16", batch_size=65_536, input_size=(3, 224, 224), measure=FAST)
    run = runner.run_worker(big, workdir=str(tmp_path))
    assert run["status"] == "oom" and run["error"].startswith("pre-flight: needs at least"), run
    assert run["error"].endswith("; not built") and "samples_ms" not in run  # refused before building


@pytest.mark.slow
def test_memory_limit_turns_a_runaway_case_into_oom(tmp_path):
    spec = CaseSpec(model="hog", batch_size=1, input_size=(1, 8, 8), source="faultmodels:hog",
                    model_kwargs=(("gib", 4),), measure=Measure(**{**FAST.to_dict(), "memory_limit": 1536 * 1024**2}))
    run = runner.run_worker(spec, workdir=str(tmp_path), extra_paths=[str(FIXTURES)])
    assert run["status"] == "oom", run
    free = spec.replace(model_kwargs=(("gib", 0),))
    assert runner.run_worker(free, workdir=str(tmp_path), extra_paths=[str(FIXTURES)])["status"] == "ok"


@pytest.mark.slow
def test_a_worker_killed_by_the_oom_killer_is_oom(tmp_path, monkeypatch):
    counts = iter([5, 6])  # the cgroup's oom_kill before and after the worker
    read = lambda *a: next(counts)  # noqa: E731
    monkeypatch.setattr(runner, "oom_kill_count", read)  # before: the name the runner imported
    monkeypatch.setattr(memguard, "oom_kill_count", read)  # after: read inside killed_by_oom_killer
    monkeypatch.setattr(memguard, "_kmsg_scan", lambda pid, kmsg="": (False, False))
    spec = CaseSpec(model="k", batch_size=1, input_size=(1, 8, 8), source="faultmodels:sigkill_self", measure=FAST)
    run = runner.run_worker(spec, workdir=str(tmp_path), extra_paths=[str(FIXTURES)])
    assert run["status"] == "oom" and run["signal"] == signal.SIGKILL
    assert run["error"] == "worker killed by the kernel OOM killer (cgroup memory.events oom_kill 5 -> 6)"


@pytest.mark.slow
@pytest.mark.measured
def test_a_worker_that_prints_64_mb_is_kept_as_a_short_tail(tmp_path):
    """The runner's memory is counted in Python allocations (tracemalloc, the log reader's thread
    included), not in the RSS, which the allocator and the rest of the process move: the reader
    keeps at most 2 x 64 KiB plus one 64 KiB read; the rest of the peak is the modules
    run_worker imports on first use (1.5 MB when none was imported yet). Holding an eighth of
    the log would pass the bound."""
    import tracemalloc

    spec = CaseSpec(model="c", batch_size=1, input_size=(1, 8, 8), source="faultmodels:chatty", measure=FAST)
    tracemalloc.start()
    try:
        run = runner.run_worker(spec, workdir=str(tmp_path), extra_paths=[str(FIXTURES)])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert run["status"] == "error" and "chatty model gave up" in run["error"]
    tail = run["stderr_tail"]
    assert tail.startswith("[last lines of ") and "the last line before the failure" in tail
    assert len(tail) < 8 * 1024 and peak < 64 * 10**6 // 8, (len(tail), peak)  # the model prints 64 MB
    assert list(tmp_path.iterdir()) == []  # no log file at all


def test_a_case_far_from_any_limit_is_not_traced(monkeypatch):
    """The meta-device trace costs 0.1-1 s: a case whose params plus a crude activation bound fit
    in half the budget is passed without it."""
    monkeypatch.setattr(memguard, "available_bytes", lambda device: (8 * 1024**3, "available host memory"))

    def build():
        raise RuntimeError("traced")

    small = CaseSpec(model="lenet5", batch_size=8, input_size=(1, 32, 32))
    assert memguard.preflight(build, small, params=61_706) is None
    huge = small.replace(batch_size=65_536, input_size=(3, 224, 224))
    calls = []
    assert memguard.preflight(lambda: calls.append(1) or build(), huge, params=61_706) is None  # traced; failed: silent
    assert calls == [1]


def test_a_cuda_case_without_a_gpu_is_unsupported_not_a_preflight_error(tmp_path):
    """The pre-flight asked CUDA for its free memory before the backend checked the device, so on
    a machine without a GPU a cuda case (suites/deploy.yaml's tensorrt ones) ended `error` with
    torch's "Found no NVIDIA driver"; the backend's own `unsupported` with the reason must win."""
    import torch

    from cnnbench.measure.worker import run_case
    from cnnbench.core.spec import CaseSpec, Measure
    from cnnbench.core.errors import Unsupported

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert memguard.available_bytes("cuda") == (None, "")
    spec = CaseSpec(model="lenet5", batch_size=1, input_size=(1, 32, 32), device="cuda",
                    measure=Measure(warmup=1, min_time_s=0.01, max_time_s=0.05, timeout_s=60))  # fmt: skip
    with pytest.raises(Unsupported):
        run_case(spec, workdir=str(tmp_path))
