"""Deterministic, cost-balanced shards of a suite, so N machines split one run. Pure: no torch.

`bench.py run SUITE --shard K/N` runs shard K (1-based) of N. Every machine of a CI matrix or a
cluster job array expands the same suite file and calls `select_shard`, so the split must come
out the same everywhere without any coordination:

- **Disjoint and complete**: each case belongs to exactly one shard; shards 1..N together are the
  suite. A shard may be empty when N exceeds the number of cases.
- **Balanced by expected cost**: cases are assigned greedily, longest first, each to the shard
  with the least expected cost so far (LPT scheduling: the longest shard is within 4/3 of the
  best possible split).
- **Independent of the machine**: the cost and the tie-breaking use only what a spec says about
  the work (model, input size, batch size, backend and options, precision, mode, measure), never
  `device` or `threads`, which `device: auto` and `threads: null` resolve per machine. Ties are
  broken by that machine-independent identity, so reordering the suite file does not move cases
  between shards either (cases differing only in device or threads tie-break by suite order).

**The cost model** (`expected_cost_s`) estimates a case's wall time in seconds, a pure function
of its spec:

    repeats x (WORKER_START_S + SETUP_S[backend]
               + (warmup + 2) x call_s                       # first call, calibration, warmup
               + min(max(min_time_s, min_samples x call_s), max(max_time_s, call_s))
               + detail_s)           # train with detail: max(1 s, 3 x call_s) more
    call_s = GMACs per image x batch size x (3 for a training step, else 1) / GMACS_PER_S

GMACs per image come from `REFERENCE_GMACS` (torchvision's published `_ops`, which are MACs, at
the catalog's default input size; the course's seed models as counted by cnnbench.measure.counting; timm
models from timm's published benchmark table in cnnbench/models/_timm_published.py, at the
benchmarked size nearest the case's), scaled by the case's pixel count over the reference pixel
count. Unknown models (user models)
get DEFAULT_GMACS at 224x224. `GMACS_PER_S` is a rough CPU figure: only the ratio of compute to
the fixed per-process overheads matters for the balance, not the absolute seconds.
"""

from __future__ import annotations

import heapq
import re
from typing import Iterable, Sequence

from cnnbench.core.errors import UserError
from cnnbench.core.spec import CaseSpec
from cnnbench.models.catalog import MODELS
from cnnbench.models.timm_zoo import published_counts

__all__ = [
    "SHARD_HELP",
    "MAX_SHARDS",
    "parse_shard",
    "select_shard",
    "apply_shard",
    "assign_shards",
    "expected_cost_s",
    "format_shard",
    "SHARD_SOURCES",
    "shard_from_environment",
    "resolve_shard",
]

SHARD_HELP = (
    "run only shard K of N (1-based, e.g. 2/4): a deterministic split of the suite's cases, "
    "balanced by expected cost, the same on every machine; `bench.py merge` joins the N results files. "
    "`auto` reads K/N from the scheduler: a Slurm job array (SLURM_ARRAY_TASK_ID/_MIN/_COUNT), a "
    "Kubernetes Indexed Job (JOB_COMPLETION_INDEX + CNNBENCH_SHARD_COUNT), PyTorch-CI style "
    "SHARD_NUMBER/NUM_TEST_SHARDS, or CNNBENCH_SHARD=K/N (recorded as suite.shard_source)"
)
MAX_SHARDS = 10_000

# Rough constants of the cost model (seconds, GMAC/s); see the module docstring.
WORKER_START_S = 4.0  # a worker process: import torch + torchvision, build the model
SETUP_S = {"eager": 0.0, "compile": 30.0, "onnxrt": 8.0}  # cold compile / export + session
TRAIN_FACTOR = 3.0  # forward + backward (~2x forward) + optimizer
GMACS_PER_S = 20.0  # fp32 eager on a few CPU cores, roughly; only its ratio to the overheads matters
DETAIL_S = 1.0  # training.DETAIL_TARGET_S; at least DETAIL_MIN_STEPS (3) steps
DEFAULT_GMACS = 2.0  # a user model at 224x224, when nothing is known about it

