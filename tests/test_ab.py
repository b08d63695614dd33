"""Interleaved A/B runs: ABBA order, one file holding both variants, compare's verdicts and exit codes."""

from __future__ import annotations


import json
import os
import random
import shutil
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from cnnbench.compare import ab as abmod
from cnnbench.cli import main
from cnnbench.results.format import load_results
from cnnbench.run.runner import Variant
from cnnbench.core.spec import CaseSpec, Measure

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
VARIANTS = {name: Variant(name=name) for name in abmod.VARIANT_NAMES}


def spec(model: str, repeats: int = 2) -> CaseSpec:
    return CaseSpec(model=model, batch_size=1, input_size=(1, 8, 8), measure=Measure(repeats=repeats))


def fake_worker(log=None, *, slow=1.0, fail=None, out_path=None, on_disk=None, seed=0):
    """A worker stand-in: per-process medians near 10 ms (1% process-to-process noise), the
    current variant's multiplied by `slow`; `fail` = {(variant, model): status}."""
    rng = random.Random(seed)

    def worker(spec, *, variant, workdir, stop, extra_paths):
        if out_path is not None and on_disk is not None:
            on_disk.append(len(json.loads(Path(out_path).read_text())["sequence"]) if Path(out_path).exists() else 0)
        if log is not None:
            log.append((variant.name, spec.model))
        status = (fail or {}).get((variant.name, spec.model))
        if status:
            return {"status": status, "error": f"{status} in {variant.name}"}
        level = 10.0 * (slow if variant.name == "current" else 1.0) * (1 + rng.gauss(0, 0.01))
        samples = [level * (1 + rng.gauss(0, 0.002)) for _ in range(30)]
        return {"status": "ok", "error": None, "samples_ms": samples, "warmup_ms": [12.0], "first_call_ms": 20.0}

    return worker


def new_doc():
    return abmod.new_ab_results(environment={"hostname": "h"}, suite={"name": "t"}, variants=VARIANTS)


# -- order and file -----------------------------------------------------------------------------


def test_pairs_alternate_abba_and_repeats_interleave_across_cases():
    assert abmod.pair_order(0) == ("base", "current")
    assert abmod.pair_order(1) == ("current", "base")
    plan = [(r, s.model, v) for r, s, v in abmod.schedule([spec("a", 3), spec("b", 2)])]
    assert plan == [
        (0, "a", "base"), (0, "a", "current"), (0, "b", "base"), (0, "b", "current"),
        (1, "a", "current"), (1, "a", "base"), (1, "b", "current"), (1, "b", "base"),
        (2, "a", "base"), (2, "a", "current"),
    ]  # fmt: skip


def test_one_file_holds_both_variants_saved_after_every_process(tmp_path):
    out = tmp_path / "ab.json"
    log, on_disk = [], []
    doc = new_doc()
    state = abmod.run_ab([spec("a", 4), spec("b", 4)], ab=doc, out_path=out, variants=VARIANTS,
                         worker=fake_worker(log, out_path=out, on_disk=on_disk))  # fmt: skip
    assert not state.interrupted
    # Every process found all the previous ones on disk: nothing is lost to a crash or Ctrl-C.
    assert on_disk == list(range(16))
    per_case = [v for v, m in log if m == "a"]
    assert per_case == ["base", "current", "current", "base"] * 2  # ABBA per case
    loaded = abmod.load_ab(out)
    assert loaded["kind"] == "ab" and loaded["status"] == "complete"
    for name in ("base", "current"):
        cases = loaded["variants"][name]["cases"]
        assert [c["model"] for c in (r["spec"] for r in cases)] == ["a", "b"]
        assert all(len(c["repeat_medians_ms"]) == 4 for c in cases)
    assert [s["variant"] for s in loaded["sequence"][:4]] == ["base", "current", "base", "current"]
    # The top level is not a results file (no `cases`), so it is never mistaken for one.
    with pytest.raises(Exception, match="not a cnnbench results file"):
        load_results(out)


