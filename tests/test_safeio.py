"""The one write helper: atomic, never through a link, refuses what is not a regular file, and
every command that writes goes through it (planted symlinks, /dev/full, FIFOs, long names)."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from cnnbench.core import safeio
from cnnbench.cli import main
from cnnbench.results.format import new_results, write_results
from cnnbench.core.safeio import WriteError, append_text, atomic_write, check_target, open_lock


def test_atomic_write_writes_and_keeps_permissions(tmp_path):
    target = tmp_path / "a.txt"
    atomic_write(target, "one")
    os.chmod(target, 0o640)
    atomic_write(target, b"two")
    assert target.read_text() == "two" and os.stat(target).st_mode & 0o777 == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]


def test_a_symlink_at_the_target_is_refused_and_its_target_untouched(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious")
    link = tmp_path / "out.json"
    link.symlink_to(victim)
    with pytest.raises(WriteError, match="symbolic link"):
        atomic_write(link, "x")
    assert victim.read_text() == "precious" and link.is_symlink()


def test_a_planted_symlink_at_any_temporary_name_is_never_written_through(tmp_path, monkeypatch):
    """The temporary name is drawn at random and created with O_EXCL|O_NOFOLLOW: a link that
    happens to sit at the drawn name makes the open fail and another name is drawn."""
    victim = tmp_path / "victim"
    victim.write_text("precious")
    names = iter(["planted", "fresh"])
    monkeypatch.setattr(safeio.secrets, "token_hex", lambda n: next(names))
    (tmp_path / ".report.md.planted.tmp").symlink_to(victim)
    (tmp_path / ".report.md.tmp").symlink_to(victim)  # the old fixed name, too
    atomic_write(tmp_path / "report.md", "report")
    assert victim.read_text() == "precious" and (tmp_path / "report.md").read_text() == "report"


@pytest.mark.parametrize("kind", ["directory", "fifo", "device"])
def test_non_regular_targets_are_refused_in_one_line(tmp_path, kind):
    if kind == "directory":
        target = tmp_path / "d"
        target.mkdir()
    elif kind == "fifo":
        target = tmp_path / "f"
        os.mkfifo(target)
    else:
        target = Path("/dev/full")
    with pytest.raises(WriteError) as info:
        atomic_write(target, "x")
    assert str(info.value).startswith(f"{target}: is a") and "\n" not in str(info.value)


def test_too_long_a_name_is_refused_before_anything_is_written(tmp_path):
    target = tmp_path / ("x" * 300)
    with pytest.raises(WriteError, match="file name too long"):
        check_target(target)
    with pytest.raises(WriteError, match="file name too long"):
        atomic_write(target, "x")
    ok = tmp_path / ("y" * 250)  # fits, though its temporary name must be shortened to fit too
    atomic_write(ok, "x")
    assert ok.read_text() == "x"


@pytest.mark.parametrize("err", [errno.ENOSPC, errno.EROFS, errno.EDQUOT])
def test_a_full_or_read_only_disk_is_one_line_and_leaves_nothing(tmp_path, monkeypatch, err):
    target = tmp_path / "r.json"
    target.write_text("old")
    real_write = os.write

    class FakeOS:
        def __getattr__(self, name):
            return getattr(os, name)

        @staticmethod
        def write(fd, data):
            real_write(fd, bytes(data[:3]))
            raise OSError(err, os.strerror(err))

    monkeypatch.setattr(safeio, "os", FakeOS())
    with pytest.raises(WriteError) as info:
        atomic_write(target, "new content")
    assert str(info.value) == f"{target}: cannot write ({os.strerror(err)})"
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]


def test_an_exception_mid_write_removes_the_partial_file(tmp_path):
    target = tmp_path / "r.json"
    with pytest.raises(KeyboardInterrupt):
        with safeio.atomic_path(target) as (fd, name):
            os.write(fd, b"half")
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_lock_files_are_opened_without_following_a_link(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious")
    (tmp_path / "r.json.lock").symlink_to(victim)
    with pytest.raises(WriteError, match="symbolic link"):
        open_lock(tmp_path / "r.json.lock")
    assert victim.read_text() == "precious"
    fifo = tmp_path / "f.lock"
    os.mkfifo(fifo)
    with pytest.raises(WriteError):
        check_target(fifo)


def test_append_refuses_links(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious")
    (tmp_path / "summary").symlink_to(victim)
    with pytest.raises(WriteError):
        append_text(tmp_path / "summary", "x")
    append_text(tmp_path / "s2", "a")
    append_text(tmp_path / "s2", "b")
    assert victim.read_text() == "precious" and (tmp_path / "s2").read_text() == "ab"


# ---------------------------------------------------------------------------------------------
# Writers that need a path (a library writes the file itself): atomic_file, temp_file_beside


def _library_save(path: Path, text: str) -> None:
    """What torch.save / onnx.save / OpenVINO's save_model do: open the name they are given."""
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)


