#!/bin/bash
# One shard of a suite per array task. Submit with examples/slurm/submit.sh, or:
#   ARRAY_JOB=$(sbatch --parsable examples/slurm/bench-array.sh)
# `--shard auto` reads K/N from SLURM_ARRAY_TASK_ID/_MIN/_COUNT (K = ID - MIN + 1, N = COUNT) and
# records `shard_source: slurm`; an array with a step or gaps (--array=0-15:2, 1,3,7) is refused.
# Every #SBATCH line can be overridden on the sbatch command line (--array=0-3, --cpus-per-task=2).
#SBATCH --job-name=cnnbench
#SBATCH --array=0-7                 # 8 shards
#SBATCH --cpus-per-task=8           # match `threads:` in the suite
#SBATCH --exclusive                 # nothing else on the node while it measures
#SBATCH --time=02:00:00
#SBATCH --output=cnnbench-%A_%a.out
set -euo pipefail
cd "$SLURM_SUBMIT_DIR"              # the checkout sbatch was run from
PYTHON=${PYTHON:-.venv/bin/python}
SUITE=${SUITE:-suites/classics.yaml}
OUT=${OUT:-results/$SLURM_ARRAY_JOB_ID}
mkdir -p "$OUT"
# exit code 1 = some case not ok (recorded in the file): the task still succeeds; 2 = bad suite
# or shard variables: the task fails, and the afterok merge job never runs
"$PYTHON" bench.py run "$SUITE" --shard auto --out "$OUT/shard-$SLURM_ARRAY_TASK_ID.json" || [ $? -eq 1 ]
