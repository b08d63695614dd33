"""The H2D / compute / D2H split (cnnbench.backends.transfer) with a fake clock; CPU is not applicable."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from cnnbench.core.spec import Measure
from cnnbench.backends.transfer import HostTimer, Parts, measure_split, time_split

MS = 1_000_000


class Pipeline:
    """Parts whose calls advance a fake clock: H2D 2 ms, compute 5 ms (7 ms on the first two
    calls), D2H 1 ms; the timer's sync is counted."""

    def __init__(self):
        self.now = 0
        self.syncs = 0
        self.calls = {"h2d": 0, "compute": 0, "d2h": 0}
        self.got: list[object] = []

    def clock(self) -> int:
        return self.now

    def sync(self) -> None:
        self.syncs += 1

    def h2d(self) -> None:
        self.calls["h2d"] += 1
        self.now += 2 * MS

    def compute(self) -> object:
        self.calls["compute"] += 1
        self.now += (7 if self.calls["compute"] <= 2 else 5) * MS
        return ("out", self.calls["compute"])

    def d2h(self, out: object) -> None:
        self.calls["d2h"] += 1
        self.got.append(out)
        self.now += 1 * MS

    def parts(self) -> Parts:
        return Parts(self.h2d, self.compute, self.d2h, timer="host_clock", info={"host_memory": "fake"})


def test_split_arithmetic_with_a_fake_clock():
    p = Pipeline()
    rec = time_split(p.parts(), HostTimer(p.sync, p.clock), min_calls=5, max_calls=50, target_s=0.08, clock=p.clock)
    # The first call is untimed (buffers); the first timed call (10 ms) sizes the run: 0.08 s / 10 ms = 8 calls.
    assert rec["calls"] == 8
    assert p.calls == {"h2d": 9, "compute": 9, "d2h": 9}
    assert rec["h2d_ms"]["median"] == pytest.approx(2.0)
    assert rec["compute_ms"]["median"] == pytest.approx(5.0)
    assert rec["compute_ms"]["max"] == pytest.approx(7.0)  # the second call, timed
    assert rec["d2h_ms"]["median"] == pytest.approx(1.0)
    assert rec["total_ms"]["median"] == pytest.approx(8.0)
    assert rec["share"] == {"h2d": pytest.approx(0.25), "compute": pytest.approx(0.625), "d2h": pytest.approx(0.125)}
    assert rec["timer"] == "host_clock" and rec["host_memory"] == "fake"
    # every part boundary is a synchronized clock read: 4 marks per timed call
    assert p.syncs == 4 * rec["calls"]
    # d2h copies what compute returned in the same call
    assert p.got[-1] == ("out", 9)


def test_split_call_count_is_bounded():
    p = Pipeline()
    rec = time_split(p.parts(), HostTimer(p.sync, p.clock), min_calls=3, max_calls=4, target_s=100.0, clock=p.clock)
    assert rec["calls"] == 4
    p = Pipeline()
    rec = time_split(p.parts(), HostTimer(p.sync, p.clock), min_calls=3, max_calls=40, target_s=0.0, clock=p.clock)
    assert rec["calls"] == 3


def spec(**kw):
    base = dict(device="cuda", mode="inference", backend="eager", measure=Measure(transfer=True))
    base.update(kw)
    return SimpleNamespace(**base)


def test_not_applicable_on_cpu_in_training_and_without_a_split():
    prepared = SimpleNamespace(transfer=None, sync=None)
    cpu = measure_split(spec(device="cpu"), prepared)
    assert cpu == {
        "applicable": False,
        "reason": "device cpu: inputs and outputs are already in host memory, there is no copy to time",
    }
    assert "train mode" in measure_split(spec(mode="train"), prepared)["reason"]
    assert "does not offer" in measure_split(spec(backend="onnxrt"), prepared)["reason"]


def test_measure_split_uses_the_backend_parts_and_its_sync():
    p = Pipeline()
    prepared = SimpleNamespace(transfer=p.parts, sync=p.sync)
    rec = measure_split(spec(), prepared, clock=p.clock)
    assert rec["applicable"] is True and rec["timer"] == "host_clock"
    assert rec["total_ms"]["median"] == pytest.approx(8.0)
    assert p.syncs >= 4 * rec["calls"]


