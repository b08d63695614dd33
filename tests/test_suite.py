"""Suite loading, validation and expansion (cnnbench.suite.schema). Pure: no torch needed."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from cnnbench.core.errors import SuiteError
from cnnbench.core.spec import Measure
from cnnbench.suite.schema import BACKEND_OPTIONS, MAX_CASES, MAX_NODES, Suite, default_threads, expand, load_suite

REPO = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, text: str, name: str = "s.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def load(tmp_path: Path, text: str, **kw) -> Suite:
    return load_suite(write(tmp_path, text), **kw)


def load_error(tmp_path: Path, text: str, **kw) -> SuiteError:
    path = write(tmp_path, text)
    with pytest.raises(SuiteError) as info:
        load_suite(path, **kw)
    return info.value


def assert_error(err: SuiteError, *, line: int | None, field: str | None, fragment: str = "") -> None:
    text = str(err)
    assert "\n" not in text
    assert "s.yaml" in text, text
    assert err.line == line, text
    if line is not None:
        assert f"s.yaml:{line}:" in text, text
    assert err.field == field, text
    if field:
        assert f" {field}: " in text, text
    assert fragment in text, text


# ---------------------------------------------------------------------------------------------
# Expansion


def test_expansion_count_order_and_keys(tmp_path):
    suite = load(
        tmp_path,
        """
        name: t
        description: two matrices
        matrices:
          - models: [lenet5, mnist_cnn]
            batch_sizes: [1, 8]
            backends: [eager, compile]
            threads: 2
          - models: [resnet18]
            batch_sizes: [4]
            precisions: [fp32, bf16]
            threads: 1
        """,
    )
    assert suite.name == "t" and suite.description == "two matrices"
    keys = [c.key for c in suite.cases]
    assert keys == [
        "lenet5|inference|eager|fp32|b1|1x32x32|cpu|t2",
        "lenet5|inference|compile|fp32|b1|1x32x32|cpu|t2",
        "lenet5|inference|eager|fp32|b8|1x32x32|cpu|t2",
        "lenet5|inference|compile|fp32|b8|1x32x32|cpu|t2",
        "mnist_cnn|inference|eager|fp32|b1|1x28x28|cpu|t2",
        "mnist_cnn|inference|compile|fp32|b1|1x28x28|cpu|t2",
        "mnist_cnn|inference|eager|fp32|b8|1x28x28|cpu|t2",
        "mnist_cnn|inference|compile|fp32|b8|1x28x28|cpu|t2",
        "resnet18|inference|eager|fp32|b4|3x224x224|cpu|t1",
        "resnet18|inference|eager|bf16|b4|3x224x224|cpu|t1",
    ]
    assert all(c.source is None and c.options == () and c.model_kwargs == () for c in suite.cases)


def test_file_metadata(tmp_path):
    path = write(tmp_path, "name: t\nmodels: [lenet5]\n")
    suite = load_suite(path)
    assert suite.path == str(path)
    assert suite.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert suite.python_path[0] == str(tmp_path)
    assert suite.python_path[-1] == os.getcwd()
    assert all(os.path.isabs(p) for p in suite.python_path)
    assert suite.thresholds == {}
    assert len(suite) == 1


def test_single_matrix_at_top_level_and_axis_defaults(tmp_path):
    suite = load(tmp_path, "name: t\nmodels: lenet5\n")
    (case,) = suite.cases
    got = (case.batch_size, case.backend, case.precision, case.device, case.mode)
    assert got == (1, "eager", "fp32", "cpu", "inference")
    assert case.input_size == (1, 32, 32)
    assert case.threads == default_threads()
    assert case.channels_last is False
    assert case.measure == Measure()


def test_duplicates_across_matrices_first_wins(tmp_path):
    suite = load(
        tmp_path,
        """
        name: t
        matrices:
          - models: [lenet5]
            batch_sizes: [1, 2]
            measure: {warmup: 7}
          - models: [lenet5, mnist_cnn]
            batch_sizes: [2]
            measure: {warmup: 9}
        """,
    )
    assert [(c.model, c.batch_size, c.measure.warmup) for c in suite.cases] == [
        ("lenet5", 1, 7),
        ("lenet5", 2, 7),
        ("mnist_cnn", 2, 9),
    ]


def test_defaults_and_measure_merging(tmp_path):
    suite = load(
        tmp_path,
        """
        name: t
        defaults:
          batch_sizes: [2]
          precisions: [bf16]
          threads: 3
          measure: {warmup: 1, min_time_s: 0.2, repeats: 3}
        matrices:
          - models: [lenet5]
            measure: {warmup: 4, max_time_s: 2}
          - models: [mnist_cnn]
            batch_sizes: [5]
        """,
    )
    a, b = suite.cases
    assert (a.batch_size, a.precision, a.threads) == (2, "bf16", 3)
    assert a.measure == Measure(warmup=4, min_time_s=0.2, max_time_s=2.0, repeats=3)
    assert isinstance(a.measure.max_time_s, float)
    assert (b.batch_size, b.measure) == (5, Measure(warmup=1, min_time_s=0.2, repeats=3))


def test_globs_expand_in_natural_order(tmp_path):
    suite = load(tmp_path, 'name: t\nmodels: ["resnet*"]\nthreads: 1\n')
    assert [c.model for c in suite.cases] == ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152"]


def test_include_and_exclude(tmp_path):
    suite = load(
        tmp_path,
        """
        name: t
        models: [lenet5, "resnet1*"]
        batch_sizes: [1, 8]
        backends: [eager, onnxrt]
        precisions: [fp32, bf16]
        include: [{model: "resnet*", batch_size: 1}, {model: lenet5, precision: fp32}]
        exclude: [{backend: onnxrt, precision: bf16}, {model: resnet101, backend: [onnxrt]}]
        """,
    )
    got = [(c.model, c.batch_size, c.backend, c.precision) for c in suite.cases]
    assert got == [
        ("lenet5", 1, "eager", "fp32"),
        ("lenet5", 1, "onnxrt", "fp32"),
        ("lenet5", 8, "eager", "fp32"),
        ("lenet5", 8, "onnxrt", "fp32"),
        ("resnet18", 1, "eager", "fp32"),
        ("resnet18", 1, "eager", "bf16"),
        ("resnet18", 1, "onnxrt", "fp32"),
        ("resnet101", 1, "eager", "fp32"),
        ("resnet101", 1, "eager", "bf16"),
        ("resnet152", 1, "eager", "fp32"),
        ("resnet152", 1, "eager", "bf16"),
        ("resnet152", 1, "onnxrt", "fp32"),
    ]


def test_rules_on_input_size_threads_and_channels_last(tmp_path):
    suite = load(
        tmp_path,
        """
        name: t
        models: [resnet18]
        input_size: [224, "160x160"]
        threads: [1, 2]
        channels_last: [false, true]
        exclude: [{input_size: 160, threads: 2}, {input_size: [3, 224, 224], channels_last: true}]
        """,
    )
    got = [(c.input_size, c.threads, c.channels_last) for c in suite.cases]
    assert got == [
        ((3, 224, 224), 1, False),
        ((3, 224, 224), 2, False),
        ((3, 160, 160), 1, False),
        ((3, 160, 160), 1, True),
    ]


@pytest.mark.parametrize(("cuda", "expected"), [(False, "cpu"), (True, "cuda")])
def test_auto_device(tmp_path, cuda, expected):
    suite = load(tmp_path, "name: t\nmodels: [lenet5]\ndevice: auto\n", cuda_available=cuda)
    assert [c.device for c in suite.cases] == [expected]
    # absent means auto too
    suite = load(tmp_path, "name: t\nmodels: [lenet5]\n", cuda_available=cuda)
    assert [c.device for c in suite.cases] == [expected]


def test_explicit_devices_are_kept(tmp_path):
    suite = load(tmp_path, "name: t\nmodels: [lenet5]\ndevice: [cpu, cuda, auto]\n", cuda_available=False)
    assert [c.device for c in suite.cases] == ["cpu", "cuda"]  # auto -> cpu, a duplicate


def test_threads_default(tmp_path, monkeypatch):
    assert default_threads() == len(os.sched_getaffinity(0))
    monkeypatch.setattr("cnnbench.suite.schema.default_threads", lambda: 7)
    suite = load(tmp_path, "name: t\nmodels: [lenet5]\nbatch_sizes: [1, 2]\nthreads: null\n")
    assert {c.threads for c in suite.cases} == {7}
    suite = load(tmp_path, "name: t\nmodels: [lenet5]\nthreads: [1, null]\n")
    assert [c.threads for c in suite.cases] == [1, 7]


def test_default_threads_without_affinity(monkeypatch):
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 5)
    assert default_threads() == 5


def test_input_size_forms(tmp_path):
    suite = load(
        tmp_path,
        """
        name: t
        defaults: {threads: 1}
        matrices:
          - {models: [resnet18], input_size: 96}
          - {models: [resnet18], input_size: "1x64x64"}
          - {models: [lenet5], input_size: "28x28"}
          - {models: [lenet5], input_size: [40, 40]}
          - {models: [mnist_cnn, {name: resnet18, input_size: 128}]}
          - {models: [resnet18], input_size: [[3, 100, 100], "2x50x50"]}
        """,
    )
    assert [(c.model, c.input_size) for c in suite.cases] == [
        ("resnet18", (3, 96, 96)),
        ("resnet18", (1, 64, 64)),
        ("lenet5", (1, 28, 28)),
        ("lenet5", (1, 40, 40)),
        ("mnist_cnn", (1, 28, 28)),
        ("resnet18", (3, 128, 128)),
        ("resnet18", (3, 100, 100)),
        ("resnet18", (2, 50, 50)),
    ]


def test_backend_options_and_registry_kwargs(tmp_path):
    suite = load(
        tmp_path,
        """
        name: t
        models: [{name: resnet18, kwargs: {num_classes: 10, zero_init_residual: true}}]
        threads: 1
        backends:
          - eager
          - compile: {mode: max-autotune, freezing: true, cache: shared}
          - onnxrt: {opset: 17, exporter: legacy, optimization: basic}
          - compile:
        """,
    )
    assert [c.options for c in suite.cases] == [
        (),
        (("cache", "shared"), ("freezing", True), ("mode", "max-autotune")),
        (("exporter", "legacy"), ("opset", 17), ("optimization", "basic")),
        (),
    ]
    assert suite.cases[1].key == (
        "resnet18|inference|compile[cache=shared,freezing=True,mode=max-autotune]|fp32|b1|3x224x224|cpu|t1"
        "|num_classes=10,zero_init_residual=True"
    )
    assert suite.cases[0].model_kwargs == (("num_classes", 10), ("zero_init_residual", True))
    from cnnbench.core.spec import BACKENDS

    assert set(BACKEND_OPTIONS) == set(BACKENDS)  # one options entry per backend


def test_modes_and_channels_last_axes(tmp_path):
    suite = load(tmp_path, "name: t\nmodels: [lenet5]\nmode: [inference, train]\nchannels_last: [false, true]\n")
    assert [(c.channels_last, c.mode) for c in suite.cases] == [
        (False, "inference"),
        (False, "train"),
        (True, "inference"),
        (True, "train"),
    ]


def test_anchors_aliases_and_merge_keys(tmp_path):
    suite = load(
        tmp_path,
        """
        name: t
        matrices:
          - &base
            models: [lenet5]
            batch_sizes: &bs [1, 2]
            threads: 1
          - <<: *base
            models: [mnist_cnn]
          - {models: [mnist_fcn], batch_sizes: *bs, threads: 1}
        """,
    )
    assert [(c.model, c.batch_size) for c in suite.cases] == [
        ("lenet5", 1), ("lenet5", 2), ("mnist_cnn", 1), ("mnist_cnn", 2), ("mnist_fcn", 1), ("mnist_fcn", 2),
    ]  # fmt: skip


def test_thresholds(tmp_path):
    suite = load(tmp_path, "name: t\nmodels: [lenet5]\nthresholds: {latency: 5%, memory: 10, throughput: '2.5 %'}\n")
    assert suite.thresholds == {"latency": "5%", "memory": 10, "throughput": "2.5 %"}


def test_utf8_bom_and_yes_keys(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_bytes("\ufeffname: t\nmodels: [lenet5]\nchannels_last: yes\n".encode())
    assert load_suite(path).cases[0].channels_last is True


def test_expand_plain_data():
    cases = expand({"models": ["lenet5"], "batch_sizes": [1, 2], "threads": 1})
    assert [c.key for c in cases] == [
        "lenet5|inference|eager|fp32|b1|1x32x32|cpu|t1",
        "lenet5|inference|eager|fp32|b2|1x32x32|cpu|t1",
    ]
    with pytest.raises(SuiteError) as info:
        expand({"models": ["lenet5"], "matrices": [{"models": ["lenet5"]}]}, path="cli")
    assert "cannot be combined" in str(info.value)
    with pytest.raises(SuiteError) as info:
        expand({"matrices": [{"models": ["lenet5"], "batch_sizes": [1, 0]}]}, path="cli")
    assert info.value.field == "matrices[0].batch_sizes[1]" and info.value.line is None
    assert str(info.value).startswith("cli: matrices[0].batch_sizes[1]: ")


def test_import_does_not_load_torch():
    code = "import sys, cnnbench.suite.schema; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


# ---------------------------------------------------------------------------------------------
# User models


@pytest.fixture
def user_module(tmp_path):
    """A tiny importable module in tmp_path with a unique name; removed from sys.modules after."""
    name = f"usermodel_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(
        "def build(width=1):\n    return ('a model', width)\n\nNOT_CALLABLE = 3\n", encoding="utf-8"
    )
    yield name
    sys.modules.pop(name, None)


def test_user_model_import(tmp_path, user_module):
    before = list(sys.path)
    suite = load(
        tmp_path,
        f"""
        name: t
        defaults: {{threads: 1}}
        matrices:
          - models: [{{name: mynet, import: "{user_module}:build", input_size: [3, 32, 32], kwargs: {{width: 2}}}}]
            batch_sizes: [1, 4]
          - models: ["{user_module}:build"]
            input_size: "1x28x28"
          - models: [{{name: mynet, import: "{user_module}:build", input_size: [3, 32, 32]}}]
            input_size: 16
        """,
    )
    assert sys.path == before
    assert [(c.model, c.source, c.input_size, c.model_kwargs, c.batch_size) for c in suite.cases] == [
        ("mynet", f"{user_module}:build", (3, 32, 32), (("width", 2),), 1),
        ("mynet", f"{user_module}:build", (3, 32, 32), (("width", 2),), 4),
        (f"{user_module}:build", f"{user_module}:build", (1, 28, 28), (), 1),
        ("mynet", f"{user_module}:build", (3, 16, 16), (), 1),
    ]
    assert str(tmp_path) in suite.python_path


def test_user_model_not_imported_when_unchecked(tmp_path):
    suite = load(tmp_path, 'name: t\nmodels: ["no_such_pkg.mod:build"]\ninput_size: [3, 8, 8]\n', check_imports=False)
    assert suite.cases[0].source == "no_such_pkg.mod:build"


@pytest.mark.parametrize(
    ("target", "fragment"),
    [
        ("no_such_module_xyz:build", "cannot import 'no_such_module_xyz:build': ModuleNotFoundError: No module named"),
        ("{mod}:missing", "has no attribute 'missing'"),
        ("{mod}:NOT_CALLABLE", "is an integer, not a callable"),
        ("{bad}:build", "cannot import '{bad}:build': ZeroDivisionError: division by zero"),
        ("{syntax}:build", "SyntaxError"),
        ("not a path:x", "malformed import path"),
    ],
)
def test_user_model_import_errors(tmp_path, user_module, target, fragment):
    bad, syntax = f"{user_module}_bad", f"{user_module}_syntax"
    (tmp_path / f"{bad}.py").write_text("x = 1 / 0\n", encoding="utf-8")
    (tmp_path / f"{syntax}.py").write_text("def build(:\n", encoding="utf-8")
    target = target.format(mod=user_module, bad=bad, syntax=syntax)
    err = load_error(
        tmp_path,
        f"""
        name: t
        models:
          - lenet5
          - {{name: mine, import: "{target}", input_size: [1, 8, 8]}}
        """,
    )
    for m in (bad, syntax):
        sys.modules.pop(m, None)
    assert_error(err, line=4, field="models[1].import", fragment=fragment.format(bad=bad))


def test_user_model_needs_input_size(tmp_path, user_module):
    err = load_error(tmp_path, f'name: t\nmodels:\n  - lenet5\n  - "{user_module}:build"\n')
    assert_error(err, line=4, field="models[1]", fragment="needs an input_size")
    err = load_error(tmp_path, f'name: t\nmodels: ["{user_module}:build"]\ninput_size: 32\n')
    assert_error(err, line=3, field="input_size", fragment="give CxHxW")


def test_user_model_name_may_not_shadow_registry(tmp_path, user_module):
    entry = f'{{name: resnet18, import: "{user_module}:build", input_size: [3, 8, 8]}}'
    err = load_error(tmp_path, f"name: t\nmodels:\n  - {entry}\n")
    assert_error(err, line=3, field="models[0].name", fragment="is a registry model")


# ---------------------------------------------------------------------------------------------
# Errors: file, field path and line


def test_missing_file(tmp_path):
    with pytest.raises(SuiteError, match="nope.yaml: no such file"):
        load_suite(tmp_path / "nope.yaml")


def test_directory(tmp_path):
    with pytest.raises(SuiteError, match="is a directory"):
        load_suite(tmp_path)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads everything")
def test_unreadable(tmp_path):
    path = write(tmp_path, "name: t\nmodels: [lenet5]\n")
    path.chmod(0)
    try:
        with pytest.raises(SuiteError, match="s.yaml: cannot read: Permission denied"):
            load_suite(path)
    finally:
        path.chmod(0o644)


def test_read_error(tmp_path, monkeypatch):
    path = write(tmp_path, "name: t\nmodels: [lenet5]\n")

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("cnnbench.suite.reader.open", denied, raising=False)  # the reader opens it
    with pytest.raises(SuiteError, match="s.yaml: cannot read: Permission denied"):
        load_suite(path)


def test_not_utf8(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_bytes(b"name: t\nmodels: [lenet\xff5]\n")
    with pytest.raises(SuiteError) as info:
        load_suite(path)
    assert_error(info.value, line=2, field=None, fragment="not UTF-8 text: byte 0xff")


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n"])
def test_empty_file(tmp_path, text):
    assert_error(load_error(tmp_path, text), line=1, field=None, fragment="empty suite file")


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("name: t\nmodels: lenet5\n  bad: indent\n", 3, "mapping values are not allowed here"),
        ("name: t\nmodels: [lenet5\nbatch_sizes: [1]\n", 3, "expected ',' or ']', but got ':'"),
        ("name: t\n---\nname: u\n", 2, "expected a single document"),
        ("name: t\nmodels: [*nope]\n", 2, "undefined alias"),
        ("name: t\nmodels: [lenet5]\ndescription: \"a\x07b\"\n", 3, "unacceptable character #x0007"),
    ],
)
def test_malformed_yaml(tmp_path, text, line, fragment):
    assert_error(load_error(tmp_path, text), line=line, field=None, fragment=fragment)


BAD = [
    # (yaml, line, field, fragment)
    ("- name: t\n", 1, None, "a suite must be a mapping, got a list"),
    ("just a string\n", 1, None, "a suite must be a mapping, got a string"),
    ("models: [lenet5]\n", 1, "name", "required key is missing"),
    ("name: 123\nmodels: [lenet5]\n", 1, "name", "expected a string, got an integer"),
    ("name: my suite\nmodels: [lenet5]\n", 1, "name", "may use only letters"),
    ("name: t\nmodels: [lenet5]\nbatch_size: [1]\n", 3, "batch_size", "did you mean 'batch_sizes'?"),
    ("name: t\nmodels: [lenet5]\nmodels: [mnist_cnn]\n", 3, "models", "duplicate key 'models' (first at line 2)"),
    ("name: t\nbatch_sizes: [1]\n", 1, "models", "required key is missing"),
    ("name: t\nmodels:\nbatch_sizes: [1]\n", 2, "models", "expected a list, got null"),
    ("name: t\nmodels: []\n", 2, "models", "empty list"),
    ("name: t\nmodels: [lenet5]\nbatch_sizes:\n  - 1\n  - '8'\n", 5, "batch_sizes[1]", "expected an integer, got a string '8'"),
    ("name: t\nmodels: [lenet5]\nbatch_sizes: [true]\n", 3, "batch_sizes[0]", "expected an integer, got a boolean"),
    ("name: t\nmodels: [lenet5]\nbatch_sizes: [1.5]\n", 3, "batch_sizes[0]", "expected an integer, got a number"),
    ("name: t\nmodels: [lenet5]\nbatch_sizes: [1, 0]\n", 3, "batch_sizes[1]", "batch size must be at least 1, got 0"),
    ("name: t\nmodels: [lenet5]\nbatch_sizes: [-4]\n", 3, "batch_sizes[0]", "at least 1"),
    ("name: t\nmodels: [lenet5]\nbatch_sizes: [" + "9" * 5000 + "]\n", 3, "batch_sizes[0]", ""),
    ("name: t\nmodels: [lenet5]\nbatch_sizes: [100000000000000000000]\n", 3, "batch_sizes[0]", "too large (at most 65536)"),
    ("name: t\nmodels: [lenet5]\nbatch_sizes: []\n", 3, "batch_sizes", "empty list"),
    ("name: t\nmodels: [lenet5]\nbackends: [eager, onnx]\n", 3, "backends[1]", "unknown backend 'onnx' (did you mean 'onnxrt'?)"),
    ("name: t\nmodels: [lenet5]\nbackends: [{compile: {mdoe: max-autotune}}]\n", 3, "backends[0].compile.mdoe", "did you mean 'mode'?"),
    ("name: t\nmodels: [lenet5]\nbackends: [{compile: {mode: fast}}]\n", 3, "backends[0].compile.mode", "unknown mode 'fast'"),
    ("name: t\nmodels: [lenet5]\nbackends: [{compile: {freezing: 'yes'}}]\n", 3, "backends[0].compile.freezing", "expected true or false"),
    ("name: t\nmodels: [lenet5]\nbackends: [{onnxrt: {opset: 99}}]\n", 3, "backends[0].onnxrt.opset", "too large (at most 30)"),
    ("name: t\nmodels: [lenet5]\nbackends: [{compile: {cache: 'a,b'}}]\n", 3, "backends[0].compile.cache", "may not contain"),
    ("name: t\nmodels: [lenet5]\nbackends: [{eager: {x: 1}}]\n", 3, "backends[0].eager.x", "unknown key 'x'"),
    ("name: t\nmodels: [lenet5]\nbackends: [{tvm: {}}]\n", 3, "backends[0].tvm", "unknown backend"),
    ("name: t\nmodels: [lenet5]\nbackends: [{eager: , compile: }]\n", 3, "backends[0]", "exactly one key"),
    ("name: t\nmodels: [lenet5]\nprecisions: [fp64]\n", 3, "precisions[0]", "unknown precision 'fp64'"),
    ("name: t\nmodels: [lenet5]\ndevice: gpu\n", 3, "device", "unknown device 'gpu'"),
    ("name: t\nmodels: [lenet5]\nmode: training\n", 3, "mode", "unknown mode 'training' (did you mean 'train'?)"),
    ("name: t\nmodels: [lenet5]\nthreads: 0\n", 3, "threads", "threads must be at least 1"),
    ("name: t\nmodels: [lenet5]\nthreads: [1, '2']\n", 3, "threads[1]", "expected an integer"),
    ("name: t\nmodels: [lenet5]\nchannels_last: 'no'\n", 3, "channels_last", "expected true or false"),
    ("name: t\nmodels: [lenet5]\ninput_size: 3x224x\n", 3, "input_size", "malformed input size"),
    ("name: t\nmodels: [lenet5]\ninput_size: [3, 224, 224, 1]\n", 3, "input_size", "a list of 4 values"),
    ("name: t\nmodels: [lenet5]\ninput_size:\n  - 3\n  - 0\n  - 224\n", 5, "input_size[1]", "between 1 and 16384"),
    ("name: t\nmodels: [lenet5]\ninput_size: 1000000\n", 3, "input_size", "between 1 and 16384"),
    ("name: t\nmodels: [lenet5]\ninput_size: true\n", 3, "input_size", "malformed input size"),
    ("name: t\nmodels:\n  - lenet5\n  - resnet19\n", 4, "models[1]", "unknown model 'resnet19' (did you mean: resnet18"),
    ("name: t\nmodels: [lenet5, 'foo*']\n", 2, "models[1]", "the glob 'foo*' matches no registry model"),
    ("name: t\nmodels: [42]\n", 2, "models[0]", "got an integer"),
    ("name: t\nmodels: [{nmae: lenet5}]\n", 2, "models[0].nmae", "did you mean 'name'?"),
    ("name: t\nmodels: [{kwargs: {a: 1}}]\n", 2, "models[0]", "needs `name`"),
    ("name: t\nmodels: [{name: lenet5, kwargs: {a: [1]}}]\n", 2, "models[0].kwargs.a", "must be a scalar"),
    ("name: t\nmodels: [lenet5]\nmeasure: {warmpu: 2}\n", 3, "measure.warmpu", "did you mean 'warmup'?"),
    ("name: t\nmodels: [lenet5]\nmeasure:\n  warmup: -1\n", 4, "measure.warmup", "at least 0"),
    ("name: t\nmodels: [lenet5]\nmeasure:\n  min_samples: '10'\n", 4, "measure.min_samples", "expected an integer"),
    ("name: t\nmodels: [lenet5]\nmeasure:\n  min_time_s: 0\n", 4, "measure.min_time_s", "must be > 0"),
    ("name: t\nmodels: [lenet5]\nmeasure:\n  min_time_s: 3\n  max_time_s: 2\n", 5, "measure.max_time_s", "must not exceed"),
    ("name: t\nmodels: [lenet5]\nmeasure:\n  target_rel_ci: 1.5\n", 4, "measure.target_rel_ci", "must be < 1"),
    ("name: t\nmodels: [lenet5]\nmeasure:\n  repeats: 0\n", 4, "measure.repeats", "at least 1"),
    ("name: t\nmodels: [lenet5]\nmeasure:\n  repeats: 5000\n", 4, "measure.repeats", "at most 1000"),
    ("name: t\nmodels: [lenet5]\nmeasure:\n  timeout_s: 100000\n", 4, "measure.timeout_s", "<= 86400"),
    ("name: t\nmodels: [lenet5]\nmeasure:\n  timeout_s: .inf\n", 4, "measure.timeout_s", "finite"),
    ("name: t\nmodels: [lenet5]\nmeasure:\n  min_samples: 50\n  max_samples: 20\n", 5, "measure.max_samples", "must not exceed"),
    ("name: t\nmodels: [lenet5]\nmeasure:\n  timeout_s: 3\n", 4, "measure.timeout_s", "must exceed max_time_s"),
    ("name: t\nmodels: [lenet5]\nexclude: [{models: lenet5}]\n", 3, "exclude[0].models", "did you mean 'model'?"),
    ("name: t\nmodels: [lenet5]\nexclude: [{}]\n", 3, "exclude[0]", "empty rule"),
    ("name: t\nmodels: [lenet5]\nexclude: [{device: auto}]\n", 3, "exclude[0].device", "unknown device 'auto'"),
    ("name: t\nmodels: [lenet5]\nexclude: {model: lenet5}\n", 3, "exclude", "expected a list"),
    ("name: t\nmodels: [lenet5]\nexclude: [{model: lenet5}]\n", 1, None, "expands to no cases"),
    ("name: t\nmodels: [lenet5]\ninclude: [{batch_size: 64}]\n", 1, None, "expands to no cases"),
    ("name: t\nmatrices: lenet5\n", 2, "matrices", "expected a list, got a string"),
    ("name: t\nmatrices: []\n", 2, "matrices", "empty list"),
    ("name: t\nmatrices: [lenet5]\n", 2, "matrices[0]", "a matrix must be a mapping"),
    ("name: t\nmatrices:\n  - models: [lenet5]\n  - batch_sizes: [1]\n", 4, "matrices[1].models", "required key is missing"),
    ("name: t\nmatrices:\n  - models: [lenet5]\n    bakends: [eager]\n", 4, "matrices[0].bakends", "did you mean 'backends'?"),
    ("name: t\nmodels: [lenet5]\nmatrices:\n  - models: [lenet5]\n", 2, "models", "cannot be combined with `matrices`"),
    ("name: t\ndefaults: {include: []}\nmodels: [lenet5]\n", 2, "defaults.include", "unknown key 'include'"),
    ("name: t\nmodels: [lenet5]\nthresholds: {latncy: 5%}\n", 3, "thresholds.latncy", "did you mean 'latency'?"),
    ("name: t\nmodels: [lenet5]\nthresholds: {latency: 5 percent}\n", 3, "thresholds.latency", "a percentage like '5%'"),
    ("name: t\nmodels: [lenet5]\nthresholds: {latency: -5}\n", 3, "thresholds.latency", "between 0% and 1000%"),
    ("name: t\nmodels: [lenet5]\ndescription: !!python/object:os.system x\n", 3, "description", "cannot read value"),
    ("name: t\nmodels: [lenet5]\ndescription: !!binary aGVsbG8=\n", 3, "description", "expected a string, got a bytes"),
    ("name: t\nmodels: [lenet5]\n[1]: x\n", 3, None, "mapping keys must be plain strings"),
    ("name: t\nmatrices:\n  - <<: [1]\n    models: [lenet5]\n", 3, "matrices[0].<<", "merge key"),
]


@pytest.mark.parametrize(("text", "line", "field", "fragment"), BAD, ids=[f"{b[2]}:{b[3][:30]}" for b in BAD])
def test_bad_input(tmp_path, text, line, field, fragment):
    assert_error(load_error(tmp_path, text), line=line, field=field, fragment=fragment)


def _count_cases(monkeypatch) -> list[int]:
    """Count the CaseSpecs the loader builds: the work of expanding a suite."""
    import cnnbench.suite.schema as suite_mod

    built = [0]
    real = suite_mod.CaseSpec

    def counting(*a, **kw):
        built[0] += 1
        return real(*a, **kw)

    monkeypatch.setattr(suite_mod, "CaseSpec", counting)
    return built


def test_the_largest_suite_allowed_builds_each_case_once(tmp_path, monkeypatch):
    """The cap bounds the work of any input: a suite of exactly MAX_CASES cases builds exactly
    that many. How long that takes is measured by benchmarks/suite_limits.py (a target, never a
    timed test)."""
    built = _count_cases(monkeypatch)
    models = "[lenet5, alexnet, vgg11, vgg13, vgg16, vgg19, resnet18, resnet34, resnet50, resnet101]"
    path = tmp_path / "max.yaml"
    path.write_text(f"name: t\nmodels: {models}\nbatch_sizes: {list(range(1, 101))}\nthreads: {list(range(1, 21))}\n")
    assert len(load_suite(path).cases) == MAX_CASES == 20_000
    assert built[0] == MAX_CASES


def test_a_suite_over_the_cap_is_refused_before_any_case_is_built(tmp_path, monkeypatch):
    """90 matrices aliasing one 10,000-case matrix: refused from the axis lengths."""
    built = _count_cases(monkeypatch)
    sizes = ", ".join(str(i) for i in range(1, 101))
    text = (f"name: t\nmatrices:\n  - &m {{models: [lenet5, alexnet, vgg11, vgg13, vgg16, vgg19, resnet18, resnet34, resnet50, "
            f"resnet101], batch_sizes: [{sizes}], threads: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]}}\n" + "  - *m\n" * 89)
    err = load_error(tmp_path, text)
    assert "more than 20000 cases" in str(err) and "matrices[2]" in str(err)
    assert built[0] == 0


def test_the_cap_is_suite_wide(tmp_path):
    sizes = list(range(1, 101))
    matrix = f"  - {{models: [lenet5, alexnet], batch_sizes: {sizes}, threads: {sizes[:60]}}}\n"
    err = load_error(tmp_path, "name: t\nmatrices:\n" + matrix * 2)  # 12,000 each, 24,000 together
    assert "matrices[1]" in str(err) and "more than 20000 cases" in str(err)


def test_top_level_matrix_too_large(tmp_path):
    sizes = list(range(1, 101))
    err = load_error(tmp_path, f"name: t\nmodels: ['*']\nbatch_sizes: {sizes}\nthreads: {sizes}\n")
    assert "expands to" in str(err) and f"at most {MAX_CASES}" in str(err)


def test_yaml_bomb_is_refused_quickly(tmp_path):
    lines = ["name: t", "models: [lenet5]", 'a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    prev = "a"
    for name in "bcdefghi":
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 9) + "]")
        prev = name
    err = load_error(tmp_path, "\n".join(lines) + "\n")  # refused by counting nodes, never by expanding them
    assert f"more than {MAX_NODES} nodes" in str(err)
    assert "s.yaml:" in str(err)


def test_recursive_alias_is_refused(tmp_path):
    err = load_error(tmp_path, "name: t\nmodels: [lenet5]\ndescription: &x [*x]\n")
    assert "nested deeper than" in str(err) and "s.yaml:3:" in str(err)


# ---------------------------------------------------------------------------------------------
# The shipped suites


def test_every_shipped_suite_loads_with_the_case_count_the_readme_states(tmp_path):
    """The README's table of shipped suites is a promise: every file in suites/ is in it, loads,
    and expands to the number of cases the table says."""
    import re
    import shutil

    readme = (REPO / "README.md").read_text(encoding="utf-8")
    table = dict(re.findall(r"^\| `([a-z0-9_-]+)\.yaml` \| .* \| (\d+) \|$", readme, flags=re.M))
    shipped = sorted(p.stem for p in (REPO / "suites").glob("*.yaml"))
    assert sorted(table) == shipped
    # The digits suite names weights its example trains (not committed): a stand-in file where
    # its relative path points, in a copy of the suites.
    shutil.copytree(REPO / "suites", tmp_path / "suites")
    (tmp_path / "examples" / "digits").mkdir(parents=True)
    (tmp_path / "examples" / "digits" / "lenet5_digits.pt").write_bytes(b"")
    for name in shipped:
        suite = load_suite(tmp_path / "suites" / f"{name}.yaml")
        assert suite.name and suite.description, name
        assert len(suite.cases) == int(table[name]), name
        assert len({c.key for c in suite.cases}) == len(suite.cases), name


def test_shipped_suites_load():
    suites = {name: load_suite(REPO / "suites" / f"{name}.yaml") for name in ("smoke", "classics", "seeds")}
    for name, suite in suites.items():
        assert suite.name == name and suite.description
        assert all(c.precision == "fp32" and c.device == "cpu" for c in suite.cases)
        assert all(c.backend == "eager" for c in suite.cases if name != "smoke")
        assert len({c.key for c in suite.cases}) == len(suite.cases)

    smoke = suites["smoke"]
    assert 4 <= len(smoke.cases) <= 8
    # the non-eager backends are exercised on one small model only (a cold compile costs ~15 s)
    assert {c.model for c in smoke.cases if c.backend != "eager"} == {"lenet5"}
    assert {c.model for c in smoke.cases} >= {"lenet5", "resnet18"}
    assert all(c.measure.max_time_s <= 2 for c in smoke.cases)

    classics = suites["classics"]
    expected = [
        "lenet5", "alexnet", "vgg16", "googlenet", "inception_v3", "resnet18", "resnet50", "resnet152",
        "densenet121", "squeezenet1_1", "mobilenet_v2", "mobilenet_v3_large", "efficientnet_b0",
    ]  # fmt: skip
    assert list(dict.fromkeys(c.model for c in classics.cases)) == expected
    assert {c.batch_size for c in classics.cases} == {1, 8, 32}
    assert len(classics.cases) == 39
    assert next(c for c in classics.cases if c.model == "inception_v3").input_size == (3, 299, 299)

    seeds = suites["seeds"]
    assert {c.model for c in seeds.cases} == {
        "lenet5", "mnist_cnn_bn", "mnist_cnn", "mnist_fcn", "inception_naive", "inception_bottleneck",
    }  # fmt: skip
    assert next(c for c in seeds.cases if c.model == "inception_naive").input_size == (256, 28, 28)