# GMACs per image at the catalog's default input size (generated from torchvision 0.29.1's
# weight metadata `_ops` of each builder's DEFAULT weights, and cnnbench.measure.counting for the seeds).
REFERENCE_GMACS: dict[str, float] = {
    "alexnet": 0.714, "convnext_base": 15.355, "convnext_large": 34.361, "convnext_small": 8.684,
    "convnext_tiny": 4.456, "densenet121": 2.834, "densenet161": 7.728, "densenet169": 3.36,
    "densenet201": 4.291, "efficientnet_b0": 0.386, "efficientnet_b1": 0.687, "efficientnet_b2": 1.088,
    "efficientnet_b3": 1.827, "efficientnet_b4": 4.394, "efficientnet_b5": 10.266, "efficientnet_b6": 19.068,
    "efficientnet_b7": 37.746, "efficientnet_v2_l": 56.08, "efficientnet_v2_m": 24.582,
    "efficientnet_v2_s": 8.366, "googlenet": 1.498, "inception_v3": 5.713, "maxvit_t": 5.558,
    "mnasnet0_5": 0.104, "mnasnet0_75": 0.215, "mnasnet1_0": 0.314, "mnasnet1_3": 0.526,
    "mobilenet_v2": 0.301, "mobilenet_v3_large": 0.217, "mobilenet_v3_small": 0.057,
    "regnet_x_1_6gf": 1.603, "regnet_x_3_2gf": 3.177, "regnet_x_8gf": 7.995, "regnet_x_16gf": 15.941,
    "regnet_x_32gf": 31.736, "regnet_x_400mf": 0.414, "regnet_x_800mf": 0.8, "regnet_y_1_6gf": 1.612,
    "regnet_y_3_2gf": 3.176, "regnet_y_8gf": 8.473, "regnet_y_16gf": 15.912, "regnet_y_32gf": 32.28,
    "regnet_y_128gf": 374.57, "regnet_y_400mf": 0.402, "regnet_y_800mf": 0.834, "resnet18": 1.814,
    "resnet34": 3.664, "resnet50": 4.089, "resnet101": 7.801, "resnet152": 11.514,
    "resnext50_32x4d": 4.23, "resnext101_32x8d": 16.414, "resnext101_64x4d": 15.46,
    "shufflenet_v2_x0_5": 0.04, "shufflenet_v2_x1_0": 0.145, "shufflenet_v2_x1_5": 0.296,
    "shufflenet_v2_x2_0": 0.583, "squeezenet1_0": 0.819, "squeezenet1_1": 0.349, "swin_b": 15.431,
    "swin_s": 8.741, "swin_t": 4.491, "swin_v2_b": 20.325, "swin_v2_s": 11.546, "swin_v2_t": 5.94,
    "vgg11": 7.609, "vgg11_bn": 7.609, "vgg13": 11.308, "vgg13_bn": 11.308, "vgg16": 15.47,
    "vgg16_bn": 15.47, "vgg19": 19.632, "vgg19_bn": 19.632, "vit_b_16": 17.564, "vit_b_32": 4.409,
    "vit_h_14": 1016.717, "vit_l_16": 61.555, "vit_l_32": 15.378, "wide_resnet50_2": 11.398,
    "wide_resnet101_2": 22.753,
    # seeds (cnnbench.measure.counting, fvcore MACs)
    "lenet5": 0.00042, "mnist_cnn_bn": 0.00288, "mnist_cnn": 0.00424, "mnist_fcn": 0.00568,
    "inception_naive": 0.8542, "inception_bottleneck": 0.27135,
}  # fmt: skip

_SHARD = re.compile(r"^\s*([0-9]+)\s*/\s*([0-9]+)\s*$", re.ASCII)
# Digits read before any arithmetic: more than this is no shard number (and Python's
# integer-string limit would end a 5000-digit value in a traceback).
_MAX_DIGITS = 9


def parse_shard(text: str) -> tuple[int, int]:
    """Parse "K/N" (1 <= K <= N <= MAX_SHARDS) into (K, N).

    Raises:
        UserError: naming the text and what a shard looks like.
    """
    m = _SHARD.match(str(text))
    if not m:
        raise UserError(f"--shard {_short(text)}: expected K/N, the 1-based shard K of N, e.g. 2/4, or auto")
    if max(len(m.group(1).lstrip("0")), len(m.group(2).lstrip("0"))) > _MAX_DIGITS:
        raise UserError(f"--shard {_short(text)}: a shard number that large is no shard (at most {MAX_SHARDS} shards)")
    k, n = int(m.group(1)), int(m.group(2))
    if n < 1:
        raise UserError(f"--shard {text!r}: the number of shards N must be at least 1")
    if n > MAX_SHARDS:
        raise UserError(f"--shard {text!r}: at most {MAX_SHARDS} shards")
    if not 1 <= k <= n:
        raise UserError(f"--shard {text!r}: K must be between 1 and N ({n}); shards are numbered from 1")
    return k, n


def format_shard(k: int, n: int) -> str:
    """The "K/N" text stored as `suite.shard` in a shard's results file."""
    return f"{k}/{n}"


def _reference(spec: CaseSpec) -> tuple[float, int]:
    """(GMACs per image at the reference size, reference pixel count) of a spec's model."""
    if spec.source is None and spec.model in REFERENCE_GMACS:

        _, h, w = MODELS[spec.model].input_size
        return REFERENCE_GMACS[spec.model], h * w
    if spec.source is None and spec.model.startswith("timm:"):  # timm's published GMACs, if shipped

        rows = published_counts(spec.model[5:].split(".", 1)[0])
        if rows:
            side, _, gmacs = min(rows, key=lambda r: abs(r[0] - spec.input_size[1]))
            return gmacs, side * side
    return DEFAULT_GMACS, 224 * 224


