"""`bench.py ab SUITE`: measure a base and a current variant interleaved, in one job, and compare.

The work is `cnnbench.compare.ab` (probe the variants, run in ABBA order, save both in one file) and
`cnnbench.compare` (verdicts, renderers); this module parses options, writes the requested outputs
and picks the exit code. No torch import here.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import fnmatch
import sys
from pathlib import Path
from typing import Any

from cnnbench.report.console import ProgressReporter, make_console
from cnnbench.commands import warn
from cnnbench.core.options import positive_int
from cnnbench.core.errors import EXIT_INTERRUPTED, EXIT_NOT_OK, EXIT_OK, ResultsFileError, UserError
from cnnbench.core.units import fmt_ms
from cnnbench import compare
from cnnbench.commands.compare import add_statistic_argument, write_outputs
from cnnbench.compare import ab as abmod
from cnnbench.compare.ab import DEFAULT_REPEATS, compare_ab, load_ab, render_ab_markdown, split_ab
from cnnbench.core import allocator
from cnnbench.core.allocator import DEFAULT, NAMES
from cnnbench.core.environment import collect_environment
from cnnbench.results.format import load_results, write_results
from cnnbench.results.lock import results_lock
from cnnbench.run import server as worker_server
from cnnbench.run.runner import StopFlag, Variant
from cnnbench.suite.importcheck import check_imports_in

HELP = "A/B: run a suite for a base and a current variant interleaved, then compare them (the CI gate)"
ORDER = 35
DESCRIPTION = """\
Run every case of SUITE for two variants of the code in one job, alternating base and current
worker processes case by case in ABBA order (base then current on even repeats, current then
base on odd ones), so machine drift falls equally on both. A variant is an interpreter
(--base-python, --current-python; default: this one) and extra import paths put first on the
worker's PYTHONPATH (--base-path, --current-path; e.g. a checkout of the base commit), so each
side measures with its own cnnbench and model code. Before measuring, each variant is probed:
the interpreter must run, import cnnbench and torch (exit 2 otherwise).

Sequential: from the 5th pair on, a case whose verdict is settled stops; the others go on up to
--repeats. `unchanged` can stop a case from the 5th pair; `regressed`/`improved` from the 7th,
the error spent across the looks on the same rank test (Hwang-Shih-DeCani spending, most of it
kept for the last look), so the false-alarm bound stays --alpha. A case still unsettled at
--repeats whose worker processes split into modes goes on up to --modal-repeats (default twice
--repeats; a tenth of --alpha is kept for those looks from the start, so the bound holds). The summary says how many
repeats each case used and why it stopped. --no-sequential runs every case the full --repeats.

One file (--out) holds both variants' results and the comparison, rewritten after every worker
process; Ctrl-C keeps everything measured (exit 130). The verdicts, the Markdown summary (to
--markdown, and appended to $GITHUB_STEP_SUMMARY when set) and the exit codes are those of
`bench.py compare`: 0 no regression, 1 a regression, 2 usage or file error.

`bench.py ab --from FILE` compares a saved A/B file again (other --threshold/--alpha, or one cut
short by Ctrl-C); --split PREFIX writes each variant as its own results file
(PREFIX-base.json, PREFIX-current.json) for `compare` and `report`. See docs/ci.md.
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("suite", nargs="?", metavar="SUITE", help="suite YAML file (or use --from FILE)")
    p.add_argument("--from", dest="from_file", metavar="FILE", help="do not measure: compare the variants of a saved A/B file")
    for side, what in (("base", "the reference, e.g. a checkout of the target branch"), ("current", "the code under test")):
        p.add_argument(
            f"--{side}-python", metavar="PY", help=f"interpreter for {what} (default: the one running bench.py)"
        )
        p.add_argument(
            f"--{side}-path",
            metavar="DIR",
            action="append",
            default=[],
            help=f"import path put first for {side} workers (repeatable), e.g. the directory holding its cnnbench/",
        )
    p.add_argument(
        "--repeats",
        type=positive_int,
        metavar="N",
        help=f"most worker processes per case and side (default: the suite's measure.repeats if > 1, else {DEFAULT_REPEATS})",
    )
    p.add_argument("--models", metavar="GLOB", action="append", help="only models matching GLOB (repeatable)")
    p.add_argument(
        "--oom-retry",
        action="store_true",
        help="as in `run`: a case that runs out of memory is retried at half the batch until it fits, for each "
        "side (the measured batch is recorded; sides measured at different batches are incomparable)",
    )
    p.add_argument(
        "--threshold",
        action="append",
        default=[],
        metavar="[METRIC:]PCT",
        help="slowdown that counts as a regression, e.g. 5%% or memory:10%%; repeatable (default: the suite's, else 5%%/10%%)",
    )
    p.add_argument("--alpha", type=float, metavar="P", help="significance level of each one-sided test (default 0.01)")

    add_statistic_argument(p)
    p.add_argument("--out", "-o", metavar="FILE", help="the A/B results file (default: results/ab-<suite>-<time>.json)")
    p.add_argument("--replace", action="store_true", help="overwrite --out if it exists")
    p.add_argument("--markdown", metavar="FILE", help="write the Markdown summary to FILE")
    p.add_argument("--json", metavar="FILE", help="write the comparison as JSON to FILE")
    p.add_argument("--split", metavar="PREFIX", help="also write PREFIX-base.json and PREFIX-current.json (plain results files)")
    p.add_argument("--quiet", "-q", action="store_true", help="no live output; print only the comparison")
    p.add_argument(
        "--no-sequential",
        dest="sequential",
        action="store_false",
        help="run every case the full --repeats (default: stop a case once its verdict is settled, "
        "the error spent across the looks; see docs/ci.md)",
    )
    p.add_argument(
        "--modal-repeats",
        type=int,
        metavar="N",
        help="most pairs for a case whose processes split into modes and is not settled at --repeats "
        "(sequential only; default: twice --repeats; a value <= --repeats turns the extension off)",
    )
    add_spawn_argument(p)
    add_allocator_argument(p)


