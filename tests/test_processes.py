"""Between-process statistics and mode detection (cnnbench/stats/processes.py) on synthetic figures."""

from __future__ import annotations

import math
import random

import pytest

from cnnbench.stats import processes as P
from cnnbench.core.spec import Measure
from cnnbench.core.units import fmt_change
from cnnbench.measure.timing import time_callable

ISSUE = [1.79, 1.81, 1.79, 1.79, 2.78, 2.76, 2.83, 2.69]  # the issue's per-process p5s, ms


def groups(values):
    return [sorted(values[i] for i in g) for g in P.detect_modes(values)]


def test_two_modes_are_found_and_named():
    assert groups(ISSUE) == [[1.79, 1.79, 1.79, 1.81], [2.69, 2.76, 2.78, 2.83]]
    ps = P.process_stats(ISSUE)
    assert ps.split and ps.warning == "processes split: 4 at 1.79 ms, 4 at 2.77 ms"
    assert [m.processes for m in ps.modes] == [(0, 1, 2, 3), (4, 5, 6, 7)]
    interleaved = [ISSUE[i] for i in (0, 4, 1, 5, 2, 6, 3, 7)]  # run order does not matter
    assert P.process_stats(interleaved).warning == ps.warning


def test_one_mode_with_an_outlier_is_one_mode():
    values = [1.00, 1.01, 1.02, 1.00, 1.03, 1.01, 1.02, 2.50]
    assert len(P.detect_modes(values)) == 1
    ps = P.process_stats(values)
    assert not ps.split and ps.warning is None and ps.max_ms == 2.5 and ps.cv > 0.3  # the spread shows it


def test_three_modes():
    values = [3.0, 1.0, 2.01, 1.01, 3.01, 2.0, 1.02, 2.02]
    assert groups(values) == [[1.0, 1.01, 1.02], [2.0, 2.01, 2.02], [3.0, 3.01]]
    assert P.process_stats(values).warning == "processes split: 3 at 1.01 ms, 3 at 2.01 ms, 2 at 3.00 ms"


def test_ties_never_split_but_tied_groups_far_apart_do():
    assert len(P.detect_modes([1.5] * 8)) == 1
    assert len(P.detect_modes([1.0, 1.0, 1.01, 1.0])) == 1  # 1% apart: under MIN_REL_GAP
    assert groups([1.0, 2.0, 1.0, 2.0, 1.0, 2.0]) == [[1.0, 1.0, 1.0], [2.0, 2.0, 2.0]]


def test_a_group_needs_two_processes_and_a_gap_wider_than_its_spread():
    assert len(P.detect_modes([1.0, 1.0, 2.0])) == 1  # 3 processes: never two modes
    assert len(P.detect_modes([1.0, 1.05, 2.0, 2.05])) == 2
    assert len(P.detect_modes([1.0, 1.4, 1.8, 2.2])) == 1  # evenly spread: gaps no wider than the groups


def test_no_modes_in_unimodal_noise_is_rare():
    rng = random.Random(19)
    for n, limit in ((8, 0.025), (20, 0.005)):
        warned = sum(len(P.detect_modes([rng.lognormvariate(0, 0.1) for _ in range(n)])) > 1 for _ in range(2000))
        assert warned / 2000 <= limit, (n, warned)


def test_between_process_interval_is_the_exact_order_statistic_interval():
    xs = [float(i) for i in range(1, 10)]  # 9 processes
    lo, hi, cov = P.median_ci_between(xs)
    # P(Bin(9, .5) <= 1) = 10/512: [x(2), x(8)] covers 1 - 20/512 = 96.1%; [x(3), x(7)] only 82%
    assert (lo, hi) == (2.0, 8.0) and cov == pytest.approx(1 - 20 / 512)
    lo, hi, cov = P.median_ci_between([3.0, 1.0, 2.0])
    assert (lo, hi) == (1.0, 3.0) and cov == pytest.approx(0.75)  # never claimed as 95%


def test_interval_from_processes_timed_with_a_fake_clock_is_wider_than_the_pooled_one():
    """Six processes of one case, each timed by the real loop on a fake clock: each is tight
    (1% jitter) but two run at 1.3 ms instead of 1.0: the pooled-sample interval of the median
    stays inside the majority, the between-process one spans the processes."""
    from cnnbench.stats import basic as stats
    from cnnbench.results.format import build_record
    from cnnbench.core.spec import CaseSpec

    runs = []
    for level_ms, seed in ((1.0, 1), (1.3, 2), (1.0, 3), (1.3, 4), (1.0, 5), (1.0, 6)):
        rng = random.Random(seed)
        clock = {"now": 0}

        def work(level=level_ms, rng=rng, clock=clock):
            clock["now"] += int(level * 1e6 * (1 + rng.uniform(-0.01, 0.01)))

        t = time_callable(work, measure=Measure(warmup=2, min_time_s=0.0, max_time_s=1.0, min_samples=40,
                                                max_samples=40, target_rel_ci=0.0), clock=lambda c=clock: c["now"])  # fmt: skip
        runs.append({"status": "ok", "error": None, **t.to_dict()})
    rec = build_record(CaseSpec(model="m", batch_size=1, input_size=(1, 8, 8), measure=Measure(repeats=6)), runs)
    block = rec["processes"]
    assert block["n"] == 6 and block["statistic"] == "median"
    assert [round(f, 2) for f in block["figures_ms"]] == [1.0, 1.3, 1.0, 1.3, 1.0, 1.0]
    pooled_lo, pooled_hi = stats.median_ci(rec["samples_ms"])
    assert block["ci_low_ms"] == pytest.approx(min(block["figures_ms"]))
    assert block["ci_high_ms"] == pytest.approx(max(block["figures_ms"]))
    assert block["ci_high_ms"] - block["ci_low_ms"] > 5 * (pooled_hi - pooled_lo)
    assert block["ci_coverage"] == pytest.approx(1 - 2 / 64)  # 6 processes: [min, max] covers 96.9%
    assert block["modes"][0]["n"] == 4 and block["modes"][1]["processes"] == [1, 3]
    assert "processes split: 4 at 1.00 ms, 2 at 1.30 ms" in rec["warnings"]


