"""A real Slurm run end to end: a one-node cluster (munged, slurmctld and slurmd from Debian's
munge and slurm-wlm, configured here in a temporary directory, all on localhost), a job array of
four shards of a small suite run with `--shard auto`, and a merge job that depends on the array
(`--dependency=afterok`). The merged file must hold every case of the suite once, from four
shards, with `shard_source: slurm`.

Nothing here sleeps to synchronise: each wait polls for an event (a socket, the node turning
idle, the merge job's exit-code file, a daemon's pid going away) under a deadline. CI (root)
installs the packages in .ci/run; elsewhere the test is skipped when they are missing or when
not root (slurmd must be root to start jobs for users), with that reason.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest

from cnnbench.results.format import load_results
from cnnbench.suite.schema import load_suite

ROOT = Path(__file__).resolve().parents[1]
BINARIES = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "sinfo")
START_TIMEOUT_S = 90.0
JOBS_TIMEOUT_S = 600.0

SUITE = """\
name: slurm-e2e
models: [lenet5, mnist_cnn, mnist_cnn_bn, mnist_fcn]
batch_sizes: [1]
threads: 1
measure: {warmup: 1, min_time_s: 0.05, max_time_s: 0.2, min_samples: 5, repeats: 1, timeout_s: 240}
"""


# the daemons live in /usr/sbin, which a non-login PATH may lack
PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])


def _missing_reason() -> str | None:
    missing = [b for b in BINARIES if shutil.which(b, path=PATH) is None]
    if missing:
        return f"{', '.join(missing)} not found (apt-get install slurm-wlm munge; .ci/run does)"
    if os.geteuid() != 0:
        return "slurmd must run as root to start jobs (CI runs as root)"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(what: str, ready: Callable[[], bool], timeout_s: float, diagnose: Callable[[], str]) -> None:
    """Poll `ready` (an event: a file, a state) until it holds or the deadline passes."""
    deadline = time.monotonic() + timeout_s
    while not ready():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what}\n{diagnose()}")
        time.sleep(0.2)


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return f"--- {path.name}\n" + "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"--- {path.name}: absent"


def _node_line() -> str:
    """This machine as slurmd sees it (CPUs, sockets, cores, threads, RealMemory), renamed
    localhost: a node configured bigger than it is would be drained."""
    out = subprocess.run(
        ["slurmd", "-C"], env={**os.environ, "PATH": PATH}, capture_output=True, text=True, check=True
    ).stdout
    line = next(ln for ln in out.splitlines() if ln.startswith("NodeName="))
    return re.sub(r"^NodeName=\S+", "NodeName=localhost NodeAddr=127.0.0.1", line)


class Cluster:
    def __init__(self, base: Path):
        self.base = base
        self.conf = base / "slurm.conf"
        self.run_dir = base / "run"  # munged's socket: every parent must be searchable by all
        self.logs = base / "log"
        self.env = {**os.environ, "SLURM_CONF": str(self.conf), "PATH": PATH}
        self.pids: dict[str, Path] = {}

    def sh(self, *cmd: str, check: bool = True) -> str:
        p = subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=60)
        if check and p.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} failed ({p.returncode}): {p.stderr.strip()}\n{self.diagnose()}")
        return p.stdout

    def diagnose(self) -> str:
        parts = [_tail(p) for p in sorted(self.logs.glob("*"))]
        parts += [_tail(p) for p in sorted((self.base / "work").glob("*.out"))]
        return "\n".join(parts)

    def start(self) -> None:
        b = self.base
        for d in ("munge", "run", "log", "state", "spool", "work"):
            (b / d).mkdir()
        os.chmod(b, 0o755)
        os.chmod(b / "munge", 0o700)
        os.chmod(self.run_dir, 0o755)
        key = b / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        os.chmod(key, 0o600)
        sock = self.run_dir / "munge.sock"
        self.pids["munged"] = self.run_dir / "munged.pid"
        subprocess.run(
            ["munged", f"--key-file={key}", f"--socket={sock}", f"--pid-file={self.pids['munged']}",
             f"--seed-file={b / 'munge' / 'seed'}", f"--log-file={self.logs / 'munged.log'}"],
            env=self.env, check=True, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        _wait("munged's socket", sock.exists, START_TIMEOUT_S, self.diagnose)

        self.pids["slurmctld"] = self.run_dir / "slurmctld.pid"
        self.pids["slurmd"] = self.run_dir / "slurmd.pid"
        self.conf.write_text(
            "\n".join(
                [
                    "ClusterName=cnnbench-test",
                    "SlurmctldHost=localhost(127.0.0.1)",
                    f"SlurmctldPort={_free_port()}",
                    f"SlurmdPort={_free_port()}",
                    "SlurmUser=root",
                    "SlurmdUser=root",
                    "AuthType=auth/munge",
                    "CredType=cred/munge",
                    f"AuthInfo=socket={sock}",
                    f"StateSaveLocation={b / 'state'}",
                    f"SlurmdSpoolDir={b / 'spool'}",
                    f"SlurmctldPidFile={self.pids['slurmctld']}",
                    f"SlurmdPidFile={self.pids['slurmd']}",
                    f"SlurmctldLogFile={self.logs / 'slurmctld.log'}",
                    f"SlurmdLogFile={self.logs / 'slurmd.log'}",
                    # no cgroups in a container: track processes by parent pid, bind nothing
                    "ProctrackType=proctrack/linuxproc",
                    "TaskPlugin=task/none",
                    "JobAcctGatherType=jobacct_gather/none",
                    "AccountingStorageType=accounting_storage/none",
                    "JobCompType=jobcomp/none",
                    "MpiDefault=none",
                    "SelectType=select/cons_tres",
                    "SelectTypeParameters=CR_Core",
                    "SchedulerType=sched/backfill",
                    # a dependency that can never be met (a failed shard) cancels the merge job
                    # instead of leaving it pending, so the wait below ends either way
                    "SchedulerParameters=kill_invalid_depend",
                    "ReturnToService=2",
                    "MinJobAge=600",  # keep finished jobs visible to scontrol for the checks
                    _node_line(),
                    "PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP",
                    "",
                ]
            )
        )
        subprocess.run(["slurmctld", "-f", str(self.conf), "-c"], env=self.env, check=True, timeout=60)
        subprocess.run(["slurmd", "-f", str(self.conf), "-N", "localhost"], env=self.env, check=True, timeout=60)

        def idle() -> bool:
            p = subprocess.run(["sinfo", "-h", "-n", "localhost", "-o", "%T"], env=self.env,
                               capture_output=True, text=True, timeout=30)  # fmt: skip
            return p.returncode == 0 and p.stdout.strip() == "idle"

        _wait("the node to register idle", idle, START_TIMEOUT_S, self.diagnose)

    def stop(self) -> None:
        """scontrol shutdown (slurmctld and slurmd), then munged; any of ours still alive after
        its deadline is killed by its own pid."""
        if self.conf.exists():
            subprocess.run(["scontrol", "shutdown"], env=self.env, capture_output=True, timeout=60)
        if self.pids.get("munged") and self.pids["munged"].exists():
            subprocess.run(
                ["munged", "-s", f"--socket={self.run_dir / 'munge.sock'}"],
                env=self.env,
                capture_output=True,
                timeout=60,
            )
        for name, pidfile in self.pids.items():
            try:
                pid = int(pidfile.read_text().split()[0])
            except (OSError, ValueError, IndexError):
                continue
            deadline = time.monotonic() + 30
            while _alive(pid, name) and time.monotonic() < deadline:
                time.sleep(0.2)
            if _alive(pid, name):
                os.kill(pid, signal.SIGKILL)


def _alive(pid: int, name: str) -> bool:
    try:
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return False
    return comm == name[:15]


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    reason = _missing_reason()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"the Slurm test cannot run in CI: {reason}")
        pytest.skip(reason)
    # Not under pytest's tmp_path: its parents are 0700, and munged refuses a socket whose
    # directories are not searchable by every user.
    base = Path(tempfile.mkdtemp(prefix="cnnbench-slurm-", dir="/tmp"))
    c = Cluster(base)
    try:
        c.start()
        yield c
    finally:
        c.stop()
        shutil.rmtree(base, ignore_errors=True)


TERMINAL = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE")


def _job_states(cluster: Cluster, job: str) -> list[tuple[str, str, str]]:
    """(array task id or "", state, exit code) of each job of `job`, from slurmctld."""
    out = cluster.sh("scontrol", "-o", "show", "job", job, check=False)
    rows = []
    for line in out.splitlines():
        task = re.search(r"\bArrayTaskId=(\S+)", line)
        state = re.search(r"\bJobState=(\S+)", line)
        code = re.search(r"\bExitCode=(\S+)", line)
        if state:
            rows.append((task.group(1) if task else "", state.group(1), code.group(1) if code else ""))
    return rows


@pytest.mark.slow
def test_job_array_of_four_shards_then_a_dependent_merge(cluster: Cluster):
    """The shipped recipe, examples/slurm/submit.sh, on a real scheduler: its #SBATCH lines
    overridden for a 1-node, few-core cluster the way a user would (`--array=0-3`, fewer CPUs)."""
    work = cluster.base / "work"
    suite = work / "suite.yaml"
    suite.write_text(SUITE)
    env = {
        **cluster.env,
        "PYTHON": sys.executable,
        "SUITE": str(suite),
        "OUT": str(work),
        "SBATCH_OUTPUT": f"{work}/%x-%j.out",  # job logs out of the checkout
    }
    p = subprocess.run(
        ["bash", "examples/slurm/submit.sh", "--array=0-3", "--cpus-per-task=1"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert p.returncode == 0, f"{p.stdout}{p.stderr}"
    m = re.match(r"array (\d+), merge (\d+):", p.stdout)
    assert m, p.stdout
    array_id, merge_id = m.groups()

    def merge_ended() -> bool:
        states = _job_states(cluster, merge_id)
        return bool(states) and states[0][1] in TERMINAL

    _wait("the merge job to end", merge_ended, JOBS_TIMEOUT_S, cluster.diagnose)
    tasks = sorted(_job_states(cluster, array_id))
    assert tasks == [(str(i), "COMPLETED", "0:0") for i in range(4)], f"{tasks}\n{cluster.diagnose()}"
    assert _job_states(cluster, merge_id) == [("", "COMPLETED", "0:0")], cluster.diagnose()

    expected = {c.key for c in load_suite(suite).cases}
    shards = []
    for i in range(4):
        s = load_results(work / f"shard-{i}.json")["suite"]
        shards.append(s["shard"])
        assert s["shard_source"] == "slurm"
    assert sorted(shards) == ["1/4", "2/4", "3/4", "4/4"]
    merged = json.loads((work / "merged.json").read_text())
    keys = [c["key"] for c in merged["cases"]]
    assert len(keys) == len(set(keys)) == len(expected) and set(keys) == expected  # every case once
    assert merged["suite"]["shards"] == ["1/4", "2/4", "3/4", "4/4"]
    assert merged["suite"]["shard_source"] == "slurm"
    assert all(c["status"] == "ok" for c in merged["cases"]), [c.get("error") for c in merged["cases"]]
    assert len(merged["environments"]) == 4
