"""Does change-point detection over commits find real steps, and how often does it cry wolf?

    python benchmarks/history_validation.py [--trials 300] [--commits 100] [--processes 3]

Synthetic histories built on real noise: every commit's point is `--processes` worker-process
figures (the p5 or the median of each process's per-call samples) drawn from the real A/A
processes stored in benchmarks/data (two `bench.py ab` runs on this 2-core machine: 12 A/A
cases x 2 sides x 9 or 5 processes = 168 real processes of a ~0.55 ms model), each divided
by its own case-side's median so only the relative noise remains. A step of +5%, +10% or
+25% multiplies every process from a random commit in the middle third on. The history is
then analysed exactly as `bench.py history` does (`cnnbench.stats.changepoints.analyze` on
the per-commit median of the processes).

Reported per step size: the detection rate (a "slower" change point within 2 commits of the
true step) and the false change points per 100 commits (every other change point), and for
histories with no step at all the false change points per 100 commits. Prints a table; not a test.

Caveats, printed with the table: the pool comes from one small model on one day; processes
are drawn independently, so slow drift across days (a machine that gets slower over a month) is
not in it; and the pool is small (168 processes), so draws repeat.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cnnbench.stats import basic as stats  # noqa: E402
from cnnbench.compare import STATISTICS  # noqa: E402
from cnnbench.stats.changepoints import analyze  # noqa: E402

DATA = [ROOT / "benchmarks" / "data" / "validation-ab-2026-12-01.json", ROOT / "benchmarks" / "data" / "validation-ab-r9-2026-12-01.json"]
STEPS = (0.0, 0.05, 0.10, 0.25)
TOLERANCE = 2  # commits


def noise_pool(statistic: str) -> list[float]:
    """Each real A/A process's figure relative to the median of its case-side's processes."""
    q = STATISTICS[statistic]
    pool = []
    for path in DATA:
        doc = json.loads(path.read_text(encoding="utf-8"))
        for side in ("base", "current"):
            for case in doc["variants"][side]["cases"]:
                if "_aa" not in case["key"].split("|")[0]:
                    continue
                figs = [stats.percentile(r["samples_ms"], q) for r in case["runs"] if r.get("samples_ms")]
                mid = stats.median(figs)
                pool.extend(f / mid for f in figs)
    return pool


def trial(rng: random.Random, pool: list[float], *, step: float, commits: int, processes: int) -> tuple[int, int, bool]:
    """(detected 0/1, false change points, verdict unstable) for one synthetic history."""
    at = rng.randrange(commits // 3, 2 * commits // 3) if step else -1
    values = []
    for c in range(commits):
        level = (1 + step) if step and c >= at else 1.0
        values.append(statistics.median(level * rng.choice(pool) for _ in range(processes)))
    analysis = analyze(values)
    cps = analysis.change_points
    hit = [cp for cp in cps if step and cp.direction == "slower" and abs(cp.index - at) <= TOLERANCE]
    detected = 1 if hit else 0
    return detected, len(cps) - (1 if hit else 0), analysis.verdict == "unstable"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=300)
    ap.add_argument("--commits", type=int, default=100)
    ap.add_argument("--processes", type=int, default=3)
    ap.add_argument("--seed", type=int, default=14)
    args = ap.parse_args()

    print(f"{args.trials} synthetic histories of {args.commits} commits per row, {args.processes} processes per commit")
    print(f"{'statistic':>9}  {'step':>5}  {'detected':>9}  {'false per 100 commits':>21}  {'unstable':>8}")
    for statistic in ("p5", "median"):
        pool = noise_pool(statistic)
        spread = statistics.pstdev(pool)
        for step in STEPS:
            rng = random.Random(f"{args.seed}/{statistic}/{step}")
            det = false = 0
            unstable = 0
            for _ in range(args.trials):
                d, f, u = trial(rng, pool, step=step, commits=args.commits, processes=args.processes)
                det += d
                false += f
                unstable += u
            rate = f"{det / args.trials:.1%}" if step else "-"
            per100 = false / (args.trials * args.commits) * 100
            print(f"{statistic:>9}  {('+' + format(step, '.0%')) if step else 'none':>5}  {rate:>9}  {per100:>21.2f}  {unstable:>8}")
        print(f"{'':>9}  (pool: {len(pool)} real processes, sd {spread:.1%} of the median)")
    print("caveats: one small model, one day; processes drawn independently (no slow drift); a small pool")
    return 0


if __name__ == "__main__":
    sys.exit(main())
