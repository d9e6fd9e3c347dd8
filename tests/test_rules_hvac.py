"""AC rules with a fake clock and calendar: the national setpoint limits (国办发〔2007〕42号),
AC after hours, AC with a window open, and demand response."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from core.types import Command, Sample, Value
from rules.engine import Engine
from rules.inputs import parse_dr_event
from rules.kinds.ac_policy import AcPolicyRule
from rules.kinds.demand_response import DemandResponseRule
from rules.kinds.hvac import AcAfterHoursRule, AcWindowOpenRule, Season
from rules.model import (
    Clear,
    Context,
    DemandResponseCancel,
    DemandResponseEvent,
    DeviceInfo,
    Effect,
    Input,
    InputReply,
    Issue,
    PointInfo,
    Rule,
)
from rules.registry import KINDS, build_rule
from tests.rules_fakes import FakeCalendar, FakeContext, at, kinds, make, raises, restart

COOL, HEAT, FAN, HAUX = 0, 1, 5, 4

# The coolmaster_indoor points as the gateway hands them to rules.
AC_POINTS = {
    "mode": PointInfo("", 0, 6),
    "fan_speed": PointInfo("", 0, 5),
    "setpoint_degc": PointInfo("degC", 16, 32),
    "on_off": PointInfo("", 0, 1),
    "room_temperature_degc": PointInfo("degC"),
}
CONTACT_POINTS = {"door_open": PointInfo(), "battery_pct": PointInfo("%")}

# 2024 National Day: 1-7 October off, paid for by Sunday 29 September and Saturday 12 October.
NATIONAL_DAY = FakeCalendar(
    workdays={date(2024, 9, 29), date(2024, 10, 12)},
    holidays={date(2024, 10, d) for d in range(1, 8)},
)

SUMMER_MORNING = at(2024, 7, 10, 10, 0)  # a Wednesday
WINTER_MORNING = at(2024, 12, 10, 10, 0)


def ac(device_id: str, zone: str, **tags: str) -> DeviceInfo:
    return DeviceInfo(
        device_id,
        "hvac",
        "coolmaster_indoor",
        {"building": "main", "floor": "3", "zone": zone, **tags},
        AC_POINTS,
    )


def contact(device_id: str, zone: str, kind: str = "access", **tags: str) -> DeviceInfo:
    return DeviceInfo(device_id, kind, "z2m_door_contact", {"zone": zone, **tags}, CONTACT_POINTS)


def site(now: datetime = SUMMER_MORNING, calendar: FakeCalendar | None = None) -> FakeContext:
    return FakeContext(
        now,
        [
            ac("ac-301", "301"),
            ac("ac-302", "302"),
            ac("ac-lobby", "lobby"),
            ac("ac-srv", "srv-1", use="server_room"),
            ac("ac-401", "401"),  # no contact in its zone
            contact("window-301", "301", use="window"),
            contact("window-302", "302", kind="sensor", use="window"),
            contact("door-301", "301", use="door"),
            DeviceInfo("meter-1", "meter", "sdm630", {"zone": "301"}, {"power_w": PointInfo()}),
        ],
        calendar or NATIONAL_DAY,
    )


def feed(ctx: FakeContext, rule: Rule, device_id: str, **values: Value) -> list[Effect]:
    """What the engine does: keep the latest values, then hand the Sample to the rule."""
    for point, value in values.items():
        ctx.set_latest(device_id, point, value)
    return ctx.sample(rule, device_id, values)


def unit(
    ctx: FakeContext, rule: Rule, device_id: str, setpoint: float, mode: int = COOL, on: int = 1
) -> list[Effect]:
    """One poll of an indoor unit."""
    return feed(ctx, rule, device_id, mode=mode, on_off=on, setpoint_degc=setpoint)


def window(ctx: FakeContext, rule: Rule, device_id: str, is_open: bool) -> list[Effect]:
    return feed(ctx, rule, device_id, door_open=is_open)


def issues(effects: list[Effect]) -> list[Command]:
    return [e.command for e in effects if isinstance(e, Issue)]


def setpoint(device_id: str, value: float, rule_id: str = "r1") -> Command:
    return Command(device_id, "setpoint_degc", value, f"rule:{rule_id}")


# --- common to every AC rule ---------------------------------------------------------------

ALL_RULES: list[type[Rule]] = [AcPolicyRule, AcAfterHoursRule, AcWindowOpenRule, DemandResponseRule]


@pytest.mark.parametrize("rule_cls", ALL_RULES)
def test_every_param_is_described_and_the_rule_describes_itself(rule_cls: type[Rule]) -> None:
    for name, info in rule_cls.Params.model_fields.items():
        assert info.description, f"{rule_cls.__name__}.Params.{name} has no description"
    rule = make(rule_cls, site())
    assert rule.kind
    assert rule.describe()


@pytest.mark.parametrize("rule_cls", ALL_RULES)
def test_registered_and_built_from_a_site_entry(rule_cls: type[Rule]) -> None:
    assert KINDS[rule_cls.kind] is rule_cls
    rule = build_rule({"id": "x", "kind": rule_cls.kind, "exempt_zones": ["srv-*"]})
    assert isinstance(rule, rule_cls)
    with pytest.raises(ValidationError):
        build_rule({"id": "x", "kind": rule_cls.kind, "exempt_zone": ["srv-*"]})


@pytest.mark.parametrize("rule_cls", ALL_RULES)
def test_exempt_zones_are_not_watched(rule_cls: type[Rule]) -> None:
    ctx = site()
    rule = make(rule_cls, ctx, exempt_zones=["srv-*"])
    assert "ac-srv" not in [d.id for d in rule.watched]
    assert "ac-srv" not in rule.bind(list(ctx.devices.values()))


@pytest.mark.parametrize("rule_cls", ALL_RULES)
def test_snapshots_are_json_and_empty_when_idle(rule_cls: type[Rule]) -> None:
    ctx = site()
    rule = make(rule_cls, ctx)
    assert rule.snapshot() == {}
    unit(ctx, rule, "ac-301", 22)
    window(ctx, rule, "window-301", True)
    ctx.advance(60)
    ctx.tick(rule)
    json.dumps(rule.snapshot())
    restart(rule, ctx)


# --- ac_policy: the national limits -------------------------------------------------------


def policy(ctx: FakeContext, **params: Any) -> Rule:
    params.setdefault("exempt_zones", ["srv-*"])
    return make(AcPolicyRule, ctx, **params)


def test_summer_cooling_below_26_raises_after_the_grace_and_is_enforced() -> None:
    ctx = site()
    rule = policy(ctx, enforce=True, grace="10m")
    assert unit(ctx, rule, "ac-301", 26) == []
    ctx.advance(60)
    changed = ctx.now
    assert unit(ctx, rule, "ac-301", 22) == []  # someone set 22 °C: the grace starts
    ctx.advance(599)
    assert unit(ctx, rule, "ac-301", 22) == []  # not before the grace
    assert ctx.tick(rule) == []
    ctx.advance(1)
    effects = ctx.tick(rule)
    [r] = raises(effects)
    assert (r.rule, r.subject, r.kind, r.value, r.limit) == (
        "r1",
        "ac-301",
        "ac_setpoint_violation",
        22,
        26,
    )
    assert r.grade is None  # the catalog's grade (yellow)
    assert r.details["direction"] == "below"
    assert r.details["previous_setpoint"] == 26
    assert r.details["changed_at"] == changed.isoformat(timespec="seconds")
    assert r.details["changed_at"] == "2024-07-10T10:01:00+08:00"
    # The catalog's text fields: without them the alarm text shows "?".
    assert r.details["direction_zh"] == "低于制冷下限"
    assert r.details["direction_en"] == "below the cooling minimum"
    assert (r.details["device"], r.details["place"]) == ("ac-301", "main / 3 / 301")
    assert issues(effects) == [setpoint("ac-301", 26.0)]
    [issue] = [e for e in effects if isinstance(e, Issue)]
    assert "22" in issue.reason
    # The write lands: the next poll reads 26 and the alarm clears.
    ctx.advance(5)
    assert unit(ctx, rule, "ac-301", 26) == [Clear("r1", "ac-301")]
    assert ctx.tick(rule) == []


def test_without_enforce_only_the_alarm() -> None:
    ctx = site()
    rule = policy(ctx, grace="10m")
    unit(ctx, rule, "ac-301", 22)
    ctx.advance(600)
    effects = unit(ctx, rule, "ac-301", 22)
    assert kinds(effects) == ["ac_setpoint_violation"]
    assert issues(effects) == []
    assert raises(effects)[0].details["previous_setpoint"] == ""
    assert raises(effects)[0].details["changed_at"] == ""


@pytest.mark.parametrize("mode", [HEAT, HAUX])
def test_winter_heating_above_20_raises(mode: int) -> None:
    ctx = site(WINTER_MORNING)
    rule = policy(ctx, enforce=True, grace=0)
    effects = unit(ctx, rule, "ac-301", 24, mode=mode)
    [r] = raises(effects)
    assert (r.value, r.limit, r.details["direction"]) == (24, 20, "above")
    assert r.details["direction_en"] == "above the heating maximum"
    assert issues(effects) == [setpoint("ac-301", 20.0)]


def test_judged_by_season_cooling_in_winter_and_heating_in_summer_are_not_checked() -> None:
    ctx = site(WINTER_MORNING)
    rule = policy(ctx, grace=0, judge="season")
    assert unit(ctx, rule, "ac-301", 18, mode=COOL) == []
    ctx.now = SUMMER_MORNING
    assert unit(ctx, rule, "ac-302", 28, mode=HEAT) == []


def test_judged_by_mode_a_unit_is_checked_by_what_it_does_whatever_the_date() -> None:
    # The default: a unit cooling at 22 °C on a May working day, a unit heating at 28 °C in
    # summer (judged by the heating rule, not the cooling one), cooling in winter.
    ctx = site(at(2024, 5, 15, 10, 0))
    rule = policy(ctx, grace=0)
    [r] = raises(unit(ctx, rule, "ac-301", 22, mode=COOL))
    assert (r.value, r.limit, r.details["direction"]) == (22, 26, "below")
    ctx.now = SUMMER_MORNING
    [r] = raises(unit(ctx, rule, "ac-302", 28, mode=HEAT))
    assert (r.value, r.limit, r.details["direction"]) == (28, 20, "above")
    ctx.now = WINTER_MORNING
    [r] = raises(unit(ctx, rule, "ac-401", 18, mode=COOL))
    assert r.details["direction"] == "below"


@pytest.mark.parametrize(
    ("moment", "mode", "setpoint_c", "violates"),
    [
        (at(2024, 5, 31, 23, 59), COOL, 22, False),
        (at(2024, 6, 1, 0, 0), COOL, 22, True),  # first summer day counts
        (at(2024, 9, 30, 23, 59), COOL, 22, True),  # last summer day counts
        (at(2024, 10, 1, 0, 0), COOL, 22, False),
        (at(2024, 11, 14, 23, 59), HEAT, 24, False),
        (at(2024, 11, 15, 0, 0), HEAT, 24, True),
        (at(2024, 12, 31, 23, 59), HEAT, 24, True),  # winter wraps the new year
        (at(2025, 1, 1, 0, 0), HEAT, 24, True),
        (at(2025, 3, 15, 23, 59), HEAT, 24, True),  # last winter day counts
        (at(2025, 3, 16, 0, 0), HEAT, 24, False),
    ],
)
def test_season_boundaries_are_inclusive(
    moment: datetime, mode: int, setpoint_c: float, violates: bool
) -> None:
    ctx = site(moment)
    rule = policy(ctx, grace=0, judge="season")
    effects = unit(ctx, rule, "ac-301", setpoint_c, mode=mode)
    assert kinds(effects) == (["ac_setpoint_violation"] if violates else [])
    # Judged by mode, the same unit breaks its limit whatever the date.
    ctx = site(moment)
    rule = policy(ctx, grace=0)
    assert kinds(unit(ctx, rule, "ac-301", setpoint_c, mode=mode)) == ["ac_setpoint_violation"]


def test_season_contains() -> None:
    winter = Season(start="11-15", end="03-15")
    assert winter.contains(at(2024, 12, 31))
    assert winter.contains(at(2025, 1, 1))
    assert not winter.contains(at(2024, 7, 1))
    one_day = Season(start="07-01", end="07-01")
    assert one_day.contains(at(2024, 7, 1, 23, 59))
    assert not one_day.contains(at(2024, 7, 2))
    with pytest.raises(ValidationError):
        Season(start="7-1", end="09-30")


def test_exempt_zones_are_never_checked() -> None:
    ctx = site()
    rule = policy(ctx, enforce=True, grace=0)
    assert unit(ctx, rule, "ac-srv", 18) == []  # server room keeps its own temperature
    ctx.advance(3600)
    assert ctx.tick(rule) == []
    assert kinds(unit(ctx, rule, "ac-301", 18)) == ["ac_setpoint_violation"]


def test_per_zone_override_27_in_public_areas() -> None:
    ctx = site()
    rule = policy(ctx, grace=0, enforce=True, overrides=[{"zones": ["lobby"], "cooling_min": 27}])
    effects = unit(ctx, rule, "ac-lobby", 26.5)
    [r] = raises(effects)
    assert (r.subject, r.value, r.limit) == ("ac-lobby", 26.5, 27)
    assert issues(effects) == [setpoint("ac-lobby", 27.0)]
    assert unit(ctx, rule, "ac-301", 26.5) == []  # the national 26 °C elsewhere
    assert kinds(unit(ctx, rule, "ac-302", 25.5)) == ["ac_setpoint_violation"]


def test_override_of_one_limit_keeps_the_other() -> None:
    ctx = site(WINTER_MORNING)
    rule = policy(ctx, grace=0, overrides=[{"zones": ["lobby"], "cooling_min": 27}])
    [r] = raises(unit(ctx, rule, "ac-lobby", 21, mode=HEAT))
    assert r.limit == 20


@pytest.mark.parametrize(
    ("on", "mode"),
    [(0, COOL), ("OFF", COOL), (False, COOL), (1, FAN), (1, HEAT)],
)
def test_unit_off_or_not_cooling_raises_nothing(on: Value, mode: int) -> None:
    ctx = site()
    rule = policy(ctx, grace=0)
    assert feed(ctx, rule, "ac-301", mode=mode, on_off=on, setpoint_degc=18) == []
    ctx.advance(3600)
    assert ctx.tick(rule) == []


def test_dry_mode_cools_and_is_judged_as_cooling() -> None:
    # CoolMasterNet's 3 is Dry: the compressor cools the room to the setpoint.
    ctx = site()
    rule = policy(ctx, grace=0)
    [r] = raises(feed(ctx, rule, "ac-301", mode=3, on_off=1, setpoint_degc=18))
    assert r.details["direction"] == "below"


def test_mode_codes_come_from_the_profiles_labels() -> None:
    # Hitachi's gateway: 0 Cool, 1 Dry, 2 Fan, 3 Heat, 4 Auto; the rule names no codes.
    labels = {0: "Cool", 1: "Dry", 2: "Fan", 3: "Heat", 4: "Auto"}
    points = {**AC_POINTS, "mode": PointInfo("", 0, 4, labels)}
    hitachi = DeviceInfo("ac-h", "hvac", "hitachi_hc_a_mb", {"zone": "7"}, points)
    ctx = FakeContext(SUMMER_MORNING, [hitachi])
    rule = make(AcPolicyRule, ctx, grace=0)
    assert raises(feed(ctx, rule, "ac-h", mode=2, on_off=1, setpoint_degc=18)) == []  # fan
    [r] = raises(feed(ctx, rule, "ac-h", mode=4, on_off=1, setpoint_degc=18))  # auto, summer
    assert r.details["direction"] == "below"
    ctx.now = WINTER_MORNING
    [r] = raises(feed(ctx, rule, "ac-h", mode=3, on_off=1, setpoint_degc=24))  # heat
    assert r.details["direction"] == "above"
    # A rule's own list wins over the labels.
    rule = make(AcPolicyRule, ctx, grace=0, heat_modes=[1])
    assert raises(feed(ctx, rule, "ac-h", mode=3, on_off=1, setpoint_degc=24)) == []


def test_unit_switched_off_or_to_fan_clears() -> None:
    ctx = site()
    rule = policy(ctx, grace=0)
    assert kinds(unit(ctx, rule, "ac-301", 22)) == ["ac_setpoint_violation"]
    assert unit(ctx, rule, "ac-301", 22, on=0) == [Clear("r1", "ac-301")]
    assert kinds(unit(ctx, rule, "ac-301", 22)) == ["ac_setpoint_violation"]
    assert unit(ctx, rule, "ac-301", 22, mode=FAN) == [Clear("r1", "ac-301")]


def test_limit_outside_the_writable_range_alarms_but_never_writes() -> None:
    ctx = site()
    rule = policy(ctx, enforce=True, grace="10m", cooling_min=33)  # setpoint writable 16..32
    unit(ctx, rule, "ac-301", 30)
    ctx.advance(600)
    effects = unit(ctx, rule, "ac-301", 30)
    assert kinds(effects) == ["ac_setpoint_violation"]
    assert raises(effects)[0].limit == 33
    assert issues(effects) == []
    # The alarm stands; it is not raised again on every poll (this used to flood).
    for _ in range(10):
        ctx.advance(5)
        assert unit(ctx, rule, "ac-301", 30) == []
        assert ctx.tick(rule) == []
    ctx.advance(3600)
    assert unit(ctx, rule, "ac-301", 30) == []


def test_no_writable_setpoint_in_the_profile_alarms_but_never_writes() -> None:
    ctx = FakeContext(
        SUMMER_MORNING,
        [DeviceInfo("ac-x", "hvac", "split", {"zone": "301"}, {"setpoint_degc": PointInfo()})],
    )
    rule = policy(ctx, enforce=True, grace=0)
    effects = unit(ctx, rule, "ac-x", 20)
    assert kinds(effects) == ["ac_setpoint_violation"]
    assert issues(effects) == []


def test_a_changed_setpoint_updates_the_alarm() -> None:
    ctx = site()
    rule = policy(ctx, grace=0)
    assert raises(unit(ctx, rule, "ac-301", 22))[0].value == 22
    assert unit(ctx, rule, "ac-301", 22) == []
    [r] = raises(unit(ctx, rule, "ac-301", 24))
    assert (r.value, r.details["previous_setpoint"]) == (24, 22)


def test_enforce_is_not_repeated_on_every_sample_only_after_another_grace() -> None:
    ctx = site()
    rule = policy(ctx, enforce=True, grace="10m")
    unit(ctx, rule, "ac-301", 22)
    ctx.advance(600)
    first = unit(ctx, rule, "ac-301", 22)
    assert issues(first) == [setpoint("ac-301", 26.0)]
    # The unit refuses (a locked remote, a failed write): it keeps reading 22.
    for _ in range(119):
        ctx.advance(5)
        assert unit(ctx, rule, "ac-301", 22) == []
        assert ctx.tick(rule) == []
    ctx.advance(5)  # 600 s after the first write
    again = ctx.tick(rule)
    assert issues(again) == [setpoint("ac-301", 26.0)]
    assert raises(again) == []  # the alarm stands; no new Raise


def test_grace_zero_writes_at_once_and_then_at_most_every_retry() -> None:
    ctx = site()
    rule = policy(ctx, enforce=True, grace=0)
    assert issues(unit(ctx, rule, "ac-301", 22)) == [setpoint("ac-301", 26.0)]
    for _ in range(11):
        ctx.advance(5)
        assert issues(unit(ctx, rule, "ac-301", 22)) == []
    ctx.advance(5)
    assert issues(unit(ctx, rule, "ac-301", 22)) == [setpoint("ac-301", 26.0)]


def test_no_second_write_before_a_reading_taken_after_the_first() -> None:
    # The rules' clock runs past `retry` between two polls (a sped-up demo, a slow poll, a
    # retry shorter than the poll interval): the rule still knows only the value before its
    # write, so it waits for a reading rather than writing the same limit again.
    ctx = site()
    rule = policy(ctx, enforce=True, grace=0, retry="1m")
    assert issues(unit(ctx, rule, "ac-301", 22)) == [setpoint("ac-301", 26.0)]
    for _ in range(5):
        ctx.advance(120)
        assert ctx.tick(rule) == []
    # The next poll still reads 22 (the write was refused): written again at once.
    assert issues(unit(ctx, rule, "ac-301", 22)) == [setpoint("ac-301", 26.0)]
    ctx.advance(120)
    assert ctx.tick(rule) == []
    ctx.advance(1)
    assert unit(ctx, rule, "ac-301", 26) == [Clear("r1", "ac-301")]


def test_a_new_violation_after_a_fix_is_enforced_again() -> None:
    ctx = site()
    rule = policy(ctx, enforce=True, grace="1m")
    unit(ctx, rule, "ac-301", 22)
    ctx.advance(60)
    assert issues(unit(ctx, rule, "ac-301", 22))
    ctx.advance(5)
    assert unit(ctx, rule, "ac-301", 26) == [Clear("r1", "ac-301")]
    ctx.advance(5)
    assert unit(ctx, rule, "ac-301", 23) == []  # a new grace
    ctx.advance(60)
    effects = unit(ctx, rule, "ac-301", 23)
    assert kinds(effects) == ["ac_setpoint_violation"]
    assert issues(effects) == [setpoint("ac-301", 26.0)]


def test_restart_in_the_middle_of_the_grace_continues_the_delay() -> None:
    ctx = site()
    rule = policy(ctx, grace="10m")
    unit(ctx, rule, "ac-301", 26)
    ctx.advance(10)
    unit(ctx, rule, "ac-301", 22)
    ctx.advance(300)
    rule = restart(rule, ctx)
    ctx.values.clear()  # the engine's cache of latest values is gone too
    ctx.advance(1)
    assert ctx.tick(rule) == []  # nothing known yet: this must not reset the delay
    ctx.advance(298)
    assert unit(ctx, rule, "ac-301", 22) == []  # 599 s
    ctx.advance(1)
    [r] = raises(ctx.tick(rule))  # 600 s after the change, not 600 s after the restart
    assert r.details["previous_setpoint"] == 26


def test_an_alarm_raised_before_a_restart_is_cleared_after_it() -> None:
    ctx = site()
    rule = policy(ctx, grace=0)
    assert kinds(unit(ctx, rule, "ac-301", 22)) == ["ac_setpoint_violation"]
    rule = restart(rule, ctx)
    ctx.values.clear()
    assert ctx.tick(rule) == []
    assert unit(ctx, rule, "ac-301", 22) == []  # still raised: nothing new to say
    assert unit(ctx, rule, "ac-301", 26) == [Clear("r1", "ac-301")]


def test_enforce_is_not_repeated_right_after_a_restart() -> None:
    ctx = site()
    rule = policy(ctx, enforce=True, grace="10m")
    unit(ctx, rule, "ac-301", 22)
    ctx.advance(600)
    assert issues(unit(ctx, rule, "ac-301", 22))
    rule = restart(rule, ctx)
    ctx.advance(5)
    assert unit(ctx, rule, "ac-301", 22) == []


def test_restore_takes_an_old_snapshot() -> None:
    # Snapshots written before `setpoint`, `raised` and `enforced_at` were kept.
    ctx = site()
    rule = policy(ctx, grace="10m")
    t0 = ctx.t
    rule.restore({"ac-301": {"delay": {"since": t0}, "previous": 26.0, "changed_at": t0}})
    ctx.advance(600)
    [r] = raises(unit(ctx, rule, "ac-301", 22))
    assert r.details["previous_setpoint"] == 26.0


def test_the_engine_restart_keeps_the_grace() -> None:
    """The same through the real engine: ticks come before the first poll after a start."""
    clock = [SUMMER_MORNING]
    devices = [ac("ac-301", "301")]

    def engine() -> Engine:
        rule = AcPolicyRule("ac", AcPolicyRule.Params.model_validate({"grace": "10m"}))
        return Engine([rule], devices, NATIONAL_DAY, "Asia/Shanghai", clock=lambda: clock[0])

    def poll(e: Engine, setpoint_c: float) -> list[Effect]:
        values: dict[str, Value] = {"mode": COOL, "on_off": 1, "setpoint_degc": setpoint_c}
        return e.on_sample(Sample("ac-301", 0, values, {}))

    first = engine()
    assert poll(first, 22) == []
    clock[0] += timedelta(minutes=5)
    state = json.loads(json.dumps(first.snapshot()))
    second = engine()
    second.restore(state)
    for _ in range(3):
        clock[0] += timedelta(seconds=1)
        assert second.on_tick() == []
    clock[0] += timedelta(seconds=296)  # 599 s since the setpoint went wrong
    assert second.on_tick() == []
    assert poll(second, 22) == []
    clock[0] += timedelta(seconds=1)
    assert kinds(second.on_tick()) == ["ac_setpoint_violation"]


# --- ac_after_hours ------------------------------------------------------------------------

TUESDAY = date(2024, 10, 15)


def on_at(
    moment: datetime, calendar: FakeCalendar | None = None, **params: Any
) -> tuple[FakeContext, Rule]:
    ctx = site(moment, calendar)
    params.setdefault("exempt_zones", ["srv-*"])
    rule = make(AcAfterHoursRule, ctx, **params)
    assert unit(ctx, rule, "ac-301", 26) == []
    return ctx, rule


def run(ctx: FakeContext, rule: Rule, seconds: float, step: float = 60) -> list[Effect]:
    """A tick and a poll of ac-301 (still on) every `step` for `seconds`; all the effects."""
    effects: list[Effect] = []
    end = ctx.t + seconds
    while ctx.t + step <= end:
        ctx.advance(step)
        effects += feed(ctx, rule, "ac-301", on_off=1)
        effects += ctx.tick(rule)
    return effects


def test_ac_on_after_office_hours_alarms_after_the_delay() -> None:
    ctx, rule = on_at(at(2024, 10, 15, 17, 0))  # on since the afternoon
    assert run(ctx, rule, 30 * 60) == []  # office hours end 17:30
    assert run(ctx, rule, 29 * 60) == []  # 17:59
    ctx.advance(59)
    assert ctx.tick(rule) == []
    ctx.advance(1)  # 18:00: 30 minutes after hours
    [r] = raises(ctx.tick(rule))
    assert (r.subject, r.kind) == ("ac-301", "ac_after_hours")
    assert r.details["since"] == "2024-10-15T17:30:00+08:00"
    assert (r.details["device"], r.details["place"]) == ("ac-301", "main / 3 / 301")
    assert (r.value, r.limit) == (1800, 1800)  # seconds, as door_held_open
    assert run(ctx, rule, 600) == []  # raised once
    assert feed(ctx, rule, "ac-301", on_off=0) == [Clear("r1", "ac-301")]


def test_ac_switched_on_at_night_and_cleared_when_office_hours_start() -> None:
    ctx, rule = on_at(at(2024, 10, 15, 22, 0), delay="10m")
    ctx.advance(599)
    assert ctx.tick(rule) == []
    ctx.advance(1)
    assert kinds(ctx.tick(rule)) == ["ac_after_hours"]
    ctx.now = at(2024, 10, 16, 8, 29)
    assert ctx.tick(rule) == []  # left on all night: still raised
    ctx.now = at(2024, 10, 16, 8, 30)
    assert ctx.tick(rule) == [Clear("r1", "ac-301")]


def test_ac_switched_off_before_the_delay_never_alarms() -> None:
    ctx, rule = on_at(at(2024, 10, 15, 22, 0))
    ctx.advance(1700)
    assert feed(ctx, rule, "ac-301", on_off=0) == []
    ctx.advance(600)
    assert ctx.tick(rule) == []
    feed(ctx, rule, "ac-301", on_off=1)  # on again: a new 30 minutes
    ctx.advance(1799)
    assert ctx.tick(rule) == []
    ctx.advance(1)
    assert kinds(ctx.tick(rule)) == ["ac_after_hours"]


@pytest.mark.parametrize(
    ("moment", "after_hours"),
    [
        (at(2024, 10, 12, 10, 0), False),  # 调休: the make-up Saturday is a working day
        (at(2024, 10, 19, 10, 0), True),  # a plain Saturday
        (at(2024, 10, 2, 10, 0), True),  # National Day holiday, a Wednesday
        (at(2024, 9, 29, 10, 0), False),  # the make-up Sunday
        (at(2024, 10, 15, 10, 0), False),  # a plain Tuesday
    ],
)
def test_the_working_calendar_decides(moment: datetime, after_hours: bool) -> None:
    ctx, rule = on_at(moment)
    effects = run(ctx, rule, 31 * 60)
    assert kinds(effects) == (["ac_after_hours"] if after_hours else [])


def test_lunch_break_is_not_after_hours() -> None:
    lunch = FakeCalendar(lunch=(time(12, 0), time(13, 30)))
    ctx, rule = on_at(at(2024, 10, 15, 11, 50), lunch)
    assert run(ctx, rule, 2 * 3600) == []
    ctx2, rule2 = on_at(at(2024, 10, 15, 11, 50), lunch, breaks_up_to=0)
    assert kinds(run(ctx2, rule2, 2 * 3600)) == ["ac_after_hours", "clear:ac-301"]


def test_after_hours_exempt_zone_and_unknown_state() -> None:
    ctx = site(at(2024, 10, 15, 22, 0))
    rule = make(AcAfterHoursRule, ctx, exempt_zones=["srv-*"])
    assert feed(ctx, rule, "ac-srv", on_off=1) == []
    assert feed(ctx, rule, "ac-302", mode=COOL) == []  # no on/off reading: unknown
    ctx.advance(7200)
    assert ctx.tick(rule) == []


def test_after_hours_survives_a_restart() -> None:
    ctx, rule = on_at(at(2024, 10, 15, 22, 0))
    ctx.advance(1200)
    ctx.tick(rule)
    rule = restart(rule, ctx)
    saved = dict(ctx.values)
    ctx.values.clear()
    ctx.advance(300)
    assert ctx.tick(rule) == []  # nothing known: the delay keeps running
    ctx.values.update(saved)
    ctx.advance(300)  # 30 minutes since 22:00
    assert kinds(ctx.tick(rule)) == ["ac_after_hours"]
    rule = restart(rule, ctx)
    assert feed(ctx, rule, "ac-301", on_off=0) == [Clear("r1", "ac-301")]


def test_after_hours_strings_from_mqtt_units() -> None:
    ctx = site(at(2024, 10, 15, 22, 0))
    rule = make(AcAfterHoursRule, ctx, delay=0)
    assert kinds(feed(ctx, rule, "ac-302", on_off="ON")) == ["ac_after_hours"]
    assert feed(ctx, rule, "ac-302", on_off="OFF") == [Clear("r1", "ac-302")]


# --- ac_window_open ------------------------------------------------------------------------


def window_rule(ctx: FakeContext, **params: Any) -> AcWindowOpenRule:
    params.setdefault("exempt_zones", ["srv-*"])
    rule = make(AcWindowOpenRule, ctx, **params)
    assert isinstance(rule, AcWindowOpenRule)
    return rule


def test_bind_finds_the_contacts_of_each_zone() -> None:
    ctx = site()
    rule = window_rule(ctx)
    watched = rule.bind(list(ctx.devices.values()))
    # Units with a contact in their zone, and those contacts; not ac-401 (no contact), not
    # ac-lobby, not the meter.
    assert sorted(watched) == ["ac-301", "ac-302", "door-301", "window-301", "window-302"]
    assert rule.contacts == {"301": ["window-301", "door-301"], "302": ["window-302"]}
    narrowed = window_rule(ctx, contacts={"tags": {"use": "window"}})
    assert narrowed.contacts == {"301": ["window-301"], "302": ["window-302"]}


def test_cooling_with_the_window_open_alarms_after_the_delay() -> None:
    ctx = site()
    rule = window_rule(ctx)
    unit(ctx, rule, "ac-301", 26)
    window(ctx, rule, "door-301", False)
    assert window(ctx, rule, "window-301", True) == []
    ctx.advance(299)
    assert ctx.tick(rule) == []
    assert unit(ctx, rule, "ac-301", 26) == []
    ctx.advance(1)
    [r] = raises(ctx.tick(rule))
    assert (r.subject, r.kind) == ("ac-301", "ac_window_open")
    assert r.details["window"] == "window-301"
    assert (r.details["device"], r.details["place"]) == ("ac-301", "main / 3 / 301")
    ctx.advance(60)
    assert ctx.tick(rule) == []
    assert unit(ctx, rule, "ac-301", 26) == []
    assert window(ctx, rule, "window-301", False) == [Clear("r1", "ac-301")]


def test_window_open_in_another_zone_does_not_count() -> None:
    ctx = site()
    rule = window_rule(ctx)
    unit(ctx, rule, "ac-301", 26)
    window(ctx, rule, "window-301", False)
    window(ctx, rule, "door-301", False)
    assert window(ctx, rule, "window-302", True) == []  # 302's window, 301's unit
    ctx.advance(3600)
    assert ctx.tick(rule) == []
    assert unit(ctx, rule, "ac-301", 26) == []


@pytest.mark.parametrize(
    ("mode", "on", "alarms"), [(HEAT, 1, True), (COOL, 0, False), (FAN, 1, False)]
)
def test_only_cooling_or_heating_counts(mode: int, on: int, alarms: bool) -> None:
    ctx = site()
    rule = window_rule(ctx, delay=0)
    unit(ctx, rule, "ac-302", 26, mode=mode, on=on)
    effects = window(ctx, rule, "window-302", True)  # a `sensor` kind contact
    assert kinds(effects) == (["ac_window_open"] if alarms else [])


def test_unit_switched_off_clears_and_switched_on_starts_the_delay() -> None:
    ctx = site()
    rule = window_rule(ctx, delay="5m")
    window(ctx, rule, "door-301", False)
    window(ctx, rule, "window-301", True)
    assert unit(ctx, rule, "ac-301", 26, on=0) == []
    ctx.advance(600)
    assert ctx.tick(rule) == []
    assert unit(ctx, rule, "ac-301", 26) == []  # on now: the 5 minutes start here
    ctx.advance(299)
    assert ctx.tick(rule) == []
    ctx.advance(1)
    assert kinds(ctx.tick(rule)) == ["ac_window_open"]
    assert unit(ctx, rule, "ac-301", 26, on=0) == [Clear("r1", "ac-301")]


def test_two_contacts_in_a_zone_clear_only_when_both_are_shut() -> None:
    ctx = site()
    rule = window_rule(ctx, delay=0)
    unit(ctx, rule, "ac-301", 26)
    window(ctx, rule, "door-301", False)
    [r] = raises(window(ctx, rule, "window-301", True))
    assert r.details["window"] == "window-301"
    assert window(ctx, rule, "door-301", True) == []
    assert window(ctx, rule, "window-301", False) == []  # the door is still open
    assert window(ctx, rule, "door-301", False) == [Clear("r1", "ac-301")]


def test_an_unknown_contact_is_not_taken_for_shut() -> None:
    ctx = site()
    rule = window_rule(ctx, delay=0)
    unit(ctx, rule, "ac-301", 26)
    # door-301 has not reported yet; window-301 open is enough to alarm.
    assert kinds(window(ctx, rule, "window-301", True)) == ["ac_window_open"]
    # window-301 shut, door-301 still unknown: keep the alarm until it is known.
    assert window(ctx, rule, "window-301", False) == []
    assert window(ctx, rule, "door-301", False) == [Clear("r1", "ac-301")]


def test_battery_reports_of_a_contact_cost_nothing() -> None:
    ctx = site()
    rule = window_rule(ctx, delay=0)
    unit(ctx, rule, "ac-301", 26)
    assert feed(ctx, rule, "window-301", battery_pct=90) == []


def test_window_open_survives_a_restart() -> None:
    ctx = site()
    rule = window_rule(ctx)
    unit(ctx, rule, "ac-301", 26)
    window(ctx, rule, "door-301", False)
    window(ctx, rule, "window-301", True)
    ctx.advance(200)
    rule = restart(rule, ctx)
    ctx.advance(100)
    assert kinds(ctx.tick(rule)) == ["ac_window_open"]
    rule = restart(rule, ctx)
    saved = dict(ctx.values)
    ctx.values.clear()
    assert unit(ctx, rule, "ac-301", 26) == []  # contacts not known yet: the alarm stands
    ctx.values.update(saved)
    assert window(ctx, rule, "window-301", False) == [Clear("r1", "ac-301")]


# --- demand_response -----------------------------------------------------------------------

EVENT_START = at(2024, 7, 10, 14, 0)
EVENT_END = at(2024, 7, 10, 15, 0)


def dr_site(**params: Any) -> tuple[FakeContext, DemandResponseRule]:
    """Units at 13:55: 301 cools at 26, 302 at 25, lobby heats, 401 is off, the server room
    (exempt) cools at 22."""
    ctx = site(at(2024, 7, 10, 13, 55))
    params.setdefault("exempt_zones", ["srv-*"])
    # The units here report no reading after a write: no write is issued again within the
    # tests' hours (tests/test_rules_ac_variants.py has the retry).
    params.setdefault("retry", "1d")
    rule = make(DemandResponseRule, ctx, rule_id="dr", **params)
    assert isinstance(rule, DemandResponseRule)
    unit(ctx, rule, "ac-301", 26)
    unit(ctx, rule, "ac-302", 25)
    unit(ctx, rule, "ac-lobby", 24, mode=HEAT)
    unit(ctx, rule, "ac-401", 24, on=0)
    unit(ctx, rule, "ac-srv", 22)
    return ctx, rule


def test_event_raises_cooling_setpoints_and_restores_each_units_own() -> None:
    ctx, rule = dr_site()
    ev = rule.event(EVENT_START, EVENT_END, 1.0, "ev1")
    assert (ev.offset, ev.requested) == (1.0, 1.0)
    assert ctx.tick(rule) == []  # 13:55: not yet
    ctx.now = EVENT_START
    effects = ctx.tick(rule)
    assert sorted(issues(effects), key=lambda c: c.device) == [
        setpoint("ac-301", 27.0, "dr"),
        setpoint("ac-302", 26.0, "dr"),
    ]
    assert raises(effects) == []  # commands are audited; no alarm
    assert all("ev1" in e.reason for e in effects if isinstance(e, Issue))
    # The writes land; nothing is repeated on later ticks or polls.
    ctx.advance(5)
    assert unit(ctx, rule, "ac-301", 27) == []
    assert unit(ctx, rule, "ac-302", 26) == []
    for _ in range(10):
        ctx.advance(60)
        assert ctx.tick(rule) == []
    ctx.now = EVENT_END
    restored = ctx.tick(rule)
    assert sorted(issues(restored), key=lambda c: c.device) == [
        setpoint("ac-301", 26.0, "dr"),
        setpoint("ac-302", 25.0, "dr"),
    ]
    ctx.advance(60)
    assert ctx.tick(rule) == []
    assert rule.snapshot() == {}


def test_default_offset_and_the_cap() -> None:
    ctx, rule = dr_site()
    assert rule.event(EVENT_START, EVENT_END).offset == 1.0  # the rule's default offset
    ev = rule.event(EVENT_START, EVENT_END, 3.0, "big")
    assert (ev.offset, ev.requested) == (2.0, 3.0)  # max_offset
    ctx.now = EVENT_START
    got = {c.device: c.value for c in issues(ctx.tick(rule))}
    assert got == {"ac-301": 28.0, "ac-302": 27.0}  # the largest offset of both events


def test_never_writes_outside_the_writable_range() -> None:
    ctx, rule = dr_site(max_offset=3)
    unit(ctx, rule, "ac-301", 31.5)
    unit(ctx, rule, "ac-302", 32)  # at the top already
    rule.event(EVENT_START, EVENT_END, 3, "ev1")
    ctx.now = EVENT_START
    assert issues(ctx.tick(rule)) == [setpoint("ac-301", 32.0, "dr")]  # 31.5 + 3 capped at 32
    ctx.now = EVENT_END
    assert issues(ctx.tick(rule)) == [setpoint("ac-301", 31.5, "dr")]  # 302 was never written


def test_exempt_and_unwritable_units_take_no_part() -> None:
    ctx = site(EVENT_START)
    ctx.devices["ac-ro"] = DeviceInfo(
        "ac-ro", "hvac", "split", {"zone": "305"}, {"setpoint_degc": PointInfo("degC")}
    )
    rule = make(DemandResponseRule, ctx, exempt_zones=["srv-*"], scope={"zones": ["srv-*", "305"]})
    assert rule.watched == []
    unit(ctx, rule, "ac-srv", 22)
    unit(ctx, rule, "ac-ro", 24)
    assert isinstance(rule, DemandResponseRule)
    rule.event(EVENT_START, EVENT_END, 1, "ev1")
    assert ctx.tick(rule) == []


def test_cancel_restores_at_the_next_tick() -> None:
    ctx, rule = dr_site()
    rule.event(EVENT_START, EVENT_END, 1, "ev1")
    ctx.now = EVENT_START
    assert len(issues(ctx.tick(rule))) == 2
    ctx.advance(600)
    assert rule.cancel("ev1") is True
    assert rule.cancel("ev1") is False
    assert rule.cancel("nope") is False
    got = {c.device: c.value for c in issues(ctx.tick(rule))}
    assert got == {"ac-301": 26.0, "ac-302": 25.0}


def test_cancel_a_pending_event() -> None:
    ctx, rule = dr_site()
    rule.event(EVENT_START, EVENT_END, 1, "ev1")
    assert rule.cancel("ev1")
    ctx.now = EVENT_START
    assert ctx.tick(rule) == []
    assert rule.snapshot() == {}


def test_restart_in_the_middle_of_an_event_still_restores() -> None:
    ctx, rule = dr_site()
    rule.event(EVENT_START, EVENT_END, 1, "ev1")
    rule2 = restart(rule, ctx)  # a restart before the start keeps the pending event
    assert isinstance(rule2, DemandResponseRule)
    ctx.now = EVENT_START
    assert len(issues(ctx.tick(rule2))) == 2
    ctx.advance(5)
    unit(ctx, rule2, "ac-301", 27)
    unit(ctx, rule2, "ac-302", 26)
    ctx.advance(1200)
    rule3 = restart(rule2, ctx)
    ctx.values.clear()  # the engine knows nothing yet
    ctx.advance(1)
    assert ctx.tick(rule3) == []  # nothing written twice
    unit(ctx, rule3, "ac-301", 27)
    unit(ctx, rule3, "ac-302", 26)
    ctx.now = EVENT_END + timedelta(minutes=30)  # the gateway was down when the event ended
    rule4 = restart(rule3, ctx)
    got = {c.device: c.value for c in issues(ctx.tick(rule4))}
    assert got == {"ac-301": 26.0, "ac-302": 25.0}


def test_a_manual_change_during_the_event_is_kept() -> None:
    ctx, rule = dr_site()
    rule.event(EVENT_START, EVENT_END, 1, "ev1")
    ctx.now = EVENT_START
    ctx.tick(rule)
    ctx.advance(2)
    assert unit(ctx, rule, "ac-301", 26) == []  # our write has not landed yet: not a change
    ctx.advance(3)
    unit(ctx, rule, "ac-301", 27)
    unit(ctx, rule, "ac-302", 26)
    ctx.advance(600)
    assert unit(ctx, rule, "ac-301", 25) == []  # someone in 301 wants 25 °C
    ctx.advance(60)
    assert ctx.tick(rule) == []  # not overridden during the event
    ctx.now = EVENT_END
    assert issues(ctx.tick(rule)) == [setpoint("ac-302", 25.0, "dr")]  # 301 keeps 25


def test_restore_manual_restores_every_unit() -> None:
    ctx, rule = dr_site(restore_manual=True)
    rule.event(EVENT_START, EVENT_END, 1, "ev1")
    ctx.now = EVENT_START
    ctx.tick(rule)
    ctx.advance(600)
    unit(ctx, rule, "ac-301", 28)
    ctx.now = EVENT_END
    got = {c.device: c.value for c in issues(ctx.tick(rule))}
    assert got == {"ac-301": 26.0, "ac-302": 25.0}


def test_a_manual_change_seen_only_at_the_end_is_kept() -> None:
    # The last poll before the end carries the person's value; no sample reached on_sample
    # in between (e.g. just after a restart).
    ctx, rule = dr_site()
    rule.event(EVENT_START, EVENT_END, 1, "ev1")
    ctx.now = EVENT_START
    ctx.tick(rule)
    ctx.set_latest("ac-301", "setpoint_degc", 24)
    ctx.now = EVENT_END
    assert issues(ctx.tick(rule)) == [setpoint("ac-302", 25.0, "dr")]


def test_a_unit_that_starts_cooling_during_the_event_joins_it() -> None:
    ctx, rule = dr_site()
    rule.event(EVENT_START, EVENT_END, 1, "ev1")
    ctx.now = EVENT_START
    ctx.tick(rule)
    ctx.advance(600)
    unit(ctx, rule, "ac-401", 25)  # switched on
    assert issues(ctx.tick(rule)) == [setpoint("ac-401", 26.0, "dr")]
    ctx.now = EVENT_END
    got = {c.device: c.value for c in issues(ctx.tick(rule))}
    assert got == {"ac-301": 26.0, "ac-302": 25.0, "ac-401": 25.0}


def test_max_duration_ends_the_event() -> None:
    ctx, rule = dr_site()
    ev = rule.event(EVENT_START, EVENT_START + timedelta(hours=8), 1, "long")
    assert ev.end == (EVENT_START + timedelta(hours=4)).timestamp()
    ctx.now = EVENT_START
    ctx.tick(rule)
    ctx.now = EVENT_START + timedelta(hours=3, minutes=59)
    assert ctx.tick(rule) == []
    ctx.now = EVENT_START + timedelta(hours=4)
    assert len(issues(ctx.tick(rule))) == 2


def test_overlapping_events_use_the_largest_offset() -> None:
    ctx, rule = dr_site()
    rule.event(EVENT_START, EVENT_START + timedelta(hours=2), 1, "ev1")
    rule.event(EVENT_START + timedelta(minutes=30), EVENT_START + timedelta(hours=1), 2, "ev2")
    ctx.now = EVENT_START
    assert {c.device: c.value for c in issues(ctx.tick(rule))} == {"ac-301": 27, "ac-302": 26}
    unit(ctx, rule, "ac-301", 27)
    ctx.now = EVENT_START + timedelta(minutes=30)
    assert {c.device: c.value for c in issues(ctx.tick(rule))} == {"ac-301": 28, "ac-302": 27}
    ctx.advance(2)
    assert unit(ctx, rule, "ac-301", 27) == []  # the second write not landed: still ours
    ctx.now = EVENT_START + timedelta(hours=1)
    assert {c.device: c.value for c in issues(ctx.tick(rule))} == {"ac-301": 27, "ac-302": 26}
    ctx.now = EVENT_START + timedelta(hours=2)
    assert {c.device: c.value for c in issues(ctx.tick(rule))} == {"ac-301": 26, "ac-302": 25}


def test_an_event_resent_with_the_same_id_replaces_it() -> None:
    ctx, rule = dr_site()
    rule.event(EVENT_START, EVENT_END, 1, "ev1")
    rule.event(EVENT_START, EVENT_END + timedelta(hours=1), 1, "ev1")
    assert list(rule.events) == ["ev1"]
    ctx.now = EVENT_START
    ctx.tick(rule)
    ctx.now = EVENT_END
    assert ctx.tick(rule) == []  # still running
    ctx.now = EVENT_END + timedelta(hours=1)
    assert len(issues(ctx.tick(rule))) == 2


def test_an_event_received_late_still_runs_to_its_end() -> None:
    ctx, rule = dr_site()
    ctx.now = EVENT_START + timedelta(minutes=20)
    rule.event(EVENT_START, EVENT_END, 1, "ev1")
    assert len(issues(ctx.tick(rule))) == 2
    ctx2, rule2 = dr_site()
    rule2.event(EVENT_START - timedelta(hours=2), EVENT_START - timedelta(hours=1), 1, "old")
    assert ctx2.tick(rule2) == []  # already over: dropped
    assert rule2.events == {}


@pytest.mark.parametrize(
    ("start", "end", "offset"),
    [
        (datetime(2024, 7, 10, 14), datetime(2024, 7, 10, 15), 1.0),  # no time zone
        (EVENT_END, EVENT_START, 1.0),  # reversed
        (EVENT_START, EVENT_START, 1.0),
        (EVENT_START, EVENT_END, 0.0),
        (EVENT_START, EVENT_END, -1.0),
        (EVENT_START, EVENT_END, float("nan")),
    ],
)
def test_bad_events_are_refused(start: datetime, end: datetime, offset: float) -> None:
    _, rule = dr_site()
    with pytest.raises(ValueError, match=r"."):
        rule.event(start, end, offset, "bad")
    assert rule.events == {}


def test_event_times_in_another_zone() -> None:
    ctx, rule = dr_site()
    rule.event(EVENT_START.astimezone(UTC), EVENT_END.astimezone(UTC), 1, "ev1")
    ctx.now = EVENT_START
    assert len(issues(ctx.tick(rule))) == 2


def test_dr_params_are_validated() -> None:
    with pytest.raises(ValidationError):
        DemandResponseRule.Params.model_validate({"max_offset": 0})
    p = DemandResponseRule.Params.model_validate({"max_duration": "2h", "offset": 2})
    assert p.model_dump()["max_duration"] == 7200


def test_idle_dr_costs_nothing() -> None:
    ctx, rule = dr_site()
    assert rule.on_tick(ctx) == ()
    assert rule.on_sample(Sample("ac-301", 0, {"setpoint_degc": 20}, {}), ctx) == ()


# --- demand-response events as engine inputs -----------------------------------------------


def dr_engine(*rule_ids: str, now: datetime = EVENT_START) -> tuple[Engine, list[datetime]]:
    """An engine with one demand_response rule per id (and an ac_policy rule, which takes no
    inputs) over the units of dr_site, 301 and 302 cooling at 26 and 25 °C."""
    clock = [now]
    rules: list[Rule] = [AcPolicyRule("policy", AcPolicyRule.Params())]
    rules += [
        DemandResponseRule(r, DemandResponseRule.Params(exempt_zones=["srv-*"])) for r in rule_ids
    ]
    engine = Engine(
        rules, list(site().devices.values()), NATIONAL_DAY, clock=lambda: clock[0], wall=lambda: 0
    )
    for device_id, setpoint_c in (("ac-301", 26), ("ac-302", 25)):
        values: dict[str, Value] = {"mode": COOL, "on_off": 1, "setpoint_degc": setpoint_c}
        engine.on_sample(Sample(device_id, 0, values, {}))
    return engine, clock


def dr_payload(**doc: Any) -> bytes:
    return json.dumps(doc).encode()


GRID_1 = dr_payload(
    id="grid-1", start=EVENT_START.isoformat(), end=EVENT_END.isoformat(), offset=1.5
)


def test_a_dr_payload_parses_into_a_typed_event() -> None:
    assert parse_dr_event(GRID_1) == DemandResponseEvent(
        "grid-1", EVENT_START, EVENT_END, 1.5, source="mqtt"
    )
    assert parse_dr_event(b'{"cancel": "grid-1"}') == DemandResponseCancel("grid-1")
    unnamed = parse_dr_event(dr_payload(start="2024-07-10T14:00+08:00", end=EVENT_END.isoformat()))
    assert unnamed == DemandResponseEvent(
        "dr-2024-07-10T14:00+08:00", EVENT_START, EVENT_END, source="mqtt"
    )
    assert isinstance(unnamed, DemandResponseEvent)
    assert unnamed.offset is None
    # A number as an offset or an id, as the old adapter took them.
    numbered = parse_dr_event(
        dr_payload(id=7, start="2024-07-10T14:00+08:00", end=EVENT_END.isoformat(), offset="2")
    )
    assert numbered == DemandResponseEvent("7", EVENT_START, EVENT_END, 2.0, source="mqtt")


@pytest.mark.parametrize(
    ("payload", "says"),
    [
        (b"not json", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b"[" * 100_000, "not JSON"),
        (b"[1, 2]", "expected a JSON object"),
        (dr_payload(id="x", end=EVENT_END.isoformat()), "start missing"),
        (dr_payload(), "start and end missing"),
        (dr_payload(start="today", end=EVENT_END.isoformat()), "'today' is no ISO time"),
        (dr_payload(start=1720591200, end=EVENT_END.isoformat()), "start must be an ISO time"),
        (dr_payload(start="2024-07-10T14:00", end="2024-07-10T15:00"), "need a time zone"),
        (dr_payload(start=EVENT_END.isoformat(), end=EVENT_START.isoformat()), "not after"),
        (dr_payload(start=EVENT_START.isoformat(), end=EVENT_END.isoformat(), offset=0), "above 0"),
        (
            dr_payload(start=EVENT_START.isoformat(), end=EVENT_END.isoformat(), offset="NaN"),
            "above 0",
        ),
        (
            dr_payload(start=EVENT_START.isoformat(), end=EVENT_END.isoformat(), offset=True),
            "offset must be a number",
        ),
        (
            dr_payload(start=EVENT_START.isoformat(), end=EVENT_END.isoformat(), offset=[1]),
            "offset must be a number",
        ),
        (
            b'{"start": "2024-07-10T14:00+08:00", "end": "2024-07-10T15:00+08:00", '
            b'"offset": 1e999}',
            "above 0",
        ),
        (b'{"cancel": {"id": 1}}', "cancel must be a string"),
    ],
)
def test_a_bad_dr_payload_is_refused_with_what_is_wrong(payload: bytes, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        parse_dr_event(payload)


def test_an_event_input_reaches_every_dr_rule_and_only_them() -> None:
    engine, clock = dr_engine("dr-a", "dr-b")
    event = parse_dr_event(GRID_1)
    outcome = engine.on_input(event)
    assert (outcome.result, outcome.text(), outcome.effects) == ("accepted", "accepted", [])
    assert sorted(outcome.replies) == ["dr-a", "dr-b"]  # the policy rule did not answer
    effects = engine.on_tick()  # the commands follow on the tick
    assert sorted((c.device, c.value, c.origin) for c in issues(effects)) == [
        ("ac-301", 27.5, "rule:dr-a"),
        ("ac-301", 27.5, "rule:dr-b"),
        ("ac-302", 26.5, "rule:dr-a"),
        ("ac-302", 26.5, "rule:dr-b"),
    ]
    clock[0] += timedelta(minutes=10)
    cancelled = engine.on_input(parse_dr_event(b'{"cancel": "grid-1"}'))
    assert (cancelled.result, cancelled.text()) == ("cancelled", "cancelled")
    assert {(c.device, c.value) for c in issues(engine.on_tick())} == {
        ("ac-301", 26.0),
        ("ac-302", 25.0),
    }
    again = engine.on_input(DemandResponseCancel("grid-1"))
    assert (again.result, again.text()) == ("unknown", "unknown event")


def test_an_input_no_rule_takes() -> None:
    engine, _ = dr_engine()
    outcome = engine.on_input(parse_dr_event(GRID_1))
    assert (outcome.result, outcome.replies, outcome.effects) == (None, {}, [])
    assert outcome.text() == "no demand_response rule in this site"


def test_a_rule_that_refuses_an_event_says_why() -> None:
    engine, _ = dr_engine("dr")
    for n in range(DemandResponseRule.MAX_EVENTS):
        assert engine.on_input(DemandResponseEvent(f"ev{n}", EVENT_START, EVENT_END)).result == (
            "accepted"
        )
    outcome = engine.on_input(DemandResponseEvent("one-more", EVENT_START, EVENT_END))
    assert outcome.result == "refused"
    assert outcome.text() == "refused: rule dr: 100 events already pending"
    # A resend of a known event is an update, not one more.
    assert engine.on_input(DemandResponseEvent("ev0", EVENT_START, EVENT_END, 2)).result == (
        "accepted"
    )


def test_a_rule_failing_on_an_input_is_counted_and_the_input_refused() -> None:
    engine, _ = dr_engine("dr")

    class Broken(DemandResponseRule):
        def on_input(self, event: Input, ctx: Context) -> InputReply | None:
            raise RuntimeError("bug")

    engine.rules.append(Broken("broken", DemandResponseRule.Params()))
    outcome = engine.on_input(parse_dr_event(GRID_1))
    assert outcome.result == "refused"
    assert outcome.text().startswith("refused: rule broken: failed")
    assert outcome.replies["dr"].result == "accepted"
    assert engine.errors == {"broken": 1}


def test_an_event_input_survives_a_restart_in_the_rule_snapshot() -> None:
    engine, _ = dr_engine("dr", now=EVENT_START - timedelta(minutes=5))
    assert engine.on_input(parse_dr_event(GRID_1)).result == "accepted"
    assert engine.on_tick() == []  # not yet begun
    state = json.loads(json.dumps(engine.snapshot()))
    fresh, fresh_clock = dr_engine("dr", now=EVENT_START)
    fresh.restore(state)
    assert {(c.device, c.value) for c in issues(fresh.on_tick())} == {
        ("ac-301", 27.5),
        ("ac-302", 26.5),
    }
    fresh_clock[0] = EVENT_END
    assert {(c.device, c.value) for c in issues(fresh.on_tick())} == {
        ("ac-301", 26.0),
        ("ac-302", 25.0),
    }
