"""Does the harness time ORT and torch.compile as a hand-written loop would? Prints figures.

For each model and backend (batch 1, the same thread count), rounds alternate a harness worker
process (the real `run_worker` path: build, count, prepare, warmup, adaptive loop, parity) and
a fresh process running a minimal hand-written loop with identical settings:

- onnxrt: the same exported `.onnx` file (the harness' cached export), the same session
  options (graph optimisation ALL, intra-op threads = the case's, inter-op 1, sequential), the
  same input values as a numpy array; `sess.run(None, feed)` in calibrated blocks of >= 1 ms.
  The hand loop imports only numpy and onnxruntime.
- compile: the same model build, `torch.compile(dynamic=False)` with inductor freezing on,
  `torch.inference_mode()` around each call, the same threads. Both sides share one inductor
  cache directory (the harness' `cache: <dir>` option), so only the first process pays a cold
  compile; steady-state latency is what is compared.

- openvino: the same cached IR (`.xml`/`.bin`), reshaped to the case's batch, compiled with
  the same properties (INFERENCE_NUM_THREADS, PERFORMANCE_HINT LATENCY, INFERENCE_PRECISION_HINT
  f32), one request, `request.infer(feed, share_inputs=True, share_outputs=True)`.
- aoti: the same cached `.pt2` package, `torch._inductor.aoti_load_package`, `runner(x)` under
  `torch.inference_mode()`, the same threads.

Both sides run in fresh processes so neither inherits the other's warm state; interleaving
spreads machine drift over both. The figure is the ratio of the medians of the per-round
medians, harness / hand loop (target 1 ± 0.05), and the median of the per-round ratios (each
round's two sides run back to back, so this one is less exposed to load that drifts between
rounds on a shared machine).

    python benchmarks/backend_overhead.py [--rounds 5] [--models lenet5 resnet18]
        [--backends onnxrt compile openvino aoti] [--threads N] [--time 2]

`--int8` measures, instead, int8 vs fp32 through the harness (interleaved rounds, batch 1 and
8) for `--int8-models` (default resnet18 mobilenet_v2) on `--int8-backends` (default onnxrt
openvino; compile/aoti PT2E where torchao's quantizer accepts the model), and the accuracy
change on digits for lenet5 (trained weights from examples/digits/train_lenet5.py, int8
calibrated on the train split, top-1 on the 450 test images vs the same model in fp32 eager).
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

# The timing loop both hand-written sides share: warmup, then blocks of n calls (n calibrated
# so a block takes >= 1 ms, as the harness does) for `seconds`; the median of block means.
_LOOP = """
import statistics, time
def measure(call, seconds):
    for _ in range(5):
        call()
    n = 1
    while True:
        t0 = time.perf_counter_ns()
        for _ in range(n):
            call()
        if time.perf_counter_ns() - t0 >= 1_000_000 or n >= 65536:
            break
        n *= 2
    for _ in range(5):
        for _ in range(n):
            call()
    samples = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end or len(samples) < 10:
        t0 = time.perf_counter_ns()
        for _ in range(n):
            call()
        samples.append((time.perf_counter_ns() - t0) / 1e6 / n)
    return statistics.median(samples)
"""

_ORT_LOOP = (
    _LOOP
    + """
import json, sys
import numpy as np
import onnxruntime as ort
path, x_path, threads, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
so = ort.SessionOptions()
so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
so.intra_op_num_threads = threads
so.inter_op_num_threads = 1
so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
so.log_severity_level = 3
sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
feed = {sess.get_inputs()[0].name: np.load(x_path)}
print(json.dumps({"median_ms": measure(lambda: sess.run(None, feed), seconds),
                  "provider": sess.get_providers()[0]}))
"""
)

_COMPILE_LOOP = (
    _LOOP
    + """
import json, os, sys
model_name, x_path, threads, seconds, cache = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache
import numpy as np
import torch
import torch._inductor.config as inductor_config
from cnnbench.models.registry import build_model
torch.set_num_threads(threads)
torch.set_num_interop_threads(1)
inductor_config.freezing = True
torch.manual_seed(0)
model = build_model(model_name).eval()
x = torch.from_numpy(np.load(x_path))
compiled = torch.compile(model, dynamic=False)
def call():
    with torch.inference_mode():
        return compiled(x)
call()
print(json.dumps({"median_ms": measure(call, seconds)}))
"""
)


_OPENVINO_LOOP = (
    _LOOP
    + """
import json, sys
import numpy as np
import openvino as ov
xml, x_path, threads, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
x = np.load(x_path)
core = ov.Core()
model = core.read_model(xml)
model.reshape(list(x.shape))
compiled = core.compile_model(model, "CPU", {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY",
                                             "INFERENCE_PRECISION_HINT": "f32"})
req = compiled.create_infer_request()
feed = {0: x}
print(json.dumps({"median_ms": measure(lambda: req.infer(feed, share_inputs=True, share_outputs=True), seconds),
                  "devices": list(compiled.get_property("EXECUTION_DEVICES"))}))
