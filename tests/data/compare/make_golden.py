"""Generate the golden results files for tests/test_compare.py (run from anywhere).

    python tests/data/compare/make_golden.py

Every file is built with `cnnbench.results.format.build_record` from seeded synthetic samples, so the
records have exactly the shape the runner writes. Latency model of one worker process (repeat):

    sample = median_ms * scale * process_effect * exp(N(0, WITHIN_CV)), 5% of samples x1.3
    process_effect = exp(N(0, process_cv))

`process_cv` 0.6% is the regime of interleaved runs (processes started together agree within
about 1.3%); the `spread` file uses 30%. The output is deterministic: rerunning rewrites the same
bytes.
"""

from __future__ import annotations

import json
import math
import random
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2]))

from cnnbench.results.schema import SCHEMA_VERSION  # noqa: E402

from cnnbench.results.format import build_record  # noqa: E402
from cnnbench.core.spec import CaseSpec, Measure  # noqa: E402

STAMP = "2026-01-01T00:00:00+00:00"
SAMPLES_PER_RUN = 30
WITHIN_CV = 0.02
PROCESS_CV = 0.006
MIB = 2**20

ENV = {
    "hostname": "ci-runner-1",
    "machine_fingerprint": "fp-ci-runner-1",
    "cpu_model": "Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz",
    "gpu_name": None,
    "torch": "2.14.1",
    "torchvision": "0.29.1",
    "onnxruntime": "1.31.1",
    "python": "3.11.7",
}
SUITE = {
    "name": "ci",
    "path": "suites/ci.yaml",
    "sha256": "0" * 64,
    "thresholds": {"latency": "5%", "memory": "10%"},
}

# name -> (model, batch, backend, median_ms, peak RSS growth in MiB)
CASES = {
    "r18b1": ("resnet18", 1, "eager", 21.0, 180),
    "r18b8": ("resnet18", 8, "eager", 118.0, 420),
    "mnv3": ("mobilenet_v3_small", 1, "eager", 4.2, 60),
    "lenet": ("lenet5", 32, "eager", 0.35, 30),
}
EXTRA = {
    "vgg": ("vgg11", 1, "eager", 95.0, 600),
    "goog_onnx": ("googlenet", 1, "onnxrt", 12.0, 150),
    "goog_fp16": ("googlenet", 1, "compile", 10.0, 150),
    "squeeze": ("squeezenet1_0", 1, "eager", 6.0, 80),
    "effnet": ("efficientnet_b0", 1, "eager", 9.0, 110),
}


def spec_for(model: str, batch: int, backend: str, repeats: int) -> CaseSpec:
    return CaseSpec(
        model=model,
        batch_size=batch,
        input_size=(1, 28, 28) if model == "lenet5" else (3, 224, 224),
        backend=backend,
        threads=4,
        measure=Measure(repeats=repeats),
    )


def ok_run(rng: random.Random, median_ms: float, *, scale: float, process_cv: float, rss_mib: float, **extra: Any) -> dict:
    effect = math.exp(rng.gauss(0.0, process_cv))
    samples = []
    for _ in range(SAMPLES_PER_RUN):
        x = median_ms * scale * effect * math.exp(rng.gauss(0.0, WITHIN_CV))
        if rng.random() < 0.05:
            x *= 1.3
        samples.append(round(x, 5))
    run = {
        "status": "ok",
        "samples_ms": samples,
        "warmup_ms": [round(median_ms * 3, 3)],
        "first_call_ms": round(median_ms * 10, 3),
        "block_size": 1,
        "stop_reason": "ci",
        "memory": {"peak_rss_delta_bytes": int(rss_mib * MIB)},
        "parity": {"ok": True, "max_abs_err": 1e-6, "max_rel_err": 1e-5, "top1_agreement": 1.0},
    }
    run.update(extra)
    return run


def record(
    seed: str,
    case: tuple,
    *,
    repeats: int = 5,
    scale: float = 1.0,
    process_cv: float = PROCESS_CV,
    rss_scale: float = 1.0,
    **extra: Any,
) -> dict:
    model, batch, backend, median_ms, rss = case
    rng = random.Random(f"{seed}|{model}|{batch}|{backend}")
    runs = [
        ok_run(rng, median_ms, scale=scale, process_cv=process_cv, rss_mib=rss * rss_scale, **extra)
        for _ in range(repeats)
    ]
    return build_record(spec_for(model, batch, backend, repeats), runs, planned_repeats=repeats)


