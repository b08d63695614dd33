#!/bin/bash
# Join the array's shard files once every task has succeeded (submitted with
# --dependency=afterok:ARRAY_JOB by examples/slurm/submit.sh). No torch needed.
#SBATCH --job-name=cnnbench-merge
#SBATCH --cpus-per-task=1
#SBATCH --time=00:10:00
#SBATCH --output=cnnbench-merge-%j.out
set -euo pipefail
cd "$SLURM_SUBMIT_DIR"
PYTHON=${PYTHON:-.venv/bin/python}
OUT=${OUT:-results/$ARRAY_JOB}
"$PYTHON" bench.py merge "$OUT"/shard-*.json --out "$OUT/merged.json"
