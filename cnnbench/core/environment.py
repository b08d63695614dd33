"""The environment a run was measured in, recorded at the top of every results file.

Versions come from package metadata (no import needed); CUDA facts need torch and are read only
when a run starts. `machine_fingerprint` hashes the hardware facts that make timings comparable
(CPU model, core count, memory, GPU), so compare can tell a same-machine baseline from another.
"""

from __future__ import annotations

import hashlib
import os
import platform
import socket
import subprocess
from pathlib import Path
from typing import Any, Iterable
from cnnbench.core.allocator import describe

__all__ = ["collect_environment", "package_versions", "cpu_model", "git_commit"]

_PACKAGES = ("torch", "torchvision", "onnxruntime-gpu", "onnxruntime", "onnx", "fvcore", "numpy", "rich")
PROJECT_ROOT = Path(__file__).resolve().parents[2]  # cnnbench/core/environment.py -> the checkout


def package_versions(names: Iterable[str] = (), *, torch_runtime: bool = False) -> dict[str, str | None]:
    """Installed versions from package metadata (None when absent), of `names` or, by default,
    every package a results file records. `torch_runtime` puts `torch.__version__` first (the
    running build, what a cache key must name)."""
    from importlib import metadata  # ~0.1 s: only when versions are asked for

    out: dict[str, str | None] = {}
    if torch_runtime:
        import torch

        out["torch"] = torch.__version__
    for name in names or _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _total_memory_bytes() -> int | None:
    try:
        import psutil

        return int(psutil.virtual_memory().total)
    except Exception:  # noqa: BLE001
        return None


def git_commit(path: Path = PROJECT_ROOT) -> dict[str, Any]:
    """The project's commit and whether the tree had uncommitted changes (None outside git)."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=path, capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = bool(
            subprocess.run(
                ["git", "status", "--porcelain", "--untracked-files=no"],
                cwd=path, capture_output=True, text=True, timeout=5, check=True,
            ).stdout.strip()
        )
        return {"commit": sha, "dirty": dirty, **_git_branch_and_time(path)}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def _git_branch_and_time(path: Path) -> dict[str, Any]:
    """The checked-out branch (None when detached, unless CI names it) and the commit's time,
    which the history store keys its points by (cnnbench.history)."""

    def git(*argv: str) -> str | None:
        try:
            return subprocess.run(
                ["git", *argv], cwd=path, capture_output=True, text=True, timeout=5, check=True
            ).stdout.strip() or None
        except (OSError, subprocess.SubprocessError):
            return None

    branch = git("symbolic-ref", "--short", "-q", "HEAD")
    for var in ("GITHUB_HEAD_REF", "GITHUB_REF_NAME", "CI_COMMIT_REF_NAME"):  # detached in CI
        if branch is None and os.environ.get(var):
            branch = os.environ[var]
    return {"branch": branch, "commit_time": git("show", "-s", "--format=%cI", "HEAD")}


def _cuda_facts() -> dict[str, Any]:
    import torch

    facts: dict[str, Any] = {
        "cuda_available": torch.cuda.is_available(),
        "torch_cuda_build": torch.version.cuda,
        "cudnn": None,
        "gpu_name": None,
        "gpu_count": 0,
        "driver": None,
    }
    if facts["cuda_available"]:
        facts["gpu_count"] = torch.cuda.device_count()
        facts["gpu_name"] = torch.cuda.get_device_name(0)
        facts["cudnn"] = torch.backends.cudnn.version()
        try:
            facts["driver"] = subprocess.run(
                ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                capture_output=True, text=True, timeout=10, check=True,
            ).stdout.strip().splitlines()[0]
        except (OSError, subprocess.SubprocessError, IndexError):
            facts["driver"] = None
    facts["torch_default_threads"] = torch.get_num_threads()
    return facts


def collect_environment(*, with_torch: bool = True) -> dict[str, Any]:
    versions = package_versions()
    env: dict[str, Any] = {
        "hostname": socket.gethostname(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "memory_bytes": _total_memory_bytes(),
        "torch": versions["torch"],
        "torchvision": versions["torchvision"],
        "onnxruntime": versions["onnxruntime-gpu"] or versions["onnxruntime"],
        "onnxruntime_package": "onnxruntime-gpu" if versions["onnxruntime-gpu"] else ("onnxruntime" if versions["onnxruntime"] else None),
        "onnx": versions["onnx"],
        "fvcore": versions["fvcore"],
        "numpy": versions["numpy"],
        "rich": versions["rich"],
        "git": git_commit(),
        "env_threads": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS") if os.environ.get(k)},
    }

    env.update(describe())  # allocator, allocator_library, allocator_settings (`--allocator`)
    if with_torch:
        env.update(_cuda_facts())
    fingerprint_src = "|".join(
        str(env.get(k)) for k in ("cpu_model", "cpu_count", "memory_bytes", "gpu_name", "gpu_count")
    )
    env["machine_fingerprint"] = hashlib.sha256(fingerprint_src.encode()).hexdigest()[:16]
    return env
