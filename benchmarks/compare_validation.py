"""Does the A/B gate hold on this machine? False alarms, detection, resolution. Prints a table; not a test.

    python benchmarks/compare_validation.py [--aa-cases 3] [--repeats 9] [--draws 4000]
    python benchmarks/compare_validation.py --reuse results/validation-ab.json   # no new measuring

Three questions (issue 5), answered at the default repeats (9 per side), threshold (5%) and alpha
(0.01):

(a) A/A: with the same code as base and current, how many case comparisons are falsely called
    `regressed`, per 100 (target <= 1)?
(b) With a slowdown injected into a test model (`tests/fixtures/tunable.py`, +10% and +25% of its
    work), in what share of comparisons is it detected (targets >= 95% and 100%)?
(c) What is the smallest slowdown detected in >= 95% of comparisons?

What it measures, honestly
--------------------------
A worker process costs ~4 s here (torch import) and far more when the machine is shared, so 100
real A/A comparisons at 9 repeats x 2 sides (1800 processes) do not fit in a quarter of an hour.
So the figures come from two sources, and the table says which is which:

1. **Real**: one `bench.py ab` run (the real command: probes, ABBA order, a base variant that runs
   its own *copy* of the cnnbench package from `--base-path`, as a CI checkout would). Its suite
   has `--aa-cases` A/A cases (the tunable model with identical code on both sides, each under its
   own module name so each is a separate case), one case whose current side does +10% work (22
   body blocks instead of 20) and one with +25% (25 instead of 20). Every case comparison of that
   run is a real trial, with the verdict `bench.py ab` printed: few trials, but real ones.
2. **Resampled** (an estimate, labelled as such): the A/A cases of that run give a pool of real
   *pairs* of processes (the base and current process of one repeat of one case, run back to back,
   with their ABBA position). A simulated comparison draws `--repeats` pairs (as many
   base-first ones as the real ABBA design has: 5 of 9, 3 of 5) and applies `compare`'s regression rule (ratio of the
   medians of the per-repeat medians > 1 + threshold AND one-sided exact Mann-Whitney p <= alpha;
   the rule of `cnnbench.compare.verdicts._latency_verdict`, cross-checked against `compare_results` on
   the first draws). Drawing whole pairs keeps whatever systematically differs between the two
   sides (order, import path, which process came first) while mixing the times they ran at.
   For (b) and (c) the current side of each drawn pair is multiplied by 1 + delta: a *shift
   model* built on real noise. The real tunable cases check it: their measured ratio is printed
   next to the nominal one.

Modal cases (issue 19): `--modal-cases K` A/A cases (default 3) of `mnist_cnn` at batch 8, one
thread, eager, each under its own module name: the case whose fresh processes split into two
modes on this machine kind. Their pairs form a second pool, never mixed with the tunable one, and
the table gives A/A false alarms and +10%/+25% detection for modal and non-modal cases apart,
fixed design and sequential (with the modal extension of `bench.py ab`: a case still unsettled at
the planned maximum whose processes split goes on up to twice as many pairs), and how many of the
modal cases' sides really split.

Caveats printed with the table: the pool comes from one small model (~1 ms per call) on one run;
the shift model assumes a slowdown multiplies every process's median alike; resampled draws
reuse the same few pairs, so they cannot show more variety than the pool has.
"""

from __future__ import annotations

import argparse
import math
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "fixtures"))

import tunable  # noqa: E402 - from tests/fixtures, on the path just above

from cnnbench import compare  # noqa: E402
from cnnbench.stats import processes  # noqa: E402
from cnnbench.stats import sequential  # noqa: E402
from cnnbench.compare import looks  # noqa: E402
from cnnbench.stats import basic as stats  # noqa: E402
from cnnbench.compare.ab import DEFAULT_REPEATS, compare_ab, load_ab, pair_order  # noqa: E402

