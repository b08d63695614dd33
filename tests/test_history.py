"""The history store, change points over commits, baselines from history and the trend page.

Every store test runs on SQLite and on a real PostgreSQL server (a throwaway cluster started
here; skipped, with the reason, only when none can be started).
"""

from __future__ import annotations

import json
import multiprocessing
import re
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest

from cnnbench import cli
from cnnbench.stats import changepoints
from cnnbench.history.store import STORE_SCHEMA_VERSION, open_store
from cnnbench.results.format import write_results
from tests.history_fixtures import (
    commit_time,
    make_results,
    make_spec,
    postgres_cluster,
    reset_postgres,
    sha,
)

pytest.importorskip("sqlalchemy", reason="the history store needs SQLAlchemy (a cnnbench dependency)")

R18 = make_spec("resnet18")
R18_ORT = make_spec("resnet18", backend="onnxrt")
MOB = make_spec("mobilenet_v2")


@pytest.fixture(scope="module")
def pg_server():
    try:
        with postgres_cluster() as url:
            yield url
    except RuntimeError as exc:
        pytest.skip(f"no PostgreSQL server could be started: {exc}")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.slow)])  # a server: slow
def db(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store' / 'history.sqlite'}"
    url = request.getfixturevalue("pg_server")
    reset_postgres(url)
    return url


def _write(tmp_path: Path, name: str, results: dict) -> str:
    path = tmp_path / name
    write_results(path, results)
    return str(path)


def _main(argv: list[str], capsys) -> tuple[int, str, str]:
    capsys.readouterr()
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def _history_json(db: str, capsys, *args: str) -> dict:
    capsys.readouterr()
    code, out, err = _main(["history", "--db", db, "--json", *args], capsys)
    assert code == 0, err
    return json.loads(out)


# -- store ---------------------------------------------------------------------------------------


def test_store_takes_commit_branch_time_from_the_file_and_is_idempotent(db, tmp_path, capsys):
    path = _write(tmp_path, "run.json", make_results({R18: 1.0, MOB: 2.0}, commit=sha(1), time="2026-11-02T10:00:00Z"))
    code, out, err = _main(["store", path, "--db", db], capsys)
    assert code == 0, err
    assert "stored 2 case(s)" in out and sha(1)[:10] in out and "(main)" in out
    code, out, err = _main(["store", path, "--db", db], capsys)
    assert code == 0 and "already stored" in out and "nothing changed" in out
    with open_store(db, create=False) as store:
        assert store.count_runs() == 1
        rows = store.history(statistic="p5")
        assert {r.case_key for r in rows} == {R18.key, MOB.key}
        assert {(r.commit, r.branch, r.commit_time) for r in rows} == {(sha(1), "main", "2026-11-02T10:00:00+00:00")}
        assert all(len(r.figures) == 3 for r in rows)  # one figure per worker process
        assert store.schema_version() == STORE_SCHEMA_VERSION


def test_flags_override_git_and_a_file_without_a_commit_is_refused(db, tmp_path, capsys):
    bare = _write(tmp_path, "bare.json", make_results({R18: 1.0}, commit=None, branch=None))
    code, out, err = _main(["store", bare, "--db", db], capsys)
    assert code == 2 and "no git commit recorded" in err and "--commit" in err and err.count("\n") == 1
    code, out, err = _main(["store", bare, "--db", db, "--commit", "feedbeef", "--branch", "dev",
                            "--time", "2026-11-03T00:00:00+02:00"], capsys)  # fmt: skip
    assert code == 0, err
    with open_store(db, create=False) as store:
        [row] = store.history(statistic="median")
        assert (row.commit, row.branch, row.commit_time) == ("feedbeef", "dev", "2026-11-02T22:00:00+00:00")


def test_a_bad_file_among_several_stores_nothing(db, tmp_path, capsys):
    good = _write(tmp_path, "good.json", make_results({R18: 1.0}, commit=sha(1)))
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    code, _, err = _main(["store", good, str(bad), "--db", db], capsys)
    assert code == 2 and "bad.json" in err
    bare = _write(tmp_path, "bare.json", make_results({R18: 1.0}, commit=None))  # loads, but no commit
    code, _, err = _main(["store", good, bare, "--db", db], capsys)
    assert code == 2 and "bare.json: no git commit recorded" in err
    if db.startswith("sqlite"):
        assert not Path(db.removeprefix("sqlite:///")).exists()  # not even an empty store
    else:
        with pytest.raises(Exception, match="empty"):
            open_store(db, create=False)


def _store_worker(url: str, paths: list[str], barrier) -> None:
    with open_store(url, create=True) as store:
        from cnnbench.results.format import load_results

        loaded = [load_results(p) for p in paths]
        barrier.wait(timeout=60)  # both writers start storing at the same moment
        for path, results in zip(paths, loaded):
            store.store_results(results, source=path)


@pytest.mark.slow
def test_two_writers_at_once_lose_nothing(db, tmp_path):
    with open_store(db, create=True):
        pass  # the schema exists; the race is on the rows
    shared = [_write(tmp_path, f"shared{i}.json", make_results({R18: 1.0, MOB: 2.0}, commit=sha(100 + i))) for i in range(8)]
    own = [
        [_write(tmp_path, f"w{w}-{i}.json", make_results({R18: 1.0, MOB: 2.0}, commit=sha(10 * w + i), seed=w)) for i in range(8)]
        for w in (1, 2)
    ]
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(2)
    procs = [ctx.Process(target=_store_worker, args=(db, own[w] + shared, barrier)) for w in (0, 1)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0, 0]
    with open_store(db, create=False) as store:
        assert store.count_runs() == 8 + 8 + 8  # each writer's own files, the shared ones once
        rows = store.history(statistic="p5")
        assert len(rows) == 24 * 2
        assert len({(r.run_id, r.case_key) for r in rows}) == 48


# -- history and change points -------------------------------------------------------------------


def _store_history(db: str, tmp_path: Path, levels: dict, n: int, **kw) -> None:
    paths = []
    for i in range(n):
        cases = {spec: f(i) for spec, f in levels.items()}
        paths.append(_write(tmp_path, f"c{i}.json", make_results(cases, commit=sha(i), time=commit_time(i), seed=i, **kw)))
    assert cli.main(["store", *paths, "--db", db]) == 0


def test_history_finds_the_step_and_names_the_commits_around_it(db, tmp_path, capsys):
    _store_history(db, tmp_path, {R18: lambda i: 1.0 if i < 12 else 1.25, MOB: lambda i: 2.0}, 24)
    doc = _history_json(db, capsys)
    assert doc["statistic"] == "p5" and doc["format_version"] == 1
    by_key = {c["key"]: c for c in doc["cases"]}
    step, flat = by_key[R18.key], by_key[MOB.key]
    assert [p["commit"] for p in step["points"]] == [sha(i) for i in range(24)]
    assert step["verdict"] == "changed"
    [cp] = step["change_points"]
    assert (cp["before_commit"], cp["after_commit"], cp["direction"]) == (sha(11), sha(12), "slower")
    assert cp["ratio"] == pytest.approx(1.25, rel=0.03) and cp["ratio_low"] < cp["ratio"] < cp["ratio_high"]
    assert cp["confidence"] > 0.999
    assert flat["verdict"] == "stable" and flat["change_points"] == []
    for p in step["points"]:
        assert p["low_ms"] <= p["value_ms"] <= p["high_ms"] and p["processes"] == 3
    # A glob selects by model; the table names the range too.
    assert [c["key"] for c in _history_json(db, capsys, "mobilenet*")["cases"]] == [MOB.key]
    code, out, _ = _main(["history", "resnet*", "--db", db], capsys)
    assert code == 0 and re.search(rf"{sha(11)[:8]}\.\.{sha(12)[:8]}  \+2[45]\.\d\d% slower", out)


def test_same_commit_stored_twice_pools_its_processes(db, tmp_path, capsys):
    a = _write(tmp_path, "a.json", make_results({R18: 1.0}, commit=sha(1), seed=1))
    b = _write(tmp_path, "b.json", make_results({R18: 1.0}, commit=sha(1), seed=2))
    assert cli.main(["store", a, b, "--db", db]) == 0
    [case] = _history_json(db, capsys)["cases"]
    [point] = case["points"]
    assert (point["processes"], point["runs"]) == (6, 2)
    assert case["verdict"] == "insufficient data"


def test_noise_that_swamps_steps_is_unstable_not_changed():
    import random

    rng = random.Random(5)
    noisy = [1.0 * (1 + abs(rng.gauss(0, 0.4))) for _ in range(60)]
    assert changepoints.analyze(noisy).verdict == "unstable"
    quiet = [1.0 * (1 + rng.gauss(0, 0.01)) for _ in range(60)]
    assert changepoints.analyze(quiet).verdict == "stable"
    assert changepoints.analyze(quiet[:5]).verdict == "insufficient data"


def test_change_points_match_a_brute_force_energy_statistic():
    """The O(n^2) Q-hat equals the textbook formula evaluated directly."""
    import itertools

    import numpy as np

    rng = np.random.default_rng(3)
    z = np.r_[rng.normal(0, 1, 9), rng.normal(2, 1, 8)]

    def qhat(x, y):
        n, m = len(x), len(y)
        between = sum(abs(a - b) for a in x for b in y)
        within_x = sum(abs(a - b) for a, b in itertools.combinations(x, 2))
        within_y = sum(abs(a - b) for a, b in itertools.combinations(y, 2))
        q = 2 / (n + m) * between
        q -= 2 * m / ((n + m) * (n - 1)) * within_x if n > 1 else 0
        q -= 2 * n / ((n + m) * (m - 1)) * within_y if m > 1 else 0
        return q

    best = max(((qhat(z[:t], z[t:k]), t) for t in range(3, 15) for k in range(t + 3, 18)))
    tau, q = changepoints._best_split(z, 3)
    assert (tau, q) == (best[1], pytest.approx(best[0]))


def test_student_t_matches_scipy():
    """The pure-math t distribution of the change-point tests agrees with scipy's."""
    special = pytest.importorskip("scipy.special")
    for df in (1, 2, 5, 13, 60, 2000):
        for t in (0.0, 0.3, 1.96, 4.0, 15.0, 200.0):
            ref = 2 * special.stdtr(df, -t)
            assert changepoints.student_t_two_sided_p(t, df) == pytest.approx(ref, rel=1e-9, abs=1e-300)
        assert changepoints.student_t_quantile(0.975, df) == pytest.approx(special.stdtrit(df, 0.975), rel=1e-9)


def test_history_of_nothing_and_of_a_missing_store_is_one_line(db, tmp_path, capsys):
    code, _, err = _main(["history", "--db", db], capsys)
    assert code == 2 and err.count("\n") == 1
    if db.startswith("sqlite"):
        assert "no store at" in err and not Path(db.removeprefix("sqlite:///")).exists()
    _store_history(db, tmp_path, {R18: lambda i: 1.0}, 2)
    code, _, err = _main(["history", "vgg*", "--db", db], capsys)
    assert code == 2 and "no valid stored run matches 'vgg*'" in err


# -- baseline from history -----------------------------------------------------------------------


def test_compare_against_the_last_n_stored_runs(db, tmp_path, capsys):
    # Old runs were slow: a baseline that used them would hide the regression below.
    _store_history(db, tmp_path, {R18: lambda i: 1.6 if i < 3 else 1.0, MOB: lambda i: 2.0}, 6)
    slower = _write(tmp_path, "cur.json", make_results({R18: 1.3, MOB: 2.0}, commit="cafe", processes=5, seed=99))
    md = tmp_path / "summary.md"
    code, out, err = _main(["compare", "--baseline-db", db, "--branch", "main", "--window", "3", slower,
                            "--markdown", str(md)], capsys)  # fmt: skip
    assert code == 1, err
    assert "regressed" in out
    used = [sha(i)[:10] for i in (5, 4, 3)]
    assert f"commits {', '.join(used)}" in err  # names the commits it used, newest first
    assert sha(2)[:10] not in err
    text = md.read_text(encoding="utf-8")
    assert "history: last 3 run(s) of branch main" in text and used[0] in text
    same = _write(tmp_path, "same.json", make_results({R18: 1.0, MOB: 2.0}, commit="cafe", processes=5, seed=7))
    code, out, err = _main(["compare", "--baseline-db", db, "--branch", "main", "--window", "3", same], capsys)
    assert code == 0, err


def test_baseline_refuses_what_the_store_does_not_have(db, tmp_path, capsys):
    _store_history(db, tmp_path, {R18: lambda i: 1.0}, 2)
    other_suite = _write(tmp_path, "other.json", make_results({MOB: 2.0}, commit="cafe", suite="classics"))
    code, out, err = _main(["compare", "--baseline-db", db, "--branch", "main", other_suite], capsys)
    assert code == 2 and err.count("\n") == 1
    assert "none of" in err and "suite 'classics'" in err and "suites ci (2 runs)" in err
    code, _, err = _main(["compare", "--baseline-db", db, "--branch", "release", other_suite], capsys)
    assert code == 2 and "no run of branch 'release'" in err and "main (2)" in err
    elsewhere = _write(tmp_path, "elsewhere.json", make_results({R18: 1.0}, commit="cafe", machine="m-other"))
    code, _, err = _main(["compare", "--baseline-db", db, elsewhere], capsys)
    assert code == 2 and "no run stored from this machine (fingerprint m-other)" in err
    code, _, err = _main(["compare", "--baseline-db", db, other_suite, other_suite], capsys)
    assert code == 2 and "give only CURRENT" in err


# -- bad stores ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url, message",
    [
        ("mysql://u@localhost/db", "unknown database kind 'mysql'"),
        ("not a url", "is not a database URL"),
        ("sqlite://", "names no file"),
    ],
)
def test_unknown_urls_are_one_line(url, message, tmp_path, capsys):
    path = _write(tmp_path, "run.json", make_results({R18: 1.0}, commit=sha(1)))
    code, _, err = _main(["store", path, "--db", url], capsys)
    assert code == 2 and message in err and err.count("\n") == 1


