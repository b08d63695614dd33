"""Sequential A/B: stop repeating a case as soon as its verdict is settled.

The fixed design runs every case `N` pairs of worker processes (9 by default) and then tests
once. Most cases are settled long before: an unchanged case on a quiet machine, or a +25%
slowdown, is clear after 5 pairs. Looking at the data after every pair and stopping when it is
clear saves those processes, but every look is another chance of a false alarm: testing at
`alpha` after each of 5 looks would raise the false-alarm rate well above `alpha`. A
*group-sequential* rule spends the error across the looks so that the chance of a false alarm at
*any* look stays at most `alpha`.

The rule
--------
Looks at n = n0, n0 + 1, ..., N pairs per side, where n0 is the fewest repeats with which the
rank test can reach `alpha` at all (5 for 0.01, `compare.min_repeats_for_alpha`). At each look
two questions are asked, with two error budgets:

* **regressed / improved** (the one-sided Mann-Whitney test that `compare` uses, on the same
  per-process figures, the p5 by default): a false alarm here is what the gate must bound, so
  its error is *spent* across the looks. The spending function is the **Hwang-Shih-DeCani**
  family with gamma = -8,

      alpha(t) = alpha (1 - exp(-gamma t)) / (1 - exp(-gamma)),   t = n / N (the information fraction)

  (I. K. Hwang, W. J. Shih and J. S. DeCani, "Group sequential designs using a family of type I
  error probability spending functions", Statistics in Medicine 9:1439-1445, 1990; Jennison and
  Turnbull, *Group Sequential Methods with Applications to Clinical Trials*, 2000, sec. 7.3).
  gamma = -8 spends almost nothing early and keeps most of alpha for the last look (0.0071 at 9
  of 9 pairs, the largest level below 0.01 the rank test has at 9 pairs), so a borderline change
  is caught about as often as by a fixed 9 at 0.01; a clear one still stops from the 7th pair.
  Chosen over the Pocock-type function used before (issue 18 measured it): Pocock spends
  0.004 at the 5th look and leaves the last look 0.0014-0.0020, which at 6% between-process
  noise caught +10% in 55% of comparisons against the fixed design's 80%.
* **unchanged** (the bootstrap interval of the ratio inside the band): stopping here can only
  remove later chances of a false alarm, so it spends none of alpha (a *non-binding futility*
  stop in the clinical-trials vocabulary) and may come at any look. Its risk is the other error:
  waving a real change through on a lucky look. It is bounded by judging it at the
  **Pocock-type** levels of Lan and DeMets, alpha(t) = alpha ln(1 + (e - 1) t) (K. K. G. Lan and
  D. L. DeMets, "Discrete sequential boundaries for clinical trials", Biometrika 70(3):659-663,
  1983): the interval at 1 - 2 x that look's level, as strict at each look as the old rule was,
  so a quiet-machine A/A case still stops `unchanged` from the 5th pair.

The nominal level of each look, `levels[n]` (and `equivalence[n]` for the second question), is
the largest p-value threshold such that, under "no change" (the 2N per-process figures
exchangeable, which makes the rank statistics' joint distribution the same for any continuous
noise), the probability of crossing at look n and at no earlier look is at most the error left
to spend there: alpha(t_n) minus what the earlier looks really spent (a discrete test spends
less than it may; the rest carries forward, as Lan-DeMets allows). A look whose share is below
the rank test's floor (1 / C(2n, n)) has level 0: no regression can be called there (with the
defaults, the 5th and 6th pairs), but it can still stop `unchanged`. The joint probability is
estimated once per design by simulation with a fixed seed, and each estimate is taken at its
upper 99.9% bound, so Monte Carlo error cannot push the real rate above the budget. With the
defaults (N = 9, alpha = 0.01) the levels are printed in docs/ci.md.

At look n a case **stops** when `compare`, run at `alpha = levels[n]` for the rank test and at
`equivalence[n]` for the interval, says `regressed`, `improved` or `unchanged`; otherwise it goes
on, up to N (`max_repeats`). The verdict of a stopped case is the verdict of its last look, at
that look's levels: `ab --from FILE` re-judges it the same way (`alpha_by_key`,
`equivalence_alpha_by_key`). A file written with the older Pocock-only plan (`spending:
pocock`, both questions at one level) is re-judged with that plan.

More repeats for cases whose processes split into modes
--------------------------------------------------------
A case whose worker processes land in two (or more) separated modes (`cnnbench.stats.processes`) has a
between-process spread that 9 pairs rarely resolve: it would end `noisy` at the maximum. With an
extension (`plan(N, alpha, extend_to=M)`, `bench.py ab --modal-repeats M`, default 2N) such a case,
and only such a case, goes on past N up to M pairs. The error stays bounded because the extension
is part of the plan from the start: the spending function is

    alpha_ext(n) = (1 - r) alpha(n / N)                          for n <= N,
    alpha_ext(n) = (1 - r) alpha + r alpha(t'),  t' = (n - N) / (M - N)   for N < n <= M,

with `r = EXTENSION_SHARE` (0.10) of the error kept back for the extension, and the levels of the
looks past N simulated as if *every* case went on. A case goes on only when it is modal, a subset
of those that could, so its chance of a false alarm at a late look is at most what the simulation
spent there: the total stays <= alpha whichever cases are extended. The price is paid by every
case: the first N looks spend (1 - r) alpha instead of alpha; with the Hwang-Shih-DeCani function
the last planned look keeps its level (0.0071 either way at N = 9), measured in
benchmarks/compare_validation.py.
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


