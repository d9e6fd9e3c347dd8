"""simulator/month.py: the models stepped over days without real time, the true hourly energy
they counted, and the reset, swap and late day of a simulated month."""

from __future__ import annotations

import itertools
import math
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from core.types import Sample
from drivers.modbus.profile import Profile
from simulator.clock import SimClock
from simulator.models import OfficeMeter, WaterMeter
from simulator.month import CounterReset, LateDay, MeterSwap, Month, month_bounds
from simulator.site import read_profile

TZ = ZoneInfo("Asia/Shanghai")
PROFILES = Path(__file__).resolve().parent.parent / "config" / "profiles"
START = datetime(2026, 7, 6, tzinfo=TZ)  # a Monday
KWH = "energy_import_kwh"


def _models(start: datetime = START) -> dict[str, OfficeMeter | WaterMeter]:
    clock = SimClock(speed=0, start=start, tz="Asia/Shanghai")
    meter = read_profile(PROFILES / "chint_dtsu666.yaml")
    water = read_profile(PROFILES / "tuf2000m_water.yaml")
    assert isinstance(meter, Profile)
    assert isinstance(water, Profile)
    return {
        "m-main": OfficeMeter(meter, clock, peak_w=120_000.0, seed=1),
        "m-hvac": OfficeMeter(meter, clock, peak_w=45_000.0, shape="hvac", seed=2),
        "w-main": WaterMeter(water, clock, seed=3),
    }


def _reading(model: OfficeMeter | WaterMeter, t: datetime, counter: str) -> float:
    values = model.values(t)
    if counter == "volume_total_m3":  # the TUF-2000M's registers: whole m3 and the fraction
        whole, fraction = values["volume_forward_integer_m3"], values["volume_forward_fraction_m3"]
        assert isinstance(whole, float)
        assert isinstance(fraction, float)
        return whole + fraction
    return float(values[counter])


def _by_device(samples: list[Sample]) -> dict[str, list[Sample]]:
    out: dict[str, list[Sample]] = {}
    for s in samples:
        out.setdefault(s.device, []).append(s)
    return out


def _at(samples: list[Sample], t: datetime) -> Sample:
    ns = int(t.timestamp()) * 1_000_000_000
    return next(s for s in samples if s.ts == ns)


def test_every_minute_of_two_days_and_the_hourly_truth() -> None:
    end = START + timedelta(days=2)
    month = Month(_models(), START, end, points={"m-main": {KWH, "active_power_total_w"}})
    samples = list(month.samples())
    per = _by_device(samples)
    steps = 2 * 24 * 60 + 1  # the reading at `end` closes the last hour
    assert {d: len(s) for d, s in per.items()} == {
        "m-main": steps,
        "m-hvac": steps,
        "w-main": steps,
    }
    # Strictly a minute apart, in order, and only the points asked for where asked.
    ts = [s.ts for s in per["m-main"]]
    assert all(b - a == 60_000_000_000 for a, b in itertools.pairwise(ts))
    assert set(per["m-main"][0].values) == {KWH, "active_power_total_w"}
    assert "voltage_l1_v" in per["m-hvac"][0].values

    # 48 hours of truth per counter; each hour is the counter's move over it, and the hours add
    # up to what a fresh model (same seeds: deterministic) counts between start and end.
    fresh = _models()
    for device, counter in (("m-main", KWH), ("m-hvac", KWH), ("w-main", "volume_total_m3")):
        hours = month.hourly[device][counter]
        assert len(hours) == 48
        assert min(hours) == START
        assert max(hours) == end - timedelta(hours=1)
        noon = START + timedelta(hours=12)
        moved = float(_at(per[device], noon + timedelta(hours=1)).values[counter]) - float(
            _at(per[device], noon).values[counter]
        )
        assert hours[noon] == pytest.approx(moved, rel=1e-12)
        first = _reading(fresh[device], START, counter)
        for t in month.instants():  # the integrators step forward to `end`
            last = _reading(fresh[device], t, counter)
        assert month.total(device, counter) == pytest.approx(last - first, rel=1e-9)
        assert sum(month.daily(device, counter).values()) == pytest.approx(
            month.total(device, counter)
        )
        assert all(e >= 0 for e in hours.values())
    # An office by day draws far more than at night.
    main = month.hourly["m-main"][KWH]
    assert main[START + timedelta(hours=10)] > 2 * main[START + timedelta(hours=3)]
    assert month.unsure == {"m-main": [], "m-hvac": [], "w-main": []}


