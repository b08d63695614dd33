"""Write the golden file of the speedup-agreement test (run from the repository root):

    python tests/data/records/make_golden.py

`speedups.json`: one model ("m") with inference and training cases built by the real
`build_record`, including `--oom-retry` cases (an onnxrt inference case asked at 32 and measured
at 16; a compile training step asked at 16 and measured at 8) and an AdamW pair, with constant
per-call samples so every speedup is known exactly:

    inference b8:  eager 10 ms, compile 8 ms (1.25x)
    inference b16: eager 18 ms; onnxrt asked b32, measured b16, 12 ms (1.5x over eager b16)
    inference b32: eager 40 ms
    train b8 sgd:   eager 100 ms, compile 80 ms (1.25x)
    train b8 adamw: eager 110 ms, compile 88 ms (1.25x, over eager AdamW, not SGD)
    train compile asked b16, measured b8 (sgd): 90 ms (100/90 over eager b8 sgd)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2]))

from cnnbench.results.format import build_record, new_results  # noqa: E402
from cnnbench.core.spec import CaseSpec, Measure  # noqa: E402


def case(backend: str, batch: int, ms: float, *, mode: str = "inference", options=(), measured: int | None = None):
    spec = CaseSpec(model="m", batch_size=batch, input_size=(1, 28, 28), backend=backend, mode=mode,
                    options=tuple(options), measure=Measure(min_samples=5))  # fmt: skip
    run = {"status": "ok", "error": None, "samples_ms": [ms] * 20, "warmup_ms": [ms], "first_call_ms": ms * 2}
    if measured is not None:
        run["batch_size"] = measured
        run["batch_attempts"] = [{"batch_size": batch, "status": "oom"}, {"batch_size": measured, "status": "ok"}]
    if mode == "train":
        name = dict(options).get("optimizer", "sgd")
        run["train"] = {"optimizer": {"name": name}}
    return build_record(spec, [run])


def main() -> None:
    results = new_results(environment={"hostname": "golden"}, suite={"name": "speedups"})
    results["cases"] = [
        case("eager", 8, 10.0),
        case("compile", 8, 8.0),
        case("eager", 16, 18.0),
        case("onnxrt", 32, 12.0, measured=16),
        case("eager", 32, 40.0),
        case("eager", 8, 100.0, mode="train"),
        case("compile", 8, 80.0, mode="train"),
        case("eager", 8, 110.0, mode="train", options=[("optimizer", "adamw")]),
        case("compile", 8, 88.0, mode="train", options=[("optimizer", "adamw")]),
        case("compile", 16, 90.0, mode="train", measured=8),
    ]
    results["created"] = results["updated"] = "2026-01-01T00:00:00+00:00"
    (HERE / "speedups.json").write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
