"""Constraints and objectives of `bench.py select`, parsed from their command-line spelling. Pure.

A constraint is `FIGURE OP VALUE`: `p99<=20ms`, `qps>=200`, `memory<=512MiB`, `params<=10M`,
`energy<=0.05J/image`, `size<=20MB`, `top1>=75`, or relative to the same model's fp32 eager case
(the MLPerf quality rule): `top1>=0.99*fp32`, `top1>=fp32-0.5pp`, `latency<=0.5*fp32`. A value
must carry a unit of the figure's kind (or none, meaning the figure's base unit); a wrong unit,
a negative bound, a missing value or an unknown figure is a `SelectError` (one line, exit 2).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from cnnbench.core.errors import UserError

__all__ = [
    "FIGURES",
    "Figure",
    "Constraint",
    "Objective",
    "SelectError",
    "parse_constraint",
    "parse_objective",
]


class SelectError(UserError):
    """A constraint or objective that cannot be read (exit 2, one line)."""


@dataclass(frozen=True)
class Figure:
    """A figure a configuration may have: its base unit, which way is better, what it is."""

    name: str
    unit: str  # the base unit values are held in: ms, /s, %, B, J/image, count
    kind: str  # time | rate | percent | bytes | energy | count
    higher_is_better: bool
    describes: str


FIGURES: dict[str, Figure] = {
    f.name: f
    for f in (
        Figure("latency", "ms", "time", False, "the case's headline latency: the median per call"),
        Figure("p50", "ms", "time", False, "the median latency per call"),
        Figure("p90", "ms", "time", False, "the 90th percentile latency per call"),
        Figure("p95", "ms", "time", False, "the 95th percentile latency per call"),
        Figure("p99", "ms", "time", False, "the 99th percentile latency per call"),
        Figure("throughput", "/s", "rate", True, "images per second at the case's batch (batch / median)"),
        Figure("qps", "/s", "rate", True, "queries per second a scenario case sustained (scenario cases only)"),
        Figure("top1", "%", "percent", True, "top-1 accuracy: measured on the case's dataset, else published"),
        Figure("top5", "%", "percent", True, "top-5 accuracy: measured, else published"),
        Figure("memory", "B", "bytes", False, "measured peak memory (CPU: peak RSS growth; CUDA: peak allocated)"),
        Figure("size", "B", "bytes", False, "the deployment artefact's size on disk (.onnx, .xml+.bin, .pt2)"),
        Figure("params", "", "count", False, "parameters, as built"),
        Figure("macs", "", "count", False, "multiply-accumulates per image"),
        Figure("energy", "J/image", "energy", False, "energy per image over the timed window"),
    )
}

_ALIASES = {"median": "p50", "lat": "latency", "acc": "top1", "accuracy": "top1", "mem": "memory", "qps": "qps"}

_UNITS: dict[str, dict[str, float]] = {
    "time": {"": 1.0, "ms": 1.0, "us": 1e-3, "µs": 1e-3, "s": 1000.0, "ns": 1e-6},
    "rate": {"": 1.0, "/s": 1.0, "qps": 1.0, "img/s": 1.0, "images/s": 1.0},
    "percent": {"": 1.0, "%": 1.0},
    "bytes": {
        "": 1.0, "b": 1.0, "kb": 1e3, "mb": 1e6, "gb": 1e9, "kib": 2**10, "mib": 2**20, "gib": 2**30,
    },
    "count": {"": 1.0, "k": 1e3, "m": 1e6, "g": 1e9, "b": 1e9},
    "energy": {"": 1.0, "j": 1.0, "mj": 1e-3, "j/image": 1.0, "j/img": 1.0, "mj/image": 1e-3, "mj/img": 1e-3},
}  # fmt: skip

_OPS = ("<=", ">=", "<", ">")
_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"
_ABSOLUTE = re.compile(rf"^(?P<num>-?{_NUMBER})\s*(?P<unit>[^\d\s].*)?$")
_FACTOR = re.compile(rf"^(?P<factor>{_NUMBER})\s*\*\s*fp32$")
_OFFSET = re.compile(rf"^fp32\s*(?P<sign>[+-])\s*(?P<num>{_NUMBER})\s*(?P<unit>pp|%|[^\d\s].*)?$")


@dataclass(frozen=True)
class Constraint:
    """`figure op bound`; a relative bound is `factor * ref + offset`, ref being the same model's
    fp32 eager figure (`relative` True), else `bound` is absolute in the figure's base unit."""

    text: str
    figure: str
    op: str
    bound: float  # absolute bound, or the offset of a relative one (base unit)
    factor: float | None = None  # relative: factor * fp32 + bound

    @property
    def relative(self) -> bool:
        return self.factor is not None

    @property
    def upper(self) -> bool:
        return self.op in ("<=", "<")

    def limit(self, reference: float | None) -> float | None:
        """The bound in base units (None: a relative bound without its reference)."""
        if self.factor is None:
            return self.bound
        if reference is None:
            return None
        return self.factor * reference + self.bound

    def holds(self, value: float, limit: float) -> bool:
        return {"<=": value <= limit, ">=": value >= limit, "<": value < limit, ">": value > limit}[self.op]

    def to_dict(self) -> dict[str, object]:
        return {"text": self.text, "figure": self.figure, "op": self.op, "bound": self.bound, "factor": self.factor}