def test_reset_and_swap_show_in_the_readings_not_in_the_truth() -> None:
    reset_at = START + timedelta(hours=10, minutes=17)
    swap_at = START + timedelta(hours=15, minutes=3)
    end = START + timedelta(days=1)
    scenarios = [CounterReset("m-main", reset_at), MeterSwap("m-hvac", swap_at, new_start=12.5)]
    month = Month(_models(), START, end, scenarios=scenarios)
    per = _by_device(list(month.samples()))
    plain = Month(_models(), START, end)
    plain_per = _by_device(list(plain.samples()))

    for device, at, start_value in (("m-main", reset_at, 0.0), ("m-hvac", swap_at, 12.5)):
        before = float(_at(per[device], at).values[KWH])
        after = float(_at(per[device], at + timedelta(minutes=1)).values[KWH])
        true_before = float(_at(plain_per[device], at).values[KWH])
        true_after = float(_at(plain_per[device], at + timedelta(minutes=1)).values[KWH])
        assert before == true_before  # the reading at `at` is the old counter's
        assert after == pytest.approx(start_value + true_after - true_before, abs=1e-9)
        later = at + timedelta(hours=3)
        shown_move = float(_at(per[device], later).values[KWH]) - after
        true_move = float(_at(plain_per[device], later).values[KWH]) - true_after
        assert shown_move == pytest.approx(true_move, rel=1e-9)
        # The other counting points moved with it; the power did not.
        assert float(_at(per[device], later).values["energy_import_l1_kwh"]) < float(
            _at(plain_per[device], later).values["energy_import_l1_kwh"]
        )
        assert (
            _at(per[device], later).values["active_power_total_w"]
            == (_at(plain_per[device], later).values["active_power_total_w"])
        )
        # The truth is the plain run's; the interval across the change is named.
        assert month.hourly[device] == plain.hourly[device]
        [(when, energy)] = month.unsure[device]
        assert when == at
        assert energy == pytest.approx(true_after - true_before)
    assert month.hourly["w-main"] == plain.hourly["w-main"]


def test_a_late_day_arrives_after_the_next_day_once() -> None:
    end = START + timedelta(days=3)
    late_day = date(2026, 7, 7)
    month = Month(_models(), START, end, points={}, scenarios=[LateDay("w-main", late_day)])
    samples = list(month.samples())
    plain = list(Month(_models(), START, end).samples())
    assert sorted((s.device, s.ts) for s in samples) == sorted((s.device, s.ts) for s in plain)
    water = [s for s in samples if s.device == "w-main"]
    day_start = int(datetime(2026, 7, 7, tzinfo=TZ).timestamp()) * 10**9
    day_end = int(datetime(2026, 7, 8, tzinfo=TZ).timestamp()) * 10**9
    release = int(datetime(2026, 7, 9, tzinfo=TZ).timestamp()) * 10**9
    held = [
        i for i, s in enumerate(samples) if s.device == "w-main" and day_start <= s.ts < day_end
    ]
    assert len(held) == 24 * 60
    # Everything before the held day's first frame in the stream is older than the release.
    first_held = held[0]
    assert all(s.ts < release for s in samples[:first_held])
    assert samples[first_held - 1].ts == release - 60 * 10**9
    # The held frames keep their own times and order, and no other device's frames moved.
    assert [samples[i].ts for i in held] == sorted(samples[i].ts for i in held)
    assert len(water) == 3 * 24 * 60 + 1
    others = [(s.device, s.ts) for s in samples if s.device != "w-main"]
    assert others == [(s.device, s.ts) for s in plain if s.device != "w-main"]


def test_the_month_is_checked_before_it_runs() -> None:
    models = _models()
    with pytest.raises(ValueError, match="time-zone aware"):
        Month(models, datetime(2026, 7, 1), datetime(2026, 7, 2))
    with pytest.raises(ValueError, match="divide an hour"):
        Month(models, START, START + timedelta(days=1), step=timedelta(minutes=7))
    with pytest.raises(ValueError, match="start of an hour"):
        Month(models, START + timedelta(minutes=5), START + timedelta(days=1))
    with pytest.raises(ValueError, match="without a model: m-x"):
        Month(models, START, START + timedelta(days=1), scenarios=[CounterReset("m-x", START)])


def test_month_bounds_are_local_midnights() -> None:
    first, nxt = month_bounds(2026, 12, "Asia/Shanghai")
    assert (first.isoformat(), nxt.isoformat()) == (
        "2026-12-01T00:00:00+08:00",
        "2027-01-01T00:00:00+08:00",
    )
    assert math.isclose((nxt - first).total_seconds(), 31 * 86400)
