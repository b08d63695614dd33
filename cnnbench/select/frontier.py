"""Feasibility, the interval-respecting Pareto frontier, the recommendation and the near misses. Pure.

The rule (docs/select.md): on one objective, A is *better* than B only when their intervals
separate (lower is better: A.high < B.low). A *dominates* B when A is better on at least one
objective and B is better on none; configurations whose intervals overlap on every objective
are *tied*. The frontier is every feasible, reliable configuration no other one dominates. The
recommendation is the frontier's best tier on the first objective (every member no other member
beats on it); when that tier holds several configurations they are a tie, said as such, and the
tie rule picks one by what is not noise: fp32 before a reduced precision, then the simpler
deployment (eager < compile < onnxrt < openvino < aoti < tensorrt), then the smaller batch, then
the name. A median never breaks a tie.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

from cnnbench.select.constraints import FIGURES, Constraint, Objective
from cnnbench.select.figures import Config, Value, fmt_figure as _fmt

__all__ = ["Check", "Verdict", "Miss", "Selection", "better", "dominates", "select", "reference_value", "TIE_BACKENDS"]

TIE_BACKENDS = ("eager", "compile", "onnxrt", "openvino", "aoti", "tensorrt")
_ACCURACY = ("top1", "top5")


@dataclass(frozen=True)
class Check:
    constraint: Constraint
    status: str  # pass | fail | unknown
    value: Value | None
    limit: float | None
    why: str  # for unknown: what is missing; for fail: by how much
    borderline: bool = False  # the interval straddles the bound

    def to_dict(self) -> dict[str, Any]:
        return {
            "constraint": self.constraint.text, "status": self.status,
            "value": self.value.to_dict() if self.value else None, "limit": self.limit, "why": self.why,
            "borderline": self.borderline,
        }  # fmt: skip


@dataclass(frozen=True)
class Verdict:
    config: Config
    checks: tuple[Check, ...]

    @property
    def status(self) -> str:
        states = {c.status for c in self.checks}
        return "infeasible" if "fail" in states else "unknown" if "unknown" in states else "feasible"

    def failed(self) -> list[Check]:
        return [c for c in self.checks if c.status == "fail"]


@dataclass(frozen=True)
class Miss:
    config: Config
    without: str  # "any constraint" or the constraint dropped
    checks: tuple[Check, ...]  # the checks it fails


@dataclass(frozen=True)
class Selection:
    constraints: tuple[Constraint, ...]
    objectives: tuple[Objective, ...]
    verdicts: tuple[Verdict, ...]
    frontier: tuple[Config, ...]
    ties: dict[str, tuple[str, ...]]  # frontier label -> labels tied with it
    dominated_by: dict[str, str]  # feasible, reliable label -> a frontier label dominating it
    recommended: Config | None
    reason: str
    tied_best: tuple[Config, ...]
    misses: tuple[Miss, ...]
    left_out: tuple[tuple[str, str], ...]  # (label, why): invalid, training, unreliable
    missing_objective: tuple[tuple[str, str], ...] = field(default=())

    @property
    def feasible(self) -> list[Config]:
        return [v.config for v in self.verdicts if v.status == "feasible"]

    def verdict(self, label: str) -> Verdict:
        return next(v for v in self.verdicts if v.config.label == label)


def better(a: Value, b: Value, figure: str) -> bool:
    """A is better than B on `figure` beyond doubt: their intervals separate."""
    if FIGURES[figure].higher_is_better:
        return a.low > b.high
    return a.high < b.low


def dominates(a: Config, b: Config, objectives: Sequence[Objective]) -> bool:
    pairs = [(a.figures.get(o.figure), b.figures.get(o.figure), o.figure) for o in objectives]
    if any(x is None or y is None for x, y, _ in pairs):
        return False
    return any(better(x, y, f) for x, y, f in pairs) and not any(better(y, x, f) for x, y, f in pairs)  # type: ignore[arg-type]


def _reference(config: Config, configs: Sequence[Config], figure: str) -> Config | None:
    """The same model's fp32 eager case (accuracy: any batch; timing: the same batch, same file)."""
    s = config.record.spec
    for c in configs:
        r = c.record
        if (r.spec.model, tuple(r.spec.input_size), r.spec.device, r.spec.mode) != (s.model, tuple(s.input_size), s.device, s.mode):
            continue
        if not r.is_eager_baseline or r.spec.precision != "fp32" or figure not in c.figures:
            continue
        if figure not in _ACCURACY and (r.batch != config.record.batch or c.source != config.source):
            continue  # a timing is relative to the fp32 eager case of the same batch and results file
        return c
    return None


