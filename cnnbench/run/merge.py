"""Merging the results files of a sharded run into one (pure: loaded files in, a results dict out).

`bench.py merge` (cnnbench/commands/merge.py) reads the files and writes the result; the format
of the merged file is described there and in docs/scale.md.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from cnnbench.core.errors import UserError
from cnnbench.results.format import new_results
from cnnbench.results.schema import now_iso
from cnnbench.run.shard import parse_shard

__all__ = ["merge_results", "summarize_environments"]


def merge_results(
    inputs: list[tuple[str, dict[str, Any]]], *, force: bool = False, allow_missing: bool = False
) -> tuple[dict[str, Any], list[str]]:
    """Merge loaded results files.

    Args:
        inputs: (file name, loaded results) pairs, in the order their cases should appear.
        force: merge different suites or shard counts anyway.
        allow_missing: merge a set of shards with some missing (a warning note instead).

    Returns:
        The merged results (current schema) and notes worth a warning (missing shards,
        environments that differ).

    Raises:
        UserError: no input, a duplicate key, different suites or shard counts without `force`,
            shards missing without `allow_missing`.
    """

    if not inputs:
        raise UserError("nothing to merge: give at least one results file")
    notes: list[str] = []
    _check_suites(inputs, force=force)
    shards = _check_shards(inputs, force=force, notes=notes, allow_missing=allow_missing)

    environments: list[dict[str, Any]] = []
    cases: list[dict[str, Any]] = []
    owner: dict[str, str] = {}
    for name, data in inputs:
        source = Path(name).name
        offset = len(environments)
        file_envs = data.get("environments")
        if isinstance(file_envs, list) and file_envs:  # an already merged file
            environments.extend(copy.deepcopy(file_envs))
        else:
            environments.append({**copy.deepcopy(data.get("environment") or {}), "source": source})
        for record in data["cases"]:
            key = record.get("key")
            if key in owner:
                raise UserError(
                    f"case {key!r} is in both {owner[key]} and {name}: each case must come from exactly "
                    "one shard (was a shard run twice, or the files come from different splits?)"
                )
            owner[key] = name
            record = copy.deepcopy(record)
            previous = record.get("measured_on")
            if isinstance(file_envs, list) and file_envs and isinstance(previous, dict):
                own = previous.get("environment") or 0  # typed at load: an integer >= 0 or absent
                if not isinstance(own, int) or own >= len(file_envs):
                    raise UserError(
                        f"{name}: case {key!r}: measured_on.environment {own!r} names none of its "
                        f"{len(file_envs)} environments (an edited or damaged merged file)"
                    )
                index = offset + own
                record["measured_on"] = {**previous, "environment": index}
            else:
                env = environments[offset]
                record["measured_on"] = {
                    "hostname": env.get("hostname"),
                    "machine_fingerprint": env.get("machine_fingerprint"),
                    "source": source,
                    "environment": offset,
                }
            cases.append(record)

    first = inputs[0][1]
    dropped = ("shard", "shards", "shard_sources")
    suite = {k: v for k, v in copy.deepcopy(first.get("suite") or {}).items() if k not in dropped}
    suite["shards"] = shards
    sources = sorted({str(s) for _, d in inputs for s in _shard_sources(d.get("suite") or {})})
    if sources:
        suite["shard_source"] = sources[0] if len(sources) == 1 else None
        suite["shard_sources"] = sources
    suites = {(d.get("suite") or {}).get("sha256") for _, d in inputs}
    if len(suites) > 1:
        suite["merged_suites"] = [
            {"source": Path(n).name, "name": (d.get("suite") or {}).get("name"), "sha256": (d.get("suite") or {}).get("sha256")}
            for n, d in inputs
        ]
    merged = new_results(environment=summarize_environments(environments, sources=[Path(n).name for n, _ in inputs]), suite=suite)
    merged["created"] = min((d.get("created") for _, d in inputs if d.get("created")), default=now_iso())
    merged["environments"] = environments
    merged["cases"] = cases
    differing = merged["environment"]["merged"]["differing_fields"]
    if differing:
        notes.append(
            f"the inputs were measured in {len(environments)} environments that differ in "
            f"{', '.join(differing)}; each case's `measured_on` says where it was measured"
        )
    return merged, notes


def summarize_environments(environments: list[dict[str, Any]], *, sources: list[str]) -> dict[str, Any]:
    """One environment for the top level: agreed fields kept, differing ones null."""
    keys: list[str] = []
    for env in environments:
        keys.extend(k for k in env if k not in keys and k != "source")
    out: dict[str, Any] = {}
    differing = []
    for key in keys:
        values = [env.get(key) for env in environments]
        if all(v == values[0] for v in values):
            out[key] = copy.deepcopy(values[0])
        else:
            out[key] = None
            differing.append(key)
    out["merged"] = {"files": sources, "environments": len(environments), "differing_fields": differing}
    return out


def _check_suites(inputs: list[tuple[str, dict[str, Any]]], *, force: bool) -> None:
    first_name, first = inputs[0]
    want = (first.get("suite") or {}).get("sha256")
    for name, data in inputs[1:]:
        got = (data.get("suite") or {}).get("sha256")
        if got != want and not force:
            a = (first.get("suite") or {}).get("name")
            b = (data.get("suite") or {}).get("name")
            raise UserError(
                f"{name} comes from a different suite than {first_name} "
                f"({b!r} sha256 {str(got)[:12]} vs {a!r} sha256 {str(want)[:12]}): "
                "its cases do not add up to one run; use --force to merge anyway"
            )


def _shard_sources(suite: dict[str, Any]) -> list[str]:
    """Where a file's shards' K/N came from (`--shard auto`'s source, `cli`), merged files included."""
    if suite.get("shard_sources"):
        return [str(s) for s in suite["shard_sources"]]
    return [str(suite["shard_source"])] if suite.get("shard_source") else []


def _check_shards(
    inputs: list[tuple[str, dict[str, Any]]], *, force: bool, notes: list[str], allow_missing: bool = False
) -> list[str]:
    """The shard texts of the inputs (merged files contribute their `shards`), checked."""
    texts: list[str] = []
    for _, data in inputs:
        suite = data.get("suite") or {}
        if suite.get("shard"):
            texts.append(str(suite["shard"]))
        texts.extend(str(s) for s in suite.get("shards") or [])
    if not texts:
        return []

    parsed = []
    for text in texts:
        try:
            parsed.append(parse_shard(text))
        except UserError:
            raise UserError(f"an input records a malformed shard {text!r}") from None
    counts = sorted({n for _, n in parsed})
    if len(counts) > 1 and not force:
        raise UserError(
            f"the inputs are shards of different splits ({', '.join(texts)}): shards of N={counts[0]} and "
            f"N={counts[1]} overlap or leave gaps; use --force to merge anyway"
        )
    if len(counts) == 1:
        n = counts[0]
        missing = sorted(set(range(1, n + 1)) - {k for k, _ in parsed})
        if missing:
            shown = ", ".join(f"{k}/{n}" for k in missing)
            if not allow_missing:
                raise UserError(
                    f"shards missing: {shown} (the merged file would not be the whole suite); "
                    "merge them too, or pass --allow-missing to merge what is there"
                )
            notes.append(f"shards missing: {shown} (the merged file is not the whole suite)")
    return sorted(dict.fromkeys(texts), key=lambda t: parse_shard(t)[::-1])