def test_atomic_file_gives_a_library_a_fresh_path_with_the_targets_suffix(tmp_path):
    target = tmp_path / "model.onnx"
    with safeio.atomic_file(target) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".model.onnx.") and tmp.name.endswith(".tmp.onnx")
        assert tmp.is_file() and not tmp.is_symlink() and tmp.stat().st_size == 0  # ours already
        _library_save(tmp, "graph")
        assert not target.exists()  # nothing in place until the library is done
    assert target.read_text() == "graph" and [p.name for p in tmp_path.iterdir()] == ["model.onnx"]
    with safeio.atomic_file(tmp_path / "m.pt2", suffix=".pt2") as tmp:
        assert tmp.suffix == ".pt2"
        _library_save(tmp, "package")


def test_a_library_failure_leaves_the_target_and_no_temporary_file(tmp_path):
    target = tmp_path / "model.onnx"
    target.write_text("old")
    with pytest.raises(ValueError, match="exporter"):
        with safeio.atomic_file(target, companions=(lambda p: p.with_name(p.name + ".data"),)) as tmp:
            _library_save(tmp, "half")
            raise ValueError("exporter rejected an op")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["model.onnx"]


def test_companions_are_reserved_then_renamed_when_written_and_removed_when_not(tmp_path, monkeypatch):
    """OpenVINO writes X.bin beside the X.xml it is given: the .bin's temporary name is ours
    before the library runs (a link planted at the first name drawn makes another set be
    drawn), then renamed beside the target; a companion left empty (ONNX external data of a
    small model) is removed, never renamed."""
    victim = tmp_path / "victim"
    victim.write_text("precious")
    tokens = iter(["aaaa", "bbbb"])
    monkeypatch.setattr(safeio.secrets, "token_hex", lambda n: next(tokens))
    (tmp_path / ".m.xml.aaaa.tmp.bin").symlink_to(victim)  # the .bin of the first name drawn
    bin_of = lambda p: p.with_suffix(".bin")  # noqa: E731
    data_of = lambda p: p.with_name(p.name + ".data")  # noqa: E731
    with safeio.atomic_file(tmp_path / "m.xml", companions=(bin_of, data_of)) as tmp:
        assert tmp.name == ".m.xml.bbbb.tmp.xml"
        _library_save(tmp, "<xml/>")
        _library_save(bin_of(tmp), "weights")
    assert victim.read_text() == "precious"
    assert (tmp_path / "m.xml").read_text() == "<xml/>" and (tmp_path / "m.bin").read_text() == "weights"
    assert not (tmp_path / "m.xml.data").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".m.xml.aaaa.tmp.bin", "m.bin", "m.xml", "victim"]


