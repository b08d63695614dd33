"""Write the golden results files the report tests read (run from the repository root):

    python tests/data/report/make_golden.py

Synthetic but shaped like real runs, made with the real `build_record` and `new_results` so the
files follow the current schema. Samples are seeded per case key, so rerunning this script
rewrites identical files. Contents:

- `host_a.json` (bench-a, Xeon, peak GFLOP/s measured): resnet18, mobilenet_v2, resnet50 x batch
  1/8/32 x eager/compile/onnxrt on CPU, 4 threads. Memory on every ok case, parity on compile and
  onnxrt, published accuracy for all, measured accuracy for resnet18. One failed case (resnet50
  compile batch 32: timeout), one parity failure (mobilenet_v2 onnxrt batch 32), one noisy case
  (resnet18 eager batch 32: high-dispersion warning).
- `host_b.json` (bench-b, EPYC, another machine): resnet18 and mobilenet_v2 x batch 1/8 x
  eager/onnxrt; the same case keys as host_a, to test that merged machines are never averaged.
"""

from __future__ import annotations

import json
import random
import sys
import zlib
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2]))

from cnnbench.results import build_record, new_results  # noqa: E402
from cnnbench.spec import CaseSpec  # noqa: E402

MODELS = {
    # name: (b1 eager ms on host A, params, gmacs/image, activation bytes/image, published)
    "resnet18": (12.0, 11_689_512, 1.814, 9_950_000, ("ResNet18_Weights.IMAGENET1K_V1", 69.758, 89.078)),
    "mobilenet_v2": (6.0, 3_504_872, 0.3007, 27_300_000, ("MobileNet_V2_Weights.IMAGENET1K_V2", 72.154, 90.822)),
    "resnet50": (30.0, 25_557_032, 4.089, 45_900_000, ("ResNet50_Weights.IMAGENET1K_V2", 80.858, 95.434)),
}
BACKEND_FACTOR = {"eager": 1.0, "compile": 0.78, "onnxrt": 0.66}
FIRST_CALL_MS = {"eager": 1.6, "compile": 14_500.0, "onnxrt": 2_300.0}
BACKEND_INFO = {
    "eager": {},
    "compile": {"mode": "default", "freezing": True, "recompiles": 0},
    "onnxrt": {"provider": "CPUExecutionProvider", "opset": 18, "exporter": "dynamo"},
}


def environment(host: str, cpu: str, fingerprint: str, peak: float | None) -> dict:
    env = {
        "hostname": host,
        "os": "Linux-6.1.0-18-amd64-x86_64-with-glibc2.36",
        "python": "3.11.2",
        "cpu_model": cpu,
        "cpu_count": 16,
        "cpu_affinity": 16,
        "memory_bytes": 64 * 2**30,
        "torch": "2.14.1",
        "torchvision": "0.29.1",
        "onnxruntime": "1.31.1",
        "onnxruntime_package": "onnxruntime-gpu",
        "onnx": "1.23.2",
        "fvcore": "0.1.5.post20221221",
        "numpy": "2.4.6",
        "git": {"commit": "4f100a6c0ffee0ddba11ad5eed0123456789abcd", "dirty": False},
        "cuda_available": False,
        "torch_cuda_build": "13.0",
        "cudnn": None,
        "gpu_name": None,
        "gpu_count": 0,
        "driver": None,
        "machine_fingerprint": fingerprint,
    }
    if peak is not None:
        env["peak_gflops"] = peak
    return env


def samples(key: str, base_ms: float, n: int, spread: float) -> list[float]:
    rnd = random.Random(zlib.crc32(key.encode()))
    out = []
    for _ in range(n):
        x = base_ms * (1.0 + abs(rnd.gauss(0.0, spread)))
        if rnd.random() < 0.05:  # the odd slow call, as on a real machine
            x *= 1.0 + rnd.random() * 0.3
        out.append(round(x, 6))
    return out


