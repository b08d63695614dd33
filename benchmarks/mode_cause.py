"""Why do fresh processes of the same case split into modes on this machine? Prints a table; not a test.

    python benchmarks/mode_cause.py [--model mnist_cnn] [--batch 8] [--processes 8] [--time 1.0]

Issue 19, part 4. Each *setting* changes one thing about how a fresh process is started; for every
setting, `--processes` fresh Python processes each build the model (weights from one seed, so every
process computes the same thing), warm up, and time a plain hand-written loop (no cnnbench
harness: `time.perf_counter_ns` around `model(x)` under `torch.inference_mode`, one thread). The
processes of all settings are interleaved (round-robin, setting order reshuffled every round with a
fixed seed) so a drift of the machine over the run lands on every setting alike. Per setting it
prints each process's p5 and median, its minor page faults per timed call (getrusage: a fault per
call means memory handed back to the kernel and faulted in again), the modes `cnnbench.stats.processes.detect_modes` finds among the
p5s (the rule `bench.py run` warns with), and the spread (max/min of the p5s).

Settings (each alone, against the baseline):

* `baseline`        - python -c, inherited environment.
* `aslr_off`        - `setarch -R`: no address-space randomisation (same layout in every process).
* `env_64k`         - a 64 KiB environment variable (shifts the initial stack; Mytkowicz et al.,
                      "Producing wrong data without doing anything obviously wrong!", ASPLOS 2009).
* `thp`             - `THP_MEM_ALLOC_ENABLE=1`: PyTorch's CPU allocator asks for transparent huge pages.
* `jemalloc`        - LD_PRELOAD of Debian's libjemalloc (if installed) as the allocator.
* `tcmalloc`        - LD_PRELOAD of Debian's libtcmalloc_minimal (if installed).
* `glibc_tuned`     - glibc's malloc with a fixed mmap threshold (32 MiB, the most it takes) and a
                      1 GiB trim threshold: activations come from the heap and stay there, instead
                      of an mmap/munmap (and fresh page faults) per call until the dynamic
                      threshold has risen past them.
* `onednn_verbose`  - `ONEDNN_VERBOSE=1`: the oneDNN primitive each process chose is logged and
                      printed with its figure (does the slow mode pick another kernel?).
* `pin_cpu0` / `pin_cpu1` - `taskset -c 0` / `-c 1`: the process on one core.
* `no_mkldnn`       - `torch.backends.mkldnn.enabled = False`: the reference (non-oneDNN) convolution.

Frequency: read from /proc/cpuinfo before and after (a VM reports a nominal figure; nothing here
can pin it), and printed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cnnbench.stats.processes import detect_modes  # noqa: E402

CHILD = r"""
import json, os, resource, sys, time
sys.path.insert(0, {root!r})
import torch
torch.set_num_threads(1)
if {no_mkldnn}:
    torch.backends.mkldnn.enabled = False
from cnnbench.models.registry import build_model
torch.manual_seed(0)
model = build_model({model!r}).eval()
x = torch.randn({batch}, *{shape})
with torch.inference_mode():
    for _ in range(20):
        model(x)
    samples = []
    faults0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    end = time.perf_counter() + {secs}
    while time.perf_counter() < end or len(samples) < 50:
        t0 = time.perf_counter_ns()
        model(x)
        samples.append((time.perf_counter_ns() - t0) / 1e6)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults0
