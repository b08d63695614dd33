"""A comparison baseline from the store: `compare --baseline-db URL --branch B --window N CURRENT`.

For each case of CURRENT, the last N valid stored runs of the same case key on the same machine
fingerprint (and branch) are pooled into one base record: their worker processes (per-process
samples and figures) become the base side's repeats, so `compare` tests exactly as it does
between two files, with N times more base processes. The base is then an ordinary results dict,
and nothing else in compare needs to know where it came from.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cnnbench.stats import basic as stats
from cnnbench.history.store import Store, StoreError

__all__ = ["Baseline", "baseline_from_store"]


@dataclass(frozen=True)
class Baseline:
    results: dict[str, Any]  # a results dict compare takes as BASE
    name: str  # how the base is called in the comparison's outputs
    summary: str  # one line naming the commits used
    commits: tuple[str, ...]  # newest first
    cases_found: int
    cases_missing: tuple[str, ...]


def baseline_from_store(
    store: Store, current: dict[str, Any], *, branch: str | None, window: int, current_name: str = "CURRENT"
) -> Baseline:
    """Build the base from the last `window` stored runs of each of `current`'s cases.

    Raises:
        StoreError: no stored run of any of current's cases on its machine (and branch): the
            message names what is missing (the machine, the branch, or the cases).
    """
    if window < 1:
        raise StoreError(f"--window must be at least 1, got {window}")
    env = current.get("environment") if isinstance(current.get("environment"), dict) else {}
    machine = env.get("machine_fingerprint")
    if not machine:
        raise StoreError(f"{current_name}: its environment has no machine_fingerprint, so no stored run can be matched")
    keys = [r["key"] for r in current.get("cases") or [] if isinstance(r, dict) and isinstance(r.get("key"), str)]
    if not keys:
        raise StoreError(f"{current_name}: no case to compare")
    found = store.latest_records(keys, machine=machine, branch=branch, window=window)
    if not found:
        raise StoreError(_nothing_found(store, current, machine=machine, branch=branch, n_keys=len(keys), name=current_name))

    records = []
    commits: list[str] = []
    newest: dict[str, Any] | None = None
    for key in keys:
        if key not in found:
            continue
        pairs = found[key]
        records.append(_pooled_record(key, pairs))
        for info, _ in pairs:
            if info["commit"] not in commits:
                commits.append(info["commit"])
            if newest is None or (info["commit_time"], info["run_id"]) > (newest["commit_time"], newest["run_id"]):
                newest = info
    assert newest is not None
    environment = dict(newest["environment"])
    git = dict(environment.get("git") or {})
    git["commit"] = newest["commit"]
    environment["git"] = git
    results = {
        "schema_version": current.get("schema_version"),
        "tool": "cnnbench",
        "created": newest["commit_time"],
        "environment": environment,
        "suite": {"name": newest["suite_name"]},
        "cases": records,
    }
    missing = tuple(k for k in keys if k not in found)
    short = ", ".join(c[:10] for c in commits)
    where = f"branch {branch}" if branch else "any branch"
    per_case = max(len(p) for p in found.values())
    name = f"history: last {per_case} run(s) of {where}, commits {short}"
    summary = (
        f"baseline: {store.shown_url}, {where}, machine {machine}, last {window} stored run(s) per case: "
        f"{len(records)} of {len(keys)} case(s) found"
        + (f" ({len(missing)} never stored there: compared as new)" if missing else "")
        + f"; commits {short}"
    )
    return Baseline(results, name, summary, tuple(commits), len(records), missing)


def _pooled_record(key: str, pairs: list[tuple[dict[str, Any], dict[str, Any]]]) -> dict[str, Any]:
    """One base record from several stored records of a case: their processes side by side."""
    recs = [rec for _, rec in pairs]
    record = dict(recs[0])  # the newest: spec, memory, parity, backend info
    runs = [r for rec in recs for r in (rec.get("runs") or []) if isinstance(r, dict)]
    record["runs"] = runs
    record["repeat_medians_ms"] = [m for rec in recs for m in (rec.get("repeat_medians_ms") or [])]
    samples = [s for rec in recs for s in (rec.get("samples_ms") or [])]
    record["samples_ms"] = samples
    record["latency_ms"] = stats.summarize(samples) if samples else recs[0].get("latency_ms")
    record["repeats_done"] = len(runs) or len(record["repeat_medians_ms"])
    record["history_commits"] = [info["commit"] for info, _ in pairs]
    record["key"] = key
    return record


def _nothing_found(store: Store, current: dict[str, Any], *, machine: str, branch: str | None, n_keys: int, name: str) -> str:
    where = store.shown_url
    machines = store.machines()
    if machine not in machines:
        known = ", ".join(f"{m} ({n} runs)" for m, n in sorted(machines.items())) or "none: the store is empty"
        return f"{where}: no run stored from this machine (fingerprint {machine}); stored machines: {known}"
    if branch is not None:
        branches = store.branches(machine=machine)
        if branch not in branches:
            known = ", ".join(f"{b or '(none)'} ({n})" for b, n in sorted(branches.items(), key=lambda kv: str(kv[0])))
            return f"{where}: no run of branch {branch!r} stored from machine {machine}; its branches: {known}"
    suite = (current.get("suite") or {}).get("name") if isinstance(current.get("suite"), dict) else None
    suites = store.suites(machine=machine, branch=branch)
    known = ", ".join(f"{s or '(unnamed)'} ({n} runs)" for s, n in sorted(suites.items(), key=lambda kv: str(kv[0])))
    on = f"branch {branch!r} on machine {machine}" if branch else f"machine {machine}"
    return (
        f"{where}: none of {name}'s {n_keys} case(s) (suite {suite!r}) has a valid stored run for {on}; "
        f"stored there: suites {known}"
    )
