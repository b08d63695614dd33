"""The results file's version history and its migrations (pyperf's `_bench.py` keeps them the
same way: the history as comments next to the version map, one step function per version).

A leaf of the results layer: the typed records (`records`) and the writer (`format`) both read
the version from here, so neither needs the other to know what a file's version means.
"""

from __future__ import annotations

import datetime as _dt
import os
from typing import Any

from cnnbench.core.errors import ResultsFileError

__all__ = ["SCHEMA_VERSION", "STATUSES", "migrate", "now_iso"]

# Schema history (one line per version; `migrate` runs one step function per version):
# 1: cnnbench 0.1 - cases with spec, status, counts, repeats (raw samples), latency_ms, warnings.
# 2: cases gain `measured_batch_size` (the batch timed; < spec batch only after --oom-retry) and `batch_attempts`.
SCHEMA_VERSION = 2

STATUSES = (
    "ok",
    "error",
    "timeout",
    "oom",
    "crashed",
    "export_failed",
    "unsupported",
    "interrupted",
    "fail_accuracy",
)


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def migrate(data: Any, path: str | os.PathLike[str]) -> dict[str, Any]:
    """Bring a parsed file up to SCHEMA_VERSION, one step per version (see the history above);
    refuse a newer one and anything that is not a results file at all."""
    if not isinstance(data, dict) or "schema_version" not in data or "cases" not in data:
        raise ResultsFileError(str(path), "not a cnnbench results file (no schema_version/cases)")
    version = data["schema_version"]
    if not isinstance(version, int) or isinstance(version, bool):
        raise ResultsFileError(str(path), f"schema_version must be an integer, got {version!r}")
    if version > SCHEMA_VERSION:
        raise ResultsFileError(
            str(path),
            f"written by a newer cnnbench (schema {version} > {SCHEMA_VERSION}); upgrade cnnbench",
        )
    if version < 1:
        raise ResultsFileError(str(path), f"schema {version} is older than any cnnbench release")
    if not isinstance(data["cases"], list):
        raise ResultsFileError(str(path), "cases: expected a list of case records")
    while version < SCHEMA_VERSION:
        data = _MIGRATIONS[version](data)
        version += 1
        data["schema_version"] = version
    return data


def _v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    """Version 1 had no OOM retry: what ran ok ran at the batch of its spec, with no attempts.

    Records that are not even mappings are left alone for the reader to report.
    """
    for record in data["cases"]:
        if not isinstance(record, dict):
            continue
        spec = record.get("spec") if isinstance(record.get("spec"), dict) else {}
        ok = record.get("status") == "ok"
        record.setdefault("measured_batch_size", spec.get("batch_size") if ok else None)
        record.setdefault("batch_attempts", [])
    return data


# schema version -> the function that lifts a file of that version to the next one
_MIGRATIONS = {1: _v1_to_v2}
