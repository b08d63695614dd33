"""Interleaved A/B runs: measure two variants of the code in one job, then compare them.

Why: on a shared machine timings drift, so a baseline recorded earlier carries the drift into
the comparison as a bias no test can remove. `run_ab` runs the base and current variants' worker
processes alternately, case by case, in ABBA order (`pair_order`), so both sides see the same
machine at the same time. A case stops on both sides after the first pair with a process that
did not end `ok`. One JSON file (`new_ab_results`: both variants as complete results files, the
order the processes really ran in, the comparison) is rewritten after every process; `split_ab`
writes each variant out for `compare` or `report`. With `sequential` (the default of `bench.py
ab`) a case stops once its verdict is settled (`cnnbench.stats.sequential`: alpha spent across looks on
the regression test, `unchanged` a non-binding stop) and `measure.repeats` is the maximum. A `Variant` is an interpreter plus import
paths; `probe_variant` checks it can run workers before anything is measured. The measured
rationale, the design and the file format: docs/ci.md.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Protocol, Sequence

from cnnbench.core.errors import ResultsFileError, UserError
from cnnbench.results.schema import SCHEMA_VERSION, migrate, now_iso
from cnnbench.results.format import build_record, new_results, upsert_record, write_results
from cnnbench.core.environment import PROJECT_ROOT
from cnnbench.run import runner
from cnnbench.run.runner import CaseStep, StopFlag, Variant, save_results, second_signal_reason
from cnnbench.core.spec import CaseSpec
from cnnbench import compare
from cnnbench.compare import looks
from cnnbench.compare.looks import render_markdown as sequential_markdown
from cnnbench.results import records
from cnnbench.stats import processes, sequential

if TYPE_CHECKING:  # pragma: no cover
    from cnnbench.compare import Comparison

__all__ = [
    "AB_KIND",
    "AB_FORMAT_VERSION",
    "VARIANT_NAMES",
    "DEFAULT_REPEATS",
    "VariantError",
    "pair_order",
    "schedule",
    "probe_variant",
    "probe_variants",
    "new_ab_results",
    "run_ab",
    "compare_ab",
    "load_ab",
    "variant_results",
    "split_ab",
    "describe_variant",
]

AB_KIND = "ab"
# Format history of the A/B wrapper (the variant pieces follow results.SCHEMA_VERSION):
# 1: cnnbench 0.1 - variants {base, current} as results files, sequence, design, comparison.
# 2: optional "sequential" {plan, plans, cases}: cases stopped early, each judged at its last
#    look's level (an older cnnbench would judge them at plain alpha, so it must refuse these).
AB_FORMAT_VERSION = 2
VARIANT_NAMES = ("base", "current")
# Repeats per side when neither --repeats nor the suite (measure.repeats > 1) says. 5 is the fewest
# with which the one-sided rank test can reach the default alpha of 0.01 (1 / C(10, 5) = 0.004),
# but then one process that is slow throughout (it happens on a shared machine) costs the test
# its significance. Measured here (benchmarks/compare_validation.py, docs/ci.md): at 5 repeats a
# +10% slowdown was caught in 83% of comparisons, at 9 in 100% (real run: 6/6 A/A unchanged,
# +10% and +25% regressed), with no false alarm either way.
DEFAULT_REPEATS = 9
# A probe imports torch (environment facts); a cold import on a loaded machine can take long.
PROBE_TIMEOUT_S = 180.0
_PROBE_MARK = "CNNBENCH-PROBE "
_SAFE_PATH = "PYTHONSAFEPATH"

# Run by each variant's interpreter with that variant's PYTHONPATH: which cnnbench it imports,
# and its environment. Only stdlib before `import cnnbench`; prints one marked JSON line.
_PROBE_CODE = f"""
import json, os, sys
out = {{"executable": sys.executable, "python": sys.version.split()[0]}}
try:
    import cnnbench, cnnbench.measure.worker