def test_an_unreachable_server_is_one_line(tmp_path, capsys):
    from tests.history_fixtures import _free_port

    path = _write(tmp_path, "run.json", make_results({R18: 1.0}, commit=sha(1)))
    url = f"postgresql://bench:secret@127.0.0.1:{_free_port()}/bench"
    code, _, err = _main(["store", path, "--db", url], capsys)
    assert code == 2 and "cannot reach the store" in err and err.count("\n") == 1
    assert "secret" not in err


def test_a_corrupted_sqlite_file_is_refused_and_left_alone(tmp_path, capsys):
    path = _write(tmp_path, "run.json", make_results({R18: 1.0}, commit=sha(1)))
    bad = tmp_path / "history.sqlite"
    bad.write_bytes(b"this is not a database" * 100)
    before = bad.read_bytes()
    for argv in (["store", path], ["history"]):
        code, _, err = _main([*argv, "--db", f"sqlite:///{bad}"], capsys)
        assert code == 2 and "not an SQLite database" in err and err.count("\n") == 1
    # The right magic but garbage after it: SQLite's own error, still one line.
    good = tmp_path / "good.sqlite"
    assert cli.main(["store", path, "--db", f"sqlite:///{good}"]) == 0
    capsys.readouterr()
    data = bytearray(good.read_bytes())
    data[100:4096] = b"\xff" * (4096 - 100)
    good.write_bytes(bytes(data))
    code, _, err = _main(["history", "--db", f"sqlite:///{good}"], capsys)
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert bad.read_bytes() == before


