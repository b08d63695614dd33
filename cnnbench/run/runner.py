"""The manager side: one worker process per case (and per repeat), results saved after each.

Every worker runs in its own session (process group), so a terminal Ctrl-C reaches only the
runner, which then stops the worker itself; and so killing the group also reaps what the worker
spawned (torch.compile starts compile subprocesses). A worker that outlives its timeout is killed
and becomes a `timeout` result; one that dies without writing a result becomes `crashed` with its
signal or exit code and the tail of its log. The suite always goes on.

Inside a `cnnbench.run.server.session()` (the default of `run` and `ab`; `--spawn` leaves it) a
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
import contextlib
from contextlib import contextmanager
from typing import Any, Callable, Iterable, Iterator, Protocol

from cnnbench.core.environment import PROJECT_ROOT
from cnnbench.core.procgroup import exited, kill_group
from cnnbench.run import server as worker_server, signals
from cnnbench.core.errors import ResultsFileError
from cnnbench.results.format import build_record, upsert_record, write_results
from cnnbench.core.safeio import atomic_write
from cnnbench.core.spec import CaseSpec
from cnnbench.measure.memguard import OOM_KILLER_MESSAGE, killed_by_oom_killer, oom_kill_count

__all__ = ["Variant", "Reporter", "StopFlag", "CaseStep", "run_worker", "run_cases", "save_results", "PROJECT_ROOT"]

_POLL_S = 0.05
_LOG_TAIL_LINES = 8
_LOG_LINE_CHARS = 400
LOG_TAIL_BYTES = 64 * 1024  # what is kept of a worker's output (its tail)


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
    """Set by the first SIGINT, SIGTERM or SIGHUP (finish cleanly: mark the in-flight case,
    save); a second one raises `signals.Interrupted` at once, except inside `deferred()`, where
    it waits for the end of the block. The results file is written atomically either way."""

    def __init__(self) -> None:
        self.count = 0
        self._defer = 0
        self.signum: int | None = None  # the first signal received

    @property
    def requested(self) -> bool:
        return self.count > 0

    @property
    def reason(self) -> str:
        """What the in-flight case's error says."""
        if self.signum in (None, signal.SIGINT):
            return "interrupted by the user (SIGINT)"
        return f"interrupted by {signals.name(self.signum)}"

    @property
    def exit_code(self) -> int:
        return signals.exit_code(self.signum)

    def handle(self, signum: int, frame: Any) -> None:
        self.count += 1
        if self.signum is None:
            self.signum = signum
        signals.record(signum)
        if self.count >= 2 and not self._defer:
            signals.raise_when_safe(self.signum, frame)  # after an import it landed in (signals.py)

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
            raise signals.Interrupted(self.signum or signal.SIGINT)

    def install(self) -> Callable[[], None]:
        """Install as the SIGINT, SIGTERM and SIGHUP handler; returns a function restoring the
        previous ones."""
        return signals.install(self.handle)


@contextmanager
def _deferred(stop: StopFlag | None) -> Iterator[None]:
    if stop is None:
        yield
    else:
        with stop.deferred():
            yield


class LogTail:
    """The worker's stdout and stderr, read from a pipe by a thread that keeps only the last
    `keep` bytes: a model that prints 300 MB costs neither disk nor memory here, and the runner
    never reads a whole log. `total` counts every byte, so the tail can say what it left out."""

    def __init__(self, fd: int, keep: int = LOG_TAIL_BYTES):
        import threading

        self.fd, self.keep, self.total = fd, keep, 0
        self._buf = bytearray()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._pump, name="cnnbench-log", daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        import select

        try:
            while not self._done.is_set():
                ready, _, _ = select.select([self.fd], [], [], 0.1)
                if not ready:
                    continue
                chunk = os.read(self.fd, 1 << 16)
                if not chunk:
                    break
                self.total += len(chunk)
                self._buf += chunk
                if len(self._buf) > 2 * self.keep:
                    del self._buf[: len(self._buf) - self.keep]
        except (OSError, ValueError):
            pass

    def close(self) -> None:
        """Stop reading (a process that left the worker's group may still hold the pipe open)."""
        self._thread.join(timeout=1.0)
        self._done.set()
        self._thread.join(timeout=1.0)
        with contextlib.suppress(OSError):
            os.close(self.fd)

    def text(self, lines: int = _LOG_TAIL_LINES) -> str:
        tail = bytes(self._buf[-self.keep :]).decode("utf-8", "replace").strip().splitlines()[-lines:]
        out = "\n".join(line[:_LOG_LINE_CHARS] for line in tail)
        if out and self.total > self.keep:
            out = f"[last lines of {self.total} bytes of output]\n" + out
        return out


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
    spec_file, result_file = case_dir / "spec.json", case_dir / "result.json"
    atomic_write(spec_file, json.dumps(spec.to_dict()))
    env = _worker_env(variant, extra_paths)

    oom_kills_before = oom_kill_count()
    spawn_ns = time.monotonic_ns()
    started = time.time()
    proc: subprocess.Popen | None = None
    log: LogTail | None = None
    try:
        with _deferred(stop):
            proc, read_end = _start_worker(variant, spec_file, result_file, env=env, case_dir=case_dir)
            log = LogTail(read_end)
        if on_spawn is not None:
            on_spawn(proc)
        outcome = _wait_for_exit(proc, spec, stop)
    except BaseException:
        _cleanup(case_dir, proc)
        if log is not None:
            log.close()
        raise
    with _deferred(stop):  # also after a normal exit: reaps what the worker left in its group
        kill_group(proc)
    assert log is not None
    log.close()

    if outcome is None:
        outcome = _exit_outcome(proc, result_file, oom_kills_before)
    if outcome.get("status") != "ok":
        tail = log.text()
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