except BaseException as exc:
    out["error"] = "cannot import cnnbench: %s: %s" % (type(exc).__name__, exc)
else:
    out["cnnbench_dir"] = os.path.dirname(os.path.abspath(cnnbench.__file__))
    out["cnnbench_version"] = getattr(cnnbench, "__version__", None)
    try:
        from cnnbench.core.environment import collect_environment
        out["environment"] = collect_environment()
    except BaseException as exc:
        out["error"] = "cannot collect its environment (is torch installed for it?): %s: %s" % (type(exc).__name__, exc)
print({_PROBE_MARK!r} + json.dumps(out, default=str))
"""


class VariantError(UserError):
    """A variant that cannot run workers (bad interpreter, no cnnbench, no torch): exit code 2."""


# -- the order ------------------------------------------------------------------------------------


def pair_order(repeat: int) -> tuple[str, str]:
    """Which variant runs first in the pair of processes of `repeat` (0-based): ABBA."""
    return ("base", "current") if repeat % 2 == 0 else ("current", "base")


def schedule(cases: Sequence[CaseSpec]) -> list[tuple[int, CaseSpec, str]]:
    """The planned order of worker processes: (repeat, case, variant), repeats interleaved."""
    return [(repeat, spec, name) for repeat, spec in _pairs(cases) for name in pair_order(repeat)]


# -- variants -------------------------------------------------------------------------------------


def worker_pythonpath(variant: Variant, extra_paths: Iterable[str]) -> str:
    """The PYTHONPATH `runner.run_worker` gives this variant's workers (kept in step with it)."""
    paths = [*variant.paths, *extra_paths, str(PROJECT_ROOT)]
    if os.environ.get("PYTHONPATH"):
        paths.append(os.environ["PYTHONPATH"])
    return os.pathsep.join(paths)


def resolve_python(python: str, *, option: str) -> str:
    """An interpreter given on the command line, as an absolute path; VariantError if unusable."""
    if os.sep not in python and not Path(python).exists():
        found = shutil.which(python)
        if found is None:
            raise VariantError(f"{option} {python}: not found on PATH")
        python = found
    path = Path(python).expanduser()
    if not path.exists():
        raise VariantError(f"{option} {python}: no such file")
    if path.is_dir():
        raise VariantError(f"{option} {python}: is a directory, not a Python interpreter")
    if not os.access(path, os.X_OK):
        raise VariantError(f"{option} {python}: not executable")
    # Absolute but not resolved: a venv's bin/python is a symlink whose *path* selects the venv.
    return str(path.absolute())


def resolve_paths(paths: Iterable[str], *, option: str) -> tuple[str, ...]:
    """Import paths given on the command line, absolute; VariantError if one is not a directory."""
    out = []
    for p in paths:
        path = Path(p).expanduser()
        if not path.is_dir():
            raise VariantError(f"{option} {p}: no such directory")
        out.append(str(path.resolve()))
    return tuple(out)


def _option(name: str, what: str) -> str:
    return f"--{name}-{what}"


