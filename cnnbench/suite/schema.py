"""Suites: load a YAML file, validate every field, and expand it into `CaseSpec`s. Pure: no torch.

A suite names a set of cases as one or more matrices (models x batch sizes x backends x
precisions x ...). Validation happens here, before any model is built, so a typo costs a second
rather than a half-finished run. Every error is a `SuiteError` that names the file, the field
path (`matrices[0].batch_sizes[1]`) and the line: `cnnbench.suite.reader` reads the YAML into nodes that
remember where each value came from (PyYAML's plain `safe_load` forgets); this module is the schema.

Schema (unknown keys anywhere are errors)::

    name: smoke                  # required
    description: "..."           # optional
    thresholds: {latency: 5%}    # optional, for `compare`: metric -> "N%" or a number (percent)
    defaults: {...}              # optional: any matrix axis, plus `measure`
    matrices:                    # or: the matrix keys at top level, for a single matrix
      - name: label              # optional
        models: [lenet5, "resnet*", "pkg.mod:build",
                 {name: mynet, import: "pkg.mod:build", input_size: [3, 32, 32], kwargs: {w: 2}}]
        batch_sizes: [1, 8]
        backends: [eager, {compile: {mode: max-autotune}}]
        precisions: [fp32]
        input_size: [3, 224, 224]   # or "3x224x224", "224x224", 224, train|test, or a list of those (an axis)
        channels_last: false        # or a list (an axis)
        threads: 2                  # or a list, or null (= default_threads())
        device: auto                # auto | cpu | cuda, or a list
        mode: inference             # or a list
        measure: {warmup: 5, ...}   # merged over Measure() and defaults.measure
        include: [{model: "resnet*", batch_size: 1}]   # keep cases matching any rule
        exclude: [{backend: onnxrt, precision: bf16}]  # drop cases matching any rule
        accuracy:                   # measured top-1/top-5 after timing (see cnnbench/accuracy.py)
          dataset: {kind: imagefolder, path: val/, limit: 1000, strict: false,
                    transforms: {resize: 256, crop: 224, mean: [...], std: [...],
                                 interpolation: bilinear, grayscale: false}}
                    # or {kind: digits, split: test} or {kind: tensors, path: data.pt}
          weights: model.pth        # or a torchvision name (ResNet18_Weights.IMAGENET1K_V1)

A matrix's `accuracy` replaces the one in `defaults` (`accuracy: null` turns it off); it applies
to the matrix's inference cases (train cases carry none). Paths are relative to the suite file's
directory; a missing or empty dataset, or a missing weights file, is an error here, before
anything runs.

Cases come out in a stable order: matrix order, then models, batch sizes, backends, precisions,
input sizes, channels_last, threads, devices, modes. A case whose key an earlier case already
has is dropped (the first wins, with its measure settings).
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import hashlib
import itertools
import math
import os
import re
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

from cnnbench.accuracy import DATASET_KINDS, INTERPOLATIONS, check_dataset_path, is_torchvision_weights_name
from cnnbench.core.errors import SuiteError, UnknownModelError, UserError
from cnnbench.models.catalog import MODELS, get_info, list_models, named_input_size, suggest
from cnnbench.models.timm_zoo import is_timm_name
from cnnbench.core.spec import BACKENDS, DEVICES, MODES, PRECISIONS, CaseSpec, Measure, canonical_evaluation
from cnnbench.suite.reader import MAX_DEPTH, MAX_EVENTS, MAX_FILE_BYTES, MAX_NODES, _from_python, _Node, _parse, _read_bytes, _show

__all__ = [
    "Suite",
    "Option",
    "BACKEND_OPTIONS",
    "THRESHOLD_METRICS",
    "load_suite",
    "expand",
    "default_threads",
    # the reader's limits (cnnbench.suite.reader), named here for the suite's users
    "MAX_NODES",
    "MAX_DEPTH",
    "MAX_EVENTS",
    "MAX_FILE_BYTES",
]

# Limits that turn hostile or mistyped input into an error instead of a hang or a crash.
MAX_CASES = 20_000  # cases the whole suite may expand to (summed over matrices, before include/exclude)
MAX_BATCH_SIZE = 65_536
MAX_THREADS = 4_096
MAX_CHANNELS = 4_096
MAX_SIDE = 16_384
_MAX_MESSAGE = 400  # characters of one error message


@dataclass(frozen=True)
class Option:
    """One backend option: its type and what values it accepts."""

    type: type  # bool, int or str
    choices: tuple[str, ...] = ()  # for str options: the allowed values (empty: see `check`)
    min: int | None = None
    max: int | None = None
    check: Callable[[str], str | None] | None = None  # extra check; returns an error message or None
    help: str = ""


def _check_cache(value: str) -> str | None:
    if not value.strip():
        return 'must be "per-run", "shared" or a directory path, got an empty string'
    bad = sorted(set(value) & set("|,[]=\n\r\t"))
    if bad:
        return f"a cache directory may not contain {' '.join(repr(c) for c in bad)} (they would break the case key)"
    return None


_OPTIMIZER = Option(str, choices=("sgd", "adamw"), help="training-step optimizer (mode train; default sgd)")
_CALIBRATION = Option(int, min=1, max=100_000, help="int8: images the calibration sees (cnnbench.backends.quantize)")
TRAIN_ONLY_OPTIONS = ("optimizer",)  # dropped from inference cases, whose computation they do not change

# Backend name -> option name -> Option. The one table of what each backend accepts; a new
# backend or option is one entry here (plus its name in spec.BACKENDS).
BACKEND_OPTIONS: dict[str, dict[str, Option]] = {
    "eager": {"optimizer": _OPTIMIZER},
    "compile": {
        "optimizer": _OPTIMIZER,
        "mode": Option(str, choices=("default", "reduce-overhead", "max-autotune")),
        "freezing": Option(bool, help="torch._inductor.config.freezing; what makes CPU inference fast"),
        "dynamic": Option(bool),
        "cache": Option(str, check=_check_cache, help='"per-run", "shared" or a directory path'),
        "calibration_images": _CALIBRATION,
    },
    "onnxrt": {
        "exporter": Option(str, choices=("dynamo", "legacy")),
        "opset": Option(int, min=7, max=30),
        "optimization": Option(str, choices=("all", "extended", "basic", "disable")),
        "calibration_images": _CALIBRATION,
    },
    # The deployment backends (cnnbench.backends.openvino/aoti/tensorrt); int8: cnnbench.backends.quantize.
    "openvino": {
        "hint": Option(str, choices=("latency", "throughput"), help="PERFORMANCE_HINT (default latency)"),
        "convert": Option(str, choices=("pytorch", "onnx"), help="convert the torch model or the cached ONNX export"),
        "calibration_images": _CALIBRATION,
    },
    "aoti": {"freezing": Option(bool), "calibration_images": _CALIBRATION},
    "tensorrt": {"calibration_images": _CALIBRATION},
}

# Metrics a suite may set a `thresholds:` entry for (read by `compare`).
THRESHOLD_METRICS = ("latency", "throughput", "memory", "energy")

_MATRIX_AXES = (
    "models", "batch_sizes", "backends", "precisions", "input_size",
    "channels_last", "threads", "device", "mode",
)  # fmt: skip
_MATRIX_KEYS = ("name", *_MATRIX_AXES, "measure", "include", "exclude", "accuracy")
_DEFAULTS_KEYS = (*_MATRIX_AXES, "measure", "accuracy")
_ACCURACY_KEYS = ("dataset", "weights")
_DATASET_KEYS = ("kind", "path", "split", "limit", "strict", "transforms")
_TRANSFORM_KEYS = {  # per dataset kind
    "imagefolder": ("resize", "crop", "mean", "std", "interpolation", "grayscale"),
    "digits": ("mean", "std"),
    "tensors": (),
}
_TOP_KEYS = ("name", "description", "thresholds", "defaults", "matrices")
_MODEL_KEYS = ("name", "import", "input_size", "kwargs")
_RULE_KEYS = (
    "model", "batch_size", "backend", "precision", "device",
    "threads", "channels_last", "mode", "input_size",
)  # fmt: skip
_MEASURE_FIELDS = {f.name: f for f in dataclasses.fields(Measure)}

_SUITE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
_IMPORT_PATH = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
_MODEL_NAME = re.compile(r"^[^\s|,\[\]=]+$")
_IDENT = re.compile(r"^[A-Za-z_]\w*$")
_SIZE_STR = re.compile(r"^\s*(\d+)\s*(?:[x×]\s*(\d+)\s*(?:[x×]\s*(\d+)\s*)?)?$", re.IGNORECASE)
_PERCENT = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*%\s*$")
_GLOB_CHARS = set("*?[")


@dataclass(frozen=True)
class Suite:
    """A validated suite and its expanded cases.

    `python_path` lists the absolute directories a worker must prepend to `sys.path` (in this
    order) so user models (`package.module:callable`) import as they did during validation:
    the suite file's directory, then the directory the suite was loaded from (cwd).
    `thresholds` maps a metric in THRESHOLD_METRICS to a percent, as written ("5%" or 5).
    """

    name: str
    path: str
    sha256: str
    description: str
    cases: tuple[CaseSpec, ...]
    python_path: tuple[str, ...]
    thresholds: dict[str, Any] = field(default_factory=dict, hash=False)

    def __len__(self) -> int:
        return len(self.cases)

    def info(self, *, path: str | os.PathLike[str], cases: Sequence[CaseSpec]) -> dict[str, Any]:
        """The `suite` section of a results file, for the cases actually run (after filters)."""
        return {
            "name": self.name,
            "path": str(path),
            "sha256": self.sha256,
            "description": self.description,
            "thresholds": self.thresholds,
            "case_count": len(cases),
        }


def default_threads() -> int:
    """CPU threads a case gets when the suite does not say: the cores this process may use."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def load_suite(
    path: str | os.PathLike[str], *, cuda_available: bool = False, check_imports: bool = True, default_repeats: int = 1
) -> Suite:
    """Read, validate and expand a suite file.

    Args:
        path: the YAML file.
        cuda_available: what `device: auto` resolves to (`cuda` if True, else `cpu`).
        check_imports: import each user model's module (with `Suite.python_path` on sys.path)
            and check that the callable exists.
        default_repeats: worker processes for a case whose suite sets no `measure.repeats`;
            above 1 they share the case's min_time_s and max_time_s (`processes.split_budget`).
            `bench.py run` passes `processes.DEFAULT_PROCESSES`.

    Returns:
        The suite with its cases expanded.

    Raises:
        SuiteError: naming the file, the field path and the line of the first problem.
    """
    path = os.fspath(path)
    data = _read_bytes(path)
    sha256 = hashlib.sha256(data).hexdigest()
    root = _parse(path, data)
    python_path = _python_path(path)
    ctx = _Context(
        path,
        cuda_available=cuda_available,
        check_imports=check_imports,
        python_path=python_path,
        default_threads=default_threads,
        default_repeats=default_repeats,
    )
    name, description, thresholds, cases = _TopLevel(ctx).read(root, require_name=True)
    return Suite(
        name=name,
        path=path,
        sha256=sha256,
        description=description,
        cases=tuple(cases),
        python_path=python_path,
        thresholds=thresholds,
    )


