"""The suite schema's sections inside a matrix, one validator each (the schema: `cnnbench.suite.schema`).

Each section turns its part of the `Node` tree (`cnnbench.suite.reader`) into plain values, or
raises a `SuiteError` naming the file, the field path and the line. They share a `Context` (the
file and what `load_suite` was told) and the scalar checks of `Section`, their base:

    ScalarAxes      batch_sizes, precisions, threads, device, mode: one value of each
    InputSizes      input_size: one size, the axis, and a size resolved for a model
    ModelsSection          models: registry names, globs, user models; their imports, checked last
    BackendsSection        backends: a name, or {name: {option: value}} against a table of Options
    MeasureSettings measure: the layers merged over Measure(), each field checked
    _Dataset         accuracy.dataset (and its transforms)
    AccuracySection        accuracy: dataset and weights, as the case's canonical evaluation JSON
    RulesSection           include / exclude: each rule a list of matchers over a CaseSpec

The top level, `thresholds` and the matrix itself (which builds the cases) stay in the schema
module. This module does not import it: what it needs from there (the backend options table,
`default_threads`) is handed in.
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import math
import os
import re
import sys
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

from cnnbench.accuracy import DATASET_KINDS, INTERPOLATIONS, check_dataset_path, is_torchvision_weights_name
from cnnbench.core.errors import SuiteError, UnknownModelError, UserError
from cnnbench.core.spec import BACKENDS, DEVICES, MODES, PRECISIONS, CaseSpec, Measure, canonical_evaluation
from cnnbench.models.catalog import MODELS, get_info, list_models, named_input_size, suggest
from cnnbench.models.timm_zoo import is_timm_name
from cnnbench.suite.reader import Node, show
from cnnbench.measure.memguard import parse_bytes
from cnnbench.stats.processes import split_budget
from cnnbench.suite.usercode import check_imports

__all__ = ["Option", "MAX_BATCH_SIZE", "MAX_THREADS", "MAX_CHANNELS", "MAX_SIDE"]

# Limits that turn hostile or mistyped input into an error instead of a hang or a crash (the
# suite-wide MAX_CASES is the schema's).
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


_ACCURACY_KEYS = ("dataset", "weights")
_DATASET_KEYS = ("kind", "path", "split", "limit", "strict", "transforms")
_TRANSFORM_KEYS = {  # per dataset kind
    "imagefolder": ("resize", "crop", "mean", "std", "interpolation", "grayscale"),
    "digits": ("mean", "std"),
    "tensors": (),
}
_MODEL_KEYS = ("name", "import", "input_size", "kwargs")
_RULE_KEYS = (
    "model", "batch_size", "backend", "precision", "device",
    "threads", "channels_last", "mode", "input_size",
)  # fmt: skip
_MEASURE_FIELDS = {f.name: f for f in dataclasses.fields(Measure)}

_IMPORT_PATH = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
_MODEL_NAME = re.compile(r"^[^\s|,\[\]=]+$")
_IDENT = re.compile(r"^[A-Za-z_]\w*$")
_SIZE_STR = re.compile(r"^\s*(\d+)\s*(?:[x×]\s*(\d+)\s*(?:[x×]\s*(\d+)\s*)?)?$", re.IGNORECASE)
_GLOB_CHARS = set("*?[")


def type_name(value: Any) -> str:
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
class ModelEntry:
    name: str
    source: str | None  # import path of a user model
    input_size: tuple[int, int, int] | None  # default (C, H, W); None for a user model without one
    kwargs: tuple[tuple[str, Any], ...]
    node: Node


Size = tuple[int | None, int, int]  # (C or None = the model's default channels, H, W)
_Rule = list[Callable[[CaseSpec], bool]]


@dataclass
class Context:
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


class Section:
    """The base of every section: errors that name the file, the field path and the line, and the
    checks of one scalar, mapping or list node."""

    def __init__(self, ctx: Context):
        self.ctx = ctx

    def fail(self, node: Node, message: str, *, at_key: bool = False) -> SuiteError:
        line = node.key_line if at_key and node.key_line is not None else node.line
        if len(message) > _MAX_MESSAGE:  # some messages quote the user's value, which may be huge
            message = message[: _MAX_MESSAGE - 3] + "..."
        return SuiteError(self.ctx.path, message, field=node.path or None, line=line)

    def mapping(self, node: Node, allowed: Iterable[str], what: str) -> dict[str, Node]:
        if not isinstance(node.value, dict):
            raise self.fail(node, f"{what} must be a mapping, got {type_name(node.value)}")
        allowed = tuple(allowed)
        for key, child in node.value.items():
            if key not in allowed:
                raise self.fail(
                    child,
                    f"unknown key {key!r}{_did_you_mean(key, allowed)}; {what} takes: {', '.join(allowed)}",
                    at_key=True,
                )
        return node.value

    def str_(self, node: Node, *, what: str = "a string") -> str:
        if not isinstance(node.value, str):
            raise self.fail(node, f"expected {what}, got {type_name(node.value)} {show(node.value)}")
        return node.value

    def choice(self, node: Node, choices: Iterable[str], what: str) -> str:
        choices = tuple(choices)
        value = self.str_(node, what=f"a {what} ({' | '.join(choices)})")
        if value not in choices:
            hint = _did_you_mean(value, choices)
            raise self.fail(node, f"unknown {what} {value!r}{hint}; choose from {', '.join(choices)}")
        return value

    def int_(self, node: Node, lo: int, hi: int, what: str = "value") -> int:
        value = node.value
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(node, f"expected an integer, got {type_name(value)} {show(value)}")
        if value < lo:
            raise self.fail(node, f"{what} must be at least {lo}, got {value}")
        if value > hi:
            raise self.fail(node, f"{what} {show(value)} is too large (at most {hi})")
        return value

    def float_(
        self, node: Node, lo: float, hi: float, what: str = "value", *, lo_open: bool = True, hi_open: bool = False
    ) -> float:
        value = node.value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(node, f"expected a number, got {type_name(value)} {show(value)}")
        value = float(value)
        if not math.isfinite(value):
            raise self.fail(node, f"{what} must be a finite number, got {value}")
        if value < lo or (lo_open and value == lo):
            raise self.fail(node, f"{what} must be {'>' if lo_open else '>='} {lo:g}, got {value:g}")
        if value > hi or (hi_open and value == hi):
            raise self.fail(node, f"{what} must be {'<' if hi_open else '<='} {hi:g}, got {value:g}")
        return value

    def bool_(self, node: Node) -> bool:
        if not isinstance(node.value, bool):
            raise self.fail(node, f"expected true or false, got {type_name(node.value)} {show(node.value)}")
        return node.value

    def items(self, node: Node, *, axis: bool = True) -> list[Node]:
        """A list's elements; a lone scalar or mapping counts as a one-element list if `axis`."""
        if isinstance(node.value, list):
            if not node.value:
                raise self.fail(node, "empty list; give at least one value")
            return node.value
        if axis and node.value is not None:
            return [node]
        raise self.fail(node, f"expected a list, got {type_name(node.value)}")

    def path_(self, node: Node) -> str:
        """A file or folder, relative to the suite file's directory (else the cwd)."""
        text = self.str_(node, what="a path")
        if not text.strip():
            raise self.fail(node, "empty path")
        return os.path.normpath(os.path.join(self.ctx.base_dir, os.path.expanduser(text)))


