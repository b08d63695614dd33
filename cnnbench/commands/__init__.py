"""Subcommands of `bench.py`; see `cnnbench.cli` for the protocol each module follows."""

import sys

from cnnbench.core.terminal import message_line

__all__ = ["warn"]


def warn(message: str) -> None:
    """One `warning: ...` line on stderr, flushed (the commands' one way to warn); its line breaks
    and hidden characters made visible (cnnbench.core.terminal)."""
    print(f"warning: {message_line(message)}", file=sys.stderr, flush=True)
