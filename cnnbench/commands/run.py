"""`bench.py run [SUITE]`: measure every case of a suite, print a live table, save results."""

from __future__ import annotations

import argparse
import datetime as _dt
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
    "every case measured so far. Exit code: 0 all cases ok, 1 some case not ok, 2 usage or suite "
    "error, 130 interrupted."
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
    p.add_argument("--quiet", "-q", action="store_true", help="no live output; print only the final table")


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
    return out


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
    """An exclusive lock file beside the results file, so two runs never interleave records.

    The lock holds host and pid; a lock left by a dead process on this host is taken over.
    """
    lock = out.with_name(out.name + ".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    me = f"{socket.gethostname()} {os.getpid()}"
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                host, pid = lock.read_text(encoding="utf-8").split()
            except (OSError, ValueError):
                host, pid = "", "0"
            if host == socket.gethostname() and not _pid_alive(int(pid)):
                lock.unlink(missing_ok=True)
                continue
            raise ResultsFileError(
                str(out), f"another run is writing this file (lock {lock} held by {host} pid {pid})"
            ) from None
        except OSError as exc:
            raise ResultsFileError(str(out), f"cannot create lock file ({exc.strerror})") from exc
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(me)
        break
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _resume_state(out: Path, cases: list, environment: dict[str, Any]) -> tuple[dict[str, Any], list]:
    """Keep the records already ok (same key, compatible environment); return the cases to run."""
    from cnnbench.results import load_results

    old = load_results(out)
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
    done = {r["key"] for r in kept}
    old["cases"] = kept
    return old, [c for c in cases if c.key not in done]


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
    if out.exists() and out.is_dir():
        raise ResultsFileError(str(out), "is a directory")
    if out.exists() and not (args.replace or args.resume):
        raise ResultsFileError(str(out), "exists; pass --replace to overwrite it or --resume to continue it")
    if args.resume and not out.exists():
        raise ResultsFileError(str(out), "--resume needs an existing results file")

    if any(c.device == "cpu" for c in cases) and _cuda_available():
        suite = load_suite(suite_path, cuda_available=True)  # `auto` now resolves to cuda
        cases = _apply_overrides(list(suite.cases), args)

    from cnnbench.console import ConsoleReporter, render_notes, render_table
    from cnnbench.environment import collect_environment
    from cnnbench.results import new_results, write_results
    from cnnbench.runner import StopFlag, run_cases

    environment = collect_environment()
    suite_info = {
        "name": suite.name,
        "path": str(suite_path),
        "sha256": suite.sha256,
        "description": suite.description,
        "thresholds": suite.thresholds,
        "case_count": len(cases),
    }
    with results_lock(out):
        if args.resume:
            results, cases = _resume_state(out, cases, environment)
            results["suite"] = suite_info
        else:
            results = new_results(environment=environment, suite=suite_info)
        write_results(out, results)  # fail early (permissions, disk) before measuring anything

        if args.quiet:
            from cnnbench.console import QuietReporter

            reporter: Any = QuietReporter()
        else:
            reporter = ConsoleReporter(title=suite.name)
        stop = StopFlag()
        restore = stop.install()
        try:
            state = run_cases(
                cases, results=results, out_path=out, reporter=reporter, stop=stop,
                extra_paths=suite.python_path,
            )
        finally:
            restore()
        reporter.finish(results)
    if args.quiet:
        from cnnbench.console import make_console

        console = make_console()
        console.print(render_table(results["cases"], title=f"cnnbench: {suite.name}"))
        for line in render_notes(results["cases"]):
            console.print(line, markup=False, highlight=False)
    print(f"results: {out}")
    if state.interrupted:
        print("interrupted: every completed case is in the results file; --resume continues it")
        return 130
    return 0 if all(r["status"] == "ok" for r in results["cases"]) else 1