def add_allocator_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--allocator",
        choices=NAMES,
        default=DEFAULT,
        help="memory allocator of the worker processes: jemalloc or tcmalloc (preloaded; Debian's "
        "libjemalloc2 / libtcmalloc-minimal4), glibc-tuned (glibc malloc, fixed mmap threshold), or "
        "the default; recorded in the results' environment (measured effect: docs/processes.md)",
    )


def add_spawn_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--spawn",
        action="store_true",
        help="start every worker as a fresh interpreter (default: fork it from a pre-imported worker "
        "server per variant, which saves the torch import; see docs/ci.md)",
    )


def _thresholds(args: argparse.Namespace) -> tuple[dict[str, Any], float]:
    thresholds: dict[str, Any] = {}
    for text in args.threshold:
        thr = compare.parse_threshold(text, source="command line")
        thresholds[thr.metric] = thr
    alpha = compare.DEFAULT_ALPHA if args.alpha is None else args.alpha
    if not 0 < alpha < 0.5:
        raise UserError(f"--alpha must be between 0 and 0.5, got {alpha:g}")
    return thresholds, alpha


def _select_cases(cases: list, args: argparse.Namespace) -> list:
    if args.repeats is not None and args.repeats < 1:
        raise UserError(f"--repeats must be positive, got {args.repeats}")
    if getattr(args, "modal_repeats", None) is not None and args.modal_repeats < 0:
        raise UserError(f"--modal-repeats must be 0 or more, got {args.modal_repeats}")
    if args.models:
        cases = [c for c in cases if any(fnmatch.fnmatchcase(c.model, g) for g in args.models)]
        if not cases:
            raise UserError("no case left after --models filters")
    out = []
    for c in cases:
        repeats = args.repeats or (c.measure.repeats if c.measure.repeats > 1 else DEFAULT_REPEATS)
        out.append(c.replace(measure=c.measure.__class__(**{**c.measure.to_dict(), "repeats": repeats})))
    return out


def _report(ab: dict[str, Any], args: argparse.Namespace, thresholds: dict[str, Any], alpha: float):
    """Compare, write every requested output, print the table; returns the Comparison."""

    comparison = compare_ab(ab, alpha=alpha, thresholds=thresholds, statistic=args.statistic)

    write_outputs(comparison, render_ab_markdown(ab, comparison), markdown_path=args.markdown, json_path=args.json)
    if args.split:
        for path in split_ab(ab, args.split).values():
            print(f"wrote {path}")
    console = make_console(soft_wrap=False)
    compare.render_terminal(comparison, console)
    for note in ab.get("notes") or []:
        console.print(f"note: {note}", markup=False, highlight=False)
    seq = ab.get("sequential") or {}
    if seq.get("cases"):
        cases = seq["cases"].values()
        most = int((seq.get("plan") or {}).get("max_repeats") or 0)
        early = sum(c.get("stopped") == "settled" and (c.get("repeats") or 0) < most for c in cases)
        used = sum(2 * int(c.get("repeats") or 0) for c in cases)
        extended = [c for c in cases if c.get("extended")]
        more = f"; {len(extended)} modal case(s) went past {most} repeats" if extended else ""
        console.print(
            f"sequential: {early} of {len(seq['cases'])} case(s) settled before {most} repeats; "
            f"{used} of {2 * most * len(seq['cases'])} planned worker processes ran{more}",
            markup=False, highlight=False,
        )  # fmt: skip
    return comparison



