"""Nothing from data reaches the terminal raw, and a closed stdout ends a command quietly.

The class: every character that moves, hides or reorders what a reader sees (C0 and C1 controls,
DEL, ESC and so every escape sequence, bidi embeddings, overrides and isolates, zero-width and
direction marks, line and paragraph separators). Each is put into each kind of value that
reaches the terminal (case key, error and parity messages, hostname, file path, branch) and each
command that prints it runs: stdout and stderr hold none of them, and a newline inside a value
never starts an output line of its own.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cnnbench import cli
from cnnbench.commands import warn
from cnnbench.core.terminal import GuardedStream, is_clean, message_line, visible
from cnnbench.results.format import build_record
from tests.history_fixtures import make_record, make_results, make_spec, sha

ROOT = Path(__file__).resolve().parents[1]
HIDDEN = (
    [chr(c) for c in range(0x20) if chr(c) not in "\n\t"] + ["\n", "\t", "\x7f"]
    + [chr(c) for c in range(0x80, 0xA0)]
    + ["\u061c", "\u200b", "\u200e", "\u200f", "\u2028", "\u2029", "\u202a", "\u202b", "\u202c", "\u202d", "\u202e",
       "\u2066", "\u2067", "\u2068", "\u2069", "\ufeff"]
)  # fmt: skip
# One hostile value: a forged line, a colour, a cleared screen, a window title, a hyperlink, a
# right-to-left override, and every other hidden character.
FORGED = "ok\nINJECTED: fake line\x1b[31mred\x1b[2J\x1b]0;title\x07\x1b]8;;http://x\x07link\u202eevil" + "".join(HIDDEN)


def _main(argv: list[str], capsys) -> tuple[int, str, str]:
    capsys.readouterr()
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def _no_forged_line(text: str) -> None:
    assert is_clean(text), [c for c in text if not is_clean(c)]
    assert not any(line.lstrip().startswith("INJECTED") for line in text.splitlines()), text


# -- the helper ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("ch", HIDDEN, ids=[f"U+{ord(c):04X}" for c in HIDDEN])
def test_every_hidden_character_is_made_visible(ch):
    shown = visible(f"a{ch}b")
    assert is_clean(shown) and "\n" not in shown and "\t" not in shown
    assert shown.startswith("a\\") and shown.endswith("b")
    assert "\n" not in message_line(f"a{ch}b")


def test_guarded_stream_on_a_pipe_and_on_a_terminal():
    pipe = io.StringIO()
    GuardedStream(pipe).write(FORGED + "\n")
    assert is_clean(pipe.getvalue())

    class Tty(io.StringIO):
        def isatty(self):
            return True

    tty = Tty()
    GuardedStream(tty).write("\x1b[1mbold\x1b[0m\r\x1b]0;title\x07\u202e\n")
    # colours, cursor moves and the progress bar's carriage return pass on a terminal; a title,
    # a bell and a bidi override never do
    assert tty.getvalue() == "\x1b[1mbold\x1b[0m\r\\x1b]0;title\\x07\\u202e\n"


def test_warnings_are_one_line(capsys):
    warn(FORGED)
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    _no_forged_line(err)


# -- through every command -------------------------------------------------------------------------------


@pytest.fixture
def hostile_file(tmp_path: Path) -> str:
    ok = make_spec("resnet18")
    data = make_results({ok: 1.0}, commit=sha(1), branch=FORGED)
    rec = data["cases"][0]
    rec["key"] = FORGED
    rec["warnings"] = [FORGED]
    rec["parity"] = {"ok": True, "reason": FORGED}
    rec["measured_on"] = {"hostname": FORGED}
    data["environment"]["hostname"] = FORGED
    failed = build_record(make_spec("vgg11"), [{"status": "error", "error": FORGED}])
    failed["key"] = FORGED + "2"
    data["cases"].append(failed)
    path = tmp_path / "hostile.json"
    path.write_text(json.dumps(data))
    return str(path)


@pytest.mark.parametrize("command", ["show", "show --wide", "compare", "merge", "report", "store", "history"])
def test_hostile_values_never_reach_the_terminal_raw(command, hostile_file, tmp_path, capsys):
    db = f"sqlite:///{tmp_path / 'h.sqlite'}"
    other = tmp_path / "other.json"
    other.write_text(json.dumps(make_results({make_spec("vgg16"): 1.0}, commit=sha(2))))
    argv = {
        "show": ["show", hostile_file],
        "show --wide": ["show", "--wide", hostile_file],
        "compare": ["compare", hostile_file, hostile_file],
        "merge": ["merge", hostile_file, str(other), "--out", str(tmp_path / "m.json"), "--force", "--allow-missing"],
        "report": ["report", hostile_file, "--out", str(tmp_path / "rep"), "--format", "md"],
        "store": ["store", hostile_file, "--db", db],
        "history": ["history", "--db", db],
    }[command]
    if command == "history":
        assert _main(["store", hostile_file, "--db", db], capsys)[0] == 0
    code, out, err = _main(argv, capsys)
    assert code in (0, 1, 2), (code, out, err)
    assert "Traceback" not in err
    _no_forged_line(out)
    _no_forged_line(err)


@pytest.mark.parametrize("where", ["a path", "a URL"])
def test_errors_naming_hostile_input_are_one_clean_line(where, tmp_path, capsys):
    argv = (["show", str(tmp_path / FORGED.replace("/", ""))] if where == "a path"
            else ["history", "--db", "sqlite:///" + str(tmp_path / "x.sqlite") + "?" + FORGED])  # fmt: skip
    code, out, err = _main(argv, capsys)
    assert code == 2 and err.count("\n") == 1 and err.startswith("error: ")
    _no_forged_line(err)


# -- pipes close ----------------------------------------------------------------------------------------


class _Closed(io.StringIO):
    def write(self, text):
        raise BrokenPipeError(32, "Broken pipe")


@pytest.mark.parametrize("command", ["list", "show", "compare", "history"])
def test_a_closed_stdout_ends_every_command_quietly(command, tmp_path, capsys, monkeypatch):
    path = tmp_path / "r.json"
    path.write_text(json.dumps(make_results({make_spec("resnet18"): 1.0}, commit=sha(1))))
    db = f"sqlite:///{tmp_path / 'h.sqlite'}"
    assert _main(["store", str(path), "--db", db], capsys)[0] == 0
    argv = {
        "list": ["list", "models"],
        "show": ["show", str(path)],
        "compare": ["compare", str(path), str(path)],
        "history": ["history", "--db", db],
    }[command]
    monkeypatch.setattr(sys, "stdout", _Closed())
    code = cli.main(argv)
    monkeypatch.undo()
    assert code == cli.EXIT_PIPE
    assert capsys.readouterr().err == ""


def test_show_into_a_closed_pipe_exits_quietly(tmp_path):
    """The real thing, in a process: its stdout is a pipe whose reader is gone (`show | true`;
    with `| head -1` the same happens once the output outgrows the pipe's buffer, a size this
    test cannot rely on)."""
    path = tmp_path / "r.json"
    path.write_text(json.dumps(make_results({make_spec("resnet18"): 1.0}, commit=sha(1))))
    read, write = os.pipe()
    os.close(read)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    try:
        proc = subprocess.run([sys.executable, str(ROOT / "bench.py"), "show", str(path)], stdout=write,
                              stderr=subprocess.PIPE, env=env, cwd=str(tmp_path), timeout=120)  # fmt: skip
    finally:
        os.close(write)
    assert proc.returncode == cli.EXIT_PIPE
    assert proc.stderr == b"", proc.stderr.decode()


def test_make_record_is_what_the_fixtures_say():
    # the matrix above relies on the fixture writing a loadable ok record
    assert make_record(make_spec("resnet18"), 1.0)["status"] == "ok"