def expand(
    data: dict[str, Any],
    *,
    path: str = "<suite>",
    cuda_available: bool = False,
    check_imports: bool = False,
    python_path: Iterable[str] | None = None,
) -> list[CaseSpec]:
    """Validate a suite given as plain Python data and expand it into cases.

    The same schema as a file (`name` is optional here); errors carry the field path but no
    line. Useful for suites built in code and for command-line overrides.

    Args:
        data: the suite mapping, as `yaml.safe_load` would return it.
        path: what errors call the source.
        cuda_available: what `device: auto` resolves to.
        check_imports: import user models' modules to check them.
        python_path: directories put on sys.path for that import (default: the cwd).
    """
    root = _from_python(data, "")
    pp = tuple(python_path) if python_path is not None else (os.getcwd(),)
    ctx = _Context(
        path, cuda_available=cuda_available, check_imports=check_imports, python_path=pp, default_threads=default_threads
    )
    return _TopLevel(ctx).read(root, require_name=False)[3]


def _python_path(path: str) -> tuple[str, ...]:
    dirs = [os.path.dirname(os.path.abspath(path)), os.getcwd()]
    return tuple(dict.fromkeys(dirs))


# --------------------------------------------------------------------------------------------
# Validation and expansion: `_Section` (the error context and the scalar checks) and one
# subclass per section of the schema.


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return f"a {type(value).__name__}"


