"""The manager side: one worker process per case (and per repeat), results saved after each.

Every worker runs in its own session (process group), so a terminal Ctrl-C reaches only the
runner, which then stops the worker itself; and so killing the group also reaps what the worker
spawned (torch.compile starts compile subprocesses). A worker that outlives its timeout is killed
and becomes a `timeout` result; one that dies without writing a result becomes `crashed` with its
signal or exit code and the tail of its log. The suite always goes on.

Inside a `cnnbench.server.session()` (the default of `run` and `ab`; `--spawn` leaves it) a
worker is forked from a pre-imported worker server of its variant instead of started afresh:
the same entry point and files, its own session, watched through a pidfd and reaped by the
server, so the timeout, kill and crash handling below apply unchanged (`run_worker`'s one
dispatch point).

Repeats are interleaved (all cases once, then all cases again...) so that slow drift of a shared
machine spreads evenly over the cases instead of biasing whichever ran last.

With `oom_retry`, a case that ends `oom` is tried again in a fresh worker at half the batch until
it fits or batch 1 fails; the record keeps the requested spec and says which batch was measured
(results.build_record). A fresh process per attempt, because an allocator that has just failed
(CUDA's caching allocator above all) is not the state a measurement should start from.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from contextlib import contextmanager
from typing import Any, Callable, Iterable, Iterator, Protocol

from cnnbench import server as worker_server
from cnnbench.errors import ResultsFileError
from cnnbench.results import build_record, upsert_record, write_results
from cnnbench.spec import CaseSpec

__all__ = ["Variant", "Reporter", "StopFlag", "run_worker", "run_cases", "PROJECT_ROOT"]

PROJECT_ROOT = str(Path(__file__).resolve().parent.parent)
_POLL_S = 0.05
_LOG_TAIL_LINES = 8


@dataclass(frozen=True)
class Variant:
    """How to start a worker: which interpreter and which extra import paths (first wins)."""

    name: str = "current"
    python: str = sys.executable
    paths: tuple[str, ...] = ()


class Reporter(Protocol):
    def start(self, total_runs: int) -> None: ...
    def case_started(self, spec: CaseSpec, repeat: int) -> None: ...
    def case_finished(self, record: dict[str, Any], run: dict[str, Any]) -> None: ...
    def finish(self, results: dict[str, Any]) -> None: ...


class StopFlag:
    """Set by the first SIGINT (finish cleanly: mark the in-flight case, save); a second one
    raises KeyboardInterrupt at once, except inside `deferred()`, where it waits for the end of
    the block. The results file is written atomically either way."""

    def __init__(self) -> None:
        self.count = 0
        self._defer = 0

    @property
    def requested(self) -> bool:
        return self.count > 0

    def handle(self, signum: int, frame: Any) -> None:
        self.count += 1
        if self.count >= 2 and not self._defer:
            raise KeyboardInterrupt

    @contextmanager
    def deferred(self) -> Iterator[None]:
        """A block a second Ctrl-C must not cut in two: starting a worker (an interrupt between
        fork and the bookkeeping would orphan it) and saving a finished case (a few ms)."""
        self._defer += 1
        try:
            yield
        finally:
            self._defer -= 1
        if self.count >= 2 and not self._defer:
            raise KeyboardInterrupt

    def install(self) -> Callable[[], None]:
        """Install as the SIGINT handler; returns a function restoring the previous one."""
        previous = signal.signal(signal.SIGINT, self.handle)
        return lambda: signal.signal(signal.SIGINT, previous)


@contextmanager
def _deferred(stop: StopFlag | None) -> Iterator[None]:
    if stop is None:
        yield
    else:
        with stop.deferred():
            yield


def _exited(proc: subprocess.Popen) -> bool:
    """Whether the worker has exited, without reaping it: until it is reaped its pid (which is
    also its process group's id) cannot be reused, so killing the group stays safe."""
    if hasattr(proc, "has_exited"):  # forked by a worker server: not our child (server.py)
        return proc.has_exited()
    try:
        return os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:  # already reaped
        return True


def _descendants(pid: int) -> list[Any]:
    try:
        import psutil

        return psutil.Process(pid).children(recursive=True)
    except Exception:  # noqa: BLE001 - gone already, or psutil missing: the group kill remains
        return []


def _kill_group(proc: subprocess.Popen) -> None:
    """Kill the worker, everything in its process group, and any descendant of a still-running
    worker that left the group (setsid); then reap the worker."""
    strays = _descendants(proc.pid)
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    for child in strays:
        try:
            child.kill()
        except Exception:  # noqa: BLE001 - psutil.NoSuchProcess: already gone with the group
            pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:  # pragma: no cover - a zombie that will not be reaped
        pass


def _log_tail(path: Path) -> str:
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    except OSError:
        return ""
    return "\n".join(lines[-_LOG_TAIL_LINES:])


def _describe_exit(code: int) -> tuple[str, int | None]:
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"worker killed by {name}", -code
    return f"worker exited with code {code} without a result", None


def run_worker(
    spec: CaseSpec,
    *,
    variant: Variant = Variant(),
    workdir: str,
    stop: StopFlag | None = None,
    extra_paths: Iterable[str] = (),
    on_spawn: Callable[[subprocess.Popen], None] | None = None,
) -> dict[str, Any]:
    """Run one case in a fresh worker process and return its run record (never raises for the
    case's own failures: they come back as a status)."""
    case_dir = Path(tempfile.mkdtemp(prefix="case-", dir=workdir))
    spec_file, result_file, log_file = case_dir / "spec.json", case_dir / "result.json", case_dir / "worker.log"
    spec_file.write_text(json.dumps(spec.to_dict()), encoding="utf-8")

    env = dict(os.environ)
    paths = [*variant.paths, *extra_paths, PROJECT_ROOT]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env.setdefault("PYTHONUNBUFFERED", "1")
    # `python -m` puts the working directory first on sys.path, ahead of PYTHONPATH: a worker
    # started from another checkout would import *that* cnnbench and models instead of the
    # variant's. PYTHONSAFEPATH (3.11+) drops that entry; the cwd stays importable through the
    # suite's python_path, which PYTHONPATH carries.
    env["PYTHONSAFEPATH"] = "1"

    spawn_ns = time.monotonic_ns()
    started = time.time()
    proc: subprocess.Popen | None = None
    outcome: dict[str, Any] | None = None
    try:
        with _deferred(stop), open(log_file, "wb") as log:
            # The one dispatch point: forked from the variant's pre-imported server inside a
            # `worker_server.session()` (the default of run and ab), else spawned (`--spawn`).
            proc = worker_server.fork_worker(
                variant.python, [str(spec_file), str(result_file)], env=env, log_path=log_file
            ) or subprocess.Popen(
                [variant.python, "-m", "cnnbench.worker", str(spec_file), str(result_file)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=env,
            )
        if on_spawn is not None:
            on_spawn(proc)
        deadline = time.monotonic() + spec.measure.timeout_s
        while not _exited(proc):
            if stop is not None and stop.requested:
                outcome = {"status": "interrupted", "error": "interrupted by the user (SIGINT)"}
                break
            if time.monotonic() > deadline:
                outcome = {
                    "status": "timeout",
                    "error": f"worker killed after the {spec.measure.timeout_s:g} s timeout",
                }
                break
            time.sleep(_POLL_S)
    except BaseException:
        _cleanup(case_dir, proc)
        raise
    with _deferred(stop):  # also after a normal exit: reaps what the worker left in its group
        _kill_group(proc)

    if outcome is None:
        outcome = _read_result(result_file)
        if outcome is None and getattr(proc, "status_lost", False):
            outcome = {"status": "crashed", "error": "worker ended without a result; its exit status was lost with the worker server"}
        if outcome is None:
            message, sig = _describe_exit(proc.returncode)
            outcome = {"status": "crashed", "error": message, "exit_code": proc.returncode}
            if sig is not None:
                outcome["signal"] = sig
    if outcome.get("status") != "ok":
        tail = _log_tail(log_file)
        if tail:
            outcome["stderr_tail"] = tail
    if "first_warmup_ns" in outcome:
        outcome["overhead_ms"] = (outcome["first_warmup_ns"] - spawn_ns) / 1e6
    outcome["started"] = started
    outcome.setdefault("duration_s", time.time() - started)
    outcome["variant"] = variant.name
    outcome["worker_start"] = getattr(proc, "start_method", "spawn")
    _cleanup(case_dir)
    return outcome


def _read_result(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and "status" in data else None


def _cleanup(case_dir: Path, proc: subprocess.Popen | None = None) -> None:
    """Remove a case's scratch directory; on the way out of an exception, kill its worker first."""
    if proc is not None:
        _kill_group(proc)
    shutil.rmtree(case_dir, ignore_errors=True)


@dataclass
class RunState:
    """Runs gathered so far, by case key (a resumed run starts from the file's records)."""

    runs: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    interrupted: bool = False
    saved_cases: int = 0  # records in the file as last written


def run_cases(
    cases: list[CaseSpec],
    *,
    results: dict[str, Any],
    out_path: str | os.PathLike[str],
    reporter: Reporter,
    variant: Variant = Variant(),
    extra_paths: Iterable[str] = (),
    stop: StopFlag | None = None,
    workdir: str | None = None,
    worker: Callable[..., dict[str, Any]] | None = None,
    oom_retry: bool = False,
) -> RunState:
    """Run every case (each repeat in its own worker), saving `results` after every run.

    Repeats are interleaved across cases. A case whose run is not ok gets no further repeats
    (its failure is deterministic or costly: a timeout, a crash). On a stop request the in-flight
    case is recorded `interrupted` and nothing else starts.

    Raises:
        ResultsFileError: a save failed (disk full, permission). The file keeps its previous
            content, and the message says how many cases it holds and which result was lost.
    """
    worker = worker or run_worker  # looked up at call time, so tests can stand in for workers
    state = RunState(saved_cases=len(results["cases"]))
    extra_paths = tuple(extra_paths)
    total = sum(c.measure.repeats for c in cases)
    reporter.start(total)
    own_workdir = workdir is None
    workdir = workdir or tempfile.mkdtemp(prefix="cnnbench-")
    fitting_batch: dict[str, int] = {}  # key -> batch an earlier repeat found with --oom-retry
    try:
        max_repeats = max((c.measure.repeats for c in cases), default=0)
        for repeat in range(max_repeats):
            for spec in cases:
                if stop is not None and stop.requested:
                    state.interrupted = True
                    return state
                runs = state.runs.setdefault(spec.key, [])
                if repeat >= spec.measure.repeats or any(r.get("status") != "ok" for r in runs):
                    continue
                reporter.case_started(spec, repeat)
                kwargs = dict(variant=variant, workdir=workdir, stop=stop, extra_paths=extra_paths)
                if spec.key in fitting_batch:
                    run = _run_at(worker, spec, fitting_batch[spec.key], kwargs)
                else:
                    run = _run_with_oom_retry(worker, spec, kwargs, retry=oom_retry, stop=stop)
                if run.get("status") == "ok" and run.get("batch_size", spec.batch_size) != spec.batch_size:
                    fitting_batch[spec.key] = run["batch_size"]
                run["repeat"] = repeat
                runs.append(run)
                record = build_record(spec, runs, planned_repeats=spec.measure.repeats)
                upsert_record(results, record)
                _save(out_path, results, state, lost=f"{spec.key} ({run.get('status')})", stop=stop)
                reporter.case_finished(record, run)
                if run.get("status") == "interrupted":
                    state.interrupted = True
                    return state
    finally:
        if own_workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    return state


def _run_at(
    worker: Callable[..., dict[str, Any]], spec: CaseSpec, batch: int, kwargs: dict[str, Any]
) -> dict[str, Any]:
    run = worker(spec if batch == spec.batch_size else spec.replace(batch_size=batch), **kwargs)
    if batch != spec.batch_size:
        run["batch_size"] = batch
    return run


def _run_with_oom_retry(
    worker: Callable[..., dict[str, Any]],
    spec: CaseSpec,
    kwargs: dict[str, Any],
    *,
    retry: bool,
    stop: StopFlag | None,
) -> dict[str, Any]:
    """One run of `spec`; with `retry`, an `oom` run is tried again at half the batch (a fresh
    worker each time) until one is not `oom` or batch 1 was tried. Only `oom` is retried: any
    other failure would fail the same way at every batch, or is not about memory."""
    batch = spec.batch_size
    run = _run_at(worker, spec, batch, kwargs)
    if not retry or run.get("status") != "oom":
        return run
    attempts = [{"batch_size": batch, "status": "oom"}]
    while run.get("status") == "oom" and batch > 1 and not (stop is not None and stop.requested):
        batch //= 2
        run = _run_at(worker, spec, batch, kwargs)
        attempts.append({"batch_size": batch, "status": run.get("status")})
    run["batch_attempts"] = attempts
    return run


def _save(
    out_path: str | os.PathLike[str], results: dict[str, Any], state: RunState, *, lost: str, stop: StopFlag | None
) -> None:
    try:
        with _deferred(stop):
            write_results(out_path, results)
    except ResultsFileError as exc:
        reason = str(exc).removeprefix(f"{exc.path}: ")
        raise ResultsFileError(
            exc.path,
            f"{reason}; the run stopped. The file is as last saved, with {state.saved_cases} "
            f"case(s); the result of {lost} was not saved",
        ) from exc
    state.saved_cases = len(results["cases"])
