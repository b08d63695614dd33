"""Checksum sidecars (cnnbench/results/checksums.py) and their check when weights are loaded."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from cnnbench.results.checksums import ChecksumError, sha256_of, sidecar_path, verify_sidecar, write_sidecar

SHIPPED = Path(__file__).resolve().parents[1] / "examples" / "digits" / "lenet5_digits.pt"


def test_a_written_sidecar_verifies_and_a_changed_byte_does_not(tmp_path):
    f = tmp_path / "w.bin"
    f.write_bytes(b"weights" * 1000)
    assert verify_sidecar(f) is None  # no sidecar: not checked
    side = write_sidecar(f)
    assert side == sidecar_path(f) and side.read_text().split() == [sha256_of(f), "w.bin"]
    assert verify_sidecar(f) == sha256_of(f)
    f.write_bytes(b"weights" * 999 + b"weightz")
    with pytest.raises(ChecksumError, match="does not match its checksum file w.bin.sha256"):
        verify_sidecar(f)


def test_a_malformed_sidecar_is_an_error_not_a_pass(tmp_path):
    f = tmp_path / "w.bin"
    f.write_bytes(b"x")
    sidecar_path(f).write_text("not a digest\n")
    with pytest.raises(ChecksumError, match="does not hold a sha256 digest"):
        verify_sidecar(f)


def test_load_weights_verifies_the_shipped_weights_and_refuses_a_damaged_copy(tmp_path):
    pytest.importorskip("torch")
    from cnnbench.accuracy import AccuracyError, load_weights
    from cnnbench.models.registry import build_model

    info = load_weights(build_model("lenet5"), str(SHIPPED))
    assert info["sha256_verified"] == sha256_of(SHIPPED)
    copy = tmp_path / SHIPPED.name
    shutil.copy(SHIPPED, copy)
    shutil.copy(sidecar_path(SHIPPED), sidecar_path(copy))
    data = bytearray(copy.read_bytes())
    data[-100] ^= 0xFF
    copy.write_bytes(bytes(data))
    with pytest.raises(AccuracyError, match="does not match its checksum file"):
        load_weights(build_model("lenet5"), str(copy))


def test_writing_a_sidecar_never_follows_a_planted_link(tmp_path):
    """The sidecar goes through cnnbench.core.safeio: a link at the old predictable temporary
    name (.FILE.sha256.<pid>.tmp) is never written through, and a link at FILE.sha256 itself is
    refused rather than replaced."""
    import os

    from cnnbench.core.safeio import WriteError

    f = tmp_path / "w.bin"
    f.write_bytes(b"weights")
    victim = tmp_path / "victim"
    victim.write_text("precious")
    (tmp_path / f".w.bin.sha256.{os.getpid()}.tmp").symlink_to(victim)
    side = write_sidecar(f)
    assert victim.read_text() == "precious" and side.read_text().split() == [sha256_of(f), "w.bin"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["w.bin", "w.bin.sha256", "victim", f".w.bin.sha256.{os.getpid()}.tmp"])
    side.unlink()
    side.symlink_to(victim)
    with pytest.raises(WriteError, match="symbolic link"):
        write_sidecar(f)
    assert victim.read_text() == "precious" and side.is_symlink()
