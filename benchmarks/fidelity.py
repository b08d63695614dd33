"""Does the harness measure what torch.utils.benchmark measures? Prints figures; not a test.

For each model (batch 1, same thread count) it alternates, round by round, a harness worker
process (the real `run_worker` path: build, count, prepare, warmup, adaptive loop) and a fresh
process timing the same eager model with `torch.utils.benchmark.Timer.blocked_autorange`. Both
sides run in fresh processes so neither inherits the other's warm caches; interleaving spreads
machine drift over both. It prints the ratio of the medians of the per-round medians (target
1 ± 0.03) and the per-case overhead of the harness (worker start to first warmup call).

    python benchmarks/fidelity.py [--rounds 5] [--models lenet5 resnet18] [--threads N]
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
    from cnnbench.runner import run_worker
    from cnnbench.spec import CaseSpec, Measure
    from cnnbench.models.catalog import get_info
    from cnnbench.suite import default_threads

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--models", nargs="+", default=["lenet5", "resnet18"])
    ap.add_argument("--threads", type=int, default=default_threads())
    ap.add_argument("--time", type=float, default=2.0, help="timed seconds per side per round")
    args = ap.parse_args()

    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        for model in args.models:
            spec = CaseSpec(
                model=model, batch_size=1, input_size=get_info(model).input_size, threads=args.threads,
                measure=Measure(warmup=5, min_time_s=args.time, max_time_s=args.time * 2, timeout_s=300),
            )
            harness, timer, overhead = [], [], []
            for r in range(args.rounds):
                run = run_worker(spec, workdir=workdir)
                if run["status"] != "ok":
                    print(f"{model}: harness run failed: {run['status']}: {run.get('error')}")
                    return 1
                harness.append(statistics.median(run["samples_ms"]))
                overhead.append(run["overhead_ms"])
                timer.append(timer_median_ms(model, args.threads, args.time))
                print(f"  {model} round {r + 1}: harness {harness[-1]:.4f} ms, Timer {timer[-1]:.4f} ms", flush=True)
            h, t = statistics.median(harness), statistics.median(timer)
            rows.append((model, h, t, h / t, statistics.median(overhead)))

    print()
    print(f"threads={args.threads}, batch 1, {args.rounds} interleaved rounds, medians of per-round medians")
    print(f"{'model':10s} {'harness ms':>11s} {'Timer ms':>10s} {'ratio':>7s} {'in 1±0.03':>9s} {'overhead ms':>12s}")
    for model, h, t, ratio, ov in rows:
        ok = "yes" if abs(ratio - 1) <= 0.03 else "NO"
        print(f"{model:10s} {h:11.4f} {t:10.4f} {ratio:7.3f} {ok:>9s} {ov:12.0f}")
    print("overhead = worker process start to first warmup call (torch import, build, counting, prepare)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
