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

import os
from typing import Iterable
from cnnbench.suite.usercode import check_imports

__all__ = ["check_imports_in"]


def check_imports_in(
    python: str, pythonpath: str, targets: Iterable[str], *, timeout_s: float = 180.0
) -> dict[str, str]:
    """Import each `package.module:callable` target with `python` and PYTHONPATH=`pythonpath`.

    The child runs as the workers do (PYTHONSAFEPATH=1, so the working directory is not put ahead
    of the given paths), from this process's working directory.

    Returns:
        {target: one-line error} for each target that does not import to a callable (empty: all ok).

    An interpreter that cannot start, a child that exits, crashes or hangs at import: every
    target it did not answer for gets that as its error (`cnnbench.suite.usercode.check_imports`).
    """

    wanted = sorted(set(targets))
    if not wanted:
        return {}
    paths = [p for p in pythonpath.split(os.pathsep) if p]
    answer = check_imports(python, paths, wanted, timeout_s=timeout_s)
    return {t: err for t, err in answer.items() if err}
