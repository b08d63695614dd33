"""`bench.py run [SUITE]`: measure every case of a suite, print a live table, save results."""

from __future__ import annotations

import argparse
import datetime as _dt
import fnmatch
import sys
from pathlib import Path
from typing import Any

from cnnbench.core.errors import ResultsFileError, UserError
from cnnbench.results.lock import results_lock
from cnnbench.core.options import positive_float, positive_int
from cnnbench.commands import warn
from cnnbench.commands.ab import add_allocator_argument, add_spawn_argument
from cnnbench.commands.store import add_run_store_arguments, store_after_run
from cnnbench.core import allocator
from cnnbench.core.environment import PROJECT_ROOT, collect_environment
from cnnbench.core.safeio import check_target
from cnnbench.core.spec import BACKENDS
from cnnbench.report.console import ConsoleReporter, QuietReporter, make_console, render_notes, render_table
from cnnbench.results.format import load_results, new_results, write_results
from cnnbench.run import server as worker_server
from cnnbench.run.peak import measure_peak
from cnnbench.run.runner import StopFlag, run_cases
from cnnbench.run.shard import SHARD_HELP, apply_shard, format_shard, parse_shard, resolve_shard
from cnnbench.stats.processes import DEFAULT_PROCESSES
from cnnbench.core.safeio import atomic_write
from cnnbench.commands.quick import QUICK_NAME, add_quick_arguments, quick_suite, split_list, suite_yaml, wants_quick_matrix

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
    p.add_argument("suite", nargs="?", default=None,
                   help=f"suite YAML file (default: {DEFAULT_SUITE}; without it, --models ... builds a quick matrix)")  # fmt: skip
    p.add_argument("--out", "-o", metavar="FILE", help="results file (default: results/<suite>-<time>.json)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--replace", action="store_true", help="overwrite FILE if it exists")
    mode.add_argument("--resume", action="store_true", help="keep the cases already ok in FILE, run the rest")
    p.add_argument(
        "--force",
        action="store_true",
        help="with --resume/--replace: accept a FILE written for another suite (another name, or the "
        "suite file edited since: its sha256 differs); without it such a file is refused",
    )
    p.add_argument("--models", metavar="GLOB", action="append",
                   help="only models matching GLOB (repeatable, or a,b); without SUITE: the quick matrix's models")  # fmt: skip
    p.add_argument("--backends", metavar="NAME", action="append",
                   help="only these backends (repeatable, or a,b); without SUITE: the quick matrix's (default eager)")  # fmt: skip
    add_quick_arguments(p)

    p.add_argument("--repeats", type=positive_int, metavar="N",
                   help=f"worker processes per case (overrides the suite; default: the suite's measure.repeats, else "
                        f"{DEFAULT_PROCESSES}); without measure.repeats in the suite they share the case's min/max time")  # fmt: skip
    p.add_argument("--timeout", type=positive_float, metavar="S", help="per-worker timeout in seconds (overrides the suite)")
    p.add_argument("--max-time", type=positive_float, metavar="S", help="max timed seconds per case (overrides the suite)")
    p.add_argument(
        "--oom-retry",
        action="store_true",
        help="when a case runs out of memory, halve its batch and retry until it fits (the measured "
        "batch is recorded and shown, e.g. '16 (of 32)'; other errors are never retried)",
    )
    p.add_argument("--no-peak", action="store_true",
                   help="skip measuring the machine's peak GFLOP/s (a GEMM in one worker, ~6 s) used for '%% of peak' in reports")
    p.add_argument("--shard", metavar="K/N|auto", help=_shard_help())
    p.add_argument("--quiet", "-q", action="store_true", help="no live output; print only the final table")

    add_run_store_arguments(p)
    p.add_argument("--wide", action="store_true",
                   help="every column in the final table: cold start, params, MACs, memory, top-1, and energy per "
                        "image, average W, images/J and idle W (docs/energy.md)")

    add_spawn_argument(p)
    add_allocator_argument(p)


def _shard_help() -> str:
    return SHARD_HELP


def _positive(name: str, value: float | None) -> None:
    if value is not None and value <= 0:
        raise UserError(f"--{name} must be positive, got {value:g}")


def _default_repeats(args: argparse.Namespace) -> int:
    """Processes for a case whose suite sets no measure.repeats: --repeats, else the honest
    default (`processes.DEFAULT_PROCESSES`); they share the case's min/max time (suite.load_suite)."""

    return args.repeats if args.repeats and args.repeats > 0 else DEFAULT_PROCESSES