class ScalarAxes(Section):
    """One value of a scalar matrix axis (batch_sizes, precisions, threads, device, mode); the
    matrix and the include/exclude rules read them alike."""

    def batch_size(self, node: Node) -> int:
        return self.int_(node, 1, MAX_BATCH_SIZE, "batch size")

    def precision(self, node: Node) -> str:
        return self.choice(node, PRECISIONS, "precision")

    def mode(self, node: Node) -> str:
        return self.choice(node, MODES, "mode")

    def threads(self, node: Node) -> int:
        if node.value is None:
            return self.ctx.default_threads()
        return self.int_(node, 1, MAX_THREADS, "threads")

    def device(self, node: Node | None) -> str:
        device = "auto" if node is None else self.choice(node, DEVICES, "device")
        if device == "auto":
            return "cuda" if self.ctx.cuda_available else "cpu"
        return device


class InputSizes(Section):
    """`input_size`: one size, the axis (a list of sizes), and a size resolved for one model."""

    def one(self, node: Node) -> Size:
        """One input size: [C, H, W], [H, W], "CxHxW", "HxW" or an int (square)."""
        value = node.value
        hint = 'use [C, H, W], "CxHxW", "HxW", a single int, or train/test (the pretrained config\'s)'
        if value in ("train", "test"):  # resolved per model in resolve
            return (value, 0, 0)  # type: ignore[return-value]
        if isinstance(value, bool):
            raise self.fail(node, f"malformed input size {value!r}; {hint}")
        if isinstance(value, int):
            dims: list[tuple[int, Node]] = [(value, node)]
        elif isinstance(value, str):
            m = _SIZE_STR.match(value)
            if not m:
                raise self.fail(node, f"malformed input size {show(value)}; {hint}")
            dims = [(int(g), node) for g in m.groups() if g is not None]
        elif isinstance(value, list):
            if len(value) not in (2, 3):
                raise self.fail(node, f"malformed input size: a list of {len(value)} values; {hint}")
            dims = [(self.int_(child, -(2**62), 2**62, "size"), child) for child in value]
        else:
            raise self.fail(node, f"malformed input size: {type_name(value)}; {hint}")
        if len(dims) == 1:
            dims = dims * 2
        c = None
        if len(dims) == 3:
            (c, cnode), dims = dims[0], dims[1:]
            if not 1 <= c <= MAX_CHANNELS:
                raise self.fail(cnode, f"channels must be between 1 and {MAX_CHANNELS}, got {show(c)}")
        for side, snode in dims:
            if not 1 <= side <= MAX_SIDE:
                raise self.fail(snode, f"height and width must be between 1 and {MAX_SIDE}, got {show(side)}")
        return (c, dims[0][0], dims[1][0])

    def axis(self, node: Node) -> list[tuple[Size, Node]]:
        """The input_size axis. A flat list of ints is one size; a list of sizes is an axis."""
        value = node.value
        flat = isinstance(value, list) and all(type(v.value) is int for v in value)
        if isinstance(value, list) and value and not flat:
            return [(self.one(child), child) for child in value]
        if isinstance(value, list) and not value:
            raise self.fail(node, "empty list; give an input size")
        return [(self.one(node), node)]

    def resolve(self, model: ModelEntry, size: Size | None, snode: Node | None) -> tuple[int, int, int]:
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