def test_a_failed_pair_stops_that_case_on_both_sides(tmp_path):
    out = tmp_path / "ab.json"
    log = []
    doc = new_doc()
    abmod.run_ab([spec("a", 3), spec("b", 3)], ab=doc, out_path=out, variants=VARIANTS,
                 worker=fake_worker(log, fail={("base", "b"): "crashed"}))  # fmt: skip
    assert [v for v, m in log if m == "b"] == ["base", "current"]  # the pair completes, then stops
    assert len([1 for v, m in log if m == "a"]) == 6
    comp = abmod.compare_ab(doc)
    row = {r.spec["model"]: r for r in comp.rows}["b"]
    assert row.verdict == "failed" and not row.gating  # broken in base: not the pull request's fault


def test_load_ab_refuses_a_plain_results_file_and_split_writes_loadable_ones(tmp_path):
    out = tmp_path / "ab.json"
    doc = new_doc()
    abmod.run_ab([spec("a", 2)], ab=doc, out_path=out, variants=VARIANTS, worker=fake_worker())
    paths = abmod.split_ab(abmod.load_ab(out), tmp_path / "pr")
    base = load_results(paths["base"])
    assert base["variant"]["name"] == "base" and base["cases"][0]["repeat_medians_ms"]
    with pytest.raises(Exception, match="not a cnnbench A/B file.*bench.py compare"):
        abmod.load_ab(paths["base"])


# -- the command ------------------------------------------------------------------------------------


SUITE = """\
name: abtest
models: [lenet5, mnist_cnn_bn]
batch_sizes: [1]
backends: [eager]
device: cpu
threads: 1
thresholds: {latency: 5%}
"""


@pytest.fixture
def fake_run(monkeypatch, tmp_path):
    """`bench.py ab` with the probes and workers replaced: no process is started."""

    def probe(variants, *, extra_paths=(), timeout_s=0):
        env = {"hostname": "h", "machine_fingerprint": "fp", "torch": "2.14.1", "python": "3.11"}
        return {n: {"python": "3.11", "cnnbench_dir": str(ROOT / "cnnbench"), "environment": env} for n in variants}

    monkeypatch.setattr(abmod, "probe_variants", probe)
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    (tmp_path / "s.yaml").write_text(SUITE)

    def run(*extra, worker):
        monkeypatch.setattr("cnnbench.run.runner.run_worker", worker)
        return main(["ab", str(tmp_path / "s.yaml"), "--out", str(tmp_path / "ab.json"), "--quiet", *extra])

    return run


def test_command_no_change_exits_0_and_writes_file_markdown_and_step_summary(fake_run, tmp_path, monkeypatch, capsys):
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    log = []
    code = fake_run("--markdown", str(tmp_path / "ab.md"), "--json", str(tmp_path / "c.json"), worker=fake_worker(log))
    assert code == 0
    doc = abmod.load_ab(tmp_path / "ab.json")
    # Default repeats: at most 9 per case and side; sequential, so two clear A/A cases stop at
    # the first look (5 pairs) and the log holds exactly the processes the file says ran.
    assert {c["repeats"] for c in doc["sequential"]["cases"].values()} == {5}
    assert len(log) == 2 * 2 * 5 == len(doc["sequence"])
    assert doc["status"] == "complete" and doc["design"]["repeats"] == abmod.DEFAULT_REPEATS and doc["design"]["order"] == "ABBA"
    assert doc["comparison"]["kind"] == "comparison" and doc["comparison"]["has_regression"] is False
    assert {c["verdict"] for c in doc["comparison"]["cases"]} == {"unchanged"}
    md = (tmp_path / "ab.md").read_text()
    assert md.startswith("## ✅ cnnbench A/B: No performance regression") and "ABBA" in md
    assert summary.read_text().startswith("earlier step\n## ✅ cnnbench A/B")
    assert json.loads((tmp_path / "c.json").read_text())["counts"]["unchanged"] == 2
    assert "No performance regression" in capsys.readouterr().out


def test_command_no_sequential_runs_every_repeat_and_says_how_many_each_case_used(fake_run, tmp_path, capsys):
    log = []
    assert fake_run("--no-sequential", "--repeats", "6", worker=fake_worker(log)) == 0
    doc = abmod.load_ab(tmp_path / "ab.json")
    assert len(log) == 2 * 2 * 6 and "sequential" not in doc and doc["design"]["sequential"] is False
    capsys.readouterr()
    # Sequential (the default): a clear +25% is called from the 7th pair of 9 (cnnbench.stats.sequential).
    assert fake_run("--replace", "--repeats", "9", "--markdown", str(tmp_path / "ab.md"), worker=fake_worker(slow=1.25)) == 1
    out = capsys.readouterr().out
    assert "sequential: 2 of 2 case(s) settled before 9 repeats; 28 of 36 planned worker processes ran" in out
    md = (tmp_path / "ab.md").read_text()
    assert "Sequential stopping" in md and md.count("| 7 | settled | verdict settled at this look: regressed") == 2


