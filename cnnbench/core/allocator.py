"""Which memory allocator the worker processes use: `--allocator` of `run` and `ab`.

On this machine kind, fresh processes of the same small case spread by up to 1.3-1.5x between
them with glibc's malloc, and split into separated modes at times (docs/processes.md, measured by
benchmarks/mode_cause.py). A CNN's activations are large allocations freed after every call; glibc
serves those above its mmap threshold (128 KiB at start, raised dynamically as mmapped chunks are
freed) with a fresh mmap and munmap, so a process pays page faults on every call until the
threshold has risen past its tensors, and where it settles depends on the order of the process's
first allocations. An allocator that keeps freed memory (jemalloc, tcmalloc), or glibc with a
fixed high threshold, removes that.

The choice is never silent: it is an option, recorded in the results' environment (`allocator`,
`allocator_library`; `compare` warns when the two sides differ), and a worker whose preloaded
library did not load fails with that message instead of measuring with glibc's malloc.

It works through the environment the workers start with: `apply` sets it in the manager's own
`os.environ` before any worker or worker server starts (they copy it), never in a running process.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from cnnbench.core.errors import UserError

__all__ = ["DEFAULT", "ENV_LIB", "ENV_NAME", "NAMES", "apply", "check_loaded", "describe", "worker_env"]

DEFAULT = "default"
NAMES = (DEFAULT, "jemalloc", "tcmalloc", "glibc-tuned")
ENV_NAME = "CNNBENCH_ALLOCATOR"  # the name, for the record and the worker's check
ENV_LIB = "CNNBENCH_ALLOCATOR_LIB"  # the preloaded library the worker checks is mapped
_LIBRARIES = {
    "jemalloc": ("libjemalloc.so.2",),
    "tcmalloc": ("libtcmalloc_minimal.so.4", "libtcmalloc.so.4"),
}
_PACKAGES = {"jemalloc": "libjemalloc2", "tcmalloc": "libtcmalloc-minimal4"}
# glibc: a fixed mmap threshold (32 MiB, the most M_MMAP_THRESHOLD takes on 64-bit; setting it
# also turns off the dynamic adjustment) and a trim threshold high enough that the heap's top is
# not returned to the kernel after every call.
GLIBC_TUNED = {"MALLOC_MMAP_THRESHOLD_": "33554432", "MALLOC_TRIM_THRESHOLD_": "1073741824"}
_LIB_DIRS = ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib", "/usr/local/lib", "/lib/x86_64-linux-gnu")


def find_library(name: str, dirs: tuple[str, ...] = _LIB_DIRS) -> str | None:
    """The path of the shared library for allocator `name`, or None."""
    for lib in _LIBRARIES.get(name, ()):
        for d in dirs:
            path = Path(d) / lib
            if path.is_file():
                return str(path)
    return None


def worker_env(name: str, environ: Mapping[str, str] | None = None, *, dirs: tuple[str, ...] = _LIB_DIRS) -> dict[str, str]:
    """The environment variables that make a fresh process use allocator `name` (empty for the
    default). Raises UserError for an unknown name or a library this machine does not have."""

    environ = os.environ if environ is None else environ
    if name not in NAMES:
        raise UserError(f"unknown allocator {name!r}; choose from {', '.join(NAMES)}")
    if name == DEFAULT:
        return {}
    if name == "glibc-tuned":
        return {**GLIBC_TUNED, ENV_NAME: name}
    lib = find_library(name, dirs)
    if lib is None:
        raise UserError(
            f"--allocator {name}: none of {', '.join(_LIBRARIES[name])} found in {', '.join(dirs)} "
            f"(Debian/Ubuntu: apt-get install {_PACKAGES[name]})"
        )
    preload = environ.get("LD_PRELOAD", "")
    return {"LD_PRELOAD": f"{lib} {preload}".strip(), ENV_NAME: name, ENV_LIB: lib}


def apply(name: str | None) -> dict[str, str]:
    """Set allocator `name` in this process's environment, for the workers it will start."""
    env = worker_env(name or DEFAULT)
    os.environ.update(env)
    return env


def describe(environ: Mapping[str, str] | None = None) -> dict[str, object]:
    """The environment fields: {"allocator": name, "allocator_library": path or None,
    "allocator_settings": {MALLOC_*: value}}."""
    environ = os.environ if environ is None else environ
    settings = {k: environ[k] for k in sorted(environ) if k.startswith("MALLOC_") and k.endswith("_")}
    return {
        "allocator": environ.get(ENV_NAME) or DEFAULT,
        "allocator_library": environ.get(ENV_LIB) or None,
        "allocator_settings": settings or None,
    }


def check_loaded(environ: Mapping[str, str] | None = None, maps: str = "/proc/self/maps") -> str | None:
    """In a worker: an error message when the allocator library it was started with is not
    mapped into this process (LD_PRELOAD ignored: wrong architecture, a setuid interpreter, a
    library removed since), else None. None too where /proc/self/maps cannot be read."""
    environ = os.environ if environ is None else environ
    lib = environ.get(ENV_LIB)
    if not lib:
        return None
    try:
        text = Path(maps).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    real = os.path.realpath(lib)
    if lib in text or real in text or Path(lib).name in text:
        return None
    return (f"allocator {environ.get(ENV_NAME, '?')} was asked for (LD_PRELOAD={lib}) but is not loaded in the "
            "worker; refusing to measure with another allocator")  # fmt: skip
