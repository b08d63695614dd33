"""The worker server: one pre-imported Python per variant that forks a fresh worker per case.

Why
---
A worker process spends most of its start-up importing torch and torchvision before it builds
anything (what that costs, measured: docs/ci.md, "Cost"). The server pays that once: it is started
with the variant's own interpreter and PYTHONPATH, imports the heavy modules, and then forks one
child per case (and per repeat). Each child is still a fresh process of its own: its own memory
accounting, its own failure status, its own session, and it runs the very entry point a spawned
worker runs (`cnnbench.measure.worker.main(SPEC, RESULT)`), so results are the same either way.

What makes forking safe here (checked by the server after its imports, `fork_safety`)
-----------------------------------------------------------------------------------------
* **No threads.** A fork copies only the calling thread; a lock held by another thread at that
  moment stays locked forever in the child. The server checks that it has exactly one OS thread
  (`/proc/self/task`) and one Python thread. Two imports would start one: numpy's OpenBLAS starts
  its thread server when loaded (so the server runs with `OPENBLAS_NUM_THREADS=1`, and each child
  resets numpy's BLAS to the default thread count of a fresh process), and onnxruntime's module
  starts a thread at import (so it is *not* pre-imported: each child imports it).
* **No CUDA context, no model, no op run.** A CUDA context does not survive a fork. The server
  never calls into CUDA (`torch.cuda.is_initialized()` must be False), builds no model and runs
  no tensor op, so no intra-op or inter-op thread pool exists yet: each child sets its threads
  (`torch.set_num_threads`, inter-op 1) as a fresh process would.
* **Linux only**, with `os.pidfd_open` (kernel 5.3+): the runner watches a child it did not start
  through a pidfd, which also stays right if the server dies.
When any check fails the server says why and the runner spawns instead (one warning line).

In each child, before the worker entry: `os.setsid()` (its own process group, so the runner's
group kill reaches everything it starts), the runner's working directory and environment
(exactly the environment a spawned worker would get), stdin from /dev/null and stdout/stderr to
the case's log, Python's and numpy's random generators reseeded from the OS (as a fresh
interpreter seeds them; torch's generator was never touched, so it holds torch's fixed default).
A case whose environment differs from the server's in anything but `CNNBENCH_*` variables (read
at run time, e.g. a progress file) is spawned: other variables may be read at import time.

Exit status and timeouts
------------------------
The child is the server's child, not the runner's. The runner holds a pidfd for it (readable once
it exits: polling it replaces `waitid`), kills its process group itself on a timeout, and then
asks the server to reap it: the server answers with the exit status (negative signal number, as
`subprocess.Popen.returncode`). Until that answer the child stays a zombie, so its pid (which is
also its process group's id) cannot be reused while the runner may still kill the group: the
same guarantee the spawned path has. Timeouts, SIGKILL detection and crashes keep their labels.

Memory
------
The worker's CPU figure is the growth of its resident set (VmHWM, reset through
/proc/self/clear_refs) over a baseline taken after the model is built and prepared: in a forked
child that baseline is long after the fork. RSS (not USS) is the right measure here: pages shared
with the server count once resident, and writing to one (copy-on-write) replaces a shared page by
a private one without changing RSS, so the growth is the memory the case allocates. USS would
count every copy-on-write break of the pre-imported libraries as the case's own allocation.
One fork effect is undone: the kernel does not copy the page-table entries of file mappings
never written to (library code), so a child would re-map, and count as growth, every library
page its first call touches. The server lists its mapped file pages once
(`resident_file_ranges`) and each child maps them back before the worker starts
(`madvise(MADV_POPULATE_READ)`), so its growth matches a spawned worker's. The figures (growth
with and without it, what it and the child's onnxruntime import cost) are measured in
docs/ci.md, "The worker server".

The protocol
------------
`python -m cnnbench.run.server FD`: one JSON object per line over a socket pair. The server sends
`{"ready", "pid", "safe", "reason", "import_s", "preloaded"}` once imported; then answers
`{"op": "fork", "argv", "env", "cwd", "log"}` with `{"pid"}` and `{"op": "reap", "pid"}` with
`{"returncode"}`; end of file on the socket (the runner is gone) makes it exit.
"""

from __future__ import annotations

import json
import os
import select
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from cnnbench.measure.worker import main

__all__ = ["PRELOAD", "ForkedWorker", "ServerLost", "fork_supported", "fork_worker", "session"]