def test_command_slowdown_exits_1_and_saved_file_compares_again_and_splits(fake_run, tmp_path, capsys):
    assert fake_run("--repeats", "5", worker=fake_worker(slow=1.25)) == 1
    doc = abmod.load_ab(tmp_path / "ab.json")
    assert {c["verdict"] for c in doc["comparison"]["cases"]} == {"regressed"}
    # Compare the saved file again: the same verdict; with a looser threshold, none.
    assert main(["ab", "--from", str(tmp_path / "ab.json"), "--split", str(tmp_path / "pr")]) == 1
    assert main(["ab", "--from", str(tmp_path / "ab.json"), "--threshold", "30%"]) == 0
    # The split files are plain results files that `compare` takes, with the same verdict.
    assert main(["compare", str(tmp_path / "pr-base.json"), str(tmp_path / "pr-current.json")]) == 1
    assert main(["ab", "--from", str(tmp_path / "pr-base.json")]) == 2
    assert "not a cnnbench A/B file" in capsys.readouterr().err


def test_command_newly_failing_case_exits_1(fake_run):
    assert fake_run("--repeats", "2", worker=fake_worker(fail={("current", "lenet5"): "crashed"})) == 1


def test_command_ctrl_c_exits_130_and_keeps_what_ran(fake_run, tmp_path):
    inner = fake_worker()
    calls = []

    def worker(spec, *, variant, workdir, stop, extra_paths):
        calls.append(variant.name)
        if len(calls) == 3:
            stop.handle(2, None)  # what a Ctrl-C does while this process runs
            return {"status": "interrupted", "error": "interrupted by the user (SIGINT)"}
        return inner(spec, variant=variant, workdir=workdir, stop=stop, extra_paths=extra_paths)

    assert fake_run(worker=worker) == 130
    doc = abmod.load_ab(tmp_path / "ab.json")
    assert doc["status"] == "interrupted" and len(doc["sequence"]) == 3
    assert doc["comparison"] is not None  # the comparison of what did run is in the file


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_command_second_signal_ends_at_once_and_still_marks_and_saves_the_in_flight_process(fake_run, tmp_path, sig):
    """As `run` (docs/reliability.md): two signals inside a worker's wait end `ab` at once with
    128 + signal, and the process they cut short is on disk, `interrupted`, beside those that ran."""
    import os

    inner = fake_worker()
    calls = []

    def worker(spec, *, variant, workdir, stop, extra_paths):
        calls.append(variant.name)
        if len(calls) == 3:
            os.kill(os.getpid(), sig)  # the first: a clean stop is requested
            os.kill(os.getpid(), sig)  # the second ends at once, here, inside the worker's wait
            raise AssertionError("not reached")
        return inner(spec, variant=variant, workdir=workdir, stop=stop, extra_paths=extra_paths)

    assert fake_run(worker=worker) == 128 + sig
    doc = abmod.load_ab(tmp_path / "ab.json")
    assert doc["status"] == "interrupted" and len(doc["sequence"]) == 3
    assert [s["status"] for s in doc["sequence"]] == ["ok", "ok", "interrupted"]
    cut = doc["sequence"][2]
    (record,) = [c for c in doc["variants"][cut["variant"]]["cases"] if c["key"] == cut["key"]]
    assert record["runs"][-1]["status"] == "interrupted" and "twice" in record["runs"][-1]["error"]
    assert not list(tmp_path.glob("*.lock")) and not list(tmp_path.glob(".*.tmp*"))
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # handlers restored


def test_command_usage_errors_exit_2(fake_run, tmp_path, capsys):
    assert main(["ab"]) == 2
    assert main(["ab", str(tmp_path / "s.yaml"), "--from", "x.json"]) == 2
    assert main(["ab", str(tmp_path / "s.yaml"), "--base-python", str(tmp_path / "nope")]) == 2
    assert "--base-python" in capsys.readouterr().err
    assert main(["ab", str(tmp_path / "s.yaml"), "--base-path", str(tmp_path / "nodir")]) == 2
    assert main(["ab", str(tmp_path / "s.yaml"), "--alpha", "0.7"]) == 2
    assert main(["ab", str(tmp_path / "s.yaml"), "--models", "resnet*"]) == 2
    (tmp_path / "ab.json").write_text("{}")
    assert main(["ab", str(tmp_path / "s.yaml"), "--out", str(tmp_path / "ab.json")]) == 2
    assert "--replace" in capsys.readouterr().err


