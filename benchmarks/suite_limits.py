"""How fast a suite is answered, good or hostile (issue 13 part 3: < 2 s for any file under 1 MB).

    python benchmarks/suite_limits.py [--repeat 3]

Prints, and does not assert (a timed test would race a loaded machine's clock; the tests check
the properties that make it fast: the cap is checked from the axis lengths before any case is
built, aliases are counted before they are expanded):

1. In process: loading the largest suite allowed (exactly `MAX_CASES` cases), refusing 90
   matrices that alias one 10,000-case matrix, refusing a YAML alias bomb; CPU and wall time.
2. Through a real `bench.py run FILE` process each: every hostile variant of
   `tests/test_hostile_suites.py` (wall time from start to its one-line error and exit 2), the
   median and the slowest against the 2 s target. Includes the interpreter's start and the CLI's
   imports, as a user sees it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

TARGET_S = 2.0


def _timed(fn) -> tuple[float, float]:
    c0, w0 = time.process_time(), time.perf_counter()
    fn()
    return time.process_time() - c0, time.perf_counter() - w0


def in_process(work: Path, repeat: int) -> list[tuple[str, float, float]]:
    from cnnbench.core.errors import SuiteError
    from cnnbench.suite.schema import MAX_CASES, load_suite

    models = "[lenet5, alexnet, vgg11, vgg13, vgg16, vgg19, resnet18, resnet34, resnet50, resnet101]"
    largest = work / "largest.yaml"
    largest.write_text(f"name: t\nmodels: {models}\nbatch_sizes: {list(range(1, 101))}\nthreads: {list(range(1, 21))}\n")
    from test_hostile_suites import _bomb, _shared_anchors

    anchors = work / "anchors.yaml"
    anchors.write_text(_shared_anchors())
    bomb = work / "bomb.yaml"
    bomb.write_text(_bomb())

    def load_ok() -> None:
        assert len(load_suite(largest).cases) == MAX_CASES

    def refused(path: Path):
        def go() -> None:
            try:
                load_suite(path)
            except SuiteError:
                return
            raise AssertionError(f"{path} was not refused")

        return go

    out = []
    for label, fn in ((f"largest suite allowed ({MAX_CASES} cases), loaded", load_ok),
                      ("90 matrices aliasing one (900,000 cases), refused", refused(anchors)),
                      ("YAML alias bomb (9^9 nodes), refused", refused(bomb))):  # fmt: skip
        runs = [_timed(fn) for _ in range(repeat)]
        out.append((label, statistics.median(c for c, _ in runs), statistics.median(w for _, w in runs)))
    return out


def through_the_cli(work: Path) -> list[tuple[str, float, int]]:
    from test_hostile_suites import FIXTURES, VARIANTS, _make

    out = []
    for name, content, _needles in VARIANTS:
        d = work / name
        d.mkdir()
        shutil.copy(FIXTURES / "faultmodels.py", d / "faultmodels.py")
        suite = _make(d, content)
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, str(ROOT / "bench.py"), "run", str(suite), "--out", str(d / "o.json")],
                              cwd=d, capture_output=True, timeout=120)  # fmt: skip
        out.append((name, time.perf_counter() - t0, proc.returncode))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3, help="in-process timings: the median of this many")
    args = ap.parse_args()
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        print(f"load average {load:.2f} on {os.cpu_count()} CPUs; target: an answer in < {TARGET_S:g} s")
        print()
        print("In process (median of %d):" % args.repeat)
        for label, cpu, wall in in_process(work, args.repeat):
            print(f"  {label:<52} {cpu:6.3f} s CPU  {wall:6.3f} s wall")
        rows = through_the_cli(work)
    walls = [w for _, w, _ in rows]
    bad = [n for n, _, rc in rows if rc != 2]
    slow = sorted(rows, key=lambda r: -r[1])[:5]
    print()
    print(f"Through `bench.py run FILE`, {len(rows)} hostile variants (one process each, interpreter start included):")
    print(f"  median {statistics.median(walls):.3f} s, slowest {max(walls):.3f} s; "
          f"{sum(w < TARGET_S for w in walls)} of {len(rows)} under {TARGET_S:g} s; exit 2 for {len(rows) - len(bad)} of {len(rows)}")  # fmt: skip
    print("  slowest: " + ", ".join(f"{n} {w:.2f} s" for n, w, _ in slow))
    if bad:
        print("  NOT exit 2: " + ", ".join(bad))
    return 0


if __name__ == "__main__":
    sys.exit(main())
