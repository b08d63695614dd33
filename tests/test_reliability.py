"""Reliability, proven by injecting the faults: a killed or hung worker, Ctrl-C at random points,
a disk that fills up during a save, out of memory, a corrupt or foreign results file, a second
run on the same file, resume.

The fast tests drive `run_cases` and the `run` command in-process with a stand-in for the worker;
the slow ones start real `bench.py run` processes on tiny suites (a worker costs ~3-4 s of torch
import, so each suite is as short as the property allows). Randomness is seeded.
"""

from __future__ import annotations

import errno
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import psutil
import pytest

from cnnbench.run import runner
from cnnbench.cli import main
from cnnbench.results.lock import results_lock
from cnnbench.report.console import table_rows
from cnnbench.core.errors import ResultsFileError
from cnnbench.results.schema import SCHEMA_VERSION, _MIGRATIONS
from cnnbench.results.format import build_record, load_results, new_results, write_results
from cnnbench.run.runner import StopFlag, run_cases
from cnnbench.core.spec import CaseSpec, Measure

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
DATA = Path(__file__).resolve().parent / "data" / "reliability"
MEASURE = "measure: {warmup: 1, min_time_s: 0.05, max_time_s: 0.2, timeout_s: 60, repeats: 1}"  # one process per case


# ---------------------------------------------------------------------------------------------
# Helpers


class Quiet:
    def start(self, total): ...
    def case_started(self, spec, repeat): ...
    def case_finished(self, record, run): ...
    def finish(self, results): ...


def ok_run(samples_ms: float = 2.0) -> dict:
    return {"status": "ok", "error": None, "samples_ms": [samples_ms] * 20, "warmup_ms": [5.0], "first_call_ms": 9.0}


def spec(model: str = "m", batch: int = 1, repeats: int = 1) -> CaseSpec:
    return CaseSpec(model=model, batch_size=batch, input_size=(1, 8, 8), measure=Measure(repeats=repeats))


def fake_memory_worker(limit: int, calls: list):
    """A worker stand-in for a model that fits up to `limit` images; `raiser` always errors."""

    def worker(spec, **kwargs):
        calls.append((spec.model, spec.batch_size))
        if spec.model == "raiser":
            return {"status": "error", "error": "RuntimeError: not a memory problem"}
        if spec.batch_size > limit:
            return {"status": "oom", "error": f"MemoryError: batch {spec.batch_size}"}
        return ok_run()

    return worker


def write_suite(directory: Path, text: str, name: str = "suite.yaml") -> Path:
    shutil.copy(FIXTURES / "faultmodels.py", directory / "faultmodels.py")
    path = directory / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def leftovers(directory: Path) -> list[str]:
    """Temporary or lock files a run must not leave beside its results."""
    return sorted(p.name for p in directory.iterdir() if p.name.endswith((".tmp", ".lock")))


