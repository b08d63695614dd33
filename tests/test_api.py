"""The Python API (cnnbench/api.py, docs/api.md): measure a model object in worker processes,
typed errors, frames and notebook displays, and `import cnnbench` staying torch-free."""

from __future__ import annotations

import copy
import io
import json
import os
import socket
import subprocess
import sys
from contextlib import redirect_stderr
from pathlib import Path

import pytest

import cnnbench
from cnnbench import cli
from cnnbench.core.errors import EXIT_USAGE, SuiteError, UserError
from cnnbench.results.records import from_dict

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
STATUSES = ("ok", "error", "timeout", "oom", "crashed", "export_failed", "unsupported", "interrupted")
QUICK = {"warmup": 1, "min_time_s": 0.05, "max_time_s": 0.2, "min_samples": 3, "repeats": 1, "timeout_s": 120}


def test_import_cnnbench_is_torch_free_and_exposes_the_api():
    code = (
        "import sys, cnnbench\n"
        "heavy = [m for m in ('torch', 'numpy', 'pandas', 'yaml', 'rich', 'cloudpickle') if m in sys.modules]\n"
        "print(heavy, sorted(cnnbench.__all__))\n"
        "assert all(callable(getattr(cnnbench, n)) for n in ('measure', 'run', 'load', 'compare', 'profile'))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], env=ENV, capture_output=True, text=True, check=True).stdout
    assert out.startswith("[] "), out
    assert (ROOT / "cnnbench" / "py.typed").exists()


def test_layer_packages_keep_working_beside_the_callable_api_names():
    from cnnbench import compare as package

    assert package.parse_threshold("5%").metric == "latency"  # the package, not the function
    import cnnbench.measure.timing

    assert callable(cnnbench.measure) and cnnbench.measure.api_function is cnnbench.api.measure


@pytest.mark.slow
def test_a_model_defined_in_main_is_measured_in_workers_and_its_crash_is_a_case(tmp_path):
    script = DATA / "api" / "main_model_script.py"
    proc = subprocess.run([sys.executable, str(script), str(tmp_path)], env=ENV, capture_output=True, text=True,
                          timeout=600, cwd=tmp_path)  # fmt: skip
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stdout + proc.stderr
    result = json.loads(lines[0].removeprefix("RESULT "))
    # The only constructor call in the calling process is the user's own `TinyNet()`: the
    # instance was sent by state, and the class `Crasher` was built in the worker.
    assert result["calls"] == [result["pid"]]
    assert result["a"] == ["ok"]
    assert result["keys"][0].startswith("TinyNet|inference|eager|fp32|b1|1x8x8|")
    assert [s for s, _ in result["b"]] == ["crashed"] and "SIGABRT" in result["b"][0][1]
    assert (tmp_path / "a.json.run" / "model.pkl").is_file() and (tmp_path / "a.json.run" / "suite.yaml").is_file()
    assert "[1/1] ✓ TinyNet" in proc.stdout  # the line reporter's progress


def test_an_unpicklable_model_is_one_clear_error(tmp_path):
    torch = pytest.importorskip("torch")

    class Holder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.sock = socket.socket()
            self.fc = torch.nn.Linear(4, 2)

    model = Holder()
    try:
        with pytest.raises(cnnbench.ModelPickleError) as info:
            cnnbench.measure(model, input_size=(1, 2, 2), out=tmp_path / "r.json", progress=False)
    finally:
        model.sock.close()
    message = str(info.value)
    assert "cannot serialize the model (Holder)" in message and "socket" in message
    assert "\n" not in message and info.value.exit_code == EXIT_USAGE
    assert not (tmp_path / "r.json").exists()


@pytest.mark.parametrize(
    "kwargs, expected",
    [
        ({"backends": ["warp"]}, "unknown backend 'warp'"),
        ({"batch_sizes": [-1]}, "batch_sizes[0]"),
    ],
)
def test_invalid_arguments_raise_the_cli_error_with_the_same_message(tmp_path, kwargs, expected):
    out = tmp_path / "r.json"
    with pytest.raises(SuiteError) as info:
        cnnbench.measure("lenet5", out=out, progress=False, **kwargs)
    assert expected in str(info.value) and info.value.exit_code == EXIT_USAGE
    # The command line, on the suite the API wrote, exits 2 with the same line.
    err = io.StringIO()
    with redirect_stderr(err):
        code = cli.main(["run", str(out.with_name("r.json.run") / "suite.yaml"), "--out", str(tmp_path / "cli.json")])
    assert code == EXIT_USAGE
    assert err.getvalue().strip() == f"error: {info.value}"


@pytest.mark.parametrize("model", [42, "not a module".encode(), [1, 2]])
def test_a_non_module_object_is_a_typed_error(tmp_path, model):
    with pytest.raises(UserError, match="model must be a registry name") as info:
        cnnbench.measure(model, input_size=(1, 8, 8), out=tmp_path / "r.json", progress=False)
    assert info.value.exit_code == EXIT_USAGE


def test_a_builder_that_needs_arguments_is_a_typed_error(tmp_path):
    def build(width):
        raise AssertionError("never called in the caller")

    with pytest.raises(UserError, match="callable with no arguments"):
        cnnbench.measure(build, input_size=(1, 8, 8), out=tmp_path / "r.json", progress=False)


def _results_with_every_status() -> dict:
    data = json.loads((DATA / "records" / "speedups.json").read_text())
    template = data["cases"][0]
    cases = []
    for i, status in enumerate(STATUSES):
        case = copy.deepcopy(template)
        case["spec"]["batch_size"] = i + 1
        case["key"] = case["key"].replace("|b8|", f"|b{i + 1}|")
        case["status"] = status
        if status != "ok":
            case["error"] = f"{status} happened"
            case["latency_ms"] = None
            case["samples_ms"] = []
        case["memory"] = {"peak_rss_delta_bytes": 1024 * (i + 1)}
        case["energy"] = {"j_per_image": 0.5, "avg_power_w": 10.0}
        case["scenario"] = {"name": "server", "target_qps": 100.0, "p99_latency_ms": 12.5, "valid": i % 2 == 0}
        cases.append(case)
    data["cases"] = cases
    return data


def test_to_pandas_round_trips_every_status_and_scenario():
    pytest.importorskip("pandas")
    results = from_dict(_results_with_every_status())
    df = results.to_pandas()
    assert list(df["status"]) == list(STATUSES)
    assert list(df["batch_size"]) == list(range(1, len(STATUSES) + 1))
    assert list(df["key"]) == [c.key for c in results]
    ok = df[df["status"] == "ok"].iloc[0]
    assert ok["median_ms"] == results.cases[0].median_ms and ok["latency_p99_ms"] is not None
    assert ok["throughput_per_s"] == pytest.approx(results.cases[0].throughput)
    assert df["median_ms"].isna().tolist() == [s != "ok" for s in STATUSES]
    assert list(df["error"][1:]) == [f"{s} happened" for s in STATUSES[1:]]
    assert list(df["memory_peak_rss_delta_bytes"]) == [1024 * (i + 1) for i in range(len(STATUSES))]
    assert list(df["scenario_target_qps"]) == [100.0] * len(STATUSES)
    assert list(df["scenario_valid"]) == [i % 2 == 0 for i in range(len(STATUSES))]
    assert list(df["energy_j_per_image"]) == [0.5] * len(STATUSES)


def test_results_html_shows_the_table_and_every_note():
    results = from_dict(_results_with_every_status())
    page = results._repr_html_()
    assert page.count("<tr>") == 1 + len(STATUSES)
    for status in STATUSES[1:]:
        assert f"✗ {results.cases[STATUSES.index(status)].key}: {status}: {status} happened" in page
    assert "median ms ± IQR" in page and "<script" not in page


def test_a_missing_pandas_is_a_clear_message(monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)  # import pandas -> ImportError
    with pytest.raises(UserError, match=r"pip install 'cnnbench\[pandas\]'"):
        from_dict(_results_with_every_status()).to_pandas()


def test_compare_returns_the_typed_comparison_with_its_exit_code():
    base, slower = DATA / "compare" / "base.json", DATA / "compare" / "slower25.json"
    comparison = cnnbench.compare(base, slower)
    assert isinstance(comparison, cnnbench.Comparison)
    err = io.StringIO()
    with redirect_stderr(err), redirect_stdout_null():
        code = cli.main(["compare", str(base), str(slower)])
    assert comparison.exit_code == code == 1
    assert cnnbench.compare(base, cnnbench.load(base)).exit_code == 0
    page = comparison._repr_html_()
    assert "Performance regression" in page and "regressed" in page
    if "pandas" in sys.modules or _has_pandas():
        df = comparison.to_pandas()
        assert "regressed" in set(df["verdict"]) and len(df) == len(comparison.rows)


def test_compare_refuses_a_bad_threshold_with_the_cli_message():
    base = DATA / "compare" / "base.json"
    with pytest.raises(UserError) as info:
        cnnbench.compare(base, base, thresholds=["latency:-5%"])
    err = io.StringIO()
    with redirect_stderr(err):
        code = cli.main(["compare", str(base), str(base), "--threshold", "latency:-5%"])
    assert code == EXIT_USAGE and err.getvalue().strip() == f"error: {info.value}"


def _has_pandas() -> bool:
    try:
        import pandas  # noqa: F401
    except ImportError:
        return False
    return True


def redirect_stdout_null():
    from contextlib import redirect_stdout

    return redirect_stdout(io.StringIO())


@pytest.mark.slow
def test_the_notebook_example_runs_end_to_end(tmp_path):
    pytest.importorskip("pandas")
    env = {**ENV, "CNNBENCH_EXAMPLE_OUT": str(tmp_path), "MPLBACKEND": "Agg"}
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "notebook.py")], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=900)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = cnnbench.load(tmp_path / "tinycnn.json")
    assert sorted((c.spec.backend, c.spec.batch_size) for c in results) == [("eager", 1), ("eager", 8), ("onnxrt", 1), ("onnxrt", 8)]
    assert [c.status for c in results] == ["ok"] * 4, [(c.key, c.error) for c in results]
    assert (tmp_path / "throughput.png").stat().st_size > 0
    assert "onnxrt" in proc.stdout and "median_ms" in proc.stdout
