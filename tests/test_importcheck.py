"""User models' imports checked on a given interpreter and path (cnnbench/suite/importcheck.py), and
`bench.py ab` checking them on each variant's own interpreter and paths."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from cnnbench.compare import ab as abmod
from cnnbench.cli import main
from cnnbench.suite.importcheck import check_imports_in
from tests.test_ab import fake_worker

MODEL = "def build():\n    return None\n"
SUITE = """\
name: onlyonpaths
models: [{name: m, import: "onlyhere:build", input_size: [1, 8, 8]}]
batch_sizes: [1]
backends: [eager]
device: cpu
threads: 1
"""


def test_imports_are_checked_on_the_given_path_only(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "onlyhere.py").write_text(MODEL + "NOT_CALLABLE = 3\n")
    (tmp_path / "a" / "exits.py").write_text("raise SystemExit(3)\n")
    ok = ["onlyhere:build"]
    assert check_imports_in(sys.executable, str(tmp_path / "a"), ok) == {}
    failed = check_imports_in(sys.executable, str(tmp_path / "b"), ok)
    assert failed == {"onlyhere:build": "cannot import 'onlyhere:build': ModuleNotFoundError: No module named 'onlyhere'"}
    failed = check_imports_in(
        sys.executable, str(tmp_path / "a"), ["onlyhere:nope", "onlyhere:NOT_CALLABLE", "exits:build"]
    )
    assert failed == {
        "onlyhere:nope": "cannot import 'onlyhere:nope': 'onlyhere' has no attribute 'nope'",
        "onlyhere:NOT_CALLABLE": "'onlyhere:NOT_CALLABLE' is an integer, not a callable that builds a model",
        "exits:build": "cannot import 'exits:build': SystemExit: 3",
    }
    assert check_imports_in(sys.executable, "", []) == {}  # nothing to check: no child at all


@pytest.fixture
def ab_run(monkeypatch, tmp_path):
    """`bench.py ab` with probes and workers faked; the import check runs for real (stdlib model)."""

    def probe(variants, *, extra_paths=(), timeout_s=0):
        env = {"hostname": "h", "machine_fingerprint": "fp", "torch": "2.14.1", "python": "3.11"}
        return {n: {"python": "3.11", "cnnbench_dir": "x", "environment": env} for n in variants}

    monkeypatch.setattr(abmod, "probe_variants", probe)
    monkeypatch.setattr("cnnbench.run.runner.run_worker", fake_worker())
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    suite_dir = tmp_path / "suite"
    suite_dir.mkdir()
    (suite_dir / "s.yaml").write_text(SUITE)
    monkeypatch.chdir(tmp_path)  # the model is neither beside the suite nor in the working directory
    for side in ("A", "B"):
        (tmp_path / side).mkdir()
        (tmp_path / side / "onlyhere.py").write_text(MODEL)
    (tmp_path / "C").mkdir()

    def run(*extra):
        return main(["ab", str(suite_dir / "s.yaml"), "--out", str(tmp_path / "ab.json"), "--quiet", "--repeats", "2", *extra])

    return run, tmp_path


def test_ab_takes_a_model_that_lives_only_on_the_variants_paths(ab_run, capsys):
    run, root = ab_run
    assert main(["run", str(root / "suite" / "s.yaml"), "--out", str(root / "r.json")]) == 2  # not on run's path
    assert "No module named 'onlyhere'" in capsys.readouterr().err
    assert run("--base-path", str(root / "A"), "--current-path", str(root / "B")) == 0
    assert abmod.load_ab(root / "ab.json")["status"] == "complete"


def test_ab_names_the_variant_whose_paths_lack_the_model(ab_run, capsys):
    run, root = ab_run
    assert run("--base-path", str(root / "C"), "--current-path", str(root / "B")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "base (" in err and str(root / "C") in err
    assert "cannot import 'onlyhere:build': ModuleNotFoundError: No module named 'onlyhere'" in err
    assert not Path(root / "ab.json").exists()  # refused before anything was written
