"""The figures of each measured configuration, with their intervals, from typed `CaseRecord`s. Pure.

Every figure is a `Value`: a point, an interval (low, high) and how the interval was made, so the
frontier (`cnnbench.select.frontier`) can call A better than B only when their intervals separate.

- latency (the median per call) and throughput: the between-process interval of the median where
  the case has two or more worker processes (`processes` block: `cnnbench.stats.processes`, with
  its true coverage, e.g. [min, max] of 3 processes covers 75%), else the case's own sample
  interval of the median (`cnnbench.stats.basic.median_ci`, one process: its samples are
  correlated, so the interval is optimistic, and says so).
- p90/p95/p99: the point is the pooled percentile; the interval the between-process interval of
  the per-process percentiles (two or more processes), else an order-statistic interval of the
  quantile from the pooled samples.
- top1/top5 measured: the Wilson 95% interval of the count (correct / total images); published:
  a point, labelled with its source. A published figure describes fp32 weights, so a non-fp32
  case without a measurement has no accuracy ("unknown").
- params, MACs, memory, artefact size, energy: points (no interval is recorded for them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

from cnnbench.core.units import fmt_bytes, fmt_count, fmt_macs, fmt_ms, fmt_pct, fmt_rate
from cnnbench.results.records import CaseRecord, ResultsFile
from cnnbench.select.constraints import FIGURES
from cnnbench.stats import basic
from cnnbench.stats.processes import median_ci_between

__all__ = ["Value", "Config", "configs_of", "fmt_figure", "median_value", "training_cases", "unreliable_reason", "UNRELIABLE_WARNINGS", "quantile_ci", "wilson"]

# Warnings that make a case's timing unfit to drive a decision (it is listed, never recommended).
UNRELIABLE_WARNINGS = ("few samples", "processes split")


@dataclass(frozen=True)
class Value:
    point: float
    low: float
    high: float
    how: str  # how the interval was made (or "exact", "published ...")

    def to_dict(self) -> dict[str, Any]:
        return {"point": self.point, "low": self.low, "high": self.high, "how": self.how}


@dataclass(frozen=True)
class Config:
    """One measured configuration: model x backend x precision x batch (x scenario), one record."""

    label: str
    record: CaseRecord
    source: str  # the results file
    environment: Mapping[str, Any]
    figures: Mapping[str, Value]
    unreliable: str | None  # why its timing must not drive a decision
    notes: tuple[str, ...] = field(default=())

    @property
    def model(self) -> str:
        return self.record.spec.model

    @property
    def precision(self) -> str:
        return self.record.spec.precision


def wilson(correct: float, total: float, z: float = 1.959964) -> tuple[float, float]:
    """The Wilson score interval of a proportion, in percent."""
    p = correct / total
    denom = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denom
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denom
    return 100.0 * max(0.0, centre - half), 100.0 * min(1.0, centre + half)


def quantile_ci(values: Sequence[float], q: float, z: float = 1.959964) -> tuple[float, float]:
    """A distribution-free ~95% interval of the q-th percentile (order statistics, normal
    approximation of the binomial); the sample range for small samples."""
    xs = sorted(values)
    n = len(xs)
    p = q / 100.0
    half = z * math.sqrt(n * p * (1 - p))
    lo = max(0, math.floor(n * p - half) - 1)
    hi = min(n - 1, math.ceil(n * p + half))
    return float(xs[lo]), float(xs[hi])


def fmt_figure(figure: str, x: float) -> str:
    """A figure's value with its unit, through the report's one formatter per unit."""
    kind = FIGURES[figure].kind
    if kind == "time":
        return f"{fmt_ms(x)} ms"
    if kind == "rate":
        return f"{fmt_rate(x)}/s"
    if kind == "percent":
        return fmt_pct(x)
    if kind == "bytes":
        return fmt_bytes(x)
    if kind == "energy":
        return f"{x:.3g} J/image"
    return fmt_macs(x / 1e9) if figure == "macs" else fmt_count(x)


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) else None


def _point(value: float, how: str) -> Value:
    return Value(value, value, value, how)


def median_value(rec: CaseRecord) -> Value | None:
    med = rec.median_ms
    if med is None:
        return None
    proc = rec.processes or {}
    lo, hi = _num(proc.get("ci_low_ms")), _num(proc.get("ci_high_ms"))
    n = proc.get("n")
    if lo is not None and hi is not None and isinstance(n, int) and n >= 2:
        cov = _num(proc.get("ci_coverage"))
        how = f"between-process interval of the median ({n} processes" + (f", coverage {cov:.0%})" if cov is not None else ")")
        return Value(med, min(lo, med), max(hi, med), how)
    lat = rec.latency_ms or {}
    lo, hi = _num(lat.get("ci95_low")), _num(lat.get("ci95_high"))
    if (lo is None or hi is None) and rec.samples_ms:
        lo, hi = basic.median_ci(rec.samples_ms)
    if lo is None or hi is None:
        return _point(med, "no interval recorded")
    return Value(med, min(lo, med), max(hi, med), f"sample interval of the median (1 process, {lat.get('n', len(rec.samples_ms))} samples)")


def _percentile_value(rec: CaseRecord, q: float) -> Value | None:
    lat = rec.latency_ms or {}
    point = _num(lat.get(f"p{q:g}"))
    if point is None and rec.samples_ms:
        point = basic.percentile(rec.samples_ms, q)
    if point is None or not rec.valid:
        return None
    per = rec.per_process(q) or []
    if len(per) >= 2:
        lo, hi, cov = median_ci_between(per)
        how = f"between-process interval of p{q:g} ({len(per)} processes, coverage {cov:.0%})"
        return Value(point, min(lo, point), max(hi, point), how)
    if len(rec.samples_ms) >= 2:
        lo, hi = quantile_ci(rec.samples_ms, q)
        return Value(point, min(lo, point), max(hi, point), f"sample interval of p{q:g} (1 process)")
    return _point(point, "no interval")


def _accuracy(rec: CaseRecord, name: str) -> tuple[Value | None, str | None]:
    acc = rec.measured_accuracy
    count_key = {"top1": "correct1", "top5": "correct5"}[name]
    if acc is not None and _num(acc.get(name)) is not None:
        correct, total = _num(acc.get(count_key)), _num(acc.get("total"))
        ds = acc.get("dataset")
        dataset = (ds.get("name") or ds.get("kind")) if isinstance(ds, Mapping) else (ds or "a dataset")
        if correct is not None and total:
            lo, hi = wilson(correct, total)
            return Value(100.0 * correct / total, lo, hi, f"measured on {dataset} ({int(correct)}/{int(total)}, Wilson 95%)"), "measured"
        return _point(float(acc[name]), f"measured on {dataset}"), "measured"
    pub = rec.published or {}
    figure = _num(pub.get({"top1": "acc@1", "top5": "acc@5"}[name]))
    if figure is not None and rec.spec.precision == "fp32":
        where = f"{pub.get('dataset')} val" if pub.get("dataset") else "ImageNet-1k val"
        return _point(figure, f"published ({pub.get('weights') or 'weights metadata'}, {where}), not measured"), "published"
    return None, None


def _memory(rec: CaseRecord) -> Value | None:
    mem = rec.memory or {}
    if rec.spec.device.startswith("cuda"):
        names = ("cuda_peak_allocated_bytes", "device_used_delta_bytes")
    else:
        names = ("peak_rss_delta_bytes",)
    for n in names:
        v = _num(mem.get(n))
        if v is not None:
            return _point(v, f"measured {n}")
    return None


def _size(rec: CaseRecord) -> Value | None:
    info = rec.backend_info or {}
    for n in ("artifact_bytes", "export_file_bytes"):
        v = _num(info.get(n))
        if v is not None:
            return _point(v, f"backend_info.{n}")
    return None


def _energy(rec: CaseRecord) -> Value | None:
    e = rec.energy or {}
    v = _num(e.get("j_per_image"))
    if v is None or e.get("available") is False:
        return None
    how = "measured over the timed window" + ("" if e.get("reliable", True) else f" (unreliable: {e.get('unreliable_reason')})")
    return _point(v, how)


def _qps(rec: CaseRecord) -> Value | None:
    scenario = rec.extra.get("scenario")
    if isinstance(scenario, Mapping):
        for n in ("qps", "achieved_qps", "target_qps"):
            v = _num(scenario.get(n))
            if v is not None:
                return _point(v, f"scenario.{n}")
    return None


def unreliable_reason(rec: CaseRecord) -> str | None:
    """Why a case's timing must not drive a headline or a recommendation (None: it may)."""
    bad = [w for w in rec.warnings if w.startswith(UNRELIABLE_WARNINGS)]
    return "; ".join(bad) if bad else None


