"""Write the golden results files the report tests read (run from the repository root):

    python tests/data/report/make_golden.py

Synthetic but shaped like real runs: records are made with the real `build_record` and
`new_results` (so the files follow the current schema), the worker's blocks have the shapes the
real code writes (`published` as `models.registry.published_metadata` returns it, `counts` as
`counting.counts_for`, `accuracy` as `accuracy.evaluate`, `parity` as `parity.compare_outputs`,
`train` as `training.TrainPrepared.train_record`), and a parity failure is a `fail_accuracy`
case whose timings stay only in its run, as the worker leaves it. Samples are seeded per case
key, so rerunning this script rewrites identical files. Contents:

- `host_a.json` (bench-a, Xeon, peak GFLOP/s measured): resnet18, mobilenet_v2, resnet50 x batch
  1/8/32 x eager/compile/onnxrt inference on CPU, 4 threads, plus three training cases (resnet18
  eager SGD and AdamW, mobilenet_v2 eager SGD; batch 8, forward/backward/optimizer detail).
  Memory on every ok case, parity on compile and onnxrt, published accuracy for all. Measured
  accuracy on resnet18 batch 1 through each backend (eager and compile 6,975/10,000, onnxrt
  6,961: 14 images off, beyond the 10-image tolerance). One timeout (resnet50 compile batch 32),
  one parity failure (mobilenet_v2 onnxrt batch 32: `fail_accuracy`), one noisy case (resnet18
  eager batch 32: high-dispersion warning), one --oom-retry case (resnet50 onnxrt batch 32,
  measured at batch 16 after an OOM at 32).
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

from cnnbench.results.format import build_record, new_results  # noqa: E402
from cnnbench.core.spec import CaseSpec  # noqa: E402
from cnnbench.measure.training import time_per_epoch  # noqa: E402

MODELS = {
    # name: (b1 eager ms on host A, params, gmacs/image, activation bytes/image)
    "resnet18": (12.0, 11_689_512, 1.814, 9_950_000),
    "mobilenet_v2": (6.0, 3_504_872, 0.3007, 27_300_000),
    "resnet50": (30.0, 25_557_032, 4.089, 45_900_000),
}
# What cnnbench.models.registry.published_metadata(name) returns (torchvision 0.29), verbatim.
PUBLISHED = {
    "resnet18": {
        "weights": "ResNet18_Weights.IMAGENET1K_V1", "dataset": "ImageNet-1K", "acc@1": 69.758, "acc@5": 89.078,
        "num_params": 11689512, "num_params_includes_aux": False, "gmacs": 1.814, "gflops": 3.628,
        "file_size_mb": 44.661, "min_size": [1, 1], "crop_size": 224, "resize_size": 256,
        "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "interpolation": "bilinear",
        "num_classes": 1000,
        "recipe": "https://github.com/pytorch/vision/tree/main/references/classification#resnet",
    },
    "mobilenet_v2": {
        "weights": "MobileNet_V2_Weights.IMAGENET1K_V2", "dataset": "ImageNet-1K", "acc@1": 72.154, "acc@5": 90.822,
        "num_params": 3504872, "num_params_includes_aux": False, "gmacs": 0.301, "gflops": 0.602,
        "file_size_mb": 13.598, "min_size": [1, 1], "crop_size": 224, "resize_size": 232,
        "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "interpolation": "bilinear",
        "num_classes": 1000, "recipe": "https://github.com/pytorch/vision/issues/3995#new-recipe-with-reg-tuning",
    },
    "resnet50": {
        "weights": "ResNet50_Weights.IMAGENET1K_V2", "dataset": "ImageNet-1K", "acc@1": 80.858, "acc@5": 95.434,
        "num_params": 25557032, "num_params_includes_aux": False, "gmacs": 4.089, "gflops": 8.178,
        "file_size_mb": 97.79, "min_size": [1, 1], "crop_size": 224, "resize_size": 232,
        "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "interpolation": "bilinear",
        "num_classes": 1000, "recipe": "https://github.com/pytorch/vision/issues/3995#issuecomment-1013906621",
    },
}  # fmt: skip
BACKEND_FACTOR = {"eager": 1.0, "compile": 0.78, "onnxrt": 0.66}
# eager: x the median; compile compiles in its first call; onnxrt's export and session are made
# in prepare (backend_info), so its first call is a plain run
FIRST_CALL_MS = {"eager": 1.6, "compile": 14_500.0, "onnxrt": 1.3}
BACKEND_INFO = {
    "eager": {},
    "compile": {"mode": "default", "freezing": True, "recompiles": 0, "compile_in_first_call": True},
    "onnxrt": {"provider": "CPUExecutionProvider", "opset": 18, "exporter": "dynamo",
               "export_ms": 2_300.0, "export_cached": False, "session_create_ms": 48.0},
}
TRAIN_FACTOR = 3.1  # a training step costs about 3x the forward pass
# The accuracy evaluation of resnet18 batch 1 (spec.evaluation: canonical JSON, absolute paths).
EVALUATION = json.dumps(
    {"dataset": {"kind": "imagefolder", "limit": 10000, "path": "/data/imagenet-val"},
     "weights": "ResNet18_Weights.IMAGENET1K_V1"},
    sort_keys=True, separators=(",", ":"),
)  # fmt: skip
CORRECT = {"eager": (6975, 8907), "compile": (6975, 8907), "onnxrt": (6961, 8902)}  # (top-1, top-5) of 10,000

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


def median(xs: list[float]) -> float:
    ys = sorted(xs)
    mid = len(ys) // 2
    return ys[mid] if len(ys) % 2 else (ys[mid - 1] + ys[mid]) / 2.0


def counts(model: str) -> dict:
    """The record's `counts`: cnnbench.measure.counting.counts_for without its warnings."""
    _, params, gmacs, _ = MODELS[model]
    return {
        "params": params, "trainable_params": params, "aux_heads_included": False, "input_size": [3, 224, 224],
        "gmacs": gmacs, "gflops": 2 * gmacs, "counter": "fvcore",
        "by_operator": {"conv": round(gmacs * 0.985, 6), "linear": 0.000513, "batch_norm": round(gmacs * 0.0147, 6)},
        "crosscheck": {"counter": "torch.utils.flop_counter", "gmacs": round(gmacs * 0.997, 6), "disagreement": 0.003},
        "versions": {"fvcore": "0.1.5.post20221221", "torch": "2.14.1+cu130", "torchvision": "0.29.1"},
    }  # fmt: skip


