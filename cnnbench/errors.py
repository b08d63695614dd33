"""Typed, user-facing errors. Library code raises these; only `cli.py` prints them and exits."""

from __future__ import annotations

__all__ = ["UserError", "SuiteError", "UnknownModelError", "ResultsFileError"]


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


class CaseFailure(Exception):
    """Raised inside a worker to end a case with a specific status (not a user input error)."""

    status = "error"


class Unsupported(CaseFailure):
    """This machine or backend cannot run the case as specified (device, precision, mode)."""

    status = "unsupported"


class ExportFailed(CaseFailure):
    """The model could not be exported for the backend (e.g. ONNX export rejected an op)."""

    status = "export_failed"
