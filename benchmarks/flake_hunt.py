"""Run the tests that assert a measured magnitude of a real run many times, alone and on a loaded
machine, and count their failures (docs/reliability.md, "Measured magnitudes").

The set is the `measured` pytest marker (pyproject.toml): every test that asserts a memory
figure, a time, or a sum or ratio of them, from a real run, and is cheap enough to repeat. Each
iteration is one pytest process over the whole set (the torch import and the collection are
paid once per iteration, not once per test). Iterations alternate: one on the machine as it is,
then one with a busy process per CPU that this script starts, waits for (each says it spins),
and stops again, so whatever else the machine does meanwhile falls on both columns alike.

    python benchmarks/flake_hunt.py --runs 20 --out benchmarks/data/flake_hunt-DATE.txt

Prints (and with --out also writes) a table: test id, runs, failures alone, failures loaded,
plus the load average (os.getloadavg, as `uptime` shows it) before, between and after, and the
first line of each failure. Exit 1 when any test failed or errored in any iteration.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPIN = "import sys\nsys.stdout.write('spinning\\n'); sys.stdout.flush()\nwhile True:\n    pass\n"


def collect(python: str, marker: str) -> list[str]:
    """The node ids of the tests carrying `marker`."""
    proc = subprocess.run([python, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", "-m", marker],
                          cwd=ROOT, capture_output=True, text=True)  # fmt: skip
    ids = [ln.strip() for ln in proc.stdout.splitlines() if "::" in ln and not ln.startswith(" ")]
    if not ids:
        raise SystemExit(f"no test is marked {marker!r}:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return ids


class Load:
    """One busy process per CPU, started and stopped by this script."""

    def __init__(self, n: int):
        self.n = n
        self.procs: list[subprocess.Popen] = []

    def __enter__(self) -> "Load":
        for _ in range(self.n):
            self.procs.append(subprocess.Popen([sys.executable, "-c", SPIN], stdout=subprocess.PIPE, text=True))
        for p in self.procs:  # an event, not a sleep: each one has started spinning
            if p.stdout.readline().strip() != "spinning":
                raise RuntimeError("a load process did not start")
        return self

    def __exit__(self, *exc) -> None:
        for p in self.procs:
            p.kill()
        for p in self.procs:
            p.wait()
            p.stdout.close()
        self.procs = []


def outcomes(junit: Path) -> dict[str, tuple[str, str]]:
    """node id -> (outcome, first line of the message) from pytest's JUnit XML."""
    out: dict[str, tuple[str, str]] = {}
    if not junit.exists():
        return out
    for case in ET.parse(junit).getroot().iter("testcase"):
        module = case.get("classname", "").replace(".", "/")
        node = f"{module}.py::{case.get('name')}"
        outcome, message = "passed", ""
        for tag in ("failure", "error", "skipped"):
            el = case.find(tag)
            if el is not None:
                outcome = {"failure": "failed", "error": "error", "skipped": "skipped"}[tag]
                text = (el.get("message") or el.text or "").strip()
                message = text.splitlines()[0][:200] if text else ""
                break
        out[node] = (outcome, message)
    return out


def run_once(python: str, files: list[str], marker: str, junit: Path, timeout_s: float) -> tuple[dict, float, int]:
    t0 = time.monotonic()
    try:
        proc = subprocess.run([python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", marker,
                               f"--junitxml={junit}", *files],
                              cwd=ROOT, capture_output=True, text=True, timeout=timeout_s)  # fmt: skip
        code = proc.returncode
    except subprocess.TimeoutExpired:
        code = -1
    return outcomes(junit), time.monotonic() - t0, code


def loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=20, help="iterations per condition (default 20)")
    ap.add_argument("--marker", default="measured", help="pytest marker of the set (default: measured)")
    ap.add_argument("--load", type=int, default=os.cpu_count() or 1, help="busy processes when loaded (default: one per CPU)")
    ap.add_argument("--timeout", type=float, default=1800.0, help="seconds allowed for one iteration")
    ap.add_argument("--out", type=Path, help="also write the report here")
    args = ap.parse_args(argv)
    if args.runs < 1 or args.load < 1:
        ap.error("--runs and --load must be at least 1")

    python = sys.executable
    ids = collect(python, args.marker)
    files = sorted({i.split("::")[0] for i in ids})
    started = dt.datetime.now()
    intro = [
        f"flake hunt {started:%Y-%m-%d %H:%M}: {len(ids)} tests marked {args.marker!r}, {args.runs} runs alone "
        f"and {args.runs} with {args.load} busy process(es) (interleaved); {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}",
        f"command: python benchmarks/flake_hunt.py {' '.join(sys.argv[1:] if argv is None else argv)}",
        f"load average (1, 5, 15 min) at the start: {loadavg()}",
    ]
    print("\n".join(intro), flush=True)
    progress: list[str] = []
    fails: dict[str, dict[str, int]] = defaultdict(lambda: {"alone": 0, "loaded": 0})
    skips: dict[str, dict[str, int]] = defaultdict(lambda: {"alone": 0, "loaded": 0})
    seen: dict[str, dict[str, int]] = defaultdict(lambda: {"alone": 0, "loaded": 0})
    messages: list[str] = []
    walls: dict[str, list[float]] = {"alone": [], "loaded": []}
    loads: dict[str, list[float]] = {"alone": [], "loaded": []}
    with tempfile.TemporaryDirectory(prefix="flake-hunt-") as tmp:
        for i in range(args.runs):
            for cond in ("alone", "loaded"):
                junit = Path(tmp) / f"{cond}-{i}.xml"
                if cond == "loaded":
                    with Load(args.load):
                        got, wall, code = run_once(python, files, args.marker, junit, args.timeout)
                else:
                    got, wall, code = run_once(python, files, args.marker, junit, args.timeout)
                walls[cond].append(wall)
                loads[cond].append(os.getloadavg()[0])
                if code not in (0, 1) or not got:
                    messages.append(f"[{cond} {i + 1}] pytest exit {code}, no per-test results")
                for node in ids:
                    outcome, message = got.get(node, ("missing", "no result"))
                    seen[node][cond] += 1
                    if outcome == "skipped":
                        skips[node][cond] += 1
                    elif outcome != "passed":
                        fails[node][cond] += 1
                        messages.append(f"[{cond} {i + 1}] {node}: {outcome}: {message}")
                bad = sum(1 for n in ids if got.get(n, ("missing",))[0] not in ("passed", "skipped"))
                progress.append(f"  {cond:6} {i + 1:2}/{args.runs}: {wall:6.1f} s, load {loadavg()}, {bad} failed")
                print(progress[-1], flush=True)

    width = max(len(n) for n in ids)
    table = [f"{'test':{width}}  runs  failures alone  failures loaded  skipped",
             f"{'-' * width}  ----  --------------  ---------------  -------"]
    for node in ids:
        runs = seen[node]["alone"]
        sk = skips[node]["alone"] + skips[node]["loaded"]
        table.append(f"{node:{width}}  {runs:4}  {fails[node]['alone']:14}  {fails[node]['loaded']:15}  {sk:7}")
    med = lambda xs: sorted(xs)[len(xs) // 2]  # noqa: E731
    lines = [
        "",
        *table,
        "",
        f"iteration wall time, median: alone {med(walls['alone']):.1f} s, loaded {med(walls['loaded']):.1f} s; "
        f"whole hunt {(dt.datetime.now() - started).total_seconds() / 60:.1f} min",
        f"1-min load average after each iteration, median (min-max): alone {med(loads['alone']):.2f} "
        f"({min(loads['alone']):.2f}-{max(loads['alone']):.2f}), loaded {med(loads['loaded']):.2f} "
        f"({min(loads['loaded']):.2f}-{max(loads['loaded']):.2f})",
        f"load average (1, 5, 15 min) at the end: {loadavg()}",
    ]
    if messages:
        lines += ["", "failures:", *messages]
    print("\n".join(lines), flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("\n".join(intro + progress + lines) + "\n", encoding="utf-8")
    return 1 if any(f["alone"] or f["loaded"] for f in fails.values()) or any("no per-test" in m for m in messages) else 0


if __name__ == "__main__":
    sys.exit(main())
