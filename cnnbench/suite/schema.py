"""Suites: load a YAML file, validate every field, and expand it into `CaseSpec`s. Pure: no torch.

A suite names a set of cases as one or more matrices (models x batch sizes x backends x
precisions x ...). Validation happens here, before any model is built, so a typo costs a second
rather than a half-finished run. Every error is a `SuiteError` that names the file, the field
path (`matrices[0].batch_sizes[1]`) and the line: `cnnbench.suite.reader` reads the YAML into nodes that
remember where each value came from (PyYAML's plain `safe_load` forgets); this module is the schema:
the top level, `thresholds` and the matrix are validated here, the sections inside a matrix
(models, input sizes, backends, measure, accuracy, include/exclude) by `cnnbench.suite.sections`.

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
        accuracy:                   # measured top-1/top-5 after timing (see cnnbench/accuracy/)
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

import hashlib
import itertools
import math
import os
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

from cnnbench.core.errors import SuiteError
from cnnbench.core.spec import CaseSpec
from cnnbench.suite.reader import MAX_DEPTH, MAX_EVENTS, MAX_FILE_BYTES, MAX_NODES, from_python, Node, parse, read_bytes, show
from cnnbench.suite.sections import (
    MAX_BATCH_SIZE as MAX_BATCH_SIZE,
    MAX_CHANNELS as MAX_CHANNELS,
    MAX_SIDE as MAX_SIDE,
    MAX_THREADS as MAX_THREADS,
    Option,
    AccuracySection,
    BackendsSection,
    Context,
    InputSizes,
    MeasureSettings,
    ModelEntry,
    ModelsSection,
    RulesSection,
    ScalarAxes,
    Section,
    Size,
    type_name,
)

__all__ = [
    "Suite",
    "SuiteErrors",
    "MAX_REPORTED_ERRORS",
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

# Limits that turn hostile or mistyped input into an error instead of a hang or a crash. The limits
# on one value (MAX_BATCH_SIZE, MAX_THREADS, MAX_CHANNELS, MAX_SIDE) are cnnbench.suite.sections',
# where they are checked, imported above.
MAX_CASES = 20_000  # cases the whole suite may expand to (summed over matrices, before include/exclude)
MAX_REPORTED_ERRORS = 20  # a suite's errors reported at once; validation stops at this many


class SuiteErrors(SuiteError):
    """Several independent errors of one suite, reported at once (a suite with three mistakes
    takes one run to fix, not three), each on its own line with its field and line. `errors` holds
    each `SuiteError`; `line` and `field` are the first's."""

    def __init__(self, errors: Sequence[SuiteError], *, capped: bool = False):
        self.errors = tuple(errors)
        first = self.errors[0]
        more = f" (validation stopped at the first {len(self.errors)})" if capped else ""
        lines = "\n".join(f"  {e}" for e in self.errors)
        super().__init__(first.path, f"{len(self.errors)} errors{more}:\n{lines}")
        self.field, self.line = first.field, first.line
        self._head = f"{first.path}: {len(self.errors)} errors{more}:"

    def lines(self) -> tuple[str, ...]:
        return (self._head, *(f"  {e}" for e in self.errors))


class _Errors:
    """Collects the errors of independent parts of a suite (an axis item, a matrix's key, a
    top-level key), so validation goes on after one; a part that failed yields its default.
    Parts that depend on a failed one (the cases of a matrix) are not built."""

    def __init__(self) -> None:
        self.errors: list[SuiteError] = []

    def attempt(self, fn: Callable[..., Any], *args: Any, default: Any = None) -> Any:
        try:
            return fn(*args)
        except SuiteErrors as exc:
            self.errors.extend(exc.errors)
        except SuiteError as exc:
            self.errors.append(exc)
        if len(self.errors) >= MAX_REPORTED_ERRORS:
            raise SuiteErrors(self.errors[:MAX_REPORTED_ERRORS], capped=True)
        return default

    def raise_any(self) -> None:
        if len(self.errors) == 1:
            raise self.errors[0]
        if self.errors:
            raise SuiteErrors(self.errors)


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
_TOP_KEYS = ("name", "description", "thresholds", "defaults", "matrices")

