"""Gather results files into plain, already-computed records that the renderers only format.

Compute, then render (google/benchmark's `get_difference_report`): everything a table or a plot
shows is decided here - which rows are valid, the speedup over eager, achieved GFLOP/s, which
environments may share a table, the closest alternatives to a model - and the renderers
(`document`, `markdown`, `html`, `csv`, `plots`) never compute a statistic themselves.

Merging. Several files (shards, machines, days) become one report. Rows are grouped by an
*environment fingerprint* (the machine's hardware fingerprint plus the software versions that
change timings, `COMPARABLE_KEYS`) of the environment each case was measured in: a file written
by `bench.py merge` holds every machine's environment under `environments` and says per case
which one (`measured_on.environment`), its top-level `environment` keeping only the fields all
machines agree on. Rows of different groups are never put in the same table, compared or
averaged. Within a group, a case measured twice (same key, e.g. re-run on another
day) is not averaged either: the newest file's record wins and the older one is listed as
superseded. Every row keeps the host and the file it came from.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, Sequence

from cnnbench.stats import processes as _processes
from cnnbench.results import records as _records
from cnnbench.core.errors import UserError
from cnnbench.core.units import fmt_pct
from cnnbench.results.records import CaseRecord, ResultsFile, thaw
from cnnbench.results.schema import SCHEMA_VERSION
from cnnbench.core.text import natural_key
from cnnbench.accuracy import accuracy_difference
from cnnbench.models.catalog import MODELS
from cnnbench.select.figures import median_value, unreliable_reason

__all__ = [
    "COMPARABLE_KEYS",
    "BACKEND_ORDER",
    "EPOCH_DATASETS",
    "Source",
    "EnvGroup",
    "CaseRow",
    "ModelSummary",
    "Alternative",
    "ReportData",
    "environment_fingerprint",
    "measured_memory",
    "dataset_name",
    "comparable_accuracy",
    "measured_figure",
    "published_figure",
    "load_report_data",
    "build_report_data",
]

# Environment facts that must match for two timings to share a table. The machine is identified
# by `machine_fingerprint` (hardware: CPU model, cores, memory, GPU) when the file has one, else
# by hostname + CPU + GPU. The project's git commit is deliberately not here: it is shown, and a
# report over several commits of the same machine is the usual "days" case.
COMPARABLE_KEYS = (
    "machine",
    "cpu_model",
    "gpu_name",
    "torch",
    "torchvision",
    "onnxruntime",
    "python",
    "torch_cuda_build",
    "cudnn",
    "driver",
)

BACKEND_ORDER = ("eager", "compile", "onnxrt")

# Training-set sizes a training case's time per epoch is given for: (id, label, images), the same
# sizes as cnnbench.measure.training.DATASET_SIZES (ImageNet-1k train split, CIFAR-10 train set).
EPOCH_DATASETS: tuple[tuple[str, str, int], ...] = (
    ("imagenet1k", "ImageNet-1k", 1_281_167),
    ("cifar10", "CIFAR-10", 50_000),
)

# Published accuracy from torchvision's weight metadata is ImageNet-1K validation, center crop.
PUBLISHED_DATASET = "ImageNet-1K val"


@dataclass(frozen=True, slots=True)
class Source:
    """One results file as given on the command line."""

    path: str
    host: str
    env: str  # environment fingerprint
    schema_version: int
    created: str | None
    updated: str | None
    suite: str | None
    n_cases: int


@dataclass(frozen=True, slots=True)
class EnvGroup:
    """Files whose environments are comparable (same fingerprint): one set of tables."""

    fingerprint: str
    label: str  # what a row says about where it was measured
    slug: str  # file-name-safe label, for per-environment plot files
    hosts: tuple[str, ...]
    environment: dict[str, Any]  # the first file's environment (identical in COMPARABLE_KEYS)
    git_commits: tuple[str, ...]
    peak_gflops: tuple[float, ...]  # every distinct peak measured by the group's files
    sources: tuple[str, ...]

    @property
    def peak_gflops_median(self) -> float | None:
        if not self.peak_gflops:
            return None
        xs = sorted(self.peak_gflops)
        mid = len(xs) // 2
        return xs[mid] if len(xs) % 2 else (xs[mid - 1] + xs[mid]) / 2.0


# Below this share of top-1 predictions equal to fp32 eager's, a parity that passes its error
# tolerance still carries a visible note (an int8 case at 75% agreement is not plainly "ok").
LOW_TOP1_AGREEMENT = 0.99


@dataclass(frozen=True, slots=True)
class CaseRow:
    """One case of one file as the report shows it: the checked `CaseRecord` it wraps, where it
    was measured (file, host, environment) and what only a set of rows can decide (the speedup
    over eager, the accuracy check against eager). Every other figure is a property that reads
    the record (`record.X` decides it; no field is copied), so a row cannot disagree with its record.

    A row is valid when its record is (`CaseRecord.invalid_reason`): status ok, timed samples,
    and no failed parity check; the timing properties are None for any other row, which is shown
    as invalid with `invalid_reason`, never with a number.
    """

    record: CaseRecord  # the checked record this row shows (decisions live there)
    source: str  # the results file
    host: str
    env: str  # environment fingerprint
    peak_gflops: float | None = None  # the peak measured by the run of this row's environment, if any
    origin: str | None = None  # for a merged file: the shard file the record came from
    speedup_vs_eager: float | None = None  # eager median / this median, same env and variant
    accuracy_vs_eager: str | None = None  # why the measured accuracy differs from eager's, if it does

    # -- what was measured (the record's spec) ------------------------------------------------

    @property
    def key(self) -> str:
        return self.record.key

    @property
    def model(self) -> str:
        return self.record.spec.model

    @property
    def backend(self) -> str:
        """The backend name plus options, e.g. "compile[mode=max-autotune]"."""
        return self.record.backend_label

    @property
    def backend_name(self) -> str:
        return self.record.spec.backend

    @property
    def precision(self) -> str:
        return self.record.spec.precision

    @property
    def batch_size(self) -> int:
        """The batch the case asked for (`batch` is the one timed)."""
        return self.record.spec.batch_size

    @property
    def input_size(self) -> tuple[int, ...]:
        return tuple(self.record.spec.input_size)

    @property
    def device(self) -> str:
        return self.record.spec.device

    @property
    def threads(self) -> int:
        return self.record.spec.threads or 1

    @property
    def channels_last(self) -> bool:
        return self.record.spec.channels_last

    @property
    def mode(self) -> str:
        return self.record.spec.mode

    @property
    def model_kwargs(self) -> tuple[tuple[str, Any], ...]:
        return tuple(sorted(thaw(self.record.spec.model_kwargs).items()))

    @property
    def is_train(self) -> bool:
        return self.record.is_train

    @property
    def optimizer(self) -> str | None:
        """A training case's optimizer name ("sgd", "adamw"): `CaseRecord.optimizer`."""
        return self.record.optimizer

    @property
    def measured_batch_size(self) -> int | None:
        """The batch timed (< batch_size only after --oom-retry; None when nothing was timed)."""
        return self.record.measured_batch_size

    @property
    def batch(self) -> int:
        """The batch size actually timed: every per-batch figure (throughput, MACs, memory) is for
        it (`CaseRecord.batch`)."""
        return self.record.batch

    @property
    def batch_label(self) -> str:
        """"16 (of 32)" when --oom-retry had to lower the batch, else "32" (`CaseRecord.batch_label`)."""
        return self.record.batch_label

    # -- how it went ------------------------------------------------------------------------

    @property
    def status(self) -> str:
        return self.record.status

    @property
    def error(self) -> str | None:
        return self.record.error

    @property
    def valid(self) -> bool:
        return self.record.valid

    @property
    def invalid_reason(self) -> str | None:
        return self.record.invalid_reason

    @property
    def warnings(self) -> tuple[str, ...]:
        """The record's warnings, plus "processes split" for files that predate it."""
        rec = self.record
        return tuple(_processes.warnings_with_split({"warnings": rec.warnings, "runs": rec.runs}))

    # -- timings (valid rows only) ------------------------------------------------------------

    @property
    def latency_ms(self) -> dict[str, float] | None:
        """The record's summary of raw samples (valid rows only)."""
        return thaw(self.record.latency_ms) if self.valid and self.record.latency_ms else None

    @property
    def median_ms(self) -> float | None:
        return self.record.median_ms

    @property
    def iqr_ms(self) -> float | None:
        return self.record.iqr_ms

    @property
    def throughput_per_s(self) -> float | None:
        return self.record.throughput

    @property
    def first_call_ms(self) -> float | None:
        return self.record.first_call_ms

    @property
    def warmup_ms_total(self) -> float | None:
        warmup = self.record.warmup_ms
        return float(sum(warmup)) if warmup else None

    @property
    def setup(self) -> tuple[float | None, str | None]:
        """Compile or export time and how it was paid (`cnnbench.results.records.setup_time`), apart
        from every timed figure."""
        return self.record.setup

    @property
    def cold_start_ms(self) -> float | None:
        """Time before the first warmup call could start (`cnnbench.results.records.cold_start_ms`)."""
        return self.record.cold_start_ms

    # -- static counts ----------------------------------------------------------------------

    @property
    def params(self) -> int | None:
        return self.record.params

    @property
    def trainable_params(self) -> int | None:
        return self.record.trainable_params

    @property
    def aux_heads_included(self) -> bool | None:
        return self.record.aux_heads_included

    @property
    def gmacs(self) -> float | None:
        """MACs of the whole batch timed, in G."""
        return self.record.gmacs

    @property
    def gmacs_per_image(self) -> float | None:
        return self.record.gmacs_per_image

    @property
    def gflops(self) -> float | None:
        return self.record.gflops

    @property
    def counter(self) -> str | None:
        return self.record.counter

    @property
    def crosscheck(self) -> dict[str, Any] | None:
        """The second counter's figure (`counts.crosscheck`), None when it was not computed."""
        return _crosscheck(thaw(self.record.counts) if self.record.counts else {})

    # -- the record's sections, as plain JSON -------------------------------------------------

    @property
    def memory(self) -> dict[str, Any]:
        return thaw(self.record.memory) if self.record.memory else {}

    @property
    def backend_info(self) -> dict[str, Any]:
        return thaw(self.record.backend_info) if self.record.backend_info else {}

    @property
    def parity(self) -> dict[str, Any] | None:
        return thaw(self.record.parity) if self.record.parity is not None else None

    @property
    def accuracy(self) -> dict[str, Any] | None:
        return thaw(self.record.accuracy) if self.record.accuracy is not None else None

    @property
    def published(self) -> dict[str, Any] | None:
        return thaw(self.record.published) if self.record.published is not None else None

    @property
    def train(self) -> dict[str, Any] | None:
        """The `train` block of a training case."""
        return thaw(self.record.train) if self.record.train is not None else None

    @property
    def energy(self) -> dict[str, Any] | None:
        """The record's `energy` block (cnnbench.measure.energy), if any."""
        return thaw(self.record.energy) if self.record.energy is not None else None

    @property
    def measured_accuracy(self) -> dict[str, Any] | None:
        """This case's own measured accuracy (through its backend), if it was measured
        (`CaseRecord.measured_accuracy`)."""
        acc = self.record.measured_accuracy
        return thaw(acc) if acc is not None else None

    # -- display figures derived from the above -----------------------------------------------

    def epoch_seconds(self, images: int) -> float | None:
        """Seconds for one epoch of `images` at this training case's median step latency
        (`CaseRecord.epoch_seconds`, the one rule)."""
        return self.record.epoch_seconds(images)

    @property
    def variant(self) -> tuple[Any, ...]:
        """Everything but the model, backend and batch size that changes what is computed."""
        return (
            self.precision,
            tuple(self.input_size),
            self.device,
            self.threads,
            self.channels_last,
            self.mode,
            self.model_kwargs,
        )

    @property
    def variant_label(self) -> str:
        c, h, w = (list(self.input_size) + [None, None, None])[:3]
        parts = [self.precision, f"{c}x{h}x{w}", f"{self.device} t{self.threads}"]
        if self.channels_last:
            parts.append("channels_last")
        if self.mode != "inference":
            parts.append(self.mode)
        if self.model_kwargs:
            parts.append(",".join(f"{k}={v}" for k, v in self.model_kwargs))
        return " ".join(parts)

    @property
    def macs_total(self) -> float | None:
        if self.gmacs is not None:
            return self.gmacs
        if self.gmacs_per_image is not None:
            return self.gmacs_per_image * self.batch
        return None

    @property
    def achieved_gflops_per_s(self) -> float | None:
        """FLOPs (2 x MACs of the whole batch) per second of median latency, in GFLOP/s."""
        macs = self.macs_total
        if macs is None or not self.median_ms:
            return None
        return 2.0 * macs / (self.median_ms / 1000.0)

    @property
    def pct_of_peak(self) -> float | None:
        """Achieved GFLOP/s as a share of the measured fp32 GEMM peak: fp32 cases only (an int8
        or fp16 case runs other instructions, so an fp32 peak is not its ceiling)."""
        achieved = self.achieved_gflops_per_s
        if achieved is None or not self.peak_gflops or self.precision != "fp32":
            return None
        return 100.0 * achieved / self.peak_gflops

    @property
    def memory_measured(self) -> tuple[str, int] | None:
        """The measured peak shown in tables: on CUDA the peak allocated by torch (device-level
        growth for ONNX Runtime), on CPU the RSS growth over the post-load baseline."""
        return measured_memory(self.memory, device=self.device, backend=self.backend_name)

    @property
    def memory_analytic_bytes(self) -> int | None:
        """Parameter bytes plus the sum of activation bytes (the textbook per-layer table)."""
        p, a = self.memory.get("param_bytes"), self.memory.get("activation_bytes")
        if p is None and a is None:
            return None
        return int(p or 0) + int(a or 0)

    @property
    def parity_label(self) -> str:
        """The parity verdict as `cnnbench.measure.parity` gates it: the error relative to the output
        scale against the precision's tolerance (top-1 agreement is shown, not gated)."""
        if not self.parity:
            if self.is_train:
                return "—"
            return "reference" if self.backend_name == "eager" and self.precision == "fp32" else "—"
        rel, tol = _number(self.parity.get("max_rel_err")), _number(self.parity.get("tolerance"))
        agree = _number(self.parity.get("top1_agreement"))
        if self.parity.get("ok") is False:
            if rel is not None:
                return f"FAILED (rel err {rel:.2g}" + (f", tolerance {tol:g})" if tol is not None else ")")
            err = _number(self.parity.get("max_abs_err"))
            return "FAILED" + (f" (max abs err {err:.3g})" if err is not None else "")
        parts = []
        if rel is not None:
            parts.append(f"rel err {rel:.2g}" + (f" ≤ {tol:g}" if tol is not None else ""))
        if agree is not None:
            parts.append(f"top-1 {fmt_pct(100.0 * agree)}")
            if agree < LOW_TOP1_AGREEMENT:
                parts.append(f"⚠ low top-1 agreement with fp32 eager (< {fmt_pct(100 * LOW_TOP1_AGREEMENT)}): check its accuracy")
        return "ok" + (f" ({', '.join(parts)})" if parts else "")