def test_a_single_process_has_no_block_and_no_warning():
    from cnnbench.results.format import build_record
    from cnnbench.core.spec import CaseSpec

    rec = build_record(CaseSpec(model="m", batch_size=1, input_size=(1, 8, 8)),
                       [{"status": "ok", "error": None, "samples_ms": [1.0, 1.1, 1.2]}])  # fmt: skip
    assert "processes" not in rec or rec["processes"] is None
    assert P.split_warning(rec) is None


def test_smallest_detectable_change_grows_with_the_spread_and_needs_enough_repeats():
    small = P.min_detectable_ratio(0.02, 9, 9, alpha=0.01)
    big = P.min_detectable_ratio(0.20, 9, 9, alpha=0.01)
    assert 1.0 < small < 1.05 < big
    assert P.min_detectable_ratio(0.02, 4, 4, alpha=0.01) is None  # 4 per side cannot reach 0.01
    # consistent with compare.repeats_needed: that many repeats resolve that change
    from cnnbench.compare import repeats_needed

    n = repeats_needed(0.05, math.log(P.min_detectable_ratio(0.05, 12, 12, alpha=0.01)), alpha=0.01)
    assert n in (12, 13)


def test_split_budget_keeps_the_case_about_as_long():
    m = Measure()
    changes = P.split_budget(m, 3)
    assert changes["repeats"] == 3
    assert changes["max_time_s"] * 3 == pytest.approx(m.max_time_s)
    assert changes["min_time_s"] * 3 == pytest.approx(m.min_time_s)


# -- the warning reaches the table, the report and compare's Markdown ---------------------------


def _runs(levels_ms, seed=0):
    rng = random.Random(seed)
    return [
        {"status": "ok", "error": None, "samples_ms": [lv * (1 + rng.uniform(0, 0.02)) for _ in range(30)],
         "warmup_ms": [lv], "first_call_ms": 2 * lv}
        for lv in levels_ms
    ]  # fmt: skip


def _results(levels_by_model, *, old_file=False):
    from cnnbench.results.format import build_record, new_results
    from cnnbench.core.spec import CaseSpec

    doc = new_results(environment={"hostname": "h", "machine_fingerprint": "fp", "torch": "2.14.1"}, suite={"name": "t"})
    for model, levels in levels_by_model.items():
        spec = CaseSpec(model=model, batch_size=8, input_size=(1, 28, 28), measure=Measure(repeats=len(levels)))
        rec = build_record(spec, _runs(levels, seed=len(model)))
        if old_file:  # written before the `processes` field and its warning existed
            rec.pop("processes", None)
            rec["warnings"] = [w for w in rec["warnings"] if not w.startswith("processes split")]
        doc["cases"].append(rec)
    return doc


MODAL = {"mnist_cnn": ISSUE, "lenet5": [0.5, 0.51, 0.5, 0.505, 0.5, 0.51, 0.5, 0.505]}


@pytest.mark.parametrize("old_file", [False, True])
def test_the_split_warning_reaches_the_terminal_table_and_its_notes(old_file):
    from rich.console import Console

    from cnnbench.report.console import render_notes, render_table, table_rows

    records = _results(MODAL, old_file=old_file)["cases"]
    rows = {r.case.model: r for r in table_rows(records)}
    assert any(w.startswith("processes split: 4 at 1.8") for w in rows["mnist_cnn"].case.warnings)
    assert not any("split" in w for w in rows["lenet5"].case.warnings)
    notes = render_notes(records)
    assert [n for n in notes if "processes split" in n] == [n for n in notes if n.startswith(f"⚠ {records[0]['key']}: processes split: 4 at 1.8")]
    console = Console(width=250, record=True)
    console.print(render_table(records))
    assert "⚠" in console.export_text()  # the row itself is flagged


def test_the_split_warning_reaches_the_report(tmp_path):
    import json

    from cnnbench.report import write_report

    path = tmp_path / "r.json"
    path.write_text(json.dumps(_results(MODAL, old_file=True)))
    write_report([path], tmp_path / "out", formats="md")
    md = (tmp_path / "out" / "report.md").read_text(encoding="utf-8")
    assert "processes split: 4 at 1.8" in md and md.count("processes split") >= 1


def test_compare_markdown_names_the_split_and_the_smallest_detectable_change():
    from cnnbench.compare import compare_results, render_markdown, to_json

    base = _results({"mnist_cnn": [1.79, 1.8, 1.81, 1.79, 1.8, 1.79, 1.81, 1.8], "lenet5": MODAL["lenet5"]})
    current = _results(MODAL)
    comp = compare_results(base, current, statistic="median")
    md = render_markdown(comp)
    assert "### Between-process spread and power (2)" in md
    section = md.split("### Between-process spread and power", 1)[1]
    assert "> ⚠️ `mnist_cnn" in section and "(current): processes split: 4 at 1.8" in section
    rows = {r.label.split()[0]: r for r in comp.rows}
    modal, calm = rows["mnist_cnn"], rows["lenet5"]
    # the modal side's spread makes the smallest detectable slowdown far larger than the calm case's
    assert modal.detectable_ratio > 1.3 and calm.detectable_ratio < 1.05
    assert fmt_change(calm.detectable_ratio) in section
    assert to_json(comp)["cases"][0]["current_process_ms"]  # the figures are in the JSON too
