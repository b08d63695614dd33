"""Typed records at the file boundary (cnnbench.results.records): what the writer writes the parser reads
back unchanged; every class of damaged file is one error line and exit 2 for compare, report,
merge and show, with no output left behind; one speedup rule for the terminal and the report;
the compact table fits 80 and 120 columns with every model, backend and status in full."""

from __future__ import annotations

import csv
import json
import os
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnbench.results import records
from cnnbench.cli import main
from cnnbench.core.errors import ResultsFileError
from cnnbench.results.schema import STATUSES
from cnnbench.results.format import build_record, new_results, write_results
from cnnbench.core.spec import CaseSpec, Measure

DATA = Path(__file__).parent / "data"
GOLDEN = DATA / "records" / "speedups.json"


def _spec(backend="eager", batch=4, mode="inference", options=()):
    return CaseSpec(model="lenet5", batch_size=batch, input_size=(1, 28, 28), backend=backend, mode=mode,
                    options=tuple(options), measure=Measure(min_samples=5, repeats=2))  # fmt: skip


def _ok(samples, **extra):
    return {"status": "ok", "error": None, "samples_ms": samples, "warmup_ms": [9.0], "first_call_ms": 20.0,
            "block_size": 1, "stop_reason": "ci", **extra}  # fmt: skip


def _every_shape() -> list[dict]:
    """Real records (`build_record`) of every status, both modes, --oom-retry and parity."""
    out = [build_record(_spec(), [_ok([1.0, 1.1, 1.2, 1.05, 1.3]), _ok([1.2, 1.1, 1.0, 1.0, 1.4])], planned_repeats=2)]
    for status in STATUSES:
        if status == "ok":
            continue
        run = {"status": status, "error": f"{status}: something", "exit_code": -9, "stderr_tail": "Traceback ...\nX"}
        if status == "fail_accuracy":
            run = {**_ok([2.0] * 6), "status": status, "parity": {"ok": False, "max_rel_err": 0.2, "tolerance": 1e-3}}
        out.append(build_record(_spec("onnxrt"), [run]))
    out.append(build_record(_spec(mode="train", options=[("optimizer", "adamw")]),
                            [_ok([5.0] * 8, train={"optimizer": {"name": "adamw", "lr": 0.001}})]))  # fmt: skip
    attempts = [{"batch_size": 32, "status": "oom"}, {"batch_size": 16, "status": "ok"}]
    out.append(build_record(_spec(batch=32), [_ok([3.0] * 8, batch_size=16, batch_attempts=attempts)]))
    out.append(build_record(_spec(batch=32), [{"status": "oom", "error": "OOM", "batch_attempts": [
        {"batch_size": 32, "status": "oom"}, {"batch_size": 16, "status": "oom"}]}]))  # fmt: skip
    return out


# ---------------------------------------------------------------------------------------------
# Round trip: writer output == parser input


def test_every_record_shape_round_trips_through_the_file(tmp_path):
    results = new_results(environment={"hostname": "h", "torch": "2.14.1"}, suite={"name": "s"})
    results["cases"] = _every_shape()
    path = tmp_path / "r.json"
    write_results(path, results)
    loaded = records.load(path)
    assert loaded.to_json() == json.loads(path.read_text())
    assert {c.status for c in loaded.cases} == set(STATUSES)
    assert {c.spec.mode for c in loaded.cases} == {"inference", "train"}
    assert [c.valid for c in loaded.cases] == [c.status == "ok" for c in loaded.cases]


