"""The run's peak GFLOP/s: measured like a case, with the cases' threads and device."""

import pytest

from cnnbench.run.peak import measure_peak, peak_spec
from cnnbench.core.spec import CaseSpec


def case(threads, device="cpu"):
    return CaseSpec(model="lenet5", batch_size=1, input_size=(1, 32, 32), threads=threads, device=device)


def test_peak_case_takes_the_most_common_device_and_threads():
    spec = peak_spec([case(1), case(2), case(2), case(4, "cuda")])
    assert (spec.device, spec.threads) == ("cpu", 2)
    assert spec.source == "cnnbench.run.peak:build" and spec.input_size == (1, 2048, 2048)
    assert peak_spec([]) is None


def test_peak_gflops_is_two_n_cubed_over_the_median():
    seen = []

    def worker(spec, **kw):
        seen.append(spec)
        return {"status": "ok", "samples_ms": [100.0, 200.0, 400.0]}  # median 200 ms

    env = measure_peak([case(2)], worker=worker)
    assert env["peak_gflops"] == pytest.approx(2 * 2048**3 / 0.2 / 1e9)
    assert env["peak"]["threads"] == 2 and seen[0].model == "peak-gemm"


def test_a_failed_peak_is_recorded_not_raised():
    env = measure_peak([case(1)], worker=lambda spec, **kw: {"status": "timeout", "error": "killed"})
    assert env["peak_gflops"] is None and "timeout" in env["peak"]["error"]