_SUITE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
_PERCENT = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*%\s*$")


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
    data = read_bytes(path)
    sha256 = hashlib.sha256(data).hexdigest()
    root = parse(path, data)
    python_path = _python_path(path)
    ctx = Context(
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
    root = from_python(data, "")
    pp = tuple(python_path) if python_path is not None else (os.getcwd(),)
    ctx = Context(
        path, cuda_available=cuda_available, check_imports=check_imports, python_path=pp, default_threads=default_threads
    )
    return _TopLevel(ctx).read(root, require_name=False)[3]


def _python_path(path: str) -> tuple[str, ...]:
    dirs = [os.path.dirname(os.path.abspath(path)), os.getcwd()]
    return tuple(dict.fromkeys(dirs))


# --------------------------------------------------------------------------------------------
# Validation and expansion: the top level, `thresholds` and the matrix. The sections inside a
# matrix, and `Section`, the base with the error context and the scalar checks, are
# cnnbench.suite.sections'.


class _Thresholds(Section):
    """`thresholds`: metric (THRESHOLD_METRICS) -> a percent, "N%" or a number, kept as written."""

    def parse(self, node: Node) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for metric, child in self.mapping(node, THRESHOLD_METRICS, "thresholds").items():
            value = child.value
            if isinstance(value, str):
                m = _PERCENT.match(value)
                if not m:
                    raise self.fail(child, f"expected a percentage like '5%', got {show(value)}")
                pct = float(m.group(1))
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                pct = float(value)
            else:
                raise self.fail(child, f"expected a percentage like '5%' or a number, got {type_name(value)}")
            if not math.isfinite(pct) or pct < 0 or pct > 1000:
                raise self.fail(child, f"threshold must be between 0% and 1000%, got {show(value)}")
            out[metric] = value
        return out


class _Matrix(Section):
    """One matrix, validated when made: each axis (the matrix's key, else `defaults`'), its measure
    (`defaults.measure` merged under its own), accuracy and include/exclude rules. `count` is its
    cases before include/exclude, known before any is built; `cases()` builds them in the
    documented order."""

    def __init__(self, top: _TopLevel, node: Node, fields: dict[str, Node], defaults: dict[str, Node]):
        super().__init__(top.ctx)
        self.node = node
        self._fields = fields
        self._defaults = defaults
        self._resolve = top.sizes.resolve
        self._errors = errors = top.errors
        if "name" in fields:
            errors.attempt(self.str_, fields["name"])
        models = self._get("models")
        self.models: list[ModelEntry] = []
        if models is None:
            where = f"{node.path}.models" if node.path else "models"
            message = "required key is missing (give it in the matrix or in `defaults`)"
            errors.attempt(self._raise, SuiteError(self.ctx.path, message, field=where, line=node.line))
        else:
            self.models = errors.attempt(top.models.parse, models, default=[])
        scalars = top.scalars
        self.batch_sizes = self._axis("batch_sizes", scalars.batch_size, [1])
        self.backends = self._axis("backends", top.backends.parse, [("eager", ())])
        self.precisions = self._axis("precisions", scalars.precision, ["fp32"])
        sizes = self._get("input_size")  # (None, None): each model's default size
        self.sizes: list[tuple[Size | None, Node | None]] = [(None, None)]
        if sizes is not None:
            self.sizes = errors.attempt(top.sizes.axis, sizes, default=[(None, None)])
        self.channels_last = self._axis("channels_last", self.bool_, [False])
        self.threads = self._axis("threads", scalars.threads, [self.ctx.default_threads()])
        self.devices = self._axis("device", scalars.device, [scalars.device(None)])
        self.modes = self._axis("mode", scalars.mode, ["inference"])
        measures = [n for n in (defaults.get("measure"), fields.get("measure")) if n is not None]
        self.measure = errors.attempt(top.measure.parse, measures, default=None)
        self.evaluation = errors.attempt(top.accuracy.parse, self._get("accuracy"))
        self.include = errors.attempt(top.rules.parse, fields["include"]) if "include" in fields else None
        self.exclude = errors.attempt(top.rules.parse, fields["exclude"], default=[]) if "exclude" in fields else []

        axes = (self.models, self.batch_sizes, self.backends, self.precisions, self.sizes,
                self.channels_last, self.threads, self.devices, self.modes)  # fmt: skip
        self.count = math.prod(map(len, axes))
        if self.count > MAX_CASES:
            raise self.fail(node, f"this matrix expands to {self.count} cases; at most {MAX_CASES} are allowed")

    def _get(self, key: str) -> Node | None:
        return self._fields[key] if key in self._fields else self._defaults.get(key)

    def _axis(self, key: str, parse: Callable[[Node], Any], default: list[Any]) -> list[Any]:
        node = self._get(key)
        if node is None:
            return default
        if key == "threads" and node.value is None:  # `threads: null` means the default
            return [self.ctx.default_threads()]
        items = self._errors.attempt(self.items, node, default=[])
        missing = object()
        values = [self._errors.attempt(parse, n, default=missing) for n in items]
        return [v for v in values if v is not missing] or default

    @staticmethod
    def _raise(exc: SuiteError) -> None:
        raise exc

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
                if self.include is not None and not RulesSection.any_matches(self.include, case):
                    continue
                if RulesSection.any_matches(self.exclude, case):
                    continue
                out.append(case)
        if not out:
            raise self.fail(self.node, "this matrix expands to no cases (its include/exclude rules drop them all)")
        return out


class _TopLevel(Section):
    """The suite's top level: `name`, `description`, `thresholds`, `defaults` and the matrices (a
    `matrices` list, or the matrix keys at top level for one). Applies the suite-wide case cap
    before any case is built, keeps the first case of each key, and imports user models last.
    Holds the one instance of each section that its matrices share."""

    def __init__(self, ctx: Context):
        super().__init__(ctx)
        self.errors = _Errors()
        self.thresholds = _Thresholds(ctx)
        self.scalars = ScalarAxes(ctx)
        self.sizes = InputSizes(ctx)
        self.models = ModelsSection(ctx, self.sizes)
        self.backends = BackendsSection(ctx, BACKEND_OPTIONS)
        self.measure = MeasureSettings(ctx)
        self.accuracy = AccuracySection(ctx)
        self.rules = RulesSection(ctx, self.scalars, self.sizes)

    def read(self, root: Node, *, require_name: bool) -> tuple[str, str, dict[str, Any], list[CaseSpec]]:
        """The suite's name, description, thresholds and expanded cases."""
        top = self.mapping(root, (*_TOP_KEYS, *(k for k in _MATRIX_KEYS if k != "name")), "a suite")
        errors = self.errors
        name = errors.attempt(lambda: self._name(root, top, require_name=require_name), default="")
        description = errors.attempt(self.str_, top["description"], default="") if "description" in top else ""
        thresholds = errors.attempt(self.thresholds.parse, top["thresholds"], default={}) if "thresholds" in top else {}
        defaults = {}
        if "defaults" in top:
            defaults = errors.attempt(self.mapping, top["defaults"], _DEFAULTS_KEYS, "defaults", default={})
        matrices = self._matrices(root, top, defaults)
        errors.raise_any()  # every independent error at once, before any case is built
        cases: dict[str, CaseSpec] = {}
        for matrix in matrices:
            for case in matrix.cases():
                cases.setdefault(case.key, case)
        if not cases:  # unreachable while each matrix must yield a case; kept as the contract
            raise SuiteError(self.ctx.path, "the suite expands to no cases", line=root.line)
        self.models.check_imports()
        return name, description, thresholds, list(cases.values())

    def _name(self, root: Node, top: dict[str, Node], *, require_name: bool) -> str:
        if "name" in top:
            name = self.str_(top["name"])
            if not _SUITE_NAME.match(name):
                raise self.fail(top["name"], f"suite name {name!r} may use only letters, digits, '_', '.' and '-'")
            return name
        if require_name:
            raise SuiteError(self.ctx.path, "required key is missing", field="name", line=root.line)
        return ""

    def _matrices(self, root: Node, top: dict[str, Node], defaults: dict[str, Node]) -> list[_Matrix]:
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
            fields = []
            for m in self.items(top["matrices"], axis=False):
                mapping = self.errors.attempt(self.mapping, m, _MATRIX_KEYS, "a matrix")
                if mapping is not None:
                    fields.append((m, mapping))
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
