"""The one way cnnbench writes a file: atomically, and never through a link planted in its way.

Every file the project writes (results, merged results, reports, plots, CSV, Markdown, JSON
summaries, checksum sidecars, caches and their metadata, a worker's result) goes through
`atomic_write`, or `atomic_file` for a library that insists on writing to a path itself
(`torch.onnx.export`, `onnx.save`, onnxruntime's `quantize_static`, OpenVINO's `save_model`,
AOTInductor's package): it yields the path of a temporary file that this module created, which
the library fills and this module renames, together with any files the library writes beside it
(OpenVINO's `.bin`). `temp_file_beside` reserves a scratch file the same way for an intermediate
that is never renamed (removed by its caller). The steps:

1. The target is checked with `lstat` (never `stat`): a directory, a FIFO, a device such as
   `/dev/full`, a socket or a symbolic link is refused with one line naming the path. Writing
   to a FIFO would block forever, to `/dev/full` would fail late, and renaming over a symlink
   would silently replace the link the user made.
2. A temporary file with a fresh random name is created in the target's own directory with
   `O_CREAT | O_EXCL | O_NOFOLLOW`: if anything (a planted symlink, another writer) already has
   that name, the open fails instead of writing through it, and a new name is drawn. A library
   given that name opens a regular file that is already ours; the names of the files it writes
   beside it are reserved the same way before it runs.
3. The bytes are written in full (`os.write` may write less than asked), `fsync`ed, and the
   file is renamed over the target (`os.replace`, atomic within a directory). The directory is
   fsynced afterwards, best effort.
4. On any failure, an exception or a signal included, the temporary file is removed and the
   target is exactly as it was. An `OSError` becomes a `WriteError` (a `UserError`, so exit
   code 2) with one line: the path and the reason (disk full, read-only file system, name too
   long, permission).

Lock files are opened with `open_lock` (`O_NOFOLLOW`, and the result must be a regular file),
so a symlink at `FILE.lock` is refused instead of truncating what it points to; a file others
also append to (a log, GitHub's step summary) with `open_append`, the same way.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from pathlib import Path
from typing import Callable, Iterator, Sequence

from cnnbench.core.errors import ResultsFileError

__all__ = [
    "WriteError", "atomic_write", "atomic_path", "atomic_file", "temp_file_beside", "open_lock", "check_target",
    "open_append", "append_text",
]  # fmt: skip

_CHUNK = 1 << 16
_NAME_MAX_FALLBACK = 255
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)

# errnos whose system text would mislead (ELOOP's "Too many levels of symbolic links")
_REASONS = {errno.ELOOP: "is a symbolic link (not followed)"}


class WriteError(ResultsFileError):
    """A file could not be written; the message is one line naming the path and why."""


def reason(exc: OSError) -> str:
    """A short, user-facing clause for an OSError."""
    return _REASONS.get(exc.errno, exc.strerror or str(exc)) if exc.errno else str(exc)


def _kind(mode: int) -> str | None:
    """Why a non-regular target cannot be written, or None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "is a directory"
    if stat.S_ISLNK(mode):
        return "is a symbolic link; cnnbench never writes through one (remove it or give the real path)"
    if stat.S_ISFIFO(mode):
        return "is a FIFO (named pipe), not a regular file"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "is a device, not a regular file"
    if stat.S_ISSOCK(mode):
        return "is a socket, not a regular file"
    return "is not a regular file"


def _name_max(directory: Path) -> int:
    try:
        return int(os.pathconf(directory, "PC_NAME_MAX"))
    except (OSError, ValueError):
        return _NAME_MAX_FALLBACK


def check_target(path: str | os.PathLike[str]) -> None:
    """Refuse, before any work, a target that `atomic_write` would refuse: a non-regular file
    or a symlink at the path, a name longer than the file system allows, a parent that is not
    a directory. A missing target (and missing parent directories) is fine.

    Raises:
        WriteError: one line naming the path.
    """
    path = Path(path)
    name = os.fsencode(path.name)
    parent = _existing_parent(path.parent)
    if len(name) > _name_max(parent):
        raise WriteError(str(path), f"file name too long ({len(name)} bytes; this file system allows {_name_max(parent)})")
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise WriteError(str(path), f"cannot write ({reason(exc)})") from None
    problem = _kind(st.st_mode)
    if problem:
        raise WriteError(str(path), problem)


def _existing_parent(directory: Path) -> Path:
    d = directory if str(directory) else Path(".")
    while not d.exists() and d != d.parent:
        d = d.parent
    return d


def _tmp_name(path: Path, suffix: str = "") -> str:
    """A fresh temporary name beside `path`, short enough for the directory's NAME_MAX; `suffix`
    ends it (".onnx": a library that reads the format from the extension sees the right one)."""
    token = secrets.token_hex(6)
    limit = _name_max(path.parent) - len(token) - 7 - len(os.fsencode(suffix))  # "." + "." + token + ".tmp"
    stem = os.fsencode(path.name)[: max(limit, 1)].decode("utf-8", "ignore") or "f"
    return str(path.with_name(f".{stem}.{token}.tmp{suffix}"))