def _start_probe(variant: Variant, extra_paths: Sequence[str]) -> subprocess.Popen:
    env = dict(os.environ)
    env["PYTHONPATH"] = worker_pythonpath(variant, extra_paths)
    env[_SAFE_PATH] = "1"  # as `runner.run_worker` starts the workers
    try:
        return subprocess.Popen(
            [variant.python, "-c", _PROBE_CODE],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
    except OSError as exc:
        raise VariantError(f"{_option(variant.name, 'python')} {variant.python}: cannot run it ({exc.strerror or exc})") from exc


def _finish_probe(variant: Variant, proc: subprocess.Popen, timeout_s: float) -> dict[str, Any]:
    where = f"{variant.name} ({variant.python}" + (f" with {', '.join(variant.paths)} first on the path" if variant.paths else "") + ")"
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise VariantError(f"{where}: did not answer within {timeout_s:g} s") from None
    lines = [ln for ln in out.splitlines() if ln.startswith(_PROBE_MARK)]
    if not lines:
        tail = [ln.strip() for ln in (err or out).strip().splitlines() if ln.strip()]
        why = tail[-1] if tail else f"exit code {proc.returncode}"
        raise VariantError(f"{where}: is not a working Python interpreter ({why})")
    info = json.loads(lines[-1][len(_PROBE_MARK):])
    if info.get("error"):
        raise VariantError(f"{where}: {info['error']}")
    return info


def probe_variant(variant: Variant, *, extra_paths: Sequence[str] = (), timeout_s: float = PROBE_TIMEOUT_S) -> dict[str, Any]:
    """Check that `variant` can run workers and return what it runs with.

    Returns:
        {"executable", "python", "cnnbench_dir", "cnnbench_version", "environment"}.

    Raises:
        VariantError: one line naming the variant and what is wrong.
    """
    return _finish_probe(variant, _start_probe(variant, tuple(extra_paths)), timeout_s)


def probe_variants(
    variants: Mapping[str, Variant], *, extra_paths: Sequence[str] = (), timeout_s: float = PROBE_TIMEOUT_S
) -> dict[str, dict[str, Any]]:
    """`probe_variant` for every variant, the interpreters started together (each imports torch)."""
    procs = {name: _start_probe(v, tuple(extra_paths)) for name, v in variants.items()}
    out: dict[str, dict[str, Any]] = {}
    try:
        for name, proc in procs.items():
            out[name] = _finish_probe(variants[name], proc, timeout_s)
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    return out


def describe_variant(variant: Variant, info: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What the file records about a variant (and the reports show)."""
    info = info or {}
    env = info.get("environment") or {}
    git = env.get("git") if isinstance(env.get("git"), dict) else {}
    return {
        "name": variant.name,
        "python": variant.python,
        "python_version": info.get("python"),
        "paths": list(variant.paths),
        "cnnbench_dir": info.get("cnnbench_dir"),
        "cnnbench_version": info.get("cnnbench_version"),
        "git_commit": git.get("commit"),
    }


def variant_notes(variants: Mapping[str, Variant], infos: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Facts about the two variants a reader should not have to dig for."""
    notes = []
    b, c = variants["base"], variants["current"]
    bi, ci = infos.get("base") or {}, infos.get("current") or {}
    if b.python == c.python and b.paths == c.paths:
        notes.append("base and current are the same interpreter with the same import paths: this is an A/A run")
    elif bi.get("cnnbench_dir") and bi.get("cnnbench_dir") == ci.get("cnnbench_dir"):
        notes.append(
            f"both variants import cnnbench from {bi['cnnbench_dir']}: only code on the variants' own paths "
            "(user models) or interpreters differs"
        )
    be, ce = bi.get("environment") or {}, ci.get("environment") or {}
    if be.get("torch") and ce.get("torch") and be["torch"] != ce["torch"]:
        notes.append(
            f"the variants run different torch versions ({be['torch']} vs {ce['torch']}): compare marks every case incomparable"
        )
    return notes


# -- the run --------------------------------------------------------------------------------------


class AbReporter(Protocol):
    def start(self, total_runs: int) -> None: ...
    def case_started(self, spec: CaseSpec, repeat: int, variant: str) -> None: ...
    def case_finished(self, record: dict[str, Any], run: dict[str, Any], variant: str) -> None: ...
    def finish(self, ab: dict[str, Any]) -> None: ...


class NullReporter:
    def start(self, total_runs: int) -> None: ...
    def case_started(self, spec: CaseSpec, repeat: int, variant: str) -> None: ...
    def case_finished(self, record: dict[str, Any], run: dict[str, Any], variant: str) -> None: ...
    def finish(self, ab: dict[str, Any]) -> None: ...


def new_ab_results(
    *,
    environment: dict[str, Any],
    suite: dict[str, Any],
    variants: Mapping[str, Variant],
    infos: Mapping[str, Mapping[str, Any]] | None = None,
    design: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """An empty A/B document: one results file per variant, nothing measured yet."""
    infos = infos or {}
    now = now_iso()
    pieces = {}
    for name in VARIANT_NAMES:
        info = infos.get(name) or {}
        piece = new_results(environment=dict(info.get("environment") or environment), suite=dict(suite))
        piece["variant"] = describe_variant(variants[name], info)
        pieces[name] = piece
    return {
        "schema_version": SCHEMA_VERSION,
        "tool": "cnnbench",
        "kind": AB_KIND,
        "ab_format_version": AB_FORMAT_VERSION,
        "created": now,
        "updated": now,
        "status": "running",
        "environment": environment,
        "suite": suite,
        "design": {"order": "ABBA", **dict(design or {})},
        "variants": pieces,
        "sequence": [],
        "notes": variant_notes(variants, infos),
        "comparison": None,
    }


@dataclass
class AbState:
    """Runs gathered so far, per variant and case key; cases a sequential look stopped."""

    runs: dict[str, dict[str, list[dict[str, Any]]]] = field(default_factory=lambda: {n: {} for n in VARIANT_NAMES})
    interrupted: bool = False
    stopped: dict[str, dict[str, Any]] = field(default_factory=dict)
    targets: dict[str, int] = field(default_factory=dict)  # pairs a case runs, when a look extended it


def run_ab(
    cases: Sequence[CaseSpec],
    *,
    ab: dict[str, Any],
    out_path: str | os.PathLike[str],
    variants: Mapping[str, Variant],
    reporter: AbReporter | None = None,
    extra_paths: Iterable[str] = (),
    stop: StopFlag | None = None,
    workdir: str | None = None,
    worker: Callable[..., dict[str, Any]] | None = None,
    oom_retry: bool = False,
    sequential: bool = False,
    modal_repeats: int | None = None,
    alpha: float | None = None,
    thresholds: Mapping[str, Any] | None = None,
    statistic: str | None = None,
) -> AbState:
    """Run every case for both variants in ABBA order, saving `ab` after every worker process.

    Args:
        cases: the cases; each runs `measure.repeats` times per variant.
        ab: the document from `new_ab_results`; records land in `ab["variants"][name]["cases"]`.
        out_path: where `ab` is written (atomically, after every process).
        variants: {"base": Variant, "current": Variant}.
        reporter: progress callbacks (default: none).
        extra_paths: import paths for both variants after their own (the suite's python_path).
        stop: a StopFlag; when set, the in-flight process is recorded `interrupted` and nothing
            else starts.
        workdir: scratch directory for the workers' spec/result files.
        worker: `runner.run_worker` or a stand-in with its signature (tests).
        oom_retry: halve the batch of a case that runs out of memory until it fits, as `run
            --oom-retry` does (`runner.CaseStep`, per variant; the batch measured is recorded).
        sequential: after each pair of a case, stop it once its verdict is settled
            (`cnnbench.stats.sequential`: alpha spent across looks); `measure.repeats`
            is then the maximum. What each case used and why it stopped lands in
            `ab["sequential"]`.
        modal_repeats: with `sequential`, the most pairs a case whose processes split into modes
            may use: at its planned maximum such a case goes on up to this (the plan keeps part of
            alpha for it, `cnnbench.stats.sequential`). Default 2 x `measure.repeats`; <= repeats: off.
        alpha, thresholds, statistic: the verdict's settings the looks use (compare's defaults).

    Returns:
        The runs per variant and key, and whether the run was interrupted.
    """
    worker = worker or runner.run_worker  # looked up now, so a patched runner is the one used
    reporter = reporter or NullReporter()
    state = AbState()
    extra_paths = tuple(extra_paths)
    reporter.start(len(schedule(cases)))
    own_workdir = workdir is None
    workdir = workdir or tempfile.mkdtemp(prefix="cnnbench-ab-")
    step = CaseStep(worker, workdir=workdir, stop=stop, extra_paths=extra_paths, oom_retry=oom_retry)
    saved = 0
    looks = (_Looks(ab, cases, alpha=alpha, thresholds=thresholds, statistic=statistic, modal_repeats=modal_repeats)
             if sequential else None)  # fmt: skip
    try:
        for repeat, spec in _pairs(cases, state.targets):
            if _case_failed(state, spec.key) or spec.key in state.stopped:
                continue  # a pair had a failed process, or the case is settled: no more pairs
            for name in pair_order(repeat):
                if stop is not None and stop.requested:
                    state.interrupted = True
                    break
                run, record = _run_one(spec, repeat, name, ab=ab, state=state, variants=variants, reporter=reporter,
                                       step=step, out_path=out_path)  # fmt: skip
                lost = f"{spec.key} ({name}, {run.get('status')})"
                save_results(out_path, ab, saved_cases=saved, lost=lost, stop=stop)
                saved = sum(len(ab["variants"][n]["cases"]) for n in VARIANT_NAMES)
                reporter.case_finished(record, run, name)
                if run.get("status") == "interrupted":
                    state.interrupted = True
                    break
            if state.interrupted:
                break
            if looks is not None:
                looks.after_pair(spec, repeat, state)
                write_results(out_path, ab)
    finally:
        if own_workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    if looks is not None:
        looks.finish(cases, state)
    ab["status"] = "interrupted" if state.interrupted else "complete"
    write_results(out_path, ab)
    return state


def _pairs(cases: Sequence[CaseSpec], targets: Mapping[str, int] | None = None) -> Iterable[tuple[int, CaseSpec]]:
    """(repeat, case) for every pair of processes, repeats interleaved across cases. `targets`
    (case key -> pairs) overrides `measure.repeats` and may grow while this runs (a sequential
    look extending a modal case): it is read afresh for every pair."""
    targets = targets if targets is not None else {}

    def wanted(spec: CaseSpec) -> int:
        return targets.get(spec.key, spec.measure.repeats)

    repeat = 0
    while any(repeat < wanted(c) for c in cases):
        for spec in cases:
            if repeat < wanted(spec):
                yield repeat, spec
        repeat += 1


def _run_one(
    spec: CaseSpec,
    repeat: int,
    name: str,
    *,
    ab: dict[str, Any],
    state: AbState,
    variants: Mapping[str, Variant],
    reporter: AbReporter,
    step: CaseStep,
    out_path: str | os.PathLike[str] | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """One worker process of one variant; its record and the sequence entry go into `ab`.

    A second signal (the worker's group already killed by the time it arrives here) ends the run
    at once with the first one's guarantees: the process is recorded `interrupted`, the file
    saved (`out_path`), and the signal goes on up."""
    runs = state.runs[name].setdefault(spec.key, [])
    reporter.case_started(spec, repeat, name)
    try:
        run = step.run(spec, variants[name])
    except KeyboardInterrupt as exc:

        state.interrupted = True
        _add_run(spec, repeat, name, {"status": "interrupted", "error": second_signal_reason(exc)}, ab=ab, runs=runs)
        ab["status"] = "interrupted"
        if out_path is not None:
            with contextlib.suppress(ResultsFileError):
                write_results(out_path, ab)  # a third signal mid-save leaves the file as last saved
        raise
    return run, _add_run(spec, repeat, name, run, ab=ab, runs=runs)


def _add_run(spec: CaseSpec, repeat: int, name: str, run: dict[str, Any], *, ab: dict[str, Any],
             runs: list[dict[str, Any]]) -> dict[str, Any]:  # fmt: skip
    """Put one finished (or cut short) worker process into `ab`: the variant's record and the sequence."""
    run["repeat"] = repeat
    run["variant"] = name
    runs.append(run)
    record = build_record(spec, runs, planned_repeats=spec.measure.repeats)
    piece = ab["variants"][name]
    upsert_record(piece, record)
    piece["updated"] = now_iso()
    ab["sequence"].append(
        {
            "n": len(ab["sequence"]),
            "repeat": repeat,
            "key": spec.key,
            "variant": name,
            "status": run.get("status"),
            "median_ms": record["runs"][-1].get("median_ms") if record.get("runs") else None,
            "started": run.get("started"),
        }
    )
    return record


class _Looks:
    """The sequential looks of one run (`cnnbench.stats.sequential`), recorded in `ab["sequential"]`:
    {"plan": {rule, spending, max_repeats, first_look, alpha, levels, equivalence_levels, extend_to},
    "cases": {key: {"repeats", "stopped" (settled | max_repeats | modal_max | failed | interrupted),
    "verdict", "level" (the rank test's), "equivalence_level" (the unchanged interval's), "reason",
    "extended" (a modal case that went past max_repeats: from, to, modes)}}}."""

    def __init__(self, ab: dict[str, Any], cases: Sequence[CaseSpec], *, alpha, thresholds, statistic,
                 modal_repeats: int | None = None) -> None:  # fmt: skip
        self.ab = ab
        self.alpha = compare.DEFAULT_ALPHA if alpha is None else alpha
        self.thresholds = thresholds
        self.statistic = statistic or compare.DEFAULT_STATISTIC

        def extend(c: CaseSpec) -> int:
            m = 2 * c.measure.repeats if modal_repeats is None else modal_repeats
            return m if m > c.measure.repeats else 0

        self.plans = {c.key: sequential.plan(c.measure.repeats, self.alpha, extend_to=extend(c)) for c in cases}
        plans = {p.max_repeats: p for p in self.plans.values()}
        first = next(iter(plans.values())).to_dict() if plans else {}
        ab["sequential"] = {"plan": first, "plans": {str(n): p.to_dict() for n, p in plans.items()}, "cases": {}}
        self.cases = ab["sequential"]["cases"]

    def after_pair(self, spec: CaseSpec, repeat: int, state: AbState) -> None:
        key, n = spec.key, repeat + 1
        plan = self.plans[key]
        runs = [state.runs[name].get(key, []) for name in VARIANT_NAMES]
        if any(r.get("status") != "ok" for side in runs for r in side):
            self.cases[key] = {"repeats": n, "stopped": "failed", "verdict": None, "level": None}
            state.stopped[key] = self.cases[key]
            return
        last = state.targets.get(key, plan.max_repeats)
        levels = plan.look_at(n, final=n >= last)
        if levels is None:
            return  # no look here: nothing can be settled at this many pairs
        level, eq_level = levels
        row = looks.look(
            _record(self.ab, "base", key), _record(self.ab, "current", key),
            level=level, equivalence_level=eq_level, thresholds=self.thresholds, statistic=self.statistic,
            base_env=self.ab["variants"]["base"].get("environment"),
            current_env=self.ab["variants"]["current"].get("environment"),
        )  # fmt: skip
        if looks.settled(row.verdict):
            stopped = "settled"
        elif n < last:
            return
        elif n == plan.max_repeats and plan.extend_to > n and (modes := self._modes(runs)):
            state.targets[key] = plan.extend_to  # modal and not settled: more pairs, not `noisy`
            self.cases[key] = {"repeats": n, "stopped": None, "extended": {"from": n, "to": plan.extend_to, "modes": modes}}
            return
        else:
            stopped = "modal_max" if key in state.targets else "max_repeats"
        entry = {"repeats": n, "stopped": stopped, "verdict": row.verdict, "level": level, "equivalence_level": eq_level,
                 "reason": row.reason}  # fmt: skip
        if "extended" in (self.cases.get(key) or {}):
            entry["extended"] = self.cases[key]["extended"]
        self.cases[key] = entry
        state.stopped[key] = entry

    def _modes(self, runs: Sequence[Sequence[Mapping[str, Any]]]) -> str | None:
        """ "base: processes split: 4 at 1.79 ms, 5 at 2.76 ms" per side that split, else None."""

        out = []
        for name, side in zip(VARIANT_NAMES, runs, strict=True):
            st = processes.process_stats(processes.process_figures(side, self.statistic), self.statistic)
            if st is not None and st.split:
                out.append(f"{name}: {st.warning}")
        return "; ".join(out) or None

    def finish(self, cases: Sequence[CaseSpec], state: AbState) -> None:
        """Cases with no entry yet: cut short by an interrupt (or before their first look)."""
        for spec in cases:
            if spec.key not in self.cases or self.cases[spec.key].get("stopped") is None:
                n = min(len(state.runs[name].get(spec.key, [])) for name in VARIANT_NAMES)
                entry = {"repeats": n, "stopped": "interrupted", "verdict": None, "level": None}
                if "extended" in (self.cases.get(spec.key) or {}):
                    entry["extended"] = self.cases[spec.key]["extended"]
                self.cases[spec.key] = entry


def _record(ab: Mapping[str, Any], name: str, key: str) -> dict[str, Any]:
    return next(c for c in ab["variants"][name]["cases"] if c.get("key") == key)


def sequential_levels(ab: Mapping[str, Any], alpha: float) -> tuple[dict[str, float], dict[str, float]] | None:
    """The levels each case of a sequential A/B file is judged at, (rank test, unchanged
    interval) by key: those of the look it stopped at, under the plan the file recorded
    (`spending`), recomputed for `alpha` when it is not the run's. None for a fixed-repeats file."""

    seq = ab.get("sequential") or {}
    if not seq.get("cases"):
        return None
    levels, equivalence = {}, {}
    for key, case in seq["cases"].items():
        n = int(case.get("repeats") or 0)
        plan_info = (seq.get("plans") or {}).get(str(_max_repeats(ab, key))) or seq.get("plan") or {}
        max_repeats = int(plan_info.get("max_repeats") or n or 1)
        spending = plan_info.get("spending") if plan_info.get("spending") in sequential.RULES else "pocock"
        plan = sequential.plan(max_repeats, alpha, extend_to=int(plan_info.get("extend_to") or 0) or None,
                               spending=spending)  # fmt: skip
        at = plan.look_at(n, final=True) if n >= 1 else None
        levels[key], equivalence[key] = at if at is not None else (alpha, alpha)
    return levels, equivalence


def _max_repeats(ab: Mapping[str, Any], key: str) -> int | None:
    for name in VARIANT_NAMES:
        for c in (ab.get("variants") or {}).get(name, {}).get("cases") or []:
            if c.get("key") == key:
                return c.get("repeats_planned")
    return None


def _case_failed(state: AbState, key: str) -> bool:
    return any(r.get("status") != "ok" for name in VARIANT_NAMES for r in state.runs[name].get(key, []))


# -- comparing and reading ------------------------------------------------------------------------


def variant_results(ab: Mapping[str, Any], name: str) -> dict[str, Any]:
    """One variant of an A/B document as a plain results dict (what `load_results` returns)."""
    if name not in VARIANT_NAMES:
        raise UserError(f"unknown variant {name!r} (an A/B file holds {', '.join(VARIANT_NAMES)})")
    piece = (ab.get("variants") or {}).get(name)
    if not isinstance(piece, dict) or not isinstance(piece.get("cases"), list):
        raise ResultsFileError("A/B file", f"has no {name} results")
    return piece


def compare_ab(
    ab: Mapping[str, Any],
    *,
    alpha: float | None = None,
    thresholds: Mapping[str, Any] | None = None,
    statistic: str | None = None,
) -> "Comparison":
    """Compare the two variants of an A/B document with `cnnbench.compare` (same verdicts)."""

    alpha = compare.DEFAULT_ALPHA if alpha is None else alpha
    levels = sequential_levels(ab, alpha)
    return compare.compare_results(
        variant_results(ab, "base"),
        variant_results(ab, "current"),
        alpha=alpha,
        thresholds=thresholds,
        base_name="base",
        current_name="current",
        statistic=compare.DEFAULT_STATISTIC if statistic is None else statistic,
        alpha_by_key=levels[0] if levels else None,  # each case at the levels of its last look
        equivalence_alpha_by_key=levels[1] if levels else None,
    )


def load_ab(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load an A/B file: the results-file checks, then the A/B shape. ResultsFileError if not."""

    path = Path(path)
    data = records.read_json(path, what="A/B results file")
    if not isinstance(data, dict) or data.get("kind") != AB_KIND:
        hint = " (a results file from `bench.py run`: use `bench.py compare`)" if isinstance(data, dict) and "cases" in data else ""
        raise ResultsFileError(str(path), f"not a cnnbench A/B file{hint}")
    version = data.get("ab_format_version")
    if not isinstance(version, int) or version > AB_FORMAT_VERSION:
        raise ResultsFileError(str(path), f"A/B format {version!r} is newer than this cnnbench ({AB_FORMAT_VERSION}); upgrade cnnbench")
    # Each variant is a results file: check it with the results loader's own rules.
    for name in VARIANT_NAMES:
        piece = (data.get("variants") or {}).get(name)
        if not isinstance(piece, dict):
            raise ResultsFileError(str(path), f"has no {name} variant")
        try:
            data["variants"][name] = records.parse_results(migrate(piece, path), path=str(path)).to_json()
        except ResultsFileError as exc:
            raise ResultsFileError(str(path), f"variants.{name}: {str(exc).split(': ', 1)[-1]}") from exc
    return data


def split_ab(ab: Mapping[str, Any], prefix: str | os.PathLike[str]) -> dict[str, Path]:
    """Write each variant as its own results file, `PREFIX-base.json` and `PREFIX-current.json`."""
    out = {}
    for name in VARIANT_NAMES:
        path = Path(f"{os.fspath(prefix)}-{name}.json")
        write_results(path, dict(variant_results(ab, name)))
        out[name] = path
    return out


def render_ab_markdown(ab: Mapping[str, Any], comparison: "Comparison") -> str:
    """The compare summary, plus how the A/B run was made (variants, order, repeats)."""

    text = compare.render_markdown(comparison).replace("cnnbench compare:", "cnnbench A/B:", 1)
    design = ab.get("design") or {}
    lines = ["", "<details>", "<summary>How this was measured</summary>", ""]
    lines.append(
        f"Interleaved A/B run: base and current worker processes alternate case by case in {design.get('order', 'ABBA')} "
        f"order, {design.get('repeats', '?')} repeat(s) per side, {len(ab.get('sequence') or [])} worker processes "
        f"({ab.get('status', '?')})."
    )
    lines.append("")
    for name in VARIANT_NAMES:
        v = (ab.get("variants") or {}).get(name, {}).get("variant") or {}
        paths = ", ".join(f"`{p}`" for p in v.get("paths") or []) or "none"
        commit = f", commit {str(v['git_commit'])[:10]}" if v.get("git_commit") else ""
        lines.append(
            f"- **{name}**: `{v.get('python')}` (Python {v.get('python_version') or '?'}), extra paths {paths}; "
            f"cnnbench from `{v.get('cnnbench_dir') or '?'}`{commit}"
        )
    for note in ab.get("notes") or []:
        lines.append(f"- {note}")

    lines += sequential_markdown(ab)
    lines += ["", "</details>", ""]
    return text.rstrip("\n") + "\n" + "\n".join(lines)
