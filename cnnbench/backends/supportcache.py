"""`bench.py list backends`, cached: the support table changes only when what it depends on does.

Making the table imports torch, onnxruntime, openvino, nncf, torchao and probes TensorRT: about
6 s on an idle 2-core machine (20 s measured under load 6.5, 2026-12-06). What the answer depends on is
known without importing any of them: the interpreter, the installed versions of those
distributions (`importlib.metadata`, milliseconds), the GPUs the driver exposes (`/dev/nvidia*`,
`CUDA_VISIBLE_DEVICES`), the host and cnnbench's own version. Their hash names the cache file
(`<cache_dir>/backends/support-<hash>.json`), so an install, an upgrade or a GPU change makes a
new key and the table is checked again; `--refresh` checks it regardless.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import platform
import sys
from pathlib import Path
from typing import Any

from cnnbench.backends.artifacts import cache_dir, package_version, write_json
from cnnbench.backends.support import Support, support_table
from cnnbench.core import VERSION

__all__ = ["DEPENDS_ON", "support_key", "cached_support"]

# The distributions whose presence or version changes an answer of `support_table`.
DEPENDS_ON = (
    "torch", "onnxruntime-gpu", "onnxruntime", "onnx", "onnxscript", "openvino", "nncf", "torchao",
    "tensorrt", "tensorrt-cu12", "tensorrt-cu13", "nvidia-ml-py",
)  # fmt: skip
_MAX_CACHE_BYTES = 1 << 20


def support_key() -> dict[str, Any]:
    """What the support table depends on, read without importing any backend."""
    return {
        "cnnbench": VERSION,
        "python": sys.executable,
        "python_version": platform.python_version(),
        "host": platform.node(),
        "machine": platform.machine(),
        "packages": {pkg: package_version(pkg) for pkg in DEPENDS_ON},
        "gpus": sorted(glob.glob("/dev/nvidia[0-9]*")),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
    }


def _path(key: dict[str, Any]) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return cache_dir() / "backends" / f"support-{digest}.json"


def _read(path: Path, key: dict[str, Any]) -> list[Support] | None:
    try:
        if path.stat().st_size > _MAX_CACHE_BYTES:
            return None
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("key") != key:
            return None
        return [Support(r["backend"], r["device"], r["precision"], r["reason"]) for r in data["rows"]]
    except (OSError, ValueError, KeyError, TypeError):  # missing or damaged: check again
        return None


def cached_support(*, refresh: bool = False, say: Any = None) -> tuple[list[Support], bool]:
    """The support table and whether it came from the cache.

    Args:
        refresh: check again even when a cached answer exists.
        say: called with one line before the slow check (what it does), e.g. print to stderr.
    """
    key = support_key()
    path = _path(key)
    if not refresh:
        rows = _read(path, key)
        if rows is not None:
            return rows, True
    if say is not None:
        say("checking what runs here (imports torch, onnxruntime, openvino, ...; a few seconds, cached afterwards)")
    rows = support_table()
    try:
        write_json(path, {"key": key, "rows": [r.__dict__ for r in rows]})
    except OSError:  # a read-only cache directory: the answer is still right, only not kept
        pass
    return rows, False