"""
)

_AOTI_LOOP = (
    _LOOP
    + """
import json, sys
import numpy as np
import torch
path, x_path, threads, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
torch.set_num_threads(threads)
torch.set_num_interop_threads(1)
runner = torch._inductor.aoti_load_package(path)
x = torch.from_numpy(np.load(x_path))
def call():
    with torch.inference_mode():
        return runner(x)
print(json.dumps({"median_ms": measure(call, seconds)}))
"""
)


def hand_loop(code: str, args: list[str]) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, check=False, cwd=ROOT,
        env={**__import__("os").environ, "PYTHONPATH": str(ROOT)},
    )
    if out.returncode != 0:
        raise RuntimeError(f"hand-written loop failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    import numpy as np

    from cnnbench.backends.common import example_batch
    from cnnbench.models.catalog import get_info
    from cnnbench.run.runner import run_worker
    from cnnbench.core.spec import CaseSpec, Measure
    from cnnbench.suite.schema import default_threads

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--models", nargs="+", default=["lenet5", "resnet18"])
    ap.add_argument("--backends", nargs="+", default=["onnxrt", "compile", "openvino", "aoti"],
                    choices=["onnxrt", "compile", "openvino", "aoti"])  # fmt: skip
    ap.add_argument("--threads", type=int, default=default_threads())
    ap.add_argument("--time", type=float, default=2.0, help="timed seconds per side per round")
    ap.add_argument("--int8", action="store_true", help="int8 vs fp32 speedups and the digits accuracy change instead")
    ap.add_argument("--int8-models", nargs="+", default=["resnet18", "mobilenet_v2"])
    ap.add_argument("--int8-backends", nargs="+", default=["onnxrt", "openvino"],
                    choices=["onnxrt", "openvino", "compile", "aoti"])  # fmt: skip
    args = ap.parse_args()
    if args.int8:
        from int8_speedup import main as int8_main

        return int8_main(args)

    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        inductor_cache = str(Path(workdir) / "inductor")
        for model in args.models:
            for backend in args.backends:
                options = (("cache", inductor_cache),) if backend == "compile" else ()
                spec = CaseSpec(
                    model=model, batch_size=1, input_size=get_info(model).input_size, backend=backend,
                    threads=args.threads, options=options,
                    measure=Measure(warmup=5, min_time_s=args.time, max_time_s=args.time * 2, timeout_s=900),
                )
                x_path = str(Path(workdir) / f"{model}-x.npy")
                np.save(x_path, example_batch(spec).numpy())
                harness, hand = [], []
                for r in range(args.rounds):
                    run = run_worker(spec, workdir=workdir)
                    if run["status"] != "ok":
                        print(f"{model} {backend}: harness run failed: {run['status']}: {run.get('error')}")
                        return 1
                    harness.append(statistics.median(run["samples_ms"]))
                    info = run.get("backend_info") or {}
                    if backend == "onnxrt":
                        res = hand_loop(_ORT_LOOP, [info["export_path"], x_path, str(args.threads), str(args.time)])
                        assert res["provider"] == info["provider"], (res, info["provider"])
                    elif backend == "openvino":
                        res = hand_loop(_OPENVINO_LOOP, [info["export_path"], x_path, str(args.threads), str(args.time)])
                        assert res["devices"] == info["execution_devices"], (res, info["execution_devices"])
                    elif backend == "aoti":
                        res = hand_loop(_AOTI_LOOP, [info["export_path"], x_path, str(args.threads), str(args.time)])
                    else:
                        res = hand_loop(_COMPILE_LOOP, [model, x_path, str(args.threads), str(args.time), inductor_cache])
                    hand.append(res["median_ms"])
                    print(
                        f"  {model} {backend} round {r + 1}: harness {harness[-1]:.4f} ms, hand loop {hand[-1]:.4f} ms",
                        flush=True,
                    )
                h, t = statistics.median(harness), statistics.median(hand)
                paired = statistics.median(a / b for a, b in zip(harness, hand))
                rows.append((model, backend, h, t, h / t, paired))

    print()
    print(f"threads={args.threads}, batch 1, {args.rounds} interleaved rounds, medians of per-round medians")
    print(f"{'model':10s} {'backend':8s} {'harness ms':>11s} {'hand ms':>10s} {'ratio':>7s} {'paired':>7s} {'in 1±0.05':>9s}")
    for model, backend, h, t, ratio, paired in rows:
        ok = "yes" if abs(ratio - 1) <= 0.05 else "NO"
        print(f"{model:10s} {backend:8s} {h:11.4f} {t:10.4f} {ratio:7.3f} {paired:7.3f} {ok:>9s}")
    print("ratio = median(harness) / median(hand loop); paired = median of the per-round ratios")
    return 0


if __name__ == "__main__":
    sys.exit(main())
