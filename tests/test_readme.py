"""Every command in the README's ```bash blocks, checked from this checkout as a new user runs it.

Each command is classified below at one explicit level, and the test fails for a README command
that is not classified (or a classification whose command left the README), so a new line in the
README cannot go unchecked:

- ``run``: run for real, exactly as written (from the repository root); exit 0.
- ``run-small``: run for real with the stated small overrides appended (fewer epochs, one backend),
  so the test stays cheap; exit 0 and the expected output.
- ``validate``: parsed by bench.py's own argument parser, and the suite it names loaded and
  validated completely (models, filters, imports), without measuring.
- ``parse``: parsed by bench.py's own argument parser; the files it names that a fresh clone has
  must exist. For commands whose inputs are the user's own files (compare, merge, report, ab).
- ``ci``: the setup and test commands, which `.ci/run` itself runs on a clean clone (checked
  here by finding them in `.ci/run`).
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from cnnbench.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PYTHONS = {"python", "python3", ".venv/bin/python"}

# command as written in the README (comment stripped, spaces collapsed) -> (level, overrides)
LEVELS: dict[str, tuple[str, tuple[str, ...]]] = {
    "python3 -m venv .venv": ("ci", ()),
    ".venv/bin/pip install -c constraints.txt -e '.[dev]'": ("ci", ()),
    ".venv/bin/python bench.py run": ("ci", ()),
    ".venv/bin/python -m pytest": ("ci", ()),
    "python bench.py run": ("validate", ()),
    "python bench.py run suites/classics.yaml --out results/classics.json": ("validate", ()),
    "python bench.py run suites/classics.yaml --models 'resnet*' --repeats 3": ("validate", ()),
    "python bench.py list models 'resnet*'": ("run", ()),
    "python bench.py run --models resnet18,mobilenet_v2 --batch-sizes 1,8 --backends eager,onnxrt --print-suite": ("run", ()),
    "python bench.py list models --details": ("run", ()),
    "python bench.py list suites": ("run", ()),
    "python bench.py run suites/classics.yaml --shard 2/4 --out shard2.json": ("validate", ()),
    "python bench.py merge shard*.json --out merged.json": ("parse", ()),
    "python bench.py compare base.json current.json": ("parse", ()),
    "python bench.py ab suites/ci.yaml --base-path ../main-checkout": ("validate", ()),
    "python bench.py report results/classics.json --out report/": ("parse", ()),
    "python bench.py profile vgg16": ("run", ()),
    "python bench.py accuracy lenet5 --dataset digits --weights examples/digits/lenet5_digits.pt": (
        "run-small", ("--backend", "eager")),  # compile and onnxrt add ~40 s; eager checks the weights
    "python examples/digits/train_lenet5.py": ("run-small", ("--epochs", "1", "--out", "{tmp}/w.pt")),
    "python bench.py run suites/digits-accuracy.yaml": ("validate", ()),
    "python bench.py list backends": ("run", ()),
    "python bench.py list models 'timm:resnet1*'": ("run", ()),
    "python bench.py run suites/classics.yaml --shard auto --out shard.json": ("parse", ()),  # K/N from a scheduler
    "python bench.py show results/classics.json --wide": ("parse", ()),
    "python bench.py run suites/ci.yaml --store": ("validate", ()),
    "python bench.py history 'resnet*'": ("parse", ()),
    "python bench.py compare --baseline-db sqlite:///results/history.sqlite --branch main --window 5 current.json": ("parse", ()),
}


def readme_commands(text: str) -> list[str]:
    """The commands of every ```bash block: one per line and per `&&` part, comments stripped."""
    out = []
    for block in re.findall(r"^```bash\n(.*?)^```", text, flags=re.M | re.S):
        for line in block.splitlines():
            words = shlex.split(line, comments=True)
            if not words:
                continue
            # Re-quote as written (shlex.join would quote differently); split on && between commands.
            text_line = line.split(" #", 1)[0].strip() if " #" in line else line.strip()
            for part in text_line.split("&&"):
                out.append(" ".join(part.split()))
    return out


COMMANDS = readme_commands(README.read_text(encoding="utf-8"))


def test_every_readme_command_is_classified_and_every_classification_is_in_the_readme():
    assert COMMANDS, "no ```bash block found in the README"
    assert [c for c in COMMANDS if c not in LEVELS] == [], "classify the new README command(s) in LEVELS"
    assert [c for c in LEVELS if c not in COMMANDS] == [], "a classified command left the README"


def _argv(command: str) -> list[str]:
    words = shlex.split(command)
    assert words[0] in PYTHONS, command
    return words[1:]


def _bench_args(command: str):
    argv = _argv(command)
    assert argv[0] == "bench.py", command
    try:
        return build_parser().parse_args(argv[1:])
    except SystemExit as exc:  # argparse's way of refusing
        pytest.fail(f"bench.py's parser refuses {command!r} (exit {exc.code})")