def test_replace_overwrites_only_a_file_of_ours_and_never_a_locked_one(fake_run, tmp_path, capsys):
    from cnnbench.results.lock import results_lock

    out = tmp_path / "ab.json"
    started = []
    for content in ("my notes, not results", '{"schema_version": 2, "cases": [', '{"schema_version": 99, "cases": []}'):
        out.write_text(content)
        assert fake_run("--replace", worker=lambda spec, **kw: started.append(spec) or {}) == 2
        err = capsys.readouterr().err
        assert "left untouched" in err and err.count("\n") == 1, err
        assert out.read_text() == content and started == []
    out.unlink()
    with results_lock(out):
        assert fake_run("--replace", worker=lambda spec, **kw: started.append(spec) or {}) == 2
    assert "another run is writing this file" in capsys.readouterr().err and started == []
    assert not out.exists() and not list(tmp_path.glob("*.lock"))


# -- probing the variants (real processes, but they fail before importing torch) -----------------


def test_probe_rejects_unusable_interpreters_in_one_line(tmp_path):
    script = tmp_path / "notpython"
    script.write_text("#!/bin/sh\necho hello\n")
    with pytest.raises(abmod.VariantError, match="not executable"):
        abmod.resolve_python(str(script), option="--base-python")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    v = Variant(name="base", python=abmod.resolve_python(str(script), option="--base-python"))
    with pytest.raises(abmod.VariantError, match=r"base \(.*notpython\): is not a working Python interpreter") as exc:
        abmod.probe_variant(v)
    assert "\n" not in str(exc.value)


def test_probe_reports_a_base_that_cannot_import_cnnbench(tmp_path):
    broken = tmp_path / "checkout" / "cnnbench"
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text("raise ImportError('half-merged checkout')\n")
    v = Variant(name="base", python=sys.executable, paths=(str(tmp_path / "checkout"),))
    with pytest.raises(abmod.VariantError, match="cannot import cnnbench: ImportError: half-merged checkout"):
        abmod.probe_variant(v)


# -- end to end (real workers) -----------------------------------------------------------------------


E2E_SUITE = """\
name: ab-e2e
models: [{name: tunable, import: "tunable:build", input_size: [3, 16, 16]}]
batch_sizes: [1]
backends: [eager]
device: cpu
threads: 1
measure: {warmup: 3, min_time_s: 0.1, max_time_s: 0.3, min_samples: 10, timeout_s: 180}
"""


def _bench(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "GITHUB_STEP_SUMMARY"}
    return subprocess.run([sys.executable, str(ROOT / "bench.py"), "ab", *args, "--quiet"],
                          cwd=cwd, capture_output=True, text=True, env=env, timeout=600)  # fmt: skip


