"""`bench.py run [SUITE]`: measure every case of a suite, print a live table, save results."""

from __future__ import annotations

import argparse
import datetime as _dt
import errno
import fcntl
import fnmatch
import os
import socket
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from cnnbench.errors import ResultsFileError, UserError

HELP = "run a suite: measure every case, print the table, write a results file"
ORDER = 10
DESCRIPTION = (
    "Measure every case of SUITE (default: suites/smoke.yaml), each in its own worker process. "
    "The results file is rewritten atomically after every case, so Ctrl-C (or a crash) keeps "
    "every case measured so far; a second Ctrl-C stops at once. Exit code: 0 all cases ok, 1 some "
    "case not ok, 2 usage, suite or results-file error (a failed save included), 130 interrupted."
)
DEFAULT_SUITE = "suites/smoke.yaml"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("suite", nargs="?", default=DEFAULT_SUITE, help=f"suite YAML file (default: {DEFAULT_SUITE})")
    p.add_argument("--out", "-o", metavar="FILE", help="results file (default: results/<suite>-<time>.json)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--replace", action="store_true", help="overwrite FILE if it exists")
    mode.add_argument("--resume", action="store_true", help="keep the cases already ok in FILE, run the rest")
    p.add_argument("--models", metavar="GLOB", action="append", help="only models matching GLOB (repeatable)")
    p.add_argument("--backends", metavar="NAME", action="append", help="only these backends (repeatable)")
    p.add_argument("--repeats", type=int, metavar="N", help="worker processes per case (overrides the suite)")
    p.add_argument("--timeout", type=float, metavar="S", help="per-worker timeout in seconds (overrides the suite)")
    p.add_argument("--max-time", type=float, metavar="S", help="max timed seconds per case (overrides the suite)")
    p.add_argument(
        "--oom-retry",
        action="store_true",
        help="when a case runs out of memory, halve its batch and retry until it fits (the measured "
        "batch is recorded and shown, e.g. '16 (of 32)'; other errors are never retried)",
    )
    p.add_argument("--no-peak", action="store_true",
                   help="skip measuring the machine's peak GFLOP/s (a GEMM in one worker, ~6 s) used for '%% of peak' in reports")
    p.add_argument("--shard", metavar="K/N", help=_shard_help())
    p.add_argument("--quiet", "-q", action="store_true", help="no live output; print only the final table")
    from cnnbench.commands.ab import add_spawn_argument

    add_spawn_argument(p)


def _shard_help() -> str:
    from cnnbench.shard import SHARD_HELP

    return SHARD_HELP


def _positive(name: str, value: float | None) -> None:
    if value is not None and value <= 0:
        raise UserError(f"--{name} must be positive, got {value:g}")


def _apply_overrides(cases: list, args: argparse.Namespace) -> list:
    from cnnbench.spec import BACKENDS

    for name in ("repeats", "timeout", "max_time"):
        _positive(name.replace("_", "-"), getattr(args, name))
    if args.backends:
        unknown = sorted(set(args.backends) - set(BACKENDS))
        if unknown:
            raise UserError(f"--backends: unknown backend {unknown[0]!r} (known: {', '.join(BACKENDS)})")
        cases = [c for c in cases if c.backend in args.backends]
    if args.models:
        cases = [c for c in cases if any(fnmatch.fnmatchcase(c.model, g) for g in args.models)]
    if not cases:
        raise UserError("no case left after --models/--backends filters")
    out = []
    for c in cases:
        m = c.measure
        changes: dict[str, Any] = {}
        if args.repeats:
            changes["repeats"] = args.repeats
        if args.timeout:
            changes["timeout_s"] = args.timeout
        if args.max_time:
            changes["max_time_s"] = args.max_time
            changes["min_time_s"] = min(m.min_time_s, args.max_time)
        out.append(c.replace(measure=m.__class__(**{**m.to_dict(), **changes})) if changes else c)
    # Last, so every machine of a matrix splits the same filtered cases. An empty shard still
    # writes an (empty) results file, so CI artifacts and `merge` work for any N.
    from cnnbench.shard import apply_shard

    return apply_shard(out, args.shard)


def _resolve_suite_path(path: str) -> Path:
    p = Path(path)
    if not p.exists() and path == DEFAULT_SUITE:
        from cnnbench.runner import PROJECT_ROOT

        p = Path(PROJECT_ROOT) / DEFAULT_SUITE
    return p


def _default_out(suite_name: str) -> Path:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("results") / f"{suite_name}-{stamp}.json"


