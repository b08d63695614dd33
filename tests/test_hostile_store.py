"""The history store under hostile input: its location is a path like any other (docs/reliability.md),
and what comes out of it is parsed as strictly as a results file.

Matrix style (as tests/test_records.py's bad-results-file matrix): each bad location or row goes
through each command that reads it; the command exits 2 with one line on stderr, no traceback,
nothing written outside the named path, and nothing hidden on the terminal.
"""

from __future__ import annotations

import os
import sqlite3
import zlib
from pathlib import Path

import pytest

from cnnbench import cli
from cnnbench.core.terminal import is_clean
from cnnbench.results.format import write_results
from tests.history_fixtures import commit_time, make_results, make_spec, sha

R18 = make_spec("resnet18")


def _main(argv: list[str], capsys) -> tuple[int, str, str]:
    capsys.readouterr()
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def _one_line_refusal(code: int, out: str, err: str) -> None:
    assert code == 2, (code, out, err)
    assert err.count("\n") == 1 and err.startswith("error: "), err
    assert "Traceback" not in err + out
    assert is_clean(out) and is_clean(err), (out, err)


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.fixture
def results_file(tmp_path: Path) -> str:
    path = tmp_path / "in" / "run.json"
    path.parent.mkdir()
    write_results(path, make_results({R18: 1.0}, commit=sha(1)))
    return str(path)


# -- class 1: the store's location ----------------------------------------------------------------------


def _fifo(d: Path) -> Path:
    os.mkfifo(d / "h.sqlite")
    return d / "h.sqlite"


def _dangling(d: Path) -> Path:
    (d / "h.sqlite").symlink_to(d / "nowhere.sqlite")
    return d / "h.sqlite"


def _live(d: Path) -> Path:
    (d / "real.sqlite").write_bytes(b"")
    (d / "h.sqlite").symlink_to(d / "real.sqlite")
    return d / "h.sqlite"


def _directory(d: Path) -> Path:
    (d / "h.sqlite").mkdir()
    return d / "h.sqlite"


def _too_long(d: Path) -> Path:
    return d / ("h" * 300 + ".sqlite")


LOCATIONS = {
    "fifo": _fifo,  # opening it to check its header would block forever
    "device": lambda d: Path("/dev/null"),
    "directory": _directory,
    "dangling symlink": _dangling,
    "live symlink": _live,
    "name too long": _too_long,
}


@pytest.mark.parametrize("command", ["store", "history", "compare"])
@pytest.mark.parametrize("where", sorted(LOCATIONS))
def test_a_store_location_that_is_not_a_regular_file_is_one_line(where, command, tmp_path, results_file, capsys):
    d = tmp_path / "db"
    d.mkdir()
    path = LOCATIONS[where](d)
    before = _tree(tmp_path)
    url = f"sqlite:///{path}"
    argv = {
        "store": ["store", results_file, "--db", url],
        "history": ["history", "--db", url],
        "compare": ["compare", "--baseline-db", url, results_file],
    }[command]
    code, out, err = _main(argv, capsys)
    _one_line_refusal(code, out, err)
    assert _tree(tmp_path) == before  # nothing created, nothing followed
    if where == "live symlink":
        assert (d / "real.sqlite").read_bytes() == b""


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_a_read_only_directory_is_one_line(tmp_path, results_file, capsys):
    d = tmp_path / "ro"
    d.mkdir()
    d.chmod(0o555)
    try:
        code, out, err = _main(["store", results_file, "--db", f"sqlite:///{d / 'h.sqlite'}"], capsys)
        _one_line_refusal(code, out, err)
        assert list(d.iterdir()) == []
    finally:
        d.chmod(0o755)


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://h:notaport/db",  # a port that is not a number
        "postgresql://[::1/db",  # an IPv6 host never closed
        "postgresql://h:99999999999999999999999999/db",
        "sqlite://host/x.sqlite",  # a host where SQLite takes a file
        "sqlite:///x.sqlite?uri=true&mode=rw",  # options that would open something else
        "sqlite:////tmp/a%00b.sqlite",  # a NUL byte in the path
        "mssql+pyodbc://u@h/db",  # another dialect
        "\x1b[2J://x",  # an escape sequence in the URL itself
        "://",
        "sqlite:" + "/" * 5000,
    ],
)
def test_a_url_that_does_not_parse_is_one_line(url, tmp_path, results_file, capsys):
    before = _tree(tmp_path)
    for argv in (["store", results_file, "--db", url], ["history", "--db", url]):
        code, out, err = _main(argv, capsys)
        _one_line_refusal(code, out, err)
    assert _tree(tmp_path) == before