def _apply_overrides(cases: list, args: argparse.Namespace) -> list:
    for name in ("repeats", "timeout", "max_time"):
        _positive(name.replace("_", "-"), getattr(args, name))
    all_cases = cases
    backends, models = split_list(args.backends), split_list(args.models)
    if backends:
        unknown = sorted(set(backends) - set(BACKENDS))
        if unknown:
            raise UserError(f"--backends: unknown backend {unknown[0]!r} (known: {', '.join(BACKENDS)})")
        cases = [c for c in cases if c.backend in backends]
    if models:
        cases = [c for c in cases if any(fnmatch.fnmatchcase(c.model, g) for g in models)]
    if not cases:
        raise UserError(f"no case left after --models/--backends filters; {_what_the_suite_has(all_cases)}")
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

    return apply_shard(out, args.shard)


def _what_the_suite_has(cases: list) -> str:
    """"the suite has models: a, b; backends: eager, onnxrt" (a filter that left nothing)."""
    if not cases:
        return "the suite has no case"
    models = ", ".join(dict.fromkeys(c.model for c in cases))
    backends = ", ".join(dict.fromkeys(c.backend for c in cases))
    return f"the suite has models: {models}; backends: {backends}"


def _resolve_suite_path(path: str | None) -> Path:
    if path is None:
        path = DEFAULT_SUITE
    p = Path(path)
    if not p.exists() and path == DEFAULT_SUITE:

        p = Path(PROJECT_ROOT) / DEFAULT_SUITE
    return p


def _default_out(suite_name: str) -> Path:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("results") / f"{suite_name}-{stamp}.json"


def _check_out(out: Path, args: argparse.Namespace) -> None:
    """Refuse what would lose data, before anything is measured."""

    check_target(out)  # a directory, FIFO, device, symlink or too long a name: one line, exit 2
    check_target(out.with_name(out.name + ".lock"))
    exists = out.exists() or out.is_symlink()
    if exists and not (args.replace or args.resume):
        raise ResultsFileError(str(out), "exists; pass --replace to overwrite it or --resume to continue it")
    if args.resume and not exists:
        raise ResultsFileError(str(out), "--resume needs an existing results file")


def _load_previous(out: Path, args: argparse.Namespace) -> dict[str, Any] | None:
    """The results file a --resume continues or a --replace overwrites, checked under the lock.

    Either way a file that is not a loadable cnnbench results file (truncated, corrupted, newer,
    or something else named by mistake; every record is checked on load) is refused and left
    exactly as it is.
    """

    if not out.exists():
        return None
    try:
        previous = load_results(out)
    except ResultsFileError as exc:
        verb = "resume" if args.resume else "replace"
        reason = str(exc).removeprefix(f"{exc.path}: ")
        raise ResultsFileError(str(out), f"{reason}; will not {verb} it (the file is left untouched)") from exc
    return previous


def _short(value: Any) -> str:
    return repr(value[:12] + "...") if isinstance(value, str) and len(value) > 12 else repr(value)


def _check_same_suite(previous: dict[str, Any], suite: Any, out: Path, args: argparse.Namespace) -> None:
    """--resume and --replace act on a file of *this* suite: another suite's name, or the
    suite's file changed since (its sha256), is refused unless --force. A resume would
    otherwise drop the other suite's records and relabel the file, and a replace would
    overwrite another suite's results."""
    old = previous.get("suite") if isinstance(previous.get("suite"), dict) else {}
    verb = "resume" if args.resume else "replace"
    for field, here in (("name", suite.name), ("sha256", suite.sha256)):
        there = old.get(field)
        if there != here:
            raise ResultsFileError(
                str(out),
                f"written for another suite (suite {field} {_short(there)} in the file, {_short(here)} here); "
                f"will not {verb} it (the file is left untouched); pass --force if you mean to",
            )


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
    from cnnbench.suite.schema import load_suite

    args.shard, args.shard_source = resolve_shard(args.shard)  # `auto`: K/N from the scheduler
    if wants_quick_matrix(args):
        text = suite_yaml(quick_suite(args))
        if args.print_suite:
            print(text, end="")
            return 0
        out = Path(args.out) if args.out else _default_out(QUICK_NAME)
        args.out, args.models, args.backends = str(out), None, None  # the flags are the matrix, not filters
        suite_file = out.with_name(out.name + ".suite.yaml")  # beside the results: they name it, it reproduces them
        atomic_write(suite_file, text)
        args.suite = str(suite_file)
    elif args.print_suite:
        print(_resolve_suite_path(args.suite).read_text(encoding="utf-8"), end="")
        return 0
    suite_path = _resolve_suite_path(args.suite)
    # Validate fully before anything heavy: torch is imported only once the suite is known good.
    suite = load_suite(suite_path, cuda_available=False, default_repeats=_default_repeats(args))
    cases = _apply_overrides(list(suite.cases), args)
    out = Path(args.out) if args.out else _default_out(suite.name)
    _check_out(out, args)

    with results_lock(out):  # before torch: a second run on the same file is refused at once
        _check_out(out, args)  # again: another run may have created the file before we locked
        previous = _load_previous(out, args)
        if previous is not None and not args.force:
            _check_same_suite(previous, suite, out, args)
        return _run_locked(args, suite_path, suite, cases, out, previous)


