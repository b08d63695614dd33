"""Check user models' import paths in a child process run by a given interpreter and PYTHONPATH.

`bench.py ab` measures each variant with its own interpreter and import paths (`--base-path`,
`--current-path`), so a user model (`package.module:callable`) may exist only in the two checkouts
being compared, not beside the suite. Importing it in the CLI process would check the wrong code,
on the wrong path, and would run user code in the CLI process. `check_imports_in` asks a
short-lived child of the variant's own interpreter, with exactly the PYTHONPATH its workers get,
to import each target, and returns one line per failure. Standard library only here; the child
imports what the targets import (torch, usually).
"""

from __future__ import annotations

import json
import os
import subprocess
from typing import Iterable

__all__ = ["check_imports_in", "ImportCheckError"]

_MARK = "CNNBENCH-IMPORTS "
# Run as `python -c` in the child; argv[1] is a JSON list of targets. Prints one marked JSON line:
# {target: error text or null}. The module's own code may raise anything, SystemExit included.
_CHILD = f"""
import importlib, json, sys
out = {{}}
for target in json.loads(sys.argv[1]):
    module_name, _, attr = target.partition(":")
    try:
        obj = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
        out[target] = None if callable(obj) else "%r is %s, not a callable that builds a model" % (target, type(obj).__name__)
    except KeyboardInterrupt:
        raise
    except AttributeError as e:
        out[target] = "cannot import %r: %r has no attribute %r" % (target, module_name, attr)
    except BaseException as e:
        out[target] = "cannot import %r: %s: %s" % (target, type(e).__name__, " ".join(str(e).split()))
print({_MARK!r} + json.dumps(out), flush=True)
"""


class ImportCheckError(RuntimeError):
    """The child could not run or did not answer (not a failed import: those are returned)."""


def check_imports_in(
    python: str, pythonpath: str, targets: Iterable[str], *, timeout_s: float = 180.0
) -> dict[str, str]:
    """Import each `package.module:callable` target with `python` and PYTHONPATH=`pythonpath`.

    The child runs as the workers do (PYTHONSAFEPATH=1, so the working directory is not put ahead
    of the given paths), from this process's working directory.

    Returns:
        {target: one-line error} for each target that does not import to a callable (empty: all ok).

    Raises:
        ImportCheckError: the interpreter cannot be started, does not answer within `timeout_s`,
            or exits without its answer line.
    """
    wanted = sorted(set(targets))
    if not wanted:
        return {}
    env = {**os.environ, "PYTHONPATH": pythonpath, "PYTHONSAFEPATH": "1"}
    try:
        proc = subprocess.run(
            [python, "-c", _CHILD, json.dumps(wanted)],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, env=env, timeout=timeout_s,
        )  # fmt: skip
    except OSError as exc:
        raise ImportCheckError(f"cannot run {python} ({exc.strerror or exc})") from None
    except subprocess.TimeoutExpired:
        raise ImportCheckError(f"importing {', '.join(wanted)} did not finish within {timeout_s:g} s") from None
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(_MARK)]
    if not lines:
        tail = [ln.strip() for ln in (proc.stderr or proc.stdout).splitlines() if ln.strip()]
        raise ImportCheckError(f"the import check exited {proc.returncode} without an answer ({tail[-1] if tail else 'no output'})")
    answer = json.loads(lines[-1][len(_MARK):])
    return {t: err for t, err in answer.items() if err}
