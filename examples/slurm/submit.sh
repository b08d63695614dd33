#!/bin/bash
# Submit the shard array, then the merge job that waits for all of it to succeed.
# Run from the checkout: bash examples/slurm/submit.sh [sbatch options for the array...]
set -euo pipefail
ARRAY_JOB=$(sbatch --parsable "$@" examples/slurm/bench-array.sh)
ARRAY_JOB=${ARRAY_JOB%%;*}          # "id;cluster" on a multi-cluster setup
MERGE_JOB=$(sbatch --parsable --dependency="afterok:$ARRAY_JOB" --export="ALL,ARRAY_JOB=$ARRAY_JOB" \
  examples/slurm/bench-merge.sh)
echo "array $ARRAY_JOB, merge ${MERGE_JOB%%;*}: results/$ARRAY_JOB/merged.json"