# Imported by the server before it forks (each optional: a variant without fvcore still serves).
# Not onnxruntime: its module starts a thread at import (see the module docstring).
PRELOAD = (
    "torch",
    "torchvision",
    "fvcore.nn",
    "cnnbench.measure.worker",
    "cnnbench.accuracy",
    "cnnbench.backends",
    "cnnbench.backends.common",
    "cnnbench.measure.counting",
    "cnnbench.measure.memory",
    "cnnbench.models.registry",
    "cnnbench.measure.parity",
    "cnnbench.measure.profile",
    "cnnbench.measure.timing",
    "cnnbench.measure.training",
)
STARTUP_TIMEOUT_S = 180.0  # a cold torch import on a loaded machine can take long
REPLY_TIMEOUT_S = 60.0
_RUNTIME_ENV_PREFIX = "CNNBENCH_"
_RESIDENT: list[tuple[int, int]] = []  # the server's mapped file pages, mapped again in each child
_BLAS_ENV = "OPENBLAS_NUM_THREADS"


class ServerLost(RuntimeError):
    """The server died, did not answer, or refused to fork: the runner spawns instead."""


def fork_supported() -> str | None:
    """None when this platform can fork from a server, else why not."""
    if not sys.platform.startswith("linux"):
        return f"forking a worker server is only done on Linux (this is {sys.platform})"
    if not hasattr(os, "pidfd_open"):
        return "os.pidfd_open is not available (Python 3.9+ on Linux 5.3+)"
    return None


# -- the server side ----------------------------------------------------------------------------