def test_a_symlink_at_a_companion_target_is_refused_before_the_library_runs(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious")
    (tmp_path / "m.bin").symlink_to(victim)
    ran = []
    with pytest.raises(WriteError, match="symbolic link"):
        with safeio.atomic_file(tmp_path / "m.xml", companions=(lambda p: p.with_suffix(".bin"),)):
            ran.append(True)
    assert not ran and victim.read_text() == "precious"


def test_temp_file_beside_is_fresh_and_never_a_planted_link(tmp_path, monkeypatch):
    victim = tmp_path / "victim"
    victim.write_text("precious")
    tokens = iter(["aaaa", "bbbb", "cccc"])
    monkeypatch.setattr(safeio.secrets, "token_hex", lambda n: next(tokens))
    (tmp_path / ".q.onnx.aaaa.tmp.pre.onnx").symlink_to(victim)
    pre = safeio.temp_file_beside(tmp_path / "q.onnx", suffix=".pre.onnx")
    assert pre.name == ".q.onnx.bbbb.tmp.pre.onnx" and pre.is_file() and not pre.is_symlink()
    assert safeio.temp_file_beside(tmp_path / "q.onnx").name == ".q.onnx.cccc.tmp.onnx"
    _library_save(pre, "pre-processed")
    assert victim.read_text() == "precious"


def test_a_build_log_is_appended_to_never_through_a_link(tmp_path):
    from cnnbench.backends.artifacts import output_to

    victim = tmp_path / "victim"
    victim.write_text("precious")
    (tmp_path / "export.log").symlink_to(victim)
    with pytest.raises(WriteError, match="symbolic link"):
        with output_to(tmp_path / "export.log"):
            pass
    assert victim.read_text() == "precious"
    fd = safeio.open_append(tmp_path / "logs" / "ok.log")
    os.write(fd, b"line\n")
    os.close(fd)
    assert (tmp_path / "logs" / "ok.log").read_text() == "line\n"


# ---------------------------------------------------------------------------------------------
# Every command that writes: a planted link or a bad target is one line, exit 2


SUITE = "name: t\nmodels: [lenet5]\nbatch_sizes: [1]\nthreads: 1\n"


@pytest.fixture
def no_worker(monkeypatch):
    from cnnbench.run import runner

    calls = []
    monkeypatch.setattr(runner, "run_worker", lambda spec, **kw: calls.append(spec) or {"status": "ok"})
    return calls


def test_run_refuses_a_symlinked_lock_and_bad_out_targets(tmp_path, capsys, no_worker):
    suite = tmp_path / "s.yaml"
    suite.write_text(SUITE)
    victim = tmp_path / "victim"
    victim.write_text("precious")
    (tmp_path / "r.json.lock").symlink_to(victim)
    assert main(["run", str(suite), "--out", str(tmp_path / "r.json"), "--quiet", "--no-peak"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "r.json.lock" in err and "symbolic link" in err
    assert victim.read_text() == "precious" and no_worker == []
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    for out in ("/dev/full", str(fifo), str(tmp_path / ("n" * 300 + ".json")), str(tmp_path)):
        for flags in ([], ["--replace"], ["--resume"]):
            assert main(["run", str(suite), "--out", out, "--quiet", "--no-peak", *flags]) == 2, (out, flags)
            err = capsys.readouterr().err
            assert err.count("\n") == 1 and err.startswith("error: "), err
    assert no_worker == []


def test_merge_refuses_a_symlinked_lock(tmp_path, capsys):
    a = tmp_path / "a.json"
    write_results(a, new_results(environment={"hostname": "h"}, suite={"name": "t"}))
    victim = tmp_path / "victim"
    victim.write_text("precious")
    (tmp_path / "m.json.lock").symlink_to(victim)
    code = main(["merge", str(a), "--out", str(tmp_path / "m.json")])
    assert code == 2 and "symbolic link" in capsys.readouterr().err
    assert victim.read_text() == "precious"


def test_report_never_writes_through_a_planted_temporary_link(tmp_path, capsys):
    results = Path(__file__).parent / "data" / "report" / "host_a.json"
    out = tmp_path / "rep"
    out.mkdir()
    victim = tmp_path / "victim"
    victim.write_text("precious")
    (out / ".report.md.tmp").symlink_to(victim)
    assert main(["report", str(results), "--out", str(out), "--format", "md,csv"]) == 0
    assert victim.read_text() == "precious" and (out / "report.md").is_file()
    capsys.readouterr()
    (out / "report.md").unlink()
    (out / "report.md").symlink_to(victim)
    assert main(["report", str(results), "--out", str(out), "--format", "md"]) == 2
    assert "symbolic link" in capsys.readouterr().err and victim.read_text() == "precious"


def test_compare_markdown_output_goes_through_the_helper(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious")
    link = tmp_path / "pr.md"
    link.symlink_to(victim)
    from cnnbench.commands.compare import _write

    with pytest.raises(WriteError):
        _write(str(link), "x")
    assert victim.read_text() == "precious"


def test_a_plots_file_in_the_report_directory_is_one_line(tmp_path, capsys):
    results = Path(__file__).parent / "data" / "report" / "host_a.json"
    out = tmp_path / "rep"
    out.mkdir()
    (out / "plots").write_text("not a directory")
    assert main(["report", str(results), "--out", str(out), "--format", "png"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "plots: exists and is not a directory" in err
