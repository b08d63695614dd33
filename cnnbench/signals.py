"""How cnnbench ends on a signal: SIGINT, SIGTERM and SIGHUP all end a command the same way.

A CI cancel or `timeout` sends SIGTERM, a closed terminal or SSH session SIGHUP, Ctrl-C SIGINT.
Each becomes `Interrupted` (a KeyboardInterrupt, so every `finally` and `except
KeyboardInterrupt` that already cleans up for Ctrl-C runs for the others too: workers killed,
lock and temporary files removed), and the process exits with 128 + the signal number (130 for
SIGINT, 143 for SIGTERM, 129 for SIGHUP), never by the signal itself.

While a run measures, `runner.StopFlag` replaces these handlers with its own (the first signal
asks for a clean stop, the second ends at once). `entry()` (the console script and bench.py)
installs them for the whole process, and once the command has returned it ignores further
signals, so a Ctrl-C that lands while the interpreter shuts down cannot turn a finished run
into a signal death.
"""

from __future__ import annotations

import signal
import sys
from typing import Any, Callable

__all__ = ["HANDLED", "Interrupted", "exit_code", "install", "received", "reset", "record"]

HANDLED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

_received: list[int] = []


class Interrupted(KeyboardInterrupt):
    """A handled signal arrived; `signum` says which."""

    def __init__(self, signum: int = signal.SIGINT):
        self.signum = int(signum)
        super().__init__(name(signum))


def name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def exit_code(signum: int | None) -> int:
    """The exit code of a command ended by `signum` (130 when unknown: Ctrl-C)."""
    return 128 + int(signum if signum is not None else signal.SIGINT)


def record(signum: int) -> None:
    _received.append(int(signum))


def received() -> int | None:
    """The first handled signal this process received since the last `reset`, if any."""
    return _received[0] if _received else None


def reset() -> None:
    _received.clear()


def _raise(signum: int, frame: Any) -> None:
    record(signum)
    raise Interrupted(signum)


def install(handler: Callable[[int, Any], Any] = _raise) -> Callable[[], None]:
    """Install `handler` (default: raise Interrupted) for every handled signal; returns a
    function that restores the previous handlers. A no-op outside the main thread."""
    previous: dict[int, Any] = {}
    try:
        for sig in HANDLED:
            previous[sig] = signal.signal(sig, handler)
    except ValueError:  # not the main thread: signals cannot be handled here
        pass

    def restore() -> None:
        for sig, old in previous.items():
            signal.signal(sig, old if old is not None else signal.SIG_DFL)

    return restore


def entry(main: Callable[[], int]) -> None:
    """Run `main` as the process's command and exit with its code, or 128+signal."""
    install()
    try:
        code = main()
        for sig in HANDLED:  # the command is over: nothing may cut the exit in two
            signal.signal(sig, signal.SIG_IGN)
    except KeyboardInterrupt as exc:
        code = exit_code(getattr(exc, "signum", signal.SIGINT))
    sys.exit(code)