BASE_BLOCKS = 20
SLOWDOWNS = {"p10": (22, 0.10), "p25": (25, 0.25)}  # module -> (current blocks, nominal slowdown)
INPUT = [3, 16, 16]
MODAL_MODEL, MODAL_INPUT, MODAL_BATCH = "mnist_cnn", [1, 28, 28], 8
MEASURE = "{warmup: 3, min_time_s: 0.2, max_time_s: 0.5, min_samples: 10, timeout_s: 300}"


def _write_modal(directory: Path, module: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{module}.py").write_text(
        f'"""A/A modal case: the registry\'s {MODAL_MODEL}, under its own module name."""\n\n\n'
        "def build(**kwargs):\n"
        "    from cnnbench.models.registry import build_model\n\n"
        f"    return build_model({MODAL_MODEL!r})\n",
        encoding="utf-8",
    )


def build_tree(work: Path, aa_cases: int, modal_cases: int = 0) -> tuple[Path, Path]:
    """The suite (current side: its directory) and the base checkout (cnnbench copy + models)."""
    suite_dir, base_dir = work / "current", work / "base"
    shutil.copytree(ROOT / "cnnbench", base_dir / "cnnbench", ignore=shutil.ignore_patterns("__pycache__"))
    models = []
    for i in range(1, aa_cases + 1):
        name = f"tun_aa{i}"
        tunable.write_variant(suite_dir, blocks=BASE_BLOCKS, module=name)
        tunable.write_variant(base_dir, blocks=BASE_BLOCKS, module=name)
        models.append(name)
    for name, (blocks, _) in SLOWDOWNS.items():
        module = f"tun_{name}"
        tunable.write_variant(suite_dir, blocks=blocks, module=module)
        tunable.write_variant(base_dir, blocks=BASE_BLOCKS, module=module)
        models.append(module)
    entries = ", ".join(f'{{name: {m}, import: "{m}:build", input_size: {INPUT}}}' for m in models)
    matrices = f"  - {{models: [{entries}], batch_sizes: [1]}}\n"
    if modal_cases:
        modal = [f"mod_aa{i}" for i in range(1, modal_cases + 1)]
        for m in modal:
            _write_modal(suite_dir, m)
            _write_modal(base_dir, m)
        mentries = ", ".join(f'{{name: {m}, import: "{m}:build", input_size: {MODAL_INPUT}}}' for m in modal)
        matrices += f"  - {{models: [{mentries}], batch_sizes: [{MODAL_BATCH}]}}\n"
    (suite_dir / "validation.yaml").write_text(
        "name: compare-validation\n"
        "defaults: {backends: [eager], precisions: [fp32], device: cpu, threads: 1, "
        f"measure: {MEASURE}}}\n"
        f"matrices:\n{matrices}",
        encoding="utf-8",
    )
    return suite_dir, base_dir


