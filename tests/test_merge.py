"""Tests for `bench.py merge`: shard results joined, duplicates refused, environments kept."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cnnbench.cli import main
from cnnbench.run.merge import merge_results
from cnnbench.core.errors import UserError
from cnnbench.results.schema import SCHEMA_VERSION
from cnnbench.results.format import build_record, load_results, new_results, write_results
from cnnbench.run.shard import format_shard, select_shard
from cnnbench.suite.schema import expand

CASES = expand({"models": ["lenet5", "mnist_cnn", "mnist_cnn_bn"], "batch_sizes": [1, 8], "threads": 1})


def _env(host: str, fingerprint: str, torch: str = "2.14.1") -> dict:
    return {"hostname": host, "machine_fingerprint": fingerprint, "cpu_model": "Test CPU", "torch": torch, "python": "3.11.9"}


def _record(spec, base_ms: float) -> dict:
    samples = [base_ms * (1 + 0.01 * (i % 5)) for i in range(20)]
    run = {
        "status": "ok",
        "error": None,
        "samples_ms": samples,
        "warmup_ms": [base_ms * 2],
        "first_call_ms": base_ms * 5,
        "block_size": 1,
        "stop_reason": "converged",
        "params": 1000,
        "gmacs": 0.001 * spec.batch_size,
        "memory": {"peak_rss_delta_bytes": 1_000_000},
    }
    return build_record(spec, [run])


def _shard_file(path: Path, k: int, n: int, env: dict, *, sha: str = "a" * 64, cases=CASES) -> Path:
    results = new_results(
        environment=env,
        suite={"name": "tiny", "path": "suites/tiny.yaml", "sha256": sha, "shard": format_shard(k, n)},
    )
    for i, spec in enumerate(select_shard(cases, k, n)):
        results["cases"].append(_record(spec, 1.0 + i))
    write_results(path, results)
    return path


@pytest.fixture
def shards(tmp_path):
    return [
        _shard_file(tmp_path / "shard-1.json", 1, 3, _env("host-a", "fp-a")),
        _shard_file(tmp_path / "shard-2.json", 2, 3, _env("host-b", "fp-b")),
        _shard_file(tmp_path / "shard-3.json", 3, 3, _env("host-c", "fp-a")),
    ]


def test_merge_joins_shards_into_a_loadable_results_file(tmp_path, shards, capsys):
    out = tmp_path / "merged.json"
    assert main(["merge", *map(str, shards), "--out", str(out)]) == 0
    merged = load_results(out)
    assert merged["schema_version"] == SCHEMA_VERSION
    assert sorted(r["key"] for r in merged["cases"]) == sorted(c.key for c in CASES)
    assert merged["suite"]["shards"] == ["1/3", "2/3", "3/3"]
    assert "shard" not in merged["suite"]
    assert merged["suite"]["sha256"] == "a" * 64
    assert "6 cases from 3 files" in capsys.readouterr().out


def test_merge_keeps_each_cases_environment(tmp_path, shards):
    out = tmp_path / "merged.json"
    main(["merge", *map(str, shards), "--out", str(out)])
    merged = load_results(out)
    assert [e["hostname"] for e in merged["environments"]] == ["host-a", "host-b", "host-c"]
    assert [e["source"] for e in merged["environments"]] == ["shard-1.json", "shard-2.json", "shard-3.json"]
    for name in ("shard-1.json", "shard-2.json", "shard-3.json"):
        original = load_results(out.parent / name)
        for rec in original["cases"]:
            on = next(r for r in merged["cases"] if r["key"] == rec["key"])["measured_on"]
            assert on["source"] == name
            assert on["hostname"] == original["environment"]["hostname"]
            assert on["machine_fingerprint"] == original["environment"]["machine_fingerprint"]
            assert merged["environments"][on["environment"]]["hostname"] == on["hostname"]
    # the summary keeps what all agree on and nulls what differs
    top = merged["environment"]
    assert top["torch"] == "2.14.1" and top["cpu_model"] == "Test CPU"
    assert top["hostname"] is None and top["machine_fingerprint"] is None
    assert top["merged"]["differing_fields"] == ["hostname", "machine_fingerprint"]


def test_merge_refuses_duplicate_keys_naming_the_key_and_both_files(tmp_path, shards):
    again = _shard_file(tmp_path / "shard-2-rerun.json", 2, 3, _env("host-d", "fp-d"))
    with pytest.raises(UserError) as info:
        merge_results([(str(p), load_results(p)) for p in [*shards, again]])
    message = str(info.value)
    dup = load_results(again)["cases"][0]["key"]
    assert repr(dup) in message and str(shards[1]) in message and str(again) in message
    # through the CLI: exit code 2, nothing written
    out = tmp_path / "merged.json"
    assert main(["merge", *map(str, shards), str(again), "--out", str(out), "--force"]) == 2
    assert not out.exists()


def test_merge_refuses_files_from_different_suites_unless_forced(tmp_path, capsys):
    a = _shard_file(tmp_path / "a.json", 1, 2, _env("host-a", "fp-a"), sha="a" * 64)
    b = _shard_file(tmp_path / "b.json", 2, 2, _env("host-b", "fp-a"), sha="b" * 64)
    out = tmp_path / "merged.json"
    assert main(["merge", str(a), str(b), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "different suite" in err and "--force" in err and "bbbbbbbbbbbb" in err
    assert main(["merge", str(a), str(b), "--out", str(out), "--force"]) == 0
    merged = load_results(out)
    assert [s["sha256"][:1] for s in merged["suite"]["merged_suites"]] == ["a", "b"]


def test_merge_refuses_shards_of_different_splits_and_missing_shards_unless_allowed(tmp_path, capsys):
    a = _shard_file(tmp_path / "a.json", 1, 2, _env("h", "f"))
    b = _shard_file(tmp_path / "b.json", 3, 3, _env("h", "f"))
    with pytest.raises(UserError, match="different splits"):
        merge_results([(str(a), load_results(a)), (str(b), load_results(b))])
    out = tmp_path / "merged.json"
    assert main(["merge", str(a), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "shards missing: 2/2" in err and "--allow-missing" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()
    assert main(["merge", str(a), "--out", str(out), "--allow-missing"]) == 0
    assert "shards missing: 2/2" in capsys.readouterr().err
    assert load_results(out)["suite"]["shards"] == ["1/2"]


def test_merging_merged_files_keeps_where_each_case_was_measured(tmp_path, shards):
    first = tmp_path / "m12.json"
    assert main(["merge", str(shards[0]), str(shards[1]), "--out", str(first), "--allow-missing"]) == 0
    final = tmp_path / "m123.json"
    assert main(["merge", str(first), str(shards[2]), "--out", str(final)]) == 0
    merged = load_results(final)
    assert merged["suite"]["shards"] == ["1/3", "2/3", "3/3"]
    assert [e["source"] for e in merged["environments"]] == ["shard-1.json", "shard-2.json", "shard-3.json"]
    for rec in merged["cases"]:
        env = merged["environments"][rec["measured_on"]["environment"]]
        assert env["source"] == rec["measured_on"]["source"]
        assert env["hostname"] == rec["measured_on"]["hostname"]


def test_the_same_file_twice_is_refused(tmp_path, shards):
    out = tmp_path / "merged.json"
    assert main(["merge", str(shards[0]), str(shards[0]), "--out", str(out)]) == 2


def test_merge_never_overwrites_a_file_without_replace_nor_one_of_its_inputs(tmp_path, shards, capsys):
    out = tmp_path / "merged.json"
    out.write_text("my notes, not results")
    assert main(["merge", *map(str, shards), "--out", str(out)]) == 2
    assert "exists; pass --replace" in capsys.readouterr().err
    assert out.read_text() == "my notes, not results"
    assert main(["merge", *map(str, shards), "--out", str(out), "--replace"]) == 0
    assert len(load_results(out)["cases"]) == len(CASES)
    before = shards[0].read_bytes()
    assert main(["merge", *map(str, shards), "--out", str(shards[0]), "--replace"]) == 2
    assert "--out is one of the files to merge" in capsys.readouterr().err
    assert shards[0].read_bytes() == before
    assert not list(tmp_path.glob("*.lock"))


def test_compare_and_report_accept_a_merged_file(tmp_path, shards):
    out = tmp_path / "merged.json"
    main(["merge", *map(str, shards), "--out", str(out)])
    json_out = tmp_path / "cmp.json"
    assert main(["compare", str(out), str(out), "--json", str(json_out)]) == 0
    assert json.loads(json_out.read_text())
    assert main(["report", str(out), "--out", str(tmp_path / "report"), "--format", "md,csv"]) == 0
    assert (tmp_path / "report" / "report.md").exists()


def test_merge_keeps_the_shard_source_all_inputs_agree_on(tmp_path):
    paths = []
    for k, source in ((1, "slurm"), (2, "slurm")):
        p = _shard_file(tmp_path / f"s{k}.json", k, 2, _env("h", "f"))
        data = json.loads(p.read_text())
        data["suite"]["shard_source"] = source
        p.write_text(json.dumps(data))
        paths.append(p)
    merged, _ = merge_results([(str(p), load_results(p)) for p in paths])
    assert merged["suite"]["shard_source"] == "slurm" and merged["suite"]["shard_sources"] == ["slurm"]
    data = json.loads(paths[1].read_text())
    data["suite"]["shard_source"] = "cli"
    paths[1].write_text(json.dumps(data))
    merged, _ = merge_results([(str(p), load_results(p)) for p in paths])
    assert merged["suite"]["shard_source"] is None and merged["suite"]["shard_sources"] == ["cli", "slurm"]
