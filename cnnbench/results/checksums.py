"""Checksum sidecar files: `FILE.sha256` beside FILE, in `sha256sum`'s format.

A file that ships with a checksum (the trained example weights, `examples/digits/lenet5_digits.pt`)
is verified whenever it is loaded, so a truncated copy, a Git LFS pointer or a hand-edited file
gives one clear line instead of wrong answers. A file without a sidecar is not checked.
Standard library and `cnnbench.core.safeio` only.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from cnnbench.core.safeio import atomic_write

__all__ = ["SIDECAR_SUFFIX", "ChecksumError", "sha256_of", "sidecar_path", "write_sidecar", "verify_sidecar"]

SIDECAR_SUFFIX = ".sha256"


class ChecksumError(ValueError):
    """A file that does not match its sidecar, or a sidecar that cannot be read."""


def sha256_of(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def sidecar_path(path: str | os.PathLike[str]) -> Path:
    p = Path(path)
    return p.with_name(p.name + SIDECAR_SUFFIX)


def write_sidecar(path: str | os.PathLike[str]) -> Path:
    """Write `FILE.sha256` ("<hex>  <file name>\\n", as `sha256sum` does) and return its path,
    atomically and never through a link (`cnnbench.core.safeio.atomic_write`)."""
    side = sidecar_path(path)
    atomic_write(side, f"{sha256_of(path)}  {Path(path).name}\n", what="write the checksum file")
    return side


def verify_sidecar(path: str | os.PathLike[str]) -> str | None:
    """Check FILE against `FILE.sha256` when that sidecar exists.

    Returns:
        The verified hex digest, or None when FILE has no sidecar.

    Raises:
        ChecksumError: the sidecar is unreadable or malformed, or the digests differ.
    """
    side = sidecar_path(path)
    if not side.is_file():
        return None
    try:
        text = side.read_text(encoding="utf-8").split()
    except (OSError, UnicodeDecodeError) as exc:
        raise ChecksumError(f"cannot read checksum file {side}: {exc}") from None
    expected = text[0].lower() if text else ""
    if len(expected) != 64 or any(c not in "0123456789abcdef" for c in expected):
        raise ChecksumError(f"checksum file {side} does not hold a sha256 digest")
    got = sha256_of(path)
    if got != expected:
        raise ChecksumError(
            f"{path} does not match its checksum file {side.name} (sha256 {got[:12]}..., expected "
            f"{expected[:12]}...): the file is damaged or was replaced"
        )
    return got
