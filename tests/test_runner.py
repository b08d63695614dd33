"""The runner: faults are data, results are saved after every case, interrupts lose nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from cnnbench.results.format import load_results, new_results
from cnnbench.run.runner import StopFlag, run_cases
from cnnbench.core.spec import CaseSpec, Measure

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def spec(model: str, batch: int = 1, repeats: int = 1) -> CaseSpec:
    return CaseSpec(model=model, batch_size=batch, input_size=(1, 8, 8), measure=Measure(repeats=repeats))


class Recorder:
    def __init__(self):
        self.events = []

    def start(self, total):
        self.events.append(("start", total))

    def case_started(self, spec, repeat):
        self.events.append(("started", spec.model, repeat))

    def case_finished(self, record, run):
        self.events.append(("finished", record["key"], run["status"]))

    def finish(self, results):
        self.events.append(("finish",))


def fake_worker(outcomes, out_path, seen_on_disk):
    """A worker stand-in: returns canned runs and checks what is on disk when each case starts."""

    def worker(spec, **kwargs):
        if out_path.exists():
            seen_on_disk.append(len(load_results(out_path)["cases"]))
        status = outcomes.get(spec.model, "ok")
        if status == "ok":
            return {"status": "ok", "error": None, "samples_ms": [1.0, 1.1, 0.9] * 5, "warmup_ms": [5.0], "first_call_ms": 9.0}
        return {"status": status, "error": f"{status} in {spec.model}"}

    return worker


def test_a_failing_case_leaves_the_others_recorded_and_each_is_saved_before_the_next(tmp_path):
    out = tmp_path / "r.json"
    results = new_results(environment={}, suite={"name": "t"})
    seen = []
    cases = [spec("a"), spec("b"), spec("c")]
    run_cases(cases, results=results, out_path=out, reporter=Recorder(),
              worker=fake_worker({"b": "crashed"}, out, seen))
    assert seen == [1, 2]  # the file held every finished case before the next one started
    loaded = load_results(out)
    assert [c["status"] for c in loaded["cases"]] == ["ok", "crashed", "ok"]
    assert loaded["cases"][1]["error"] == "crashed in b"
    assert loaded["cases"][0]["latency_ms"]["median"] == pytest.approx(1.0)


def test_repeats_are_interleaved_and_kept_apart(tmp_path):
    out = tmp_path / "r.json"
    rec = Recorder()
    results = new_results(environment={}, suite={"name": "t"})
    run_cases([spec("a", repeats=3), spec("b", repeats=3)], results=results, out_path=out, reporter=rec,
              worker=fake_worker({}, out, []))
    order = [(e[1], e[2]) for e in rec.events if e[0] == "started"]
    assert order == [("a", 0), ("b", 0), ("a", 1), ("b", 1), ("a", 2), ("b", 2)]
    case = load_results(out)["cases"][0]
    assert len(case["repeat_medians_ms"]) == 3 and len(case["runs"]) == 3
    assert len(case["samples_ms"]) == 3 * 15


def test_a_failed_case_is_not_repeated(tmp_path):
    out = tmp_path / "r.json"
    rec = Recorder()
    results = new_results(environment={}, suite={"name": "t"})
    run_cases([spec("a", repeats=2), spec("b", repeats=2)], results=results, out_path=out, reporter=rec,
              worker=fake_worker({"a": "timeout"}, out, []))
    assert [e[1] for e in rec.events if e[0] == "started"] == ["a", "b", "b"]


def test_stop_request_marks_the_in_flight_case_and_starts_nothing_else(tmp_path):
    out = tmp_path / "r.json"
    stop = StopFlag()
    results = new_results(environment={}, suite={"name": "t"})

    def worker(spec, **kwargs):
        if spec.model == "b":
            stop.handle(signal.SIGINT, None)  # Ctrl-C arrives while b runs
            return {"status": "interrupted", "error": "interrupted by the user (SIGINT)"}
        return {"status": "ok", "samples_ms": [1.0] * 10}

    state = run_cases([spec("a"), spec("b"), spec("c")], results=results, out_path=out,
                      reporter=Recorder(), stop=stop, worker=worker)
    assert state.interrupted
    assert [c["status"] for c in load_results(out)["cases"]] == ["ok", "interrupted"]


def test_second_sigint_raises_at_once():
    stop = StopFlag()
    stop.handle(signal.SIGINT, None)
    assert stop.requested
    with pytest.raises(KeyboardInterrupt):
        stop.handle(signal.SIGINT, None)


# --- What a failure becomes --------------------------------------------------------------------


def test_allocator_failures_are_oom_wherever_they_surface_and_nothing_else_is():
    import torch

    from cnnbench.measure.worker import classify_exception

    cuda_oom = torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    assert isinstance(cuda_oom, RuntimeError) and classify_exception(cuda_oom) == "oom"
    cpu = RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: not enough memory: you tried to allocate 8 GB")
    assert classify_exception(cpu) == "oom" and classify_exception(MemoryError()) == "oom"
    try:  # a wrapper (an exporter, a compiler) must not hide the allocator's error
        try:
            raise MemoryError("host")
        except MemoryError as inner:
            raise RuntimeError("backend failed while compiling") from inner
    except RuntimeError as wrapped:
        assert classify_exception(wrapped) == "oom"
    assert classify_exception(RuntimeError("shape mismatch")) == "error"
    assert classify_exception(ValueError("bad value")) == "error"


def test_cuda_on_a_machine_without_it_is_unsupported_with_the_reason():
    import torch

    from cnnbench.backends import get_backend
    from cnnbench.backends.common import example_batch
    from cnnbench.core.errors import Unsupported
    from cnnbench.models.registry import build_model

    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    spec = CaseSpec(model="lenet5", batch_size=1, input_size=(1, 32, 32), device="cuda")
    for backend in ("eager", "compile", "onnxrt"):
        with pytest.raises(Unsupported, match="CUDA is not available"):
            get_backend(backend).prepare(build_model("lenet5"), example_batch(spec.replace(device="cpu")),
                                         spec.replace(backend=backend), workdir="/nonexistent")  # fmt: skip


# --- End to end: real worker processes -------------------------------------------------------

FAULT_SUITE = """
name: faults
matrices:
  - models:
      - {name: tiny, import: "usermodels:tiny", input_size: [1, 8, 8]}
      - {name: killer, import: "usermodels:killer", input_size: [1, 8, 8]}
      - {name: raiser, import: "usermodels:raiser", input_size: [1, 8, 8]}
      - {name: oom, import: "usermodels:oom", input_size: [1, 8, 8]}
      - lenet5
    batch_sizes: [2]
    measure: {warmup: 1, min_time_s: 0.05, max_time_s: 0.3, timeout_s: 120, repeats: 1}
  - models:
      - {name: hanger, import: "usermodels:hanger", input_size: [1, 8, 8]}
    batch_sizes: [1]
    measure: {warmup: 1, min_time_s: 0.05, max_time_s: 0.3, timeout_s: 12, repeats: 1}
