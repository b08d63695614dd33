"""The timed loop's logic, with a fake clock (pyperf style): no real timing, no flakes."""

from __future__ import annotations

import pytest

from cnnbench.core.spec import Measure
from cnnbench.measure.timing import MAX_BLOCK_SIZE, time_callable

MS = 1_000_000  # ns


class FakeWork:
    """A callable whose n-th call 'takes' durations[n] ns on a fake clock (the last one repeats)."""

    def __init__(self, durations_ns: list[int]):
        self.durations = durations_ns
        self.calls = 0
        self.now = 0
        self.events: list[str] = []

    def clock(self) -> int:
        self.events.append("clock")
        return self.now

    def __call__(self) -> None:
        self.events.append("call")
        self.now += self.durations[min(self.calls, len(self.durations) - 1)]
        self.calls += 1

    def sync(self) -> None:
        self.events.append("sync")


def quick(**kw) -> Measure:
    base = dict(warmup=3, min_time_s=0.0, max_time_s=10.0, min_samples=5, max_samples=50, target_rel_ci=0.01, block_min_ms=1.0)
    base.update(kw)
    return Measure(**base)


def test_first_call_and_warmup_are_excluded_from_samples():
    # First call 500 ms (a compile), calibration + 3 warmup calls 20 ms, then steady 10 ms.
    work = FakeWork([500 * MS] + [20 * MS] * 4 + [10 * MS])
    t = time_callable(work, measure=quick(), clock=work.clock)
    assert t.first_call_ms == pytest.approx(500.0)
    assert t.warmup_ms == pytest.approx([20.0] * 4)  # 1 calibration + 3 warmup, stored apart
    assert t.samples_ms and all(s == pytest.approx(10.0) for s in t.samples_ms)
    assert t.block_size == 1


def test_short_calls_are_timed_in_calibrated_blocks():
    work = FakeWork([50_000])  # 0.05 ms per call: needs 20 calls per 1 ms block
    t = time_callable(work, measure=quick(block_min_ms=1.0), clock=work.clock)
    assert t.block_size == 20
    assert all(s == pytest.approx(0.05) for s in t.samples_ms)  # per call, not per block
    # every sample block really ran block_size calls
    expected_calls = 1 + 1 + 20 + 3 * 20 + len(t.samples_ms) * 20
    assert work.calls == expected_calls


def test_calibration_doubles_when_the_estimate_was_too_optimistic():
    # The calibration call takes 0.1 ms, so the estimate is a block of 10; but calls then get
    # faster (0.05 ms), a block of 10 lasts only 0.5 ms, and the block must grow to 20.
    work = FakeWork([1 * MS, 100_000] + [50_000])
    t = time_callable(work, measure=quick(), clock=work.clock)
    assert t.block_size == 20
    assert t.block_size * t.samples_ms[0] >= 1.0


def test_block_size_is_capped():
    work = FakeWork([1])  # 1 ns per call
    t = time_callable(work, measure=quick(max_samples=2, min_samples=2), clock=work.clock)
    assert t.block_size == MAX_BLOCK_SIZE


def test_stops_when_converged_after_min_samples():
    work = FakeWork([10 * MS])  # perfectly stable: the CI is zero-width
    t = time_callable(work, measure=quick(min_samples=8), clock=work.clock)
    assert t.stop_reason == "converged"
    assert len(t.samples_ms) == 8
    assert t.warnings == []


def test_min_time_is_respected_even_when_converged():
    work = FakeWork([10 * MS])
    t = time_callable(work, measure=quick(min_samples=3, min_time_s=0.2), clock=work.clock)
    # 0.2 s of 10 ms samples is 20 samples (the clock advances only by the work)
    assert len(t.samples_ms) == 20
    assert t.stop_reason == "converged"


def test_noisy_work_stops_at_max_time_with_a_warning():
    work = FakeWork([10 * MS, 10 * MS] + [5 * MS, 20 * MS] * 1000)
    t = time_callable(work, measure=quick(max_time_s=0.5, max_samples=10_000), clock=work.clock)
    assert t.stop_reason == "max_time"
    assert any("not converged" in w for w in t.warnings)
    total_ms = sum(s * t.block_size for s in t.samples_ms)
    assert 500 <= total_ms < 500 + 20  # stopped at the first sample past the cap


def test_stops_at_max_samples():
    work = FakeWork([10 * MS, 10 * MS] + [5 * MS, 20 * MS] * 1000)
    t = time_callable(work, measure=quick(max_samples=12), clock=work.clock)
    assert t.stop_reason == "max_samples"
    assert len(t.samples_ms) == 12


def test_sync_brackets_every_clock_read_of_a_sample():
    """On CUDA the device is synchronized right before each clock read that opens or closes a
    sample, so a sample never includes the previous one's queued kernels nor misses its own."""
    work = FakeWork([2 * MS])
    time_callable(work, measure=quick(warmup=1, min_samples=3), sync=work.sync, clock=work.clock)
    ev = work.events
    for i, e in enumerate(ev):
        if e == "clock" and i > 0 and ev[i - 1] == "call":
            pytest.fail(f"clock read right after a call without sync at event {i}: {ev[max(0, i - 3):i + 1]}")
    # every block of calls is enclosed as sync, clock, call..., sync, clock
    text = ",".join(ev)
    assert "sync,clock,call,sync,clock" in text


def test_warmup_callback_marks_the_end_of_the_first_call():
    work = FakeWork([3 * MS])
    seen = []
    time_callable(work, measure=quick(), clock=work.clock, on_warmup_start=lambda: seen.append(work.calls))
    assert seen == [1]


def test_timed_window_hooks_bracket_exactly_the_samples():
    """on_timed_start runs after the first call, calibration and warmup, right before the first
    sample's synchronized clock read; on_timed_end right after the last sample (energy window)."""
    work = FakeWork([100 * MS] + [2 * MS])
    seen = {}
    t = time_callable(
        work, measure=quick(warmup=4), clock=work.clock, sync=work.sync,
        on_timed_start=lambda: (work.events.append("start"), seen.setdefault("calls_at_start", work.calls)),
        on_timed_end=lambda: (work.events.append("end"), seen.setdefault("calls_at_end", work.calls)),
    )  # fmt: skip
    assert work.events.count("start") == 1 and work.events.count("end") == 1
    untimed = 1 + 1 + 4  # first call, one calibration call, four warmup calls (block size 1)
    assert t.block_size == 1 and seen["calls_at_start"] == untimed
    assert seen["calls_at_end"] - seen["calls_at_start"] == len(t.samples_ms)
    # Between the hook and the first timed call: the loop's start clock, then the first sample's
    # synchronized clock read; between the last timed call and the end hook: that sample's
    # synchronized clock read and the loop's elapsed-time read. No call outside, none missing.
    after_start = work.events[work.events.index("start") + 1 :]
    assert after_start[:4] == ["clock", "sync", "clock", "call"]
    before_end = work.events[: work.events.index("end")]
    assert before_end[-4:] == ["call", "sync", "clock", "clock"]
