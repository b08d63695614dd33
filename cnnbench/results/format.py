"""Case records and results files: the contract CI users script against.

A results file is JSON:
    {"schema_version": int, "tool": "cnnbench", "created": iso8601, "updated": iso8601,
     "environment": {...}, "suite": {...}, "cases": [record, ...]}
A record (one per case key) holds the spec, the status, the static counts, every repeat's raw
samples and the statistics derived from them (see `build_record`). Statistics are always derived
here from raw samples (one place), never rounded; rendering rounds.

The file is rewritten atomically (temporary file in the same directory, fsync, rename) after
every case, so an interrupted run leaves a file that loads with every completed case.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from pathlib import Path
from typing import Any

from cnnbench.stats import basic as stats, processes
from cnnbench.core.errors import ResultsFileError
from cnnbench.core.spec import TIMED_STATUSES, CaseSpec
from cnnbench.results import records
from cnnbench.results.blocks import combine_device_state, combine_energy
from cnnbench.results.schema import SCHEMA_VERSION, now_iso
from cnnbench.core.safeio import atomic_write

__all__ = [
    "build_record",
    "new_results",
    "load_results",
    "write_results",
    "upsert_record",
    "setup_time",
    "cold_start_ms",
]

# Fields a worker reports once per case (identical across repeats); copied onto the record
# from the first repeat that has them.
_STATIC_FIELDS = (
    "params",
    "trainable_params",
    "gmacs",
    "gflops",
    "gmacs_per_image",
    "counter",
    "counts",
    "aux_heads_included",
    "backend_info",
    "published",
    "parity",
    "memory",
    "accuracy",
    "train",
)


# Statuses of a run that finished its timed loop: its samples are kept in the record.


def build_record(spec: CaseSpec, runs: list[dict[str, Any]], *, planned_repeats: int | None = None) -> dict[str, Any]:
    """Combine the runs (one per worker process / repeat) of one case into its record.

    Each run is what a worker returned, or what the runner made of a worker that died: at least
    `status` and `error`, and for ok runs `samples_ms` (per-call latencies, ms), `warmup_ms`,
    `first_call_ms`, `block_size`, `stop_reason`. The record's `samples_ms` pools the samples of
    the runs that finished their timed loop (`ok`, and `fail_accuracy`, whose timings stay in the
    file but are shown invalid), `repeat_medians_ms` keeps each run's median (what a regression
    check compares), and the status is the first non-ok status of any run, else ok.

    A run may carry `batch_size` (the batch it measured, when `--oom-retry` had to lower it) and
    `batch_attempts` (`[{batch_size, status}]`, one per worker the retry started). The record
    keeps the requested spec and key, says `measured_batch_size`, and warns when they differ;
    throughput and GMACs are per measured batch (the worker counted what it ran).

    This is the one place a record dict is made; `cnnbench.results.records.CASE_FIELDS` declares
    its fields in this order and the parser checks each (a new field goes in both).
    """
    timed_runs = [r for r in runs if r.get("status") in TIMED_STATUSES]
    bad_runs = [r for r in runs if r.get("status") != "ok"]
    status = bad_runs[0]["status"] if bad_runs else ("ok" if timed_runs else "interrupted")
    error = bad_runs[0].get("error") if bad_runs else None

    record: dict[str, Any] = {
        "key": spec.key,
        "spec": spec.to_dict(),
        "status": status,
        "error": error,
    }
    for name in _STATIC_FIELDS:
        record[name] = next((r[name] for r in runs if r.get(name) is not None), None)

    samples: list[float] = [s for r in timed_runs for s in r.get("samples_ms", [])]
    first = timed_runs[0] if timed_runs else (runs[0] if runs else {})
    record["first_call_ms"] = first.get("first_call_ms")
    record["warmup_ms"] = list(first.get("warmup_ms") or [])
    record["samples_ms"] = samples
    record["block_size"] = first.get("block_size")
    record["stop_reason"] = first.get("stop_reason")
    record["repeat_medians_ms"] = [stats.median(r["samples_ms"]) for r in timed_runs if r.get("samples_ms")]
    measured = [r.get("batch_size", spec.batch_size) for r in timed_runs]
    record["measured_batch_size"] = measured[0] if measured else None
    record["batch_attempts"] = next((list(r["batch_attempts"]) for r in runs if r.get("batch_attempts")), [])
    record["repeats_done"] = len(runs)
    record["repeats_planned"] = planned_repeats or len(runs)
    record["runs"] = [_run_summary(r) for r in runs]
    for name, value in (
        ("energy", combine_energy([r.get("energy") for r in timed_runs])),
        ("device_state", combine_device_state([r.get("device_state") for r in timed_runs])),
        ("transfer", next((r["transfer"] for r in timed_runs if r.get("transfer") is not None), None)),
    ):
        if value is not None:  # optional fields: absent from records that never measured them
            record[name] = value

    block = processes.record_block(runs)
    if block is not None:
        record["processes"] = block

    warnings: list[str] = []
    retry = _oom_retry_warning(spec, record["measured_batch_size"], record["batch_attempts"])
    if retry:
        warnings.append(retry)
    for r in runs:
        for w in r.get("warnings") or []:
            if w not in warnings:
                warnings.append(w)
    split = processes.process_stats(block["figures_ms"]).warning if block else None  # type: ignore[union-attr]
    if split:
        warnings.append(split)
    if samples:
        lat = stats.summarize(samples)
        record["latency_ms"] = lat
        batch = record["measured_batch_size"] or spec.batch_size
        record["throughput_per_s"] = batch / (lat["median"] / 1000.0) if lat["median"] > 0 else None
        rel_iqr = lat["iqr"] / lat["median"] if lat["median"] > 0 else float("inf")
        if rel_iqr > stats.IQR_WARN_THRESHOLD:
            msg = f"high dispersion: IQR is {rel_iqr:.0%} of the median (> {stats.IQR_WARN_THRESHOLD:.0%})"
            warnings.append(msg)
        if len(samples) < spec.measure.min_samples:
            warnings.append(f"few samples: {len(samples)} < {spec.measure.min_samples}")
    else:
        record["latency_ms"] = None
        record["throughput_per_s"] = None
    record["warnings"] = warnings
    return record


def setup_time(record: dict[str, Any]) -> tuple[float | None, str | None]:
    """`cnnbench.results.records.setup_time` of a record dict (the one rule; see there)."""
    info = record.get("backend_info")
    return records.setup_time(info if isinstance(info, dict) else {}, record.get("first_call_ms"))


def cold_start_ms(record: dict[str, Any]) -> float | None:
    """`cnnbench.results.records.cold_start_ms` of a record dict (the one rule; see there)."""
    info = record.get("backend_info")
    return records.cold_start_ms(info if isinstance(info, dict) else {}, record.get("first_call_ms"))


def _oom_retry_warning(spec: CaseSpec, measured: int | None, attempts: list[dict[str, Any]]) -> str | None:
    """The line that makes a lowered batch impossible to miss (never reduced silently)."""
    if not attempts:
        return None
    tried = ", ".join(f"{a['batch_size']} {a['status']}" for a in attempts)
    if measured is not None and measured != spec.batch_size:
        return f"out of memory at batch {spec.batch_size}: measured at batch {measured} instead (--oom-retry: {tried})"
    if measured is None:
        return f"--oom-retry found no batch that fits ({tried})"
    return None


def _run_summary(run: dict[str, Any]) -> dict[str, Any]:
    """What is kept of each repeat besides the pooled samples: its own samples and context."""
    keep = (
        "status",
        "error",
        "samples_ms",
        "warmup_ms",
        "first_call_ms",
        "block_size",
        "stop_reason",
        "threads_used",
        "device_name",
        "overhead_ms",
        "worker_start",  # "fork" (from a worker server, cnnbench.run.server) or "spawn"; optional
        "started",
        "duration_s",
        "exit_code",
        "signal",
        "stderr_tail",
        "traceback",
        "recompiles",
        "host",
        "batch_size",
        "batch_attempts",
        "energy",
        "device_state",
        "memory",  # each process's own: RSS deltas differ between processes (compare tests them)
    )
    out = {k: run[k] for k in keep if k in run}
    if run.get("samples_ms"):
        out["median_ms"] = stats.median(run["samples_ms"])
    return out


def new_results(*, environment: dict[str, Any], suite: dict[str, Any]) -> dict[str, Any]:
    now = now_iso()
    return {
        "schema_version": SCHEMA_VERSION,
        "tool": "cnnbench",
        "created": now,
        "updated": now,
        "environment": environment,
        "suite": suite,
        "cases": [],
    }


def upsert_record(results: dict[str, Any], record: dict[str, Any]) -> None:
    """Insert a record, or replace the one with the same key (keeping its position)."""
    for i, existing in enumerate(results["cases"]):
        if existing["key"] == record["key"]:
            results["cases"][i] = record
            return
    results["cases"].append(record)


def write_results(path: str | os.PathLike[str], results: dict[str, Any]) -> None:
    """Write atomically: a temporary file in the same directory, fsync, then rename over `path`.

    On any failure (disk full, permission, an interrupt) the previous file is untouched, the
    temporary file is removed and a ResultsFileError names the path. The new file keeps the old
    one's permissions (a new one gets the umask's), not mkstemp's owner-only 0600.
    """
    path = Path(path)
    results["updated"] = now_iso()
    try:
        text = json.dumps(results, indent=1, allow_nan=False, default=_json_default)
    except ValueError as exc:  # NaN/inf slipped into a record: a bug, but never lose the file
        text = json.dumps(_sanitize(results), indent=1, default=_json_default)
        results.setdefault("notes", []).append(f"non-finite values replaced by null: {exc}")

    atomic_write(path, text + "\n", what="write results")


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (set, tuple)):
        return list(obj)
    if isinstance(obj, Path):
        return str(obj)
    return str(obj)


def _sanitize(obj: Any) -> Any:
    if isinstance(obj, float) and (obj != obj or obj in (float("inf"), float("-inf"))):
        return None
    if isinstance(obj, dict):
        return {k: _sanitize(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_sanitize(v) for v in obj]
    return obj


def load_results(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load a results file, migrating older schema versions; refuse newer ones and garbage.

    Every field is checked (`cnnbench.results.records.load`); what comes back is the checked file as
    plain JSON. New code reads `cnnbench.results.records.load`'s typed records instead.
    """
    return records.load(path).to_json()