@contextmanager
def results_lock(out: Path) -> Iterator[None]:
    """An exclusive lock beside the results file, so two runs never interleave records.

    An advisory `flock` on `FILE.lock`: the kernel drops it when the holder dies however it dies
    (SIGKILL, OOM killer), so there is no stale lock to judge. The file names the holder for the
    message, and is removed on the way out. A path re-created while we waited on the old inode
    means another run just finished and a third took over: try again.
    """
    lock = out.with_name(out.name + ".lock")
    for _ in range(20):
        try:
            lock.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(lock, os.O_CREAT | os.O_RDWR, 0o644)
        except OSError as exc:
            raise ResultsFileError(str(out), f"cannot create lock file {lock} ({exc.strerror or exc})") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _read_holder(fd)
            os.close(fd)
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise ResultsFileError(str(out), f"cannot lock {lock} ({exc.strerror or exc})") from exc
            who = holder or "a process"
            message = f"another run is writing this file ({who} holds {lock}); wait for it or use another --out"
            raise ResultsFileError(str(out), message) from None
        if not _same_file(fd, lock):
            os.close(fd)
            continue
        break
    else:  # pragma: no cover - twenty runs finishing in a row under our feet
        raise ResultsFileError(str(out), f"cannot take the lock {lock}: it keeps being replaced")
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"host {socket.gethostname()} pid {os.getpid()}".encode())
        yield
    finally:
        try:
            lock.unlink()
        except OSError:
            pass
        os.close(fd)  # after the unlink: a waiter on this inode then sees it is gone


def _read_holder(fd: int) -> str:
    try:
        return os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
    except OSError:
        return ""


def _same_file(fd: int, path: Path) -> bool:
    try:
        a, b = os.fstat(fd), os.stat(path)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _check_out(out: Path, args: argparse.Namespace) -> None:
    """Refuse what would lose data, before anything is measured."""
    if out.is_dir():
        raise ResultsFileError(str(out), "is a directory")
    exists = out.exists() or out.is_symlink()
    if exists and not (args.replace or args.resume):
        raise ResultsFileError(str(out), "exists; pass --replace to overwrite it or --resume to continue it")
    if args.resume and not exists:
        raise ResultsFileError(str(out), "--resume needs an existing results file")


def _load_previous(out: Path, args: argparse.Namespace) -> dict[str, Any] | None:
    """The results file a --resume continues or a --replace overwrites, checked under the lock.

    Either way a file that is not a loadable cnnbench results file (truncated, corrupted, newer,
    or something else named by mistake) is refused and left exactly as it is.
    """
    from cnnbench.results import load_results

    if not out.exists():
        return None
    try:
        previous = load_results(out)
    except ResultsFileError as exc:
        verb = "resume" if args.resume else "replace"
        reason = str(exc).removeprefix(f"{exc.path}: ")
        raise ResultsFileError(str(out), f"{reason}; will not {verb} it (the file is left untouched)") from exc
    if args.resume:  # a replace only needs to know the file is ours; a resume reads every record
        for i, record in enumerate(previous["cases"]):
            if not (isinstance(record, dict) and all(isinstance(record.get(k), str) for k in ("key", "status"))):
                message = f"case {i} has no key or status (corrupted?); will not resume it (the file is left untouched)"
                raise ResultsFileError(str(out), message)
    return previous


def _resume_state(
    old: dict[str, Any], out: Path, cases: list, environment: dict[str, Any]
) -> tuple[dict[str, Any], list, list[str]]:
    """Keep the records already ok (same key, compatible environment); return the results to
    continue, the cases still to run and the keys of records dropped (no longer in the suite)."""
    old_env = old.get("environment") or {}
    for field in ("machine_fingerprint", "torch", "torchvision", "onnxruntime"):
        if old_env.get(field) != environment.get(field):
            raise ResultsFileError(
                str(out),
                f"cannot resume: {field} differs ({old_env.get(field)!r} in the file, "
                f"{environment.get(field)!r} here); use --replace or another --out",
            )
    wanted = {c.key for c in cases}
    kept = [r for r in old["cases"] if r["key"] in wanted and r["status"] == "ok"]
    dropped = [r["key"] for r in old["cases"] if r["key"] not in wanted]
    done = {r["key"] for r in kept}
    old["cases"] = kept
    return old, [c for c in cases if c.key not in done], dropped


def _cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def run(args: argparse.Namespace) -> int:
    from cnnbench.suite import load_suite

    suite_path = _resolve_suite_path(args.suite)
    # Validate fully before anything heavy: torch is imported only once the suite is known good.
    suite = load_suite(suite_path, cuda_available=False)
    cases = _apply_overrides(list(suite.cases), args)
    out = Path(args.out) if args.out else _default_out(suite.name)
    _check_out(out, args)

    with results_lock(out):  # before torch: a second run on the same file is refused at once
        _check_out(out, args)  # again: another run may have created the file before we locked
        previous = _load_previous(out, args)
        return _run_locked(args, suite_path, suite, cases, out, previous)


