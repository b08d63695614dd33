"""Every number and duration option refuses NaN, infinities, negatives and zero (exit 2, no
traceback): `--timeout nan` used to be accepted, and a hung worker was then never killed."""

from __future__ import annotations

import pytest

from cnnbench.cli import main

OPTIONS = [
    (["run", "suites/smoke.yaml"], "--timeout"),
    (["run", "suites/smoke.yaml"], "--max-time"),
    (["run", "suites/smoke.yaml"], "--repeats"),
    (["ab", "suites/smoke.yaml"], "--repeats"),
    (["ab", "suites/smoke.yaml"], "--alpha"),
    (["compare", "a.json", "b.json"], "--alpha"),
    (["accuracy", "lenet5", "--dataset", "digits"], "--timeout"),
    (["accuracy", "lenet5", "--dataset", "digits"], "--batch-size"),
    (["accuracy", "lenet5", "--dataset", "digits"], "--limit"),
    (["accuracy", "lenet5", "--dataset", "digits"], "--threads"),
]


@pytest.mark.parametrize(("command", "option"), OPTIONS, ids=[f"{c[0]}{o}" for c, o in OPTIONS])
@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "-1", "0", "1e999", "ten"])
def test_bad_numbers_are_refused_by_every_numeric_option(capsys, command, option, value):
    try:
        code = main([*command, f"{option}={value}"])
    except SystemExit as exc:  # argparse's type check: usage line + "argument --x: ..."
        code = exc.code
        assert f"argument {option}" in capsys.readouterr().err
    else:  # checked after parsing (--alpha, with the suite's value): one line
        err = capsys.readouterr().err
        assert option in err and len(err.strip().splitlines()) == 1
    assert code == 2


def test_good_numbers_still_parse():
    from cnnbench.core.options import positive_float, positive_int, probability

    assert positive_float("2.5") == 2.5 and positive_int("8") == 8 and probability("0.01") == 0.01