@dataclass(frozen=True, slots=True)
class AccuracyFigure:
    """One top-1/top-5 figure and what kind it is: measured on a dataset, or published."""

    kind: str  # "measured" or "published"
    top1: float  # percent
    top5: float | None
    dataset: str
    detail: str  # e.g. "9,000/10,000 images" or the published weights' name


@dataclass(frozen=True, slots=True)
class ModelSummary:
    """What one model is, in one environment group: static counts and its accuracy."""

    env: str
    name: str
    description: str
    params: int | None
    trainable_params: int | None
    aux_heads_included: bool | None
    gmacs_per_image: float | None
    counter: str | None
    crosscheck: dict[str, Any] | None
    input_sizes: tuple[tuple[int, ...], ...]
    accuracy: AccuracyFigure | None  # measured if any, else published
    published: AccuracyFigure | None
    n_cases: int
    n_valid: int
    measured: AccuracyFigure | None = None
    published_meta: dict[str, Any] | None = None  # the record's `published` block as written


@dataclass(frozen=True, slots=True)
class Alternative:
    """Another model of the same results, compared at one configuration (same env and setup)."""

    relation: str  # "faster, at least as accurate" | "more accurate" | "faster"
    model: str
    latency_ms: float
    latency_ratio: float  # alternative / this model (below 1 is faster)
    top1: float | None
    accuracy_kind: str | None
    reference_ms: float
    reference_top1: float | None
    config: str  # the configuration both were compared at