@pytest.mark.slow
def test_a_cpu_case_with_transfer_records_not_applicable(tmp_path):
    """End to end through a worker: the CPU case is measured as usual, the split says why not."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    suite = tmp_path / "s.yaml"
    suite.write_text(
        "name: t\nmodels: [lenet5]\nbatch_sizes: [2]\ndevice: cpu\n"
        "measure: {warmup: 1, min_time_s: 0.05, max_time_s: 0.2, transfer: true}\n"
    )
    out = tmp_path / "r.json"
    env = {**os.environ, "PYTHONPATH": str(repo)}
    proc = subprocess.run(
        [sys.executable, str(repo / "bench.py"), "run", str(suite), "-o", str(out), "-q", "--no-peak", "--wide"],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    (case,) = json.loads(out.read_text())["cases"]
    assert case["status"] == "ok" and case["samples_ms"]
    assert case["transfer"]["applicable"] is False and "host memory" in case["transfer"]["reason"]
    assert isinstance(case["energy"], dict)
    if not case["energy"]["available"]:  # no RAPL here: a reason, never a zero
        assert case["energy"]["reason"] and "joules" not in case["energy"]
    # --wide shows the energy columns where some case measured energy, and only there
    assert ("images/J" in proc.stdout) == bool(case["energy"].get("available"))


def test_ort_parts_use_the_real_io_binding_api_on_cpu():
    """The ORT split's calls (update_inplace, run_with_iobinding, copy_outputs_to_cpu) on a real
    session; on CUDA the OrtValue and outputs live on the device, the calls are the same."""
    np = pytest.importorskip("numpy")
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper

    from cnnbench.backends.transfer import ort_parts

    graph = helper.make_graph(
        [helper.make_node("Relu", ["input"], ["output"])], "g",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [2, 3])],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    x_np = np.array([[-1.0, 2.0, -3.0], [4.0, -5.0, 6.0]], dtype=np.float32)
    x_dev = ort.OrtValue.ortvalue_from_numpy(np.zeros_like(x_np), "cpu", 0)
    binding = sess.io_binding()
    binding.bind_ortvalue_input("input", x_dev)
    binding.bind_output("output", "cpu", 0)
    parts = ort_parts(x_dev, x_np, binding, lambda: sess.run_with_iobinding(binding))
    parts.h2d()  # the zeros become x_np: the run then sees the real input
    parts.compute()
    assert np.array_equal(binding.copy_outputs_to_cpu()[0], np.maximum(x_np, 0))
    rec = time_split(parts, HostTimer(None), min_calls=3, max_calls=3)
    assert rec["calls"] == 3 and rec["timer"] == "host_clock" and rec["input_bytes"] == x_np.nbytes
    assert all(rec[f"{p}_ms"]["median"] >= 0 for p in ("h2d", "compute", "d2h"))


def test_torch_parts_copy_into_the_timed_input_and_out_of_every_output(monkeypatch):
    """torch_parts on CPU tensors with pinning stubbed out (pinning needs CUDA): H2D refills the
    very tensor compute reads, D2H copies every output tensor (tuples too) into host buffers."""
    torch = pytest.importorskip("torch")
    from cnnbench.backends.transfer import torch_parts

    monkeypatch.setattr(torch.Tensor, "pin_memory", lambda self: self.clone())
    x = torch.randn(2, 3)
    original = x.clone()
    parts = torch_parts(x, lambda: (x * 2, x.sum(dim=1)))
    x.zero_()
    parts.h2d()
    assert torch.equal(x, original)
    buffers = parts.d2h(parts.compute())
    assert [b.shape for b in buffers] == [(2, 3), (2,)]
    assert torch.equal(buffers[0], original * 2) and torch.allclose(buffers[1], original.sum(dim=1))
    assert parts.timer == "cuda_events" and parts.info["input_bytes"] == 2 * 3 * 4
