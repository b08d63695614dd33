"""Typed errors, and the one rule that turns a case's exception into its status.

Library code raises the user-facing ones; only `cli.py` prints them and exits. Workers raise the
`CaseFailure` ones to end a case with a status; `classify_exception` lives here (not in the
worker) so backends, training and accuracy can use it without importing the worker.
"""

from __future__ import annotations

__all__ = [
    "UserError",
    "SuiteError",
    "UnknownModelError",
    "ResultsFileError",
    "AccuracyError",
    "CaseFailure",
    "Unsupported",
    "ExportFailed",
    "classify_exception",
]


class UserError(Exception):
    """An error caused by the user's input, shown as one line with exit code 2, no traceback."""

    exit_code = 2


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


def _is_oom(exc: BaseException) -> bool:
    # torch.OutOfMemoryError (CUDA caching allocator) subclasses RuntimeError; host allocation
    # failures surface as MemoryError or as RuntimeError "DefaultCPUAllocator: not enough memory".
    from cnnbench.measure.memguard import is_oom_message  # torch, numpy and ONNX Runtime allocators

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