def _run_locked(args, suite_path: Path, suite, cases: list, out: Path, previous: dict[str, Any] | None) -> int:
    # Until the first save, Ctrl-C is Python's KeyboardInterrupt: nothing is measured yet and the
    # results file is untouched, so the run ends at once (mid torch import included) with 130.
    if any(c.device == "cpu" for c in cases) and _cuda_available():
        from cnnbench.suite import load_suite

        suite = load_suite(suite_path, cuda_available=True)  # `auto` now resolves to cuda
        cases = _apply_overrides(list(suite.cases), args)

    from cnnbench.console import ConsoleReporter, QuietReporter
    from cnnbench.environment import collect_environment
    from cnnbench.results import new_results, write_results
    from cnnbench.runner import StopFlag, run_cases

    environment = collect_environment()
    suite_info = suite.info(path=suite_path, cases=cases)
    if args.shard:
        from cnnbench.shard import format_shard, parse_shard

        suite_info["shard"] = format_shard(*parse_shard(args.shard))
    if args.resume:
        assert previous is not None
        results, cases, dropped = _resume_state(previous, out, cases, environment)
        results["suite"] = suite_info
        print(
            f"resume: {len(results['cases'])} case(s) already ok in {out}, {len(cases)} to run"
            + (f", {len(dropped)} record(s) no longer in the suite dropped" if dropped else ""),
            flush=True,
        )
    else:
        results = new_results(environment=environment, suite=suite_info)

    stop = StopFlag()
    restore = stop.install()  # from here on the first Ctrl-C stops cleanly, the second at once
    try:
        try:
            with stop.deferred():
                write_results(out, results)  # fail early (permissions, disk) before measuring anything
        except ResultsFileError as exc:
            kept = "is unchanged" if previous is not None else "was not created"
            reason = str(exc).removeprefix(f"{exc.path}: ")
            raise ResultsFileError(exc.path, f"{reason}; nothing was measured and the file {kept}") from exc

        if cases and not args.no_peak and results["environment"].get("peak_gflops") is None:
            _measure_peak(results, cases, out=out, stop=stop, quiet=args.quiet)
        reporter: Any = QuietReporter() if args.quiet else ConsoleReporter(title=suite.name)
        from cnnbench import server as worker_server
        from cnnbench.commands.ab import _warn

        try:
            with worker_server.session(enabled=not args.spawn, warn=_warn):  # fork each worker from a server
                state = run_cases(
                    cases, results=results, out_path=out, reporter=reporter, stop=stop,
                    extra_paths=suite.python_path, oom_retry=args.oom_retry,
                )
            state.interrupted = state.interrupted or stop.requested  # a Ctrl-C while the servers shut down
        except BaseException:
            _stop_progress(reporter)
            raise
    finally:
        restore()
    reporter.finish(results)
    if args.quiet:
        from cnnbench.console import make_console, render_notes, render_table

        console = make_console()
        console.print(render_table(results["cases"], title=f"cnnbench: {suite.name}"))
        for line in render_notes(results["cases"]):
            console.print(line, markup=False, highlight=False)
    print(f"results: {out}")
    if state.interrupted:
        print("interrupted: every completed case is in the results file; --resume continues it")
        return 130
    return 0 if all(r["status"] == "ok" for r in results["cases"]) else 1


def _measure_peak(results: dict[str, Any], cases: list, *, out: Path, stop: Any, quiet: bool) -> None:
    """Measure the peak GFLOP/s once, in a worker with the cases' threads and device, and save it
    in the environment (reports show each case's achieved GFLOP/s as a percentage of it)."""
    import tempfile

    from cnnbench.peak import measure_peak
    from cnnbench.results import write_results

    if not quiet:
        print("measuring the machine's peak GFLOP/s (one GEMM worker, --no-peak skips it)", flush=True)
    with tempfile.TemporaryDirectory(prefix="cnnbench-peak-") as workdir:
        results["environment"].update(measure_peak(cases, workdir=workdir, stop=stop))
    with stop.deferred():
        write_results(out, results)


def _stop_progress(reporter: Any) -> None:
    """Take a live progress bar off the terminal before an error message is printed."""
    progress = getattr(reporter, "_progress", None)
    if progress is not None:
        try:
            progress.stop()
        except Exception:  # noqa: BLE001 - cosmetic only
            pass
