"""`--shard auto`: K/N from a Slurm job array, a Kubernetes Indexed Job, PyTorch-CI variables or
CNNBENCH_SHARD; bad or missing variables are one line and exit 2; the source is recorded."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cnnbench.core.errors import UserError
from cnnbench.results.format import load_results
from cnnbench.run.shard import SHARD_SOURCES, resolve_shard, shard_from_environment

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "env, want",
    [
        ({"SLURM_ARRAY_TASK_ID": "0", "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_COUNT": "4"}, (1, 4, "slurm")),
        ({"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_COUNT": "4"}, (4, 4, "slurm")),
        # --array=1-4 and --array=10-13: K counts from the array's first index
        ({"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_MIN": "1", "SLURM_ARRAY_TASK_COUNT": "4"}, (1, 4, "slurm")),
        ({"SLURM_ARRAY_TASK_ID": "12", "SLURM_ARRAY_TASK_MIN": "10", "SLURM_ARRAY_TASK_COUNT": "4"}, (3, 4, "slurm")),
        ({"JOB_COMPLETION_INDEX": "0", "CNNBENCH_SHARD_COUNT": "3"}, (1, 3, "kubernetes")),
        ({"JOB_COMPLETION_INDEX": "2", "CNNBENCH_SHARD_COUNT": "3"}, (3, 3, "kubernetes")),
        ({"SHARD_NUMBER": "2", "NUM_TEST_SHARDS": "5"}, (2, 5, "pytorch-ci")),
        ({"CNNBENCH_SHARD": "3/8"}, (3, 8, "env")),
        ({"CNNBENCH_SHARD": " 3 / 8 ", "SHARD_NUMBER": "3", "NUM_TEST_SHARDS": "8"}, (3, 8, "env")),  # agree
        ({"SLURM_JOB_ID": "7", "CNNBENCH_SHARD": "1/2"}, (1, 2, "env")),  # a plain (non-array) Slurm job
    ],
)
def test_shard_from_the_schedulers_variables(env, want):
    assert shard_from_environment(env) == want


@pytest.mark.parametrize(
    "env, fragment",
    [
        ({}, "no scheduler found"),
        ({"SLURM_JOB_ID": "7"}, "no scheduler found"),
        # a step (--array=0-6:2 has COUNT 4 and ids 0,2,4,6) or gaps put the id out of range
        (
            {"SLURM_ARRAY_TASK_ID": "6", "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_COUNT": "4"},
            "outside SLURM_ARRAY_TASK_MIN",
        ),
        ({"SLURM_ARRAY_TASK_ID": "0", "SLURM_ARRAY_TASK_MIN": "1", "SLURM_ARRAY_TASK_COUNT": "4"}, "outside"),
        ({"SLURM_ARRAY_TASK_ID": "0", "SLURM_ARRAY_TASK_COUNT": "4"}, "SLURM_ARRAY_TASK_MIN is not"),
        ({"SLURM_ARRAY_TASK_ID": "x", "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_COUNT": "4"}, "not an integer"),
        ({"JOB_COMPLETION_INDEX": "0"}, "CNNBENCH_SHARD_COUNT is not"),
        ({"JOB_COMPLETION_INDEX": "3", "CNNBENCH_SHARD_COUNT": "3"}, "outside 0..CNNBENCH_SHARD_COUNT-1"),
        ({"SHARD_NUMBER": "0", "NUM_TEST_SHARDS": "2"}, "1-based"),
        ({"SHARD_NUMBER": "1"}, "NUM_TEST_SHARDS is not"),
        ({"CNNBENCH_SHARD": "5/4"}, "CNNBENCH_SHARD"),
        (
            {"CNNBENCH_SHARD": "1/4", "JOB_COMPLETION_INDEX": "1", "CNNBENCH_SHARD_COUNT": "4"},
            "env says shard 1/4 but kubernetes says 2/4",
        ),
    ],
)
def test_missing_or_inconsistent_variables_are_one_line_errors(env, fragment):
    with pytest.raises(UserError) as err:
        shard_from_environment(env)
    assert fragment in str(err.value) and "\n" not in str(err.value)


def test_resolve_shard_records_where_k_n_came_from():
    assert resolve_shard(None) == (None, None)
    assert resolve_shard("2/4") == ("2/4", "cli")
    assert resolve_shard("auto", {"SHARD_NUMBER": "2", "NUM_TEST_SHARDS": "4"}) == ("2/4", "pytorch-ci")
    assert set(SHARD_SOURCES) == {"env", "slurm", "kubernetes", "pytorch-ci"}


def _clean_env(**extra: str) -> dict[str, str]:
    names = {n for names in SHARD_SOURCES.values() for n in names}
    env = {k: v for k, v in os.environ.items() if k not in names and not k.startswith("SLURM_")}
    return {**env, "PYTHONPATH": str(ROOT), **extra}


def _run(tmp_path: Path, env: dict[str, str], out: Path) -> subprocess.CompletedProcess:
    suite = tmp_path / "s.yaml"
    suite.write_text("name: s\nmodels: [lenet5]\nthreads: 1\n")
    cmd = [sys.executable, "bench.py", "run", str(suite), "--shard", "auto", "--out", str(out), "--quiet"]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_run_shard_auto_without_a_scheduler_is_one_line_exit_2(tmp_path):
    out = tmp_path / "r.json"
    p = _run(tmp_path, _clean_env(), out)
    assert p.returncode == 2 and p.stderr.startswith("error: --shard auto: no scheduler found"), p.stderr
    assert len(p.stderr.strip().splitlines()) == 1 and not out.exists()
    p = _run(tmp_path, _clean_env(SLURM_ARRAY_TASK_ID="9", SLURM_ARRAY_TASK_MIN="0", SLURM_ARRAY_TASK_COUNT="4"), out)
    assert p.returncode == 2 and "outside" in p.stderr and len(p.stderr.strip().splitlines()) == 1


def test_run_shard_auto_records_shard_and_source(tmp_path):
    """A one-case suite split 2 ways: shard 2/2 is empty, so no worker starts."""
    out = tmp_path / "r.json"
    p = _run(tmp_path, _clean_env(JOB_COMPLETION_INDEX="1", CNNBENCH_SHARD_COUNT="2"), out)
    assert p.returncode == 0, p.stderr
    suite = load_results(out)["suite"]
    assert (suite["shard"], suite["shard_source"]) == ("2/2", "kubernetes")


def test_the_kubernetes_example_gives_every_pod_its_own_shard():
    import yaml

    job = yaml.safe_load((ROOT / "examples/k8s/bench-indexed-job.yaml").read_text())
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed"
    (container,) = spec["template"]["spec"]["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert int(env["CNNBENCH_SHARD_COUNT"]) == spec["completions"]
    assert "--shard auto" in " ".join(container["args"])
    n = spec["completions"]
    got = [shard_from_environment({**env, "JOB_COMPLETION_INDEX": str(i)}) for i in range(n)]
    assert got == [(k, n, "kubernetes") for k in range(1, n + 1)]


def test_the_github_actions_example_passes_job_index_and_total_as_cnnbench_shard():
    import yaml

    flow = yaml.safe_load((ROOT / "examples/ci/github-actions-shards.yml").read_text())
    run = next(s["run"] for s in flow["jobs"]["shard"]["steps"] if "--shard auto" in s.get("run", ""))
    assert 'CNNBENCH_SHARD="$(( ${{ strategy.job-index }} + 1 ))/${{ strategy.job-total }}"' in run
    total = len(flow["jobs"]["shard"]["strategy"]["matrix"]["shard"])
    for index in range(total):  # what the runner's shell computes for each job
        line = (
            run.splitlines()[0]
            .replace("${{ strategy.job-index }}", str(index))
            .replace("${{ strategy.job-total }}", str(total))
        )
        value = subprocess.run(
            ["bash", "-c", f"{line}; echo $CNNBENCH_SHARD"], capture_output=True, text=True
        ).stdout.strip()
        assert shard_from_environment({"CNNBENCH_SHARD": value}) == (index + 1, total, "env")
