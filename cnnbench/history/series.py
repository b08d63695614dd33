"""Per-case series over commits, from the per-process figures the store keeps.

The unit of evidence is the same as `compare`'s: one figure per worker process (a statistic of
that process's own per-call samples, p5 by default). A commit's point pools the processes of
every stored run of that commit on that machine; its value is their median and its spread their
range. A series is one case key on one machine fingerprint: timings from different machines are
never mixed into one line.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import Any, Iterable, NamedTuple, Sequence
from cnnbench.compare import STATISTICS
from cnnbench.results.records import parse_record


__all__ = ["Point", "Series", "process_figures", "record_is_valid", "build_series", "matches"]


def process_figures(record: dict[str, Any]) -> dict[str, list[float]]:
    """Every statistic compare knows, one figure per worker process of the record (what
    `compare` tests), so history and baselines never need the raw samples to recompute them."""

    rec = parse_record(record)  # the record's own per-process figures (CaseRecord.per_process)
    out: dict[str, list[float]] = {}
    for name in STATISTICS:
        values = rec.per_process(None if name == "median" else STATISTICS[name])
        if values:
            out[name] = [float(v) for v in values]
    return out


def record_is_valid(record: dict[str, Any]) -> bool:
    """Timings that count: the case ran ok and did not fail its parity check (compare's rule)."""

    return record.get("status") == "ok" and not parse_record(record).parity_failed


class Point(NamedTuple):
    """One commit of a series: the pooled per-process figures of its stored runs (a NamedTuple,
    immutable and cheap: a long history has tens of thousands)."""

    commit: str
    branch: str | None
    time: str
    figures: tuple[float, ...]
    runs: int
    value_ms: float  # the median of the figures
    low_ms: float  # their range
    high_ms: float

    @classmethod
    def of(cls, commit: str, branch: str | None, time: str, figures: Sequence[float], runs: int) -> "Point":
        xs = sorted(figures)
        n = len(xs)
        # stats.median's value (linear interpolation at 50%), without its generality: this runs
        # once per commit of every series.
        mid = xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2.0
        return cls(commit, branch, time, tuple(figures), runs, mid, xs[0], xs[-1])


@dataclass
class Series:
    """One case key on one machine, oldest commit first."""

    key: str
    machine: str
    model: str | None
    backend: str | None
    device: str | None
    precision: str | None
    points: list[Point] = field(default_factory=list)


def matches(key: str, model: str | None, patterns: Sequence[str]) -> bool:
    """A glob matches the model name or the whole case key (`resnet*`, `*|onnxrt|*`)."""
    if not patterns:
        return True
    return any(fnmatch.fnmatchcase(model or "", p) or fnmatch.fnmatchcase(key, p) for p in patterns)


def build_series(rows: Iterable[Any], *, patterns: Sequence[str] = ()) -> list[Series]:
    """Group stored rows (`Store.history`, oldest first) into series, one point per commit.

    A commit stored more than once keeps its place at its first appearance; its processes are
    pooled. Series come sorted by model, then key, then machine.
    """
    by_series: dict[tuple[str, str], Series] = {}
    acc: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
    wanted: dict[str, bool] = {}
    for r in rows:
        ok = wanted.get(r.case_key)
        if ok is None:
            ok = wanted[r.case_key] = matches(r.case_key, r.model, patterns)
        if not ok:
            continue
        sid = (r.case_key, r.machine_fingerprint)
        if sid not in by_series:
            by_series[sid] = Series(r.case_key, r.machine_fingerprint, r.model, r.backend, r.device, r.precision)
            acc[sid] = {}
        commits = acc[sid]
        entry = commits.setdefault(r.commit, {"branch": r.branch, "time": r.commit_time, "figures": [], "runs": 0})
        entry["figures"].extend(r.figures)
        entry["runs"] += 1
        entry["branch"] = entry["branch"] or r.branch
    for sid, series in by_series.items():
        series.points = [
            Point.of(commit, e["branch"], e["time"], e["figures"], e["runs"]) for commit, e in acc[sid].items()
        ]
    return sorted(by_series.values(), key=lambda s: (s.model or "", s.key, s.machine))