def failed_record(case: tuple, status: str, error: str, *, repeats: int = 5) -> dict:
    model, batch, backend, _, _ = case
    runs = [{"status": status, "error": error, "exit_code": -11}]
    return build_record(spec_for(model, batch, backend, repeats), runs, planned_repeats=repeats)


def results(cases: list[dict], **env: Any) -> dict:
    return {
        "schema_version": SCHEMA_VERSION,
        "tool": "cnnbench",
        "created": STAMP,
        "updated": STAMP,
        "environment": {**ENV, **env},
        "suite": dict(SUITE),
        "cases": cases,
    }


def core(seed: str, **kw: Any) -> list[dict]:
    return [record(seed, c, **kw) for c in CASES.values()]


def build_all() -> dict[str, dict]:
    """File name -> results dict."""
    files = {
        # Five repeats per case, low (interleaved-run) process noise.
        "base.json": results(core("base")),
        "aa.json": results(core("aa")),  # same code, independent noise
        "slower25.json": results(core("s25", scale=1.25)),
        "slower2.json": results(core("s2", scale=1.02)),
        "spread.json": results(core("spread", scale=1.10, process_cv=0.30)),
        "env_torch.json": results(core("aa"), torch="2.13.0", hostname="laptop", machine_fingerprint="fp-laptop"),
        "other_host.json": results(core("aa"), hostname="ci-runner-7", machine_fingerprint="fp-ci-runner-7"),
        # Three repeats: a rank test cannot reach alpha 0.01 (smallest p 0.05).
        "r3_base.json": results(core("r3b", repeats=3)),
        "r3_slower25.json": results(core("r3c", repeats=3, scale=1.25)),
        # One repeat: the bootstrap path.
        "r1_base.json": results(core("r1b", repeats=1)),
        "r1_aa.json": results(core("r1a", repeats=1)),
        "r1_slower25.json": results(core("r1s", repeats=1, scale=1.25)),
        "r1_slower9.json": results(core("r1n", repeats=1, scale=1.09)),
    }
    c = CASES
    e = EXTRA
    files["mixed_base.json"] = results(
        [
            record("mb", c["r18b1"]),
            record("mb", c["r18b8"]),
            record("mb", c["mnv3"]),
            record("mb", c["lenet"]),
            record("mb", e["vgg"]),
            record("mb", e["goog_onnx"]),
            record("mb", e["goog_fp16"]),
            record("mb", e["squeeze"]),
        ]
    )
    bad_parity = {"ok": False, "max_abs_err": 0.8, "max_rel_err": 2.5, "top1_agreement": 0.41}
    goog_fp16 = record("mc", e["goog_fp16"], scale=0.5, parity=bad_parity)
    goog_fp16["status"] = "fail_accuracy"
    goog_fp16["error"] = "parity: top-1 agreement 0.41 < 0.99"
    files["mixed_current.json"] = results(
        [
            record("mc", c["r18b1"]),  # unchanged
            record("mc", c["r18b8"], scale=0.70),  # improved
            record("mc", c["mnv3"], rss_scale=1.4),  # memory regression, latency unchanged
            record("mc", c["lenet"], scale=1.25),  # latency regression
            # vgg11: missing
            record("mc", e["goog_onnx"], scale=0.5, parity=bad_parity),  # faster but wrong: invalid
            goog_fp16,  # status fail_accuracy, faster: invalid
            failed_record(e["squeeze"], "crashed", "Traceback (most recent call last):\n  ...\nRuntimeError: worker died (SIGSEGV)"),
            record("mc", e["effnet"]),  # new
        ]
    )
    return files


def dumps(data: dict) -> str:
    """JSON with one case per line: small files, readable diffs, still a plain results file."""
    head = json.dumps({k: v for k, v in data.items() if k != "cases"}, indent=1)
    cases = ",\n".join("  " + json.dumps(c, separators=(",", ":")) for c in data["cases"])
    return head[:-2] + ',\n "cases": [\n' + cases + "\n ]\n}\n"


def main() -> None:
    for name, data in build_all().items():
        (HERE / name).write_text(dumps(data), encoding="utf-8")
        print(f"wrote {HERE / name}")


if __name__ == "__main__":
    main()
