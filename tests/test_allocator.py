"""`--allocator`: the workers' memory allocator is an explicit, recorded choice, never a silent one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cnnbench.core import allocator
from cnnbench.core.errors import UserError

ROOT = Path(__file__).resolve().parents[1]


def test_the_default_changes_nothing_and_glibc_tuned_sets_fixed_thresholds():
    assert allocator.worker_env("default", {}) == {}
    env = allocator.worker_env("glibc-tuned", {})
    assert env["MALLOC_MMAP_THRESHOLD_"] == "33554432" and env[allocator.ENV_NAME] == "glibc-tuned"
    assert allocator.ENV_LIB not in env  # nothing preloaded, nothing for the worker to check


def test_a_preloaded_allocator_is_found_put_first_and_named(tmp_path):
    (tmp_path / "libjemalloc.so.2").write_bytes(b"")
    env = allocator.worker_env("jemalloc", {"LD_PRELOAD": "/opt/other.so"}, dirs=(str(tmp_path),))
    lib = str(tmp_path / "libjemalloc.so.2")
    assert env["LD_PRELOAD"] == f"{lib} /opt/other.so"  # the user's own preload kept, after ours
    assert env[allocator.ENV_LIB] == lib and env[allocator.ENV_NAME] == "jemalloc"


def test_a_missing_library_or_an_unknown_name_is_a_usage_error_naming_the_package(tmp_path):
    with pytest.raises(UserError, match="apt-get install libtcmalloc-minimal4"):
        allocator.worker_env("tcmalloc", {}, dirs=(str(tmp_path),))
    with pytest.raises(UserError, match="unknown allocator 'mimalloc'"):
        allocator.worker_env("mimalloc", {})


def test_the_worker_check_refuses_a_preload_that_did_not_load(tmp_path):
    maps = tmp_path / "maps"
    maps.write_text("7f00-7f01 r-xp 00000000 08:01 1 /usr/lib/x86_64-linux-gnu/libc.so.6\n")
    env = {allocator.ENV_NAME: "jemalloc", allocator.ENV_LIB: "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"}
    assert "is not loaded in the worker" in allocator.check_loaded(env, maps=str(maps))
    maps.write_text(maps.read_text() + "7f02-7f03 r-xp 00000000 08:01 2 /usr/lib/x86_64-linux-gnu/libjemalloc.so.2\n")
    assert allocator.check_loaded(env, maps=str(maps)) is None
    assert allocator.check_loaded({}, maps=str(maps)) is None  # nothing asked: nothing to check
    assert allocator.check_loaded(env, maps=str(tmp_path / "absent")) is None  # no /proc: cannot tell


def test_describe_gives_the_environment_fields():
    assert allocator.describe({}) == {"allocator": "default", "allocator_library": None, "allocator_settings": None}
    got = allocator.describe({allocator.ENV_NAME: "glibc-tuned", "MALLOC_TRIM_THRESHOLD_": "1"})
    assert got["allocator"] == "glibc-tuned" and got["allocator_settings"] == {"MALLOC_TRIM_THRESHOLD_": "1"}


def test_compare_warns_when_the_two_sides_used_different_allocators():
    from cnnbench import compare
    from cnnbench.compare.looks import figures_record

    def doc(name):
        return {"environment": {"allocator": name}, "cases": [figures_record([1.0] * 5)]}

    comp = compare.compare_results(doc("default"), doc("jemalloc"))
    assert any("allocator differs" in w for w in comp.warnings)


SUITE = """\
name: alloc
models: [lenet5]
batch_sizes: [1]
backends: [eager]
threads: 1
measure: {warmup: 1, min_time_s: 0.05, max_time_s: 0.2, repeats: 1, timeout_s: 120}
"""


@pytest.mark.slow
@pytest.mark.skipif(allocator.find_library("jemalloc") is None, reason="libjemalloc2 is not installed (.ci/run installs it)")
def test_run_with_jemalloc_measures_in_workers_that_really_loaded_it(tmp_path):
    suite = tmp_path / "s.yaml"
    suite.write_text(SUITE)
    out = tmp_path / "r.json"
    proc = subprocess.run([sys.executable, str(ROOT / "bench.py"), "run", str(suite), "--out", str(out), "--quiet",
                           "--no-peak", "--allocator", "jemalloc"], capture_output=True, text=True, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads(out.read_text())
    assert doc["environment"]["allocator"] == "jemalloc"
    assert doc["environment"]["allocator_library"].endswith("libjemalloc.so.2")
    assert doc["cases"][0]["status"] == "ok"


@pytest.mark.slow
def test_a_worker_asked_for_an_allocator_it_did_not_load_fails_the_case_and_says_why(tmp_path, monkeypatch):
    """The manager's environment names a library that no worker preloads (as when LD_PRELOAD is
    dropped): the case is an error with the reason, not a measurement under glibc's malloc."""
    from cnnbench.run.runner import run_worker
    from cnnbench.core.spec import CaseSpec, Measure

    monkeypatch.setitem(os.environ, allocator.ENV_NAME, "jemalloc")
    monkeypatch.setitem(os.environ, allocator.ENV_LIB, "/nonexistent/libjemalloc.so.2")
    spec = CaseSpec(model="lenet5", batch_size=1, input_size=(1, 32, 32), threads=1,
                    measure=Measure(warmup=1, min_time_s=0.05, max_time_s=0.1, timeout_s=120))  # fmt: skip
    run = run_worker(spec, workdir=str(tmp_path))
    assert run["status"] == "error" and "is not loaded in the worker" in run["error"]
