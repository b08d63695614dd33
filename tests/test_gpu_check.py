"""benchmarks/gpu_check.sh and its python entry, on a machine without CUDA (CI, this one).

The CUDA checks themselves only run on a GPU (docs/gpu.md); here: the script starts from the
checkout without installing anything, says "skipped: no CUDA" for every check with exit code 3,
writes its files to $OUT, and its CPU smoke mode runs the checks that mean something on a CPU
without importing what the GPU machine may lack (rich, PyYAML, fvcore, matplotlib).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "gpu_check.sh"


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "OUT")}
    env.update(
        PYTHON=sys.executable, CUDA_VISIBLE_DEVICES="", OUT=str(tmp_path / "out"),
        CNNBENCH_WHEELS=str(tmp_path / "no-wheels"), CNNBENCH_SITE=str(tmp_path / "no-site"),
    )  # fmt: skip
    env.update(extra)
    return env


@pytest.mark.slow
def test_without_cuda_every_check_is_skipped_cleanly(tmp_path):
    proc = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, env=_env(tmp_path), timeout=300, cwd=tmp_path)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    lines = [ln for ln in proc.stdout.splitlines() if ln.split()[:1] and ln.split()[0] in _checks()]
    assert len(lines) == len(_checks())
    assert all(" SKIP " in ln and "skipped: no CUDA" in ln for ln in lines), proc.stdout
    data = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    assert [c["name"] for c in data["checks"]] == list(_checks())
    assert {c["status"] for c in data["checks"]} == {"SKIP"}
    assert data["environment"]["cuda_available"] is False
    assert (tmp_path / "out" / "gpu_check.txt").read_text().startswith("cnnbench gpu_check")


def _checks() -> tuple[str, ...]:
    import runpy

    return tuple(runpy.run_path(str(REPO / "benchmarks" / "gpu_check.py"), run_name="gpu_check")["CHECKS"])


@pytest.mark.slow
def test_cpu_smoke_runs_the_cpu_meaningful_checks_without_heavy_imports(tmp_path):
    code = (
        "import runpy, sys\n"
        f"g = runpy.run_path({str(REPO / 'benchmarks' / 'gpu_check.py')!r}, run_name='gpu_check')\n"
        "rc = g['main'](['--device', 'cpu', '--model', 'lenet5', '--batch', '4', '--warmup', '2',"
        " '--min-time', '0.1', '--max-time', '0.3'])\n"
        "print('LOADED', sorted(m for m in ('rich', 'yaml', 'fvcore', 'matplotlib') if m in sys.modules))\n"
        "sys.exit(rc)\n"
    )
    env = _env(tmp_path, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "LOADED []" in proc.stdout
    rows = {c["name"]: c for c in json.loads((tmp_path / "out" / "gpu_check.json").read_text())["checks"]}
    for name in ("warmup_excluded", "peak_memory", "bf16_parity", "transfer_split"):
        assert rows[name]["status"] == "PASS", rows[name]
    assert rows["warmup_excluded"]["figures"]["calls_in_window"] == rows["warmup_excluded"]["figures"]["timed_calls"]
    for name in ("events_vs_sync", "nvml_energy", "compile_default", "onnxrt_cuda"):
        assert rows[name]["status"] == "SKIP" and rows[name]["note"].startswith("skipped: ")
