"""How long `import cnnbench` and `bench.py --help` take, and whether either imports torch.

Each figure is the median of N fresh interpreter starts, with the checkouts given interleaved
(A, B, A, B, ...) so the machine's drift between minutes falls on both alike. Compare checkouts
by the ratio printed, never by a figure from another run.

    python benchmarks/cli_startup.py [--runs 15] [CHECKOUT ...]   # default: this checkout
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PROBES = {
    "import cnnbench": ["-c", "import cnnbench, sys; print(int('torch' in sys.modules))"],
    "bench.py --help": ["-c", "import runpy, sys; sys.argv = ['bench.py', '--help']\n"
                        "import contextlib, io\n"
                        "with contextlib.redirect_stdout(io.StringIO()):\n"
                        "    try:\n        runpy.run_path('bench.py', run_name='__main__')\n"
                        "    except SystemExit:\n        pass\n"
                        "print(int('torch' in sys.modules))"],
}  # fmt: skip


def one(checkout: Path, args: list[str]) -> tuple[float, bool]:
    env = {**os.environ, "PYTHONPATH": str(checkout), "PYTHONDONTWRITEBYTECODE": "1"}
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, *args], cwd=checkout, env=env, capture_output=True, text=True, check=True)
    return time.perf_counter() - t0, out.stdout.strip().endswith("1")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkouts", nargs="*", type=Path, default=[ROOT])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    times: dict[tuple[str, Path], list[float]] = {}
    torch_seen: dict[tuple[str, Path], bool] = {}
    for checkout in args.checkouts:  # warm the page cache and the bytecode once, untimed
        for probe in PROBES.values():
            one(checkout, probe)
    for _ in range(args.runs):
        for name, probe in PROBES.items():
            for checkout in args.checkouts:
                s, torch = one(checkout, probe)
                times.setdefault((name, checkout), []).append(s)
                torch_seen[(name, checkout)] = torch_seen.get((name, checkout), False) or torch
    print(f"load average at the end: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs; {args.runs} runs each, interleaved")
    for name in PROBES:
        base = None
        for checkout in args.checkouts:
            med = statistics.median(times[(name, checkout)])
            base = base or med
            ratio = f"  x{med / base:.2f} of the first" if len(args.checkouts) > 1 else ""
            torch = "imports torch" if torch_seen[(name, checkout)] else "torch-free"
            print(f"{name:16s} {str(checkout):40s} median {med * 1000:7.1f} ms  ({torch}){ratio}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
