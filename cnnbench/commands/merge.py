"""`bench.py merge FILES... --out FILE`: join the results files of a sharded run into one.

The work is `cnnbench.run.merge.merge_results` (pure: loaded dicts in, a results dict out); this module reads the
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
import os
from pathlib import Path

from cnnbench.commands import warn
from cnnbench.core.errors import UserError
from cnnbench.results.format import load_results, write_results
from cnnbench.results.lock import results_lock
from cnnbench.run.merge import merge_results
from cnnbench.core.terminal import message_line

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

    with results_lock(out):  # never two writers on one file, as for `run`
        write_results(out, merged)
    for note in notes:
        warn(note)
    hosts = sorted({str(r["measured_on"].get("hostname")) for r in merged["cases"]})
    shards = merged["suite"].get("shards") or []
    what = f" (shards {', '.join(shards)})" if shards else ""
    print(message_line(
        f"{args.out}: {len(merged['cases'])} cases from {len(paths)} files{what}, "
        f"measured on {len(hosts)} host{'s' if len(hosts) != 1 else ''}: {', '.join(hosts)}"
    ))
    return 0
