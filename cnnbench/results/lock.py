"""The lock beside a results file: two runs (`run`, `ab`, `merge`) never write one file at once."""

from __future__ import annotations

import errno
import fcntl
import os
import socket
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from cnnbench.core.errors import ResultsFileError
from cnnbench.core.safeio import open_lock

__all__ = ["results_lock"]


@contextmanager
def results_lock(out: Path) -> Iterator[None]:
    """An exclusive lock beside the results file, so two runs never interleave records.

    An advisory `flock` on `FILE.lock`: the kernel drops it when the holder dies however it dies
    (SIGKILL, OOM killer), so there is no stale lock to judge. The file names the holder for the
    message, and is removed on the way out. A path re-created while we waited on the old inode
    means another run just finished and a third took over: try again.
    """
    lock = out.with_name(out.name + ".lock")
    for _ in range(20):

        fd = open_lock(lock)  # never through a symlink planted at FILE.lock
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _read_holder(fd)
            os.close(fd)
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise ResultsFileError(str(out), f"cannot lock {lock} ({exc.strerror or exc})") from exc
            who = holder or "a process"
            message = f"another run is writing this file ({who} holds {lock}); wait for it or use another --out"
            raise ResultsFileError(str(out), message) from None
        if not _same_file(fd, lock):
            os.close(fd)
            continue
        break
    else:  # pragma: no cover - twenty runs finishing in a row under our feet
        raise ResultsFileError(str(out), f"cannot take the lock {lock}: it keeps being replaced")
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"host {socket.gethostname()} pid {os.getpid()}".encode())
        yield
    finally:
        try:
            lock.unlink()
        except OSError:
            pass
        os.close(fd)  # after the unlink: a waiter on this inode then sees it is gone


def _read_holder(fd: int) -> str:
    try:
        return os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
    except OSError:
        return ""


def _same_file(fd: int, path: Path) -> bool:
    try:
        a, b = os.fstat(fd), os.stat(path)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)