@pytest.mark.parametrize("command", [c for c, (lvl, _) in LEVELS.items() if lvl in ("parse", "validate")])
def test_parse_level_commands_parse_and_name_files_that_exist(command):
    args = _bench_args(command)
    for word in _argv(command)[2:]:
        if word.startswith(("suites/", "examples/")):
            assert (ROOT / word).exists(), f"{command!r} names {word}, which a fresh clone lacks"
    if LEVELS[command][0] == "validate":
        from cnnbench.suite.schema import load_suite

        suite_path = ROOT / (getattr(args, "suite", None) or "suites/smoke.yaml")
        suite = load_suite(suite_path, check_imports=True)
        cases = list(suite.cases)
        models = getattr(args, "models", None)
        if models:
            import fnmatch

            globs = [models] if isinstance(models, str) else models
            cases = [c for c in cases if any(fnmatch.fnmatchcase(c.model, g) for g in globs)]
        assert cases, f"{command!r} selects no case"
        if getattr(args, "shard", None):
            from cnnbench.run.shard import apply_shard

            assert apply_shard(cases, args.shard), f"{command!r}: its shard is empty"


def test_ci_level_commands_are_what_ci_runs():
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    for command, (level, _) in LEVELS.items():
        if level != "ci":
            continue
        words = command.split()
        # .ci/run adds quieter flags (-q, -ra); every word of the README command must be there in order.
        pattern = r"\s+(?:-\S+\s+)*".join(re.escape(w) for w in words)
        assert re.search(pattern, ci), f".ci/run does not run the README's {command!r}"


def _run(command: str, overrides: tuple[str, ...], tmp_path: Path) -> subprocess.CompletedProcess:
    argv = [sys.executable, *_argv(command), *(o.replace("{tmp}", str(tmp_path)) for o in overrides)]
    env = {**__import__("os").environ, "PYTHONPATH": str(ROOT), "CNNBENCH_CACHE_DIR": str(tmp_path / "cache")}
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)


@pytest.mark.parametrize(
    "command,expect",
    [
        ("python bench.py list models 'resnet*'", r"^resnet18\nresnet34\nresnet50\nresnet101\nresnet152\n"),
        ("python bench.py list models --details", r"lenet5\s+seeds\s+1x32x32"),
        ("python bench.py list suites", r"suites/smoke\.yaml"),
        ("python bench.py run --models resnet18,mobilenet_v2 --batch-sizes 1,8 --backends eager,onnxrt --print-suite",
         r"^models: \[resnet18, mobilenet_v2\]\nbatch_sizes: \[1, 8\]\nbackends: \[eager, onnxrt\]"),
        ("python bench.py list backends", r"^onnxrt\s+cpu\s+runs: fp32"),
        ("python bench.py list models 'timm:resnet1*'", r"^timm:resnet18$"),
    ],
)
def test_cheap_commands_run_as_written(command, expect, tmp_path):
    assert LEVELS[command][0] == "run"
    proc = _run(command, (), tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert re.search(expect, proc.stdout, flags=re.M), proc.stdout[:2000]


@pytest.mark.slow
def test_profile_runs_as_written(tmp_path):
    command = "python bench.py profile vgg16"
    assert LEVELS[command][0] == "run"
    proc = _run(command, (), tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "138,357,544" in proc.stdout  # VGG-16's parameter count, as published


@pytest.mark.slow
def test_the_accuracy_quick_start_line_works_on_a_fresh_clone(tmp_path):
    command = "python bench.py accuracy lenet5 --dataset digits --weights examples/digits/lenet5_digits.pt"
    level, overrides = LEVELS[command]
    assert level == "run-small"
    proc = _run(command, overrides, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    m = re.search(r"eager\s+│\s+ok\s+│\s+([\d.]+)", proc.stdout)
    assert m and float(m.group(1)) >= 95.0, proc.stdout  # the shipped weights: 97.33% here


@pytest.mark.slow
def test_the_training_script_runs_and_writes_weights_with_their_checksum(tmp_path):
    from cnnbench.results.checksums import verify_sidecar

    command = "python examples/digits/train_lenet5.py"
    level, overrides = LEVELS[command]
    assert level == "run-small"
    proc = _run(command, overrides, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert verify_sidecar(tmp_path / "w.pt") is not None


def test_the_shipped_weights_match_their_checksum():
    from cnnbench.results.checksums import sha256_of, sidecar_path, verify_sidecar

    weights = ROOT / "examples" / "digits" / "lenet5_digits.pt"
    assert sidecar_path(weights).is_file(), "the shipped weights lost their .sha256"
    assert verify_sidecar(weights) == sha256_of(weights)
