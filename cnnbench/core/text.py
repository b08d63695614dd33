"""Small text rules shared by every module: one line of an error, a natural sort key. Pure."""

from __future__ import annotations

import re
from typing import Any

__all__ = ["one_line", "last_line", "natural_key"]


def one_line(text: Any, *, limit: int | None = None) -> str:
    """`text` on one line (whitespace collapsed), cut to `limit` characters with an ellipsis.
    An exception whose message is empty reads as its type's name."""
    line = " ".join(str(text).split())
    if not line and isinstance(text, BaseException):
        line = type(text).__name__
    return line if limit is None or len(line) <= limit else line[: limit - 1] + "…"


def last_line(text: Any, *, limit: int = 200) -> str | None:
    """The last non-blank line of `text` (a traceback's says what went wrong), None if empty."""
    if text in (None, ""):
        return None
    lines = [ln.strip() for ln in str(text).strip().splitlines() if ln.strip()]
    line = lines[-1] if lines else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


def natural_key(name: str) -> list[object]:
    """Sort key that orders embedded numbers numerically: resnet18 < resnet50 < resnet101."""
    return [int(tok) if tok.isdigit() else tok for tok in re.split(r"(\d+)", name)]
