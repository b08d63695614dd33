"""What every deployment backend shares around its artefacts: where they are cached, how a
model's source is fingerprinted into a cache key, how an exporter's prints are kept out of the
worker's output, and how a cache's metadata is written.

Public here so that onnxrt, openvino, aoti, tensorrt, quantize and the counting cache use one
copy each (none of them imports another backend's private helpers).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any, Iterator

from cnnbench.core.safeio import atomic_write, open_append

__all__ = ["cache_dir", "source_fingerprint", "output_to", "write_json", "package_version"]


def cache_dir() -> Path:
    """Where exports, engines and counts are cached: `$CNNBENCH_CACHE_DIR`, else `~/.cache/cnnbench`."""
    env = os.environ.get("CNNBENCH_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "cnnbench"


def source_fingerprint(source: str | None) -> str | None:
    """A hash of a user model's module file, so editing it invalidates its cached counts."""
    if not source:
        return None
    import importlib.util

    try:
        spec = importlib.util.find_spec(source.partition(":")[0])
    except Exception:  # noqa: BLE001 - a broken user package: no source to report
        return None
    origin = getattr(spec, "origin", None)
    if not origin or not os.path.isfile(origin):
        return None
    return hashlib.sha256(Path(origin).read_bytes()).hexdigest()[:16]


@contextlib.contextmanager
def output_to(log_path: Path) -> Iterator[None]:
    """Send everything written to stdout/stderr, by Python or by C++ (the TorchScript exporter
    prints its IR dump from C++), and every Python warning (e.g. the legacy exporter's
    deprecation), to `log_path`, at the file-descriptor level."""
    import warnings

    sys.stdout.flush()
    sys.stderr.flush()
    with os.fdopen(open_append(log_path), "ab") as log:  # never through a planted link
        saved = [os.dup(1), os.dup(2)]
        try:
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                try:
                    yield
                finally:
                    for w in caught:
                        line = warnings.formatwarning(w.message, w.category, w.filename, w.lineno, None)
                        log.write(line.encode("utf-8", "replace"))
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            log.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)


def write_json(path: Path, data: dict[str, Any]) -> None:
    """A cache's metadata file, written atomically (`cnnbench.core.safeio`)."""
    atomic_write(path, json.dumps(data, indent=1, sort_keys=True))


def package_version(pkg: str) -> str | None:
    """The installed version of a distribution, None when it is not installed."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(pkg)
    except PackageNotFoundError:
        return None