"""


def _write_suite(tmp_path: Path, text: str) -> Path:
    (tmp_path / "usermodels.py").write_text((FIXTURES / "usermodels.py").read_text())
    path = tmp_path / "suite.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def _bench(*args, cwd, env=None, **kw):
    """Run bench.py with TMPDIR inside the test's directory, so its workers are recognisable."""
    env = {**os.environ, "TMPDIR": str(cwd), **(env or {})}
    return subprocess.run([sys.executable, str(ROOT / "bench.py"), *args], cwd=cwd, capture_output=True,
                          text=True, env=env, **kw)


def _worker_processes(tmp_path):
    """Workers started by this test's run (their spec file lies under its TMPDIR); other jobs'
    workers on a shared machine are not this test's business."""
    found = []
    for p in psutil.process_iter(["cmdline"]):
        cmd = p.info.get("cmdline") or []
        if "cnnbench.measure.worker" in cmd and any(str(tmp_path) in part for part in cmd):
            found.append(p)
    return found


@pytest.mark.slow
def test_faulty_models_are_recorded_and_the_suite_finishes(tmp_path):
    suite = _write_suite(tmp_path, FAULT_SUITE)
    out = tmp_path / "faults.json"
    proc = _bench("run", str(suite), "--out", str(out), "--quiet", cwd=tmp_path, timeout=600)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    by_model = {c["spec"]["model"]: c for c in load_results(out)["cases"]}
    assert by_model["tiny"]["status"] == "ok" and by_model["lenet5"]["status"] == "ok"
    assert by_model["killer"]["status"] == "crashed"
    assert "SIGKILL" in by_model["killer"]["error"]
    assert by_model["raiser"]["status"] == "error"
    assert "refuses to build" in by_model["raiser"]["error"]
    assert by_model["oom"]["status"] == "oom"
    assert by_model["hanger"]["status"] == "timeout"
    hang_run = by_model["hanger"]["runs"][0]  # ended by the runner's deadline, whatever the load
    assert hang_run["status"] == "timeout" and hang_run["error"] == "worker killed after the 12 s timeout"
    assert not _worker_processes(tmp_path), "a worker outlived the run"
    # the table was printed with every case
    for name in ("tiny", "killer", "raiser", "oom", "hanger", "lenet5"):
        assert name in proc.stdout