class ModelsSection(Section):
    """`models`: registry names, globs over the registry, user models ('package.module:callable' or
    a mapping). User models' modules are imported last (`check_imports`), once the file is known good:
    importing one may take seconds (torch), and a typo elsewhere in the file should not cost that."""

    def __init__(self, ctx: Context, sizes: InputSizes):
        super().__init__(ctx)
        self.sizes = sizes
        self._imported: dict[str, Node] = {}  # import path -> the node that named it first

    def parse(self, node: Node) -> list[ModelEntry]:
        out: list[ModelEntry] = []
        for item in self.items(node):
            if isinstance(item.value, str):
                out.extend(self._named(item, item.value, None, (), item))
            elif isinstance(item.value, dict):
                out.extend(self._entry(item))
            else:
                got = type_name(item.value)
                raise self.fail(item, f"a model is a name, a glob, 'package.module:callable' or a mapping, got {got}")
        return out

    def _entry(self, item: Node) -> list[ModelEntry]:
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
            return [ModelEntry(name, target.value, size, kwargs, item)]  # type: ignore[arg-type]
        if "name" not in entry:
            raise self.fail(item, "a model entry needs `name` (a registry model) or `import` (a user model)")
        return self._named(entry["name"], self.str_(entry["name"]), size, kwargs, item)

    def _named(self, node: Node, name: str, size: Size | None, kwargs: tuple, item: Node) -> list[ModelEntry]:
        """A registry name, a glob over the registry, or a user model's import path."""
        if ":" in name and not is_timm_name(name):
            self._import_path(node)
            if size is not None and size[0] is None:
                raise self.fail(node, f"user model {name!r} has no default channels; give the input size as CxHxW")
            return [ModelEntry(name, name, size, kwargs, item)]  # type: ignore[arg-type]
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
            out.append(ModelEntry(n, None, resolved, kwargs, item))
        return out

    def _import_path(self, node: Node) -> str:
        target = self.str_(node, what="an import path 'package.module:callable'")
        if not _IMPORT_PATH.match(target):
            raise self.fail(node, f"malformed import path {target!r}; expected 'package.module:callable'")
        if self.ctx.check_imports and target not in self._imported:
            self._imported[target] = node  # imported once the whole file is known good
        return target

    def _kwargs(self, node: Node) -> tuple[tuple[str, Any], ...]:
        if not isinstance(node.value, dict):
            raise self.fail(node, f"kwargs must be a mapping, got {type_name(node.value)}")
        out = []
        for key, child in node.value.items():
            if not _IDENT.match(key):
                raise self.fail(child, f"keyword {key!r} is not a Python identifier", at_key=True)
            if not (child.value is None or isinstance(child.value, (bool, int, float, str))):
                raise self.fail(child, f"a model keyword argument must be a scalar, got {type_name(child.value)}")
            out.append((key, child.value))
        return tuple(sorted(out))

    def check_imports(self) -> None:
        """Import the user models' modules in a child process (cnnbench.suite.usercode): no user code
        runs in the CLI, so an exit, a crash, a hang or a stray process at import is an error."""
        if not self._imported:
            return

        problems = check_imports(sys.executable, self.ctx.python_path, list(self._imported))
        for target, node in self._imported.items():
            if problems.get(target):
                raise self.fail(node, problems[target])


