"""How fast is the history store? Ingest and `history` times for 1,000 commits x 50 cases on SQLite.

    python benchmarks/history_bench.py [--commits 1000] [--cases 50] [--processes 3] [--samples 100]

Targets (issue 14): `store` under 1 s per results file, `history` under 2 s. Each synthetic
results file is what `bench.py run` writes for a suite of `--cases` cases with `--processes`
worker processes of `--samples` per-call samples each (a step of +10% in a fifth of the cases
half-way, so change-point detection has something to find). Store time is `bench.py store`'s
work per file (load and check the JSON, hash it, compress every record, one transaction);
history time is `bench.py history --json` over every case (read, pool, detect, render JSON),
and `--html` the same with the trend page. Prints a table; not a test.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tempfile
import time
from contextlib import redirect_stdout
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cnnbench import cli  # noqa: E402
from cnnbench.commands.store import store_files  # noqa: E402
from cnnbench.results.format import write_results  # noqa: E402
from tests.history_fixtures import make_results, make_spec  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--commits", type=int, default=1000)
    ap.add_argument("--cases", type=int, default=50)
    ap.add_argument("--processes", type=int, default=3)
    ap.add_argument("--samples", type=int, default=100)
    ap.add_argument("--keep", metavar="DIR", help="keep the store in DIR (default: a temporary directory, removed)")
    args = ap.parse_args()

    specs = [make_spec(f"model{i // 5:02d}", backend=("eager", "onnxrt", "compile")[i % 3], batch=1 + i % 5) for i in range(args.cases)]
    with tempfile.TemporaryDirectory(prefix="cnnbench-history-bench-") as tmp:
        work = Path(args.keep or tmp)
        work.mkdir(parents=True, exist_ok=True)
        url = f"sqlite:///{work / 'history.sqlite'}"
        store_s: list[float] = []
        store_cpu: list[float] = []
        t_gen = 0.0
        for c in range(args.commits):
            t0 = time.perf_counter()
            levels = {s: (1.0 + 0.01 * j) * (1.10 if (j % 5 == 0 and c >= args.commits // 2) else 1.0) for j, s in enumerate(specs)}
            results = make_results(levels, commit=f"{c:040x}", time="2026-01-01T00:00:00+00:00", seed=c,
                                   processes=args.processes)  # fmt: skip
            results["environment"]["git"]["commit_time"] = f"2026-{1 + c // 28 // 24 % 12:02d}-{1 + c // 24 % 28:02d}T{c % 24:02d}:00:00+00:00"
            for rec in results["cases"]:  # the asked number of samples per process
                for run in rec["runs"]:
                    run["samples_ms"] = (run["samples_ms"] * (args.samples // len(run["samples_ms"]) + 1))[: args.samples]
            path = work / f"run{c:04d}.json"
            write_results(path, results)
            t_gen += time.perf_counter() - t0
            t0, c0 = time.perf_counter(), time.process_time()
            store_files([str(path)], url=url)
            store_s.append(time.perf_counter() - t0)
            store_cpu.append(time.process_time() - c0)
            path.unlink()
            if (c + 1) % 100 == 0:
                print(f"  stored {c + 1}/{args.commits} (last 100: mean {statistics.mean(store_s[-100:]) * 1000:.0f} ms)", flush=True)
        size = os.path.getsize(work / "history.sqlite")

        def timed(argv: list[str]) -> tuple[float, float]:
            """(wall seconds, CPU seconds of this process): on a loaded machine the CPU time is
            the closer estimate of the wall time on a quiet one."""
            t0, c0 = time.perf_counter(), time.process_time()
            with redirect_stdout(io.StringIO()):
                code = cli.main(argv)
            assert code == 0, argv
            return time.perf_counter() - t0, time.process_time() - c0

        hist = [timed(["history", "--db", url, "--json"]) for _ in range(3)]
        html = timed(["history", "--db", url, "--html", str(work / "trends")])
        page = os.path.getsize(work / "trends" / "index.html")

    if args.keep:
        print(f"  (store kept: {url})")
    print()
    print(f"history store benchmark: {args.commits} commits x {args.cases} cases, {args.processes} processes x {args.samples} samples")
    print(f"  store per results file: mean {statistics.mean(store_s) * 1000:.0f} ms, median "
          f"{statistics.median(store_s) * 1000:.0f} ms, max {max(store_s) * 1000:.0f} ms (target < 1000 ms)")  # fmt: skip
    print(f"  store, CPU per file:    mean {statistics.mean(store_cpu) * 1000:.0f} ms (the process's own CPU time)")
    print(f"  store, all files:       {sum(store_s):.1f} s (generating the files took {t_gen:.1f} s more)")
    best = min(hist)
    print(f"  history --json:         {best[0]:.2f} s best of 3 ({best[1]:.2f} s CPU), {max(h[0] for h in hist):.2f} s worst (target < 2 s)")
    print(f"  history --html:         {html[0]:.2f} s ({html[1]:.2f} s CPU; page {page / 1e6:.1f} MB)")
    print(f"  load average:           {' '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} cores")
    print(f"  SQLite file:            {size / 1e6:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