def case(model: str, batch: int, backend: str, *, host_factor: float, threads: int, failed: dict | None = None,
         parity_fail: bool = False, noisy: bool = False, measured_accuracy: bool = False) -> dict:
    base, params, gmacs, act_bytes, (weights, acc1, acc5) = MODELS[model]
    spec = CaseSpec(model=model, batch_size=batch, input_size=(3, 224, 224), backend=backend, threads=threads)
    static = {
        "params": params,
        "trainable_params": params,
        "gmacs_per_image": gmacs,
        "gmacs": gmacs * batch,
        "gflops": 2 * gmacs * batch,
        "counter": "fvcore",
        "aux_heads_included": False,
        "backend_info": BACKEND_INFO[backend],
        "counts": {"params": params, "gmacs": gmacs, "counter": "fvcore",
                   "crosscheck": {"counter": "torch.utils.flop_counter", "gmacs": gmacs * 0.997, "disagreement": 0.003}},
        # The shape cnnbench.models.registry.published_metadata writes (torchvision's own keys).
        "published": {"weights": weights, "dataset": "ImageNet-1K", "acc@1": acc1, "acc@5": acc5, "num_params": params,
                      "gmacs": round(gmacs, 2), "gflops": round(2 * gmacs, 2), "crop_size": 224},
    }
    if failed is not None:
        return build_record(spec, [{**static, **failed}])
    median = base * host_factor * BACKEND_FACTOR[backend] * batch**0.85
    run = {
        **static,
        "status": "ok",
        "error": None,
        "samples_ms": samples(spec.key, median, 60, 0.25 if noisy else 0.02),
        "warmup_ms": [median * 1.4, median * 1.1, median * 1.02],
        "first_call_ms": FIRST_CALL_MS[backend] if backend != "eager" else median * FIRST_CALL_MS["eager"],
        "block_size": 1,
        "stop_reason": "ci_narrow",
        "memory": {
            "peak_rss_delta_bytes": int(act_bytes * batch * (0.6 if backend == "onnxrt" else 1.1)) + 3_000_000,
            "param_bytes": params * 4,
            "activation_bytes": act_bytes * batch,
        },
    }
    if backend != "eager":
        run["parity"] = (
            {"ok": False, "max_abs_err": 0.41, "max_rel_err": 0.12, "top1_agreement": 0.875}
            if parity_fail
            else {"ok": True, "max_abs_err": 2.4e-5, "max_rel_err": 1.1e-6, "top1_agreement": 1.0}
        )
    if measured_accuracy:
        run["accuracy"] = {"kind": "measured", "top1": 0.6975, "top5": 0.8907, "correct1": 6975, "correct5": 8907,
                           "total": 10000, "dataset": "imagenet-val (first 10,000 images)"}
    return build_record(spec, [run])


def host_a() -> dict:
    res = new_results(
        environment=environment("bench-a", "Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz", "a1a1a1a1a1a1a1a1", 850.0),
        suite={"name": "golden", "path": "suites/golden.yaml", "sha256": "0" * 64},
    )
    res["created"] = res["updated"] = "2026-03-01T10:00:00+00:00"
    for model in MODELS:
        for batch in (1, 8, 32):
            for backend in ("eager", "compile", "onnxrt"):
                failed = None
                if (model, batch, backend) == ("resnet50", 32, "compile"):
                    failed = {"status": "timeout", "error": "worker exceeded its 300 s timeout (killed)"}
                res["cases"].append(
                    case(
                        model, batch, backend, host_factor=1.0, threads=4, failed=failed,
                        parity_fail=(model, batch, backend) == ("mobilenet_v2", 32, "onnxrt"),
                        noisy=(model, batch, backend) == ("resnet18", 32, "eager"),
                        measured_accuracy=(model, batch, backend) == ("resnet18", 1, "eager"),
                    )
                )
    return res


def host_b() -> dict:
    res = new_results(
        environment=environment("bench-b", "AMD EPYC 7763 64-Core Processor", "b2b2b2b2b2b2b2b2", None),
        suite={"name": "golden", "path": "suites/golden.yaml", "sha256": "0" * 64},
    )
    res["created"] = res["updated"] = "2026-03-02T09:30:00+00:00"
    for model in ("resnet18", "mobilenet_v2"):
        for batch in (1, 8):
            for backend in ("eager", "onnxrt"):
                res["cases"].append(case(model, batch, backend, host_factor=1.6, threads=4))
    return res


def main() -> None:
    for name, results in (("host_a.json", host_a()), ("host_b.json", host_b())):
        (HERE / name).write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
        print(HERE / name)


if __name__ == "__main__":
    main()