def _worker_env(variant: Variant, extra_paths: Iterable[str]) -> dict[str, str]:
    """The worker's environment: this one, with the variant's import path first."""
    env = dict(os.environ)
    paths = [*variant.paths, *extra_paths, str(PROJECT_ROOT)]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env.setdefault("PYTHONUNBUFFERED", "1")
    # `python -m` puts the working directory first on sys.path, ahead of PYTHONPATH: a worker
    # started from another checkout would import *that* cnnbench and models instead of the
    # variant's. PYTHONSAFEPATH (3.11+) drops that entry; the cwd stays importable through the
    # suite's python_path, which PYTHONPATH carries.
    env["PYTHONSAFEPATH"] = "1"
    return env


def _start_worker(
    variant: Variant, spec_file: Path, result_file: Path, *, env: dict[str, str], case_dir: Path
) -> tuple[subprocess.Popen, int]:
    """Start the worker with its stdout and stderr on a pipe; returns it and the pipe's read end."""
    read_end, write_end = os.pipe()
    try:
        # The one dispatch point: forked from the variant's pre-imported server inside a
        # `worker_server.session()` (the default of run and ab), else spawned (`--spawn`).
        # Either way the worker writes into the same capped log pipe (LogTail).
        proc = worker_server.fork_worker(
            variant.python, [str(spec_file), str(result_file)], env=env,
            log_path=case_dir / "worker.log", out_fd=write_end,
        ) or subprocess.Popen(
            [variant.python, "-m", "cnnbench.measure.worker", str(spec_file), str(result_file)],
            stdin=subprocess.DEVNULL,
            stdout=write_end,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
        )
    except BaseException:
        os.close(read_end)
        raise
    finally:
        os.close(write_end)
    return proc, read_end


def _wait_for_exit(proc: subprocess.Popen, spec: CaseSpec, stop: StopFlag | None) -> dict[str, Any] | None:
    """Poll until the worker exits (None), or the outcome that ends the wait first: a stop
    request (`interrupted`) or the case's timeout (`timeout`)."""
    deadline = time.monotonic() + spec.measure.timeout_s
    while not exited(proc):
        if stop is not None and stop.requested:
            return {"status": "interrupted", "error": stop.reason}
        if time.monotonic() > deadline:
            return {
                "status": "timeout",
                "error": f"worker killed after the {spec.measure.timeout_s:g} s timeout",
            }
        time.sleep(_POLL_S)
    return None