class FaultyOS:
    """The `os` module as `cnnbench.core.safeio` (every write) sees it, with one call failing: the `nth` call of
    `name` raises OSError(`err`). A failing `write` first writes part of its data, as a disk
    that fills up does; a failing `close` does close the descriptor first, as NFS does."""

    def __init__(self, name: str, nth: int, err: int = errno.ENOSPC):
        self.name, self.nth, self.err, self.calls = name, nth, err, 0

    def __getattr__(self, attr):
        real = getattr(os, attr)
        if attr != self.name:
            return real

        def faulty(*args, **kwargs):
            self.calls += 1
            if self.calls != self.nth:
                return real(*args, **kwargs)
            if attr == "write":
                real(args[0], bytes(args[1][: max(1, len(args[1]) // 3)]))
            elif attr == "close":
                real(*args)
            raise OSError(self.err, os.strerror(self.err))

        return faulty


# ---------------------------------------------------------------------------------------------
# Schema: migration per version, newer refused, corrupt refused


def test_every_older_schema_version_has_a_migration_step():
    assert SCHEMA_VERSION == 2
    assert sorted(_MIGRATIONS) == list(range(1, SCHEMA_VERSION))


def test_a_real_v1_file_migrates_to_v2(tmp_path):
    """tests/data/reliability/v1_results.json was written by cnnbench at schema 1 (an ok lenet5
    case and an oom case); loading it gives today's records and leaves the file alone."""
    path = tmp_path / "v1.json"
    shutil.copy(DATA / "v1_results.json", path)
    before = path.read_bytes()
    assert json.loads(before)["schema_version"] == 1

    data = load_results(path)
    assert data["schema_version"] == 2
    ok, oom = data["cases"]
    assert ok["status"] == "ok" and ok["measured_batch_size"] == ok["spec"]["batch_size"] == 2
    assert oom["status"] == "oom" and oom["measured_batch_size"] is None
    assert ok["batch_attempts"] == [] and oom["batch_attempts"] == []
    assert table_rows(data["cases"])[0].case.batch_label == "2"  # not "2 (of 2)"
    assert path.read_bytes() == before  # loading never rewrites


def test_v1_to_v2_leaves_records_it_cannot_read_for_the_reader_to_report(tmp_path):
    from cnnbench.results.schema import migrate

    data = {"schema_version": 1, "cases": [7, {"key": "x"}, {"key": "y", "status": "ok"}]}
    cases = migrate(data, "odd.json")["cases"]
    assert cases[0] == 7
    assert cases[1]["measured_batch_size"] is None and cases[2]["measured_batch_size"] is None
    path = tmp_path / "odd.json"
    path.write_text(json.dumps({"schema_version": 1, "cases": [7]}))
    with pytest.raises(ResultsFileError, match=r"odd.json: case 0: expected a mapping"):
        load_results(path)  # ... and the reader refuses it, naming the case


def test_a_newer_schema_is_refused_with_upgrade(tmp_path):
    path = tmp_path / "new.json"
    path.write_text(json.dumps({"schema_version": SCHEMA_VERSION + 1, "cases": []}))
    with pytest.raises(ResultsFileError, match="upgrade cnnbench") as info:
        load_results(path)
    assert str(path) in str(info.value)


def _corruptions(good: bytes) -> list[tuple[str, bytes]]:
    rng = random.Random(7)
    out = [(f"truncated at {n}", good[:n]) for n in sorted(rng.sample(range(1, len(good) - 2), 12))]
    flipped = bytearray(good)
    for i in rng.sample(range(len(good)), 40):
        flipped[i] = rng.randrange(256)
    return out + [
        ("empty", b""),
        ("bit rot", bytes(flipped)),
        ("zeros", b"\0" * 4096),
        ("not utf-8", good[:100] + b"\xff\xfe" + good[102:]),
        ("a list", b"[1, 2, 3]"),
        ("schema as text", json.dumps({"schema_version": "2", "cases": []}).encode()),
        ("schema 0", json.dumps({"schema_version": 0, "cases": []}).encode()),
        ("cases not a list", json.dumps({"schema_version": 2, "cases": {}}).encode()),
        ("no cases", json.dumps({"schema_version": 2}).encode()),
    ]


def test_truncated_or_corrupted_files_give_a_clear_error(tmp_path):
    good = (DATA / "v1_results.json").read_bytes()
    for what, content in _corruptions(good):
        path = tmp_path / "r.json"
        path.write_bytes(content)
        with pytest.raises(ResultsFileError) as info:
            load_results(path)
        message = str(info.value)
        assert message.startswith(f"{path}: ") and "\n" not in message, (what, message)


# ---------------------------------------------------------------------------------------------
# Writes that fail: 100 faults injected into the save, the previous file intact every time

_FAULT_POINTS = ["open", "fchmod", "write", "fsync", "close", "replace"]


def test_a_failing_write_leaves_the_previous_file_intact_100_of_100(tmp_path, monkeypatch):
    import cnnbench.core.safeio as results_mod

    path = tmp_path / "r.json"
    results = new_results(environment={"host": "x"}, suite={"name": "t"})
    for i in range(60):  # ~300 KB, so a write takes several chunks and can fail between them
        results["cases"].append(build_record(spec(f"case{i}"), [{**ok_run(), "samples_ms": [1.0 + i / 7] * 400}]))
    write_results(path, results)
    os.chmod(path, 0o640)
    previous = path.read_bytes()
    results["cases"].append(build_record(spec("new"), [{**ok_run(), "samples_ms": [2.0] * 400}]))
    chunks = -(-len(json.dumps(results, indent=1).encode()) // results_mod._CHUNK)
    assert chunks >= 4

    rng = random.Random(2024)
    intact = 0
    injected: dict[str, int] = {}
    for _ in range(100):
        point = rng.choice(_FAULT_POINTS)
        err = rng.choice([errno.ENOSPC, errno.ENOSPC, errno.EACCES, errno.EIO, errno.EDQUOT])
        nth = rng.randint(1, chunks) if point == "write" else 1
        monkeypatch.setattr(results_mod, "os", FaultyOS(point, nth, err))
        with pytest.raises(ResultsFileError) as info:
            write_results(path, results)
        monkeypatch.undo()
        message = str(info.value)
        assert message.startswith(f"{path}: cannot write results (") and os.strerror(err) in message
        assert path.read_bytes() == previous, point
        assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"], point  # no temporary left
        intact += 1
        injected[point] = injected.get(point, 0) + 1
    assert intact == 100 and set(injected) == set(_FAULT_POINTS)

    write_results(path, results)  # and once the disk has room again, the save goes through
    assert len(load_results(path)["cases"]) == 61
    assert os.stat(path).st_mode & 0o777 == 0o640  # permissions kept, not mkstemp's 0600


def test_a_new_results_file_gets_the_umask_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        write_results(tmp_path / "r.json", new_results(environment={}, suite={}))
    finally:
        os.umask(old)
    assert os.stat(tmp_path / "r.json").st_mode & 0o777 == 0o644


# ---------------------------------------------------------------------------------------------
# OOM retry (runner logic with a stand-in worker)


def test_oom_without_retry_is_recorded_as_oom(tmp_path):
    calls: list = []
    results = new_results(environment={}, suite={})
    run_cases([spec("m", 32)], results=results, out_path=tmp_path / "r.json", reporter=Quiet(),
              worker=fake_memory_worker(4, calls))
    (record,) = results["cases"]
    assert calls == [("m", 32)]
    assert record["status"] == "oom" and record["measured_batch_size"] is None and record["batch_attempts"] == []


def test_oom_retry_halves_until_it_fits_and_says_so(tmp_path):
    calls: list = []
    out = tmp_path / "r.json"
    results = new_results(environment={}, suite={})
    run_cases([spec("m", 32, repeats=3)], results=results, out_path=out, reporter=Quiet(),
              worker=fake_memory_worker(4, calls), oom_retry=True)
    assert calls == [("m", 32), ("m", 16), ("m", 8), ("m", 4), ("m", 4), ("m", 4)]  # repeats reuse the fit
    (record,) = load_results(out)["cases"]
    assert record["key"] == spec("m", 32).key and record["spec"]["batch_size"] == 32
    assert record["status"] == "ok" and record["measured_batch_size"] == 4
    assert [(a["batch_size"], a["status"]) for a in record["batch_attempts"]] == [
        (32, "oom"), (16, "oom"), (8, "oom"), (4, "ok")]  # fmt: skip
    assert record["throughput_per_s"] == pytest.approx(4 / 0.002)  # the measured batch, not 32
    assert any("measured at batch 4" in w and "of memory at batch 32" in w for w in record["warnings"])
    assert table_rows([record])[0].case.batch_label == "4 (of 32)"


def test_oom_retry_gives_up_after_batch_1_and_retries_nothing_else(tmp_path):
    calls: list = []
    results = new_results(environment={}, suite={})
    run_cases([spec("m", 6), spec("raiser", 8)], results=results, out_path=tmp_path / "r.json",
              reporter=Quiet(), worker=fake_memory_worker(0, calls), oom_retry=True)
    assert calls == [("m", 6), ("m", 3), ("m", 1), ("raiser", 8)]
    never, raiser = results["cases"]
    assert never["status"] == "oom" and never["measured_batch_size"] is None
    assert [a["batch_size"] for a in never["batch_attempts"]] == [6, 3, 1]
    assert any("no batch that fits" in w for w in never["warnings"])
    assert raiser["status"] == "error" and raiser["batch_attempts"] == []
    assert table_rows(results["cases"])[0].case.batch_label == "6"


def test_a_stop_during_oom_retry_starts_no_further_attempt(tmp_path):
    stop = StopFlag()
    calls: list = []
    inner = fake_memory_worker(1, calls)

    def worker(spec, **kwargs):
        run = inner(spec, **kwargs)
        stop.handle(signal.SIGINT, None)  # Ctrl-C during the first attempt
        return run

    results = new_results(environment={}, suite={})
    state = run_cases([spec("m", 8), spec("n", 1)], results=results, out_path=tmp_path / "r.json",
                      reporter=Quiet(), worker=worker, stop=stop, oom_retry=True)
    assert calls == [("m", 8)] and state.interrupted
    assert results["cases"][0]["status"] == "oom"


def test_a_second_ctrl_c_waits_for_a_deferred_block():
    stop = StopFlag()
    stop.handle(signal.SIGINT, None)
    done = []
    with pytest.raises(KeyboardInterrupt):
        with stop.deferred():
            stop.handle(signal.SIGINT, None)  # would raise here, mid-save
            done.append("saved")
    assert done == ["saved"]


# ---------------------------------------------------------------------------------------------
# The run command in-process, with a stand-in worker


FAST_SUITE = f"""
name: fast
models: [lenet5]
batch_sizes: [1, 2, 4]
{MEASURE}
"""


class Calls(list):
    """The case keys a stand-in worker was asked for; the run's peak GEMM (no case) apart."""

    peak: list


@pytest.fixture
def stand_in(monkeypatch):
    """Replace the worker process with a function; returns the case keys it was asked for, with
    the keys of the run's peak GEMM measurement in `.peak`."""
    calls = Calls()
    calls.peak = []

    def worker(spec, **kwargs):
        (calls.peak if spec.model == "peak-gemm" else calls).append(spec.key)
        return ok_run()

    monkeypatch.setattr(runner, "run_worker", worker)
    return calls


def _run_cli(*args) -> int:
    return main(["run", *map(str, args), "--quiet"])


def test_a_write_failure_mid_run_stops_with_exit_2_and_says_what_is_on_disk(tmp_path, monkeypatch, capsys, stand_in):
    import cnnbench.core.safeio as results_mod

    suite = write_suite(tmp_path, FAST_SUITE)
    out = tmp_path / "r.json"
    # saves: 1 the empty file before measuring, 2 the peak GFLOP/s, 3 after case b1, 4 after b2 (fails)
    monkeypatch.setattr(results_mod, "os", FaultyOS("replace", 4))
    assert _run_cli(suite, "--out", out) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: {out}: cannot write results (No space left on device)")
    assert "with 1 case(s)" in err and "|b2|" in err and "not saved" in err
    assert [c["spec"]["batch_size"] for c in load_results(out)["cases"]] == [1]
    assert leftovers(tmp_path) == []  # no temporary file, lock released
    assert len(stand_in) == 2  # the run stopped: b4 never started


def test_a_first_write_failure_measures_nothing(tmp_path, monkeypatch, capsys, stand_in):
    import cnnbench.core.safeio as results_mod

    suite = write_suite(tmp_path, FAST_SUITE)
    monkeypatch.setattr(results_mod, "os", FaultyOS("fsync", 1, errno.EACCES))
    assert _run_cli(suite, "--out", tmp_path / "r.json") == 2
    err = capsys.readouterr().err
    assert "Permission denied" in err and "nothing was measured" in err and err.count("\n") == 1
    assert stand_in == [] and not (tmp_path / "r.json").exists() and leftovers(tmp_path) == []


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_a_signal_mid_run_stops_cleanly_with_128_plus_the_signal(tmp_path, monkeypatch, sig):
    """The signal lands while the second case's worker runs (the stand-in sends it itself):
    that case is recorded `interrupted`, nothing else starts, the file loads, no lock is left."""
    suite = write_suite(tmp_path, FAST_SUITE)
    out = tmp_path / "r.json"
    calls = []

    def worker(spec, *, stop=None, **kwargs):
        if spec.model == "peak-gemm":
            return ok_run()
        calls.append(spec.key)
        if len(calls) == 2:
            os.kill(os.getpid(), sig)  # delivered before kill() returns, in the main thread
            assert stop is not None and stop.requested
            return {"status": "interrupted", "error": stop.reason}
        return ok_run()

    monkeypatch.setattr(runner, "run_worker", worker)
    assert _run_cli(suite, "--out", out) == 128 + sig
    cases = load_results(out)["cases"]
    assert [c["status"] for c in cases] == ["ok", "interrupted"] and len(calls) == 2
    assert signal.Signals(sig).name in cases[1]["error"]
    assert leftovers(tmp_path) == [] and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # restored


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_second_signal_still_marks_and_saves_the_in_flight_case(tmp_path, monkeypatch, sig):
    suite = write_suite(tmp_path, FAST_SUITE)
    out = tmp_path / "r.json"

    def worker(spec, *, stop=None, **kwargs):
        if spec.model == "peak-gemm" or spec.batch_size == 1:
            return ok_run()
        os.kill(os.getpid(), sig)  # the first: a clean stop is requested
        os.kill(os.getpid(), sig)  # the second ends at once, here, inside the worker's wait
        raise AssertionError("not reached")

    monkeypatch.setattr(runner, "run_worker", worker)
    assert _run_cli(suite, "--out", out) == 128 + sig
    cases = load_results(out)["cases"]
    assert [c["status"] for c in cases] == ["ok", "interrupted"] and "twice" in cases[1]["error"]
    assert leftovers(tmp_path) == []


def test_an_error_that_follows_a_signal_is_the_signals_exit_not_a_traceback(monkeypatch, capsys):
    """Seen under load: a Ctrl-C landing inside numpy's import left it half-initialised, the
    next import raised "cannot load module more than once per process" and the command died with
    a traceback and exit 1. Any error once a stop signal has arrived ends as that signal: 130."""
    from cnnbench.commands import list as list_cmd

    def run(args):
        try:
            os.kill(os.getpid(), signal.SIGINT)  # Interrupted, raised here by cnnbench.run.signals ...
        except KeyboardInterrupt:
            pass  # ... and swallowed, as an import machinery's cleanup may do
        raise ImportError("cannot load module more than once per process")

    monkeypatch.setattr(list_cmd, "run", run)
    assert main(["list", "models"]) == 130
    assert "interrupted" in capsys.readouterr().err
    # Without a signal the same error is a real bug and is raised as such.
    monkeypatch.setattr(list_cmd, "run", lambda args: (_ for _ in ()).throw(ImportError("real")))
    with pytest.raises(ImportError):
        main(["list", "models"])


_IMPORTER = """
import os, pathlib, sys
sys.path[:0] = [{root!r}, {here!r}]
from cnnbench.run import signals
signals.PATIENCE_S = {patience}

def main():
    import slowimport  # the signal lands in here
    while True:  # after the import: where the pending Interrupted must be raised
        pass

signals.entry(main)
"""

_SLOW_MODULE = """
import os, pathlib
from cnnbench.run import signals
marks = pathlib.Path(os.environ["MARKS"])
(marks / "started").touch()
while signals.received() is None:  # until the test's SIGTERM has reached the handler
    pass
(marks / "seen").touch()
while {hang}:
    pass
(marks / "finished").touch()
"""


def _start_importer(tmp_path: Path, hang: bool, patience: float = 30.0) -> subprocess.Popen:
    (tmp_path / "slowimport.py").write_text(_SLOW_MODULE.format(hang=hang))
    (tmp_path / "importer.py").write_text(_IMPORTER.format(root=str(ROOT), here=str(tmp_path), patience=patience))
    proc = subprocess.Popen([sys.executable, str(tmp_path / "importer.py")], env={**os.environ, "MARKS": str(tmp_path)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert wait_for(lambda: (tmp_path / "started").exists() or proc.poll() is not None, 120), proc.communicate()
    return proc


def test_a_signal_inside_an_import_waits_for_its_end(tmp_path):
    """Found by CI: a SIGTERM inside torch's import raised Interrupted in Python code that C++
    had called, and the process aborted (`terminate called after throwing ...
    error_already_set`, exit -6) instead of ending with 143. The signal is recorded at once,
    the import runs to its end, and Interrupted is raised right after it."""
    proc = _start_importer(tmp_path, hang=False)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert (tmp_path / "finished").exists(), "the import was cut in two"


def test_a_hung_import_still_ends_on_a_second_signal_or_after_the_patience(tmp_path):
    """An import that never ends (a user's module waiting on something) is not waited for
    forever: Ctrl-C pressed again a second later ends it, and so does the patience timer."""
    from cnnbench.run import signals

    (tmp_path / "again").mkdir()
    proc = _start_importer(tmp_path / "again", hang=True)
    proc.send_signal(signal.SIGINT)
    assert wait_for(lambda: (tmp_path / "again" / "seen").exists() or proc.poll() is not None, 120)
    assert proc.poll() is None, "the first signal did not wait for the import"
    time.sleep(signals.AGAIN_S + 0.1)  # the condition under test: a second press, a while later
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err

    (tmp_path / "patience").mkdir()
    proc = _start_importer(tmp_path / "patience", hang=True, patience=0.3)
    proc.send_signal(signal.SIGHUP)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 129, err
    assert (tmp_path / "patience" / "seen").exists() and not (tmp_path / "patience" / "finished").exists()


def test_stopflags_second_signal_inside_an_import_is_pending_not_raised(tmp_path, monkeypatch):
    """During a run the second signal ends it at once, except inside an import (see above)."""
    from cnnbench.run import signals

    (tmp_path / "frameholder.py").write_text("import sys\nFRAME = sys._getframe()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import frameholder  # a real frame that ran inside an import

    assert signals.in_import(frameholder.FRAME) and not signals.in_import(sys._getframe())
    monkeypatch.setattr(signals, "RECHECK_S", 60.0)  # the timer must not fire inside this test
    stop = StopFlag()
    try:
        stop.handle(signal.SIGTERM, frameholder.FRAME)
        stop.handle(signal.SIGTERM, frameholder.FRAME)
        assert stop.count == 2 and signals.pending() == signal.SIGTERM
        with pytest.raises(signals.Interrupted) as raised:  # the next one outside an import raises
            stop.handle(signal.SIGTERM, sys._getframe())
        assert raised.value.signum == signal.SIGTERM and signals.pending() is None
    finally:
        signals.disarm()
        signals.reset()


@pytest.mark.parametrize("quiet", [True, False])
def test_ctrl_c_while_the_table_prints_gives_130(tmp_path, monkeypatch, stand_in, quiet):
    """The run is over and its handler gone; a Ctrl-C while the final table is rendered is the
    command's interruption (130), never a traceback or a death by SIGINT."""
    import cnnbench.commands.run as run_command
    import cnnbench.report.console as console

    suite = write_suite(tmp_path, FAST_SUITE)
    real = run_command.render_table

    def render(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)
        return real(*args, **kwargs)

    monkeypatch.setattr(console, "render_table", render)  # the live reporter's final table
    monkeypatch.setattr(run_command, "render_table", render)  # --quiet's, by the name `run` imported
    args = ["run", str(suite), "--out", str(tmp_path / "r.json")] + (["--quiet"] if quiet else [])
    assert main(args) == 130
    assert len(load_results(tmp_path / "r.json")["cases"]) == 3 and leftovers(tmp_path) == []


def test_an_existing_file_is_never_overwritten_without_replace_or_resume(tmp_path, capsys, stand_in):
    suite = write_suite(tmp_path, FAST_SUITE)
    out = tmp_path / "r.json"
    out.write_text("my notes, not results")
    assert _run_cli(suite, "--out", out) == 2
    assert "exists; pass --replace" in capsys.readouterr().err
    assert _run_cli(suite, "--out", out, "--replace") == 2  # not even with --replace: not a results file
    assert "not valid JSON" in capsys.readouterr().err
    assert out.read_text() == "my notes, not results" and stand_in == [] and leftovers(tmp_path) == []


@pytest.mark.parametrize("flag", ["--resume", "--replace"])
def test_resume_or_replace_of_a_corrupt_file_refuses_and_leaves_it(tmp_path, capsys, stand_in, flag):
    suite = write_suite(tmp_path, FAST_SUITE)
    out = tmp_path / "r.json"
    good = (DATA / "v1_results.json").read_bytes()
    for what, content in _corruptions(good)[:8] + [("newer", json.dumps({"schema_version": 99, "cases": []}).encode())]:
        out.write_bytes(content)
        assert _run_cli(suite, "--out", out, flag) == 2, what
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and str(out) in err and "left untouched" in err, (what, err)
        assert out.read_bytes() == content, what
    assert stand_in == [] and leftovers(tmp_path) == []


def test_resume_refuses_records_without_key_or_status(tmp_path, capsys, stand_in):
    suite = write_suite(tmp_path, FAST_SUITE)
    out = tmp_path / "r.json"
    out.write_text(json.dumps({"schema_version": 2, "environment": {}, "cases": [{"spec": {}}]}))
    assert _run_cli(suite, "--out", out, "--resume") == 2
    assert "case 0: key: missing" in capsys.readouterr().err


def test_a_second_run_on_a_locked_file_is_refused(tmp_path, capsys, stand_in):
    suite = write_suite(tmp_path, FAST_SUITE)
    out = tmp_path / "r.json"
    write_results(out, new_results(environment={}, suite={}))
    before = out.read_bytes()
    with results_lock(out):
        for flag in ("--replace", "--resume"):
            assert _run_cli(suite, "--out", out, flag) == 2
            err = capsys.readouterr().err
            assert "another run is writing this file" in err and f"pid {os.getpid()}" in err
    assert out.read_bytes() == before and stand_in == [] and leftovers(tmp_path) == []


def test_a_lock_file_left_by_a_killed_run_does_not_block(tmp_path, stand_in):
    suite = write_suite(tmp_path, FAST_SUITE)
    out = tmp_path / "r.json"
    (tmp_path / "r.json.lock").write_text("host elsewhere pid 99999999")  # nobody holds it
    assert _run_cli(suite, "--out", out) == 0
    assert len(load_results(out)["cases"]) == 3 and leftovers(tmp_path) == []


def test_resume_runs_only_what_is_missing_and_follows_the_suite_by_key(tmp_path, capsys, stand_in):
    out = tmp_path / "r.json"
    first = write_suite(tmp_path, FAST_SUITE.replace("[1, 2, 4]", "[1, 2]"), "first.yaml")
    assert _run_cli(first, "--out", out) == 0
    before = {c["key"]: c for c in load_results(out)["cases"]}
    assert len(stand_in) == 2 and len(stand_in.peak) == 1
    assert load_results(out)["environment"]["peak_gflops"] > 0

    more = write_suite(tmp_path, FAST_SUITE, "more.yaml")  # one extra case
    stand_in.clear()
    assert _run_cli(more, "--out", out, "--resume") == 2  # an edited suite: its sha256 differs
    assert "written for another suite (suite sha256" in capsys.readouterr().err and stand_in == []
    assert _run_cli(more, "--out", out, "--resume", "--force") == 0
    assert [k.split("|")[4] for k in stand_in] == ["b4"]  # only the new case ran
    assert len(stand_in.peak) == 1  # the file's peak is kept, not measured again
    after = {c["key"]: c for c in load_results(out)["cases"]}
    assert len(after) == 3 and all(after[k] == before[k] for k in before)  # the others untouched
    assert "2 case(s) already ok" in capsys.readouterr().out

    changed = write_suite(tmp_path, FAST_SUITE.replace("[1, 2, 4]", "[2, 8]"), "changed.yaml")
    stand_in.clear()
    assert _run_cli(changed, "--out", out, "--resume", "--force") == 0
    assert [k.split("|")[4] for k in stand_in] == ["b8"]
    assert "2 record(s) no longer in the suite dropped" in capsys.readouterr().out
    assert sorted(c["spec"]["batch_size"] for c in load_results(out)["cases"]) == [2, 8]


@pytest.mark.parametrize("flag", ["--resume", "--replace"])
def test_resume_or_replace_refuse_another_suites_file_unless_force(tmp_path, capsys, stand_in, flag):
    """`--resume` on another suite's file used to drop its records and relabel it, exit 0."""
    out = tmp_path / "r.json"
    mine = write_suite(tmp_path, FAST_SUITE, "mine.yaml")
    theirs = write_suite(tmp_path, FAST_SUITE.replace("name: fast", "name: theirs"), "theirs.yaml")
    assert _run_cli(theirs, "--out", out) == 0
    before = out.read_bytes()
    stand_in.clear()
    assert _run_cli(mine, "--out", out, flag) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "written for another suite (suite name 'theirs'" in err and "--force" in err
    assert out.read_bytes() == before and stand_in == [] and leftovers(tmp_path) == []
    assert _run_cli(mine, "--out", out, flag, "--force") == 0
    assert load_results(out)["suite"]["name"] == "fast"


def test_resume_reruns_cases_that_failed_or_were_interrupted(tmp_path, monkeypatch, stand_in):
    suite = write_suite(tmp_path, FAST_SUITE)
    out = tmp_path / "r.json"
    assert _run_cli(suite, "--out", out) == 0
    data = load_results(out)
    data["cases"][1]["status"] = "interrupted"
    data["cases"][2]["status"] = "crashed"
    write_results(out, data)
    stand_in.clear()
    assert _run_cli(suite, "--out", out, "--resume") == 0
    assert [k.split("|")[4] for k in stand_in] == ["b2", "b4"]


def test_resume_migrates_a_v1_file_and_saves_it_as_v2(tmp_path, stand_in):
    out = tmp_path / "r.json"
    v1 = json.loads((DATA / "v1_results.json").read_text())
    from cnnbench.core.environment import collect_environment

    v1["environment"] = collect_environment()  # as if measured on this machine
    out.write_text(json.dumps(v1))
    suite = write_suite(tmp_path, "name: t\nmodels: [lenet5]\nbatch_sizes: [2, 3]\nthreads: 1\n" + MEASURE + "\n")
    assert _run_cli(suite, "--out", out, "--resume", "--force") == 0  # the fixture came from another suite file
    assert [k.split("|")[4] for k in stand_in] == ["b3"]  # b2 was ok in the v1 file
    data = json.loads(out.read_text())
    assert data["schema_version"] == 2 and [c["measured_batch_size"] for c in data["cases"]] == [2, 3]


# ---------------------------------------------------------------------------------------------
# End to end: real runner and worker processes


def bench_env(tmp_path: Path) -> dict[str, str]:
    """TMPDIR inside the test's directory, so its workers are told apart from any other
    cnnbench run on the machine; CNNBENCH_FAULT_DIR collects the pids of children models start."""
    (tmp_path / "tmp").mkdir(exist_ok=True)
    (tmp_path / "children").mkdir(exist_ok=True)
    return {**os.environ, "TMPDIR": str(tmp_path / "tmp"), "CNNBENCH_FAULT_DIR": str(tmp_path / "children")}


def bench(*args) -> list[str]:
    return [sys.executable, str(ROOT / "bench.py"), *map(str, args)]


def workers_of(tmp_path: Path) -> list[psutil.Process]:
    """The run's live workers: spawned ones (`-m cnnbench.measure.worker SPEC` under tmp_path) and those
    forked from a worker server (the default: a child of a `cnnbench.run.server` process that holds
    its case's spec file under tmp_path open)."""
    found = []
    for p in psutil.process_iter(["cmdline", "status"]):
        cmd = p.info.get("cmdline") or []
        if p.info.get("status") == psutil.STATUS_ZOMBIE:
            continue
        if "cnnbench.measure.worker" in cmd and any(str(tmp_path) in part for part in cmd):
            found.append(p)
        elif "cnnbench.run.server" in cmd and _forked_log(p, tmp_path) is not None:
            found.append(p)
    return found


def _forked_log(p: psutil.Process, tmp_path: Path) -> str | None:
    """The spec file of a worker forked by a worker server, or None if `p` is not one."""
    try:
        parent = p.parent()
        if parent is None or "cnnbench.run.server" not in parent.cmdline():
            return None
        return next((f.path for f in p.open_files() if f.path.endswith("spec.json") and str(tmp_path) in f.path), None)
    except psutil.Error:
        return None


def spec_path(worker: psutil.Process, tmp_path: Path) -> Path:
    """The spec file of a live worker, spawned (its argument) or forked (beside its log)."""
    cmd = worker.cmdline()
    if "cnnbench.measure.worker" in cmd:
        return Path(cmd[-2])
    log = _forked_log(worker, tmp_path)
    if log is None:
        raise psutil.NoSuchProcess(worker.pid)
    return Path(log)


def children_alive(tmp_path: Path) -> tuple[int, list[int]]:
    """How many children the fixture models started, and which of them still run."""
    pids = [int(f.read_text()) for f in (tmp_path / "children").glob("child-*")]
    alive = []
    for pid in pids:
        try:
            p = psutil.Process(pid)
            if p.status() != psutil.STATUS_ZOMBIE and "sleep" in p.name():
                alive.append(pid)
        except psutil.NoSuchProcess:
            pass
    return len(pids), alive


def wait_for(predicate, timeout: float, poll: float = 0.01) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(poll)
    return False


@pytest.mark.slow
def test_sigkill_to_a_worker_at_10_random_points(tmp_path):
    """Twelve cases; a watcher SIGKILLs ten of the workers at seeded random moments of their
    life (importing torch, building, measuring). Each killed case is `crashed` by SIGKILL, the
    two others are ok, the suite finishes with exit code 1."""
    rng = random.Random(1010)
    batches = list(range(1, 13))
    doomed = set(rng.sample(batches, 10))
    delay = {b: rng.uniform(0.0, 3.0) for b in doomed}
    suite = write_suite(tmp_path, """
        name: kill
        models: [{name: tiny, import: "faultmodels:tiny", input_size: [1, 8, 8]}]
        batch_sizes: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]
        threads: 1
        measure: {warmup: 1, min_time_s: 3.5, max_time_s: 4.0, max_samples: 1000000, timeout_s: 120, repeats: 1}
    """)  # a worker measures >= 3.5 s (no sample cap cuts it short: the tiny model reaches 10,000
    # samples in ~1.3 s), so every kill, at most 3 s after its start, lands while it works, forked
    # from the worker server (~0.1 s to its first warmup) or spawned, on any machine
    out = tmp_path / "kill.json"
    proc = subprocess.Popen(bench("run", suite, "--out", out, "--quiet"), cwd=tmp_path, env=bench_env(tmp_path),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killed: dict[int, float] = {}
    missed: list[int] = []

    def watch():
        seen: set[int] = set()
        while proc.poll() is None:
            for worker in workers_of(tmp_path):
                if worker.pid in seen:
                    continue
                seen.add(worker.pid)
                try:
                    spec = json.loads(spec_path(worker, tmp_path).read_text())
                except (OSError, ValueError, psutil.Error):
                    continue
                batch = spec["batch_size"]
                if batch not in doomed or spec["model"] == "peak-gemm":  # the run's peak GEMM is no case
                    continue
                time.sleep(max(0.0, delay[batch] - (time.time() - worker.create_time())))
                try:
                    if worker.status() == psutil.STATUS_ZOMBIE:
                        raise psutil.NoSuchProcess(worker.pid)
                    worker.send_signal(signal.SIGKILL)
                    killed[batch] = time.time() - worker.create_time()
                except psutil.NoSuchProcess:
                    missed.append(batch)
            time.sleep(0.01)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    stdout, stderr = proc.communicate(timeout=400)
    watcher.join(timeout=5)
    assert proc.returncode == 1, stdout + stderr
    assert missed == [] and set(killed) == doomed, (killed, missed)
    by_batch = {c["spec"]["batch_size"]: c for c in load_results(out)["cases"]}
    assert sorted(by_batch) == batches
    for b in batches:
        if b in doomed:
            assert by_batch[b]["status"] == "crashed" and "SIGKILL" in by_batch[b]["error"], by_batch[b]
            assert by_batch[b]["runs"][0]["signal"] == signal.SIGKILL
        else:
            assert by_batch[b]["status"] == "ok" and by_batch[b]["latency_ms"]["median"] > 0
    assert not workers_of(tmp_path)
    print(f"SIGKILL: {len(killed)}/10 killed cases crashed, at {sorted(round(t, 2) for t in killed.values())} s")


@pytest.mark.slow
def test_leaking_and_wedged_workers_leave_no_process_and_do_not_affect_the_next_case(tmp_path):
    """`leaker` measures fine but leaves a `sleep 1000` child; `wedged` starts two (one leaves
    the worker's process group) and hangs. The first is ok and its child is gone, the second
    ends `timeout` by the runner's deadline and its children are gone, and the case after them
    is ok. Meanwhile a second run on the same results file is refused: by the lock with
    --replace, by the existing file without it."""
    limit = 20  # the window in which the second runs must ask (they start once wedged runs)
    suite = write_suite(tmp_path, f"""
        name: wedge
        defaults:
          threads: 1
          measure: {{warmup: 1, min_time_s: 0.05, max_time_s: 0.2, timeout_s: 120, repeats: 1}}
        matrices:
          - models: [{{name: leaker, import: "faultmodels:leaker", input_size: [1, 8, 8]}}]
          - models: [{{name: wedged, import: "faultmodels:wedged", input_size: [1, 8, 8]}}]
            measure: {{timeout_s: {limit}}}
          - models: [{{name: tiny, import: "faultmodels:tiny", input_size: [1, 8, 8]}}]
    """)
    out = tmp_path / "wedge.json"
    env = bench_env(tmp_path)
    first = subprocess.Popen(bench("run", suite, "--out", out, "--quiet"), cwd=tmp_path, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert wait_for(lambda: children_alive(tmp_path)[0] >= 3, 240)  # an event: wedged is running
    for flags, needle in ((["--replace"], "another run is writing this file"), ([], "exists; pass --replace")):
        second = subprocess.run(bench("run", suite, "--out", out, *flags), cwd=tmp_path, env=env,
                                capture_output=True, text=True, timeout=120)
        assert second.returncode == 2 and needle in second.stderr, second.stderr
        assert len(second.stderr.strip().splitlines()) == 1
    # No wall-clock precondition: "another run is writing this file" itself proves that the
    # first run held the lock when the second asked (the kernel's flock says so, not a timer).
    stdout, stderr = first.communicate(timeout=300)
    assert first.returncode == 1, stdout + stderr
    leaker, wedged, tiny = load_results(out)["cases"]
    assert leaker["status"] == "ok" and tiny["status"] == "ok"
    assert wedged["status"] == "timeout" and wedged["runs"][0]["error"] == f"worker killed after the {limit} s timeout"
    started, alive = children_alive(tmp_path)
    assert started >= 3 and alive == []  # leaker's (built once or twice) and wedged's two
    assert not workers_of(tmp_path) and leftovers(tmp_path) == []


def _cases_on_disk(out: Path) -> int:
    try:
        return len(load_results(out)["cases"])
    except ResultsFileError:
        return 0


_ANCHORS = {
    # the runner holds the results lock: past startup and the suite checks, before the first case
    "lock": lambda where, out: (where / "r.json.lock").exists(),
    # the first case is on disk: the second (blocking) case is starting or running
    "saved": lambda where, out: _cases_on_disk(out) >= 1,
    # the second case's model is running in its worker (it blocks until killed)
    "blocked": lambda where, out: any((where / "children").glob("blocked-*")),
}


def _interrupt_one_run(suite: Path, where: Path, anchor: str, delay: float, sig: int, twice: bool) -> list[str] | None:
    """Start a run, wait for the event `anchor` (see _ANCHORS), send `sig` `delay` s later, and
    check what it left; with `twice`, the same signal follows (which ends the run at once).

    The suite's last case blocks until its worker is killed, so the run cannot have finished
    when the signal lands, however fast or loaded the machine: the only waits are on events.
    Returns the statuses on disk (None: no file was written)."""
    where.mkdir()
    out = where / "r.json"
    proc = subprocess.Popen(bench("run", suite, "--out", out, "--quiet"), cwd=suite.parent, env=bench_env(where),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_for(lambda: _ANCHORS[anchor](where, out) or proc.poll() is not None, 240, poll=0.02)
        time.sleep(delay)  # a random point after the event, not a synchronisation
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(sig)
        if twice:
            proc.send_signal(sig)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + sig, (proc.returncode, stdout, stderr)
    statuses = None
    if out.exists():
        statuses = [c["status"] for c in load_results(out)["cases"]]
        assert all(s == "ok" for s in statuses[:-1]) and (not statuses or statuses[-1] in ("ok", "interrupted")), (
            anchor, delay, signal.Signals(sig).name, twice, statuses, stdout[-1500:], stderr[-1500:])
        assert json.loads(out.read_text())["schema_version"] == SCHEMA_VERSION
    assert not workers_of(where), "a worker survived"
    assert wait_for(lambda: children_alive(where)[1] == [], 5), "a child process survived"
    ours = [p.name for p in (where / "tmp").iterdir() if p.name.startswith("cnnbench")]  # not torch's caches
    assert leftovers(where) == [] and ours == [], "a lock, temporary file or directory was left"
    return statuses


@pytest.mark.slow
def test_sigint_at_20_random_points(tmp_path):
    """SIGINT, SIGTERM or SIGHUP at 20 seeded moments of a two-case run whose first case leaks a
    child process and whose second blocks until killed, each moment counted from an event (the
    runner holds the lock; the first case is saved; the second case's model runs). Exit 128 +
    the signal every time (130 for SIGINT), the file (when one was written) loads with every
    completed case, the in-flight case is `interrupted`, no worker or child survives, no
    temporary, lock file or temporary directory is left. Four of the 20 send the signal twice,
    which ends the run at once with the same guarantees. Two runs at a time."""
    from concurrent.futures import ThreadPoolExecutor

    rng = random.Random(2020)
    sigs = [signal.SIGINT, signal.SIGINT, signal.SIGTERM, signal.SIGHUP]
    anchors = ["lock", "saved", "blocked", "lock", "saved"]
    points = [(anchors[i % 5], rng.uniform(0.0, 3.0 if i % 5 == 0 else 1.0), sigs[i % 4], i % 5 == 4) for i in range(20)]
    suite = write_suite(tmp_path, """
        name: sigint
        models:
          - {name: leaker, import: "faultmodels:leaker", input_size: [1, 8, 8]}
          - {name: blocker, import: "faultmodels:blocker", input_size: [1, 8, 8]}
        threads: 1
        measure: {warmup: 1, min_time_s: 2.5, max_time_s: 3.0, timeout_s: 60, repeats: 1}
    """)  # one process per case, as in the other fault tests (the 3-process default would share
    # these times, 0.83 s each); each case measures >= 2.5 s: a forked worker starts in ~0.1 s, and every Ctrl-C, at most
    # 2 s after the first case is saved, must still land while the second one works
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = [pool.submit(_interrupt_one_run, suite, tmp_path / f"t{i:02d}", *p) for i, p in enumerate(points)]
        outcomes = [(a, round(d, 2), signal.Signals(s).name, f.result()) for (a, d, s, _), f in zip(points, futures)]
    print("signal outcomes (anchor, s after it, signal, statuses on disk):", outcomes)
    assert len(outcomes) == 20 and {s for _, _, s, _ in outcomes} == {"SIGINT", "SIGTERM", "SIGHUP"}
    for anchor, _, _, statuses in outcomes:
        if anchor == "saved":  # the signal may land before the second case started
            assert statuses in (["ok"], ["ok", "interrupted"]), statuses
        if anchor == "blocked":
            assert statuses == ["ok", "interrupted"], statuses
    assert any(s is None or s in ([], ["interrupted"]) for _, _, _, s in outcomes)  # before the first case ended


@pytest.mark.slow
def test_forced_oom_and_oom_retry_end_to_end(tmp_path):
    """A model that raises MemoryError above batch 4: a worker at batch 32 ends `oom`; with
    --oom-retry the run retries at 16, 8 and 4, and records and shows 4. An error that is not
    about memory is not retried."""
    plain = CaseSpec(model="fits4", batch_size=32, input_size=(1, 8, 8), source="faultmodels:oom_above",
                     model_kwargs=(("limit", 4),), measure=Measure(warmup=1, min_time_s=0.05, max_time_s=0.2))
    run = runner.run_worker(plain, workdir=str(tmp_path), extra_paths=[str(FIXTURES)])
    assert run["status"] == "oom" and "MemoryError" in run["error"]

    suite = write_suite(tmp_path, f"""
        name: oom
        models:
          - {{name: fits4, import: "faultmodels:oom_above", input_size: [1, 8, 8], kwargs: {{limit: 4}}}}
          - {{name: raiser, import: "faultmodels:raiser", input_size: [1, 8, 8]}}
        batch_sizes: [32]
        threads: 1
        {MEASURE}
    """)
    out = tmp_path / "retried.json"
    proc = subprocess.run(bench("run", suite, "--out", out, "--oom-retry"), cwd=tmp_path,
                          env=bench_env(tmp_path), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stdout + proc.stderr  # the raiser
    fits, raiser = load_results(out)["cases"]
    assert fits["key"] == plain.key and fits["spec"]["batch_size"] == 32
    assert fits["status"] == "ok" and fits["measured_batch_size"] == 4
    assert [(a["batch_size"], a["status"]) for a in fits["batch_attempts"]] == [
        (32, "oom"), (16, "oom"), (8, "oom"), (4, "ok")]  # fmt: skip
    assert fits["throughput_per_s"] == pytest.approx(4 / (fits["latency_ms"]["median"] / 1000))
    assert "4 (of 32)" in proc.stdout and "measured at batch 4" in proc.stdout
    assert raiser["status"] == "error" and raiser["batch_attempts"] == [] and len(raiser["runs"]) == 1
    assert not workers_of(tmp_path)
