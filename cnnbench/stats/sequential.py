"""Sequential A/B: stop repeating a case as soon as its verdict is settled. Pure statistics.

The fixed design runs every case `N` pairs of worker processes and then tests once; most cases
are settled long before. Looking after every pair saves those processes, but every look is
another chance of a false alarm, so a *group-sequential* plan spends the error across the looks
and the chance of a false alarm at *any* look stays at most `alpha`:

* **regressed / improved** (the one-sided rank test `compare` uses) spend alpha with the
  Hwang-Shih-DeCani function, gamma = -8 (Hwang, Shih and DeCani, Statistics in Medicine
  9:1439-1445, 1990), which keeps most of alpha for the last look so a borderline change is
  caught about as often as by the fixed design;
* **unchanged** (the ratio's interval inside the band) is a non-binding futility stop: it can
  only remove later chances of a false alarm, so it spends none of alpha, and is judged at the
  Pocock-type levels of Lan and DeMets (Biometrika 70(3):659-663, 1983) to bound the other error.

Each look's nominal level is the largest p-value threshold whose first-crossing probability
under "no change" stays within the error left to spend there, estimated once per design by
seeded simulation at its upper 99.9% bound. A case whose processes split into modes may go on
past N up to M pairs (`extend_to`): `EXTENSION_SHARE` of alpha is kept back for those looks from
the start, so the total stays bounded whichever cases are extended. Files written with the older
Pocock-only plan (`spending: pocock`) are re-judged with it.

The looks themselves (asking `compare` for a verdict at a plan's level) are
`cnnbench.compare.looks`. The levels, why this spending was chosen over Pocock's, and the
validation figures: docs/ci.md (`benchmarks/compare_validation.py`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from cnnbench.stats.ranktests import min_attainable_p, min_repeats_for_alpha

__all__ = ["EXTENSION_SHARE", "GAMMA", "SPENDING", "STOPPED_REASONS", "Plan", "plan", "spent", "spent_extended",
           "spent_pocock"]  # fmt: skip

SPENDING = "hsd-8"
GAMMA = -8.0  # the Hwang-Shih-DeCani parameter of SPENDING
RULE = ("group-sequential Mann-Whitney, Hwang-Shih-DeCani (gamma -8) alpha spending; unchanged "
        "at Pocock-type levels (non-binding)")  # fmt: skip
RULES = {
    "pocock": "group-sequential Mann-Whitney, Pocock-type alpha spending (Lan & DeMets 1983)",
    SPENDING: RULE,
}
SIMULATIONS = 200_000
SEED = 20261201
_Z_UPPER = 3.09  # upper 99.9% bound on each simulated crossing rate
SETTLED = ("regressed", "improved", "unchanged")
EXTENSION_SHARE = 0.10  # the share of alpha kept for the looks past N (modal cases only)
POCOCK_EXTENSION_SHARE = 0.25  # the share files written with the Pocock-only plan used
STOPPED_REASONS = {
    "settled": "verdict settled at this look",
    "max_repeats": "reached the maximum repeats",
    "modal_max": "processes split into modes: repeated past the planned maximum, up to the modal maximum",
    "failed": "a worker process did not end ok",
    "interrupted": "the run was interrupted",
}


def spent_pocock(t: float, alpha: float) -> float:
    """Pocock-type spending by information fraction t (0..1): alpha ln(1 + (e - 1) t)."""
    t = min(max(t, 0.0), 1.0)
    return alpha * math.log(1.0 + (math.e - 1.0) * t)


def spent(t: float, alpha: float, spending: str = SPENDING) -> float:
    """Error spent by information fraction t (0..1) on the regression test: Hwang-Shih-DeCani
    with gamma -8, alpha (1 - e^(-gamma t)) / (1 - e^(-gamma)); `spending="pocock"` for the
    older plan."""
    if spending == "pocock":
        return spent_pocock(t, alpha)
    if spending != SPENDING:
        raise ValueError(f"unknown spending function {spending!r} (known: pocock, {SPENDING})")
    t = min(max(t, 0.0), 1.0)
    return alpha * (1.0 - math.exp(-GAMMA * t)) / (1.0 - math.exp(-GAMMA))


def spent_extended(n: int, max_repeats: int, extend_to: int, alpha: float, share: float = EXTENSION_SHARE,
                   spending: str = SPENDING) -> float:  # fmt: skip
    """Error spent by look n of a plan with an extension past `max_repeats` up to `extend_to`
    (module docstring): (1 - share) of alpha by N, the rest across the extension."""
    if extend_to <= max_repeats:
        return spent(n / max_repeats, alpha, spending)
    if n <= max_repeats:
        return (1.0 - share) * spent(n / max_repeats, alpha, spending)
    return (1.0 - share) * alpha + share * spent((n - max_repeats) / (extend_to - max_repeats), alpha, spending)


@dataclass(frozen=True)
class Plan:
    """The looks of one design: nominal one-sided levels per number of pairs, for the regression
    test (`levels`, spent) and for the `unchanged` interval (`equivalence`, not spent)."""

    max_repeats: int
    alpha: float
    first_look: int
    levels: tuple[tuple[int, float], ...]  # (n, nominal level) for n = first_look .. extend_to (or max_repeats)
    simulated_alpha: float  # estimated chance of a false regression at any look (upper bound)
    extend_to: int = 0  # looks past max_repeats up to this, for modal cases only (0: no extension)
    equivalence: tuple[tuple[int, float], ...] = ()  # (n, level of the unchanged interval); () = levels
    spending: str = SPENDING
    share: float = EXTENSION_SHARE

    @property
    def last(self) -> int:
        """The most pairs any case can use: extend_to when there is an extension."""
        return max(self.max_repeats, self.extend_to)

    def level(self, n: int) -> float:
        """The nominal level of the regression test at n pairs (the final level for an n between
        looks); 0 where the test cannot be passed."""
        return _at(self.levels, n, self.alpha)

    def equivalence_level(self, n: int) -> float:
        """The level of the `unchanged` interval at n pairs (1 - 2 x this is its confidence)."""
        return _at(self.equivalence or self.levels, n, self.alpha)

    def look_at(self, n: int, final: bool = False) -> tuple[float, float] | None:
        """(alpha for the rank test, alpha for the unchanged interval) of the look at n pairs,
        as `look` takes them, or None where nothing can stop a case (no look). `final`: the
        case's last look, which always judges (at the plan's final level when n has none)."""
        early = n < self.first_look
        level = 0.0 if early else self.level(n)
        eq = 0.0 if early else self.equivalence_level(n)
        if level <= 0 and eq <= 0:
            if not final:
                return None
            level = eq = self.level(self.max_repeats) or self.alpha
        if level <= 0:
            level = min_attainable_p(n, n) / 2  # no p-value at n pairs reaches it: no alarm at this look
        return level, eq if eq > 0 else level

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": RULES.get(self.spending, RULE),
            "spending": self.spending,
            "max_repeats": self.max_repeats,
            "first_look": self.first_look,
            "alpha": self.alpha,
            "levels": {str(n): c for n, c in self.levels},
            "equivalence_levels": {str(n): c for n, c in (self.equivalence or self.levels)},
            "simulated_alpha_upper": self.simulated_alpha,
            "extend_to": self.extend_to,
            "extension_share": self.share if self.extend_to > self.max_repeats else 0.0,
        }


def _at(levels: tuple[tuple[int, float], ...], n: int, default: float) -> float:
    for k, c in levels:
        if k == n:
            return c
    return levels[-1][1] if levels else default


def _u_tail(n: int) -> list[float]:
    """P(U >= u) for u = 0..n*n under no change, n values per side, no ties (exact)."""
    # f[m][k][u]: arrangements of m x-values and k y-values with U = u (classic recursion).
    size = n * n + 1
    f = [[[0] * size for _ in range(n + 1)] for _ in range(n + 1)]
    for m in range(n + 1):
        for k in range(n + 1):
            if m == 0 or k == 0:
                f[m][k][0] = 1
                continue
            for u in range(m * k + 1):
                a = f[m - 1][k][u - k] if u >= k else 0  # the largest value is an x: beats all k y
                f[m][k][u] = a + f[m][k - 1][u]
    counts = f[n][n]
    total = math.comb(2 * n, n)
    tail, acc = [0.0] * size, 0
    for u in range(size - 1, -1, -1):
        acc += counts[u]
        tail[u] = acc / total
    return tail


@lru_cache(maxsize=32)
def plan(max_repeats: int, alpha: float, first_look: int | None = None, extend_to: int | None = None,
         spending: str = SPENDING) -> Plan:  # fmt: skip
    """The nominal levels of every look for `max_repeats` pairs at overall level `alpha`; with
    `extend_to` > max_repeats, also the looks of the modal extension up to `extend_to` pairs.
    `spending="pocock"` rebuilds the older plan (files that recorded it): one level per look,
    Pocock-type, 25% kept for the extension."""
    n0 = first_look or min_repeats_for_alpha(alpha)
    ext = extend_to if extend_to and extend_to > max_repeats else 0
    last = max(max_repeats, ext)
    share = POCOCK_EXTENSION_SHARE if spending == "pocock" else EXTENSION_SHARE
    if last <= n0:  # one look at the end: the fixed design, at alpha
        return Plan(max_repeats, alpha, last, ((last, alpha),), alpha, ext, spending=spending, share=share)
    levels, used = _levels(max_repeats, alpha, n0, ext, spending, share)
    equivalence = () if spending == "pocock" else _levels(max_repeats, alpha, n0, ext, "pocock", share)[0]
    return Plan(max_repeats, alpha, n0, levels, used, ext, equivalence, spending, share)


def _levels(max_repeats: int, alpha: float, n0: int, ext: int, spending: str, share: float) -> tuple[tuple[tuple[int, float], ...], float]:
    """The levels of looks n0..last under `spending`, and the simulated error they spend."""
    import numpy as np

    last = max(max_repeats, ext)
    rng = np.random.default_rng(SEED)
    sims = SIMULATIONS
    x = rng.random((sims, last))  # current
    y = rng.random((sims, last))  # base
    alive = np.ones(sims, dtype=bool)
    u = np.zeros(sims, dtype=np.int64)
    levels: list[tuple[int, float]] = []
    budget_used = 0.0
    for n in range(1, last + 1):
        # U_n = U_{n-1} + [new current beats each of the n base values] + [each earlier current beats the new base]
        u += (x[:, n - 1 : n] > y[:, :n]).sum(axis=1) + (x[:, : n - 1] > y[:, n - 1 : n]).sum(axis=1)
        if n < n0:
            continue
        allowed = spent_extended(n, max_repeats, ext, alpha, share, spending) - budget_used
        tail = _u_tail(n)
        counts = np.bincount(u[alive], minlength=n * n + 1)
        best_u, best_rate = None, 0.0
        crossing = 0
        for cut in range(n * n, -1, -1):  # widen the rejection region while the bound allows
            crossing += int(counts[cut])
            rate = crossing / sims
            upper = rate + _Z_UPPER * math.sqrt(max(rate * (1 - rate), 1.0 / sims) / sims)
            if upper > allowed or tail[cut] > alpha:
                break
            best_u, best_rate = cut, upper
        if best_u is None:
            levels.append((n, 0.0))
            continue
        levels.append((n, tail[best_u]))
        alive &= u < best_u
        budget_used += best_rate
    return tuple(levels), budget_used