def reference_value(config: Config, configs: Sequence[Config], figure: str) -> float | None:
    """The point of `figure` in the same model's fp32 eager case (None: there is none)."""
    ref = _reference(config, configs, figure)
    return ref.figures[figure].point if ref else None


def _check(config: Config, c: Constraint, configs: Sequence[Config]) -> Check:
    value = config.figures.get(c.figure)
    if value is None:
        return Check(c, "unknown", None, None, f"no {c.figure} recorded for this configuration")
    ref = None
    if c.relative:
        ref_cfg = _reference(config, configs, c.figure)
        if ref_cfg is None:
            return Check(c, "unknown", value, None, f"no fp32 eager {c.figure} of {config.model} to be relative to")
        ref = ref_cfg.figures[c.figure].point
    limit = c.limit(ref)
    assert limit is not None
    ok = c.holds(value.point, limit)
    borderline = value.low <= limit <= value.high and value.low != value.high
    if ok:
        return Check(c, "pass", value, limit, "", borderline)
    gap = abs(value.point - limit)
    percent = FIGURES[c.figure].unit == "%"
    shown = f"{gap:.2f} pp" if percent else _fmt(c.figure, gap)
    rel = ""
    if limit and not percent:
        ratio = value.point / limit
        rel = f" ({ratio:.3g}x the bound)" if ratio >= 2 or ratio <= 0.5 else f" ({abs(ratio - 1):.1%} of the bound)"
    ref_text = f" (= {c.text.split(c.op, 1)[1].strip()} = {_fmt(c.figure, limit)})" if c.relative else ""
    why = f"{c.figure} {_fmt(c.figure, value.point)} vs bound {_fmt(c.figure, limit)}{ref_text}: misses by {shown}{rel}"
    return Check(c, "fail", value, limit, why, borderline)


def _tie_key(c: Config) -> tuple[Any, ...]:
    r = c.record
    backend = TIE_BACKENDS.index(r.spec.backend) if r.spec.backend in TIE_BACKENDS else len(TIE_BACKENDS)
    return (r.spec.precision != "fp32", backend, bool(r.spec.options), r.batch, c.label)


def _frontier(pool: Sequence[Config], objectives: Sequence[Objective]) -> list[Config]:
    return [c for c in pool if not any(dominates(o, c, objectives) for o in pool if o is not c)]


def _best_tier(front: Sequence[Config], primary: Objective) -> list[Config]:
    return [c for c in front if not any(better(o.figures[primary.figure], c.figures[primary.figure], primary.figure) for o in front if o is not c)]


def _winners(pool: Sequence[Config], objectives: Sequence[Objective]) -> list[Config]:
    front = _frontier(pool, objectives)
    return _best_tier(front, objectives[0]) if front else []