def expected_cost_s(spec: CaseSpec) -> float:
    """Expected wall time of a case in seconds (see the module docstring). Pure; ignores
    device and threads so that every machine computes the same number."""
    gmacs_ref, pixels_ref = _reference(spec)
    _, h, w = spec.input_size
    gmacs = gmacs_ref * (h * w) / pixels_ref * spec.batch_size
    call_s = gmacs * (TRAIN_FACTOR if spec.mode == "train" else 1.0) / GMACS_PER_S
    m = spec.measure
    timed_s = min(max(m.min_time_s, m.min_samples * call_s), max(m.max_time_s, call_s))
    detail_s = max(DETAIL_S, 3 * call_s) if spec.mode == "train" and getattr(m, "detail", False) else 0.0
    per_repeat = WORKER_START_S + SETUP_S.get(spec.backend, 0.0) + (m.warmup + 2) * call_s + timed_s + detail_s
    return m.repeats * per_repeat


def _identity(spec: CaseSpec) -> str:
    """What a case computes, without the machine-resolved fields (device, threads)."""
    c, h, w = spec.input_size
    return "|".join(
        (
            spec.model,
            spec.source or "",
            spec.mode,
            spec.backend,
            repr(spec.options),
            spec.precision,
            f"b{spec.batch_size}",
            f"{c}x{h}x{w}",
            "cl" if spec.channels_last else "",
            repr(spec.model_kwargs),
        )
    )


def assign_shards(cases: Sequence[CaseSpec], n: int) -> list[int]:
    """The 0-based shard of each case (LPT: longest expected cost first, to the least loaded)."""
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    costs = [expected_cost_s(c) for c in cases]
    order = sorted(range(len(cases)), key=lambda i: (-costs[i], _identity(cases[i]), i))
    heap = [(0.0, s) for s in range(n)]  # (load, shard): the least loaded, lowest index first
    shard_of = [0] * len(cases)
    for i in order:
        load, target = heapq.heappop(heap)
        shard_of[i] = target
        heapq.heappush(heap, (load + costs[i], target))
    return shard_of


def select_shard(cases: Iterable[CaseSpec], k: int, n: int) -> list[CaseSpec]:
    """The cases of shard `k` (1-based) of `n`, in their suite order.

    Deterministic for the same suite on any machine; shards 1..n are disjoint and their union is
    `cases`. See the module docstring for the cost model and the tie-breaking.
    """
    if not 1 <= k <= n:
        raise ValueError(f"shard {k}/{n}: k must be between 1 and n")
    cases = list(cases)
    shard_of = assign_shards(cases, n)
    return [case for case, s in zip(cases, shard_of) if s == k - 1]


def apply_shard(cases: Sequence[CaseSpec], shard_text: str | None) -> list[CaseSpec]:
    """`--shard K/N` applied to a suite's cases (all of them when `shard_text` is None).

    Raises:
        UserError: a malformed shard text.
    """
    if shard_text is None:
        return list(cases)
    k, n = parse_shard(shard_text)
    return select_shard(cases, k, n)


# --shard auto: where K/N come from, in the order they are looked for. Each names the
# variables that make it present; a source that is present must be complete and consistent.
SHARD_SOURCES = {
    "env": ("CNNBENCH_SHARD",),
    "slurm": ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_MIN", "SLURM_ARRAY_TASK_COUNT"),
    "kubernetes": ("JOB_COMPLETION_INDEX", "CNNBENCH_SHARD_COUNT"),
    "pytorch-ci": ("SHARD_NUMBER", "NUM_TEST_SHARDS"),
}


def _short(text: object, limit: int = 40) -> str:
    """`text` quoted, cut to `limit` characters: a 5000-digit value is named, not repeated."""
    shown = repr(str(text))
    return shown if len(shown) <= limit else shown[: limit - 2] + "…" + shown[-1]


def _int_var(env: dict[str, str], name: str) -> int:
    text = env[name].strip()
    if not re.fullmatch(r"-?[0-9]+", text, re.ASCII):
        raise UserError(f"--shard auto: {name}={_short(env[name])} is not an integer")
    if len(text.lstrip("-").lstrip("0")) > _MAX_DIGITS:
        raise UserError(f"--shard auto: {name}={_short(env[name])} is too large for a shard index or count")
    return int(text)


def _missing(env: dict[str, str], names: tuple[str, ...], why: str) -> None:
    absent = [n for n in names if not env.get(n, "").strip()]
    if absent:
        raise UserError(f"--shard auto: {names[0]} is set but {', '.join(absent)} is not{why}")