samples.sort()
n = len(samples)
print("RESULT " + json.dumps({{"p5": samples[int(0.05 * (n - 1))], "median": samples[n // 2], "n": n,
                              "faults_per_call": faults / n}}))
"""


def settings() -> dict[str, tuple[list[str], dict[str, str], bool]]:
    """name -> (command prefix, extra environment, mkldnn off)."""
    out: dict[str, tuple[list[str], dict[str, str], bool]] = {
        "baseline": ([], {}, False),
        "aslr_off": (["setarch", os.uname().machine, "-R"] if shutil.which("setarch") else None, {}, False),
        "env_64k": ([], {"CNNBENCH_PAD": "x" * 65536}, False),
        "thp": ([], {"THP_MEM_ALLOC_ENABLE": "1"}, False),
        "onednn_verbose": ([], {"ONEDNN_VERBOSE": "1"}, False),
        "pin_cpu0": (["taskset", "-c", "0"] if shutil.which("taskset") else None, {}, False),
        "pin_cpu1": (["taskset", "-c", "1"] if shutil.which("taskset") and os.cpu_count() and os.cpu_count() > 1 else None, {}, False),
        "no_mkldnn": ([], {}, True),
    }
    out["glibc_tuned"] = ([], {"MALLOC_MMAP_THRESHOLD_": "33554432", "MALLOC_TRIM_THRESHOLD_": "1073741824"}, False)
    tcmalloc = next((p for p in ("/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4", "/usr/lib/aarch64-linux-gnu/libtcmalloc_minimal.so.4") if Path(p).exists()), None)
    out["tcmalloc"] = ([], {"LD_PRELOAD": tcmalloc}, False) if tcmalloc else (None, {}, False)
    jemalloc = next((p for p in ("/usr/lib/x86_64-linux-gnu/libjemalloc.so.2", "/usr/lib/aarch64-linux-gnu/libjemalloc.so.2") if Path(p).exists()), None)
    out["jemalloc"] = ([], {"LD_PRELOAD": jemalloc}, False) if jemalloc else (None, {}, False)
    return {k: v for k, v in out.items()}


def cpu_mhz() -> str:
    try:
        vals = [float(ln.split(":")[1]) for ln in Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("cpu MHz")]
        return ", ".join(f"{v:.0f}" for v in vals) + " MHz"
    except (OSError, ValueError, IndexError):
        return "unknown"


def onednn_kernels(stdout: str) -> str:
    """The distinct oneDNN convolution implementations a process logged (ONEDNN_VERBOSE=1)."""
    impls = set()
    for ln in stdout.splitlines():
        parts = ln.split(",")
        if ln.startswith("onednn_verbose") and "exec" in parts and "convolution" in parts:
            i = parts.index("convolution")
            if i + 1 < len(parts):
                impls.add(parts[i + 1])
    return "+".join(sorted(impls)) or "-"


def one(model: str, batch: int, shape: list[int], secs: float, prefix: list[str], env: dict[str, str], no_mkldnn: bool) -> dict:
    code = CHILD.format(root=str(ROOT), model=model, batch=batch, shape=tuple(shape), secs=secs, no_mkldnn=no_mkldnn)
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", **env}
    proc = subprocess.run([*prefix, sys.executable, "-c", code], capture_output=True, text=True, env=full_env, timeout=600)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if line is None:
        return {"error": (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]}
    out = json.loads(line[len("RESULT "):])
    if "ONEDNN_VERBOSE" in env:
        out["kernels"] = onednn_kernels(proc.stdout)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="mnist_cnn")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--processes", type=int, default=8, help="fresh processes per setting")
    ap.add_argument("--time", type=float, default=1.0, help="seconds of timed loop per process")
    ap.add_argument("--only", action="append", help="run only these settings (repeatable)")
    ap.add_argument("--json", help="also write every process's figures here")
    args = ap.parse_args(argv)

    from cnnbench.models.catalog import get_info

    shape = list(get_info(args.model).input_size)
    table = settings()
    names = [n for n in table if not args.only or n in args.only]
    skipped = [n for n in names if table[n][0] is None]
    names = [n for n in names if table[n][0] is not None]
    print(f"model {args.model}, batch {args.batch}, 1 thread, {args.processes} fresh processes per setting, "
          f"{args.time:g} s timed each; load {os.getloadavg()[0]:.2f}; cpu {cpu_mhz()}", flush=True)
    if skipped:
        print("not available here (skipped): " + ", ".join(skipped))
    rng = random.Random(19)
    results: dict[str, list[dict]] = {n: [] for n in names}
    for r in range(args.processes):
        order = names[:]
        rng.shuffle(order)
        for n in order:
            prefix, env, no_mkldnn = table[n]
            results[n].append(one(args.model, args.batch, shape, args.time, prefix, env, no_mkldnn))
        print(f"  round {r + 1}/{args.processes} done (load {os.getloadavg()[0]:.2f})", flush=True)
    print(f"cpu after: {cpu_mhz()}")
    print()
    print("| setting | processes' p5 (ms) | medians (ms) | minor page faults per call | modes among the p5s | max/min p5 |")
    print("|---|---|---|---|---|---:|")
    for n in names:
        ok = [x for x in results[n] if "p5" in x]
        errs = [x["error"] for x in results[n] if "error" in x]
        if not ok:
            print(f"| {n} | failed: {errs[0]} | | | |")
            continue
        p5 = [x["p5"] for x in ok]
        cells = " ".join(f"{x['p5']:.2f}" + (f"[{x['kernels']}]" if "kernels" in x else "") for x in ok)
        meds = " ".join(f"{x['median']:.2f}" for x in ok)
        faults = " ".join(f"{x['faults_per_call']:.0f}" if "faults_per_call" in x else "-" for x in ok)
        groups = detect_modes(p5)
        modes = "one" if len(groups) <= 1 else "; ".join(
            f"{len(g)} at {statistics.median(p5[i] for i in g):.2f}" for g in groups)
        print(f"| {n} | {cells} | {meds} | {faults} | {modes} | {max(p5) / min(p5):.2f} |")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
