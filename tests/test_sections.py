"""Every section of a case record is typed at load, and integers from the outside are bounded.

Matrix style (tests/test_records.py): each bad section value goes through each command that reads
a results file (show, report, compare, merge): exit 2, one line on stderr naming the case and
the field, no traceback, nothing written, nothing hidden on the terminal. Sections that are
well typed but sparse (only what their writer must write) are read without a traceback.
The shard matrix does the same for every place a shard number comes from.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from cnnbench import cli
from cnnbench.core.errors import UserError
from cnnbench.core.terminal import is_clean
from cnnbench.run.shard import parse_shard, shard_from_environment
from tests.history_fixtures import make_results, make_spec, sha

R18 = make_spec("resnet18")
HUGE = "9" * 5000  # past Python's integer-string limit: int() of it raises


def _main(argv: list[str], capsys) -> tuple[int, str, str]:
    capsys.readouterr()
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def _write(path: Path, data: dict) -> str:
    path.write_text(json.dumps(data))
    return str(path)


def _commands(path: str, tmp_path: Path) -> dict[str, list[str]]:
    other = _write(tmp_path / "other.json", make_results({make_spec("vgg11"): 1.0}, commit=sha(2)))
    return {
        "show": ["show", "--wide", path],
        "report": ["report", path, "--out", str(tmp_path / "report")],
        "compare": ["compare", path, path],
        "merge": ["merge", path, other, "--out", str(tmp_path / "merged.json"), "--force", "--allow-missing"],
    }


# A bad value per declared field of each newer section: wrong type, out of range, too big.
BAD_SECTIONS: dict[str, tuple[str, Any]] = {
    "energy not a mapping": ("energy", "lots"),
    "energy joules a string": ("energy", {"available": True, "joules": "12"}),
    "energy negative": ("energy", {"available": True, "j_per_image": -1.0}),
    "energy available not a bool": ("energy", {"available": "yes"}),
    "energy reason a list": ("energy", {"available": False, "reason": ["a"]}),
    "device_state reasons not a list": ("device_state", {"throttled": True, "throttle_reasons": 3}),
    "device_state gpu a list": ("device_state", {"gpu": [1, 2]}),
    "device_state processes of numbers": ("device_state", {"other_gpu_processes": [1]}),
    "transfer share above one": ("transfer", {"applicable": True, "share": {"h2d": 7.0}}),
    "transfer part not a summary": ("transfer", {"applicable": True, "h2d_ms": 3}),
    "transfer calls negative": ("transfer", {"applicable": True, "calls": -4}),
    "processes figures of strings": ("processes", {"n": 2, "figures_ms": ["a", "b"]}),
    "processes coverage above one": ("processes", {"n": 2, "ci_coverage": 3.0}),
    "processes modes a mapping": ("processes", {"n": 2, "modes": {"a": 1}}),
    "published accuracy implausible": ("published", {"acc@1": 1e300, "dataset": "ImageNet-1K"}),
    "published accuracy a string": ("published", {"acc@1": "76.1"}),
    "published dataset a mapping": ("published", {"acc@1": 70.0, "dataset": {"x": 1}}),
    "calibration not a mapping": ("backend_info", {"calibration": "minmax"}),
    "calibration label a number": ("backend_info", {"calibration": {"label": 3}}),
    "parity reason a mapping": ("parity", {"ok": False, "reason": {"a": 1}}),
    "parity reason too long": ("parity", {"ok": False, "reason": "x" * 100_000}),
    "measured_on index a string": ("measured_on", {"environment": "0"}),
    "measured_on index negative": ("measured_on", {"environment": -1}),
    "measured_on hostname a list": ("measured_on", {"hostname": ["h"]}),
    "a section too big": ("energy", {f"k{i}": i for i in range(1000)}),
}  # fmt: skip


@pytest.mark.parametrize("command", ["show", "report", "compare", "merge"])
@pytest.mark.parametrize("bad", sorted(BAD_SECTIONS))
def test_a_bad_section_is_one_line_naming_the_case_and_field(bad, command, tmp_path, capsys):
    field, value = BAD_SECTIONS[bad]
    data = make_results({R18: 1.0}, commit=sha(1))
    data["cases"][0][field] = value
    path = _write(tmp_path / "bad.json", data)
    before = sorted(p.name for p in tmp_path.iterdir())
    code, out, err = _main(_commands(path, tmp_path)[command], capsys)
    assert code == 2, (code, out, err)
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "resnet18" in err and field in err, err
    assert is_clean(out) and is_clean(err)
    after = sorted(p.name for p in tmp_path.iterdir() if p.name != "other.json")
    assert after == before  # no report folder, no merged file


# Sections as sparse as their writers may leave them: read by every command without a traceback.
SPARSE: dict[str, Any] = {
    "energy": {"available": True},
    "device_state": {"throttled": True},
    "transfer": {"applicable": True},
    "processes": {"n": 2},
    "published": {"acc@1": 70.0},
    "backend_info": {"calibration": {}},
    "parity": {"ok": True},
    "measured_on": {},
}


@pytest.mark.parametrize("command", ["show", "report", "compare", "merge"])
def test_sparse_sections_read_without_a_traceback(command, tmp_path, capsys):
    data = make_results({R18: 1.0}, commit=sha(1))
    data["cases"][0].update(copy.deepcopy(SPARSE))
    path = _write(tmp_path / "sparse.json", data)
    code, out, err = _main(_commands(path, tmp_path)[command], capsys)
    assert code in (0, 1), (code, out, err)
    assert "Traceback" not in err and is_clean(out) and is_clean(err)


def test_merge_of_a_merged_file_whose_index_names_no_environment(tmp_path, capsys):
    data = make_results({R18: 1.0}, commit=sha(1))
    data["environments"] = [dict(data["environment"])]
    data["cases"][0]["measured_on"] = {"environment": 7, "hostname": "h"}
    path = _write(tmp_path / "merged_in.json", data)
    code, out, err = _main(_commands(path, tmp_path)["merge"], capsys)
    assert code == 2 and err.count("\n") == 1 and "measured_on.environment" in err, err


# -- class 4: integers from the outside ----------------------------------------------------------------

SHARD_TEXTS = [HUGE + "/" + HUGE, "1/" + HUGE, HUGE + "/1", "1/10000000000", "٣/٤", "1/0", "-1/2", "1/2/3", "\x1b[2J1/2"]


@pytest.mark.parametrize("text", SHARD_TEXTS)
def test_a_shard_from_the_command_line_is_bounded(text):
    with pytest.raises(UserError) as err:
        parse_shard(text)
    assert len(str(err.value)) < 300


SHARD_ENVS = {
    "CNNBENCH_SHARD": {"CNNBENCH_SHARD": "1/" + HUGE},
    "slurm task id": {"SLURM_ARRAY_TASK_ID": HUGE, "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_COUNT": "4"},
    "slurm count": {"SLURM_ARRAY_TASK_ID": "0", "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_COUNT": HUGE},
    "slurm min": {"SLURM_ARRAY_TASK_ID": "0", "SLURM_ARRAY_TASK_MIN": "-" + HUGE, "SLURM_ARRAY_TASK_COUNT": "4"},
    "kubernetes index": {"JOB_COMPLETION_INDEX": HUGE, "CNNBENCH_SHARD_COUNT": "4"},
    "kubernetes count": {"JOB_COMPLETION_INDEX": "0", "CNNBENCH_SHARD_COUNT": HUGE},
    "ci": {"SHARD_NUMBER": "1", "NUM_TEST_SHARDS": HUGE},
    "unicode digits": {"SHARD_NUMBER": "١", "NUM_TEST_SHARDS": "٤"},
}


@pytest.mark.parametrize("source", sorted(SHARD_ENVS))
def test_a_shard_from_the_environment_is_bounded(source):
    with pytest.raises(UserError) as err:
        shard_from_environment(SHARD_ENVS[source])
    assert len(str(err.value)) < 300


@pytest.mark.parametrize("source", ["CNNBENCH_SHARD", "kubernetes count"])
def test_run_shard_auto_with_a_huge_variable_is_one_line(source, tmp_path, capsys, monkeypatch):
    for name in ("CNNBENCH_SHARD", "SLURM_ARRAY_TASK_ID", "JOB_COMPLETION_INDEX", "SHARD_NUMBER"):
        monkeypatch.delenv(name, raising=False)
    for name, value in SHARD_ENVS[source].items():
        monkeypatch.setenv(name, value)
    suite = tmp_path / "s.yaml"
    suite.write_text("name: s\nmodels: [lenet5]\nbatch_sizes: [1]\nbackends: [eager]\n")
    code, out, err = _main(["run", str(suite), "--shard", "auto", "--out", str(tmp_path / "r.json")], capsys)
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, (out, err)
    assert not (tmp_path / "r.json").exists()


@pytest.mark.parametrize("shard", [HUGE + "/4", "1/" + HUGE])
def test_merge_of_a_file_recording_a_huge_shard_is_one_line(shard, tmp_path, capsys):
    data = make_results({R18: 1.0}, commit=sha(1))
    data["suite"]["shard"] = shard
    path = _write(tmp_path / "a.json", data)
    code, out, err = _main(_commands(path, tmp_path)["merge"], capsys)
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, (out, err)
    assert not (tmp_path / "merged.json").exists()