def _exit_outcome(proc: subprocess.Popen, result_file: Path, oom_kills_before: int | None) -> dict[str, Any]:
    """The outcome of a worker that exited: its result file, else `crashed` with its signal or
    exit code, or `oom` when the kernel's OOM killer sent the SIGKILL."""

    outcome = _read_result(result_file)
    if outcome is None and getattr(proc, "status_lost", False):
        outcome = {"status": "crashed", "error": "worker ended without a result; its exit status was lost with the worker server"}
    if outcome is None:
        message, sig = _describe_exit(proc.returncode)
        outcome = {"status": "crashed", "error": message, "exit_code": proc.returncode}
        if sig is not None:
            outcome["signal"] = sig
        evidence = killed_by_oom_killer(proc.pid, proc.returncode, oom_kills_before)
        if evidence:  # SIGKILL from the kernel, not from us: out of memory
            outcome.update(status="oom", error=f"{OOM_KILLER_MESSAGE} ({evidence})")
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
        kill_group(proc)
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
    step = CaseStep(worker, workdir=workdir, stop=stop, extra_paths=extra_paths, oom_retry=oom_retry)
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
                try:
                    run = step.run(spec, variant)
                except KeyboardInterrupt as exc:  # a second signal: the worker is dead already
                    _save_interrupted(spec, runs, repeat, results, out_path, state, exc)
                    raise
                run["repeat"] = repeat
                runs.append(run)
                record = build_record(spec, runs, planned_repeats=spec.measure.repeats)
                upsert_record(results, record)
                lost = f"{spec.key} ({run.get('status')})"
                save_results(out_path, results, saved_cases=state.saved_cases, lost=lost, stop=stop)
                state.saved_cases = len(results["cases"])
                reporter.case_finished(record, run)
                if run.get("status") == "interrupted":
                    state.interrupted = True
                    return state
    finally:
        if own_workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    return state


class CaseStep:
    """The step `run` and `ab` both repeat: one worker process of a case for one variant.

    With `oom_retry`, a run that ends `oom` is tried again at half the batch (a fresh worker
    each time) until it fits or batch 1 was tried; later repeats of that case and variant reuse
    the batch that fitted, so every repeat of a case measures the same computation.
    """

    def __init__(
        self,
        worker: Callable[..., dict[str, Any]],
        *,
        workdir: str,
        stop: StopFlag | None,
        extra_paths: tuple[str, ...] = (),
        oom_retry: bool = False,
    ):
        self.worker = worker
        self.kwargs = dict(workdir=workdir, stop=stop, extra_paths=extra_paths)
        self.stop = stop
        self.oom_retry = oom_retry
        self.fitting_batch: dict[tuple[str, str], int] = {}  # (variant, key) -> batch that fitted

    def run(self, spec: CaseSpec, variant: Variant) -> dict[str, Any]:
        kwargs = dict(self.kwargs, variant=variant)
        ident = (variant.name, spec.key)
        if ident in self.fitting_batch:
            run = _run_at(self.worker, spec, self.fitting_batch[ident], kwargs)
        else:
            run = _run_with_oom_retry(self.worker, spec, kwargs, retry=self.oom_retry, stop=self.stop)
        if run.get("status") == "ok" and run.get("batch_size", spec.batch_size) != spec.batch_size:
            self.fitting_batch[ident] = run["batch_size"]
        return run
def second_signal_reason(exc: BaseException) -> str:
    """The error of a case a second signal cut short (`exc`: the Interrupted it raised)."""
    signum = getattr(exc, "signum", signal.SIGINT)
    reason = "interrupted by the user (SIGINT)" if signum == signal.SIGINT else f"interrupted by {signals.name(signum)}"
    return reason + ", twice"


def _save_interrupted(
    spec: CaseSpec,
    runs: list[dict[str, Any]],
    repeat: int,
    results: dict[str, Any],
    out_path: str | os.PathLike[str],
    state: RunState,
    exc: BaseException,
) -> None:
    """Mark the in-flight case `interrupted` and save, on the way out of a second signal (the
    same guarantees as the first: the case is in the file, marked). A save that fails here only
    leaves the file as last saved, which loads."""
    runs.append({"status": "interrupted", "error": second_signal_reason(exc), "repeat": repeat})
    upsert_record(results, build_record(spec, runs, planned_repeats=spec.measure.repeats))
    state.interrupted = True
    with contextlib.suppress(ResultsFileError):
        write_results(out_path, results)  # a third signal mid-save leaves the file as it was
    state.saved_cases = len(results["cases"])


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


def save_results(
    out_path: str | os.PathLike[str], doc: dict[str, Any], *, saved_cases: int, lost: str, stop: StopFlag | None
) -> None:
    """Write `doc` after a worker process (`run`'s results file, `ab`'s document), deferring a
    stop request until the file is whole. A failed write stops the run with the message that
    says what the file still holds and which result was lost."""
    try:
        with _deferred(stop):
            write_results(out_path, doc)
    except ResultsFileError as exc:
        reason = str(exc).removeprefix(f"{exc.path}: ")
        raise ResultsFileError(
            exc.path,
            f"{reason}; the run stopped. The file is as last saved, with {saved_cases} "
            f"case(s); the result of {lost} was not saved",
        ) from exc
