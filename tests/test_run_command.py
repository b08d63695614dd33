"""`bench.py run` overrides: --models, --backends, --repeats, --timeout and --max-time change
what runs and how, before any worker starts; bad values are usage errors (exit 2)."""

from __future__ import annotations

import textwrap

import pytest

from cnnbench.run import runner
from cnnbench.cli import main
from cnnbench.results.format import load_results

SUITE = """
name: overrides
models: [lenet5, mnist_cnn_bn]
batch_sizes: [1]
backends: [eager, onnxrt]
threads: 1
measure: {warmup: 1, min_time_s: 0.5, max_time_s: 2, timeout_s: 60}
"""


@pytest.fixture
def asked(monkeypatch):
    """The specs a stand-in worker was asked to run (no process is started)."""
    calls: list = []

    def worker(spec, **kwargs):
        calls.append(spec)
        return {"status": "ok", "error": None, "samples_ms": [1.0] * 20, "warmup_ms": [2.0], "first_call_ms": 3.0}

    monkeypatch.setattr(runner, "run_worker", worker)
    return calls


def _run(tmp_path, *extra) -> int:
    suite = tmp_path / "s.yaml"
    suite.write_text(textwrap.dedent(SUITE))
    return main(["run", str(suite), "--out", str(tmp_path / "r.json"), "--quiet", "--no-peak", *extra])


def test_overrides_select_cases_and_change_their_measure(tmp_path, asked):
    flags = ("--models", "lenet*", "--backends", "eager", "--repeats", "3", "--timeout", "7", "--max-time", "0.2")
    assert _run(tmp_path, *flags) == 0
    assert {(s.model, s.backend) for s in asked} == {("lenet5", "eager")} and len(asked) == 3
    m = asked[0].measure
    assert (m.repeats, m.timeout_s, m.max_time_s) == (3, 7, 0.2) and m.min_time_s <= 0.2
    (record,) = load_results(tmp_path / "r.json")["cases"]
    assert record["spec"]["measure"]["repeats"] == 3 and len(record["repeat_medians_ms"]) == 3


def test_without_overrides_the_suite_runs_as_written(tmp_path, asked):
    from cnnbench.stats.processes import DEFAULT_PROCESSES

    assert _run(tmp_path) == 0
    assert {s.measure.timeout_s for s in asked} == {60}
    # The honest default: several processes per case sharing the case's time (suite: 0.5..2 s).
    assert len(asked) == 4 * DEFAULT_PROCESSES > 4
    assert {(s.measure.repeats, s.measure.min_time_s, s.measure.max_time_s) for s in asked} == {
        (DEFAULT_PROCESSES, 0.5 / DEFAULT_PROCESSES, 2 / DEFAULT_PROCESSES)}
    (record, *_) = load_results(tmp_path / "r.json")["cases"]
    assert record["processes"]["n"] == DEFAULT_PROCESSES  # the table's figure pools them all


def test_repeats_1_measures_a_single_process_with_the_suites_times(tmp_path, asked):
    assert _run(tmp_path, "--repeats", "1") == 0
    assert len(asked) == 4 and {(s.measure.repeats, s.measure.max_time_s) for s in asked} == {(1, 2)}


def test_a_suites_own_repeats_are_kept_with_its_times(tmp_path, asked):
    global SUITE
    saved = SUITE
    try:
        SUITE = saved.replace("timeout_s: 60}", "timeout_s: 60, repeats: 1}")
        assert _run(tmp_path) == 0
        assert len(asked) == 4 and {(s.measure.repeats, s.measure.max_time_s) for s in asked} == {(1, 2)}
        asked.clear()
        SUITE = saved.replace("timeout_s: 60}", "timeout_s: 60, repeats: 2}")
        assert _run(tmp_path, "--replace", "--force") == 0  # the suite file changed: --force
        assert {(s.measure.repeats, s.measure.max_time_s) for s in asked} == {(2, 2)}
    finally:
        SUITE = saved


@pytest.mark.parametrize(
    "flags, words",
    [
        (("--repeats", "0"), "argument --repeats: must be at least 1"),
        (("--timeout", "-1"), "argument --timeout: must be > 0"),
        (("--timeout", "nan"), "argument --timeout: must be a finite number"),
        (("--backends", "tvm"), "unknown backend 'tvm'"),
        (("--models", "vgg*"), "no case left"),
        (("--models", "vgg*"), "; the suite has models: lenet5, mnist_cnn_bn; backends: eager, onnxrt"),
    ],
)
def test_bad_overrides_are_usage_errors_before_anything_runs(tmp_path, asked, capsys, flags, words):
    try:
        code = _run(tmp_path, *flags)
    except SystemExit as exc:  # argparse's own usage error (usage line + the error line)
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err
    assert words in err.strip().splitlines()[-1] and "Traceback" not in err
    assert asked == [] and not (tmp_path / "r.json").exists()


def test_a_quick_matrix_from_flags_runs_the_suite_it_prints(tmp_path, asked, capsys):
    flags = ["--models", "lenet5,mnist_cnn_bn", "--batch-sizes", "1,4", "--backends", "eager", "--backends", "onnxrt"]
    assert main(["run", *flags, "--print-suite"]) == 0
    printed = capsys.readouterr().out
    assert asked == [] and "models: [lenet5, mnist_cnn_bn]" in printed and "batch_sizes: [1, 4]" in printed
    out = tmp_path / "q.json"
    assert main(["run", *flags, "--out", str(out), "--quiet", "--no-peak", "--repeats", "1"]) == 0
    assert sorted({(s.model, s.batch_size, s.backend) for s in asked}) == [
        (m, b, k) for m in ("lenet5", "mnist_cnn_bn") for b in (1, 4) for k in ("eager", "onnxrt")
    ]
    suite_file = tmp_path / "q.json.suite.yaml"
    assert suite_file.read_text() == printed  # the results name the file that reproduces them
    assert load_results(out)["suite"]["path"] == str(suite_file)


@pytest.mark.parametrize(
    "argv, words",
    [
        (["--models", "lenet5", "--batch-sizes", "1,-8"], "batch_sizes[1]: batch size must be at least 1, got -8"),
        (["--models", "lenet5", "--backends", "warp"], "backends[0]: unknown backend 'warp'"),
        (["--batch-sizes", "1"], "a quick matrix needs --models"),
        (["SUITE", "--batch-sizes", "1"], "--batch-sizes builds a quick matrix without a SUITE"),
    ],
)
def test_quick_matrix_errors_are_usage_errors(tmp_path, asked, capsys, argv, words):
    argv = [str(tmp_path / "s.yaml") if a == "SUITE" else a for a in argv]
    (tmp_path / "s.yaml").write_text(textwrap.dedent(SUITE))
    assert main(["run", *argv, "--out", str(tmp_path / "r.json")]) == 2
    assert words in capsys.readouterr().err and asked == [] and not (tmp_path / "r.json").exists()
