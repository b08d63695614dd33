"""What is measured: frozen case specifications and the one function that names a case.

`CaseSpec` mirrors torch.utils.benchmark's `TaskSpec`: it says *what* was measured, never how it
went. It is pure data (no torch), hashable, and round-trips through JSON, so the parent process
can expand a suite and ship each case to a worker without importing torch.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from typing import Any

__all__ = ["BACKENDS", "PRECISIONS", "MODES", "TIMED_STATUSES", "CaseSpec", "Measure"]

# The statuses of a process whose timed loop finished: its samples count (a failed parity check
# still timed the backend; the table marks it invalid).
TIMED_STATUSES = ("ok", "fail_accuracy")

# openvino, aoti, tensorrt and int8: the deployment formats (cnnbench.backends.openvino/aoti/tensorrt,
# cnnbench.backends.quantize for int8 static post-training quantization; docs/backends.md).
BACKENDS = ("eager", "compile", "onnxrt", "openvino", "aoti", "tensorrt")
PRECISIONS = ("fp32", "fp16", "bf16", "int8")
MODES = ("inference", "train")
DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class Measure:
    """How long and how carefully a case is timed. Not part of the case key.

    The timed loop stops when the 95% confidence interval of the median is within
    `target_rel_ci` of the median (after at least `min_time_s` and `min_samples`), or when
    `max_time_s` or `max_samples` is reached; the reason is recorded on the result.
    """

    warmup: int = 5  # warmup calls (or blocks), run first and stored apart from the samples
    min_time_s: float = 0.5
    max_time_s: float = 5.0
    min_samples: int = 10
    max_samples: int = 10_000
    target_rel_ci: float = 0.01  # half-width of the median's 95% CI, relative to the median
    block_min_ms: float = 1.0  # calls shorter than this are timed in blocks of N calls
    repeats: int = 1  # separate worker processes per case
    timeout_s: float = 300.0  # wall time for one worker, model build and export included
    detail: bool = False  # train mode: also time forward / backward / optimizer apart (training.py)
    memory_limit: int | None = None  # bytes; the worker's RLIMIT_DATA (cnnbench.measure.memguard), None: no limit
    energy: bool = True  # energy over the timed window, idle power before it (cnnbench.measure.energy)
    transfer: bool = False  # CUDA inference: also time H2D copy, compute, D2H copy apart (transfer.py)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        for name in _OMIT_AT_DEFAULT:  # later optional settings: written only when set
            if out[name] == _MEASURE_DEFAULTS[name]:
                del out[name]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Measure":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


_OMIT_AT_DEFAULT = ("memory_limit", "energy", "transfer")  # files without them read as before
_MEASURE_DEFAULTS = {f.name: f.default for f in dataclasses.fields(Measure)}


@dataclass(frozen=True)
class CaseSpec:
    """One measurable case: a model at a batch size on a backend, precision and device.

    `input_size` is (C, H, W) and always resolved (a model's default filled in), `device` is
    resolved (`auto` already replaced by `cuda` or `cpu`) and `threads` is explicit, so the key
    says exactly what ran. `options` holds backend settings (e.g. compile mode) as sorted pairs.
    `source` is the import path of a user model (`package.module:callable`), None for registry
    models. `model_kwargs` are passed to the builder. `evaluation` is the case's accuracy
    evaluation as canonical JSON (`{"dataset": {...}, "weights": ...}`, paths absolute; see
    cnnbench.accuracy), None when accuracy is not measured.
    """

    model: str
    batch_size: int
    input_size: tuple[int, int, int]
    backend: str = "eager"
    precision: str = "fp32"
    device: str = "cpu"
    threads: int = 1
    channels_last: bool = False
    mode: str = "inference"
    options: tuple[tuple[str, Any], ...] = ()
    source: str | None = None
    model_kwargs: tuple[tuple[str, Any], ...] = ()
    evaluation: str | None = None
    measure: Measure = field(default_factory=Measure, compare=False, hash=False)

    @property
    def key(self) -> str:
        """The stable identity of a case, used to pair cases across runs and to resume.

        Everything that changes what is computed is in the key; how long it is measured is not.
        """
        c, h, w = self.input_size
        backend = self.backend
        if self.options:
            backend += "[" + ",".join(f"{k}={v}" for k, v in self.options) + "]"
        parts = [
            self.model,
            self.mode,
            backend,
            self.precision,
            f"b{self.batch_size}",
            f"{c}x{h}x{w}",
            self.device,
            f"t{self.threads}",
        ]
        if self.channels_last:
            parts.append("cl")
        if self.model_kwargs:
            parts.append(",".join(f"{k}={v}" for k, v in self.model_kwargs))
        if self.evaluation:
            parts.append(_evaluation_label(self.evaluation))
        return "|".join(parts)

    @property
    def option_dict(self) -> dict[str, Any]:
        return dict(self.options)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, as stored under `spec` in a results file."""
        return {
            "model": self.model,
            "batch_size": self.batch_size,
            "backend": self.backend,
            "precision": self.precision,
            "input_size": list(self.input_size),
            "device": self.device,
            "threads": self.threads,
            "channels_last": self.channels_last,
            "mode": self.mode,
            "options": dict(self.options),
            "source": self.source,
            "model_kwargs": dict(self.model_kwargs),
            **({"evaluation": json.loads(self.evaluation)} if self.evaluation else {}),
            "measure": self.measure.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "CaseSpec":
        return cls(
            model=data["model"],
            batch_size=int(data["batch_size"]),
            input_size=tuple(data["input_size"]),  # type: ignore[arg-type]
            backend=data.get("backend", "eager"),
            precision=data.get("precision", "fp32"),
            device=data.get("device", "cpu"),
            threads=int(data.get("threads", 1)),
            channels_last=bool(data.get("channels_last", False)),
            mode=data.get("mode", "inference"),
            options=tuple(sorted((data.get("options") or {}).items())),
            source=data.get("source"),
            model_kwargs=tuple(sorted((data.get("model_kwargs") or {}).items())),
            evaluation=canonical_evaluation(data.get("evaluation")),
            measure=Measure.from_dict(data.get("measure") or {}),
        )

    def replace(self, **changes: Any) -> "CaseSpec":
        return dataclasses.replace(self, **changes)


def canonical_evaluation(evaluation: dict[str, Any] | str | None) -> str | None:
    """The one JSON text of an accuracy evaluation (sorted keys, compact), None when empty."""
    if isinstance(evaluation, str):
        evaluation = json.loads(evaluation)
    if not evaluation:
        return None
    return json.dumps(evaluation, sort_keys=True, separators=(",", ":"))


def _evaluation_label(evaluation: str) -> str:
    """The key part of an evaluation: what is evaluated, readable and free of absolute paths
    (so keys pair across checkouts): `acc=digits:test,w=lenet5_digits.pt`, plus `limit=N` and a
    short hash of explicit transforms when given."""
    import hashlib

    config = json.loads(evaluation)
    dataset = config.get("dataset") or {}
    parts = []
    if dataset:
        kind = dataset.get("kind", "?")
        name = dataset.get("split") if kind == "digits" else os.path.basename(str(dataset.get("path", "")).rstrip("/\\"))
        parts.append(f"{kind}:{name or 'test'}")
        if dataset.get("limit"):
            parts.append(f"limit={dataset['limit']}")
        if dataset.get("strict"):
            parts.append("strict")
        if dataset.get("transforms"):
            text = json.dumps(dataset["transforms"], sort_keys=True, separators=(",", ":"))
            parts.append("tf=" + hashlib.sha256(text.encode()).hexdigest()[:8])
    if config.get("weights"):
        parts.append("w=" + os.path.basename(str(config["weights"])))
    label = "acc=" + ",".join(parts)
    return label.replace("|", "_")
