"""The machine's attainable GFLOP/s, measured once per run, for "% of peak" in reports.

A large fp32 matrix multiply (an `nn.Linear` without bias on a (1, 1, n, n) input: n x n times
n x n, 2 n^3 FLOPs) is timed through the very path every case takes (a worker process, the
case's thread count and device, warmup excluded, synchronized samples), so a case's achieved
GFLOP/s and the peak are measured the same way. It is a practical peak (what torch's GEMM
reaches here), not the datasheet's.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Sequence

from cnnbench.run import runner
from cnnbench.core.spec import CaseSpec, Measure
from cnnbench.stats import basic as stats

__all__ = ["build", "peak_spec", "measure_peak"]

_SIZE = {"cpu": 2048, "cuda": 8192}


def build(size: int = 2048):
    """The peak "model": one bias-free n x n linear layer (a plain GEMM)."""
    from torch import nn

    return nn.Linear(size, size, bias=False)


def peak_spec(cases: Sequence[CaseSpec]) -> CaseSpec | None:
    """The peak case for a run: the device of most cases and their most common thread count."""
    if not cases:
        return None
    device = Counter(c.device for c in cases).most_common(1)[0][0]
    threads = Counter(c.threads for c in cases if c.device == device).most_common(1)[0][0]
    n = _SIZE.get(device, 2048)
    return CaseSpec(
        model="peak-gemm",
        source="cnnbench.run.peak:build",
        model_kwargs=(("size", n),),
        batch_size=1,
        input_size=(1, n, n),
        device=device,
        threads=threads,
        measure=Measure(warmup=2, min_time_s=1.0, max_time_s=3.0, min_samples=5, timeout_s=180),
    )


def measure_peak(cases: Sequence[CaseSpec], *, worker: Any = None, **worker_kwargs: Any) -> dict[str, Any]:
    """Run the peak case in a worker; returns the `environment` fields (never raises for it)."""
    spec = peak_spec(cases)
    if spec is None:
        return {}
    run = (worker or runner.run_worker)(spec, **worker_kwargs)
    n = spec.input_size[1]
    info: dict[str, Any] = {
        "method": f"fp32 GEMM {n}x{n} @ {n}x{n} (nn.Linear), median of a worker's samples",
        "device": spec.device,
        "threads": spec.threads,
    }
    if run.get("status") != "ok" or not run.get("samples_ms"):
        info["error"] = f"{run.get('status')}: {run.get('error')}"
        return {"peak_gflops": None, "peak": info}

    median_s = stats.median(run["samples_ms"]) / 1000.0
    gflops = 2 * n**3 / median_s / 1e9
    info["median_ms"] = median_s * 1000.0
    return {"peak_gflops": gflops, "peak": info}