def test_build_record_writes_exactly_the_declared_fields():
    """The writer's dict (build_record, its one source) and the parser's declaration
    (records.CASE_FIELDS) agree field for field and in order: nothing the writer writes is read
    back as an undeclared `extra`, and only `measured_on` (merge writes it) is declared but not
    written, when every optional section is measured."""
    static = {
        "params": 61706, "trainable_params": 61706, "gmacs": 0.0017, "gflops": 0.0034, "gmacs_per_image": 0.000416,
        "counter": "fvcore", "counts": {"crosscheck": None}, "aux_heads_included": False, "backend_info": {"x": 1},
        "published": {"acc@1": 99.0}, "parity": {"ok": True, "max_rel_err": 1e-6}, "memory": {"peak_rss_delta_bytes": 4096},
        "accuracy": {"top1": 98.0}, "train": {"optimizer": {"name": "sgd"}},
        "energy": {"available": True, "method": "rapl", "j_per_image": 0.01, "images_per_j": 100.0, "reliable": True},
        "device_state": {"throttled": False}, "transfer": {"applicable": True, "calls": 3, "h2d_ms": {"median": 0.1}},
    }  # fmt: skip
    record = build_record(_spec(), [_ok([1.0, 1.1, 1.2, 1.05, 1.3], **static), _ok([1.2, 1.1, 1.0, 1.0, 1.4], **static)])
    written = list(record)
    assert written == [name for name in records.CASE_FIELDS if name in record]  # declared, in the writer's order
    assert set(records.CASE_FIELDS) - set(written) == {"measured_on"}
    parsed = records.parse_record(json.loads(json.dumps(record)))
    assert dict(parsed.extra) == {} and parsed.present == tuple(written)


def test_every_golden_file_round_trips():
    for path in sorted(DATA.rglob("*.json")):
        raw = json.loads(path.read_text())
        from cnnbench.results.schema import migrate

        assert records.load(path).to_json() == migrate(raw, path), path


_finite = st.floats(min_value=1e-3, max_value=1e4, allow_nan=False, allow_infinity=False)


@settings(max_examples=40, deadline=None)
@given(
    samples=st.lists(st.lists(_finite, min_size=1, max_size=30), min_size=1, max_size=4),
    status=st.sampled_from(STATUSES),
    mode=st.sampled_from(("inference", "train")),
    measured=st.sampled_from((None, 1, 2)),
    extra=st.dictionaries(st.sampled_from(("vendor_metrics", "future_section", "shard_source")),
                          st.recursive(st.none() | st.booleans() | st.integers(-10**6, 10**6) | _finite | st.text(max_size=8),
                                       lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
                                       max_leaves=10)),  # fmt: skip
)
def test_the_parser_reads_back_what_the_writer_writes(samples, status, mode, measured, extra):
    runs = [_ok(s) for s in samples]
    if status != "ok":
        runs[-1] = {"status": status, "error": "boom"} if status != "fail_accuracy" else {**runs[-1], "status": status}
    if measured is not None:
        for r in runs:
            r.update(batch_size=measured, batch_attempts=[{"batch_size": 4, "status": "oom"}, {"batch_size": measured, "status": "ok"}])
    record = build_record(_spec(mode=mode), runs)
    record.update(extra)  # other features' optional per-case sections: kept, not refused
    data = json.loads(json.dumps(record, allow_nan=False))
    parsed = records.parse_record(data)
    assert parsed.to_json() == data
    assert dict(parsed.extra) == {k: records.freeze(v) for k, v in extra.items()}
    assert parsed.valid == (status == "ok")


# ---------------------------------------------------------------------------------------------
# Bad files: one class per parametrized case, for each command


def _good() -> dict:
    results = new_results(environment={"hostname": "h"}, suite={"name": "s"})
    results["cases"] = [build_record(_spec(), [_ok([1.0, 1.1, 1.2, 1.05, 1.3])])]
    return results


def _with(path_in_file, value):
    def mutate(data):
        target = data
        *head, last = path_in_file
        for k in head:
            target = target[k]
        target[last] = value
        return json.dumps(data)

    return mutate


def _raw(text):
    return lambda data: text


_TOP = [("schema_version", "2"), ("tool", 5), ("created", 5), ("updated", []), ("environment", []),
        ("suite", "ci"), ("cases", {}), ("environments", {}), ("notes", "x")]  # fmt: skip