def test_a_store_of_a_newer_schema_is_refused(db, tmp_path, capsys):
    path = _write(tmp_path, "run.json", make_results({R18: 1.0}, commit=sha(1)))
    assert cli.main(["store", path, "--db", db]) == 0
    with open_store(db, create=False) as store:
        import sqlalchemy as sa

        with store.engine.begin() as conn:
            conn.execute(sa.text("INSERT INTO schema_version (version, applied_at) VALUES (99, 'later')"))
    capsys.readouterr()
    other = _write(tmp_path, "other.json", make_results({R18: 1.0}, commit=sha(2)))
    for argv in (["store", other], ["history"]):
        code, _, err = _main([*argv, "--db", db], capsys)
        assert code == 2 and "store schema 99 is newer than this cnnbench knows" in err and err.count("\n") == 1
    import sqlalchemy as sa

    engine = sa.create_engine(db.replace("postgresql://", "postgresql+psycopg://", 1), poolclass=sa.pool.NullPool)
    with engine.connect() as conn:  # nothing was written by the refused store
        assert conn.execute(sa.text("SELECT count(*) FROM runs")).scalar() == 1
    engine.dispose()


def test_run_store_failure_keeps_the_results_file(tmp_path, capsys):
    """`run --store` stores after the file is written; a failing store is one line, exit 2."""
    import argparse

    from cnnbench.commands.store import store_after_run

    path = _write(tmp_path, "run.json", make_results({R18: 1.0}, commit=sha(1)))
    args = argparse.Namespace(store=True, db="mysql://nowhere/db")
    assert store_after_run(args, Path(path), 0) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: not stored:") and f"the results file {path} is kept" in err
    assert Path(path).exists()
    url = f"sqlite:///{tmp_path / 'h.sqlite'}"
    assert store_after_run(argparse.Namespace(store=True, db=url), Path(path), 1) == 1  # the run's own code
    assert "stored 1 case(s)" in capsys.readouterr().out
    assert store_after_run(argparse.Namespace(store=False, db=None), Path(path), 0) == 0