def figures_of(rec: CaseRecord) -> tuple[dict[str, Value], list[str]]:
    out: dict[str, Value] = {}
    notes: list[str] = []
    med = median_value(rec)
    if med is not None:
        out["latency"] = med
        out["p50"] = med
        batch = rec.batch
        thr = rec.throughput or batch * 1000.0 / med.point
        scale = thr * med.point  # images/s x ms: batch x 1000 (or the recorded throughput's own)
        out["throughput"] = Value(thr, scale / med.high, scale / med.low, med.how.replace("median", "median, as batch / latency"))
        for q in (90.0, 95.0, 99.0):
            v = _percentile_value(rec, q)
            if v is not None:
                out[f"p{q:g}"] = v
    for name in ("top1", "top5"):
        v, kind = _accuracy(rec, name)
        if v is not None:
            out[name] = v
    if rec.params is not None:
        out["params"] = _point(float(rec.params), "exact, counted on the model as built")
    gm = rec.gmacs_per_image if rec.gmacs_per_image is not None else rec.gmacs
    if gm is not None:
        out["macs"] = _point(gm * 1e9, f"{rec.counter or 'counter'}, per image")
    for name, fn in (("memory", _memory), ("size", _size), ("energy", _energy), ("qps", _qps)):
        v = fn(rec)
        if v is not None:
            out[name] = v
    if "top1" not in out and rec.spec.precision != "fp32" and (rec.published or {}).get("acc@1") is not None:
        notes.append("published accuracy is for the fp32 weights: this precision's accuracy was not measured")
    return out, notes


