"""The manager side: one worker process per case (and per repeat), results saved after each.

Every worker runs in its own session (process group), so a terminal Ctrl-C reaches only the
runner, which then stops the worker itself; and so killing the group also reaps what the worker
spawned (torch.compile starts compile subprocesses). A worker that outlives its timeout is killed
and becomes a `timeout` result; one that dies without writing a result becomes `crashed` with its
signal or exit code and the tail of its log. The suite always goes on.

Repeats are interleaved (all cases once, then all cases again...) so that slow drift of a shared
machine spreads evenly over the cases instead of biasing whichever ran last.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Protocol

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
    raises KeyboardInterrupt at once. The results file is written atomically either way."""

    def __init__(self) -> None:
        self.count = 0

    @property
    def requested(self) -> bool:
        return self.count > 0

    def handle(self, signum: int, frame: Any) -> None:
        self.count += 1
        if self.count >= 2:
            raise KeyboardInterrupt

    def install(self) -> Callable[[], None]:
        """Install as the SIGINT handler; returns a function restoring the previous one."""
        previous = signal.signal(signal.SIGINT, self.handle)
        return lambda: signal.signal(signal.SIGINT, previous)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
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

    spawn_ns = time.monotonic_ns()
    started = time.time()
    with open(log_file, "wb") as log:
        proc = subprocess.Popen(
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
    outcome: dict[str, Any] | None = None
    try:
        while proc.poll() is None:
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
    finally:
        # Also after a normal exit: reaps anything the worker left in its process group.
        _kill_group(proc)

    if outcome is None:
        outcome = _read_result(result_file)
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
    _cleanup(case_dir)
    return outcome


def _read_result(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and "status" in data else None


def _cleanup(case_dir: Path) -> None:
    for child in case_dir.iterdir():
        try:
            child.unlink()
        except OSError:
            pass
    try:
        case_dir.rmdir()
    except OSError:
        pass


@dataclass
class RunState:
    """Runs gathered so far, by case key (a resumed run starts from the file's records)."""

    runs: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    interrupted: bool = False


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
    worker: Callable[..., dict[str, Any]] = run_worker,
) -> RunState:
    """Run every case (each repeat in its own worker), saving `results` after every run.

    Repeats are interleaved across cases. A case whose run is not ok gets no further repeats
    (its failure is deterministic or costly: a timeout, a crash). On a stop request the in-flight
    case is recorded `interrupted` and nothing else starts.
    """
    state = RunState()
    extra_paths = tuple(extra_paths)
    total = sum(c.measure.repeats for c in cases)
    reporter.start(total)
    own_workdir = workdir is None
    workdir = workdir or tempfile.mkdtemp(prefix="cnnbench-")
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
                run = worker(spec, variant=variant, workdir=workdir, stop=stop, extra_paths=extra_paths)
                run["repeat"] = repeat
                runs.append(run)
                record = build_record(spec, runs, planned_repeats=spec.measure.repeats)
                upsert_record(results, record)
                write_results(out_path, results)
                reporter.case_finished(record, run)
                if run.get("status") == "interrupted":
                    state.interrupted = True
                    return state
    finally:
        if own_workdir:
            try:
                os.rmdir(workdir)
            except OSError:
                pass
    return state
