"""Does the harness measure what torch.utils.benchmark measures? Prints figures; not a test.

For each model (batch 1, same thread count) it alternates, round by round, a harness worker
process (the real `run_worker` path: build, count, prepare, warmup, adaptive loop) and a fresh
process timing the same eager model with `torch.utils.benchmark.Timer.blocked_autorange`. Both
sides run in fresh processes so neither inherits the other's warm caches; interleaving spreads
machine drift over both. It prints the ratio of the medians of the per-round medians (target
1 ± 0.03) and the per-case overhead of the harness (worker start to first warmup call).

`--start` picks how harness workers start: `fork` (the default of `bench.py run`/`ab`: forked from
a pre-imported worker server, cnnbench.run.server), `spawn` (a fresh interpreter, `--spawn`), or
`both` (each round runs one of each, so the overhead before/after and both ratios come from the
same rounds). A forked worker's overhead is from the fork request to its first warmup call; the
server's own start-up (one torch import per model here, one per variant in a real run) is paid
once and shown apart.

`--allocator` (jemalloc, tcmalloc, glibc-tuned) runs both sides, harness workers and Timer
processes alike, under that allocator (cnnbench.core.allocator; docs/processes.md: glibc's malloc spreads
fresh processes of a small model by up to 1.3-1.5x here, which 5 rounds cannot average to 3%). The
table prints each side's between-process spread (max/min of its per-round medians) beside the ratio.

    python benchmarks/fidelity.py [--rounds 5] [--models lenet5 resnet18] [--threads N] [--start both] [--allocator NAME]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def timer_median_ms(model: str, threads: int, min_run_time: float) -> float:
    """torch.utils.benchmark's median for the same eager model, in a fresh process."""
    code = f"""
import json, torch
from torch.utils.benchmark import Timer
from cnnbench.models.catalog import get_info
from cnnbench.models.registry import build_model
torch.set_num_threads({threads})
size = get_info({model!r}).input_size
model = build_model({model!r}).eval()
x = torch.randn((1, *size), generator=torch.Generator().manual_seed(0))
def run():
    with torch.inference_mode():
        return model(x)
t = Timer(stmt="run()", globals={{"run": run}}, num_threads={threads})
m = t.blocked_autorange(min_run_time={min_run_time})
print(json.dumps({{"median_ms": m.median * 1e3}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])["median_ms"]


def main() -> int:
    from cnnbench.models.catalog import get_info
    from cnnbench.run.runner import run_worker
    from cnnbench.core.spec import CaseSpec, Measure
    from cnnbench.suite.schema import default_threads

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--models", nargs="+", default=["lenet5", "resnet18"])
    ap.add_argument("--threads", type=int, default=default_threads())
    ap.add_argument("--time", type=float, default=2.0, help="timed seconds per side per round")
    ap.add_argument("--start", choices=("fork", "spawn", "both"), default="both", help="how harness workers start")
    from cnnbench.core import allocator

    ap.add_argument("--allocator", choices=allocator.NAMES, default=allocator.DEFAULT,
                    help="the memory allocator of every process, both sides (cnnbench.core.allocator)")
    args = ap.parse_args()
    allocator.apply(args.allocator)  # before any process starts: the harness workers, their server and Timer's copy os.environ
    from cnnbench.run import server

    starts = ("spawn", "fork") if args.start == "both" else (args.start,)
    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        for model in args.models:
            spec = CaseSpec(
                model=model, batch_size=1, input_size=get_info(model).input_size, threads=args.threads,
                measure=Measure(warmup=5, min_time_s=args.time, max_time_s=args.time * 2, timeout_s=300),
            )
            harness = {s: [] for s in starts}
            overhead = {s: [] for s in starts}
            timer: list[float] = []
            with server.session(enabled="fork" in starts) as pool:
                if pool is not None:  # the server starts with the first fork: paid once, kept apart
                    first = run_worker(spec, workdir=workdir)
                    server_ms = first.get("overhead_ms")
                for r in range(args.rounds):
                    for start in starts:
                        with server.forced_spawn(start == "spawn"):
                            run = run_worker(spec, workdir=workdir)
                        if run["status"] != "ok" or run.get("worker_start") != start:
                            print(f"{model}: harness run failed: {run['status']} ({run.get('worker_start')}): {run.get('error')}")
                            return 1
                        harness[start].append(statistics.median(run["samples_ms"]))
                        overhead[start].append(run["overhead_ms"])
                    timer.append(timer_median_ms(model, args.threads, args.time))
                    print(f"  {model} round {r + 1}: " + ", ".join(f"harness ({s}) {harness[s][-1]:.4f} ms, overhead {overhead[s][-1]:.0f} ms" for s in starts)
                          + f", Timer {timer[-1]:.4f} ms", flush=True)  # fmt: skip
            t = statistics.median(timer)
            for s in starts:
                h = statistics.median(harness[s])
                rows.append((model, s, h, t, h / t, statistics.median(overhead[s]), max(harness[s]) / min(harness[s]), max(timer) / min(timer)))
            if "fork" in starts:
                print(f"  {model}: first forked worker, server start-up included: {server_ms:.0f} ms to its first warmup (once, not in the rounds)")

    print()
    print(f"threads={args.threads}, batch 1, {args.rounds} interleaved rounds, medians of per-round medians, allocator {args.allocator}")
    print(f"{'model':10s} {'start':>6s} {'harness ms':>11s} {'Timer ms':>10s} {'ratio':>7s} {'in 1±0.03':>9s} {'overhead ms':>12s}"
          f" {'spread harness':>15s} {'spread Timer':>13s}")
    for model, s, h, t, ratio, ov, sh, st in rows:
        ok = "yes" if abs(ratio - 1) <= 0.03 else "NO"
        print(f"{model:10s} {s:>6s} {h:11.4f} {t:10.4f} {ratio:7.3f} {ok:>9s} {ov:12.0f} {sh:15.3f} {st:13.3f}")
    print("spread = max/min of the side's per-round medians (each round's figure is one fresh process)")
    print("overhead = worker start (spawn: a new interpreter; fork: the fork request to the server) to the first")
    print("warmup call (imports for spawn, then build, counting, prepare)")
    return 0



if __name__ == "__main__":
    sys.exit(main())