def run_ab(out: Path, aa_cases: int, repeats: int, modal_cases: int = 0, extra: list[str] | None = None) -> float:
    with tempfile.TemporaryDirectory(prefix="cnnbench-validation-") as tmp:
        suite_dir, base_dir = build_tree(Path(tmp), aa_cases, modal_cases)
        cmd = [sys.executable, str(ROOT / "bench.py"), "ab", str(suite_dir / "validation.yaml"),
               "--base-path", str(base_dir), "--repeats", str(repeats), "--out", str(out), "--replace", "--quiet",
               *(extra or [])]  # fmt: skip
        print("measuring:", " ".join(cmd[1:]), flush=True)
        t0 = time.monotonic()
        proc = subprocess.run(cmd, cwd=suite_dir, capture_output=True, text=True)
        if proc.returncode not in (0, 1):
            sys.exit(f"bench.py ab failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        return time.monotonic() - t0


# -- the decision rule, and pairs ------------------------------------------------------------------


def regressed(base: list[float], current: list[float], thr: compare.Threshold, alpha: float) -> bool:
    """compare's rule for `regressed` on the rank path (see cnnbench.compare.verdicts._latency_verdict)."""
    ratio = statistics.median(current) / statistics.median(base)
    return thr.exceeded(ratio) and compare.mann_whitney_greater(current, base)[1] <= alpha


def real_pairs(doc: dict, key: str, statistic: str = compare.DEFAULT_STATISTIC) -> list[tuple[float, float, bool]]:
    """(base figure, current figure, base ran first) per repeat of one case, from the file: each
    figure is `statistic` of that worker process's own samples, as `compare` takes it."""
    q = compare.STATISTICS[statistic]
    samples = {  # (variant, start time) -> that process's samples
        (v, r.get("started")): r["samples_ms"]
        for v in ("base", "current")
        for c in doc["variants"][v]["cases"] if c["key"] == key
        for r in c.get("runs") or [] if r.get("samples_ms")
    }  # fmt: skip
    by_repeat: dict[int, dict[str, float]] = {}
    for s in doc["sequence"]:
        got = samples.get((s["variant"], s.get("started")))
        if s["key"] == key and s["status"] == "ok" and got:
            by_repeat.setdefault(s["repeat"], {})[s["variant"]] = stats.percentile(got, q)
    return [(v["base"], v["current"], pair_order(r)[0] == "base") for r, v in sorted(by_repeat.items()) if len(v) == 2]


def draw(pairs: list[tuple[float, float, bool]], repeats: int, rng: random.Random) -> list[tuple[float, float, bool]]:
    """`repeats` distinct pairs, as many base-first ones as the real ABBA design has."""
    first = [p for p in pairs if p[2]]
    second = [p for p in pairs if not p[2]]
    n_first = sum(1 for r in range(repeats) if pair_order(r)[0] == "base")
    if len(pairs) < repeats:  # a small pool (a modal case's few pairs): with replacement
        return rng.choices(pairs, k=repeats)
    if len(first) < n_first or len(second) < repeats - n_first:
        return rng.sample(pairs, repeats)
    return rng.sample(first, n_first) + rng.sample(second, repeats - n_first)


def detection_rate(pairs, delta: float, repeats: int, draws: int, thr, alpha: float, seed: str) -> float:
    rng = random.Random(seed)
    hits = 0
    for _ in range(draws):
        d = draw(pairs, repeats, rng)
        hits += regressed([b for b, _, _ in d], [c * (1 + delta) for _, c, _ in d], thr, alpha)
    return hits / draws


def synthetic(sigma: float, delta: float, repeats: int, draws: int, thr, alpha: float, seed: str) -> float:
    """Share of comparisons called regressed under lognormal between-process noise `sigma`."""
    rng = random.Random(seed)
    hits = 0
    for _ in range(draws):
        base = [math.exp(rng.gauss(0, sigma)) for _ in range(repeats)]
        cur = [(1 + delta) * math.exp(rng.gauss(0, sigma)) for _ in range(repeats)]
        hits += regressed(base, cur, thr, alpha)
    return hits / draws


def smallest_detected(rate_at, start: int = 5, stop: int = 300) -> int | None:
    """The smallest slowdown in percent (5, 6, ... then coarser) detected in >= 95% of comparisons."""
    pct = start
    while pct <= stop:
        if rate_at(pct / 100) >= 0.95:
            return pct
        pct += 1 if pct < 40 else (5 if pct < 100 else 25)
    return None


def cross_check(pairs, repeats: int, thr, alpha: float, n: int = 150) -> int:
    """Disagreements between `regressed` and the full compare_results on `n` draws (expect 0)."""
    rng = random.Random("cross-check")
    bad = 0
    for i in range(n):
        delta = (0.0, 0.08, 0.15)[i % 3]
        d = draw(pairs, repeats, rng)
        rb, rc = [b for b, _, _ in d], [c * (1 + delta) for _, c, _ in d]
        rec = looks.figures_record
        comp = compare.compare_results({"cases": [rec(rb)]}, {"cases": [rec(rc)]}, thresholds={"latency": thr}, alpha=alpha)
        bad += (comp.rows[0].verdict == "regressed") != regressed(rb, rc, thr, alpha)
    return bad


# -- the sequential gate (cnnbench.stats.sequential), on the same pool ----------------------------------


def draw_ordered(pairs, repeats: int, rng: random.Random) -> list[tuple[float, float, bool]]:
    """`draw`, put in the real run's order: pair r is base-first on even r (ABBA), so each look
    of the sequential rule sees the pairs it would have seen."""
    d = draw(pairs, repeats, rng)
    first = [p for p in d if p[2]]
    second = [p for p in d if not p[2]]
    out = []
    for r in range(repeats):
        src = first if (pair_order(r)[0] == "base" and first) or not second else second
        out.append(src.pop(0))
    return out


def _split(figures) -> bool:
    return len(processes.detect_modes(figures)) > 1


def sequential_outcome(d, delta: float, plan, thr) -> tuple[str, int]:
    """(verdict, pairs used) of the sequential gate on one ordered draw: at each look, compare's
    verdict at the look's level (the same call `bench.py ab` makes); stop once settled. With an
    extended plan, a draw unsettled at the planned maximum goes on only if either side's
    per-process figures split into modes (`bench.py ab`'s rule, cnnbench.compare.ab._Looks)."""
    base = [b for b, _, _ in d]
    cur = [c * (1 + delta) for _, c, _ in d]
    verdict = "noisy"
    last = plan.max_repeats
    for n, _ in plan.levels:
        if n > last or n > len(d):
            break
        at = plan.look_at(n, final=n == last)  # the levels `bench.py ab` looks at (cnnbench.compare.ab._Looks)
        if at is not None:
            row = looks.look_values(base[:n], cur[:n], level=at[0], equivalence_level=at[1], thresholds={"latency": thr})
            verdict = row.verdict
            if looks.settled(verdict):
                return verdict, n
        if n == plan.max_repeats and plan.extend_to > n and (_split(base[:n]) or _split(cur[:n])):
            last = plan.extend_to
    return verdict, min(last, len(d))


def sequential_rates(pairs, delta: float, plan, thr, draws: int, seed: str) -> tuple[float, float]:
    """(share called regressed, mean pairs used per case) of the sequential gate."""
    rng = random.Random(seed)
    hits, used = 0, 0
    for _ in range(draws):
        verdict, n = sequential_outcome(draw_ordered(pairs, plan.last, rng), delta, plan, thr)
        hits += verdict == "regressed"
        used += n
    return hits / draws, used / draws


def wall_time_table(doc: dict, pool, thr, alpha: float, plan, draws: int, gate: dict | None) -> None:
    """Wall time of the shipped gate (suites/ci.yaml: 6 cases x 2 sides x up to 9 repeats)."""
    n = plan.max_repeats
    print()
    print(f"Fixed {n} repeats (before) vs sequential (after: {plan.to_dict()['rule']}, nominal level per look "
          + ", ".join(f"{k}: {c:.4f}" for k, c in plan.levels) + f"), resampled from the same pool, {draws} draws each:")
    old = sequential.plan(n, alpha, extend_to=plan.extend_to or None, spending="pocock")  # the plan issue 18 first shipped
    rows = []
    for label, delta in (("false regressions per 100 A/A", 0.0), ("+10% detected", 0.10), ("+25% detected", 0.25)):
        fixed = detection_rate(pool, delta, n, draws, thr, alpha, f"fx{label}")
        rate, used = sequential_rates(pool, delta, plan, thr, draws, f"seq{label}")
        rate_old, used_old = sequential_rates(pool, delta, old, thr, draws, f"seq{label}")
        fmt = (lambda x: f"{x * 100:.2f}") if delta == 0 else (lambda x: f"{x:.1%}")
        rows.append((label, fmt(fixed), fmt(rate), f"{used:.2f}", fmt(rate_old), f"{used_old:.2f}"))
    small_fixed = smallest_detected(lambda d: detection_rate(pool, d, n, max(draws // 4, 50), thr, alpha, f"fs{d:.2f}"))
    small = smallest_detected(lambda d: sequential_rates(pool, d, plan, thr, max(draws // 4, 50), f"sq{d:.2f}")[0])
    small_old = smallest_detected(lambda d: sequential_rates(pool, d, old, thr, max(draws // 4, 50), f"sq{d:.2f}")[0])
    rows.append(("smallest slowdown detected >= 95%", f"+{small_fixed}%" if small_fixed else "> +300%",
                 f"+{small}%" if small else "> +300%", "—", f"+{small_old}%" if small_old else "> +300%", "—"))  # fmt: skip
    w = max(len(r[0]) for r in rows)
    print(f"  {'figure':<{w}}  {'fixed ' + str(n):>9}  {'sequential':>10}  {'pairs used':>10}  {'Pocock plan':>11}  pairs used")
    for label, fixed, seq, used, seq_old, used_old in rows:
        print(f"  {label:<{w}}  {fixed:>9}  {seq:>10}  {used:>10}  {seq_old:>11}  {used_old}")
    print("  (sequential = the shipped plan; Pocock plan = the one issue 18 first shipped, one Pocock-type level per look)")
    print()
    print("The real run replayed through the sequential rule (its own pairs, in the order they ran):")
    for key in sorted({s["key"] for s in doc["sequence"]}):
        pairs = real_pairs(doc, key)
        if len(pairs) >= plan.levels[0][0]:
            verdict, used = sequential_outcome(pairs, 0.0, plan, thr)  # the plan `bench.py ab` used
            print(f"  {key.split('|')[0]:<10} {verdict:<10} after {used} of {len(pairs)} pairs")
    if gate:
        print()
        print("Wall time of the shipped gate (`bench.py ab suites/ci.yaml`, A/A, LOADED machine: see the notes):")
        for name, g in gate.items():
            print(f"  {name:<34} {g['wall_s'] / 60:5.1f} min, {g['processes']} worker processes")


def modal_table(doc: dict, pools: dict[str, list[str]], thr, alpha: float, repeats: int, draws: int, st: str) -> None:
    """Issue 19 part 6: A/A false alarms and +10%/+25% detection, modal and non-modal cases apart,
    the fixed design and the sequential one with `bench.py ab`'s modal extension."""
    plan = sequential.plan(repeats, alpha, extend_to=2 * repeats)
    rows = {r["key"]: r for r in compare.to_json(compare_ab(doc, statistic=st))["cases"]}
    seq_cases = (doc.get("sequential") or {}).get("cases") or {}
    print()
    print(f"Modal and non-modal cases apart (resampled from each pool alone; sequential = up to {repeats} pairs, "
          f"modal cases up to {plan.extend_to}, as `bench.py ab` does; {draws} draws per figure):")
    head = ("pool", "cases", "sides split", "real A/A verdicts", "fixed: FA/100", "+10%", "+25%",
            "seq: FA/100", "+10%", "+25%", "pairs used (A/A, +10%)")  # fmt: skip
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for label, keys in pools.items():
        pool = [p for k in keys for p in real_pairs(doc, k, st)]
        if len(pool) < 2:
            print(f"| {label} | {len(keys)} | no pairs measured | | | | | | | | |")
            continue
        split = 0
        for k in keys:
            by_side = real_pairs(doc, k, st)
            split += _split([b for b, _, _ in by_side]) + _split([c for _, c, _ in by_side])
        verdicts = ", ".join(
            f"{rows[k]['verdict']}" + (f" ({seq_cases[k]['repeats']} pairs)" if k in seq_cases else "") for k in keys)
        fixed = [detection_rate(pool, d, repeats, draws, thr, alpha, f"m{label}{d}") for d in (0.0, 0.10, 0.25)]
        seq = [sequential_rates(pool, d, plan, thr, draws, f"ms{label}{d}") for d in (0.0, 0.10, 0.25)]
        print(f"| {label} | {len(keys)} | {split} of {2 * len(keys)} | {verdicts} | {fixed[0] * 100:.2f} | {fixed[1]:.1%} | "
              f"{fixed[2]:.1%} | {seq[0][0] * 100:.2f} | {seq[1][0]:.1%} | {seq[2][0]:.1%} | {seq[0][1]:.1f}, {seq[1][1]:.1f} |")
    print("  sides split: (case, side) whose per-process figures the mode rule of cnnbench.stats.processes splits.")
    print("  Plan levels by pairs: " + ", ".join(f"{n}: {c:.4f}" for n, c in plan.levels))
    synthetic_modal_table(thr, alpha, repeats, draws)


def synthetic_modal_table(thr, alpha: float, repeats: int, draws: int, n_pairs: int = 72) -> None:
    """NOT measured: a seeded synthetic pool of two-mode processes (each process, either side, in
    a mode 1.0 or 1.5 with chance 1/2, 3% lognormal noise inside; the split of issue 19), to show
    what the modal extension buys: fixed 9, sequential up to 9 (no extension), sequential with it."""
    rng = random.Random("synthetic-modal")

    def one() -> float:
        return (1.5 if rng.random() < 0.5 else 1.0) * math.exp(rng.gauss(0, 0.03))

    pool = [(one(), one(), pair_order(r)[0] == "base") for r in range(n_pairs)]
    designs = (("sequential, no extension (--modal-repeats 0)", sequential.plan(repeats, alpha)),
               (f"sequential, modal extension to {2 * repeats}", sequential.plan(repeats, alpha, extend_to=2 * repeats)))  # fmt: skip
    print()
    print(f"For scale, NOT measured: a synthetic two-mode pool ({n_pairs} pairs, modes 1.5x apart, half the processes in each,")
    print(f"3% noise inside a mode), {draws} draws per figure:")
    print("| design | false regressions per 100 A/A | +10% detected | +25% detected | pairs per side used (A/A, +10%) |")
    print("|---|---|---|---|---|")
    fixed = [detection_rate(pool, d, repeats, draws, thr, alpha, f"sm{d}") for d in (0.0, 0.10, 0.25)]
    print(f"| fixed {repeats} | {fixed[0] * 100:.2f} | {fixed[1]:.1%} | {fixed[2]:.1%} | {repeats}, {repeats} |")
    for label, plan in designs:
        r = [sequential_rates(pool, d, plan, thr, draws, f"ss{label}{d}") for d in (0.0, 0.10, 0.25)]
        print(f"| {label} | {r[0][0] * 100:.2f} | {r[1][0]:.1%} | {r[2][0]:.1%} | {r[0][1]:.1f}, {r[1][1]:.1f} |")


def gate_figures(paths: list[str]) -> dict[str, dict]:
    """NAME=FILE:SECONDS pairs: a saved `bench.py ab suites/ci.yaml` run and its wall time."""
    out = {}
    for item in paths:
        name, rest = item.split("=", 1)
        path, secs = rest.rsplit(":", 1)
        out[name] = {"wall_s": float(secs), "processes": len(load_ab(path)["sequence"])}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--aa-cases", type=int, default=3, help="A/A cases in the real ab run (10 worker processes each)")
    ap.add_argument("--modal-cases", type=int, default=3,
                    help=f"A/A cases of {MODAL_MODEL} at batch {MODAL_BATCH} (the modal case of issue 19) in the real ab run")
    ap.add_argument("--repeats", type=int, default=DEFAULT_REPEATS, help="repeats per side (the default of bench.py ab)")
    ap.add_argument("--draws", type=int, default=4000, help="resampled comparisons per figure")
    ap.add_argument("--out", default="results/validation-ab.json", help="where the real ab run is saved")
    ap.add_argument("--reuse", metavar="FILE", help="skip measuring: use a saved ab run")
    ap.add_argument("--ab-arg", action="append", default=[], metavar="ARG",
                    help="pass ARG to the real `bench.py ab` run (repeatable; e.g. --ab-arg=--spawn, --ab-arg=--allocator=jemalloc)")
    ap.add_argument("--statistic", choices=tuple(compare.STATISTICS), default=compare.DEFAULT_STATISTIC,
                    help="the per-process figure compared (compare's default unless given)")
    ap.add_argument("--seq-draws", type=int, default=1000, help="resampled comparisons per sequential figure")
    ap.add_argument("--gate", action="append", default=[], metavar="NAME=FILE:SECONDS",
                    help="a saved run of the shipped gate and its wall time, for the before/after table (repeatable)")
    ap.add_argument("--measure-only", action="store_true",
                    help="run and save the real ab run, print nothing else (resample it later with --reuse)")
    args = ap.parse_args()

    thr = compare.parse_threshold("5%")
    alpha = compare.DEFAULT_ALPHA
    if args.reuse:
        path, wall = Path(args.reuse), None
    else:
        path = Path(args.out).resolve()  # `bench.py ab` runs in the suite's temporary directory
        path.parent.mkdir(parents=True, exist_ok=True)
        wall = run_ab(path, args.aa_cases, args.repeats, args.modal_cases, args.ab_arg)
        if args.measure_only:
            print(f"saved {path} ({wall / 60:.1f} min)")
            return 0
    doc = load_ab(path)
    repeats = args.repeats
    st = args.statistic
    # The verdicts `bench.py ab --from FILE --statistic ST` gives (the file's own were made with
    # the default of the cnnbench that measured it).
    rows = {r["key"]: r for r in compare.to_json(compare_ab(doc, statistic=st))["cases"]}
    keys = list(rows)
    aa_keys = [k for k in keys if k.startswith("tun_aa")]
    modal_keys = [k for k in keys if k.startswith("mod_aa")]
    workers = len(doc["sequence"])

    print()
    print(f"Real `bench.py ab` run: {path} ({workers} worker processes"
          + (f", {wall / 60:.1f} min, {wall / max(workers, 1):.1f} s per process incl. probes" if wall else "") + "); "
          f"threshold {thr}, alpha {alpha:g}, {repeats} repeats per side, ABBA order, per-process statistic {st}.")
    print(f"{'case':<10} {'nominal':>8} {'measured':>9} {'verdict':<10} {'p':>7}  per-process {st} base | current (ms)")
    for k in keys:
        r = rows[k]
        name = k.split("|")[0]
        nominal = next((f"+{v[1]:.0%}" for m, v in SLOWDOWNS.items() if name == f"tun_{m}"), "0%")
        pairs = real_pairs(doc, k, st)
        meds = " ".join(f"{b:.3f}" for b, _, _ in pairs) + " | " + " ".join(f"{c:.3f}" for _, c, _ in pairs)
        ratio = f"{(r['ratio'] - 1) * 100:+.1f}%" if r.get("ratio") else "—"
        p = f"{r['p_value']:.3f}" if r.get("p_value") is not None else "—"
        print(f"{name:<10} {nominal:>8} {ratio:>9} {r['verdict']:<10} {p:>7}  {meds}")

    pool = [p for k in aa_keys for p in real_pairs(doc, k, st)]
    logs = [math.log(c / b) for b, c, _ in pool]
    sd_between = statistics.stdev(math.log(x) for k in aa_keys for pr in real_pairs(doc, k, st) for x in pr[:2]) if pool else float("nan")
    print()
    print(f"Pool for resampling: {len(pool)} real A/A pairs ({sum(p[2] for p in pool)} base-first); "
          f"current/base within a pair: mean {statistics.fmean(logs) * 100:+.2f}%, sd {statistics.stdev(logs) * 100:.1f}%; "
          f"sd of log per-process {st}s {sd_between * 100:.1f}%.")
    bad = cross_check(pool, repeats, thr, alpha)
    print(f"Decision rule cross-checked against compare_results on 150 draws: {bad} disagreement(s).")

    real_aa_false = sum(rows[k]["verdict"] == "regressed" for k in aa_keys)
    fa = detection_rate(pool, 0.0, repeats, args.draws, thr, alpha, "aa")
    measured = {m: rows[next(k for k in keys if k.startswith(f"tun_{m}|"))] for m in SLOWDOWNS}
    table = []
    table.append(("(a) false regressions per 100 A/A comparisons", "<= 1",
                  f"{real_aa_false} of {len(aa_keys)} real", f"{fa * 100:.2f} ({args.draws} draws)"))  # fmt: skip
    for m, (_, nominal) in SLOWDOWNS.items():
        target = "100%" if nominal >= 0.25 else ">= 95%"
        rate = detection_rate(pool, nominal, repeats, args.draws, thr, alpha, m)
        r = measured[m]
        real = f"{r['verdict']} (measured {(r['ratio'] - 1) * 100:+.1f}%)" if r.get("ratio") else r["verdict"]
        table.append((f"(b) +{nominal:.0%} slowdown detected", target, real, f"{rate:.1%}"))
    sweep = [(pct, detection_rate(pool, pct / 100, repeats, args.draws // 4, thr, alpha, f"sweep{pct}")) for pct in range(5, 45, 5)]
    smallest = smallest_detected(lambda d: detection_rate(pool, d, repeats, args.draws // 4, thr, alpha, f"s{d:.2f}"))
    half = next((pct for pct, rate in sweep if rate >= 0.5), None)
    table.append(("(c) smallest slowdown detected >= 95%", "—", "—",
                  f"+{smallest}%" if smallest else "> +300%"))  # fmt: skip
    table.append(("    (detected >= 50%)", "—", "—", f"+{half}%" if half else "> +40%"))

    print()
    w = max(len(t[0]) for t in table)
    print(f"{'figure':<{w}}  {'target':>7}  {'real ab run':<28}  resampled estimate")
    for name, target, real, est in table:
        print(f"{name:<{w}}  {target:>7}  {real:<28}  {est}")
    print()
    print("Detection by slowdown (resampled, shift model): " + ", ".join(f"+{p}% {r:.0%}" for p, r in sweep))
    sd_pair = statistics.stdev(logs) / math.sqrt(2) if len(logs) > 1 else float("nan")
    print()
    print("For scale, NOT measured: the same rule under synthetic lognormal between-process noise (sd of log")
    print(f"per-process figures), {repeats} repeats per side, no bias between the sides:")
    print(f"{'noise sd':>9}  {'false alarms/100':>16}  {'+10% detected':>13}  {'+25% detected':>13}  smallest >= 95%")
    for label, sigma in ((f"{sd_pair:.1%}*", sd_pair), ("2.5%", 0.025), ("1.3%", 0.013)):
        if not math.isfinite(sigma):
            continue
        def rate(d, sg=sigma):
            return synthetic(sg, d, repeats, args.draws // 2, thr, alpha, f"syn{sg}{d}")

        small = smallest_detected(rate)
        print(f"{label:>9}  {rate(0.0) * 100:>16.2f}  {rate(0.10):>13.1%}  {rate(0.25):>13.1%}  {'+%d%%' % small if small else '> +300%'}")
    print("  * this run's pairs: sd of log(current/base) within a pair / sqrt(2). 2.5% is the +-5% between")
    print("    processes seen on this machine kind when quiet; 1.3% is processes started together (issue 5).")
    if modal_keys:
        modal_table(doc, {"non-modal (tunable)": aa_keys, f"modal ({MODAL_MODEL} b{MODAL_BATCH})": modal_keys},
                    thr, alpha, repeats, args.seq_draws, st)  # fmt: skip
    if len(pool) >= repeats:
        plan = sequential.plan(repeats, alpha, extend_to=2 * repeats)
        wall_time_table(doc, pool, thr, alpha, plan, args.seq_draws, gate_figures(args.gate) if args.gate else None)
    print()
    print("How: 'real ab run' = verdicts of one `bench.py ab` run (one trial per case). 'resampled' = draws of")
    first = sum(pair_order(r)[0] == "base" for r in range(repeats))
    print(f"{repeats} real A/A pairs ({first} base-first, {repeats - first} current-first) from the pool above, current side x (1 + slowdown),")
    print("judged by compare's rule. Caveats: one small model (~1 ms/call), one run's pairs reused across draws,")
    print("and a slowdown assumed to scale every process alike (the real +10%/+25% cases check the last).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