class BackendsSection(Section):
    """`backends`: a backend name, or {name: {option: value}} checked against `table` (backend ->
    option -> Option: the schema's BACKEND_OPTIONS)."""

    def __init__(self, ctx: Context, table: Mapping[str, Mapping[str, Option]]):
        super().__init__(ctx)
        self.table = table

    def parse(self, node: Node) -> tuple[str, tuple[tuple[str, Any], ...]]:
        if isinstance(node.value, str):
            return self.choice(node, BACKENDS, "backend"), ()
        if not isinstance(node.value, dict):
            got = type_name(node.value)
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

    def _option(self, node: Node, opt: Option, key: str) -> Any:
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


class MeasureSettings(Section):
    """`measure`: Measure() defaults <- defaults.measure <- the matrix's measure, each field checked,
    then the fields checked against each other."""

    def parse(self, layers: list[Node]) -> Measure:
        values: dict[str, Any] = {}
        nodes: dict[str, Node] = {}
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

            merged = dataclasses.replace(merged, **split_budget(merged, self.ctx.default_repeats))
        return merged

    def _field(self, key: str, node: Node) -> Any:
        if key == "warmup":
            return self.int_(node, 0, 1_000_000, key)
        if key in ("min_samples", "max_samples"):
            return self.int_(node, 1, 10_000_000, key)
        if key == "repeats":
            return self.int_(node, 1, 1000, key)
        if key in ("detail", "energy", "transfer"):
            return self.bool_(node)
        if key == "memory_limit":

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


class _Dataset(Section):
    """`accuracy.dataset`: its kind, where it is (checked to exist and hold data), and its transforms."""

    def parse(self, node: Node) -> dict[str, Any]:
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

    def _transforms(self, node: Node, kind: str) -> dict[str, Any]:
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

    def _side_or_pair(self, node: Node, what: str) -> int | list[int]:
        if isinstance(node.value, list):
            if len(node.value) != 2:
                raise self.fail(node, f"{what} is one side (int) or [height, width]")
            return [self.int_(v, 1, MAX_SIDE, what) for v in node.value]
        return self.int_(node, 1, MAX_SIDE, what)


class AccuracySection(Section):
    """`accuracy`: what to evaluate on (`_Dataset`) and with which weights, as the case's canonical
    evaluation JSON (None: not measured)."""

    def __init__(self, ctx: Context):
        super().__init__(ctx)
        self.dataset = _Dataset(ctx)

    def parse(self, node: Node | None) -> str | None:
        if node is None or node.value is None:
            return None
        acc = self.mapping(node, _ACCURACY_KEYS, "accuracy")
        if "dataset" not in acc:
            raise self.fail(node, "required key `dataset` is missing (what to evaluate on)")
        config: dict[str, Any] = {"dataset": self.dataset.parse(acc["dataset"])}
        if "weights" in acc and acc["weights"].value is not None:
            config["weights"] = self._weights(acc["weights"])
        return canonical_evaluation(config)

    def _weights(self, node: Node) -> str:
        text = self.str_(node, what="a weights file or a torchvision weights name")
        if is_torchvision_weights_name(text):
            return text  # resolved in the worker, from the local torch hub cache only
        path = self.path_(node)
        if not os.path.isfile(path):
            what = "is a folder, not a weights file" if os.path.isdir(path) else "not found"
            raise self.fail(node, f"weights file {what}: {path}")
        return path


class RulesSection(Section):
    """`include` / `exclude`: a list of rules, each a mapping of case fields to a value or a list
    of values (models: globs); a rule matches a case when all its fields do."""

    def __init__(self, ctx: Context, scalars: ScalarAxes, sizes: InputSizes):
        super().__init__(ctx)
        self.scalars = scalars
        self.sizes = sizes

    def parse(self, node: Node) -> list[_Rule]:
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

    def _matcher(self, key: str, node: Node) -> Callable[[CaseSpec], bool]:
        if key == "input_size":
            sizes = [s for s, _ in self.sizes.axis(node)]
            return lambda case: any(
                (c is None or c == case.input_size[0]) and (h, w) == case.input_size[1:] for c, h, w in sizes
            )
        parse: Callable[[Node], Any] = {
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
