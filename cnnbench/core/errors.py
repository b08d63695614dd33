"""Typed errors, and the one rule that turns a case's exception into its status.

Library code raises the user-facing ones; only `cli.py` prints them and exits. Workers raise the
`CaseFailure` ones to end a case with a status; `classify_exception` lives here (not in the
worker) so backends, training and accuracy can use it without importing the worker.
"""

from __future__ import annotations

import re

__all__ = [
    "EXIT_OK",
    "EXIT_NOT_OK",
    "EXIT_USAGE",
    "EXIT_INTERRUPTED",
    "UserError",
    "SuiteError",
    "UnknownModelError",
    "ResultsFileError",
    "AccuracyError",
    "CaseFailure",
    "Unsupported",
    "ExportFailed",
    "classify_exception",
    "is_oom_message",
]

# The exit codes, one map for every command (cli.py returns them): 0 success, 1 the work ran but
# something measured is not ok (a failed case, a regression), 2 usage or input error, 130
# interrupted (128 + the signal when another signal ended it).
EXIT_OK = 0
EXIT_NOT_OK = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class UserError(Exception):
    """An error caused by the user's input, shown as one line with exit code 2, no traceback."""

    exit_code = EXIT_USAGE

    def lines(self) -> tuple[str, ...]:
        """What the CLI prints, one output line each (each made visible and kept on its line by
        `cnnbench.core.terminal`): the message; an error that gathers several says each apart."""
        return (str(self),)


class SuiteError(UserError):
    """A suite that cannot be loaded: names the file, the field path and, when known, the line."""

    def __init__(self, path: str, message: str, *, field: str | None = None, line: int | None = None):
        self.path = str(path)
        self.field = field
        self.line = line
        self.message = message
        where = self.path + (f":{line}" if line is not None else "")
        what = f"{field}: " if field else ""
        super().__init__(f"{where}: {what}{message}")


class UnknownModelError(UserError):
    """A model name not in the registry; carries the nearest known names."""

    def __init__(self, name: str, suggestions: list[str]):
        self.name = name
        self.suggestions = suggestions
        hint = f" (did you mean: {', '.join(suggestions)}?)" if suggestions else ""
        super().__init__(f"unknown model {name!r}{hint}; `bench.py list models` shows them all")


class ResultsFileError(UserError):
    """A results file that cannot be read or written: names the path and why."""

    def __init__(self, path: str, message: str):
        self.path = str(path)
        super().__init__(f"{path}: {message}")


class AccuracyError(UserError):
    """A dataset or weights problem, as one line naming the path or the keys at fault."""


class CaseFailure(Exception):
    """Raised inside a worker to end a case with a specific status (not a user input error)."""

    status = "error"


class Unsupported(CaseFailure):
    """This machine or backend cannot run the case as specified (device, precision, mode)."""

    status = "unsupported"


class ExportFailed(CaseFailure):
    """The model could not be exported for the backend (e.g. ONNX export rejected an op)."""

    status = "export_failed"


# Lower-case fragments (torch CPU and CUDA/HIP/MPS, cuBLAS/cuDNN, numpy, ONNX Runtime) of allocator failures (each seen in the wild; see the tests).
_OOM_PATTERNS = (
    "out of memory",  # torch CUDA/HIP/MPS ("CUDA out of memory"), ORT CUDA ("CUDA failure 2: out of memory")
    "not enough memory",  # torch DefaultCPUAllocator (older), Windows
    "can't allocate memory",  # torch DefaultCPUAllocator: can't allocate memory: you tried to allocate N bytes
    "cannot allocate memory",  # ENOMEM's strerror, mmap failures
    "unable to allocate",  # numpy _ArrayMemoryError: Unable to allocate 8.00 GiB for an array
    "failed to allocate memory",  # ONNX Runtime: Failed to allocate memory for requested buffer of size
    "bad_alloc",  # std::bad_alloc from any C++ extension
    "bad allocation",  # MSVC's std::bad_alloc text, ORT on some builds
    "alloc_failed",  # CUBLAS_STATUS_ALLOC_FAILED, CUDNN_STATUS_ALLOC_FAILED
    "is smaller than requested bytes",  # ORT BFCArena: Available memory of 0 is smaller than requested bytes
    "memory allocation failed",  # ORT/MKL/oneDNN variants
    "oom when allocating",  # TensorFlow's wording, in a user model that uses it
)
_OOM_RE = re.compile("|".join(re.escape(p) for p in _OOM_PATTERNS))


def is_oom_message(text: str) -> bool:
    """Whether an exception's text is an allocator's failure."""
    return bool(_OOM_RE.search(text.lower()))


def _is_oom(exc: BaseException) -> bool:
    # torch.OutOfMemoryError (CUDA caching allocator) subclasses RuntimeError; host allocation
    # failures surface as MemoryError or as RuntimeError "DefaultCPUAllocator: not enough memory".
    return isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError" or is_oom_message(str(exc))


def classify_exception(exc: BaseException) -> str:
    """The status a failed case gets: the typed status, oom for allocator failures anywhere in
    the exception chain (a wrapper must not hide an OOM), else error."""
    if isinstance(exc, CaseFailure):
        return exc.status
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if _is_oom(cur):
            return "oom"
        cur = cur.__cause__ or cur.__context__
    return "error"
