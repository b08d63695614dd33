"""No user code in the CLI process: a user model's import is checked in a short-lived child, so
whatever its module does at import (exit, crash, hang, start processes, print megabytes) is one
clear error, and the CLI itself survives to say so. Each case here would end or wedge the test
process itself if the import still happened in-process."""

from __future__ import annotations

import sys
import textwrap

import psutil
import pytest

from cnnbench.cli import main
from cnnbench.suite.usercode import check_import, check_imports

MODULES = {
    "exits": "import os\nos._exit(0)\n",
    "exits3": "import sys\nsys.exit(3)\n",
    "crashes": "import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)\n",
    "hangs": textwrap.dedent("""
        import os, time
        open(os.path.join(os.environ["CNNBENCH_FAULT_DIR"], "hangs.pid"), "w").write(str(os.getpid()))
        while True:
            time.sleep(0.1)
    """),
    "spawns": textwrap.dedent("""
        import os, subprocess
        child = subprocess.Popen(["sleep", "1000"])
        open(os.path.join(os.environ["CNNBENCH_FAULT_DIR"], "pid"), "w").write(str(child.pid))
        def build():
            return None
    """),
    "chatty": "import sys\nsys.stdout.write('x' * (8 << 20))\nsys.stderr.write('y' * (8 << 20))\ndef build():\n    return None\n",
    "good": "def build():\n    return None\nNOT_CALLABLE = 3\n",
}


@pytest.fixture
def mods(tmp_path, monkeypatch):
    for name, text in MODULES.items():
        (tmp_path / f"{name}.py").write_text(text)
    monkeypatch.setenv("CNNBENCH_FAULT_DIR", str(tmp_path))
    return tmp_path


def test_good_missing_and_not_callable(mods):
    got = check_imports(sys.executable, [str(mods)], ["good:build", "good:missing", "good:NOT_CALLABLE", "nope_xyz:f"])
    assert got["good:build"] is None
    assert "has no attribute 'missing'" in got["good:missing"]
    assert "is an integer, not a callable" in got["good:NOT_CALLABLE"]
    assert "ModuleNotFoundError" in got["nope_xyz:f"]


@pytest.mark.parametrize(("module", "needle"), [
    ("exits", "exit code 0"),
    ("exits3", "SystemExit: 3"),
    ("crashes", "SIGSEGV"),
])  # fmt: skip
def test_an_exit_or_a_crash_at_import_is_one_line(mods, module, needle):
    problem = check_import(sys.executable, [str(mods)], f"{module}:build")
    assert problem is not None and needle in problem and "\n" not in problem


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_a_hang_at_import_is_killed_at_the_timeout(mods):
    """The timeout's own message, and the importing process is gone when the check returns (it
    was killed, not waited for); no wall-clock bound on how long that took."""
    problem = check_import(sys.executable, [str(mods)], "hangs:build", timeout_s=3)
    assert problem is not None and "did not finish within 3 s" in problem
    assert _gone(int((mods / "hangs.pid").read_text()))


def test_a_process_started_at_import_does_not_outlive_the_check(mods):
    assert check_import(sys.executable, [str(mods)], "spawns:build") is None
    pid = int((mods / "pid").read_text())
    try:
        proc = psutil.Process(pid)
        gone = proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        gone = True
    assert gone


@pytest.mark.measured
def test_megabytes_of_output_at_import_cost_nothing(mods):
    """Counted in Python allocations (tracemalloc), not in the RSS, which the allocator and the
    rest of the process move: reading either of the two 8 MiB streams into this process would
    take at least 8 MiB at once; the check's own peak is ~1 MiB (the buffer it reads its answer
    file with, which it caps at 1 MiB)."""
    import tracemalloc

    tracemalloc.start()
    try:
        assert check_import(sys.executable, [str(mods)], "chatty:build") is None
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, peak  # never read into this process


@pytest.mark.parametrize("command", ["run", "ab"])
def test_run_and_ab_refuse_a_module_that_exits_at_import(mods, capsys, command):
    """`os._exit(0)` at import used to end `run` and `ab` with exit code 0 and no file."""
    suite = mods / "s.yaml"
    suite.write_text('name: s\nmodels: [{name: m, import: "exits:build", input_size: [1, 8, 8]}]\nthreads: 1\n')
    out = mods / "out.json"
    assert main([command, str(suite), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "exits:build" in err and "exit code 0" in err
    assert not out.exists()