@pytest.mark.slow
def test_sigint_mid_suite_leaves_a_loadable_file_with_every_completed_case(tmp_path):
    suite = _write_suite(tmp_path, """
        name: interrupt
        models: [lenet5, mnist_cnn_bn, mnist_cnn, mnist_fcn]
        batch_sizes: [1, 2]
        measure: {warmup: 1, min_time_s: 0.2, max_time_s: 0.5, timeout_s: 120}
    """)
    out = tmp_path / "int.json"
    proc = subprocess.Popen([sys.executable, str(ROOT / "bench.py"), "run", str(suite), "--out", str(out), "--quiet"],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "TMPDIR": str(tmp_path)})
    while not (out.exists() and len(load_results(out)["cases"]) >= 2):  # the event: two cases on disk
        if proc.poll() is not None:  # no wall-clock limit: the run's own timeouts end it
            pytest.fail(f"the run ended before two cases were on disk: {proc.communicate()}")
        time.sleep(0.2)  # how often to look, not a synchronisation
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stdout + stderr
    cases = load_results(out)["cases"]
    assert len(cases) >= 2
    statuses = [c["status"] for c in cases]
    assert all(s == "ok" for s in statuses[:-1])
    assert statuses[-1] in ("ok", "interrupted")
    assert len(cases) < 8
    assert not _worker_processes(tmp_path)


@pytest.mark.slow
def test_cli_run_of_a_tiny_suite_writes_the_contract_fields(tmp_path):
    suite = _write_suite(tmp_path, """
        name: tiny
        models: [lenet5]
        batch_sizes: [4]
        threads: 1
        measure: {warmup: 2, min_time_s: 0.2, max_time_s: 1, timeout_s: 120}
    """)
    out = tmp_path / "tiny.json"
    proc = _bench("run", str(suite), "--out", str(out), cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "median ms ± IQR" in proc.stdout and "more columns: --wide" in proc.stdout  # the compact table
    wide = _bench("show", str(out), "--wide", cwd=tmp_path, timeout=120)
    assert wide.returncode == 0 and "multiply-accumulates" in wide.stdout and "lenet5" in wide.stdout
    data = json.loads(out.read_text())
    assert isinstance(data["schema_version"], int)
    assert {"environment", "suite", "cases"} <= data.keys()
    case = data["cases"][0]
    for field in ("key", "spec", "status", "error", "params", "trainable_params", "gmacs", "gflops",
                  "first_call_ms", "warmup_ms", "samples_ms", "latency_ms", "throughput_per_s", "warnings"):
        assert field in case, field
    for field in ("model", "batch_size", "backend", "precision", "input_size", "device", "threads"):
        assert field in case["spec"], field
    assert set(case["latency_ms"]) >= {"median", "mean", "std", "iqr", "min", "p90", "p99"}
    assert case["status"] == "ok"
    assert case["params"] == 61_706
    assert case["gflops"] == pytest.approx(2 * case["gmacs"])
    assert case["spec"]["threads"] == 1 and case["runs"][0]["threads_used"] == 1
    # the default: several processes per case (processes.DEFAULT_PROCESSES), sharing the case's time
    from cnnbench.stats.processes import DEFAULT_PROCESSES

    assert len(case["runs"]) == case["processes"]["n"] == DEFAULT_PROCESSES
    assert case["spec"]["measure"]["max_time_s"] == pytest.approx(1 / DEFAULT_PROCESSES)
    assert case["throughput_per_s"] == pytest.approx(4 / (case["latency_ms"]["median"] / 1000))
    # the results file refuses to be overwritten by accident
    again = _bench("run", str(suite), "--out", str(out), cwd=tmp_path, timeout=60)
    assert again.returncode == 2 and "--replace" in again.stderr