def os_threads() -> int:
    """OS threads of this process (/proc/self/task), or -1 where that cannot be read."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return -1


def fork_safety() -> tuple[bool, str]:
    """Whether this process may fork workers now: one thread, no CUDA context (module docstring)."""
    threads, py_threads = os_threads(), threading.active_count()
    if threads != 1 or py_threads != 1:
        return False, f"the server has {threads} OS thread(s) and {py_threads} Python thread(s) after its imports (forking needs 1)"
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        return False, "CUDA was initialized in the server (a CUDA context does not survive a fork)"
    return True, ""


def _preload() -> tuple[list[str], list[str]]:
    import importlib
    import warnings

    done, failed = [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # fvcore's FutureWarning would land in every log otherwise
        for name in PRELOAD:
            try:
                importlib.import_module(name)
                done.append(name)
            except Exception as exc:  # noqa: BLE001 - the child imports what is missing itself
                failed.append(f"{name}: {type(exc).__name__}: {exc}")
    return done, failed


class _Lines:
    """JSON lines over a socket, with a timeout per read."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self._buf = b""
        self.fds: list[int] = []  # file descriptors that came with the messages (SCM_RIGHTS)

    def send(self, obj: Mapping[str, Any], fds: Sequence[int] = ()) -> None:
        data = json.dumps(obj).encode() + b"\n"
        if fds:  # the descriptors ride with the message's first bytes; the rest follows as usual
            sent = socket.send_fds(self.sock, [data], list(fds))
            data = data[sent:]
        if data:
            self.sock.sendall(data)

    def recv(self, timeout: float | None = None) -> dict[str, Any] | None:
        """The next message, None at end of file; TimeoutError if none came in `timeout` s."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while b"\n" not in self._buf:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select([self.sock], [], [], left)
            if not ready:
                raise TimeoutError("no answer")
            chunk, fds, _, _ = socket.recv_fds(self.sock, 65536, 4)
            self.fds.extend(fds)
            if not chunk:
                return None
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return json.loads(line)


def resident_file_ranges() -> list[tuple[int, int]]:
    """(address, length) runs of this process's file-backed pages that are mapped now.

    A fork does not copy the page-table entries of file mappings the process never wrote to
    (library code, read-only data): the child re-maps each such page on first touch, and its
    resident set grows by the library pages its first call touches, which a spawned worker had
    mapped while importing. The child maps these runs back at once (`_map_like_server`), so its
    memory growth counts what the case allocates, as a spawned worker's does. Read from
    /proc/self/pagemap (bit 63: present; readable without privileges)."""
    import numpy as np

    page = os.sysconf("SC_PAGE_SIZE")
    runs: list[tuple[int, int]] = []
    try:
        with open("/proc/self/maps", encoding="ascii", errors="replace") as fh:
            maps = [ln.split() for ln in fh]
        with open("/proc/self/pagemap", "rb") as pm:
            for parts in maps:
                if len(parts) < 6 or not parts[5].startswith("/") or "w" in parts[1]:
                    continue  # anonymous, special ([heap], [vdso]) or writable: copied or not shared
                lo, hi = (int(x, 16) for x in parts[0].split("-"))
                pm.seek((lo // page) * 8)
                entries = np.frombuffer(pm.read(((hi - lo) // page) * 8), dtype=np.uint64)
                present = (entries >> np.uint64(63)).astype(bool)
                if not present.any():
                    continue
                edges = np.flatnonzero(np.diff(np.concatenate(([0], present.view(np.int8), [0]))))
                for a, b in zip(edges[::2], edges[1::2]):
                    runs.append((lo + int(a) * page, int(b - a) * page))
    except (OSError, ValueError):
        return []
    return runs


_MADV_POPULATE_READ = 22  # Linux 5.14+


def _map_like_server(runs: Sequence[tuple[int, int]]) -> None:
    """Map in the child what the server had mapped (see `resident_file_ranges`); best effort."""
    if not runs:
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        madvise = libc.madvise
        madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
        for addr, length in runs:
            if madvise(addr, length, _MADV_POPULATE_READ) != 0 and ctypes.get_errno() == 22:  # EINVAL: old kernel
                return
    except Exception:  # noqa: BLE001 - only the memory figure's faithfulness is at stake
        return


def serve(fd: int) -> int:
    """The server's loop (run as `python -m cnnbench.run.server FD`)."""
    global _RESIDENT
    started = time.monotonic()
    chan = _Lines(socket.socket(fileno=fd))
    done, failed = _preload()
    _RESIDENT = resident_file_ranges()
    safe, reason = fork_safety()
    chan.send({"ready": True, "pid": os.getpid(), "safe": safe, "reason": reason,
               "import_s": time.monotonic() - started, "preloaded": done, "failed": failed})  # fmt: skip
    if not safe:
        return 0
    while True:
        try:
            req = chan.recv()
        except (OSError, ValueError):
            return 0
        if req is None:  # the runner is gone
            return 0
        op = req.get("op")
        if op == "fork":
            out_fd = chan.fds.pop(0) if req.get("out_fd") and chan.fds else None
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                _child(req, chan.sock, out_fd)  # never returns
            if out_fd is not None:
                os.close(out_fd)  # the child holds it now: the runner sees EOF when the child is done
            chan.send({"pid": pid})
        elif op == "reap":
            try:
                _, status = os.waitpid(int(req["pid"]), 0)
                chan.send({"returncode": os.waitstatus_to_exitcode(status)})
            except ChildProcessError:
                chan.send({"returncode": None})
        elif op == "quit":
            return 0
        else:
            chan.send({"error": f"unknown op {op!r}"})


