"""The AC policy's local variants (data, not code), the room temperature watch, and the
demand-response strategies (offset, off, 1+1, staggered zones, notice)."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from core.types import Command
from rules.kinds.ac_policy import AcPolicyRule, variant_names
from rules.kinds.ac_room import AcRoomTemperatureRule
from rules.kinds.demand_response import DemandResponseRule
from rules.model import (
    AcWindowSwitch,
    DemandResponseEvent,
    DeviceInfo,
    Effect,
    Issue,
    PointInfo,
    Rule,
)
from tests.rules_fakes import FakeCalendar, FakeContext, at, clears, make, raises
from tests.test_rules_hvac import AC_POINTS, COOL, HEAT, ac, feed, unit

# 2023: Saturday 6 May was a working day (调休 for Labour Day); Sunday 7 May was not.
LABOUR_DAY = FakeCalendar(
    workdays={date(2023, 5, 6)}, holidays={date(2023, 5, d) for d in range(1, 4)}
)
OUTDOOR = DeviceInfo(
    "outdoor-1", "sensor", "z2m_temperature_humidity", {"zone": "roof"},
    {"temperature_degc": PointInfo("degC")},
)  # fmt: skip


def building(now: Any, calendar: FakeCalendar | None = None) -> FakeContext:
    return FakeContext(
        now,
        [
            ac("ac-301", "301"),
            ac("ac-302", "302"),
            ac("ac-hall", "hall", area="public"),
            ac("ac-401", "401"),
            OUTDOOR,
        ],
        calendar or LABOUR_DAY,
    )


def commands(effects: list[Effect]) -> list[Command]:
    return [e.command for e in effects if isinstance(e, Issue)]


def reasons(effects: list[Effect]) -> list[str]:
    return [e.reason for e in effects if isinstance(e, Issue)]


# --- variants --------------------------------------------------------------------------------


def test_the_shipped_variants() -> None:
    assert {"national-2007", "guangdong-public-2021", "jiangsu-2023"} <= set(variant_names())


def test_guangdong_heating_ceiling_is_18_and_the_write_names_the_variant() -> None:
    ctx = building(at(2024, 12, 10, 10, 0))
    rule = make(
        AcPolicyRule,
        ctx,
        variant="guangdong-public-2021",
        outdoor={"device": "outdoor-1"},
        grace=0,
        enforce=True,
    )
    feed(ctx, rule, "outdoor-1", temperature_degc=3.0)  # cold enough to heat
    unit(ctx, rule, "ac-301", 18, mode=HEAT)
    effects = unit(ctx, rule, "ac-301", 19.5, mode=HEAT)  # someone turns it up
    [r] = raises(effects)
    assert (r.kind, r.value, r.limit, r.details["variant"]) == (
        "ac_setpoint_violation",
        19.5,
        18,
        "guangdong-public-2021",
    )
    assert r.details["previous_setpoint"] == 18
    [c] = commands(effects)
    assert (c.point, c.value, c.origin) == ("setpoint_degc", 18, "rule:r1")
    [why] = reasons(effects)
    assert "variant guangdong-public-2021" in why
    assert "19.5" in why


def test_the_site_overrides_what_the_variant_sets() -> None:
    ctx = building(at(2024, 12, 10, 10, 0))
    rule = make(
        AcPolicyRule, ctx, variant="guangdong-public-2021", heating_max=19,
        outdoor={"device": "outdoor-1", "no_heating_above": 8}, grace=0,
    )  # fmt: skip
    assert isinstance(rule, AcPolicyRule)
    assert rule.params.heating_max == 19
    assert rule.params.outdoor is not None
    assert (rule.params.outdoor.no_heating_above, rule.params.outdoor.no_cooling_below) == (8, 30)


@pytest.mark.parametrize(
    ("params", "says"),
    [
        ({"variant": "shanghai-2099"}, "unknown variant 'shanghai-2099'; the shipped ones"),
        ({"variant": "guangdong-public-2021"}, "add outdoor: {device:"),
        ({"overrides": [{"cooling_min": 27}]}, "needs zones or tags"),
        ({"off_windows": [{"name": "w", "start": "11:00", "end": "09:00"}]}, "not after start"),
    ],
)
def test_a_bad_variant_or_override_says_what_to_do(params: dict[str, Any], says: str) -> None:
    with pytest.raises(ValidationError, match=None) as info:
        AcPolicyRule.Params.model_validate(params)
    assert says in str(info.value)


def test_no_cooling_while_the_outdoor_temperature_is_below_30() -> None:
    ctx = building(at(2024, 7, 10, 10, 0))
    rule = make(
        AcPolicyRule, ctx, variant="guangdong-public-2021", outdoor={"device": "outdoor-1"},
        grace=0, enforce=True,
    )  # fmt: skip
    assert unit(ctx, rule, "ac-301", 26, mode=COOL) == []  # outdoor not known: not judged
    feed(ctx, rule, "outdoor-1", temperature_degc=31.5)
    assert unit(ctx, rule, "ac-301", 26, mode=COOL) == []
    effects = feed(ctx, rule, "outdoor-1", temperature_degc=28.0)  # a cool day
    outdoor = [r for r in raises(effects) if r.kind == "ac_outdoor_limit"]
    assert [(r.subject, r.value, r.limit) for r in outdoor] == [("ac-301:outdoor", 28.0, 30)]
    assert commands(effects) == [Command("ac-301", "on_off", 0, "rule:r1")]
    assert "variant guangdong-public-2021" in reasons(effects)[0]
    # Switched off: the alarm clears; a unit in fan mode is no cooling either.
    assert clears(unit(ctx, rule, "ac-301", 26, mode=COOL, on=0))[0].subject == "ac-301:outdoor"
    assert unit(ctx, rule, "ac-302", 26, mode=5) == []
    # An outdoor reading older than max_age is not used.
    ctx.advance(3601)
    assert unit(ctx, rule, "ac-401", 26, mode=COOL) == []


def test_public_areas_at_27_by_tag() -> None:
    ctx = building(at(2024, 7, 10, 10, 0))
    rule = make(AcPolicyRule, ctx, variant="jiangsu-2023", grace=0)
    [r] = raises(unit(ctx, rule, "ac-hall", 26.5, mode=COOL))
    assert (r.subject, r.limit) == ("ac-hall", 27)
    assert raises(unit(ctx, rule, "ac-301", 26.5, mode=COOL)) == []


def test_the_jiangsu_window_on_a_make_up_saturday() -> None:
    # Saturday 6 May 2023 was a working day (调休): the window applies once switched on.
    ctx = building(at(2023, 5, 6, 8, 55))
    rule = make(AcPolicyRule, ctx, variant="jiangsu-2023", grace=0, enforce=True)
    assert unit(ctx, rule, "ac-301", 26, mode=COOL) == []
    ctx.advance(10 * 60)  # 09:05, but no tight-supply day declared
    assert unit(ctx, rule, "ac-301", 26, mode=COOL) == []
    reply = rule.on_input(AcWindowSwitch("tight-supply", True), ctx)
    assert reply is not None
    assert reply.result == "accepted"
    [r] = raises(reply.effects)
    assert (r.kind, r.subject, r.details["start"], r.details["end"]) == (
        "ac_supply_window",
        "ac-301:window",
        "09:00",
        "11:00",
    )
    assert commands(list(reply.effects)) == [Command("ac-301", "on_off", 0, "rule:r1")]
    assert rule.snapshot()["_windows"] == {"tight-supply": True}  # survives a restart
    # Off now; at 11:00 the window is over: a unit switched on is fine.
    unit(ctx, rule, "ac-301", 26, mode=COOL, on=0)
    ctx.now = at(2023, 5, 6, 11, 0)
    assert raises(unit(ctx, rule, "ac-301", 26, mode=COOL)) == []
    # Sunday 7 May is a rest day: the window does not apply.
    ctx.now = at(2023, 5, 7, 9, 30)
    assert raises(unit(ctx, rule, "ac-302", 26, mode=COOL)) == []
    # Monday, switched off by the operator: nothing.
    ctx.now = at(2023, 5, 8, 9, 30)
    rule.on_input(AcWindowSwitch("tight-supply", False), ctx)
    assert raises(unit(ctx, rule, "ac-401", 26, mode=COOL)) == []
    other = rule.on_input(AcWindowSwitch("no-such-window", True), ctx)
    assert other is not None
    assert other.result == "unknown"


def test_a_unit_without_a_mode_is_judged_by_the_season() -> None:
    points = {k: v for k, v in AC_POINTS.items() if k != "mode"}
    simple = DeviceInfo("ac-simple", "hvac", "x", {"zone": "9"}, points)
    ctx = FakeContext(at(2024, 7, 10, 10, 0), [simple])
    rule = make(AcPolicyRule, ctx, grace=0)
    [r] = raises(feed(ctx, rule, "ac-simple", on_off=1, setpoint_degc=24.0))
    assert r.details["direction"] == "below"
    ctx.now = at(2024, 5, 10, 10, 0)  # no season: nothing to say
    assert clears(feed(ctx, rule, "ac-simple", on_off=1, setpoint_degc=24.0))


def test_auto_mode_cools_in_summer() -> None:
    ctx = building(at(2024, 7, 10, 10, 0))
    rule = make(AcPolicyRule, ctx, grace=0)
    [r] = raises(unit(ctx, rule, "ac-301", 22, mode=2))
    assert r.details["direction"] == "below"
    ctx.now = at(2024, 5, 10, 10, 0)
    assert raises(unit(ctx, rule, "ac-302", 22, mode=2)) == []


# --- the room temperature watch ----------------------------------------------------------


def test_a_room_far_colder_than_the_floor_for_long_points_at_an_override() -> None:
    ctx = building(at(2024, 7, 10, 9, 0))
    rule = make(AcRoomTemperatureRule, ctx, delay="2h")
    sample = {"mode": COOL, "on_off": 1, "setpoint_degc": 26.0}
    assert feed(ctx, rule, "ac-301", room_temperature_degc=22.5, **sample) == []  # 26-3 = 23
    ctx.advance(2 * 3600 - 1)
    assert feed(ctx, rule, "ac-301", room_temperature_degc=22.4, **sample) == []
    ctx.advance(1)
    [r] = raises(list(rule.on_tick(ctx)))
    assert (r.kind, r.value, r.limit, r.details["direction"], r.details["hours"]) == (
        "ac_room_temperature",
        22.4,
        23.0,
        "cold",
        2.0,
    )
    # The same room with the unit off is no breach: the alarm clears.
    assert clears(feed(ctx, rule, "ac-301", room_temperature_degc=22.0, on_off=0))
    # A warm room in winter while heating.
    ctx.now = at(2024, 12, 10, 9, 0)
    feed(ctx, rule, "ac-302", room_temperature_degc=24.0, mode=HEAT, on_off=1, setpoint_degc=20.0)
    ctx.advance(7200)
    [r] = raises(list(rule.on_tick(ctx)))
    assert (r.details["direction"], r.limit) == ("warm", 23.0)


# --- demand response strategies ----------------------------------------------------------

START = at(2024, 7, 10, 14, 0)
END = START + timedelta(hours=1)


def dr_site() -> FakeContext:
    ctx = building(START - timedelta(hours=2))
    for device in ("ac-301", "ac-302", "ac-hall", "ac-401"):
        for point, value in {"mode": COOL, "on_off": 1, "setpoint_degc": 26.0}.items():
            ctx.set_latest(device, point, value)
    return ctx


def dr(ctx: FakeContext, **params: Any) -> DemandResponseRule:
    params.setdefault("retry", "1d")  # the writes land unseen here, but in the retry's test
    rule = make(DemandResponseRule, ctx, **params)
    assert isinstance(rule, DemandResponseRule)
    return rule


def send(rule: Rule, ctx: FakeContext, **event: Any) -> str:
    start, end = event.pop("start", START), event.pop("end", END)
    reply = rule.on_input(DemandResponseEvent(event.pop("id", "e1"), start, end, **event), ctx)
    assert reply is not None
    return reply.result + (f": {reply.reason}" if reply.reason else "")


def writes(rule: Rule, ctx: FakeContext) -> list[tuple[str, str, Any]]:
    return [(c.device, c.point, c.value) for c in commands(list(rule.on_tick(ctx)))]


def test_off_switches_cooling_units_off_and_on_again() -> None:
    ctx = dr_site()
    rule = dr(ctx, scope={"devices": ["ac-301", "ac-302"]})
    assert send(rule, ctx, strategy="off") == "accepted"
    assert writes(rule, ctx) == []  # not started
    ctx.now = START
    assert writes(rule, ctx) == [("ac-301", "on_off", 0), ("ac-302", "on_off", 0)]
    # ac-302 reads off, then someone switches it on again: kept on, not switched on at the end
    ctx.set_latest("ac-301", "on_off", 0)
    feed(ctx, rule, "ac-302", on_off=0)
    feed(ctx, rule, "ac-302", on_off=1)
    ctx.advance(600)
    assert writes(rule, ctx) == []  # nobody switched off twice
    ctx.now = END
    assert writes(rule, ctx) == [("ac-301", "on_off", 1)]


def test_precool_then_off_one_plus_one() -> None:
    ctx = dr_site()
    ctx.set_latest("ac-301", "setpoint_degc", 27.0)
    rule = dr(ctx, scope={"devices": ["ac-301", "ac-302"]})
    send(rule, ctx, strategy="precool_off")
    ctx.now = START - timedelta(minutes=59)
    # 27 -> 26 (lowered by 1, never below the 26 °C floor); ac-302 at 26 already: nothing.
    assert writes(rule, ctx) == [("ac-301", "setpoint_degc", 26.0)]
    ctx.now = START
    assert writes(rule, ctx) == [("ac-301", "on_off", 0), ("ac-302", "on_off", 0)]
    ctx.now = END
    assert writes(rule, ctx) == [
        ("ac-301", "setpoint_degc", 27.0),
        ("ac-301", "on_off", 1),
        ("ac-302", "on_off", 1),
    ]


def test_zones_start_and_restore_staggered() -> None:
    ctx = dr_site()
    rule = dr(ctx, stagger="10m", scope={"devices": ["ac-301", "ac-302", "ac-401"]})
    send(rule, ctx, offset=1.0)
    ctx.now = START
    assert writes(rule, ctx) == [("ac-301", "setpoint_degc", 27.0)]  # zone 301 first
    ctx.now = START + timedelta(minutes=10)
    assert writes(rule, ctx) == [("ac-302", "setpoint_degc", 27.0)]
    ctx.now = START + timedelta(minutes=20)
    assert writes(rule, ctx) == [("ac-401", "setpoint_degc", 27.0)]
    for device in ("ac-301", "ac-302", "ac-401"):
        ctx.set_latest(device, "setpoint_degc", 27.0)
    ctx.now = END
    assert writes(rule, ctx) == [("ac-301", "setpoint_degc", 26.0)]
    ctx.now = END + timedelta(minutes=10)
    assert writes(rule, ctx) == [("ac-302", "setpoint_degc", 26.0)]
    ctx.now = END + timedelta(minutes=20)
    assert writes(rule, ctx) == [("ac-401", "setpoint_degc", 26.0)]
    assert rule.snapshot() == {}


def test_event_zones_notice_and_exemptions() -> None:
    ctx = dr_site()
    rule = dr(ctx, min_notice="30m", exempt_zones=["hall"])
    ctx.now = START - timedelta(minutes=10)
    says = send(rule, ctx, id="late")
    assert says.startswith("refused: event late starts 600 s after it arrived; the notice")
    ctx.now = START - timedelta(hours=1)
    assert send(rule, ctx, zones=("30?",)) == "accepted"
    ctx.now = START
    assert writes(rule, ctx) == [
        ("ac-301", "setpoint_degc", 27.0),
        ("ac-302", "setpoint_degc", 27.0),
    ]


def test_an_old_dr_snapshot_still_restores() -> None:
    ctx = dr_site()
    rule = dr(ctx)
    rule.restore(
        {
            "events": {"e1": {"start": START.timestamp(), "end": END.timestamp(), "offset": 1.0}},
            "units": {"ac-301": {"base": 26.0, "target": 27.0, "ours": [26.0, 27.0]}},
        }
    )
    ctx.set_latest("ac-301", "setpoint_degc", 27.0)
    ctx.now = END
    assert ("ac-301", "setpoint_degc", 26.0) in writes(rule, ctx)


def test_a_write_the_unit_does_not_show_is_issued_again() -> None:
    ctx = dr_site()
    rule = dr(ctx, scope={"devices": ["ac-301"]}, retry="1m")
    send(rule, ctx, offset=1.0)
    ctx.now = START
    assert writes(rule, ctx) == [("ac-301", "setpoint_degc", 27.0)]
    ctx.advance(59)
    assert writes(rule, ctx) == []  # not before the retry
    ctx.advance(1)  # the unit still reads 26 °C: refused, failed or lost
    assert writes(rule, ctx) == [("ac-301", "setpoint_degc", 27.0)]
    feed(ctx, rule, "ac-301", setpoint_degc=27.0)  # now it shows
    ctx.advance(120)
    assert writes(rule, ctx) == []
    # Switched off by a second event: the off is issued again until a reading shows it.
    send(rule, ctx, id="e2", strategy="off", start=ctx.now, end=END)
    assert writes(rule, ctx) == [("ac-301", "on_off", 0)]
    ctx.advance(60)
    assert writes(rule, ctx) == [("ac-301", "on_off", 0)]
    feed(ctx, rule, "ac-301", on_off=0)
    ctx.advance(60)
    assert writes(rule, ctx) == []


# --- found in review ---------------------------------------------------------------------


def test_a_window_that_starts_active_and_is_switched_off_stays_off_across_a_restart() -> None:
    ctx = building(at(2023, 5, 8, 9, 30))
    window = {"name": "tight-supply", "start": "09:00", "end": "11:00", "active": True}
    rule = make(AcPolicyRule, ctx, grace=0, enforce=True, off_windows=[window])
    rule.on_input(AcWindowSwitch("tight-supply", False), ctx)
    saved = rule.snapshot()
    again = make(AcPolicyRule, ctx, grace=0, enforce=True, off_windows=[window])
    again.restore(saved)
    assert raises(unit(ctx, again, "ac-301", 26, mode=COOL)) == []


def test_a_unit_whose_on_off_is_not_known_is_not_judged() -> None:
    ctx = building(at(2024, 7, 10, 10, 0))
    rule = make(AcPolicyRule, ctx, grace=0, enforce=True)
    assert feed(ctx, rule, "ac-301", mode=COOL, setpoint_degc=22.0) == []  # on_off not read
    assert raises(feed(ctx, rule, "ac-301", on_off=1, setpoint_degc=22.0))


def test_outdoor_null_turns_a_variants_outdoor_limits_off() -> None:
    params = AcPolicyRule.Params.model_validate(
        {"variant": "guangdong-public-2021", "outdoor": None}
    )
    assert params.outdoor is None
    assert params.heating_max == 18  # the rest of the variant stays


def test_an_offset_event_after_an_off_event_switches_the_unit_on_again() -> None:
    ctx = dr_site()
    rule = dr(ctx, scope={"devices": ["ac-301"]})
    send(rule, ctx, id="off", strategy="off", end=START + timedelta(minutes=30))
    send(rule, ctx, id="offset", offset=1.0)
    ctx.now = START
    assert writes(rule, ctx) == [("ac-301", "on_off", 0)]
    ctx.now = START + timedelta(minutes=30)  # the off event is over, the offset runs on
    assert writes(rule, ctx) == [("ac-301", "on_off", 1), ("ac-301", "setpoint_degc", 27.0)]


def test_precool_off_on_a_unit_that_cannot_be_switched_off_does_not_cool_through() -> None:
    points = {**AC_POINTS, "on_off": PointInfo("")}  # on/off read-only
    fixed = DeviceInfo("ac-9", "hvac", "x", {"zone": "9"}, points)
    ctx = FakeContext(START - timedelta(hours=2), [fixed], LABOUR_DAY)
    for point, value in {"mode": COOL, "on_off": 1, "setpoint_degc": 27.0}.items():
        ctx.set_latest("ac-9", point, value)
    rule = dr(ctx)
    send(rule, ctx, strategy="precool_off")
    ctx.now = START - timedelta(minutes=30)
    assert writes(rule, ctx) == [("ac-9", "setpoint_degc", 26.0)]
    ctx.now = START
    assert writes(rule, ctx) == [("ac-9", "setpoint_degc", 27.0)]  # back, not off


def test_a_unit_in_auto_is_taken_in_summer_only() -> None:
    ctx = dr_site()
    ctx.set_latest("ac-301", "mode", 2)  # CoolMasterNet's Auto
    rule = dr(ctx, scope={"devices": ["ac-301"]})
    send(rule, ctx)
    ctx.now = START
    assert writes(rule, ctx) == [("ac-301", "setpoint_degc", 27.0)]
    winter = at(2024, 12, 10, 14, 0)
    ctx = dr_site()
    ctx.now = winter - timedelta(hours=1)
    ctx.set_latest("ac-301", "mode", 2)
    rule = dr(ctx, scope={"devices": ["ac-301"]})
    send(rule, ctx, start=winter, end=winter + timedelta(hours=1))
    ctx.now = winter
    assert writes(rule, ctx) == []  # it may be heating: raising its setpoint adds load


def test_the_notice_period_does_not_refuse_an_update_of_a_taken_event() -> None:
    ctx = dr_site()
    rule = dr(ctx, min_notice="30m")
    ctx.now = START - timedelta(hours=1)
    assert send(rule, ctx) == "accepted"
    ctx.now = START + timedelta(minutes=10)
    assert send(rule, ctx, end=END + timedelta(hours=1)) == "accepted"  # extended
    assert send(rule, ctx, id="new").startswith("refused")


def test_the_tick_judges_every_unit_when_a_window_opens_and_only_then() -> None:
    # A unit that reports only changes sends nothing at 09:00: the tick judges it.
    ctx = building(at(2023, 5, 6, 8, 55))
    rule = make(AcPolicyRule, ctx, variant="jiangsu-2023", grace=0)
    unit(ctx, rule, "ac-301", 26, mode=COOL)
    rule.on_input(AcWindowSwitch("tight-supply", True), ctx)
    assert list(rule.on_tick(ctx)) == []
    ctx.now = at(2023, 5, 6, 9, 0)
    [r] = raises(list(rule.on_tick(ctx)))
    assert (r.kind, r.subject) == ("ac_supply_window", "ac-301:window")
    ctx.advance(1)
    assert list(rule.on_tick(ctx)) == []  # raised already: nothing again every second
    ctx.now = at(2023, 5, 6, 11, 0)
    assert [c.subject for c in clears(list(rule.on_tick(ctx)))] == ["ac-301:window"]
