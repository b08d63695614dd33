"""Ending a child process and everything it started: its process group, and what left the group.

The runner's workers and the short-lived children that check a user model's import both start
a new session, so killing the group kills what they started; a descendant that called setsid
is found through psutil while its parent still runs.
"""

from __future__ import annotations

import os
import signal
import subprocess
from typing import Any

__all__ = ["exited", "kill_group"]


def exited(proc: subprocess.Popen) -> bool:
    """Whether the worker has exited, without reaping it: until it is reaped its pid (which is
    also its process group's id) cannot be reused, so killing the group stays safe."""
    if hasattr(proc, "has_exited"):  # forked by a worker server: not our child (server.py)
        return proc.has_exited()
    try:
        return os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:  # already reaped
        return True


def _descendants(pid: int) -> list[Any]:
    try:
        import psutil

        return psutil.Process(pid).children(recursive=True)
    except Exception:  # noqa: BLE001 - gone already, or psutil missing: the group kill remains
        return []


def kill_group(proc: subprocess.Popen) -> None:
    """Kill the worker, everything in its process group, and any descendant of a still-running
    worker that left the group (setsid); then reap the worker."""
    strays = _descendants(proc.pid)
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    for child in strays:
        try:
            child.kill()
        except Exception:  # noqa: BLE001 - psutil.NoSuchProcess: already gone with the group
            pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:  # pragma: no cover - a zombie that will not be reaped
        pass