def select(configs: Sequence[Config], constraints: Sequence[Constraint], objectives: Sequence[Objective],
           left_out: Sequence[tuple[str, str]] = ()) -> Selection:  # fmt: skip
    """Every configuration checked against `constraints`; the frontier of the feasible, reliable
    ones on `objectives` (at least one); the recommendation; the nearest misses."""
    objectives = list(objectives) or [Objective("throughput")]
    verdicts = [Verdict(c, tuple(_check(c, k, configs) for k in constraints)) for c in configs]
    left = list(left_out)
    missing: list[tuple[str, str]] = []
    reliable: list[Verdict] = []
    for v in verdicts:
        if v.config.unreliable:
            if v.status == "feasible":
                left.append((v.config.label, f"unreliable timing, never recommended: {v.config.unreliable}"))
            continue
        lacking = [o.figure for o in objectives if o.figure not in v.config.figures]
        if lacking:
            if v.status == "feasible":
                missing.append((v.config.label, f"no {', '.join(lacking)} recorded: not ranked"))
            continue
        reliable.append(v)
    pool = [v.config for v in reliable if v.status == "feasible"]
    front = _frontier(pool, objectives)
    ties = {
        c.label: tuple(o.label for o in front if o is not c and not any(
            better(c.figures[k.figure], o.figures[k.figure], k.figure) or better(o.figures[k.figure], c.figures[k.figure], k.figure)
            for k in objectives))
        for c in front
    }  # fmt: skip
    dominated_by = {}
    for c in pool:
        if c not in front:
            dom = next(o for o in front if dominates(o, c, objectives)) if any(dominates(o, c, objectives) for o in front) else None
            if dom is None:  # dominated only by a non-frontier config, which a frontier one dominates in turn
                dom = next(o for o in pool if dominates(o, c, objectives))
            dominated_by[c.label] = dom.label
    tier = sorted(_best_tier(front, objectives[0]), key=_tie_key) if front else []
    recommended = tier[0] if tier else None
    reason = _reason(recommended, tier, objectives, pool)
    # Nearest misses: the winners once all constraints, or each one, are dropped.
    misses: list[Miss] = []
    seen: set[str] = set()
    all_reliable = [v.config for v in reliable]
    trials: list[tuple[str, list[Config]]] = [("any constraint", all_reliable)] if constraints else []
    for k in constraints:
        others = [v.config for v in reliable if all(c.status == "pass" for c in v.checks if c.constraint is not k)]
        trials.append((k.text, others))
    for without, candidates in trials:
        for w in _winners(candidates, objectives):
            v = next(x for x in verdicts if x.config is w)
            failed = tuple(v.failed()) if without == "any constraint" else tuple(c for c in v.failed() if c.constraint.text == without)
            if failed and w.label not in seen:
                seen.add(w.label)
                misses.append(Miss(w, without, failed))
    return Selection(tuple(constraints), tuple(objectives), tuple(verdicts), tuple(front), ties, dominated_by,
                     recommended, reason, tuple(tier), tuple(misses), tuple(left), tuple(missing))  # fmt: skip


def _reason(rec: Config | None, tier: Sequence[Config], objectives: Sequence[Objective], pool: Sequence[Config]) -> str:
    if rec is None:
        return "no configuration is feasible, reliable and has every objective's figure"
    p = objectives[0].figure
    v = rec.figures[p]
    best = "highest" if FIGURES[p].higher_is_better else "lowest"
    text = f"{best} {p} on the frontier: {_fmt(p, v.point)} [{_fmt(p, v.low)}, {_fmt(p, v.high)}] ({v.how})"
    if len(tier) > 1:
        others = ", ".join(c.label for c in tier[1:])
        text += (f"; tied with {others} (their intervals overlap: the measurements cannot separate them), "
                 "chosen by the tie rule (fp32 first, then the simpler backend, then the smaller batch), not by the medians")  # fmt: skip
    else:
        rest = sorted((c for c in pool if c is not rec), key=lambda c: c.figures[p].point, reverse=FIGURES[p].higher_is_better)
        if rest:
            r = rest[0].figures[p]
            shown = f"{rest[0].label}: {_fmt(p, r.point)} [{_fmt(p, r.low)}, {_fmt(p, r.high)}]"
            if better(v, r, p):
                text += f"; its interval separates from the next feasible one's, {shown}"
            else:
                text += f"; the next feasible one, {shown}, overlaps it on {p} but is dominated on another objective"
    if len(objectives) > 1:
        text += f"; frontier over {', '.join(o.figure for o in objectives)}, ranked by {p} first"
    return text
