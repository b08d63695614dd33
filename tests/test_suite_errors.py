"""Every error of a suite at once (up to MAX_REPORTED_ERRORS), each with its field and line: a
suite with three mistakes takes one run to fix, not three."""

from __future__ import annotations

import textwrap

import pytest

from cnnbench.cli import main
from cnnbench.core.errors import EXIT_USAGE, SuiteError
from cnnbench.suite.schema import MAX_REPORTED_ERRORS, SuiteErrors, load_suite


def _write(tmp_path, text: str):
    path = tmp_path / "s.yaml"
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def test_three_mistakes_are_reported_in_one_run_each_with_its_line(tmp_path, capsys):
    path = _write(tmp_path, """
        name: three
        models: [lenet5]
        batch_sizes: [1, -4]
        backends: [eager, warp]
        precisions: [fp33]
    """)
    with pytest.raises(SuiteErrors) as info:
        load_suite(path, check_imports=False)
    assert [(e.field, e.line) for e in info.value.errors] == [("batch_sizes[1]", 3), ("backends[1]", 4), ("precisions[0]", 5)]
    assert main(["run", str(path), "--out", str(tmp_path / "r.json")]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}: 3 errors:\n")
    for line, words in ((3, "batch size must be at least 1"), (4, "unknown backend 'warp'"), (5, "unknown precision 'fp33'")):
        assert f"  {path}:{line}: " in err and words in err


def test_errors_of_several_matrices_and_the_top_level_are_collected(tmp_path):
    path = _write(tmp_path, """
        name: "bad name"
        thresholds: {latency: lots}
        matrices:
          - models: [lenet5]
            mode: sideways
          - models: [nosuchmodel]
            threads: 0
    """)
    with pytest.raises(SuiteErrors) as info:
        load_suite(path, check_imports=False)
    fields = [e.field for e in info.value.errors]
    assert len(fields) == 5 and fields[0] == "name" and "matrices[1].threads" in fields
    assert all(e.line is not None for e in info.value.errors)


def test_one_mistake_is_the_plain_error_as_before(tmp_path):
    path = _write(tmp_path, """
        name: one
        models: [lenet5]
        batch_sizes: [0]
    """)
    with pytest.raises(SuiteError) as info:
        load_suite(path, check_imports=False)
    assert not isinstance(info.value, SuiteErrors)
    assert (info.value.field, info.value.line) == ("batch_sizes[0]", 3)


def test_validation_stops_at_the_cap(tmp_path):
    sizes = ", ".join(["-1"] * (MAX_REPORTED_ERRORS + 10))
    path = _write(tmp_path, f"""
        name: many
        models: [lenet5]
        batch_sizes: [{sizes}]
    """)
    with pytest.raises(SuiteErrors) as info:
        load_suite(path, check_imports=False)
    assert len(info.value.errors) == MAX_REPORTED_ERRORS
    assert f"(validation stopped at the first {MAX_REPORTED_ERRORS})" in str(info.value)