def _child(req: Mapping[str, Any], sock: socket.socket, out_fd: int | None = None) -> None:
    """In the forked child: become a fresh worker, run the worker entry, exit (never returns)."""
    code = 1
    try:
        sock.close()
        os.setsid()
        _map_like_server(_RESIDENT)
        os.chdir(req["cwd"])
        os.environ.clear()
        os.environ.update(req["env"])
        # The runner's capped log pipe when it sent one (runner.LogTail), else the log file.
        log = out_fd if out_fd is not None else os.open(req["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(log)
        os.close(null)
        _fresh_state()
        # Held open for the worker's life: a forked worker's command line is the server's, so its
        # open spec file is what says which case it runs (`ls -l /proc/PID/fd`, the fault tests).
        os.open(req["argv"][0], os.O_RDONLY | os.O_CLOEXEC)

        code = main(list(req["argv"]))
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:  # noqa: BLE001 - the runner classifies a missing result as crashed
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        try:
            import atexit

            atexit._run_exitfuncs()  # what interpreter shutdown would run (e.g. compile pools)
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _fresh_state() -> None:
    """What a fresh interpreter would have that a copy of the server does not."""
    import random

    random.seed()  # a fresh interpreter seeds from the OS; every fork would share the server's
    np = sys.modules.get("numpy")
    if np is not None:
        np.random.seed()
        if _BLAS_ENV not in os.environ:  # the server ran with 1 BLAS thread; a fresh process would not
            try:
                from threadpoolctl import threadpool_limits

                threadpool_limits(limits=len(os.sched_getaffinity(0)), user_api="blas")
            except Exception:  # noqa: BLE001 - numpy's BLAS is not what the harness times
                pass


# -- the runner side ----------------------------------------------------------------------------


class ForkedWorker:
    """A worker forked by a server: the surface of `subprocess.Popen` the runner uses (pid,
    wait, poll, returncode) plus `has_exited()`, which does not reap (the server reaps on `wait`)."""

    start_method = "fork"

    def __init__(self, server: _Server, pid: int):
        self._server = server
        self.pid = pid
        self.pidfd: int | None = os.pidfd_open(pid)
        self.returncode: int | None = None
        self.status_lost = False  # the server died before it could report the exit status

    def has_exited(self) -> bool:
        if self.pidfd is None:
            return True
        ready, _, _ = select.select([self.pidfd], [], [], 0)
        return bool(ready)

    def poll(self) -> int | None:
        return self.wait(0) if self.has_exited() else None

    def wait(self, timeout: float | None = None) -> int | None:
        if self.pidfd is not None:
            ready, _, _ = select.select([self.pidfd], [], [], timeout)
            if not ready:
                raise subprocess.TimeoutExpired(f"forked worker {self.pid}", timeout or 0)
            os.close(self.pidfd)
            self.pidfd = None
            try:
                self.returncode = self._server.reap(self.pid)
            except ServerLost:
                self.status_lost = True
        return self.returncode


class _Server:
    """One server process (one interpreter and PYTHONPATH) and its socket."""

    def __init__(self, python: str, env: Mapping[str, str], *, log_dir: str):
        ours, theirs = socket.socketpair()
        self.env = dict(env)
        start_env = dict(env)
        start_env.setdefault(_BLAS_ENV, "1")
        fd, log_name = tempfile.mkstemp(prefix="server-", suffix=".log", dir=log_dir)
        os.close(fd)
        self.log_path = Path(log_name)
        with open(self.log_path, "wb") as log:
            try:
                self.proc = subprocess.Popen(
                    [python, "-m", "cnnbench.run.server", str(theirs.fileno())],
                    pass_fds=(theirs.fileno(),),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    env=start_env,
                )
            except OSError as exc:
                ours.close()
                raise ServerLost(f"cannot start it ({exc})") from exc
            finally:
                theirs.close()
        self.chan = _Lines(ours)
        hello = self._ask(None, timeout=STARTUP_TIMEOUT_S)
        self.info = hello
        if not hello.get("safe"):
            self.close()
            raise ServerLost(hello.get("reason") or "the server is not fork-safe")

    def _ask(
        self, req: Mapping[str, Any] | None, *, timeout: float = REPLY_TIMEOUT_S, fds: Sequence[int] = ()
    ) -> dict[str, Any]:
        try:
            if req is not None:
                self.chan.send(req, fds)
            reply = self.chan.recv(timeout)
        except TimeoutError:
            raise ServerLost(f"no answer within {timeout:g} s") from None
        except (OSError, ValueError) as exc:
            raise ServerLost(f"lost ({exc})") from exc
        if reply is None:
            code = self.proc.poll()
            raise ServerLost(f"it exited ({'code ' + str(code) if code is not None else 'closed its socket'}){self._log_hint()}")
        if "error" in reply:
            raise ServerLost(str(reply["error"]))
        return reply

    def _log_hint(self) -> str:
        try:
            lines = self.log_path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
        except OSError:
            return ""
        return f": {lines[-1].strip()[:200]}" if lines else ""

    def fork(
        self, argv: Sequence[str], *, env: Mapping[str, str], cwd: str, log_path: str, out_fd: int | None = None
    ) -> ForkedWorker:
        req = {"op": "fork", "argv": list(argv), "env": dict(env), "cwd": cwd, "log": log_path, "out_fd": out_fd is not None}
        reply = self._ask(req, fds=() if out_fd is None else (out_fd,))
        try:
            pid = int(reply["pid"])
        except (KeyError, ValueError, TypeError) as exc:
            raise ServerLost(f"bad fork answer ({exc})") from exc
        try:
            return ForkedWorker(self, pid)
        except OSError as exc:  # cannot watch it: do not leave it running beside a spawned retry
            try:
                os.killpg(pid, 9)
            except OSError:
                pass
            raise ServerLost(f"cannot watch the forked worker ({exc})") from exc

    def reap(self, pid: int) -> int | None:
        return self._ask({"op": "reap", "pid": pid}).get("returncode")

    def close(self) -> None:
        try:
            self.chan.sock.close()  # end of file: the server exits
        except OSError:
            pass
        try:  # it exits on end of file; do not hold the run up while its interpreter tears down
            self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            try:
                self.proc.wait(timeout=2)
            except subprocess.TimeoutExpired:  # pragma: no cover - reaped by subprocess later
                pass


def _warn_stderr(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


class ServerPool:
    """The servers of one run, one per (interpreter, PYTHONPATH), started on first use. A server
    that cannot start, is not fork-safe or dies is not used again; the run spawns instead and
    `warn` is called once per server with one line saying so."""

    def __init__(self, *, warn: Callable[[str], None] | None = None):
        self.warn = warn or _warn_stderr
        self._servers: dict[tuple[str, str], _Server | None] = {}
        self._dir = tempfile.mkdtemp(prefix="cnnbench-server-")
        self.forks = 0
        self.spawns = 0

    def fork(
        self, python: str, argv: Sequence[str], *, env: Mapping[str, str], log_path: str, out_fd: int | None = None
    ) -> ForkedWorker | None:
        key = (python, env.get("PYTHONPATH", ""))
        if key not in self._servers:
            try:
                self._servers[key] = _Server(python, env, log_dir=self._dir)
            except ServerLost as exc:
                self._servers[key] = None
                self.warn(f"worker server for {python} not used: {exc}; spawning a fresh worker per case instead")
        server = self._servers[key]
        if server is None or not _same_import_env(server.env, env):
            self.spawns += 1
            return None
        try:
            worker = server.fork(argv, env=env, cwd=os.getcwd(), log_path=log_path, out_fd=out_fd)
        except ServerLost as exc:
            server.close()
            self._servers[key] = None
            self.warn(f"worker server for {python} crashed ({exc}); spawning a fresh worker per case from now on")
            self.spawns += 1
            return None
        self.forks += 1
        return worker

    def server_pids(self) -> list[int]:
        return [s.proc.pid for s in self._servers.values() if s is not None]

    def close(self) -> None:
        for server in self._servers.values():
            if server is not None:
                server.close()
        self._servers.clear()
        import shutil

        shutil.rmtree(self._dir, ignore_errors=True)


def _same_import_env(server_env: Mapping[str, str], env: Mapping[str, str]) -> bool:
    """Whether a child with `env` would import what the server imported (CNNBENCH_* aside)."""
    keys = set(server_env) | set(env)
    return all(server_env.get(k) == env.get(k) for k in keys if not k.startswith(_RUNTIME_ENV_PREFIX))


_ACTIVE: list[ServerPool | None] = []


@contextmanager
def session(*, enabled: bool = True, warn: Callable[[str], None] | None = None) -> Iterator[ServerPool | None]:
    """Within this block, `runner.run_worker` forks workers from servers (when `enabled` and the
    platform allows); outside any session, or with `enabled=False` (`--spawn`), it spawns."""
    why_not = fork_supported()
    if enabled and why_not is not None:
        (warn or _warn_stderr)(f"{why_not}; spawning a fresh worker per case")
    pool = ServerPool(warn=warn) if enabled and why_not is None else None
    _ACTIVE.append(pool)
    try:
        yield pool
    finally:
        _ACTIVE.pop()
        if pool is not None:
            pool.close()


@contextmanager
def forced_spawn(spawn: bool = True) -> Iterator[None]:
    """Within this block (when `spawn`), workers are spawned even inside a session (benchmarks
    that compare both starts in the same rounds)."""
    if spawn:
        _ACTIVE.append(None)
    try:
        yield
    finally:
        if spawn:
            _ACTIVE.pop()


def fork_worker(
    python: str,
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    log_path: str | os.PathLike[str],
    out_fd: int | None = None,
) -> ForkedWorker | None:
    """A worker forked from this session's server for `python`, or None: spawn it (no session,
    `--spawn`, or no usable server). The one place the runner asks how to start a worker.
    `out_fd` (the write end of the runner's log pipe) becomes the child's stdout and stderr,
    passed over the server's socket; without it the child writes `log_path`."""
    pool = _ACTIVE[-1] if _ACTIVE else None
    if pool is None:
        return None
    return pool.fork(python, argv, env=env, log_path=os.fspath(log_path), out_fd=out_fd)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(serve(int(sys.argv[1])))
