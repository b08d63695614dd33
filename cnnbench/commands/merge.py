"""`bench.py merge FILES... --out FILE`: join the results files of a sharded run into one.

The work is `merge_results` (pure: loaded dicts in, a results dict out); this module reads the
files, writes the merged one and prints a summary. No torch import.

What the merged file holds (a valid results file of the current schema, so `compare` and
`report` read it like any other):
- `cases`: every case of every input, in input order. The same key in two inputs is refused,
  naming the key and both files: a case is measured by exactly one shard, and silently keeping
  one of two measurements would hide a misconfigured matrix.
- each record gains `measured_on`: `hostname`, `machine_fingerprint`, `source` (the input file's
  name) and `environment` (an index into `environments`).
- `environments`: the full environment of each input file, with its `source`, in input order.
  Merging merged files keeps their records' original `measured_on` (indices are renumbered).
- `environment`: a summary: the fields on which all environments agree keep their value, the
  others are null (named in `environment.merged.differing_fields`), so a tool that reads only the
  top-level environment never attributes a case to the wrong machine.
- `suite`: the first input's suite section with `shard` removed and `shards` (the "K/N" texts
  merged) added.

Inputs from different suites (different `suite.sha256`) or from different splits (shards of
different N) are refused unless `--force`: their cases do not add up to one suite. A set with a
shard missing (1/4, 2/4, 4/4) is refused unless `--allow-missing`: the merged file would look
like the whole suite. `suite.shard_source` (where `--shard auto` read K/N) is kept when all
inputs agree on it, else null with the sources listed in `suite.shard_sources`.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
from pathlib import Path
from typing import Any

from cnnbench.errors import UserError

HELP = "join the results files of a sharded run (one per machine) into one results file"
ORDER = 25
DESCRIPTION = """\
Join results files written by `bench.py run SUITE --shard K/N` on N machines into one results
file that `report` and `compare` read like any other. Refuses a case key present in two files
(naming the key and both files), and files from different suites (suite sha256) or different
shard counts unless --force, a set with a shard missing unless --allow-missing, and never
overwrites an existing --out without --replace (nor one of its inputs). Each case records which
machine measured it (`measured_on`: hostname, machine fingerprint, source file); all input
environments are kept under `environments`.
Exit codes: 0 merged, 2 usage or input error. See docs/scale.md.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", metavar="FILE", help="results files to merge (e.g. one per shard)")
    parser.add_argument("--out", "-o", required=True, metavar="FILE", help="the merged results file to write")
    parser.add_argument(
        "--replace",
        action="store_true",
        help="overwrite an existing --out (without it an existing file is never overwritten; an input never is)",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="merge files from different suites or shard counts anyway (duplicate keys are still refused)",
    )
    parser.add_argument(
        "--allow-missing",
        action="store_true",
        help="merge a set with shards missing (e.g. one failed job); the merged file lists the shards it holds",
    )


def run(args: argparse.Namespace) -> int:
    from cnnbench.results import load_results, write_results

    paths = [str(p) for p in args.files]
    seen: dict[str, str] = {}
    for p in paths:
        real = os.path.realpath(p)
        if real in seen:
            raise UserError(f"{p}: given twice (also as {seen[real]})")
        seen[real] = p
    out = Path(args.out)
    if os.path.realpath(out) in seen:
        raise UserError(f"{out}: --out is one of the files to merge; write the merged file elsewhere")
    if out.exists() and not args.replace:
        raise UserError(f"{out}: exists; pass --replace to overwrite it, or choose another --out")
    loaded = [(p, load_results(p)) for p in paths]
    merged, notes = merge_results(loaded, force=args.force, allow_missing=args.allow_missing)
    from cnnbench.commands.run import results_lock

    with results_lock(out):  # never two writers on one file, as for `run`
        write_results(out, merged)
    for note in notes:
        print(f"warning: {note}", file=sys.stderr)
    hosts = sorted({str(r["measured_on"].get("hostname")) for r in merged["cases"]})
    shards = merged["suite"].get("shards") or []
    what = f" (shards {', '.join(shards)})" if shards else ""
    print(
        f"{args.out}: {len(merged['cases'])} cases from {len(paths)} files{what}, "
        f"measured on {len(hosts)} host{'s' if len(hosts) != 1 else ''}: {', '.join(hosts)}"
    )
    return 0


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
    from cnnbench.results import new_results, now_iso

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
                index = offset + int(previous.get("environment") or 0)
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
    from cnnbench.shard import parse_shard

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