_CASE = [
    ("key", 5), ("spec", []), ("status", 0), ("status", "Not OK!"), ("error", 5), ("params", "11M"), ("params", -1),
    ("trainable_params", 1.5), ("gmacs", "1"), ("gflops", []), ("gmacs_per_image", True), ("counter", 1),
    ("counts", [1]), ("aux_heads_included", "no"), ("backend_info", "x"), ("published", 1), ("parity", []),
    ("memory", "big"), ("accuracy", 1), ("train", "sgd"), ("first_call_ms", "20"), ("first_call_ms", -1),
    ("warmup_ms", 9), ("samples_ms", "987"), ("samples_ms", [1.0, -2.0]), ("samples_ms", [1.0, "2"]),
    ("block_size", 0), ("stop_reason", 3), ("repeat_medians_ms", [0.0]), ("measured_batch_size", 0),
    ("batch_attempts", [{"batch_size": "4"}]), ("repeats_done", "1"), ("repeats_planned", -1), ("runs", {}),
    ("runs", [{"status": "ok", "samples_ms": "12"}]), ("latency_ms", []), ("latency_ms", {"median": 0}),
    ("latency_ms", {"median": 1.0, "iqr": "x"}), ("throughput_per_s", 0), ("warnings", "careful"),
    ("measured_on", 3),
]  # fmt: skip
_SPEC = [("model", 5), ("batch_size", "8"), ("batch_size", 0), ("input_size", [3, 224]), ("input_size", "3x8x8"),
         ("threads", -1), ("channels_last", "yes"), ("options", {"mode": {"x": 1}}), ("model_kwargs", [1])]  # fmt: skip

_KEY = " ('lenet5|inference|eager|fp32|b4|1x28x28|cpu|t1')"  # a case is named by index and key
BAD_FILES = (
    [(f"top-level {k}={v!r}", _with([k], v), k) for k, v in _TOP]
    + [(f"case field {k}={v!r}", _with(["cases", 0, k], v), f"case 0{_KEY if k != 'key' else ''}: {k}") for k, v in _CASE]
    + [(f"spec field {k}={v!r}", _with(["cases", 0, "spec", k], v), f"spec.{k}") for k, v in _SPEC]
    + [
        ("case not a mapping", _with(["cases", 0], [1, 2]), "case 0: expected a mapping"),
        ("missing key", lambda d: json.dumps({**d, "cases": [{k: v for k, v in d["cases"][0].items() if k != "key"}]}), "key: missing"),
        ("NaN", lambda d: json.dumps(d).replace('"first_call_ms": 20.0', '"first_call_ms": NaN'), "NaN"),
        ("Infinity", lambda d: json.dumps(d).replace('"first_call_ms": 20.0', '"first_call_ms": -Infinity'), "Infinity"),
        ("overflowing float", lambda d: json.dumps(d).replace('"first_call_ms": 20.0', '"first_call_ms": 1e999'), "non-finite"),
        ("5000-digit integer", lambda d: json.dumps(d).replace('"block_size": 1', '"block_size": ' + "9" * 5000), "5000 digits"),
        ("deep nesting (parser)", _raw("[" * 100_000 + "]" * 100_000), "levels deep"),
        ("deep nesting (extra section)", lambda d: json.dumps({**d, "x": json.loads("[" * 40 + "]" * 40)}), "levels deep"),
        ("duplicate key", lambda d: json.dumps(d).replace('"tool": "cnnbench"', '"tool": "cnnbench", "tool": "x"', 1), "duplicate key 'tool'"),
        ("not JSON", _raw('{"schema_version": 2, "cases": ['), "not valid JSON"),
        ("not UTF-8", lambda d: b"\xff\xfe" + json.dumps(d).encode(), "not UTF-8"),
        ("not a results file", _raw('{"hello": 1}'), "not a cnnbench results file"),
        ("newer schema", _with(["schema_version"], 99), "upgrade cnnbench"),
    ]
)  # fmt: skip

SPECIAL = ("oversized file", "FIFO", "directory", "/dev/zero", "missing file")


def _command(name: str, bad: str, good: str, out: Path) -> list[str]:
    return {
        "compare": ["compare", bad, good, "--markdown", str(out / "c.md"), "--json", str(out / "c.json")],
        "compare-current": ["compare", good, bad, "--markdown", str(out / "c.md"), "--json", str(out / "c.json")],
        "report": ["report", bad, "--out", str(out / "report")],
        "merge": ["merge", good, bad, "--out", str(out / "merged.json")],
        "show": ["show", bad, "--wide"],
    }[name]


COMMANDS = ("compare", "compare-current", "report", "merge", "show")