def _reserve(name: str, mode: int) -> int:
    """Create `name` empty and open it, never through a link and never over anything already
    there (FileExistsError then). Returns the fd."""
    fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_NOFOLLOW | _O_CLOEXEC, 0o600)
    try:
        os.fchmod(fd, mode)
    except BaseException:
        os.close(fd)
        _unlink(name)
        raise
    return fd


def _create_tmp(
    path: Path, mode: int, suffix: str = "", companions: Sequence[Callable[[Path], Path]] = ()
) -> tuple[int, str, list[str]]:
    """A fresh temporary file beside `path` (fd and name), and the names of its `companions`
    (each a file a library writes beside it, `companion(temporary name)`), all created empty."""
    for _ in range(100):
        name = _tmp_name(path, suffix)
        try:
            fd = _reserve(name, mode)
        except FileExistsError:  # someone's file (or a planted link) has this name: draw another
            continue
        extra: list[str] = []
        try:
            for companion in companions:
                other = str(companion(Path(name)))
                os.close(_reserve(other, mode))  # a name taken already fails: draw another set
                extra.append(other)
        except FileExistsError:
            os.close(fd)
            for n in [name, *extra]:
                _unlink(n)
            continue
        except BaseException:
            os.close(fd)
            for n in [name, *extra]:
                _unlink(n)
            raise
        return fd, name, extra
    raise OSError(errno.EEXIST, "could not create a unique temporary file")  # pragma: no cover


def temp_file_beside(path: str | os.PathLike[str], *, suffix: str | None = None) -> Path:
    """Reserve a scratch file beside `path` for a library to write an intermediate into (an
    ONNX pre-processing pass): a fresh random name, created empty with O_EXCL|O_NOFOLLOW, so
    nothing planted is written through. The caller removes it (or renames it) when done.

    Args:
        path: the file the scratch file sits beside (same directory, a name derived from it).
        suffix: how the name ends (default: `path`'s own suffix, e.g. ".onnx").

    Raises:
        WriteError: it cannot be created (the directory's reason, one line).
    """
    path = Path(path)
    try:
        fd, name, _ = _create_tmp(path, _file_mode(path), path.suffix if suffix is None else suffix)
    except OSError as exc:
        raise WriteError(str(path), f"cannot create a temporary file beside it ({reason(exc)})") from None
    os.close(fd)
    return Path(name)


def _file_mode(path: Path) -> int:
    """The old file's permissions; for a new one the umask's (never mkstemp's 0600)."""
    try:
        st = os.lstat(path)
        if stat.S_ISREG(st.st_mode):
            return st.st_mode & 0o777
    except OSError:
        pass
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _unlink(name: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(name)


def _fsync_dir(directory: Path) -> None:
    """Make the rename durable. Best effort: the new file is complete and in place already."""
    try:
        fd = os.open(directory, os.O_RDONLY | _O_CLOEXEC)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:  # os.write may write less than asked (a full disk, a signal)
        view = view[os.write(fd, view[:_CHUNK]) :]


def atomic_write(
    path: str | os.PathLike[str], data: bytes | str, *, what: str = "write", make_parents: bool = True
) -> None:
    """Write `data` to `path` atomically (see the module docstring); str is encoded as UTF-8.

    Args:
        path: the target; its parent directories are created.
        data: the whole content.
        what: the verb of the error message ("cannot {what}").
        make_parents: create missing parent directories (else a missing one is the error).

    Raises:
        WriteError: the target is not a regular file, or the write failed; the target is
            untouched and no temporary file is left.
    """
    path = Path(path)
    blob = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    with atomic_path(path, what=what, make_parents=make_parents) as tmp_fd_name:
        fd, _ = tmp_fd_name
        _write_all(fd, blob)


@contextlib.contextmanager
def atomic_path(
    path: str | os.PathLike[str],
    *,
    what: str = "write",
    make_parents: bool = True,
    suffix: str = "",
    companions: Sequence[Callable[[Path], Path]] = (),
) -> Iterator[tuple[int, str]]:
    """Yield `(fd, temporary_name)` of a fresh temporary file beside `path`; on a normal exit it
    is fsynced and renamed over `path`, on an exception removed. The fd stays open (write to it,
    or let a library write to the name: it was created with O_EXCL, so it is our regular file).

    `suffix` ends the temporary name. `companions` name the files a library writes beside the
    one it is given (`lambda p: p.with_suffix(".bin")`): each is reserved beside the temporary
    file before the block runs, and afterwards renamed to `companion(path)` (before `path`
    itself, so a reader that checks `path` finds the pair complete) when the library wrote
    something into it, else removed.

    Raises:
        WriteError: as `atomic_write`.
    """
    path = Path(path)
    check_target(path)
    for companion in companions:
        check_target(companion(path))
    tmp: str | None = None
    fd: int | None = None
    extra: list[str] = []
    try:
        try:
            if make_parents:
                path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp, extra = _create_tmp(path, _file_mode(path), suffix, companions)
        except OSError as exc:
            raise WriteError(str(path), f"cannot {what} ({reason(exc)})") from None
        yield fd, tmp
        try:
            os.fsync(fd)
            fd_, fd = fd, None
            os.close(fd_)  # may fail (NFS reports write errors here) after closing the fd
            for name, companion in zip(list(extra), companions):
                target = companion(path)
                if _settle(name):
                    check_target(target)
                    os.replace(name, target)
                else:  # the library wrote nothing there (ONNX external data of a small model)
                    _unlink(name)
                extra.remove(name)
            check_target(path)  # again: something may have been put there meanwhile
            st = os.lstat(tmp)
            if not stat.S_ISREG(st.st_mode):  # the name was swapped for something else
                raise OSError(errno.EINVAL, "the temporary file was replaced")
            os.replace(tmp, path)
            tmp = None
        except OSError as exc:
            raise WriteError(str(path), f"cannot {what} ({reason(exc)})") from None
    except OSError as exc:  # raised by the caller's writes inside the block
        raise WriteError(str(path), f"cannot {what} ({reason(exc)})") from None
    finally:
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)
        for name in [*([tmp] if tmp is not None else []), *extra]:
            _unlink(name)
    _fsync_dir(path.parent)