class ConsoleAbReporter(ProgressReporter):
    """A progress bar with ETA, and one line per finished worker process tagged with its variant."""

    def case_started(self, spec, repeat: int, variant: str) -> None:
        if self._progress is not None:
            self._progress.update(self._task, description=f"{variant}: {spec.model} b{spec.batch_size} {spec.backend}")

    def case_finished(self, record: dict[str, Any], run: dict[str, Any], variant: str) -> None:
        if self._progress is None:
            return
        tag = f"[cyan]{variant:>7}[/cyan]"
        n, planned = run.get("repeat", 0) + 1, record["repeats_planned"]
        rep = f"repeat {n}/{planned}" + (" (modal: past the planned maximum)" if n > planned else "")
        if n > planned:  # a process the plan did not count: grow the bar's total by one
            task = next(t for t in self._progress.tasks if t.id == self._task)
            self._progress.update(self._task, total=(task.total or 0) + 1)
        last = (record.get("runs") or [{}])[-1]
        if run.get("status") == "ok" and last.get("median_ms") is not None:
            line = f"{tag} [green]✓[/green] {record['key']} ({rep}): {fmt_ms(last['median_ms'])} ms median"
        else:
            line = f"{tag} [red]✗[/red] {record['key']} ({rep}): [red]{run.get('status')}[/red]: {run.get('error') or ''}"
        self._progress.console.print(line, highlight=False)
        self._progress.advance(self._task)

    def finish(self, ab: dict[str, Any]) -> None:
        self.stop()


def _default_out(suite_name: str) -> Path:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("results") / f"ab-{suite_name}-{stamp}.json"


def run(args: argparse.Namespace) -> int:
    thresholds, alpha = _thresholds(args)
    if args.from_file:
        if args.suite:
            raise UserError("give either SUITE (to measure) or --from FILE (to compare a saved run), not both")

        ab = load_ab(args.from_file)
        comparison = _report(ab, args, thresholds, alpha)
        if ab.get("status") != "complete":
            print(f"note: {args.from_file} is {ab.get('status')}: not every planned worker process ran")
        return EXIT_NOT_OK if comparison.has_regression else EXIT_OK
    if not args.suite:
        raise UserError("give a SUITE to measure, or --from FILE to compare a saved A/B run")
    return _measure(args, thresholds, alpha, EXIT_OK, EXIT_NOT_OK, EXIT_INTERRUPTED)


def _measure(args: argparse.Namespace, thresholds: dict[str, Any], alpha: float, ok: int, not_ok: int, interrupted: int) -> int:
    from cnnbench.suite.schema import load_suite

    suite_path = Path(args.suite)
    # Validate before anything heavy; user models' imports are checked on each variant's own
    # interpreter and paths once the variants are known (`check_variant_imports`), not here.
    suite = load_suite(suite_path, cuda_available=False, check_imports=False)
    cases = _select_cases(list(suite.cases), args)
    out = Path(args.out) if args.out else _default_out(suite.name)
    if out.exists() and out.is_dir():
        raise ResultsFileError(str(out), "is a directory")
    if out.exists() and not args.replace:
        raise ResultsFileError(str(out), "exists; pass --replace to overwrite it")

    with results_lock(out):  # two jobs never write one file; checked again under the lock
        if out.exists():
            _check_replaceable(out)
        return _measure_locked(args, suite_path, suite, cases, out, thresholds, alpha, ok, not_ok, interrupted)


def check_variant_imports(variants: dict[str, Any], cases: list, *, extra_paths: Any, suite_path: Path) -> None:
    """Each user model (`package.module:callable`) must import on every variant's own interpreter
    and worker PYTHONPATH: a model that lives only in the two checkouts being compared is fine.
    A VariantError (exit 2) names the variant, the suite and the import that failed."""

    targets = sorted({c.source for c in cases if getattr(c, "source", None)})
    for name, variant in variants.items():
        if not targets:
            return
        where = f"{name} ({variant.python}" + (f" with {', '.join(variant.paths)} first on the path" if variant.paths else "") + ")"
        failed = check_imports_in(variant.python, abmod.worker_pythonpath(variant, extra_paths), targets,
                                  timeout_s=abmod.PROBE_TIMEOUT_S)  # fmt: skip
        if failed:
            target, error = next(iter(sorted(failed.items())))
            more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
            raise abmod.VariantError(f"{suite_path}: {where}: {error}{more}")


