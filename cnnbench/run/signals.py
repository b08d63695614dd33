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

A signal that lands inside an import waits for the end of that import (`raise_when_safe`):
importing torch, numpy or onnxruntime runs Python code called from C++, and an exception raised
there either leaves a half-initialised module behind (the next import of it fails) or meets a
C++ frame that cannot pass it on (`terminate called after throwing ... error_already_set`: the
process aborts, exit -6, whatever was saved aside). The handler records the signal at once and
re-checks every `RECHECK_S` with a SIGALRM timer until no import is on the stack, then raises;
an import takes seconds at most, so Ctrl-C still ends a command promptly. An import that hangs
(a user's module waiting on something) is not waited for forever: a signal that follows the
pending one by at least `AGAIN_S` (a person pressing Ctrl-C again, not a script sending two at
once) raises at once, and so does the timer after `PATIENCE_S`.
"""

from __future__ import annotations

import signal
import sys
import time
from typing import Any, Callable

__all__ = ["HANDLED", "Interrupted", "exit_code", "install", "raise_when_safe", "received", "reset", "record"]

HANDLED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

_received: list[int] = []
_pending: list[int] = []  # a signal whose Interrupted waits for an import to end
_alarm_before: list[Any] = []  # the SIGALRM handler to put back once it is raised
_pending_since: list[float] = []
RECHECK_S = 0.02
AGAIN_S = 1.0
PATIENCE_S = 30.0


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


def in_import(frame: Any) -> bool:
    """Whether `frame` runs inside an import (importlib's frames are on its stack)."""
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib."):
            return True
        frame = frame.f_back
    return False


def raise_when_safe(signum: int, frame: Any) -> None:
    """Raise Interrupted(signum) now, or, when `frame` is inside an import, once it is over."""
    if not in_import(frame):
        raise Interrupted(disarm() or signum)
    if _pending and time.monotonic() - _pending_since[0] >= AGAIN_S:
        raise Interrupted(disarm() or signum)  # pressed again while an import hangs
    if not _pending:
        _pending.append(int(signum))
        _pending_since.append(time.monotonic())
        _alarm_before.append(signal.signal(signal.SIGALRM, _recheck))
    signal.setitimer(signal.ITIMER_REAL, RECHECK_S)


def pending() -> int | None:
    """The signal waiting for an import to end, if any."""
    return _pending[0] if _pending else None


def _recheck(_alarm: int, frame: Any) -> None:
    if not _pending:
        return
    if in_import(frame) and time.monotonic() - _pending_since[0] < PATIENCE_S:
        signal.setitimer(signal.ITIMER_REAL, RECHECK_S)
        return
    raise Interrupted(disarm())


def disarm() -> int | None:
    """Cancel a pending raise (the command is over); returns its signal."""
    if not _pending:
        return None
    signal.setitimer(signal.ITIMER_REAL, 0)
    before = _alarm_before.pop()
    signal.signal(signal.SIGALRM, before if before is not None else signal.SIG_DFL)
    _pending_since.pop()
    return _pending.pop()


def _raise(signum: int, frame: Any) -> None:
    record(signum)
    raise_when_safe(signum, frame)


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
        late = disarm()  # a signal met in the command's last import: main saw it (received())
        if late is not None:
            code = exit_code(late)
    except KeyboardInterrupt as exc:
        disarm()
        code = exit_code(getattr(exc, "signum", signal.SIGINT))
    sys.exit(code)