@dataclass(slots=True)
class ReportData:
    sources: list[Source]
    envs: list[EnvGroup]
    rows: list[CaseRow]  # every case, valid or not, superseded ones excluded
    superseded: list[tuple[CaseRow, str]] = field(default_factory=list)  # (old row, newer file)
    # (id, label, images) a training case's time per epoch is given for: the built-in sizes,
    # then any the user asked for (`report --epoch-images LABEL=N`)
    epoch_datasets: tuple[tuple[str, str, int], ...] = EPOCH_DATASETS
    models: dict[tuple[str, str], ModelSummary] = field(default_factory=dict)  # (env, model)
    alternatives: dict[tuple[str, str], list[Alternative]] = field(default_factory=dict)

    def env(self, fingerprint: str) -> EnvGroup:
        return next(e for e in self.envs if e.fingerprint == fingerprint)

    @property
    def valid_rows(self) -> list[CaseRow]:
        return [r for r in self.rows if r.valid]

    @property
    def invalid_rows(self) -> list[CaseRow]:
        return [r for r in self.rows if not r.valid]

    def rows_of(self, env: str, model: str | None = None, *, valid_only: bool = False) -> list[CaseRow]:
        return [
            r
            for r in self.rows
            if r.env == env and (model is None or r.model == model) and (r.valid or not valid_only)
        ]

    def model_names(self, env: str | None = None) -> list[str]:
        names = {r.model for r in self.rows if env is None or r.env == env}
        return sorted(names, key=natural_key)

    def backends(self, env: str | None = None) -> list[str]:
        return sorted({r.backend for r in self.rows if env is None or r.env == env}, key=backend_sort_key)


