"""Argument types for every number and duration option: finite, in range, or one clear line.

`float("nan")`, `float("inf")` and negatives parse fine as floats, and then misbehave silently:
`--timeout nan` makes every `elapsed > timeout` comparison false, so a hung worker is never
killed. Every numeric option of every command uses one of these types instead of `float`/`int`,
so argparse refuses such values with exit code 2 before anything runs.
"""

from __future__ import annotations

import argparse
import math
from typing import Callable

__all__ = ["finite_float", "positive_float", "positive_int", "probability", "MAX_SECONDS"]

MAX_SECONDS = 7 * 86_400.0  # a week: anything longer is a typo (ms for s)
MAX_COUNT = 10_000_000


def finite_float(lo: float, hi: float, *, lo_open: bool = True, hi_open: bool = False) -> Callable[[str], float]:
    """A float type accepting finite values in [lo, hi] (open ends as asked)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
        if value < lo or (lo_open and value == lo):
            raise argparse.ArgumentTypeError(f"must be {'>' if lo_open else '>='} {lo:g}, got {text!r}")
        if value > hi or (hi_open and value == hi):
            raise argparse.ArgumentTypeError(f"must be {'<' if hi_open else '<='} {hi:g}, got {text!r}")
        return value

    parse.__name__ = "number"
    return parse


def _positive_int(text: str) -> int:
    try:
        value = int(text.strip().replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text!r}")
    if value > MAX_COUNT:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_COUNT}, got {text!r}")
    return value


positive_int = _positive_int
positive_int.__name__ = "integer"
positive_float = finite_float(0.0, MAX_SECONDS)  # seconds: > 0, at most a week
probability = finite_float(0.0, 0.5, hi_open=True)  # a significance level