def _check_refused(capsys, argv: list[str], out: Path, *, names: str, expect: str | None) -> None:
    before = set(os.listdir(out))
    assert main(argv) == 2
    captured = capsys.readouterr()
    err = captured.err
    assert err.startswith("error: ") and err.count("\n") == 1, err[:500]
    assert "Traceback" not in err and names in err, err[:500]
    if expect:
        assert expect in err, err[:500]
    assert set(os.listdir(out)) == before, "no output file left"
    if argv[0] == "show":
        assert captured.out == ""


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("label,make,expect", BAD_FILES, ids=[b[0] for b in BAD_FILES])
def test_each_class_of_bad_file_is_one_line_and_exit_2(tmp_path, capsys, command, label, make, expect):
    good = tmp_path / "good.json"
    write_results(good, _good())
    bad = tmp_path / "bad.json"
    content = make(_good())
    bad.write_bytes(content if isinstance(content, bytes) else content.encode())
    out = tmp_path / "out"
    out.mkdir()
    _check_refused(capsys, _command(command, str(bad), str(good), out), out, names=str(bad), expect=expect)


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("kind", SPECIAL)
def test_paths_that_are_not_regular_files_or_too_big_are_refused_without_reading(tmp_path, capsys, monkeypatch, command, kind):
    good = tmp_path / "good.json"
    write_results(good, _good())
    expect = {"oversized file": "bytes", "FIFO": "not a regular file", "directory": "is a directory",
              "/dev/zero": "not a regular file", "missing file": "no such"}[kind]  # fmt: skip
    if kind == "oversized file":
        monkeypatch.setattr(records, "MAX_FILE_BYTES", 1000)
        bad = tmp_path / "big.json"
        bad.write_text(json.dumps({**_good(), "notes": ["x" * 2000]}))
        if command in ("compare", "compare-current", "merge"):  # the good side must still fit
            good.write_text(json.dumps({**_good(), "cases": []}))
    elif kind == "FIFO":
        bad = tmp_path / "fifo.json"
        os.mkfifo(bad)  # opening it for reading would block forever: it must never be opened
    elif kind == "directory":
        bad = tmp_path / "dir.json"
        bad.mkdir()
    elif kind == "/dev/zero":
        bad = Path("/dev/zero")
    else:
        bad = tmp_path / "absent.json"
    out = tmp_path / "out"
    out.mkdir()
    _check_refused(capsys, _command(command, str(bad), str(good), out), out, names=str(bad), expect=expect)


def test_a_string_of_digits_is_never_read_as_samples(tmp_path):
    """The issue's worst case: `samples_ms: "987"` was read as the samples [9, 8, 7] ms."""
    data = _good()
    data["cases"][0]["samples_ms"] = "987"
    path = tmp_path / "r.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ResultsFileError, match=r"case 0 \('lenet5[^)]*'\): samples_ms: expected a list, got the string '987'"):
        records.load(path)


def test_unknown_sections_load_and_are_kept(tmp_path):
    """Optional per-case and top-level sections of other features (or a newer writer) load."""
    data = _good()
    data["cases"][0]["vendor_metrics"] = {"joules": 1.5, "per_image_mj": [1, 2]}
    data["cases"][0]["deployment"] = {"artifact_bytes": 1234}
    data["history"] = {"store": "sqlite"}
    path = tmp_path / "r.json"
    path.write_text(json.dumps(data))
    loaded = records.load(path)
    assert loaded.cases[0].extra["vendor_metrics"]["joules"] == 1.5 and loaded.extra["history"]["store"] == "sqlite"
    assert loaded.to_json() == data


# ---------------------------------------------------------------------------------------------
# One rule for speedups: the terminal and the report agree


EXPECTED_SPEEDUPS = {  # see tests/data/records/make_golden.py
    "m|inference|eager|fp32|b8|1x28x28|cpu|t1": 1.0,
    "m|inference|compile|fp32|b8|1x28x28|cpu|t1": 10 / 8,
    "m|inference|eager|fp32|b16|1x28x28|cpu|t1": 1.0,
    "m|inference|onnxrt|fp32|b32|1x28x28|cpu|t1": 18 / 12,  # --oom-retry: against eager at b16
    "m|inference|eager|fp32|b32|1x28x28|cpu|t1": 1.0,
    "m|train|eager|fp32|b8|1x28x28|cpu|t1": 1.0,
    "m|train|compile|fp32|b8|1x28x28|cpu|t1": 100 / 80,
    "m|train|eager[optimizer=adamw]|fp32|b8|1x28x28|cpu|t1": 1.0,
    "m|train|compile[optimizer=adamw]|fp32|b8|1x28x28|cpu|t1": 110 / 88,  # AdamW against AdamW, not SGD
    "m|train|compile|fp32|b16|1x28x28|cpu|t1": 100 / 90,  # measured at b8 after an OOM at 16
}