# -- the trend page ------------------------------------------------------------------------------


@pytest.fixture
def trend_page(tmp_path):
    db = f"sqlite:///{tmp_path / 'h.sqlite'}"
    _store_history(db, tmp_path, {R18: lambda i: 1.0 if i < 10 else 1.3, R18_ORT: lambda i: 0.8, MOB: lambda i: 2.0}, 20)
    assert cli.main(["history", "--db", db, "--html", str(tmp_path / "trends")]) == 0
    return tmp_path / "trends" / "index.html"


def test_trend_page_has_a_chart_per_case_grouped_by_model(trend_page):
    page = trend_page.read_text(encoding="utf-8")
    assert page.count("<svg") == 3 and page.count('<section class="model">') == 2
    assert page.index("<h2>mobilenet_v2</h2>") < page.index("<h2>resnet18</h2>")
    assert 'data-backend="onnxrt"' in page and '<option value="onnxrt">' in page and '<option value="cpu">' in page
    assert re.search(rf"<title>{sha(9)[:10]}\.\.{sha(10)[:10]}: \+(29\.9[5-9]|30\.0[0-4])% slower", page)  # +30.0% to one decimal
    assert page.count('class="cp-slower"') == 1
    assert f"<title>{sha(0)} (main, " in page  # every point names its commit
    assert not re.search(r'(src|href)="(?!#)', page)  # self-contained


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium)")
def test_trend_page_renders_and_filters_in_headless_chromium(trend_page, tmp_path):
    script = """<script>
window.addEventListener("load", function () {
  var figs = document.querySelectorAll("figure.trend");
  var drawn = Array.from(document.querySelectorAll("svg")).filter(function (s) {
    return s.getBoundingClientRect().width > 0 && s.querySelectorAll("circle").length > 0; }).length;
  var sel = document.getElementById("f-backend"); sel.value = "onnxrt"; sel.dispatchEvent(new Event("change"));
  var visible = Array.from(figs).filter(function (f) { return f.offsetParent !== null; }).length;
  var ext = performance.getEntriesByType("resource").length;
  document.documentElement.setAttribute("data-check",
    "figures=" + figs.length + ";drawn=" + drawn + ";onnxrt=" + visible + ";external=" + ext);
});
</script>"""
    probe = tmp_path / "probe.html"
    probe.write_text(trend_page.read_text(encoding="utf-8").replace("</body>", script + "</body>"), encoding="utf-8")
    cmd = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={tmp_path / 'chromium-profile'}", "--virtual-time-budget=10000",
        "--dump-dom", probe.as_uri(),
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    m = re.search(r'data-check="figures=(\d+);drawn=(\d+);onnxrt=(\d+);external=(\d+)"', proc.stdout)
    assert m, f"no verdict from chromium (exit {proc.returncode}): {proc.stderr[-2000:]}"
    assert tuple(map(int, m.groups())) == (3, 3, 1, 0)


