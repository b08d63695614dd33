"""Progress of an evaluation: a bar on a terminal, or a file a manager's bar reads.

A worker has no terminal: a manager that shows progress names a file in `PROGRESS_FILE_ENV`
(`bench.py accuracy` does, on a terminal) and the worker's evaluation writes "done total" to it.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Iterator
from cnnbench.core.safeio import WriteError, atomic_write


if TYPE_CHECKING:  # pragma: no cover

    pass

__all__ = ["PROGRESS_FILE_ENV", "read_progress", "worker_progress"]

PROGRESS_FILE_ENV = "CNNBENCH_PROGRESS_FILE"
_PROGRESS_EVERY_S = 0.2


class ProgressFile:
    """An evaluation's progress for a manager's bar: "done total" written to `path` atomically,
    at most every 0.2 s and at the end. Never fails the evaluation."""

    def __init__(self, path: str, total: int):
        self.path, self.total, self.done, self._last = path, total, 0, 0.0
        self._write()

    def advance(self, n: int) -> None:
        self.done += n
        if time.monotonic() - self._last >= _PROGRESS_EVERY_S or self.done >= self.total:
            self._write()

    def _write(self) -> None:
        self._last = time.monotonic()

        try:
            atomic_write(self.path, f"{self.done} {self.total}\n")
        except WriteError:
            pass  # a progress bar is never worth an evaluation


def read_progress(path: str | os.PathLike[str]) -> tuple[int, int] | None:
    """(done, total) images from a progress file a worker writes; None before it exists."""
    try:
        done, total = (int(x) for x in Path(path).read_text(encoding="ascii").split())
    except (OSError, ValueError):
        return None
    return done, total


def want_progress(progress: bool | None) -> bool:
    return sys.stderr.isatty() if progress is None else progress


def progress_bar(total: int | None, description: str):
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    bar = Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("ETA"),
        TimeRemainingColumn(), console=Console(stderr=True), transient=True,
    )  # fmt: skip
    bar.start()
    return bar, bar.add_task(f"accuracy: {description}", total=total)


@contextlib.contextmanager
def worker_progress(label: str, workdir: str) -> Iterator[None]:
    """On a terminal, a progress bar for the evaluation inside the worker started in the block:
    the worker learns of a progress file through PROGRESS_FILE_ENV and writes to it; a thread
    here reads it four times a second. Elsewhere (CI logs, pipes) nothing."""
    import sys

    if not sys.stderr.isatty():
        yield
        return
    import threading

    path = os.path.join(workdir, f"progress-{label}.txt")
    previous = os.environ.get(PROGRESS_FILE_ENV)
    os.environ[PROGRESS_FILE_ENV] = path  # the worker's environment is a copy of ours
    bar, task = progress_bar(None, label)  # indeterminate while the worker times the model
    done = threading.Event()

    def poll() -> None:
        while not done.wait(0.25):
            got = read_progress(path)
            if got is not None:
                bar.update(task, completed=got[0], total=got[1])

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join(timeout=2)
        bar.stop()
        if previous is None:
            os.environ.pop(PROGRESS_FILE_ENV, None)
        else:
            os.environ[PROGRESS_FILE_ENV] = previous
