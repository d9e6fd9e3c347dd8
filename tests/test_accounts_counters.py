"""accounts.counters: period amounts from counter readings, with readings at times the test
chooses (the clock is the readings' own timestamps)."""

from __future__ import annotations

import itertools
import random
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from accounts.counters import (
    Added,
    CounterTrack,
    Event,
    Limits,
    Mark,
    Periods,
    Swap,
    Tally,
    stretch,
)

TZ = ZoneInfo("Asia/Shanghai")
PERIODS = Periods("Asia/Shanghai")
LIMITS = Limits(max_per_hour=100.0, max_gap_s=900.0)


def at(hour: int, minute: int = 0, second: float = 0, day: int = 1) -> float:
    return datetime(2026, 7, day, hour, minute, tzinfo=TZ).timestamp() + second


def hour_tally(track: CounterTrack, hour: int, day: int = 1) -> Tally:
    return track.tally(at(hour, day=day), at(hour, day=day) + 3600)


def reference(readings: list[tuple[float, float]], start: float, end: float) -> Tally:
    """Every reading kept (no thinning): what the track's marks must add up to."""
    amount = covered = 0.0
    for (t0, v0), (t1, v1) in itertools.pairwise(readings):
        share, _event = stretch(Mark(t0, v0), t1, v1, LIMITS)
        overlap = min(end, t1) - max(start, t0)
        if overlap > 0:
            amount += share * overlap / (t1 - t0)
            if t1 - t0 <= LIMITS.max_gap_s:
                covered += overlap
    return Tally(amount, covered, end - start)


def test_readings_across_an_hour_split_in_proportion_to_time() -> None:
    track = CounterTrack(Limits(max_per_hour=100.0, max_gap_s=7200.0), PERIODS)
    track.add(at(10, 30), 0.0)
    track.add(at(11, 30), 60.0)
    assert hour_tally(track, 10).amount == pytest.approx(30.0)
    assert hour_tally(track, 11).amount == pytest.approx(30.0)
    assert hour_tally(track, 10).coverage == pytest.approx(0.5)  # nothing read before 10:30


def test_steady_readings_give_whole_hours_and_keep_few_marks() -> None:
    track = CounterTrack(LIMITS, PERIODS)
    t, value = at(9, 30, 3), 500.0
    while t < at(12, 30):
        track.add(t, value)
        t += 7.0
        value += 36.0 * 7 / 3600  # 36 kWh an hour
    for hour in (10, 11):
        tally = hour_tally(track, hour)
        assert tally.amount == pytest.approx(36.0)
        assert tally.coverage == pytest.approx(1.0)
    # The first and last reading of each hour, not 1,500 readings.
    assert len(track.marks) <= 10
    assert PERIODS.floor(at(11, 59, 59), "hour") == at(11)


def test_thinned_marks_add_up_like_every_reading() -> None:
    rng = random.Random(7)
    track = CounterTrack(LIMITS, PERIODS)
    readings: list[tuple[float, float]] = []
    t, value = at(8), 1000.0
    while t < at(14):
        roll = rng.random()
        if roll < 0.002:
            value = 0.2  # the meter restarted from 0
        elif roll < 0.003:
            value = 42_000.0  # a new meter
        elif roll < 0.006:
            t += rng.uniform(900, 3000)  # an outage
        value += rng.uniform(0, 0.05)
        track.add(t, value)
        readings.append((t, value))
        t += rng.uniform(5, 15)
    for hour in range(8, 14):
        expected = reference(readings, at(hour), at(hour) + 3600)
        got = hour_tally(track, hour)
        assert got.amount == pytest.approx(expected.amount, abs=1e-6)
        assert got.covered == pytest.approx(expected.covered)
    assert len(track.marks) < len(readings) / 20


def test_a_meter_restarting_from_zero_counts_from_the_new_start() -> None:
    track = CounterTrack(LIMITS, PERIODS)
    track.add(at(10), 1000.0)
    track.add(at(10, 10), 1002.0)
    result = track.add(at(10, 20), 0.5)
    assert result.event is Event.RESET
    track.add(at(10, 30), 1.5)
    assert hour_tally(track, 10).amount == pytest.approx(2.0 + 0.5 + 1.0)


def test_a_rollover_at_the_counters_width_counts_what_wrapped() -> None:
    limits = Limits(max_per_hour=100.0, rollover=10_000.0)
    track = CounterTrack(limits, PERIODS)
    track.add(at(10), 9_999.5)
    assert track.add(at(10, 5), 0.3).event is Event.ROLLOVER
    assert hour_tally(track, 10).amount == pytest.approx(0.8)