def _settle(name: str) -> bool:
    """fsync a companion file a library wrote; False when it is still empty (not written). It
    must still be a regular file (never follows a link swapped in for it)."""
    fd = os.open(name, os.O_RDONLY | _O_NOFOLLOW | _O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, "a temporary file was replaced")
        if st.st_size == 0:
            return False
        os.fsync(fd)
        return True
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_file(
    path: str | os.PathLike[str],
    *,
    what: str = "write",
    make_parents: bool = True,
    suffix: str | None = None,
    companions: Sequence[Callable[[Path], Path]] = (),
) -> Iterator[Path]:
    """For a library that writes to a path itself (`torch.save`, `onnx.save`, `quantize_static`,
    OpenVINO's `save_model`, AOTInductor's package): yield the path of a fresh temporary file
    beside `path`, already created by this module (O_EXCL|O_NOFOLLOW, a random name), for the
    library to fill; on a normal exit it is fsynced and renamed over `path`, on an exception
    (the library's included) removed, with its `companions` (see `atomic_path`).

    Args:
        path: the target.
        what: the verb of the error message ("cannot {what}").
        make_parents: create missing parent directories.
        suffix: how the temporary name ends (default: `path`'s suffix, so a library that reads
            the format from the extension, or insists on one such as ".pt2", sees it).
        companions: the files the library writes beside the one it is given.

    Raises:
        WriteError: as `atomic_write` (a library's own exception passes through unchanged,
            unless it is an OSError).
    """
    path = Path(path)
    ending = path.suffix if suffix is None else suffix
    with atomic_path(path, what=what, make_parents=make_parents, suffix=ending, companions=companions) as (_, name):
        yield Path(name)


def open_lock(path: str | os.PathLike[str]) -> int:
    """Open (creating) a lock file for read/write without following a symlink; the result must
    be a regular file. Returns the fd.

    Raises:
        WriteError: a symlink, a non-regular file, or the open failed.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_CREAT | os.O_RDWR | _O_NOFOLLOW | _O_CLOEXEC, 0o644)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise WriteError(str(path), "lock file is a symbolic link; cnnbench never writes through one") from None
        raise WriteError(str(path), f"cannot create the lock file ({reason(exc)})") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise WriteError(str(path), f"lock file {_kind(st.st_mode)}")
    return fd


def open_append(path: str | os.PathLike[str], *, make_parents: bool = True) -> int:
    """Open (creating) a file that others also append to (a build log, GitHub's step summary)
    for appending: no rename, but never through a symlink and only a regular file. Returns the fd.

    Raises:
        WriteError: a symlink, a non-regular file, or the open failed.
    """
    path = Path(path)
    try:
        if make_parents:
            path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | _O_NOFOLLOW | _O_CLOEXEC, 0o644)
    except OSError as exc:
        raise WriteError(str(path), f"cannot write ({reason(exc)})") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise WriteError(str(path), _kind(st.st_mode) or "is not a regular file")
    return fd


def append_text(path: str | os.PathLike[str], text: str) -> None:
    """Append to a file that others also append to (GitHub's step summary): `open_append`."""
    fd = open_append(path, make_parents=False)
    try:
        _write_all(fd, text.encode("utf-8"))
    except OSError as exc:
        raise WriteError(str(path), f"cannot write ({reason(exc)})") from None
    finally:
        os.close(fd)
