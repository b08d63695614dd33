"""Statistics helpers: the one place medians, percentiles and CIs are computed."""

import math
import random

import pytest

from cnnbench.stats import basic as stats


def test_percentile_matches_linear_interpolation():
    xs = [1.0, 2.0, 3.0, 4.0]
    assert stats.percentile(xs, 0) == 1.0
    assert stats.percentile(xs, 100) == 4.0
    assert stats.percentile(xs, 50) == 2.5
    assert stats.percentile(xs, 25) == pytest.approx(1.75)


def test_summarize_fields_and_values():
    xs = [float(i) for i in range(1, 101)]
    s = stats.summarize(xs)
    assert s["median"] == pytest.approx(50.5)
    assert s["min"] == 1.0 and s["max"] == 100.0
    assert s["iqr"] == pytest.approx(75.25 - 25.75)
    assert s["p99"] == pytest.approx(99.01)
    assert s["n"] == 100
    assert s["ci95_low"] <= s["median"] <= s["ci95_high"]


def test_median_ci_covers_the_true_median_about_95_percent_of_the_time():
    rng = random.Random(1)
    hits = 0
    trials = 400
    for _ in range(trials):
        xs = [rng.gauss(10.0, 1.0) for _ in range(60)]
        lo, hi = stats.median_ci(xs)
        hits += lo <= 10.0 <= hi
    assert 0.90 <= hits / trials <= 0.99


def test_relative_ci_shrinks_with_more_samples_and_is_inf_when_undefined():
    rng = random.Random(2)
    small = [rng.gauss(10, 1) for _ in range(20)]
    large = small + [rng.gauss(10, 1) for _ in range(2000)]
    assert stats.relative_ci_half_width(large) < stats.relative_ci_half_width(small)
    assert math.isinf(stats.relative_ci_half_width([1.0, 2.0]))