def test_a_swapped_meter_detected_as_a_drop_counts_nothing_across_it() -> None:
    track = CounterTrack(LIMITS, PERIODS)
    track.add(at(10), 5_000.0)
    track.add(at(10, 10), 5_003.0)
    assert track.add(at(10, 20), 200.0).event is Event.SWAP
    track.add(at(10, 30), 201.0)
    tally = hour_tally(track, 10)
    assert tally.amount == pytest.approx(3.0 + 1.0)
    assert tally.amount >= 0


def test_a_declared_swap_counts_both_meters() -> None:
    swap = Swap(t=at(10, 15), new_start=50.0, old_final=5_004.0)
    track = CounterTrack(LIMITS, PERIODS, swaps=[swap])
    track.add(at(10), 5_000.0)
    track.add(at(10, 10), 5_003.0)
    assert track.add(at(10, 20), 52.0).event is Event.DECLARED_SWAP
    assert hour_tally(track, 10).amount == pytest.approx(3.0 + 1.0 + 2.0)


def test_an_implausible_jump_is_flagged_not_counted() -> None:
    track = CounterTrack(LIMITS, PERIODS)
    track.add(at(10), 1_000.0)
    assert track.add(at(10, 0, 10), 900_000.0).event is Event.JUMP
    track.add(at(10, 0, 20), 900_000.1)
    assert hour_tally(track, 10).amount == pytest.approx(0.1)


def test_a_gap_shares_its_amount_pro_rata_with_coverage_below_one() -> None:
    track = CounterTrack(LIMITS, PERIODS)
    for minute in range(0, 21, 5):
        track.add(at(10, minute), 100.0 + minute)  # 1 a minute until 10:20
    track.add(at(12, 40), 240.0)  # the meter answers again: 120 counted over 140 minutes
    track.add(at(12, 45), 245.0)
    ten, eleven, twelve = (hour_tally(track, h) for h in (10, 11, 12))
    assert ten.amount == pytest.approx(20.0 + 120.0 * 40 / 140)
    assert eleven.amount == pytest.approx(120.0 * 60 / 140)
    assert twelve.amount == pytest.approx(120.0 * 40 / 140 + 5.0)
    assert ten.coverage == pytest.approx(20 / 60)
    assert eleven.coverage == 0.0
    assert twelve.coverage == pytest.approx(5 / 60)


def test_late_readings_fill_a_gap_and_are_not_counted_twice() -> None:
    track = CounterTrack(LIMITS, PERIODS)
    track.add(at(9, 50), 0.0)
    track.add(at(10), 1.0)
    track.add(at(14), 1.0 + 4 * 60)  # four hours later: 60 an hour on average
    assert hour_tally(track, 11).coverage == 0.0
    # The meter's own log arrives: 10 an hour until noon, then 110 an hour.
    late = []
    t, value = at(10, 0, 10), 1.0
    while t < at(14):
        value += (10.0 if t <= at(12) else 110.0) * 10 / 3600  # over the 10 s before t
        late.append((t, value))
        t += 10.0
    results = [track.add(t, v) for t, v in late]
    assert {r.added for r in results} == {Added.LATE}
    assert hour_tally(track, 11).amount == pytest.approx(10.0, abs=0.01)
    assert hour_tally(track, 13).amount == pytest.approx(110.0, abs=0.05)
    assert hour_tally(track, 11).coverage == pytest.approx(1.0)
    before = [hour_tally(track, h).amount for h in range(9, 15)]
    again = [track.add(t, v).added for t, v in late[::7]]
    assert set(again) <= {Added.DUPLICATE, Added.COVERED}
    assert [hour_tally(track, h).amount for h in range(9, 15)] == before
    assert len(track.marks) < 20


def test_a_reading_older_than_everything_kept_is_refused() -> None:
    track = CounterTrack(LIMITS, PERIODS)
    track.add(at(10), 1.0)
    track.add(at(11), 2.0)
    assert track.add(at(9), 0.5).added is Added.TOO_OLD


def test_periods_are_local_days_and_months() -> None:
    assert PERIODS.floor(at(0, 30, day=2), "day") == at(0, day=2)
    start = PERIODS.floor(at(15, day=20), "month")
    assert start == at(0, day=1)
    end = PERIODS.next(start, "month")
    assert datetime.fromtimestamp(end, TZ) == datetime(2026, 8, 1, tzinfo=TZ)
    assert PERIODS.starts(at(23, 30), at(1, 30, day=2), "hour") == [
        at(23),
        at(0, day=2),
        at(1, day=2),
    ]
