"""Energy rules and the timing blocks, with a fake clock and calendar."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, time
from typing import Any

import pytest
from pydantic import ValidationError

from core.types import Sample
from rules.blocks import AlarmLatch, Hysteresis, OffDelay, OfficeHours, OnDelay
from rules.kinds.energy import (
    AfterHoursConsumptionRule,
    CounterRule,
    InverterFaultRule,
    MeterOfflineRule,
    MeterStuckRule,
    PvUnderperformanceRule,
    QuotaPaceRule,
    ThresholdRule,
    clear_sky_factor,
    period_bounds,
    solar_elevation,
)
from rules.model import Clear, Effect, Raise, Rule
from tests.rules_fakes import (
    TZ,
    FakeCalendar,
    FakeContext,
    at,
    device,
    kinds,
    make,
    raises,
    restart,
)

NATIONAL_DAY = FakeCalendar(
    workdays={date(2024, 9, 29), date(2024, 10, 12)},
    holidays={date(2024, 10, d) for d in range(1, 8)},
)

ALL_RULES: dict[type[Rule], dict[str, Any]] = {
    ThresholdRule: {"point": "voltage_l1_v", "above": 250},
    MeterOfflineRule: {},
    MeterStuckRule: {},
    CounterRule: {"max_rate_kw": 100},
    AfterHoursConsumptionRule: {},
    QuotaPaceRule: {"limit_kwh": 3100},
    PvUnderperformanceRule: {"rated_w": 10000},
    InverterFaultRule: {},
}


def site(now: datetime) -> FakeContext:
    return FakeContext(
        now,
        [
            device("meter-main", "meter", building="main", floor="B1", use="total"),
            device("meter-2", "meter"),
            device("inv-1", "pv_inverter", building="roof"),
            device("pyranometer", "sensor"),
        ],
        NATIONAL_DAY,
    )


def feed(
    ctx: FakeContext, rule: Rule, point: str, value: float, dev: str = "meter-main"
) -> list[Effect]:
    return ctx.sample(rule, dev, {point: value})


# --- blocks ------------------------------------------------------------------------------


def test_on_delay_not_reached_reached_and_reset() -> None:
    d = OnDelay(60)
    assert not d.update(True, 0)
    assert not d.update(True, 59.9)
    assert d.update(True, 60)
    assert d.since == 0
    assert not d.update(False, 61)
    assert d.since is None
    assert not d.update(True, 62)  # starts over


def test_on_delay_continues_after_restore() -> None:
    d = OnDelay(60)
    d.update(True, 1000)
    state = json.loads(json.dumps(d.snapshot()))
    again = OnDelay(60)
    again.restore(state)
    assert not again.update(True, 1059)
    assert again.update(True, 1060)


def test_off_delay() -> None:
    d = OffDelay(30)
    assert not d.update(False, 0)
    assert d.update(True, 1)  # on at once
    assert d.update(False, 2)
    assert d.update(False, 31.9)
    assert d.update(True, 20)
    assert d.since is None
    assert d.update(False, 40)
    assert not d.update(False, 70)
    restored = OffDelay(30)
    d.update(True, 100)
    d.update(False, 101)
    restored.restore(json.loads(json.dumps(d.snapshot())))
    assert restored.update(False, 130)
    assert not restored.update(False, 131)


def test_hysteresis_does_not_chatter() -> None:
    h = Hysteresis(high=100, low=95)
    values = [90, 100, 100.5, 99, 101, 96, 95.5, 100.2, 94.9, 99.9, 100.1]
    assert [h.update(v) for v in values] == [
        False, False, True, True, True, True, True, True, False, False, True,
    ]  # fmt: skip
    low = Hysteresis.below(10, 12)
    assert [low.update(v) for v in [11, 9.9, 11, 12, 12.1, 11]] == [
        False, True, True, True, False, False,
    ]  # fmt: skip
    copy = Hysteresis.below(10, 12)
    low.update(5)
    copy.restore(low.snapshot())
    assert copy.update(11)
    with pytest.raises(ValueError, match="low"):
        Hysteresis(high=1, low=2)


def test_alarm_latch_speaks_only_on_change() -> None:
    latch = AlarmLatch("r")
    assert latch.clear("a") == ()
    assert len(latch.raise_alarm("a", "k")) == 1
    assert latch.raise_alarm("a", "k") == ()
    assert len(latch.raise_alarm("a", "k", again=True)) == 1
    assert len(latch.raise_alarm("a", "other")) == 1
    copy = AlarmLatch("r")
    copy.restore(json.loads(json.dumps(latch.snapshot())))
    assert copy.clear("a") == (Clear("r", "a"),)


def test_office_hours_cache_is_exact_at_the_minute() -> None:
    calendar = FakeCalendar()
    hours = OfficeHours(refresh=60)
    before = at(2024, 10, 15, 17, 29, 59).timestamp()
    assert not hours.after_hours(calendar, before, TZ)
    assert hours.after_hours(calendar, before + 1, TZ)  # 17:30:00 is out


# --- common to every rule ----------------------------------------------------------------


@pytest.mark.parametrize("rule_cls", list(ALL_RULES))
def test_every_param_is_described_and_the_rule_describes_itself(rule_cls: type[Rule]) -> None:
    for name, info in rule_cls.Params.model_fields.items():
        assert info.description, f"{rule_cls.__name__}.Params.{name} has no description"
    rule = make(rule_cls, site(at(2024, 10, 15, 10)), **ALL_RULES[rule_cls])
    assert rule.kind
    assert rule.describe()


@pytest.mark.parametrize("rule_cls", list(ALL_RULES))
def test_samples_without_the_rules_points_cost_nothing(rule_cls: type[Rule]) -> None:
    ctx = site(at(2024, 10, 15, 10))
    rule = make(rule_cls, ctx, **ALL_RULES[rule_cls])
    sample = Sample("meter-main", int(ctx.t * 1e9), {}, {"active_power_total_w": "offline"})
    out = rule.on_sample(sample, ctx)
    assert out == ()
    assert type(out) is tuple


@pytest.mark.parametrize("rule_cls", list(ALL_RULES))
def test_snapshots_are_json(rule_cls: type[Rule]) -> None:
    ctx = site(at(2024, 10, 15, 10))
    rule = make(rule_cls, ctx, **ALL_RULES[rule_cls])
    for point in ("voltage_l1_v", "active_power_total_w", "energy_import_kwh", "fault_code"):
        ctx.sample(rule, "meter-main", {point: 300})
    ctx.tick(rule)
    restart(rule, ctx)  # json round trip inside


# --- threshold ---------------------------------------------------------------------------


def test_threshold_with_hysteresis_does_not_chatter() -> None:
    ctx = site(at(2024, 10, 15, 10))
    rule = make(ThresholdRule, ctx, point="voltage_l1_v", above=250, hysteresis=5)
    assert feed(ctx, rule, "voltage_l1_v", 249) == []
    [r] = feed(ctx, rule, "voltage_l1_v", 251)
    assert isinstance(r, Raise)
    assert (r.subject, r.kind, r.value, r.limit) == ("meter-main", "threshold", 251, 250)
    assert (r.details["point"], r.details["direction"]) == ("voltage_l1_v", "above")
    for v in (249, 251, 246, 252, 245.5):
        assert feed(ctx, rule, "voltage_l1_v", v) == []
    assert feed(ctx, rule, "voltage_l1_v", 244.9) == [Clear("r1", "meter-main")]


def test_threshold_below_limit() -> None:
    ctx = site(at(2024, 10, 15, 10))
    rule = make(ThresholdRule, ctx, point="frequency_hz", below=49.5, hysteresis=0.2)
    assert feed(ctx, rule, "frequency_hz", 49.6) == []
    [r] = feed(ctx, rule, "frequency_hz", 49.4)
    assert isinstance(r, Raise)
    assert (r.limit, r.details["direction"]) == (49.5, "below")
    assert feed(ctx, rule, "frequency_hz", 49.65) == []
    assert feed(ctx, rule, "frequency_hz", 49.71) == [Clear("r1", "meter-main")]


def test_threshold_on_delay_not_reached_and_reached_between_readings() -> None:
    ctx = site(at(2024, 10, 15, 10))
    rule = make(ThresholdRule, ctx, point="p", above=100, on_delay="1m")
    assert feed(ctx, rule, "p", 120) == []
    ctx.advance(30)
    assert feed(ctx, rule, "p", 90) == []  # dipped back: starts over
    assert feed(ctx, rule, "p", 120) == []
    ctx.advance(59)
    assert ctx.tick(rule) == []
    ctx.advance(1)
    assert kinds(ctx.tick(rule)) == ["threshold"]
    assert ctx.tick(rule) == []


def test_threshold_off_delay() -> None:
    ctx = site(at(2024, 10, 15, 10))
    rule = make(ThresholdRule, ctx, point="p", above=100, off_delay="5m")
    feed(ctx, rule, "p", 120)
    assert feed(ctx, rule, "p", 80) == []
    ctx.advance(200)
    assert feed(ctx, rule, "p", 120) == []  # back above: the off-delay starts over
    assert feed(ctx, rule, "p", 80) == []
    ctx.advance(299)
    assert ctx.tick(rule) == []
    ctx.advance(1)
    assert ctx.tick(rule) == [Clear("r1", "meter-main")]


def test_threshold_on_delay_survives_a_restart() -> None:
    ctx = site(at(2024, 10, 15, 10))
    rule = make(ThresholdRule, ctx, point="p", above=100, hysteresis=10, on_delay="10m")
    feed(ctx, rule, "p", 120)
    ctx.advance(300)
    rule = restart(rule, ctx)
    ctx.advance(299)
    assert feed(ctx, rule, "p", 95) == []  # inside the dead band: still "above"
    ctx.advance(1)
    assert kinds(ctx.tick(rule)) == ["threshold"]


def test_threshold_ignores_text_and_booleans_and_validates_limits() -> None:
    ctx = site(at(2024, 10, 15, 10))
    rule = make(ThresholdRule, ctx, point="p", above=0.5)
    assert ctx.sample(rule, "meter-main", {"p": True}) == []
    assert ctx.sample(rule, "meter-main", {"p": "high"}) == []
    assert ctx.sample(rule, "meter-main", {"p": float("nan")}) == []
    with pytest.raises(ValidationError, match="above"):
        ThresholdRule.Params.model_validate({"point": "p"})
    with pytest.raises(ValidationError, match="less than"):
        ThresholdRule.Params.model_validate({"point": "p", "above": 1, "below": 2})


# --- meter offline -----------------------------------------------------------------------


def test_meter_offline_after_max_silence_and_back() -> None:
    ctx = site(at(2024, 10, 15, 10))
    rule = make(MeterOfflineRule, ctx, max_silence="5m")
    assert ctx.tick(rule) == []
    feed(ctx, rule, "active_power_total_w", 1000)
    feed(ctx, rule, "active_power_total_w", 500, "meter-2")
    ctx.advance(299)
    assert ctx.tick(rule) == []
    ctx.advance(1)
    out = ctx.tick(rule)
    assert sorted(e.subject for e in raises(out)) == ["meter-2", "meter-main"]
    assert raises(out)[0].kind == "meter_offline"
    assert ctx.tick(rule) == []
    assert feed(ctx, rule, "energy_import_kwh", 5) == [Clear("r1", "meter-main")]


def test_failed_polls_and_availability_are_not_good_values() -> None:
    ctx = site(at(2024, 10, 15, 10))
    rule = make(MeterOfflineRule, ctx, max_silence=60)
    ctx.tick(rule)
    for _ in range(6):
        ctx.advance(10)
        bad = {"active_power_total_w": "offline", "energy_import_kwh": "offline"}
        assert ctx.sample(rule, "meter-main", {}, bad) == []
        assert ctx.sample(rule, "meter-main", {"available": True}) == []
    assert {e.subject for e in raises(ctx.tick(rule))} == {"meter-main", "meter-2"}


def test_meter_offline_on_one_point_and_from_poll_intervals() -> None:
    ctx = site(at(2024, 10, 15, 10))
    rule = make(MeterOfflineRule, ctx, point="energy_import_kwh", poll="10s", intervals=3)
    ctx.tick(rule)
    ctx.advance(20)
    feed(ctx, rule, "active_power_total_w", 1000)  # not the point watched
    ctx.advance(10)
    assert {e.subject for e in raises(ctx.tick(rule))} == {"meter-main", "meter-2"}


def test_meter_offline_restart_does_not_count_the_gateways_downtime() -> None:
    ctx = site(at(2024, 10, 15, 10))
    rule = make(MeterOfflineRule, ctx, max_silence="5m")
    ctx.tick(rule)
    ctx.advance(300)
    assert len(raises(ctx.tick(rule))) == 2
    ctx.advance(3600)  # the gateway was down an hour
    rule = restart(rule, ctx)
    assert ctx.tick(rule) == []  # already raised; nothing new, no silence counted from before
    assert feed(ctx, rule, "active_power_total_w", 1) == [Clear("r1", "meter-main")]
    ctx.advance(299)
    assert ctx.tick(rule) == []


# --- meter stuck -------------------------------------------------------------------------


def run_stuck(ctx: FakeContext, rule: Rule, minutes: int, value: float = 1234.5) -> list[Effect]:
    out: list[Effect] = []
    for _ in range(minutes):
        out += feed(ctx, rule, "active_power_total_w", value)
        ctx.advance(60)
    return out


def test_meter_stuck_in_office_hours() -> None:
    ctx = site(at(2024, 10, 15, 10))
    rule = make(MeterStuckRule, ctx, duration="30m")
    assert run_stuck(ctx, rule, 30) == []  # 10:00 .. 10:29
    [r] = run_stuck(ctx, rule, 1)  # 10:30
    assert isinstance(r, Raise)
    assert (r.kind, r.value, r.details["stuck_s"]) == ("meter_stuck", 1234.5, 1800)
    assert run_stuck(ctx, rule, 5) == []
    assert feed(ctx, rule, "active_power_total_w", 1234.6) == [Clear("r1", "meter-main")]


def test_meter_stuck_counts_only_office_hours() -> None:
    ctx = site(at(2024, 10, 15, 22))
    rule = make(MeterStuckRule, ctx)
    assert run_stuck(ctx, rule, 630) == []  # 22:00 .. 08:29 next day
    assert ctx.now == at(2024, 10, 16, 8, 30)
    assert run_stuck(ctx, rule, 30) == []
    assert kinds(run_stuck(ctx, rule, 1)) == ["meter_stuck"]  # 09:00


def test_meter_stuck_always() -> None:
    ctx = site(at(2024, 10, 15, 22))
    rule = make(MeterStuckRule, ctx, always=True)
    assert kinds(run_stuck(ctx, rule, 31)) == ["meter_stuck"]


@pytest.mark.parametrize(("day", "alarm"), [(12, True), (19, False)])
def test_meter_stuck_on_a_makeup_saturday(day: int, alarm: bool) -> None:
    ctx = site(at(2024, 10, day, 10))
    rule = make(MeterStuckRule, ctx)
    assert kinds(run_stuck(ctx, rule, 31)) == (["meter_stuck"] if alarm else [])


def test_meter_stuck_survives_a_restart() -> None:
    ctx = site(at(2024, 10, 15, 10))
    rule = make(MeterStuckRule, ctx)
    run_stuck(ctx, rule, 20)
    rule = restart(rule, ctx)
    assert run_stuck(ctx, rule, 10) == []
    assert kinds(run_stuck(ctx, rule, 1)) == ["meter_stuck"]


# --- energy counter ----------------------------------------------------------------------


def count(ctx: FakeContext, rule: Rule, value: float, step: float = 10) -> list[Effect]:
    ctx.advance(step)
    return feed(ctx, rule, "energy_import_kwh", value)


def test_counter_normal_increase_is_quiet() -> None:
    ctx = site(at(2024, 10, 15, 10))
    rule = make(CounterRule, ctx, max_rate_kw=100)
    for i in range(100):
        assert count(ctx, rule, 1000 + i * 0.2) == []
    assert count(ctx, rule, 1019.8) == []  # unchanged is fine


def test_counter_backwards_glitch() -> None:
    ctx = site(at(2024, 10, 15, 10))
    rule = make(CounterRule, ctx)
    count(ctx, rule, 1000)
    [r] = count(ctx, rule, 990)
    assert isinstance(r, Raise)
    assert (r.subject, r.kind, r.value, r.limit) == (
        "meter-main:counter_backwards",
        "counter_backwards",
        990,
        1000,
    )
    assert count(ctx, rule, 1000.1) == []  # back to normal: compared with 1000, not 990
    assert count(ctx, rule, 1000.2) == []


@pytest.mark.parametrize(("after", "kind"), [(10.0, "counter_reset"), (11.0, "counter_backwards")])
def test_counter_reset_versus_backwards(after: float, kind: str) -> None:
    ctx = site(at(2024, 10, 15, 10))
    rule = make(CounterRule, ctx, reset_fraction=0.01)
    count(ctx, rule, 1000)
    assert kinds(count(ctx, rule, after)) == [kind]


def test_counter_reset_is_the_new_base() -> None:
    ctx = site(at(2024, 10, 15, 10))
    rule = make(CounterRule, ctx)
    count(ctx, rule, 12345.6)
    assert kinds(count(ctx, rule, 0.1)) == ["counter_reset"]
    assert count(ctx, rule, 0.2) == []
    assert count(ctx, rule, 0.3) == []


def test_counter_jump_glitch_and_a_real_jump() -> None:
    ctx = site(at(2024, 10, 15, 10))
    rule = make(CounterRule, ctx, max_rate_kw=100)  # 10 s at 100 kW is 0.28 kWh
    count(ctx, rule, 1000)
    assert count(ctx, rule, 1000.25) == []
    [r] = count(ctx, rule, 1001)
    assert isinstance(r, Raise)
    assert r.kind == "counter_jump"
    assert count(ctx, rule, 1000.4) == []  # the odd reading was a glitch
    assert kinds(count(ctx, rule, 1500)) == []  # already raised
    assert count(ctx, rule, 1500.1) == []  # agrees with 1500: the counter really moved
    assert count(ctx, rule, 1500.2) == []
    assert count(ctx, rule, 1500.3, step=3600) == []  # long gaps allow more


def test_counter_alarms_clear_after_a_quiet_hour_and_survive_a_restart() -> None:
    ctx = site(at(2024, 10, 15, 10))
    rule = make(CounterRule, ctx, clear_after="1h")
    count(ctx, rule, 1000)
    count(ctx, rule, 990)
    rule = restart(rule, ctx)
    assert count(ctx, rule, 980) == []  # raised before the restart; base still 1000
    ctx.advance(3599)
    assert ctx.tick(rule) == []
    ctx.advance(1)
    assert ctx.tick(rule) == [Clear("r1", "meter-main:counter_backwards")]
    assert kinds(count(ctx, rule, 5)) == ["counter_reset"]  # 5 <= 1000 x 1 %


# --- after-hours consumption -------------------------------------------------------------


def power(ctx: FakeContext, rule: Rule, watts: float, minutes: int, step: int = 5) -> list[Effect]:
    out: list[Effect] = []
    for _ in range(0, minutes, step):
        out += feed(ctx, rule, "active_power_total_w", watts)
        ctx.advance(step * 60)
    return out


def test_after_hours_consumption_with_a_configured_baseline() -> None:
    ctx = site(at(2024, 10, 15, 20))
    rule = make(AfterHoursConsumptionRule, ctx, baseline_w=1000, factor=1.5)
    assert power(ctx, rule, 2000, 15) == []  # 20:00, 20:05, 20:10
    [r] = power(ctx, rule, 2000, 5)  # 20:15
    assert isinstance(r, Raise)
    assert (r.kind, r.value, r.limit, r.details["baseline"]) == (
        "after_hours_consumption",
        2000,
        1500,
        "configured",
    )
    assert power(ctx, rule, 1800, 30) == []
    assert power(ctx, rule, 1400, 5) == [Clear("r1", "meter-main")]


def test_office_hours_consumption_is_not_after_hours() -> None:
    ctx = site(at(2024, 10, 15, 9))
    rule = make(AfterHoursConsumptionRule, ctx, baseline_w=1000)
    assert power(ctx, rule, 50000, 120) == []
    lunch = FakeCalendar(lunch=(time(12, 0), time(13, 30)))
    ctx = FakeContext(at(2024, 10, 15, 12), site(at(2024, 10, 15)).devices.values(), lunch)
    rule = make(AfterHoursConsumptionRule, ctx, baseline_w=1000)
    assert power(ctx, rule, 50000, 90) == []


def nights(ctx: FakeContext, rule: Rule, watts: float, n: int) -> list[Effect]:
    """n nights at `watts`, each ended by a reading at 09:00; starts and ends at 20:00."""
    out: list[Effect] = []
    for _ in range(n):
        out += power(ctx, rule, watts, 13 * 60, step=60)  # 20:00 .. 08:00
        out += feed(ctx, rule, "active_power_total_w", 30000)  # 09:00: the night is over
        ctx.advance(11 * 3600)
    return out


def test_after_hours_consumption_learns_the_baseline() -> None:
    ctx = site(at(2024, 10, 14, 20))  # a Monday
    rule = make(AfterHoursConsumptionRule, ctx, learn_nights=3)
    assert nights(ctx, rule, 2000, 2) == []  # learning: no verdict yet, however high
    assert nights(ctx, rule, 500, 1) == []
    baseline = rule.snapshot()["nights"]["meter-main"]["baseline"]
    assert 1500 < baseline < 2000  # exponential average: 2000, then 20 % toward 500
    ctx = site(at(2024, 10, 14, 20))
    rule = make(AfterHoursConsumptionRule, ctx)
    nights(ctx, rule, 500, 3)
    assert ctx.now == at(2024, 10, 17, 20)
    rule = restart(rule, ctx)  # the learned baseline is kept
    assert power(ctx, rule, 760, 15) == []
    [r] = power(ctx, rule, 760, 5)
    assert isinstance(r, Raise)
    assert (r.limit, r.details["baseline"]) == (750, "learned")


def test_after_hours_on_delay_survives_a_restart() -> None:
    ctx = site(at(2024, 10, 19, 10))  # a plain Saturday: all day after hours
    rule = make(AfterHoursConsumptionRule, ctx, baseline_w=100, on_delay="15m")
    power(ctx, rule, 1000, 10)
    rule = restart(rule, ctx)
    assert kinds(power(ctx, rule, 1000, 10)) == ["after_hours_consumption"]


# --- quota -------------------------------------------------------------------------------


def kwh(ctx: FakeContext, rule: Rule, when: datetime, value: float) -> list[Effect]:
    ctx.now = when
    return feed(ctx, rule, "energy_import_kwh", value)


def test_period_bounds_follow_the_site_zone() -> None:
    # Still 31 October in UTC, already November in Beijing.
    key, start, end = period_bounds(
        datetime(2024, 10, 31, 16, 30, tzinfo=UTC).timestamp(), TZ, "month"
    )
    assert key == "2024-11"
    assert start == at(2024, 11, 1).timestamp()
    assert end == at(2024, 12, 1).timestamp()
    key, start, end = period_bounds(at(2024, 12, 31, 23, 59).timestamp(), TZ, "month")
    assert (key, end) == ("2024-12", at(2025, 1, 1).timestamp())
    key, start, end = period_bounds(at(2024, 6, 1).timestamp(), TZ, "year")
    assert (key, start, end) == ("2024", at(2024, 1, 1).timestamp(), at(2025, 1, 1).timestamp())


def test_quota_pace_warning_then_exceeded_then_a_new_month() -> None:
    ctx = site(at(2024, 9, 30, 23, 59))
    rule = make(QuotaPaceRule, ctx, limit_kwh=3100, period="month")  # 100 kWh a day in October
    assert kwh(ctx, rule, at(2024, 9, 30, 23, 59), 10000.0) == []
    assert kwh(ctx, rule, at(2024, 10, 1, 0, 1), 10000.2) == []  # October starts at 10000.1
    assert kwh(ctx, rule, at(2024, 10, 3), 10400.1) == []  # 6 % of the month: too early to say
    assert kwh(ctx, rule, at(2024, 10, 4), 10500.1) == []  # 9.7 %
    [r] = kwh(ctx, rule, at(2024, 10, 5), 10500.1)  # 500 in 4 days -> 3875 projected
    assert isinstance(r, Raise)
    assert (r.subject, r.kind, r.grade, r.value, r.limit) == (
        "meter-main:quota_pace_warning",
        "quota_pace_warning",
        "blue",
        3875.0,
        3100.0,
    )
    assert r.details["period"] == "2024-10"
    assert kwh(ctx, rule, at(2024, 10, 6), 10500.1) == []  # 3100 projected: inside the release
    assert kwh(ctx, rule, at(2024, 10, 7), 10500.1) == [
        Clear("r1", "meter-main:quota_pace_warning")
    ]  # 2583 projected
    assert kinds(kwh(ctx, rule, at(2024, 10, 10), 11800.1)) == ["quota_pace_warning"]
    out = kwh(ctx, rule, at(2024, 10, 20), 13200.2)
    assert kinds(out) == ["clear:meter-main:quota_pace_warning", "quota_exceeded"]
    assert (raises(out)[0].grade, raises(out)[0].value) == ("yellow", 3200.1)
    assert kwh(ctx, rule, at(2024, 10, 31, 23, 59), 14000.0) == []
    # A new month: the overrun is October's, November starts from the boundary reading.
    out = kwh(ctx, rule, at(2024, 11, 1, 0, 1), 14000.2)
    assert out == [Clear("r1", "meter-main:quota_exceeded")]
    assert rule.snapshot()["quotas"]["meter-main"]["start_value"] == pytest.approx(14000.1)


def test_quota_survives_a_restart_and_a_counter_reset() -> None:
    ctx = site(at(2024, 10, 1))
    rule = make(QuotaPaceRule, ctx, limit_kwh=3100)
    kwh(ctx, rule, at(2024, 9, 30, 23, 59), 5000.0)
    kwh(ctx, rule, at(2024, 10, 1, 0, 1), 5000.0)
    kwh(ctx, rule, at(2024, 10, 10), 5600.0)
    rule = restart(rule, ctx)
    kwh(ctx, rule, at(2024, 10, 12), 5800.0)
    kwh(ctx, rule, at(2024, 10, 12, 1), 3.0)  # the meter was cleared: 800 already counted
    out = kwh(ctx, rule, at(2024, 10, 25), 2400.0)  # 800 + 2397 = 3197 > 3100
    assert kinds(out) == ["quota_exceeded"]
    assert raises(out)[0].value == pytest.approx(3197.0)


def test_quota_joined_mid_month_uses_the_prorated_limit() -> None:
    ctx = site(at(2024, 10, 16))
    rule = make(QuotaPaceRule, ctx, limit_kwh=3100)
    kwh(ctx, rule, at(2024, 10, 16), 100.0)  # first reading ever: half the month is left
    out = kwh(ctx, rule, at(2024, 10, 30), 1750.0)  # 1650 > 1600 (16 of 31 days)
    assert kinds(out) == ["quota_exceeded"]
    assert raises(out)[0].limit == 1600.0


def test_quota_year_period_and_grade_override() -> None:
    ctx = site(at(2024, 1, 1))
    rule = make(QuotaPaceRule, ctx, limit_kwh=36600, period="year", grade="orange")
    kwh(ctx, rule, at(2023, 12, 31, 23, 59), 0.0)
    kwh(ctx, rule, at(2024, 1, 1, 0, 1), 0.0)
    out = kwh(ctx, rule, at(2024, 3, 1), 7000.0)  # 60 of 366 days; 42700 projected
    assert kinds(out) == ["quota_pace_warning"]
    assert raises(out)[0].grade == "orange"


# --- PV ----------------------------------------------------------------------------------


def test_solar_elevation_in_beijing() -> None:
    midsummer_noon = at(2024, 6, 21, 12, 16).timestamp()  # solar noon at 116.4° E
    assert solar_elevation(midsummer_noon, 39.9, 116.4) == pytest.approx(73.5, abs=0.5)
    equinox_noon = at(2024, 3, 20, 12, 22).timestamp()
    assert solar_elevation(equinox_noon, 39.9, 116.4) == pytest.approx(50.1, abs=0.6)
    assert solar_elevation(at(2024, 6, 21, 0).timestamp(), 39.9, 116.4) < -20
    assert clear_sky_factor(-5) == 0.0
    assert clear_sky_factor(90) == pytest.approx(1.037, abs=0.01)


def pv(ctx: FakeContext, rule: Rule, watts: float, minutes: int, step: int = 5) -> list[Effect]:
    out: list[Effect] = []
    for _ in range(0, minutes, step):
        out += feed(ctx, rule, "active_power_w", watts, "inv-1")
        ctx.advance(step * 60)
    return out


def test_pv_underperformance_on_a_clear_sky_model() -> None:
    ctx = site(at(2024, 6, 21, 11, 0))
    rule = make(PvUnderperformanceRule, ctx, rated_w=10000)
    assert pv(ctx, rule, 6000, 60) == []
    assert pv(ctx, rule, 1000, 30) == []  # 30 minutes not yet reached at the last reading
    [r] = pv(ctx, rule, 1000, 5)
    assert isinstance(r, Raise)
    assert (r.subject, r.kind, r.details["source"]) == ("inv-1", "pv_underperformance", "clear_sky")
    assert 7500 < float(r.details["expected_w"]) < 8100
    assert pv(ctx, rule, 6000, 5) == [Clear("r1", "inv-1")]


def test_pv_at_night_and_dawn_says_nothing() -> None:
    ctx = site(at(2024, 6, 21, 20, 0))
    rule = make(PvUnderperformanceRule, ctx, rated_w=10000)
    assert pv(ctx, rule, 0, 10 * 60, step=10) == []  # 20:00 .. 06:00, sun below 15°


def test_pv_with_an_irradiance_sensor() -> None:
    ctx = site(at(2024, 6, 21, 11, 0))
    rule = make(
        PvUnderperformanceRule,
        ctx,
        rated_w=10000,
        irradiance_device="pyranometer",
        irradiance_point="irradiance_w_m2",
    )
    ctx.set_latest("pyranometer", "irradiance_w_m2", 200)  # overcast: expect 1600 W, floor 480
    assert pv(ctx, rule, 500, 60) == []
    ctx.set_latest("pyranometer", "irradiance_w_m2", 200)
    out = pv(ctx, rule, 400, 35)
    assert kinds(out) == []  # the sensor reading went stale after 15 minutes: no verdict
    for _ in range(7):
        ctx.set_latest("pyranometer", "irradiance_w_m2", 200)
        out += pv(ctx, rule, 400, 5)
    assert kinds(out) == ["pv_underperformance"]
    assert raises(out)[0].details["expected_w"] == 1600
    with pytest.raises(ValidationError, match="together"):
        PvUnderperformanceRule.Params.model_validate({"rated_w": 1, "irradiance_device": "x"})


def test_pv_on_delay_survives_a_restart() -> None:
    ctx = site(at(2024, 6, 21, 11, 0))
    rule = make(PvUnderperformanceRule, ctx, rated_w=10000)
    pv(ctx, rule, 100, 20)
    rule = restart(rule, ctx)
    assert kinds(pv(ctx, rule, 100, 15)) == ["pv_underperformance"]


# --- inverter fault ----------------------------------------------------------------------


def test_inverter_fault_code_non_zero() -> None:
    ctx = site(at(2024, 6, 21, 11, 0))
    rule = make(InverterFaultRule, ctx)
    assert feed(ctx, rule, "fault_code", 0, "inv-1") == []
    [r] = feed(ctx, rule, "fault_code", 2001, "inv-1")
    assert isinstance(r, Raise)
    assert (r.subject, r.kind, r.value) == ("inv-1", "inverter_fault", 2001)
    assert feed(ctx, rule, "fault_code", 2001, "inv-1") == []
    assert raises(feed(ctx, rule, "fault_code", 2002, "inv-1"))[0].value == 2002  # a new code
    rule = restart(rule, ctx)
    assert feed(ctx, rule, "fault_code", 2002, "inv-1") == []
    assert feed(ctx, rule, "fault_code", 0, "inv-1") == [Clear("r1", "inv-1")]


def test_inverter_fault_values_and_bits() -> None:
    ctx = site(at(2024, 6, 21, 11, 0))
    status = make(InverterFaultRule, ctx, point="device_status", fault_values=[768])
    assert feed(ctx, status, "device_status", 512, "inv-1") == []
    assert kinds(feed(ctx, status, "device_status", 768, "inv-1")) == ["inverter_fault"]
    bits = make(InverterFaultRule, ctx, point="state_1", bits=[6])  # 6: stop due to faults
    assert feed(ctx, bits, "state_1", 0b0000110, "inv-1") == []
    assert kinds(feed(ctx, bits, "state_1", 0b1000010, "inv-1")) == ["inverter_fault"]
    assert feed(ctx, bits, "state_1", 0b0000010, "inv-1") == [Clear("r1", "inv-1")]
    with pytest.raises(ValidationError, match="0-63"):
        InverterFaultRule.Params.model_validate({"bits": [64]})
