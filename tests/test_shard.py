"""Tests for `cnnbench.run.shard`: disjoint, complete, balanced and machine-independent shards."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from cnnbench.core.errors import UserError
from cnnbench.run.shard import apply_shard, assign_shards, expected_cost_s, parse_shard, select_shard
from cnnbench.suite.schema import expand, load_suite

SUITES = Path(__file__).resolve().parent.parent / "suites"


@pytest.fixture(scope="module")
def classics():
    return list(load_suite(SUITES / "classics.yaml").cases)


@pytest.mark.parametrize("n", range(1, 7))
def test_shards_are_disjoint_and_their_union_is_the_suite(classics, n):
    keys = [c.key for c in classics]
    shards = [[c.key for c in select_shard(classics, k, n)] for k in range(1, n + 1)]
    flat = [key for shard in shards for key in shard]
    assert len(flat) == len(set(flat)) == len(keys)
    assert set(flat) == set(keys)
    for shard in shards:  # each shard keeps the suite's order
        assert shard == [k for k in keys if k in set(shard)]


@pytest.mark.parametrize("n", range(2, 7))
def test_shards_are_balanced_by_expected_cost(classics, n):
    costs = {c.key: expected_cost_s(c) for c in classics}
    loads = [sum(costs[c.key] for c in select_shard(classics, k, n)) for k in range(1, n + 1)]
    mean = sum(loads) / n
    # LPT is within 4/3 of the best split, which is at least max(mean, largest case).
    assert max(loads) <= 4 / 3 * max(mean, max(costs.values())) + 1e-9
    # and on classics (39 cases of very different cost) it is much better than that
    assert max(loads) <= 1.10 * max(mean, max(costs.values()))


def test_the_split_ignores_the_order_of_the_suite(classics):
    shuffled = classics[:]
    random.Random(7).shuffle(shuffled)
    for k in range(1, 5):
        assert {c.key for c in select_shard(shuffled, k, 4)} == {c.key for c in select_shard(classics, k, 4)}


def test_the_split_does_not_depend_on_the_machine_resolved_threads_and_device(classics):
    other = [c.replace(threads=16, device="cuda") for c in classics]
    assert assign_shards(other, 5) == assign_shards(classics, 5)


def test_cost_grows_with_batch_repeats_and_training():
    (small,) = expand({"models": ["resnet18"], "batch_sizes": [1]})
    big = small.replace(batch_size=32)
    train = small.replace(mode="train")
    repeated = small.replace(measure=small.measure.__class__(repeats=3))
    assert expected_cost_s(big) > expected_cost_s(small)
    assert expected_cost_s(train) > expected_cost_s(small)
    assert expected_cost_s(repeated) == pytest.approx(3 * expected_cost_s(small))


def test_more_shards_than_cases_leaves_some_empty():
    cases = expand({"models": ["lenet5"], "batch_sizes": [1, 8]})
    shards = [select_shard(cases, k, 5) for k in range(1, 6)]
    assert sorted(len(s) for s in shards) == [0, 0, 0, 1, 1]


@pytest.mark.parametrize("text, expected", [("2/4", (2, 4)), ("1/1", (1, 1)), (" 3 / 3 ", (3, 3))])
def test_parse_shard(text, expected):
    assert parse_shard(text) == expected


@pytest.mark.parametrize(
    "text, message",
    [
        ("0/4", "numbered from 1"),
        ("5/4", "between 1 and N (4)"),
        ("x", "expected K/N"),
        ("2", "expected K/N"),
        ("-1/4", "expected K/N"),
        ("1/0", "at least 1"),
        ("1.5/4", "expected K/N"),
        ("1/100000", "at most"),
    ],
)
def test_bad_shard_specs_are_user_errors(text, message):
    with pytest.raises(UserError, match="--shard") as info:
        parse_shard(text)
    assert message in str(info.value)


def test_apply_shard(classics):
    assert apply_shard(classics, None) == classics
    assert apply_shard(classics, "1/3") == select_shard(classics, 1, 3)
    with pytest.raises(UserError):
        apply_shard(classics, "4/3")


@pytest.mark.slow
def test_run_shards_then_merge_gives_the_whole_suite(tmp_path):
    """End to end through the CLI: two machines' shards, merged, are exactly the suite."""
    from cnnbench.cli import main
    from cnnbench.results.format import load_results
    from cnnbench.suite.schema import load_suite

    suite = tmp_path / "s.yaml"
    suite.write_text(
        "name: sharded\nmodels: [lenet5, mnist_cnn_bn]\nbatch_sizes: [1]\nthreads: 1\n"
        "measure: {warmup: 1, min_time_s: 0.05, max_time_s: 0.2, timeout_s: 120, repeats: 1}\n"
    )
    outs = []
    for k in (1, 2):
        out = tmp_path / f"shard{k}.json"
        assert main(["run", str(suite), "--shard", f"{k}/2", "--out", str(out), "--quiet"]) == 0
        assert load_results(out)["suite"]["shard"] == f"{k}/2"
        outs.append(out)
    shard_keys = [{c["key"] for c in load_results(o)["cases"]} for o in outs]
    assert shard_keys[0].isdisjoint(shard_keys[1])
    merged = tmp_path / "merged.json"
    assert main(["merge", *map(str, outs), "--out", str(merged)]) == 0
    assert {c["key"] for c in load_results(merged)["cases"]} == {c.key for c in load_suite(suite).cases}