# --------------------------------------------------------------------------------------------
# Small pure helpers


def backend_sort_key(label: str) -> tuple[int, str]:
    name = label.split("[", 1)[0]
    return (BACKEND_ORDER.index(name) if name in BACKEND_ORDER else len(BACKEND_ORDER), label)


def row_sort_key(row: CaseRow) -> tuple[Any, ...]:
    return (natural_key(row.model), repr(row.variant), row.batch_size, backend_sort_key(row.backend), row.host)


def measured_memory(memory: dict[str, Any] | None, *, device: str, backend: str) -> tuple[str, int] | None:
    """The measured peak a table shows, as (record key, bytes); None when not measured.

    On CUDA the peak allocated by torch (`cuda_peak_allocated_bytes`); ONNX Runtime does not
    allocate through torch, so for it only the device-level growth (`device_used_delta_bytes`,
    NVML) counts, and without NVML its memory is unavailable (torch's figure would measure
    nothing ORT allocated). On CPU the worker's peak RSS growth over its post-load baseline
    (`peak_rss_delta_bytes`). The one rule for the report and the terminal table.
    """
    if not isinstance(memory, dict):
        return None
    if device == "cuda":
        order = ("device_used_delta_bytes",) if backend == "onnxrt" else ("cuda_peak_allocated_bytes",)
    else:
        order = ("peak_rss_delta_bytes",)
    for name in order:
        value = memory.get(name)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return name, int(value)
    return None


def _git_commit(env: dict[str, Any]) -> str | None:
    if env.get("git_commit"):
        return str(env["git_commit"])
    git = env.get("git")
    if isinstance(git, dict) and git.get("commit"):
        return str(git["commit"]) + ("+dirty" if git.get("dirty") else "")
    return None


def comparable_facts(env: dict[str, Any]) -> dict[str, Any]:
    """The facts (COMPARABLE_KEYS) that decide whether two environments share a table."""
    machine = env.get("machine_fingerprint") or "host:" + str(env.get("hostname"))
    facts = {k: env.get(k) for k in COMPARABLE_KEYS if k != "machine"}
    facts["machine"] = machine
    return facts