def _from_source(source: str, env: dict[str, str]) -> tuple[int, int]:
    if source == "env":
        try:
            return parse_shard(env["CNNBENCH_SHARD"])
        except UserError as exc:
            raise UserError(f"--shard auto: CNNBENCH_SHARD: {str(exc).split(': ', 1)[1]}") from None
    if source == "slurm":
        _missing(env, SHARD_SOURCES["slurm"], " (is this a job array? sbatch --array=0-3)")
        tid, lo, count = (_int_var(env, n) for n in SHARD_SOURCES["slurm"])
        if count < 1 or not lo <= tid <= lo + count - 1:
            raise UserError(
                f"--shard auto: SLURM_ARRAY_TASK_ID={tid} is outside SLURM_ARRAY_TASK_MIN..MIN+COUNT-1 "
                f"({lo}..{lo + count - 1}): give the array contiguous indices without a step, "
                f"e.g. --array={lo}-{lo + max(count, 1) - 1}"
            )
        k, n = tid - lo + 1, count
    elif source == "kubernetes":
        why = " (Kubernetes does not export the completion count: set it to the Job's spec.completions)"
        _missing(env, SHARD_SOURCES["kubernetes"], why)
        index, n = _int_var(env, "JOB_COMPLETION_INDEX"), _int_var(env, "CNNBENCH_SHARD_COUNT")
        if n < 1 or not 0 <= index < n:
            raise UserError(
                f"--shard auto: JOB_COMPLETION_INDEX={index} is outside 0..CNNBENCH_SHARD_COUNT-1 (0..{n - 1})"
            )
        k = index + 1
    else:
        _missing(env, SHARD_SOURCES["pytorch-ci"], "")
        k, n = _int_var(env, "SHARD_NUMBER"), _int_var(env, "NUM_TEST_SHARDS")
        if n < 1 or not 1 <= k <= n:
            raise UserError(
                f"--shard auto: SHARD_NUMBER={k} is outside 1..NUM_TEST_SHARDS ({n}); SHARD_NUMBER is 1-based"
            )
    if n > MAX_SHARDS:
        raise UserError(f"--shard auto: {n} shards from {source}; at most {MAX_SHARDS}")
    return k, n


def shard_from_environment(env: dict[str, str] | None = None) -> tuple[int, int, str]:
    """(K, N, source) read from the scheduler's environment variables (`--shard auto`).

    Sources (SHARD_SOURCES), each present when its first variable is set:
    - `env`: CNNBENCH_SHARD=K/N, set by hand or by a CI matrix.
    - `slurm`: a job array: K = SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN + 1,
      N = SLURM_ARRAY_TASK_COUNT (so `--array=0-3` and `--array=1-4` both give 1/4..4/4).
    - `kubernetes`: an Indexed Job: K = JOB_COMPLETION_INDEX + 1, N = CNNBENCH_SHARD_COUNT
      (Kubernetes exports the index but not `completions`: the manifest sets it).
    - `pytorch-ci`: SHARD_NUMBER (1-based) of NUM_TEST_SHARDS.

    Two sources present must agree on K/N (the first is recorded).

    Raises:
        UserError: no source present, a source incomplete or not an integer, an index outside
            its range (a Slurm array with a step or gaps), or two sources that disagree.
    """
    import os

    env = dict(os.environ if env is None else env)
    found: list[tuple[str, tuple[int, int]]] = []
    for source, names in SHARD_SOURCES.items():
        if env.get(names[0], "").strip():
            found.append((source, _from_source(source, env)))
    if not found:
        raise UserError(
            "--shard auto: no scheduler found: set by a Slurm job array (SLURM_ARRAY_TASK_ID), a "
            "Kubernetes Indexed Job (JOB_COMPLETION_INDEX + CNNBENCH_SHARD_COUNT), "
            "SHARD_NUMBER/NUM_TEST_SHARDS, or CNNBENCH_SHARD=K/N"
        )
    (source, (k, n)), rest = found[0], found[1:]
    for other, (k2, n2) in rest:
        if (k2, n2) != (k, n):
            raise UserError(f"--shard auto: {source} says shard {k}/{n} but {other} says {k2}/{n2}; unset one of them")
    return k, n, source


def resolve_shard(text: str | None, env: dict[str, str] | None = None) -> tuple[str | None, str | None]:
    """`--shard` as given to "K/N" text and its source: ("K/N", "cli") for an explicit K/N,
    ("K/N", source) for `auto`, (None, None) without --shard.

    Raises:
        UserError: a malformed K/N, or `auto` without a usable scheduler (shard_from_environment).
    """
    if text is None:
        return None, None
    if str(text).strip().lower() == "auto":
        k, n, source = shard_from_environment(env)
        return format_shard(k, n), source
    return format_shard(*parse_shard(text)), "cli"