@pytest.mark.slow
def test_ab_end_to_end_same_code_on_both_sides(tmp_path):
    """A/A: the base runs a *copy* of the package (its own checkout), run from the project root,
    whose own cnnbench/ must not shadow the base's (the worker's cwd would come first)."""
    suite_dir, base = tmp_path / "suite", tmp_path / "base"
    shutil.copytree(ROOT / "cnnbench", base / "cnnbench", ignore=shutil.ignore_patterns("__pycache__"))
    suite_dir.mkdir()
    shutil.copy(FIXTURES / "tunable.py", suite_dir / "tunable.py")
    (suite_dir / "s.yaml").write_text(E2E_SUITE)
    out = tmp_path / "ab.json"
    proc = _bench(str(suite_dir / "s.yaml"), "--base-path", str(base), "--repeats", "2", "--out", str(out), cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = abmod.load_ab(out)
    assert doc["variants"]["base"]["variant"]["cnnbench_dir"] == str(base / "cnnbench")
    assert doc["variants"]["current"]["variant"]["cnnbench_dir"] == str(ROOT / "cnnbench")
    assert [s["variant"] for s in doc["sequence"]] == ["base", "current", "current", "base"]
    assert all(s["status"] == "ok" for s in doc["sequence"])
    assert doc["comparison"]["cases"][0]["verdict"] in ("unchanged", "noisy")


@pytest.mark.slow
def test_ab_end_to_end_detects_a_slowdown_in_the_current_model(tmp_path):
    """The base path holds a copy of the user model that does a twentieth of the work: the
    current variant (the suite's own tunable.py) is far slower, so the gate fails with exit 1.

    The change is huge and 4 repeats at alpha 0.05 tolerate one inverted pair of processes,
    because on a loaded machine one process can run 4x slower than the next."""
    suite_dir, base = tmp_path / "suite", tmp_path / "base"
    sys.path.insert(0, str(FIXTURES))
    try:
        import tunable
    finally:
        sys.path.remove(str(FIXTURES))
    tunable.write_variant(suite_dir, blocks=40)
    tunable.write_variant(base, blocks=2)
    (suite_dir / "s.yaml").write_text(E2E_SUITE)
    out, md = tmp_path / "ab.json", tmp_path / "ab.md"
    proc = _bench(str(suite_dir / "s.yaml"), "--base-path", str(base), "--repeats", "4", "--alpha", "0.05",
                  "--out", str(out), "--markdown", str(md), cwd=suite_dir)  # fmt: skip
    assert proc.returncode == 1, proc.stdout + proc.stderr
    row = abmod.load_ab(out)["comparison"]["cases"][0]
    assert row["verdict"] == "regressed" and row["ratio"] > 2
    assert "❌ cnnbench A/B: Performance regression" in md.read_text()


# -- one run step with `run`: --oom-retry and the lost-result message ---------------------------


def test_oom_retry_in_ab_lowers_each_side_until_it_fits_and_compare_calls_different_batches_incomparable(tmp_path):
    calls = []

    def worker(spec, *, variant, workdir, stop, extra_paths):
        calls.append((variant.name, spec.batch_size))
        limit = 8 if variant.name == "current" else 32  # the change needs more memory
        if spec.batch_size > limit:
            return {"status": "oom", "error": f"MemoryError at batch {spec.batch_size}"}
        return {"status": "ok", "error": None, "samples_ms": [10.0 + 0.01 * i for i in range(20)], "warmup_ms": [12.0]}

    case = CaseSpec(model="a", batch_size=32, input_size=(1, 8, 8), measure=Measure(repeats=2))
    doc = new_doc()
    abmod.run_ab([case], ab=doc, out_path=tmp_path / "ab.json", variants=VARIANTS, worker=worker, oom_retry=True)
    # base fits at 32; current halves 32 -> 16 -> 8 once, then its second repeat reuses 8
    assert calls == [("base", 32), ("current", 32), ("current", 16), ("current", 8), ("current", 8), ("base", 32)]
    base, current = (doc["variants"][n]["cases"][0] for n in ("base", "current"))
    assert base["measured_batch_size"] == 32 and current["measured_batch_size"] == 8
    row = abmod.compare_ab(doc).rows[0]
    assert row.verdict == "incomparable" and "measured batch 32 vs 8" in row.reason


def test_a_failed_save_in_ab_says_which_result_was_lost(tmp_path, monkeypatch):
    from cnnbench.run import runner
    from cnnbench.core.errors import ResultsFileError

    real = runner.write_results
    writes = []

    def failing(path, doc):
        writes.append(path)
        if len(writes) == 3:
            raise ResultsFileError(str(path), "cannot write results (No space left on device)")
        real(path, doc)

    monkeypatch.setattr(runner, "write_results", failing)
    out = tmp_path / "ab.json"
    with pytest.raises(ResultsFileError) as info:
        abmod.run_ab([spec("a", 2)], ab=new_doc(), out_path=out, variants=VARIANTS, worker=fake_worker())
    message = str(info.value)
    assert "No space left on device); the run stopped" in message
    assert "with 2 case(s)" in message and "the result of a|inference|eager|fp32|b1|1x8x8|cpu|t1 (current, ok) was not saved" in message
    assert len(abmod.load_ab(out)["sequence"]) == 2  # the file is as last saved


def test_ab_help_offers_oom_retry(capsys):
    with pytest.raises(SystemExit):
        main(["ab", "--help"])
    assert "--oom-retry" in capsys.readouterr().out