def environment_fingerprint(env: dict[str, Any]) -> str:
    """A short stable hash of `comparable_facts(env)`."""
    blob = json.dumps(comparable_facts(env), sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "env"


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if value != value or value in (float("inf"), float("-inf")):
        return None
    return float(value)


_FAMILIES: tuple[tuple[str, str], ...] = (
    ("resnext", "ResNeXt (Xie et al. 2017): ResNet bottlenecks with grouped 3x3 convolutions (cardinality)"),
    ("wide_resnet", "Wide ResNet (Zagoruyko & Komodakis 2016): ResNet bottlenecks with twice the width"),
    ("resnet", "ResNet (He et al. 2015): stacked residual blocks with identity shortcuts and batch norm"),
    ("vgg", "VGG (Simonyan & Zisserman 2014): stacks of 3x3 convolutions and max pooling, three large FC layers"),
    ("alexnet", "AlexNet (Krizhevsky et al. 2012): five convolutions (11x11, 5x5, 3x3) and three FC layers"),
    ("googlenet", "GoogLeNet / Inception v1 (Szegedy et al. 2014): Inception modules with 1x1 bottlenecks"),
    ("inception_v3", "Inception v3 (Szegedy et al. 2015): factorized Inception modules, 299x299 input"),
    ("densenet", "DenseNet (Huang et al. 2017): each layer takes the concatenated maps of all earlier layers"),
    ("squeezenet", "SqueezeNet (Iandola et al. 2016): Fire modules (1x1 squeeze, 1x1/3x3 expand), no FC layer"),
    ("mobilenet_v2", "MobileNetV2 (Sandler et al. 2018): inverted residuals with depthwise separable convolutions"),
    ("mobilenet_v3", "MobileNetV3 (Howard et al. 2019): searched inverted residuals with squeeze-excitation, hard-swish"),
    ("shufflenet", "ShuffleNetV2 (Ma et al. 2018): channel split and shuffle, depthwise convolutions"),
    ("mnasnet", "MnasNet (Tan et al. 2019): mobile architecture found by latency-aware search"),
    ("efficientnet_v2", "EfficientNetV2 (Tan & Le 2021): fused-MBConv early stages, trained with progressive resizing"),
    ("efficientnet", "EfficientNet (Tan & Le 2019): MBConv blocks scaled jointly in depth, width and resolution"),
    ("regnet", "RegNet (Radosavovic et al. 2020): widths and depths from a simple quantized linear rule"),
    ("convnext", "ConvNeXt (Liu et al. 2022): a ResNet modernized with 7x7 depthwise convolutions and LayerNorm"),
    ("vit", "Vision Transformer (Dosovitskiy et al. 2020): patch embedding and transformer encoder (not a CNN)"),
    ("swin", "Swin Transformer (Liu et al. 2021): shifted-window attention in a hierarchy (not a CNN)"),
    ("maxvit", "MaxViT (Tu et al. 2022): MBConv plus block and grid attention"),
)


def describe_model(name: str, source: str | None = None) -> str:
    """One line saying what a model is: the registry's description or the family's."""
    if source:
        return f"user model {source}"
    try:

        info = MODELS.get(name)
    except Exception:  # noqa: BLE001 - the catalog is a convenience, never a failure
        info = None
    if info is not None and info.source != "torchvision" and info.description:
        return info.description
    for prefix, text in _FAMILIES:
        if name.startswith(prefix):
            return f"{text} (torchvision {name})"
    if info is not None:
        return info.description
    return "model not in the cnnbench registry"


# --------------------------------------------------------------------------------------------
# Loading


def load_report_data(paths: Sequence[str | Path]) -> ReportData:
    """Load and merge results files (raises ResultsFileError / UserError with one-line messages)."""
    if not paths:
        raise UserError("no results files given")
    loaded = [(str(p), _records.load(p)) for p in paths]
    return build_report_data(loaded)


def as_results_file(path: str, results: ResultsFile | dict[str, Any]) -> ResultsFile:
    """A checked `ResultsFile`: as given, or parsed (and migrated) from a results dict."""
    return _records.from_dict(results, path=path)


def build_report_data(loaded: Iterable[tuple[str, ResultsFile | dict[str, Any]]], *, require_ok: bool = True) -> ReportData:
    """Merge already loaded results (path, `ResultsFile` or results dict) into report records.

    Each record is attributed to the environment it was measured in: for a file written by
    `bench.py merge`, `environments[record.measured_on.environment]` (the merged file's top-level
    `environment` keeps only the fields all machines agree on, so it cannot say where a case
    ran); for any other file, the file's `environment`.
    """
    sources: list[Source] = []
    raw_rows: list[tuple[int, str, CaseRow]] = []  # (file order, updated, row)
    envs_by_fp: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for order, (path, given) in enumerate(loaded):
        results = as_results_file(path, given)
        env = thaw(results.environment)
        cases = results.cases
        updated = str(results.updated or results.created or "")
        fingerprints: dict[int, str] = {}
        file_fps: list[str] = []
        file_hosts: list[str] = []
        for record in cases:
            case_env_view = results.environment_of(record)
            case_env = env if case_env_view is results.environment else thaw(case_env_view)
            key = -1 if case_env_view is results.environment else id(case_env_view)
            if key not in fingerprints:
                fingerprints[key] = environment_fingerprint(case_env)
                envs_by_fp.setdefault(fingerprints[key], []).append((path, case_env))
            fp = fingerprints[key]
            measured_on = record.measured_on or {}
            host = str(case_env.get("hostname") or measured_on.get("hostname") or "unknown host")
            origin = measured_on.get("source") or case_env.get("source")
            row = _row_from_record(path, host, fp, case_env, record, origin=str(origin) if origin else None)
            raw_rows.append((order, updated, row))
            if fp not in file_fps:
                file_fps.append(fp)
            if host not in file_hosts:
                file_hosts.append(host)
        if not cases:  # still list the file, in the environment it names
            fp = environment_fingerprint(env)
            envs_by_fp.setdefault(fp, []).append((path, env))
            file_fps.append(fp)
            file_hosts.append(str(env.get("hostname") or "unknown host"))
        sources.append(
            Source(
                path=path,
                host=", ".join(file_hosts),
                env=file_fps[0],
                schema_version=results.schema_version,
                created=results.created,
                updated=results.updated or results.created,
                suite=_string_or_none(results.suite.get("name")),
                n_cases=len(cases),
            )
        )

    rows, superseded = _dedupe(raw_rows)
    if require_ok and not any(r.valid for r in rows):
        counts = Counter(r.status if r.status != "ok" else f"ok but {r.invalid_reason}" for r in rows)
        what = ", ".join(f"{n} {s}" for s, n in counts.most_common()) or "no cases at all"
        names = ", ".join(s.path for s in sources)
        raise UserError(f"no ok cases in {names}: nothing to report ({what})")

    envs = _env_groups(envs_by_fp)
    used = {r.env for r in rows}
    envs = [e for e in envs if e.fingerprint in used] or envs
    rows = _with_accuracy_checks(_with_speedups(rows))
    order_of = {e.fingerprint: i for i, e in enumerate(envs)}
    rows.sort(key=lambda r: (order_of.get(r.env, len(envs)), row_sort_key(r)))
    data = ReportData(sources=sources, envs=envs, rows=rows, superseded=superseded)
    for env in envs:
        for name in data.model_names(env.fingerprint):
            data.models[(env.fingerprint, name)] = _model_summary(data.rows_of(env.fingerprint, name), env.fingerprint, name)
    for env in envs:
        for name in data.model_names(env.fingerprint):
            data.alternatives[(env.fingerprint, name)] = closest_alternatives(data, env.fingerprint, name)
    return data


def rows_of_records(records: Sequence[CaseRecord | dict[str, Any]], *, source: str = "(this run)") -> list[CaseRow]:
    """The report's rows for the records of one run, in the records' order (the terminal table).

    Same rows, same rules as a report of that run's file: validity, speedup over eager and the
    accuracy check are decided by the same code; one run is one environment.
    """
    if all(isinstance(r, CaseRecord) for r in records):
        recs = list(records)
    else:
        plain = [r.to_json() if isinstance(r, CaseRecord) else r for r in records]
        recs = list(_records.parse_results({"schema_version": SCHEMA_VERSION, "cases": plain}, path=source).cases)
    rows = [_row_from_record(source, "", "", {}, rec) for rec in recs]
    return _with_accuracy_checks(_with_speedups(rows))


def _string_or_none(value: Any) -> str | None:
    return str(value) if value is not None else None


def _row_from_record(
    path: str, host: str, fp: str, env: dict[str, Any], record: CaseRecord, *, origin: str | None = None
) -> CaseRow:
    """One checked record as a row: every decision (valid, batch, throughput) is the record's."""
    return CaseRow(
        record=record,
        source=path,
        host=host,
        env=fp,
        peak_gflops=_number(env.get("peak_gflops")),
        origin=origin if origin and origin != Path(path).name else None,
    )


def _crosscheck(counts: dict[str, Any]) -> dict[str, Any] | None:
    """The second MAC counter's figure: the record's `counts.crosscheck` ({counter, gmacs,
    disagreement}, as `counting.counts_for` writes it), None when it was not computed."""
    cross = counts.get("crosscheck")
    if not isinstance(cross, dict):
        return None
    gmacs = _number(cross.get("gmacs"))
    if gmacs is None or not cross.get("counter"):
        return None
    return {"counter": str(cross["counter"]), "gmacs": gmacs, "disagreement": _number(cross.get("disagreement"))}


def _dedupe(raw: list[tuple[int, str, CaseRow]]) -> tuple[list[CaseRow], list[tuple[CaseRow, str]]]:
    """Per (env, key): keep the record of the newest file (by `updated`, then argument order)."""
    best: dict[tuple[str, str], tuple[tuple[str, int], CaseRow]] = {}
    superseded: list[tuple[CaseRow, str]] = []
    for order, updated, row in raw:
        ident = (row.env, row.key)
        rank = (updated, order)
        if ident in best:
            old_rank, old = best[ident]
            if rank >= old_rank:
                superseded.append((old, row.source))
                best[ident] = (rank, row)
            else:
                superseded.append((row, old.source))
        else:
            best[ident] = (rank, row)
    return [row for _, row in best.values()], superseded


def _env_groups(envs_by_fp: dict[str, list[tuple[str, dict[str, Any]]]]) -> list[EnvGroup]:
    hosts_of = {
        fp: tuple(sorted({str(e.get("hostname") or "unknown host") for _, e in items}))
        for fp, items in envs_by_fp.items()
    }
    labels: dict[str, str] = {}
    for fp, hosts in hosts_of.items():
        labels[fp] = hosts[0] if len(hosts) == 1 else f"{hosts[0]} +{len(hosts) - 1}"
    label_counts = Counter(labels.values())
    groups = []
    for fp, items in envs_by_fp.items():
        label = labels[fp]
        if label_counts[label] > 1:  # same host with other software: say which
            env = items[0][1]
            label = f"{label} (torch {env.get('torch')}, {fp[:6]})"
        commits = tuple(dict.fromkeys(c for c in (_git_commit(e) for _, e in items) if c))
        peaks = tuple(sorted({p for p in (_number(e.get("peak_gflops")) for _, e in items) if p}))
        groups.append(
            EnvGroup(
                fingerprint=fp,
                label=label,
                slug=_slug(label),
                hosts=hosts_of[fp],
                environment=dict(items[0][1]),
                git_commits=commits,
                peak_gflops=peaks,
                sources=tuple(dict.fromkeys(p for p, _ in items)),
            )
        )
    return groups


def _with_speedups(rows: list[CaseRow]) -> list[CaseRow]:
    """Speedup over eager, by the one rule (`cnnbench.results.records.speedups_over_eager`) within each
    environment: same model, variant and measured batch, a training step only against eager
    with the same optimizer."""
    ups = _records.speedups_over_eager([r.record for r in rows], scope=lambda i: rows[i].env)
    return [replace(r, speedup_vs_eager=up) if up is not None else r for r, up in zip(rows, ups)]


def _with_accuracy_checks(rows: list[CaseRow]) -> list[CaseRow]:
    """Flag a backend whose measured accuracy differs from eager's on the same images by more
    than `cnnbench.accuracy.tolerance_images` (`accuracy_difference` decides)."""

    eager: dict[tuple[Any, ...], dict[str, Any]] = {}
    for r in sorted(rows, key=lambda r: r.batch_size):
        acc = r.measured_accuracy
        if acc and r.valid and r.backend == "eager":
            eager.setdefault((r.env, r.model, r.variant, r.batch_size), acc)
            eager.setdefault((r.env, r.model, r.variant, None), acc)
    out = []
    for r in rows:
        acc = r.measured_accuracy
        if acc and r.backend != "eager":
            ref = eager.get((r.env, r.model, r.variant, r.batch_size)) or eager.get((r.env, r.model, r.variant, None))
            if ref is not None:
                try:
                    flag = accuracy_difference(acc, ref)
                except (KeyError, TypeError, ValueError):
                    flag = None  # counts missing: nothing to compare
                if flag:
                    r = replace(r, accuracy_vs_eager=flag)
        out.append(r)
    return out


def _first(values: Iterable[Any]) -> Any:
    return next((v for v in values if v is not None), None)


def dataset_name(acc: dict[str, Any]) -> str:
    """The dataset a measured accuracy is on: `dataset.name` (e.g. "digits test"), else its kind."""
    ds = acc.get("dataset")
    if isinstance(ds, dict):
        return str(ds.get("name") or ds.get("kind") or "unnamed dataset")
    return str(ds) if ds else "unnamed dataset"


def measured_figure(acc: dict[str, Any]) -> AccuracyFigure:
    """A record's measured accuracy (`cnnbench.accuracy.evaluate`'s dict) as a labelled figure."""
    top1 = _percent(acc, "top1", "correct1")
    top5 = _percent(acc, "top5", "correct5") if _number(acc.get("top5")) is not None else None
    detail = ""
    if acc.get("correct1") is not None and acc.get("total"):
        detail = f"{int(acc['correct1']):,}/{int(acc['total']):,} images correct (top-1)"
        if acc.get("skipped"):
            detail += f", {int(acc['skipped']):,} undecodable skipped"
    return AccuracyFigure("measured", top1, top5, dataset_name(acc), detail)


def published_figure(pub: dict[str, Any] | None) -> AccuracyFigure | None:
    """torchvision's published accuracy, from the record's `published` block
    (`models.registry.published_metadata`: `acc@1`, `acc@5` in percent, `dataset`, `weights`)."""
    if not pub:
        return None
    acc1 = _number(pub.get("acc@1"))
    if acc1 is None:
        return None
    dataset = f"{pub['dataset']} val" if pub.get("dataset") else PUBLISHED_DATASET
    detail = str(pub.get("weights") or "")
    if pub.get("source") == "timm":  # cnnbench.models.timm_zoo.published: say whose table, at what size
        detail = f"timm {detail} (timm's results table, {pub.get('accuracy_img_size')}px)"
    return AccuracyFigure("published", acc1, _number(pub.get("acc@5")), dataset, detail)


def _accuracy_of(rows: list[CaseRow]) -> tuple[AccuracyFigure | None, AccuracyFigure | None]:
    """(measured, published) for a model. Measured comes from a valid case only (an invalid
    case's accuracy is not a result), preferring eager fp32."""
    ordered = sorted(rows, key=lambda r: (not r.valid, r.backend != "eager", r.precision != "fp32", r.batch_size))
    measured = next((measured_figure(r.measured_accuracy) for r in ordered if r.valid and r.measured_accuracy), None)
    published = next((f for f in (published_figure(r.published) for r in ordered) if f is not None), None)
    return measured, published


def _percent(acc: dict[str, Any], name: str, count_name: str) -> float:
    """A measured accuracy in percent: from the counts when present (unambiguous), else the
    stored figure (`evaluate` stores percent)."""
    count, total = _number(acc.get(count_name)), _number(acc.get("total"))
    if count is not None and total:
        return 100.0 * count / total
    return float(acc[name])


def _model_summary(rows: list[CaseRow], env: str, name: str) -> ModelSummary:
    measured, published = _accuracy_of(rows)
    counted = sorted(rows, key=lambda r: (r.backend != "eager", not r.valid, r.batch_size))
    sources = {r.backend_info.get("source") for r in rows if r.backend_info.get("source")}
    return ModelSummary(
        env=env,
        name=name,
        description=describe_model(name, next(iter(sources)) if sources else None),
        params=_first(r.params for r in counted),
        trainable_params=_first(r.trainable_params for r in counted),
        aux_heads_included=_first(r.aux_heads_included for r in counted),
        gmacs_per_image=_first(
            r.gmacs_per_image if r.gmacs_per_image is not None else (r.gmacs / r.batch if r.gmacs else None)
            for r in counted
        ),
        counter=_first(r.counter for r in counted),
        crosscheck=_first(r.crosscheck for r in counted),
        input_sizes=tuple(dict.fromkeys(tuple(r.input_size) for r in rows)),
        accuracy=measured or published,
        published=published,
        measured=measured,
        published_meta=_first(r.published for r in counted),
        n_cases=len(rows),
        n_valid=sum(r.valid for r in rows),
    )


def reference_row(rows: list[CaseRow]) -> CaseRow | None:
    """The configuration a model is summarized at: eager, fp32, inference, the smallest batch."""
    valid = [r for r in rows if r.valid and not r.is_train]
    if not valid:
        return None
    return min(valid, key=lambda r: (r.backend != "eager", r.precision != "fp32", r.batch, backend_sort_key(r.backend)))


def comparable_accuracy(
    mine: ModelSummary, other: ModelSummary
) -> tuple[AccuracyFigure, AccuracyFigure] | None:
    """Two models' top-1 figures on the same footing, or None.

    Measured figures are compared only on the same dataset; otherwise both published figures
    (torchvision, ImageNet-1K val) are. A measured figure is never set against a published one.
    """
    if mine.measured and other.measured and mine.measured.dataset == other.measured.dataset:
        return mine.measured, other.measured
    if mine.published and other.published and mine.published.dataset == other.published.dataset:
        return mine.published, other.published
    return None


def unreliable_row(row: CaseRow) -> str | None:
    """Why a row's timing must not drive a headline, a summary line or an alternative (the rule
    of `bench.py select`: few samples, processes split), None when it may."""
    return unreliable_reason(row.record) if row.record is not None else None


def separately_faster(row: CaseRow, ref: CaseRow) -> bool:
    """`row` is faster than `ref` beyond both latency intervals (docs/select.md); without
    intervals, by the medians."""
    a = median_value(row.record) if row.record is not None else None
    b = median_value(ref.record) if ref.record is not None else None
    if a is not None and b is not None:
        return a.high < b.low
    return row.median_ms is not None and ref.median_ms is not None and row.median_ms < ref.median_ms


def closest_alternatives(data: ReportData, env: str, model: str, *, limit: int = 3) -> list[Alternative]:
    """Other models of the same environment, compared at this model's reference configuration.

    Lists (a) models that are faster at equal or better top-1 (fastest first), (b) the fastest
    model that is more accurate, or, when this model has no accuracy figure, (c) faster models.
    Only the same backend, batch size, precision, device, threads and mode are compared, a model
    counts as faster only when its latency interval separates from this one's, a case flagged
    unreliable (few samples, processes split) is never used (nor as the reference), and
    top-1 only on the same footing (`comparable_accuracy`: both measured on one dataset, or both
    published).
    """
    ref = reference_row(data.rows_of(env, model))
    if ref is None or ref.median_ms is None or unreliable_row(ref):
        return []  # an unreliable reference decides nothing (the document says so)
    me = data.models[(env, model)]
    config = f"{ref.backend}, batch {ref.batch}, {ref.precision}, {ref.device} t{ref.threads}"
    candidates: list[tuple[CaseRow, tuple[AccuracyFigure, AccuracyFigure] | None]] = []
    for other in data.model_names(env):
        if other == model:
            continue
        match = [
            r
            for r in data.rows_of(env, other, valid_only=True)
            if (r.backend, r.batch, r.precision, r.device, r.threads, r.channels_last, r.mode)
            == (ref.backend, ref.batch, ref.precision, ref.device, ref.threads, ref.channels_last, ref.mode)
        ]
        match = [r for r in match if not unreliable_row(r)]
        if match:
            candidates.append((match[0], comparable_accuracy(me, data.models[(env, other)])))

    def alt(relation: str, row: CaseRow, pair: tuple[AccuracyFigure, AccuracyFigure] | None) -> Alternative:
        return Alternative(
            relation=relation,
            model=row.model,
            latency_ms=row.median_ms,  # type: ignore[arg-type]
            latency_ratio=row.median_ms / ref.median_ms,  # type: ignore[operator]
            top1=pair[1].top1 if pair else None,
            accuracy_kind=pair[1].kind if pair else None,
            reference_ms=ref.median_ms,  # type: ignore[arg-type]
            reference_top1=pair[0].top1 if pair else None,
            config=config,
        )

    out: list[Alternative] = []
    if me.accuracy is not None:
        better = [(r, p) for r, p in candidates if p is not None and p[1].top1 >= p[0].top1 and separately_faster(r, ref)]
        better.sort(key=lambda rp: rp[0].median_ms)  # type: ignore[arg-type,return-value]
        out += [alt("faster, at least as accurate", r, p) for r, p in better[:limit]]
        more = [(r, p) for r, p in candidates if p is not None and p[1].top1 > p[0].top1 and (r, p) not in better]
        if more:
            r, p = min(more, key=lambda rp: rp[0].median_ms)  # type: ignore[arg-type,return-value]
            out.append(alt("more accurate (the fastest such)", r, p))
    else:
        faster = sorted((rp for rp in candidates if separately_faster(rp[0], ref)), key=lambda rp: rp[0].median_ms)  # type: ignore[arg-type,return-value]
        out += [alt("faster (accuracy unknown here)", r, p) for r, p in faster[:limit]]
    return out