@dataclass(frozen=True)
class Objective:
    figure: str

    @property
    def higher_is_better(self) -> bool:
        return FIGURES[self.figure].higher_is_better


def _figure(name: str, text: str) -> str:
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    if key not in FIGURES:
        raise SelectError(f"constraint {text!r}: unknown figure {name.strip()!r} (known: {', '.join(FIGURES)})")
    return key


def _scale(figure: Figure, unit: str | None, text: str) -> float:
    u = (unit or "").strip()
    table = _UNITS[figure.kind]
    key = u if figure.kind == "time" else u.lower()
    if key.endswith("/image") and figure.kind != "energy":
        key = key[: -len("/image")]
    if key not in table:
        known = ", ".join(k for k in table if k) or "none"
        raise SelectError(f"constraint {text!r}: unit {u!r} is not one of {figure.name}'s ({known})")
    return table[key]


def parse_constraint(text: str) -> Constraint:
    """`p99<=20ms` -> Constraint; SelectError (one line) for anything it cannot read."""
    raw = text.strip()
    op = next((o for o in _OPS if o in raw), None)
    if op is None:
        raise SelectError(f"constraint {text!r}: expected FIGURE<=VALUE or FIGURE>=VALUE (e.g. p99<=20ms, top1>=0.99*fp32)")
    name, _, value = raw.partition(op)
    if not name.strip():
        raise SelectError(f"constraint {text!r}: no figure before {op}")
    figure = FIGURES[_figure(name, text)]
    value = value.strip()
    if not value:
        raise SelectError(f"constraint {text!r}: no value after {op}")
    if m := _FACTOR.match(value):
        factor = float(m["factor"])
        if factor <= 0:
            raise SelectError(f"constraint {text!r}: the factor must be > 0")
        return Constraint(raw, figure.name, op, 0.0, factor)
    if m := _OFFSET.match(value):
        unit = m["unit"]
        if unit in ("pp", "%") and figure.kind == "percent":
            scale = 1.0
        else:
            scale = _scale(figure, unit, text)
        offset = float(m["num"]) * scale * (-1.0 if m["sign"] == "-" else 1.0)
        return Constraint(raw, figure.name, op, offset, 1.0)
    m = _ABSOLUTE.match(value)
    if not m:
        raise SelectError(f"constraint {text!r}: {value!r} is not a number with a unit, nor N*fp32 or fp32-N")
    number = float(m["num"])
    if number < 0:
        raise SelectError(f"constraint {text!r}: a bound must not be negative")
    return Constraint(raw, figure.name, op, number * _scale(figure, m["unit"], text))


def parse_objective(text: str) -> Objective:
    name = text.strip().lower()
    name = _ALIASES.get(name, name)
    if name not in FIGURES:
        raise SelectError(f"objective {text!r}: unknown figure (known: {', '.join(FIGURES)})")
    return Objective(name)