def train_info(optimizer: str) -> dict:
    """A training step's backend_info, as cnnbench.measure.training.prepare_train writes it."""
    kwargs = {"sgd": {"lr": 0.01, "momentum": 0.9}, "adamw": {"lr": 0.001, "weight_decay": 0.01}}[optimizer]
    ctor = {"sgd": "SGD", "adamw": "AdamW"}[optimizer]
    return {
        "mode": "train", "optimizer": {"name": optimizer, "class": f"torch.optim.{ctor}", **kwargs},
        "num_classes": 1000, "label_shape": [8], "autocast": False, "grad_scaler": False, "channels_last": False,
        "zero_grad": "set_to_none",
    }  # fmt: skip


def accuracy(backend: str) -> dict:
    """A measured accuracy as cnnbench.accuracy.evaluate (plus Evaluation.record) writes it."""
    correct1, correct5 = CORRECT[backend]
    return {
        "kind": "measured", "top1": 100.0 * correct1 / 10000, "top5": 100.0 * correct5 / 10000,
        "correct1": correct1, "correct5": correct5, "total": 10000, "skipped": 0, "skipped_examples": [],
        "nonfinite_rows": 0, "batch_size": 1, "limit": 10000, "duration_s": 212.4,
        "dataset": {
            "kind": "imagefolder", "name": "imagefolder imagenet-val", "path": "/data/imagenet-val",
            "classes": 1000, "size": 50000, "ignored_files": 0, "strict": False,
            "transforms": {"resize": 256, "crop": 224, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
                           "interpolation": "bilinear", "grayscale": False, "source": "ResNet18_Weights.IMAGENET1K_V1"},
        },
        "weights": {"name": "ResNet18_Weights.IMAGENET1K_V1", "source": "torch hub cache",
                    "path": "/root/.cache/torch/hub/checkpoints/resnet18-f37072fd.pth"},
    }  # fmt: skip


def parity(ok: bool) -> dict:
    """As cnnbench.measure.parity.check_parity returns it (fp32 on CPU: tolerance 1e-3 of the output scale)."""
    if ok:
        return {"max_abs_err": 0.000143, "max_rel_err": 2.4e-05, "scale": 5.96, "top1_agreement": 1.0, "rows": 8,
                "tolerance": 0.001, "ok": True, "reason": None, "reference": "eager fp32 on cpu, inference_mode"}
    return {"max_abs_err": 0.41, "max_rel_err": 0.0688, "scale": 5.96, "top1_agreement": 0.875, "rows": 8,
            "tolerance": 0.001, "ok": False,
            "reason": "parity failed: max error 0.41 is 0.0688 of the output scale 5.96 (tolerance 0.001)",
            "reference": "eager fp32 on cpu, inference_mode"}  # fmt: skip


