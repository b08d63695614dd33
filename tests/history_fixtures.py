"""Test helpers for the history store: synthetic results files and a throwaway PostgreSQL cluster.

`make_results` writes the shape `bench.py run` writes (environment with git and machine
fingerprint, records with per-process runs and samples) with chosen latencies, so store,
history and baseline tests know the truth. `postgres_cluster` starts a real server
(initdb + pg_ctl in a temporary directory, on 127.0.0.1 and a free port) and stops it.
"""

from __future__ import annotations

import contextlib
import glob
import os
import random
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Iterator, Sequence

from cnnbench.results.schema import SCHEMA_VERSION

from cnnbench.results.format import build_record
from cnnbench.core.spec import CaseSpec


def make_spec(model: str = "resnet18", backend: str = "eager", device: str = "cpu", batch: int = 1) -> CaseSpec:
    return CaseSpec(model=model, batch_size=batch, input_size=(3, 32, 32), backend=backend, device=device, threads=1)


def make_record(spec: CaseSpec, level_ms: float, *, processes: int = 3, samples: int = 30, seed: int = 0,
                noise: float = 0.01, status: str = "ok") -> dict:
    rng = random.Random(f"{spec.key}/{level_ms}/{seed}")
    runs = []
    for _ in range(processes):
        proc = level_ms * (1 + rng.gauss(0, noise))
        runs.append({
            "status": status, "samples_ms": [proc * (1 + abs(rng.gauss(0, 0.02))) for _ in range(samples)],
            "warmup_ms": [proc * 2], "first_call_ms": proc * 5, "block_size": 1, "stop_reason": "max_time",
        })  # fmt: skip
    if status != "ok":
        runs = [{"status": status, "error": "boom"}]
    return build_record(spec, runs)


def make_results(cases: dict[CaseSpec, float], *, commit: str | None, branch: str | None = "main",
                 time: str = "2026-11-01T00:00:00+00:00", machine: str = "m0000000000000001", suite: str = "ci",
                 seed: int = 0, processes: int = 3, noise: float = 0.01) -> dict:
    env = {
        "hostname": "host", "cpu_model": "cpu", "torch": "2.14.1", "torchvision": "0.29.1", "onnxruntime": "1.31.1",
        "python": "3.11.7", "machine_fingerprint": machine,
        "git": {"commit": commit, "dirty": False, "branch": branch, "commit_time": time},
    }  # fmt: skip
    return {
        "schema_version": SCHEMA_VERSION, "tool": "cnnbench", "created": time, "updated": time,
        "environment": env, "suite": {"name": suite, "thresholds": {}},
        "cases": [make_record(s, ms, seed=seed, processes=processes, noise=noise) for s, ms in cases.items()],
    }  # fmt: skip


def sha(i: int) -> str:
    return f"{i:08d}" + "abcdef0123456789abcdef0123456789"


def commit_time(i: int) -> str:
    return f"2026-10-{1 + i // 24:02d}T{i % 24:02d}:00:00+00:00"


# -- PostgreSQL ---------------------------------------------------------------------------------


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def postgres_cluster() -> Iterator[str]:
    """Yield the URL of a fresh database on a throwaway local server; raise RuntimeError with
    the reason when no server can be started (the caller skips)."""
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if not (initdb and pg_ctl):
        raise RuntimeError("PostgreSQL is not installed (apt-get install -y postgresql)")
    as_user: Sequence[str] = ()
    work = Path(tempfile.mkdtemp(prefix="cnnbench-pg-"))
    if os.geteuid() == 0:  # the server refuses to run as root: run it as the `postgres` user
        runuser = shutil.which("runuser")
        if not runuser:
            raise RuntimeError("running as root and no runuser to start PostgreSQL as another user")
        try:
            shutil.chown(work, user="postgres")
        except (LookupError, OSError) as exc:
            raise RuntimeError(f"running as root and cannot hand a directory to user postgres ({exc})") from exc
        as_user = (runuser, "-u", "postgres", "--")
    data, log = work / "data", work / "server.log"
    port = _free_port()
    started = False
    try:
        def run(*argv: str) -> None:
            proc = subprocess.run([*as_user, *argv], capture_output=True, text=True, timeout=120)
            if proc.returncode != 0:
                tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
                raise RuntimeError(f"{Path(argv[0]).name} failed: {' | '.join(tail)}")

        run(initdb, "-D", str(data), "-U", "cnnbench", "--auth=trust", "-E", "UTF8", "--no-sync")
        opts = f"-p {port} -k {work} -c listen_addresses=127.0.0.1 -c fsync=off"
        run(pg_ctl, "-D", str(data), "-o", opts, "-l", str(log), "-w", "-t", "60", "start")
        started = True
        import psycopg

        with psycopg.connect(host="127.0.0.1", port=port, user="cnnbench", dbname="postgres", autocommit=True) as conn:
            conn.execute("CREATE DATABASE cnnbench_test")
        yield f"postgresql://cnnbench@127.0.0.1:{port}/cnnbench_test"
    finally:
        if started:
            subprocess.run([*as_user, pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"],
                           capture_output=True, timeout=60)  # fmt: skip
        shutil.rmtree(work, ignore_errors=True)


def reset_postgres(url: str) -> None:
    """Drop every table of the test database (each test starts from an empty store)."""
    import sqlalchemy as sa

    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1), poolclass=sa.pool.NullPool)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP SCHEMA public CASCADE"))
        conn.execute(sa.text("CREATE SCHEMA public"))
    engine.dispose()