def _base_label(rec: CaseRecord) -> str:
    s = rec.spec
    label = f"{s.model} {rec.backend_label} {s.precision} b{rec.batch_label}"
    scenario = rec.extra.get("scenario")
    if isinstance(scenario, Mapping) and scenario.get("name"):
        label += f" {scenario['name']}"
    if s.mode != "inference":
        label += f" {s.mode}"
    return label


def configs_of(files: Iterable[ResultsFile]) -> tuple[list[Config], list[tuple[str, str]]]:
    """(configurations, left out): every valid inference case of `files` as a `Config`; the
    others as (label, why it is left out)."""
    files = list(files)
    raw: list[tuple[str, CaseRecord, ResultsFile]] = []
    left: list[tuple[str, str]] = []
    for f in files:
        for rec in f.cases:
            label = _base_label(rec)
            if rec.is_train:
                left.append((label, "a training step, not a deployment configuration"))
            elif not rec.valid:
                left.append((label, f"not a result: {rec.invalid_reason}" + (f" ({' '.join(rec.error.split())[:120]})" if rec.error else "")))
            else:
                raw.append((label, rec, f))
    counts: dict[str, int] = {}
    for label, _, _ in raw:
        counts[label] = counts.get(label, 0) + 1
    out = []
    for label, rec, f in raw:
        if counts[label] > 1:
            label = f"{label} [{f.path}]"
        figures, notes = figures_of(rec)
        out.append(Config(label, rec, f.path, f.environment_of(rec), figures, unreliable_reason(rec), tuple(notes)))
    return out, left


def training_cases(files: Iterable[ResultsFile], model: str) -> list[CaseRecord]:
    return [r for f in files for r in f.cases if r.is_train and r.valid and r.spec.model == model]