# -- class 2: what comes out of the store -----------------------------------------------------------------


def _stored(tmp_path: Path, capsys, n: int = 6) -> tuple[str, Path]:
    db = tmp_path / "h.sqlite"
    url = f"sqlite:///{db}"
    for i in range(n):
        p = tmp_path / f"r{i}.json"
        write_results(p, make_results({R18: 1.0 + (i >= n // 2)}, commit=sha(i), time=commit_time(i)))
        code, _, err = _main(["store", str(p), "--db", url], capsys)
        assert code == 0, err
    return url, db


def _edit(db: Path, sql: str, *params) -> None:
    con = sqlite3.connect(db)
    with con:
        con.execute(sql, params)
    con.close()


ROWS = {
    "figures not numbers": ("UPDATE measurements SET figures_p5 = 'fast,slow' WHERE id = 1", ()),
    "figures that overflow a fit": ("UPDATE measurements SET figures_p5 = '1e-290,1e290,1' WHERE id = 2", ()),
    "figures not finite": ("UPDATE measurements SET figures_p5 = 'nan,inf' WHERE id = 3", ()),
    "figures truncated": ("UPDATE measurements SET figures_p5 = '1.0,' WHERE id = 1", ()),
    "record not compressed": ("UPDATE records SET record = ? WHERE measurement_id = 6", (b"not zlib",)),
    "record truncated": ("UPDATE records SET record = substr(record, 1, 10) WHERE measurement_id = 6", ()),
    "record JSON does not parse": (
        "UPDATE records SET record = ? WHERE measurement_id = 6", (zlib.compress(b'{"key": '),)),
    "record of the wrong shape": (
        "UPDATE records SET record = ? WHERE measurement_id = 6", (zlib.compress(b'["a list"]'),)),
    "record with a non-finite number": (
        "UPDATE records SET record = ? WHERE measurement_id = 6", (zlib.compress(b'{"key": "k", "x": NaN}'),)),
    "environment JSON does not parse": ("UPDATE runs SET environment = '{' WHERE id = 6", ()),
    "environment not a mapping": ("UPDATE runs SET environment = '[1, 2]' WHERE id = 6", ()),
}  # fmt: skip
# Which command reads what: history reads the figures, compare --baseline-db the records and environment.
READERS = {"figures": "history", "record": "compare", "environment": "compare"}


@pytest.mark.parametrize("damage", sorted(ROWS))
def test_a_damaged_row_is_one_line_naming_the_case_and_commit(damage, tmp_path, capsys):
    url, db = _stored(tmp_path, capsys)
    sql, params = ROWS[damage]
    _edit(db, sql, *params)
    current = tmp_path / "current.json"
    write_results(current, make_results({R18: 2.0}, commit=sha(99), time=commit_time(99)))
    command = READERS[damage.split()[0]]
    argv = ["history", "--db", url] if command == "history" else ["compare", "--baseline-db", url, "--window", "1", str(current)]
    code, out, err = _main(argv, capsys)
    _one_line_refusal(code, out, err)
    if damage.startswith(("figures", "record")):
        assert "resnet18" in err and "commit" in err, err


@pytest.mark.parametrize(
    "when",
    ["0001-01-01T00:00:00+01:00", "0001-01-01T00:00:00", "9999-12-31T23:59:59-01:00", "2026-01-01T00:00:00+25:00",
     "2026-13-01T00:00:00", "not a time", "2026-01-01T00:00:00\x1b[2J"],
)  # fmt: skip
def test_times_out_of_range_are_refused_at_store(when, tmp_path, results_file, capsys):
    url = f"sqlite:///{tmp_path / 'h.sqlite'}"
    code, out, err = _main(["store", results_file, "--db", url, "--time", when], capsys)
    _one_line_refusal(code, out, err)


def test_hostile_values_in_the_store_reach_the_terminal_made_visible(tmp_path, capsys):
    branch = "main\x1b]0;pwned\x07\n\u202eevil"
    p = tmp_path / "r.json"
    write_results(p, make_results({R18: 1.0}, commit=sha(1), branch=branch))
    url = f"sqlite:///{tmp_path / 'h.sqlite'}"
    code, out, err = _main(["store", str(p), "--db", url], capsys)
    assert code == 0, err
    assert out.count("\n") == 1 and is_clean(out) and "\\x1b" in out and "\\u202e" in out
    code, out, err = _main(["history", "--db", url, "--branch", branch], capsys)
    assert code == 0 and is_clean(out) and is_clean(err)
