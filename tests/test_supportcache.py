"""`bench.py list backends` caches its table per interpreter, package versions and GPUs
(cnnbench.backends.supportcache): checked once, answered from the cache after, checked again
when any of those change or with --refresh."""

from __future__ import annotations

import pytest

from cnnbench.backends import supportcache
from cnnbench.backends.support import Support
from cnnbench.cli import main


@pytest.fixture
def checks(monkeypatch, tmp_path):
    monkeypatch.setenv("CNNBENCH_CACHE_DIR", str(tmp_path))
    calls = []

    def table():
        calls.append(1)
        return [Support("eager", "cpu", "fp32", None), Support("eager", "cuda", "fp32", f"no CUDA device ({len(calls)})")]

    monkeypatch.setattr(supportcache, "support_table", table)
    return calls


def test_checked_once_then_answered_from_the_cache(checks):
    said = []
    rows, cached = supportcache.cached_support(say=said.append)
    assert not cached and len(checks) == 1 and "cached afterwards" in said[0]
    again, cached = supportcache.cached_support(say=said.append)
    assert cached and again == rows and len(checks) == 1 and len(said) == 1


def test_a_package_upgrade_a_gpu_or_refresh_checks_again(checks, monkeypatch):
    supportcache.cached_support()
    supportcache.cached_support(refresh=True)
    assert len(checks) == 2
    real = supportcache.package_version
    monkeypatch.setattr(supportcache, "package_version", lambda pkg: "9.9" if pkg == "onnxruntime-gpu" else real(pkg))
    rows, cached = supportcache.cached_support()
    assert not cached and len(checks) == 3 and rows[1].reason == "no CUDA device (3)"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert supportcache.cached_support()[1] is False and len(checks) == 4


def test_a_damaged_cache_is_checked_again(checks, tmp_path):
    supportcache.cached_support()
    (path,) = (tmp_path / "backends").glob("support-*.json")
    path.write_text("{not json")
    assert supportcache.cached_support()[1] is False and len(checks) == 2


def test_the_command_says_when_it_answers_from_the_cache(checks, capsys):
    assert main(["list", "backends"]) == 0
    first = capsys.readouterr()
    assert "checking what runs here" in first.err and first.out.startswith("eager     cpu   runs: fp32")
    assert main(["list", "backends"]) == 0
    second = capsys.readouterr()
    assert second.out == first.out and "cached" in second.err and "--refresh" in second.err
    assert main(["list", "backends", "--refresh"]) == 0 and len(checks) == 2