def _did_you_mean(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


@dataclass(frozen=True)
class _Model:
    name: str
    source: str | None  # import path of a user model
    input_size: tuple[int, int, int] | None  # default (C, H, W); None for a user model without one
    kwargs: tuple[tuple[str, Any], ...]
    node: _Node


_Size = tuple[int | None, int, int]  # (C or None = the model's default channels, H, W)
_Rule = list[Callable[[CaseSpec], bool]]


@dataclass
class _Context:
    """What every section knows of the suite being read (errors name `path`)."""

    path: str  # the suite file, or what `expand` calls its source
    cuda_available: bool  # what `device: auto` resolves to
    check_imports: bool  # import user models' modules (last, in a child process)
    python_path: tuple[str, ...]  # the sys.path entries for that import
    default_threads: Callable[[], int]  # the schema's `default_threads` (`threads: null`)
    default_repeats: int = 1  # processes for a case without measure.repeats (load_suite sets it)
    # relative dataset and weights paths: from the suite file's directory (else the cwd)
    base_dir: str = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        self.base_dir = os.path.dirname(os.path.abspath(self.path)) if os.path.isfile(self.path) else os.getcwd()


class _Section:
    """The base of every section: errors that name the file, the field path and the line, and the
    checks of one scalar, mapping or list node."""

    def __init__(self, ctx: _Context):
        self.ctx = ctx

    def fail(self, node: _Node, message: str, *, at_key: bool = False) -> SuiteError:
        line = node.key_line if at_key and node.key_line is not None else node.line
        if len(message) > _MAX_MESSAGE:  # some messages quote the user's value, which may be huge
            message = message[: _MAX_MESSAGE - 3] + "..."
        return SuiteError(self.ctx.path, message, field=node.path or None, line=line)

    def mapping(self, node: _Node, allowed: Iterable[str], what: str) -> dict[str, _Node]:
        if not isinstance(node.value, dict):
            raise self.fail(node, f"{what} must be a mapping, got {_type_name(node.value)}")
        allowed = tuple(allowed)
        for key, child in node.value.items():
            if key not in allowed:
                raise self.fail(
                    child,
                    f"unknown key {key!r}{_did_you_mean(key, allowed)}; {what} takes: {', '.join(allowed)}",
                    at_key=True,
                )
        return node.value

    def str_(self, node: _Node, *, what: str = "a string") -> str:
        if not isinstance(node.value, str):
            raise self.fail(node, f"expected {what}, got {_type_name(node.value)} {_show(node.value)}")
        return node.value

    def choice(self, node: _Node, choices: Iterable[str], what: str) -> str:
        choices = tuple(choices)
        value = self.str_(node, what=f"a {what} ({' | '.join(choices)})")
        if value not in choices:
            hint = _did_you_mean(value, choices)
            raise self.fail(node, f"unknown {what} {value!r}{hint}; choose from {', '.join(choices)}")
        return value

    def int_(self, node: _Node, lo: int, hi: int, what: str = "value") -> int:
        value = node.value
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(node, f"expected an integer, got {_type_name(value)} {_show(value)}")
        if value < lo:
            raise self.fail(node, f"{what} must be at least {lo}, got {value}")
        if value > hi:
            raise self.fail(node, f"{what} {_show(value)} is too large (at most {hi})")
        return value

    def float_(
        self, node: _Node, lo: float, hi: float, what: str = "value", *, lo_open: bool = True, hi_open: bool = False
    ) -> float:
        value = node.value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(node, f"expected a number, got {_type_name(value)} {_show(value)}")
        value = float(value)
        if not math.isfinite(value):
            raise self.fail(node, f"{what} must be a finite number, got {value}")
        if value < lo or (lo_open and value == lo):
            raise self.fail(node, f"{what} must be {'>' if lo_open else '>='} {lo:g}, got {value:g}")
        if value > hi or (hi_open and value == hi):
            raise self.fail(node, f"{what} must be {'<' if hi_open else '<='} {hi:g}, got {value:g}")
        return value

    def bool_(self, node: _Node) -> bool:
        if not isinstance(node.value, bool):
            raise self.fail(node, f"expected true or false, got {_type_name(node.value)} {_show(node.value)}")
        return node.value

    def items(self, node: _Node, *, axis: bool = True) -> list[_Node]:
        """A list's elements; a lone scalar or mapping counts as a one-element list if `axis`."""
        if isinstance(node.value, list):
            if not node.value:
                raise self.fail(node, "empty list; give at least one value")
            return node.value
        if axis and node.value is not None:
            return [node]
        raise self.fail(node, f"expected a list, got {_type_name(node.value)}")

    def path_(self, node: _Node) -> str:
        """A file or folder, relative to the suite file's directory (else the cwd)."""
        text = self.str_(node, what="a path")
        if not text.strip():
            raise self.fail(node, "empty path")
        return os.path.normpath(os.path.join(self.ctx.base_dir, os.path.expanduser(text)))


class _ScalarAxes(_Section):
    """One value of a scalar matrix axis (batch_sizes, precisions, threads, device, mode); the
    matrix and the include/exclude rules read them alike."""

    def batch_size(self, node: _Node) -> int:
        return self.int_(node, 1, MAX_BATCH_SIZE, "batch size")

    def precision(self, node: _Node) -> str:
        return self.choice(node, PRECISIONS, "precision")

    def mode(self, node: _Node) -> str:
        return self.choice(node, MODES, "mode")

    def threads(self, node: _Node) -> int:
        if node.value is None:
            return self.ctx.default_threads()
        return self.int_(node, 1, MAX_THREADS, "threads")

    def device(self, node: _Node | None) -> str:
        device = "auto" if node is None else self.choice(node, DEVICES, "device")
        if device == "auto":
            return "cuda" if self.ctx.cuda_available else "cpu"
        return device


class _InputSizes(_Section):
    """`input_size`: one size, the axis (a list of sizes), and a size resolved for one model."""

    def one(self, node: _Node) -> _Size:
        """One input size: [C, H, W], [H, W], "CxHxW", "HxW" or an int (square)."""
        value = node.value
        hint = 'use [C, H, W], "CxHxW", "HxW", a single int, or train/test (the pretrained config\'s)'
        if value in ("train", "test"):  # resolved per model in resolve
            return (value, 0, 0)  # type: ignore[return-value]
        if isinstance(value, bool):
            raise self.fail(node, f"malformed input size {value!r}; {hint}")
        if isinstance(value, int):
            dims: list[tuple[int, _Node]] = [(value, node)]
        elif isinstance(value, str):
            m = _SIZE_STR.match(value)
            if not m:
                raise self.fail(node, f"malformed input size {_show(value)}; {hint}")
            dims = [(int(g), node) for g in m.groups() if g is not None]
        elif isinstance(value, list):
            if len(value) not in (2, 3):
                raise self.fail(node, f"malformed input size: a list of {len(value)} values; {hint}")
            dims = [(self.int_(child, -(2**62), 2**62, "size"), child) for child in value]
        else:
            raise self.fail(node, f"malformed input size: {_type_name(value)}; {hint}")
        if len(dims) == 1:
            dims = dims * 2
        c = None
        if len(dims) == 3:
            (c, cnode), dims = dims[0], dims[1:]
            if not 1 <= c <= MAX_CHANNELS:
                raise self.fail(cnode, f"channels must be between 1 and {MAX_CHANNELS}, got {_show(c)}")
        for side, snode in dims:
            if not 1 <= side <= MAX_SIDE:
                raise self.fail(snode, f"height and width must be between 1 and {MAX_SIDE}, got {_show(side)}")
        return (c, dims[0][0], dims[1][0])

    def axis(self, node: _Node) -> list[tuple[_Size, _Node]]:
        """The input_size axis. A flat list of ints is one size; a list of sizes is an axis."""
        value = node.value
        flat = isinstance(value, list) and all(type(v.value) is int for v in value)
        if isinstance(value, list) and value and not flat:
            return [(self.one(child), child) for child in value]
        if isinstance(value, list) and not value:
            raise self.fail(node, "empty list; give an input size")
        return [(self.one(node), node)]

    def resolve(self, model: _Model, size: _Size | None, snode: _Node | None) -> tuple[int, int, int]:
        """The (C, H, W) a case of `model` runs at: the model's default, or `size` completed by it."""
        if size is None:
            if model.input_size is None:
                message = f"user model {model.name!r} needs an input_size (at the model entry or the matrix)"
                raise self.fail(model.node, message)
            return model.input_size
        c, h, w = size
        if isinstance(c, str):  # input_size: train | test (cnnbench.models.timm_zoo)
            try:
                return named_input_size(model.name, c, user=model.source is not None)
            except UserError as exc:
                raise self.fail(snode, str(exc)) from None  # type: ignore[arg-type]
        if c is None:
            if model.input_size is None:
                raise self.fail(
                    snode,  # type: ignore[arg-type]
                    f"this size takes its channels from the model's default, "
                    f"but user model {model.name!r} has none; give CxHxW",
                )
            c = model.input_size[0]
        return (c, h, w)


class _Models(_Section):
    """`models`: registry names, globs over the registry, user models ('package.module:callable' or
    a mapping). User models' modules are imported last (`check_imports`), once the file is known good:
    importing one may take seconds (torch), and a typo elsewhere in the file should not cost that."""

    def __init__(self, ctx: _Context, sizes: _InputSizes):
        super().__init__(ctx)
        self.sizes = sizes
        self._imported: dict[str, _Node] = {}  # import path -> the node that named it first

    def parse(self, node: _Node) -> list[_Model]:
        out: list[_Model] = []
        for item in self.items(node):
            if isinstance(item.value, str):
                out.extend(self._named(item, item.value, None, (), item))
            elif isinstance(item.value, dict):
                out.extend(self._entry(item))
            else:
                got = _type_name(item.value)
                raise self.fail(item, f"a model is a name, a glob, 'package.module:callable' or a mapping, got {got}")
        return out

    def _entry(self, item: _Node) -> list[_Model]:
        entry = self.mapping(item, _MODEL_KEYS, "a model entry")
        kwargs = self._kwargs(entry["kwargs"]) if "kwargs" in entry else ()
        size = None
        if "input_size" in entry:
            (c, h, w), snode = self.sizes.one(entry["input_size"]), entry["input_size"]
            size = (c, h, w)
        if "import" in entry:
            target = entry["import"]
            self._import_path(target)
            name = self.str_(entry["name"]) if "name" in entry else target.value
            if "name" in entry:
                if not _MODEL_NAME.match(name):
                    raise self.fail(entry["name"], f"model name {name!r} may not contain spaces or any of | , [ ] =")
                if name in MODELS:
                    raise self.fail(entry["name"], f"{name!r} is a registry model; give the user model another name")
            if size is not None and isinstance(size[0], str):
                message = f"input_size: {size[0]} needs a registry or timm model; user model {name!r} has none"
                raise self.fail(snode, message)
            if size is not None and size[0] is None:
                raise self.fail(snode, f"user model {name!r} has no default channels; give the input size as CxHxW")
            return [_Model(name, target.value, size, kwargs, item)]  # type: ignore[arg-type]
        if "name" not in entry:
            raise self.fail(item, "a model entry needs `name` (a registry model) or `import` (a user model)")
        return self._named(entry["name"], self.str_(entry["name"]), size, kwargs, item)

    def _named(self, node: _Node, name: str, size: _Size | None, kwargs: tuple, item: _Node) -> list[_Model]:
        """A registry name, a glob over the registry, or a user model's import path."""
        if ":" in name and not is_timm_name(name):
            self._import_path(node)
            if size is not None and size[0] is None:
                raise self.fail(node, f"user model {name!r} has no default channels; give the input size as CxHxW")
            return [_Model(name, name, size, kwargs, item)]  # type: ignore[arg-type]
        if _GLOB_CHARS & set(name):
            names = list_models(name)
            if not names:
                message = f"the glob {name!r} matches no registry model; `bench.py list models` shows them all"
                raise self.fail(node, message)
        elif name in MODELS or is_timm_name(name):
            names = [name]
        else:
            raise self.fail(node, str(UnknownModelError(name, suggest(name))))
        out = []
        for n in names:
            try:  # a timm: name resolves its pretrained config here (cnnbench.models.timm_zoo)
                default = get_info(n).input_size
                named = named_input_size(n, size[0]) if size is not None and isinstance(size[0], str) else None
            except UserError as exc:
                raise self.fail(node, str(exc)) from None
            resolved = named or (default if size is None else (size[0] or default[0], size[1], size[2]))
            out.append(_Model(n, None, resolved, kwargs, item))
        return out

    def _import_path(self, node: _Node) -> str:
        target = self.str_(node, what="an import path 'package.module:callable'")
        if not _IMPORT_PATH.match(target):
            raise self.fail(node, f"malformed import path {target!r}; expected 'package.module:callable'")
        if self.ctx.check_imports and target not in self._imported:
            self._imported[target] = node  # imported once the whole file is known good
        return target

    def _kwargs(self, node: _Node) -> tuple[tuple[str, Any], ...]:
        if not isinstance(node.value, dict):
            raise self.fail(node, f"kwargs must be a mapping, got {_type_name(node.value)}")
        out = []
        for key, child in node.value.items():
            if not _IDENT.match(key):
                raise self.fail(child, f"keyword {key!r} is not a Python identifier", at_key=True)
            if not (child.value is None or isinstance(child.value, (bool, int, float, str))):
                raise self.fail(child, f"a model keyword argument must be a scalar, got {_type_name(child.value)}")
            out.append((key, child.value))
        return tuple(sorted(out))

    def check_imports(self) -> None:
        """Import the user models' modules in a child process (cnnbench.suite.usercode): no user code
        runs in the CLI, so an exit, a crash, a hang or a stray process at import is an error."""
        if not self._imported:
            return
        from cnnbench.suite.usercode import check_imports

        problems = check_imports(sys.executable, self.ctx.python_path, list(self._imported))
        for target, node in self._imported.items():
            if problems.get(target):
                raise self.fail(node, problems[target])


class _Backends(_Section):
    """`backends`: a backend name, or {name: {option: value}} checked against `table` (backend ->
    option -> Option: the schema's BACKEND_OPTIONS)."""

    def __init__(self, ctx: _Context, table: Mapping[str, Mapping[str, Option]]):
        super().__init__(ctx)
        self.table = table

    def parse(self, node: _Node) -> tuple[str, tuple[tuple[str, Any], ...]]:
        if isinstance(node.value, str):
            return self.choice(node, BACKENDS, "backend"), ()
        if not isinstance(node.value, dict):
            got = _type_name(node.value)
            raise self.fail(node, f"a backend is a name or a mapping {{name: {{option: value}}}}, got {got}")
        if len(node.value) != 1:
            raise self.fail(node, f"a backend mapping has exactly one key (the backend name), got {len(node.value)}")
        (name, onode), = node.value.items()
        if name not in BACKENDS:
            hint = _did_you_mean(name, BACKENDS)
            raise self.fail(onode, f"unknown backend {name!r}{hint}; choose from {', '.join(BACKENDS)}", at_key=True)
        if onode.value is None:
            return name, ()
        table = self.table.get(name, {})
        if not table:
            raise self.fail(onode, f"backend {name!r} takes no options")
        options = []
        for key, child in self.mapping(onode, table, f"backend {name!r}").items():
            options.append((key, self._option(child, table[key], key)))
        return name, tuple(sorted(options))

    def _option(self, node: _Node, opt: Option, key: str) -> Any:
        if opt.type is bool:
            return self.bool_(node)
        if opt.type is int:
            lo = opt.min if opt.min is not None else -(2**31)
            hi = opt.max if opt.max is not None else 2**31
            return self.int_(node, lo, hi, key)
        if opt.choices:
            return self.choice(node, opt.choices, key)
        value = self.str_(node)
        problem = opt.check(value) if opt.check else None
        if problem:
            raise self.fail(node, problem)
        return value


class _MeasureSettings(_Section):
    """`measure`: Measure() defaults <- defaults.measure <- the matrix's measure, each field checked,
    then the fields checked against each other."""

    def parse(self, layers: list[_Node]) -> Measure:
        values: dict[str, Any] = {}
        nodes: dict[str, _Node] = {}
        for layer in layers:
            for key, child in self.mapping(layer, _MEASURE_FIELDS, "measure").items():
                values[key] = self._field(key, child)
                nodes[key] = child
        merged = dataclasses.replace(Measure(), **values)

        def check(ok: bool, a: str, b: str, message: str) -> None:
            if not ok:
                raise self.fail(nodes.get(b) or nodes[a], message)

        check(merged.min_time_s <= merged.max_time_s, "min_time_s", "max_time_s",
              f"min_time_s ({merged.min_time_s:g}) must not exceed max_time_s ({merged.max_time_s:g})")  # fmt: skip
        check(merged.min_samples <= merged.max_samples, "min_samples", "max_samples",
              f"min_samples ({merged.min_samples}) must not exceed max_samples ({merged.max_samples})")  # fmt: skip
        check(merged.max_time_s < merged.timeout_s, "max_time_s", "timeout_s",
              f"timeout_s ({merged.timeout_s:g}) must exceed max_time_s ({merged.max_time_s:g}): "
              "the worker also builds and warms up")  # fmt: skip
        if "repeats" not in values and self.ctx.default_repeats > 1:  # several shorter processes (processes.py)
            from cnnbench.stats.processes import split_budget

            merged = dataclasses.replace(merged, **split_budget(merged, self.ctx.default_repeats))
        return merged

    def _field(self, key: str, node: _Node) -> Any:
        if key == "warmup":
            return self.int_(node, 0, 1_000_000, key)
        if key in ("min_samples", "max_samples"):
            return self.int_(node, 1, 10_000_000, key)
        if key == "repeats":
            return self.int_(node, 1, 1000, key)
        if key in ("detail", "energy", "transfer"):
            return self.bool_(node)
        if key == "memory_limit":
            from cnnbench.measure.memguard import parse_bytes

            try:
                return None if node.value is None else parse_bytes(node.value)
            except ValueError as exc:
                raise self.fail(node, f"memory_limit {exc}") from None
        if key == "target_rel_ci":
            return self.float_(node, 0.0, 1.0, key, hi_open=True)
        if key == "block_min_ms":
            return self.float_(node, 0.0, 60_000.0, key)
        # min_time_s, max_time_s, timeout_s
        return self.float_(node, 0.0, 86_400.0, key)


class _Dataset(_Section):
    """`accuracy.dataset`: its kind, where it is (checked to exist and hold data), and its transforms."""

    def parse(self, node: _Node) -> dict[str, Any]:
        ds = self.mapping(node, _DATASET_KEYS, "dataset")
        if "kind" not in ds:
            raise self.fail(node, f"required key `kind` is missing ({' | '.join(DATASET_KINDS)})")
        kind = self.choice(ds["kind"], DATASET_KINDS, "dataset kind")
        out: dict[str, Any] = {"kind": kind}
        if kind == "digits":
            if "path" in ds:
                raise self.fail(ds["path"], "the digits dataset is bundled with scikit-learn; it takes no path", at_key=True)
            out["split"] = self.choice(ds["split"], ("train", "test"), "digits split") if "split" in ds else "test"
        else:
            if "path" not in ds:
                raise self.fail(node, f"required key `path` is missing (the {kind} dataset's location)")
            if "split" in ds:
                raise self.fail(ds["split"], "only the digits dataset has a split", at_key=True)
            path = self.path_(ds["path"])
            problem = check_dataset_path(kind, path)
            if problem:
                raise self.fail(ds["path"], problem)
            out["path"] = path
        if "strict" in ds:
            if kind != "imagefolder":
                raise self.fail(ds["strict"], "strict applies to imagefolder images only", at_key=True)
            out["strict"] = self.bool_(ds["strict"])
        if "limit" in ds:
            out["limit"] = self.int_(ds["limit"], 1, 10**9, "limit")
        if "transforms" in ds:
            out["transforms"] = self._transforms(ds["transforms"], kind)
        return out

    def _transforms(self, node: _Node, kind: str) -> dict[str, Any]:
        allowed = _TRANSFORM_KEYS[kind]
        if not allowed and node.value is not None:
            raise self.fail(node, "a tensors dataset is used as it is; it takes no transforms", at_key=True)
        out: dict[str, Any] = {}
        for key, child in self.mapping(node, allowed, f"{kind} transforms").items():
            if key in ("resize", "crop"):
                out[key] = self._side_or_pair(child, key)
            elif key in ("mean", "std"):
                values = child.value if isinstance(child.value, list) else [child]
                if not values:
                    raise self.fail(child, f"{key} is empty; give one value or one per channel")
                lo = 0.0 if key == "std" else -1e6
                out[key] = [self.float_(v, lo, 1e6, key, lo_open=key == "std") for v in values]
            elif key == "interpolation":
                out[key] = self.choice(child, INTERPOLATIONS, "interpolation")
            else:
                out[key] = self.bool_(child)
        return out

    def _side_or_pair(self, node: _Node, what: str) -> int | list[int]:
        if isinstance(node.value, list):
            if len(node.value) != 2:
                raise self.fail(node, f"{what} is one side (int) or [height, width]")
            return [self.int_(v, 1, MAX_SIDE, what) for v in node.value]
        return self.int_(node, 1, MAX_SIDE, what)


class _Accuracy(_Section):
    """`accuracy`: what to evaluate on (`_Dataset`) and with which weights, as the case's canonical
    evaluation JSON (None: not measured)."""

    def __init__(self, ctx: _Context):
        super().__init__(ctx)
        self.dataset = _Dataset(ctx)

    def parse(self, node: _Node | None) -> str | None:
        if node is None or node.value is None:
            return None
        acc = self.mapping(node, _ACCURACY_KEYS, "accuracy")
        if "dataset" not in acc:
            raise self.fail(node, "required key `dataset` is missing (what to evaluate on)")
        config: dict[str, Any] = {"dataset": self.dataset.parse(acc["dataset"])}
        if "weights" in acc and acc["weights"].value is not None:
            config["weights"] = self._weights(acc["weights"])
        return canonical_evaluation(config)

    def _weights(self, node: _Node) -> str:
        text = self.str_(node, what="a weights file or a torchvision weights name")
        if is_torchvision_weights_name(text):
            return text  # resolved in the worker, from the local torch hub cache only
        path = self.path_(node)
        if not os.path.isfile(path):
            what = "is a folder, not a weights file" if os.path.isdir(path) else "not found"
            raise self.fail(node, f"weights file {what}: {path}")
        return path


class _Rules(_Section):
    """`include` / `exclude`: a list of rules, each a mapping of case fields to a value or a list
    of values (models: globs); a rule matches a case when all its fields do."""

    def __init__(self, ctx: _Context, scalars: _ScalarAxes, sizes: _InputSizes):
        super().__init__(ctx)
        self.scalars = scalars
        self.sizes = sizes

    def parse(self, node: _Node) -> list[_Rule]:
        out = []
        for rnode in self.items(node, axis=False):
            rule = self.mapping(rnode, _RULE_KEYS, "a rule")
            if not rule:
                raise self.fail(rnode, "empty rule; it would match every case")
            out.append([self._matcher(key, child) for key, child in rule.items()])
        return out

    @staticmethod
    def any_matches(rules: list[_Rule], case: CaseSpec) -> bool:
        return any(all(m(case) for m in rule) for rule in rules)

    def _matcher(self, key: str, node: _Node) -> Callable[[CaseSpec], bool]:
        if key == "input_size":
            sizes = [s for s, _ in self.sizes.axis(node)]
            return lambda case: any(
                (c is None or c == case.input_size[0]) and (h, w) == case.input_size[1:] for c, h, w in sizes
            )
        parse: Callable[[_Node], Any] = {
            "model": lambda n: self.str_(n, what="a model name or glob"),
            "batch_size": self.scalars.batch_size,
            "backend": lambda n: self.choice(n, BACKENDS, "backend"),
            "precision": self.scalars.precision,
            "device": lambda n: self.choice(n, ("cpu", "cuda"), "device"),
            "threads": self.scalars.threads,
            "channels_last": self.bool_,
            "mode": self.scalars.mode,
        }[key]
        wanted = [parse(n) for n in self.items(node)]
        if key == "model":
            return lambda case: any(fnmatch.fnmatchcase(case.model, pat) for pat in wanted)
        return lambda case: getattr(case, key) in wanted


class _Thresholds(_Section):
    """`thresholds`: metric (THRESHOLD_METRICS) -> a percent, "N%" or a number, kept as written."""

    def parse(self, node: _Node) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for metric, child in self.mapping(node, THRESHOLD_METRICS, "thresholds").items():
            value = child.value
            if isinstance(value, str):
                m = _PERCENT.match(value)
                if not m:
                    raise self.fail(child, f"expected a percentage like '5%', got {_show(value)}")
                pct = float(m.group(1))
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                pct = float(value)
            else:
                raise self.fail(child, f"expected a percentage like '5%' or a number, got {_type_name(value)}")
            if not math.isfinite(pct) or pct < 0 or pct > 1000:
                raise self.fail(child, f"threshold must be between 0% and 1000%, got {_show(value)}")
            out[metric] = value
        return out


class _Matrix(_Section):
    """One matrix, validated when made: each axis (the matrix's key, else `defaults`'), its measure
    (`defaults.measure` merged under its own), accuracy and include/exclude rules. `count` is its
    cases before include/exclude, known before any is built; `cases()` builds them in the
    documented order."""

    def __init__(self, top: _TopLevel, node: _Node, fields: dict[str, _Node], defaults: dict[str, _Node]):
        super().__init__(top.ctx)
        self.node = node
        self._fields = fields
        self._defaults = defaults
        self._resolve = top.sizes.resolve
        if "name" in fields:
            self.str_(fields["name"])
        models = self._get("models")
        if models is None:
            where = f"{node.path}.models" if node.path else "models"
            message = "required key is missing (give it in the matrix or in `defaults`)"
            raise SuiteError(self.ctx.path, message, field=where, line=node.line)
        self.models: list[_Model] = top.models.parse(models)
        scalars = top.scalars
        self.batch_sizes = self._axis("batch_sizes", scalars.batch_size, [1])
        self.backends = self._axis("backends", top.backends.parse, [("eager", ())])
        self.precisions = self._axis("precisions", scalars.precision, ["fp32"])
        sizes = self._get("input_size")  # (None, None): each model's default size
        self.sizes: list[tuple[_Size | None, _Node | None]] = [(None, None)]
        if sizes is not None:
            self.sizes = top.sizes.axis(sizes)  # type: ignore[assignment]
        self.channels_last = self._axis("channels_last", self.bool_, [False])
        self.threads = self._axis("threads", scalars.threads, [self.ctx.default_threads()])
        self.devices = self._axis("device", scalars.device, [scalars.device(None)])
        self.modes = self._axis("mode", scalars.mode, ["inference"])
        self.measure = top.measure.parse([n for n in (defaults.get("measure"), fields.get("measure")) if n is not None])
        self.evaluation = top.accuracy.parse(self._get("accuracy"))
        self.include = top.rules.parse(fields["include"]) if "include" in fields else None
        self.exclude = top.rules.parse(fields["exclude"]) if "exclude" in fields else []

        axes = (self.models, self.batch_sizes, self.backends, self.precisions, self.sizes,
                self.channels_last, self.threads, self.devices, self.modes)  # fmt: skip
        self.count = math.prod(map(len, axes))
        if self.count > MAX_CASES:
            raise self.fail(node, f"this matrix expands to {self.count} cases; at most {MAX_CASES} are allowed")

    def _get(self, key: str) -> _Node | None:
        return self._fields[key] if key in self._fields else self._defaults.get(key)

    def _axis(self, key: str, parse: Callable[[_Node], Any], default: list[Any]) -> list[Any]:
        node = self._get(key)
        if node is None:
            return default
        if key == "threads" and node.value is None:  # `threads: null` means the default
            return [self.ctx.default_threads()]
        return [parse(n) for n in self.items(node)]

    def cases(self) -> list[CaseSpec]:
        out = []
        for model in self.models:
            resolved = [self._resolve(model, size, snode) for size, snode in self.sizes]
            for bs, (backend, options), precision, size, cl, nthreads, device, mode in itertools.product(
                self.batch_sizes, self.backends, self.precisions, resolved, self.channels_last, self.threads,
                self.devices, self.modes,
            ):  # fmt: skip
                if mode != "train":
                    options = tuple(o for o in options if o[0] not in TRAIN_ONLY_OPTIONS)
                case = CaseSpec(
                    model=model.name,
                    batch_size=bs,
                    input_size=size,
                    backend=backend,
                    precision=precision,
                    device=device,
                    threads=nthreads,
                    channels_last=cl,
                    mode=mode,
                    options=options,
                    source=model.source,
                    model_kwargs=model.kwargs,
                    evaluation=self.evaluation if mode == "inference" else None,  # accuracy is an inference figure
                    measure=self.measure,
                )
                if self.include is not None and not _Rules.any_matches(self.include, case):
                    continue
                if _Rules.any_matches(self.exclude, case):
                    continue
                out.append(case)
        if not out:
            raise self.fail(self.node, "this matrix expands to no cases (its include/exclude rules drop them all)")
        return out


class _TopLevel(_Section):
    """The suite's top level: `name`, `description`, `thresholds`, `defaults` and the matrices (a
    `matrices` list, or the matrix keys at top level for one). Applies the suite-wide case cap
    before any case is built, keeps the first case of each key, and imports user models last.
    Holds the one instance of each section that its matrices share."""

    def __init__(self, ctx: _Context):
        super().__init__(ctx)
        self.thresholds = _Thresholds(ctx)
        self.scalars = _ScalarAxes(ctx)
        self.sizes = _InputSizes(ctx)
        self.models = _Models(ctx, self.sizes)
        self.backends = _Backends(ctx, BACKEND_OPTIONS)
        self.measure = _MeasureSettings(ctx)
        self.accuracy = _Accuracy(ctx)
        self.rules = _Rules(ctx, self.scalars, self.sizes)

    def read(self, root: _Node, *, require_name: bool) -> tuple[str, str, dict[str, Any], list[CaseSpec]]:
        """The suite's name, description, thresholds and expanded cases."""
        top = self.mapping(root, (*_TOP_KEYS, *(k for k in _MATRIX_KEYS if k != "name")), "a suite")
        name = self._name(root, top, require_name=require_name)
        description = self.str_(top["description"]) if "description" in top else ""
        thresholds = self.thresholds.parse(top["thresholds"]) if "thresholds" in top else {}
        defaults = self.mapping(top["defaults"], _DEFAULTS_KEYS, "defaults") if "defaults" in top else {}
        matrices = self._matrices(root, top, defaults)
        cases: dict[str, CaseSpec] = {}
        for matrix in matrices:
            for case in matrix.cases():
                cases.setdefault(case.key, case)
        if not cases:  # unreachable while each matrix must yield a case; kept as the contract
            raise SuiteError(self.ctx.path, "the suite expands to no cases", line=root.line)
        self.models.check_imports()
        return name, description, thresholds, list(cases.values())

    def _name(self, root: _Node, top: dict[str, _Node], *, require_name: bool) -> str:
        if "name" in top:
            name = self.str_(top["name"])
            if not _SUITE_NAME.match(name):
                raise self.fail(top["name"], f"suite name {name!r} may use only letters, digits, '_', '.' and '-'")
            return name
        if require_name:
            raise SuiteError(self.ctx.path, "required key is missing", field="name", line=root.line)
        return ""

    def _matrices(self, root: _Node, top: dict[str, _Node], defaults: dict[str, _Node]) -> list[_Matrix]:
        """Each matrix validated, in order, and the suite-wide cap checked from the axis lengths
        before any matrix is expanded: 90 matrices sharing one anchor would otherwise build 9
        million cases first."""
        top_matrix = {k: v for k, v in top.items() if k in _MATRIX_KEYS and k != "name"}
        if "matrices" in top:
            if top_matrix:
                key, node = next(iter(top_matrix.items()))
                raise self.fail(
                    node,
                    f"matrix key {key!r} at top level cannot be combined with `matrices`; "
                    "move it into a matrix or into `defaults`",
                    at_key=True,
                )
            fields = [(m, self.mapping(m, _MATRIX_KEYS, "a matrix")) for m in self.items(top["matrices"], axis=False)]
        else:
            fields = [(root, top_matrix)]
        matrices = []
        total = 0
        for node, matrix_fields in fields:
            matrix = _Matrix(self, node, matrix_fields, defaults)
            total += matrix.count
            if total > MAX_CASES:
                raise self.fail(node, f"the suite expands to more than {MAX_CASES} cases (at least {total} "
                                "by this matrix, before include/exclude); split it into several suites")
            matrices.append(matrix)
        return matrices