def test_console_and_report_agree_on_speedups_with_training_and_oom_retry_cases(tmp_path, capsys):
    from cnnbench.report.console import table_rows

    cases = json.loads(GOLDEN.read_text())["cases"]
    terminal = {c["key"]: row.case.speedup_vs_eager for c, row in zip(cases, table_rows(cases))}
    assert main(["report", str(GOLDEN), "--out", str(tmp_path / "r"), "--format", "csv"]) == 0
    with (tmp_path / "r" / "results.csv").open(newline="", encoding="utf-8") as fh:
        report = {row["key"]: float(row["speedup_vs_eager"]) if row["speedup_vs_eager"] else None for row in csv.DictReader(fh)}
    assert terminal.keys() == report.keys() == EXPECTED_SPEEDUPS.keys()
    for key, expected in EXPECTED_SPEEDUPS.items():
        assert terminal[key] == pytest.approx(expected, rel=1e-9), key
        assert report[key] == pytest.approx(expected, rel=1e-9), key
    capsys.readouterr()
    assert main(["show", str(GOLDEN)]) == 0
    shown = capsys.readouterr().out
    assert "1.25×" in shown and "1.50×" in shown and "1.11×" in shown


# ---------------------------------------------------------------------------------------------
# The table fits the terminal


@pytest.mark.parametrize("columns", [80, 120])
@pytest.mark.parametrize("path", [DATA / "report" / "host_a.json", DATA / "compare" / "mixed_current.json", GOLDEN])
def test_the_table_fits_and_shows_every_model_backend_and_status_in_full(monkeypatch, capsys, columns, path):
    monkeypatch.setenv("COLUMNS", str(columns))
    assert main(["show", str(path)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    table = [ln for ln in lines if not ln.startswith(("⚠", "✗", "  "))]
    assert max(len(ln) for ln in table) <= columns
    for case in records.load(path).cases:
        assert re.search(rf"(^|\s){re.escape(case.spec.model)}(\s|$)", out, re.M), case.spec.model
        status = case.status if case.status != "ok" else ("ok" if case.valid else case.invalid_reason)
        assert any(case.backend_label in ln and re.search(rf"\s{re.escape(status)}(\s|$)", ln) for ln in lines), (case.key, status)


def test_the_default_smoke_shape_fits_one_table_at_80_columns():
    """The default suite's shape (three small models, batch 1 and 8, eager/compile/onnxrt)."""
    from rich.console import Console

    from cnnbench.report.console import render_table

    def rec(model, batch, backend, ms):
        spec = CaseSpec(model=model, batch_size=batch, input_size=(1, 28, 28), backend=backend)
        return build_record(spec, [_ok([ms, ms * 1.01, ms * 0.99] * 4)])

    cases = [rec(m, b, "eager", 0.2 * b) for m in ("lenet5", "mnist_cnn_bn", "resnet18") for b in (1, 8)]
    cases += [rec("lenet5", 1, "compile", 0.15), rec("lenet5", 1, "onnxrt", 0.1)]
    console = Console(width=80, record=True, color_system=None)
    console.print(render_table(cases, width=80))
    text = console.export_text()
    widest = max(len(ln) for ln in text.splitlines())
    assert widest <= 80 and sum(ln.startswith("model ") for ln in text.splitlines()) == 1  # one table
    assert "mnist_cnn_bn" in text and "compile" in text and "onnxrt" in text


def test_macs_have_a_unit_that_reads_for_small_models():
    from cnnbench.core.units import fmt_macs

    assert fmt_macs(0.000416) == "416.0 k"  # LeNet-5, never 0.000
    assert fmt_macs(0.00042) == "420.0 k" and fmt_macs(0.0042) == "4.20 M" and fmt_macs(1.814) == "1.81 G"
