"""User code never runs in the CLI process: a user model's import is checked in a short-lived child.

A suite may name user models (`import: "mymodels:build"`). Validating them means importing
their module, and a module's top level may do anything: `os._exit(0)` (which would end the CLI
with exit code 0 and no results: a CI gate passing on a broken model), segfault, hang, start a
process that outlives the run, print megabytes. So the import happens in a child interpreter:

- in its own session (process group), killed with everything it started when it is done;
- with a timeout (`IMPORT_TIMEOUT_S`), after which it is killed and the check fails;
- with its stdout and stderr discarded (the check's answer travels through a small JSON file,
  read with a size cap), so output volume costs nothing;
- an exit, a signal, a hang or a missing answer becomes one clear line for the suite error.

`check_imports(python, paths, targets)` takes the interpreter and import paths, so the same check
serves `bench.py ab`, whose variants each have their own interpreter and paths.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Iterable, Sequence
from cnnbench.core.procgroup import exited, kill_group

__all__ = ["IMPORT_TIMEOUT_S", "check_imports", "check_import"]

IMPORT_TIMEOUT_S = 120.0  # importing torch on a loaded machine can take 10 s; a hang takes forever
_MAX_ANSWER_BYTES = 1 << 20
_POLL_S = 0.02

# Runs in the child: import each target, resolve its attribute path, say whether it is callable.
_CHILD = r"""
import importlib, json, os, sys
answer_path, n = sys.argv[1], int(sys.argv[2])
paths, targets = sys.argv[3:3 + n], sys.argv[3 + n:]
sys.path[:0] = [p for p in paths if p not in sys.path]

def kind(v):
    if v is None: return "null"
    if isinstance(v, bool): return "a boolean"
    if isinstance(v, int): return "an integer"
    if isinstance(v, float): return "a number"
    if isinstance(v, str): return "a string"
    if isinstance(v, dict): return "a mapping"
    if isinstance(v, list): return "a list"
    return "a " + type(v).__name__

def one_line(e):
    text = " ".join(str(e).split())
    return text[:300]

answers = {}
for target in targets:
    module_name, _, attr = target.partition(":")
    try:
        obj = importlib.import_module(module_name)
    except BaseException as e:
        answers[target] = "cannot import %r: %s: %s" % (target, type(e).__name__, one_line(e))
        continue
    problem = None
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except BaseException:
            problem = "cannot import %r: %r has no attribute %r" % (target, module_name, attr)
            break
    if problem is None and not callable(obj):
        problem = "%r is %s, not a callable that builds a model" % (target, kind(obj))
    answers[target] = problem
fd = os.open(answer_path + ".part", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
os.write(fd, json.dumps(answers).encode())
os.close(fd)
os.replace(answer_path + ".part", answer_path)
"""


def check_imports(
    python: str,
    paths: Sequence[str],
    targets: Iterable[str],
    *,
    timeout_s: float = IMPORT_TIMEOUT_S,
    cwd: str | None = None,
) -> dict[str, str | None]:
    """Import each `module:callable` target in one child interpreter and report, per target,
    None (importable and callable) or a one-line problem. Never raises for the user code's
    behaviour: an exit, a crash or a hang of the child gives every unanswered target a problem.

    Args:
        python: the interpreter to import with (a variant's own, for `ab`).
        paths: directories put first on the child's sys.path (the suite's python_path).
        targets: "package.module:attr.path" strings.
        timeout_s: after this the child and everything it started are killed.
        cwd: the child's working directory (default: the current one).
    """
    targets = list(dict.fromkeys(targets))
    if not targets:
        return {}
    scratch = tempfile.mkdtemp(prefix="cnnbench-import-")
    answer = Path(scratch) / "answer.json"
    env = dict(os.environ)
    env["PYTHONSAFEPATH"] = "1"  # as the worker: the cwd is importable only through `paths`
    env.pop("PYTHONSTARTUP", None)
    proc: subprocess.Popen | None = None
    try:
        proc = subprocess.Popen(
            [python, "-c", _CHILD, str(answer), str(len(paths)), *paths, *targets],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            env=env,
            cwd=cwd,
        )

        deadline = time.monotonic() + timeout_s
        timed_out = False
        while not exited(proc):  # not reaped until its group is killed: the pgid stays ours
            if time.monotonic() > deadline:
                timed_out = True
                break
            time.sleep(_POLL_S)
        kill_group(proc)  # what the module started at import dies with it
        answers = _read_answer(answer)
        if answers is not None:
            return {t: answers.get(t) if isinstance(answers.get(t), (str, type(None))) else "bad answer" for t in targets}
        if timed_out:
            why = f"the import did not finish within {timeout_s:g} s (killed)"
        else:
            why = _describe(proc.returncode)
        return {t: f"cannot import {t!r}: {why}" for t in targets}
    except OSError as exc:  # the interpreter itself cannot be started
        return {t: f"cannot import {t!r}: cannot start {python} ({exc.strerror or exc})" for t in targets}
    finally:
        if proc is not None and proc.returncode is None:  # an interrupt while it ran

            kill_group(proc)
        shutil.rmtree(scratch, ignore_errors=True)


def check_import(python: str, paths: Sequence[str], target: str, *, timeout_s: float = IMPORT_TIMEOUT_S) -> str | None:
    """`check_imports` for one target: None when it imports and is callable, else the problem."""
    return check_imports(python, paths, [target], timeout_s=timeout_s)[target]


def _describe(code: int | None) -> str:
    if code is None:
        return "the importing process did not end"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"the module's code killed the importing process ({name})"
    return f"the module's code ended the importing process (exit code {code}) before the import finished"


def _read_answer(path: Path) -> dict | None:
    try:
        with open(path, "rb") as fh:
            data = fh.read(_MAX_ANSWER_BYTES + 1)
    except OSError:
        return None
    if len(data) > _MAX_ANSWER_BYTES:
        return None
    try:
        answers = json.loads(data)
    except ValueError:
        return None
    return answers if isinstance(answers, dict) else None

