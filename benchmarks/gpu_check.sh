#!/usr/bin/env bash
# Check every CUDA path of cnnbench on this machine's one NVIDIA GPU, in under 8 minutes.
#
#   bash benchmarks/gpu_check.sh [gpu_check.py options]      e.g. --only nvml_energy
#
# Runs from the checkout: no `pip install`, the checkout goes on PYTHONPATH, and the machine's
# own torch is used whatever its version (it may differ from the pinned one). Dependencies the
# machine lacks (onnxruntime-gpu, onnx, nvidia-ml-py...) can be carried as wheels in .whl/ at
# the checkout root (or $CNNBENCH_WHEELS): they are installed with --no-deps into /tmp/site
# (or $CNNBENCH_SITE), which goes on PYTHONPATH after the checkout. Carry only what is missing:
# a carried numpy would shadow the one the machine's torch was built against.
#
# Prints a pass/fail table and the figures; with $OUT set (or --out DIR) writes
# gpu_check.json and gpu_check.txt there. Exit codes: 0 all passed or skipped with a reason,
# 1 a check failed, 3 no CUDA device, 124 the time limit ($GPU_CHECK_TIMEOUT s, default 470) hit.
# See docs/gpu.md.
set -u
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-python3}"
WHEELS="${CNNBENCH_WHEELS:-$HERE/.whl}"
SITE="${CNNBENCH_SITE:-/tmp/site}"
PATHS="$HERE"
if compgen -G "$WHEELS/*.whl" >/dev/null; then
    echo "gpu_check: installing $(ls "$WHEELS"/*.whl | wc -l) carried wheel(s) from $WHEELS into $SITE" >&2
    if "$PY" -m pip install --quiet --no-index --no-deps --disable-pip-version-check --target "$SITE" "$WHEELS"/*.whl >&2; then
        PATHS="$HERE:$SITE"
    else
        echo "gpu_check: warning: the carried wheels did not install; continuing without them" >&2
    fi
elif [ -d "$SITE" ]; then
    PATHS="$HERE:$SITE"  # installed by an earlier run
fi
export PYTHONPATH="$PATHS${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONDONTWRITEBYTECODE=1
exec timeout --kill-after=10 "${GPU_CHECK_TIMEOUT:-470}" "$PY" "$HERE/benchmarks/gpu_check.py" "$@"
