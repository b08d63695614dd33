"""How often the mode rule of cnnbench/stats/processes.py warns on synthetic per-process figures.

    python benchmarks/mode_rule_simulation.py [--trials 4000] [--seed 7]

Two questions, on seeded lognormal figures (no machine involved, so the numbers are exact for the
rule and the seed): (1) with one mode only (CV 2%..15% between processes), how often does it still
say "processes split" (a false warning)? (2) with two modes 1.5x and 1.2x apart (3% CV inside
each, processes alternating between them), how often does it find exactly two?
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cnnbench.stats.processes import detect_modes


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=4000)
    p.add_argument("--seed", type=int, default=7)
    args = p.parse_args(argv)
    rng = random.Random(args.seed)
    cvs = (0.02, 0.05, 0.10, 0.15)
    print("| processes | " + " | ".join(f"false warnings, CV {cv:.0%}" for cv in cvs) + " | two modes 1.5x found | two modes 1.2x found |")
    print("|---" * (len(cvs) + 3) + "|")
    for n in (4, 5, 6, 8, 12, 20):
        cells = []
        for cv in cvs:
            fp = sum(len(detect_modes([rng.lognormvariate(0, cv) for _ in range(n)])) > 1 for _ in range(args.trials))
            cells.append(f"{fp / args.trials:.1%}")
        for ratio in (1.5, 1.2):
            found = sum(
                len(detect_modes([rng.lognormvariate(0, 0.03) * (ratio if i % 2 else 1.0) for i in range(n)])) == 2
                for _ in range(args.trials)
            )
            cells.append(f"{found / args.trials:.1%}")
        print(f"| {n} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