def _check_replaceable(out: Path) -> None:
    """--replace overwrites a file of ours only (an A/B or a results file): a truncated, corrupt
    or foreign file named by mistake is refused and left exactly as it is."""

    try:
        abmod.load_ab(out)
        return
    except ResultsFileError:
        pass
    try:
        load_results(out)
    except ResultsFileError as exc:
        reason = str(exc).removeprefix(f"{exc.path}: ")
        raise ResultsFileError(str(out), f"{reason}; will not replace it (the file is left untouched)") from exc


def _measure_locked(
    args: argparse.Namespace, suite_path: Path, suite: Any, cases: list, out: Path,
    thresholds: Any, alpha: float, ok: int, not_ok: int, interrupted: int,
) -> int:
    from cnnbench.suite.schema import load_suite

    allocator.apply(getattr(args, "allocator", None))  # before the probes and servers: they copy os.environ
    variants = {
        name: Variant(
            name=name,
            python=abmod.resolve_python(getattr(args, f"{name}_python") or sys.executable, option=f"--{name}-python"),
            paths=abmod.resolve_paths(getattr(args, f"{name}_path"), option=f"--{name}-path"),
        )
        for name in abmod.VARIANT_NAMES
    }
    if not args.quiet:
        print("checking the variants (each imports cnnbench and torch) ...", flush=True)
    infos = abmod.probe_variants(variants, extra_paths=suite.python_path)
    check_variant_imports(variants, cases, extra_paths=suite.python_path, suite_path=suite_path)
    if (infos["current"].get("environment") or {}).get("cuda_available") and any(c.device == "cpu" for c in cases):
        suite = load_suite(suite_path, cuda_available=True, check_imports=False)  # `auto` now resolves to cuda
        cases = _select_cases(list(suite.cases), args)

    suite_info = suite.info(path=suite_path, cases=cases)
    repeats = sorted({c.measure.repeats for c in cases})
    design = {
        "repeats": repeats[0] if len(repeats) == 1 else repeats,
        "cases": len(cases),
        "worker_processes_planned": len(abmod.schedule(cases)),
        "alpha": alpha,
        "thresholds": {m: str(t) for m, t in thresholds.items()},
        "sequential": bool(args.sequential),
        "worker_start": "spawn" if args.spawn else "fork",
    }
    doc = abmod.new_ab_results(
        environment=collect_environment(with_torch=False), suite=suite_info, variants=variants, infos=infos, design=design
    )

    write_results(out, doc)  # fail early (permissions, disk) before measuring anything
    if not args.quiet:
        for name in abmod.VARIANT_NAMES:
            v = doc["variants"][name]["variant"]
            print(f"{name:>7}: {v['python']} {' '.join(v['paths'])} (cnnbench from {v['cnnbench_dir']})")
    reporter: Any = abmod.NullReporter() if args.quiet else ConsoleAbReporter(title=f"ab {suite.name}")
    stop = StopFlag()
    restore = stop.install()

    try:
        with worker_server.session(enabled=not args.spawn, warn=warn):  # one server per variant
            state = abmod.run_ab(cases, ab=doc, out_path=out, variants=variants, reporter=reporter,
                                 extra_paths=suite.python_path, stop=stop, sequential=args.sequential,
                                 modal_repeats=args.modal_repeats, alpha=alpha, thresholds=thresholds, statistic=args.statistic,
                                 oom_retry=args.oom_retry)  # fmt: skip
        state.interrupted = state.interrupted or stop.requested  # a Ctrl-C while the servers shut down
    finally:
        restore()
        reporter.finish(doc)

    comparison = _report(doc, args, thresholds, alpha)
    doc["comparison"] = compare.to_json(comparison)
    write_results(out, doc)
    print(f"results: {out}")
    if state.interrupted:
        print("interrupted: every finished worker process is in the file; the comparison covers them")
        return interrupted
    if comparison.has_regression:
        return not_ok
    return ok if _all_on_disk(out, [c.key for c in cases]) else not_ok


def _all_on_disk(out: Any, keys: list[str]) -> bool:
    """Read the file back: exit 0 only when both variants hold every case, ok (never for
    "nothing ran" or "not saved")."""
    import sys

    try:
        doc = abmod.load_ab(out)
    except ResultsFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return False
    for name in abmod.VARIANT_NAMES:
        status = {r.get("key"): r.get("status") for r in abmod.variant_results(doc, name)["cases"]}
        missing = [k for k in keys if status.get(k) != "ok"]
        if missing or not keys:
            what = f"{len(missing)} case(s) are not ok in variant {name}, e.g. {missing[0]}" if missing else "no case"
            print(f"error: {out}: read back after the run, {what}", file=sys.stderr)
            return False
    return True