def _run_locked(args, suite_path: Path, suite, cases: list, out: Path, previous: dict[str, Any] | None) -> int:
    # Until the first save, Ctrl-C is Python's KeyboardInterrupt: nothing is measured yet and the
    # results file is untouched, so the run ends at once (mid torch import included) with 130.
    if any(c.device == "cpu" for c in cases) and _cuda_available():
        from cnnbench.suite.schema import load_suite

        suite = load_suite(suite_path, cuda_available=True, default_repeats=_default_repeats(args))  # `auto`: cuda now
        cases = _apply_overrides(list(suite.cases), args)

    allocator.apply(getattr(args, "allocator", None))  # before any worker or server starts: they copy os.environ
    environment = collect_environment()
    suite_info = suite.info(path=suite_path, cases=cases)
    if args.shard:

        suite_info["shard"] = format_shard(*parse_shard(args.shard))
        suite_info["shard_source"] = getattr(args, "shard_source", None) or "cli"
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
        reporter: Any = getattr(args, "reporter", None)  # the Python API's (cnnbench.api), else the terminal's
        if reporter is None:
            reporter = QuietReporter() if args.quiet else ConsoleReporter(title=suite.name, wide=args.wide)

        try:
            with worker_server.session(enabled=not args.spawn, warn=warn):  # fork each worker from a server
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

        console = make_console()
        console.print(render_table(results["cases"], title=f"cnnbench: {suite.name}", wide=args.wide))
        for line in render_notes(results["cases"]):
            console.print(line, markup=False, highlight=False)
    print(f"results: {out}")
    if state.interrupted:
        print("interrupted: every completed case is in the results file; --resume continues it")
        return stop.exit_code  # 130 for SIGINT, 128 + the signal otherwise
    if not all(r["status"] == "ok" for r in results["cases"]):
        code = 1
    else:
        code = _verify_on_disk(out, [c.key for c in cases] + [r["key"] for r in results["cases"]])

    return store_after_run(args, out, code)


def _verify_on_disk(out: Path, keys: list[str]) -> int:
    """Success only when the file, read back, holds every case ok: "nothing ran" or "ran but
    not saved" is never exit code 0 (a CI gate must not pass on it). The one exception is a
    shard that was planned empty (`--shard 5/8` of a 4-case suite): it writes an empty file by
    design, so a scheduler's array and `merge` see every shard succeed."""

    try:
        on_disk = {r.get("key"): r.get("status") for r in load_results(out)["cases"] if isinstance(r, dict)}
    except ResultsFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    missing = [k for k in dict.fromkeys(keys) if on_disk.get(k) != "ok"]
    if not keys and not on_disk:  # an empty shard (more shards than cases) planned nothing: its empty file is the result
        return 0
    if missing or not on_disk:
        what = f"{len(missing)} case(s) are not ok in it, e.g. {missing[0]}" if missing else "it holds no case"
        print(f"error: {out}: read back after the run, {what}", file=sys.stderr)
        return 1
    return 0


def _measure_peak(results: dict[str, Any], cases: list, *, out: Path, stop: Any, quiet: bool) -> None:
    """Measure the peak GFLOP/s once, in a worker with the cases' threads and device, and save it
    in the environment (reports show each case's achieved GFLOP/s as a percentage of it)."""
    import tempfile

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