def test_the_store_keeps_every_statistic_compare_knows():
    """A statistic added to compare needs a store migration (a figures column) to be in history."""
    from cnnbench.compare import STATISTICS
    from cnnbench.history.store import FIGURE_STATISTICS

    assert set(FIGURE_STATISTICS) == set(STATISTICS)


def test_store_file_is_a_real_sqlite_database(tmp_path):
    """The embedded store is a plain SQLite file any tool can open."""
    path = _write(tmp_path, "run.json", make_results({R18: 1.0}, commit=sha(1)))
    db = tmp_path / "h.sqlite"
    assert cli.main(["store", path, "--db", f"sqlite:///{db}"]) == 0
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM measurements").fetchone() == (1,)
        assert conn.execute("SELECT max(version) FROM schema_version").fetchone() == (STORE_SCHEMA_VERSION,)


RUN_SUITE = """
name: stored
models: [lenet5]
batch_sizes: [1]
backends: [eager]
threads: 1
measure: {warmup: 1, min_time_s: 0.1, max_time_s: 0.2, timeout_s: 60, repeats: 2}
"""


def test_run_store_writes_the_results_file_then_stores_it(tmp_path, monkeypatch, capsys):
    """`run --store` end to end (a stand-in worker: no process is started): the file is
    written, then stored under the commit of the checkout it ran in; an unreachable store
    fails with one line and exit 2 while the results file stays."""
    from cnnbench.run import runner
    from cnnbench.core.environment import git_commit
    from cnnbench.results.format import load_results
    from tests.history_fixtures import _free_port

    def worker(spec, **kwargs):
        return {"status": "ok", "error": None, "samples_ms": [1.0, 1.1] * 10, "warmup_ms": [2.0], "first_call_ms": 3.0}

    monkeypatch.setattr(runner, "run_worker", worker)
    suite = tmp_path / "s.yaml"
    suite.write_text(RUN_SUITE, encoding="utf-8")
    db = f"sqlite:///{tmp_path / 'h.sqlite'}"
    out = tmp_path / "r.json"
    code, stdout, err = _main(["run", str(suite), "--out", str(out), "--quiet", "--no-peak", "--store", "--db", db], capsys)
    assert code == 0, err
    assert stdout.index(f"results: {out}") < stdout.index("stored 1 case(s)")
    git = git_commit()
    with open_store(db, create=False) as store:
        [row] = store.history(statistic="p5")
    assert row.commit == (git["commit"] or row.commit) and len(row.figures) == 2
    unreachable = f"postgresql://bench@127.0.0.1:{_free_port()}/bench"
    out2 = tmp_path / "r2.json"
    code, stdout, err = _main(["run", str(suite), "--out", str(out2), "--quiet", "--no-peak", "--db", unreachable], capsys)
    assert code == 2 and err.count("\n") == 1 and "cannot reach the store" in err and "is kept" in err
    assert len(load_results(out2)["cases"]) == 1
