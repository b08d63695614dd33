"""Subcommands of `bench.py`; see `cnnbench.cli` for the protocol each module follows."""

import sys

__all__ = ["warn"]


def warn(message: str) -> None:
    """One `warning: ...` line on stderr, flushed (the commands' one way to warn)."""
    print(f"warning: {message}", file=sys.stderr, flush=True)
