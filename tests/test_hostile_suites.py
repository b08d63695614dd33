"""Hostile and malformed suites, each through a real `bench.py run FILE` process.

Every variant must end with exit code 2 and one line on stderr that names the file and (where
the problem has one) the field, before any model is built: the process is run with
`-X importtime`, and torch must not be among its imports. No traceback, no results file. How
fast that answer comes (the target: under 2 s) is measured by `benchmarks/suite_limits.py`,
which runs these same variants; a timed assertion here would race a loaded machine's clock.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
HANG_S = 120  # a hang guard, not a target: the answer takes well under 2 s (benchmarks/suite_limits.py)

_OK = "name: t\nmodels: [lenet5]\n"  # a valid start the variants below add one fault to


def _bomb() -> str:
    lines = ["name: t", "models: [lenet5]", 'a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    prev = "a"
    for name in "bcdefghi":
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 9) + "]")
        prev = name
    return "\n".join(lines) + "\n"


def _shared_anchors(matrices: int = 90) -> str:
    """A 1.3 KB suite whose 90 matrices all alias one 10x100x2x5 matrix: 900,000 cases if
    expanded, refused from the axis lengths (suite-wide) before any is built."""
    bs = ", ".join(str(i) for i in range(1, 101))
    two = "[eager, compile]"
    text = (
        "name: t\nmatrices:\n  - &m\n"
        "    models: [lenet5, alexnet, vgg11, vgg13, vgg16, vgg19, resnet18, resnet34, resnet50, resnet101]\n"
        f"    batch_sizes: [{bs}]\n    backends: {two}\n    threads: [1, 2, 3, 4, 5]\n"
    )
    return text + "  - *m\n" * (matrices - 1)


def _garbage() -> bytes:
    rng = random.Random(4)
    return bytes(rng.randrange(256) for _ in range(4096))


# (id, content: str | bytes | "<special>", what stderr must also contain besides the file name)
VARIANTS: list[tuple[str, object, list[str]]] = [
    # wrong types
    ("batch-size-is-a-word", _OK + "batch_sizes: eight\n", ["batch_sizes", "expected an integer"]),
    ("name-is-a-list", "name: [a, b]\nmodels: [lenet5]\n", ["name", "expected a string"]),
    ("warmup-is-a-float", _OK + "measure: {warmup: 2.5}\n", ["measure.warmup", "expected an integer"]),
    ("channels-last-is-a-string", _OK + "channels_last: 'yes'\n", ["channels_last", "expected true or false"]),
    ("measure-is-a-list", _OK + "measure: [1, 2]\n", ["measure", "must be a mapping"]),
    ("kwargs-nested", "name: t\nmodels: [{name: lenet5, kwargs: {x: {y: 1}}}]\n", ["models[0].kwargs.x", "scalar"]),
    ("suite-is-a-list", "- name: t\n- models: [lenet5]\n", ["a suite must be a mapping"]),
    # negative, zero, huge or non-finite numbers
    ("negative-batch", _OK + "batch_sizes: [-4]\n", ["batch_sizes[0]", "at least 1"]),
    ("huge-batch", _OK + "batch_sizes: [1000000000000000000000000000000]\n", ["batch_sizes[0]", "too large"]),
    ("100000-digit-batch", _OK + "batch_sizes: [" + "9" * 100_000 + "]\n", ["batch_sizes[0]", "cannot read value"]),
    ("zero-threads", _OK + "threads: 0\n", ["threads", "at least 1"]),
    ("negative-timeout", _OK + "measure: {timeout_s: -1}\n", ["measure.timeout_s", "must be >"]),
    ("nan-max-time", _OK + "measure: {max_time_s: .nan}\n", ["measure.max_time_s", "finite"]),
    ("inf-min-time", _OK + "measure: {min_time_s: .inf}\n", ["measure.min_time_s", "finite"]),
    ("min-above-max", _OK + "measure: {min_time_s: 10, max_time_s: 1}\n", ["measure.max_time_s", "must not exceed"]),
    ("negative-side", _OK + "input_size: [3, -224, 224]\n", ["input_size[1]", "height and width"]),
    ("size-is-banana", _OK + "input_size: banana\n", ["input_size", "malformed input size"]),
    # unknown keys and names
    ("unknown-top-key", "name: t\nmodles: [lenet5]\n", ["modles", "unknown key"]),
    ("unknown-measure-key", _OK + "measure: {warmpu: 1}\n", ["measure.warmpu", "did you mean 'warmup'"]),
    ("unknown-model", "name: t\nmodels: [resnet9000]\n", ["models[0]", "unknown model"]),
    ("unknown-backend", _OK + "backends: [tvm]\n", ["backends[0]", "unknown backend"]),
    ("unknown-device", _OK + "device: tpu\n", ["device", "unknown device"]),
    ("kilobyte-key", _OK + "k" * 1000 + ": 1\n", ["kkkkkkkkkk...: unknown key"]),
    ("megabyte-model-name", "name: t\nmodels: [" + "k" * 500_000 + "]\n", ["models[0]", "unknown model 'kkkk"]),
    # empty lists, empty rules, missing fields
    ("empty-models", "name: t\nmodels: []\n", ["models", "empty list"]),
    ("empty-batch-sizes", _OK + "batch_sizes: []\n", ["batch_sizes", "empty list"]),
    ("empty-include-rule", _OK + "include: [{}]\n", ["include[0]", "empty rule"]),
    ("no-name", "models: [lenet5]\n", ["name", "required key is missing"]),
    # YAML bombs, anchors, merges
    ("billion-laughs", _bomb(), ["nodes (an alias bomb?)"]),
    ("90-matrices-sharing-anchors", _shared_anchors(), ["matrices[2]", "more than 20000 cases"]),
    ("recursive-anchor", "name: t\nmodels: &a [*a]\n", ["models[0]", "nested deeper than"]),
    ("anchor-carries-a-bad-value",
     "name: t\ndefaults: {batch_sizes: &b [1, -3]}\nmatrices:\n  - {models: [lenet5], batch_sizes: *b}\n",
     ["matrices[0].batch_sizes[1]", "at least 1"]),
    ("merge-key-of-a-scalar", "name: t\nmodels: [lenet5]\nmeasure: {<<: 5}\n", ["measure.<<", "merge key"]),
    ("undefined-alias", "name: t\nmodels: *nowhere\n", ["malformed YAML", "undefined alias"]),
    ("duplicate-key", _OK + "batch_sizes: [1]\nbatch_sizes: [2]\n", ["batch_sizes", "duplicate key"]),
    ("two-documents", "name: a\nmodels: [lenet5]\n---\nname: b\n", ["malformed YAML", "single document"]),
    # bytes that are not a YAML text
    ("not-utf8", b"name: t\nmodels: [lenet5]\ndescription: caf\xe9\n", ["not UTF-8 text: byte 0xe9"]),
    ("binary-garbage", _garbage(), ["not UTF-8 text"]),
    ("control-character", _OK + 'description: "a\x07b"\n', ["unacceptable character #x0007"]),
    ("tab-indentation", "name: t\nmodels:\n\t- lenet5\n", ["malformed YAML"]),
    ("empty-file", "", ["empty suite file"]),
    # sizes and depths meant to hang or crash a parser
    ("deeply-nested", "name: t\nmodels: " + "[" * 10_000 + "]" * 10_000 + "\n",
     ["models[0]", "nested deeper than 64"]),
    ("too-many-nodes", _OK + "batch_sizes: [" + ", ".join(["1"] * 60_000) + "]\n", ["batch_sizes[", "more than 50000"]),
    ("huge-file", _OK + "# " + "x" * (2 * 1024 * 1024) + "\n", ["larger than 1048576 bytes"]),
    # not a file at all
    ("directory", "<directory>", ["is a directory"]),
    ("fifo", "<fifo>", ["is not a regular file"]),
    ("missing-file", "<missing>", ["no such file"]),
    # a user model (whose module imports torch) next to a typo: the typo is reported first
    ("typo-beside-a-user-model",
     "name: t\nmodels: [{name: m, import: 'faultmodels:tiny', input_size: [1, 8, 8]}]\nbatch_sizes: [0]\n",
     ["batch_sizes[0]", "at least 1"]),
]  # fmt: skip


def _make(tmp_path: Path, content: object) -> Path:
    path = tmp_path / "suite.yaml"
    if content == "<directory>":
        path.mkdir()
    elif content == "<fifo>":
        os.mkfifo(path)
    elif content == "<missing>":
        pass
    elif isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(str(content), encoding="utf-8")
    return path


def test_there_are_at_least_thirty_variants():
    assert len(VARIANTS) >= 30
    assert len({v[0] for v in VARIANTS}) == len(VARIANTS)


@pytest.mark.parametrize("content, needles", [v[1:] for v in VARIANTS], ids=[v[0] for v in VARIANTS])
def test_hostile_suite_is_refused_in_one_line(tmp_path, content, needles):
    shutil.copy(FIXTURES / "faultmodels.py", tmp_path / "faultmodels.py")
    suite = _make(tmp_path, content)
    out = tmp_path / "out.json"
    cmd = [sys.executable, "-X", "importtime", str(ROOT / "bench.py"), "run", str(suite), "--out", str(out)]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, errors="replace", timeout=HANG_S)

    imports = [line for line in proc.stderr.splitlines() if line.startswith("import time:")]
    messages = [line for line in proc.stderr.splitlines() if not line.startswith("import time:")]
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert len(messages) == 1, messages
    (message,) = messages
    assert message.startswith("error: ") and "Traceback" not in proc.stderr
    assert str(suite) in message
    for needle in needles:
        assert needle in message, message
    assert len(message) < 1000  # a hostile value is quoted clipped, not in full
    modules = {line.rsplit("|", 1)[-1].strip() for line in imports}
    assert "torch" not in modules, "torch was imported before the suite was known good"
    assert not out.exists() and not (tmp_path / "out.json.lock").exists()
    assert proc.stdout == ""  # how fast (target < 2 s): benchmarks/suite_limits.py, never a timed test