def case(model: str, batch: int, backend: str, *, host_factor: float, threads: int, failed: dict | None = None,
         parity_fail: bool = False, noisy: bool = False, measured_accuracy: bool = False, oom_to: int | None = None,
         train: str | None = None) -> dict:
    base, params, gmacs, act_bytes = MODELS[model]
    ran = oom_to or batch  # the batch the worker actually ran (lower than asked after --oom-retry)
    spec = CaseSpec(
        model=model, batch_size=batch, input_size=(3, 224, 224), backend=backend, threads=threads,
        mode="train" if train else "inference",
        options=(("optimizer", train),) if train and train != "sgd" else (),
        evaluation=EVALUATION if measured_accuracy else None,
    )  # fmt: skip
    static = {
        "params": params,
        "trainable_params": params,
        "gmacs_per_image": gmacs,
        "gmacs": gmacs * ran,
        "gflops": 2 * gmacs * ran,
        "counter": "fvcore",
        "aux_heads_included": False,
        "backend_info": {**BACKEND_INFO[backend], **(train_info(train) if train else {})},
        "counts": counts(model),
        "published": PUBLISHED[model],
    }
    if failed is not None:
        return build_record(spec, [{**static, **failed}])
    median_ms = base * host_factor * BACKEND_FACTOR[backend] * ran**0.85 * (TRAIN_FACTOR if train else 1.0)
    run = {
        **static,
        "status": "ok",
        "error": None,
        "samples_ms": samples(spec.key, median_ms, 60, 0.25 if noisy else 0.02),
        "warmup_ms": [median_ms * 1.4, median_ms * 1.1, median_ms * 1.02],
        "first_call_ms": FIRST_CALL_MS[backend] if backend == "compile" else median_ms * FIRST_CALL_MS[backend],
        "block_size": 1,
        "stop_reason": "ci_narrow",
        "memory": {
            "rss_baseline_bytes": 412_000_000,
            "cpu_method": "VmHWM reset via /proc/self/clear_refs",
            "peak_rss_bytes": 412_000_000 + int(act_bytes * ran * (0.6 if backend == "onnxrt" else 1.1)) + 3_000_000,
            "peak_rss_delta_bytes": int(act_bytes * ran * (0.6 if backend == "onnxrt" else 1.1)) + 3_000_000,
            "param_bytes": params * 4,
            "activation_bytes": act_bytes * ran,
            "analytic_precision": "fp32",
        },
    }
    if train:
        run["memory"]["peak_rss_delta_bytes"] += params * 4 * (3 if train == "adamw" else 2)  # grads + state
        step = median(run["samples_ms"])
        run["train"] = {
            "optimizer": train_info(train)["optimizer"], "loss": "cross_entropy", "num_classes": 1000,
            "loss_first": 6.9412, "loss_last": 6.9027 if train == "sgd" else 6.8811, "steps_done": 75,
            "detail_ms": {"forward": step * 0.31, "backward": step * 0.58, "optimizer": step * 0.12,
                          "sum": step * 1.01, "steps": 9, "seconds": step * 9 / 1000},
            "time_per_epoch": time_per_epoch(step, ran),
        }  # fmt: skip
    elif backend != "eager":
        run["parity"] = parity(not parity_fail)
        if parity_fail:  # the worker's verdict: the timings stay in the run, the case is invalid
            run["status"], run["error"] = "fail_accuracy", run["parity"]["reason"]
    if measured_accuracy:
        run["accuracy"] = accuracy(backend)
    if oom_to:
        run["batch_size"] = oom_to
        run["batch_attempts"] = [{"batch_size": batch, "status": "oom"}, {"batch_size": oom_to, "status": "ok"}]
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
                        measured_accuracy=(model, batch) == ("resnet18", 1),
                        oom_to=16 if (model, batch, backend) == ("resnet50", 32, "onnxrt") else None,
                    )
                )  # fmt: skip
    for model, optimizer in (("resnet18", "sgd"), ("resnet18", "adamw"), ("mobilenet_v2", "sgd")):
        res["cases"].append(case(model, 8, "eager", host_factor=1.0, threads=4, train=optimizer))
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
                res["cases"].append(
                    case(model, batch, backend, host_factor=1.6, threads=4,
                         measured_accuracy=(model, batch) == ("resnet18", 1))
                )  # fmt: skip
    return res


def main() -> None:
    for name, results in (("host_a.json", host_a()), ("host_b.json", host_b())):
        (HERE / name).write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
        print(HERE / name)


if __name__ == "__main__":
    main()
