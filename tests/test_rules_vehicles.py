"""Vehicle rules with a fake clock and calendar: speeding vehicles, unknown plates after hours."""

from __future__ import annotations

from datetime import date, datetime

import pytest
from pydantic import ValidationError

from core.types import Sample
from rules.kinds.vehicles import SpeedingRule, UnknownPlateRule, normalize_plate
from rules.model import Clear
from rules.registry import KINDS, build_rule
from tests.rules_fakes import FakeCalendar, FakeContext, at, device, kinds, make, raises, restart

# 2024 National Day: 1-7 October off, paid for by Sunday 29 September and Saturday 12 October.
NATIONAL_DAY = FakeCalendar(
    workdays={date(2024, 9, 29), date(2024, 10, 12)},
    holidays={date(2024, 10, d) for d in range(1, 8)},
    lunch=None,
)
TUESDAY_OFFICE = at(2024, 10, 15, 10, 0)
TUESDAY_NIGHT = at(2024, 10, 15, 22, 0)
HOLIDAY_NOON = at(2024, 10, 2, 12, 0)
MAKEUP_SATURDAY = at(2024, 10, 12, 10, 0)


def site(now: datetime = TUESDAY_OFFICE) -> FakeContext:
    return FakeContext(
        now,
        [
            device("cam-gate", "camera", zone="gate", building="main"),
            device("cam-garage", "camera", zone="garage"),
            device("ctl-door", "access", zone="lobby"),
        ],
        NATIONAL_DAY,
    )


def car(plate: object = "京A12345", speed: float | None = 30.0, lane: int = 1) -> dict[str, object]:
    values: dict[str, object] = {"vehicle": True, "plate": plate, "lane": lane}
    if speed is not None:
        values["speed_kmh"] = speed
    return values


def test_the_kinds_are_registered_and_describe_themselves() -> None:
    assert KINDS["vehicle_speeding"] is SpeedingRule
    assert KINDS["unknown_vehicle"] is UnknownPlateRule
    for cls in (SpeedingRule, UnknownPlateRule):
        for name, info in cls.Params.model_fields.items():
            assert info.description, f"{cls.__name__}.Params.{name}"
    assert build_rule({"id": "s", "kind": "vehicle_speeding", "limit_kmh": 30}).describe()
    assert build_rule({"id": "u", "kind": "unknown_vehicle"}).describe()


def test_mistakes_in_the_params_are_refused() -> None:
    with pytest.raises(ValidationError):
        build_rule({"id": "s", "kind": "vehicle_speeding"})  # no limit
    with pytest.raises(ValidationError):
        build_rule({"id": "s", "kind": "vehicle_speeding", "limit_kmh": 0})
    with pytest.raises(ValidationError, match="lane 2"):
        build_rule({"id": "s", "kind": "vehicle_speeding", "limit_kmh": 30, "per_lane": {2: -5}})
    with pytest.raises(ValidationError, match="no plate"):
        build_rule({"id": "u", "kind": "unknown_vehicle", "allowed_plates": ["无车牌"]})


def test_plates_are_compared_without_separators() -> None:
    assert normalize_plate("京A·12345") == "京A12345"
    assert normalize_plate(" jing-a 123 45 ") == "JINGA12345"
    assert normalize_plate("无车牌") == "unread"
    assert normalize_plate("") == "unread"
    assert normalize_plate(None) == "unread"


# --- speeding ----------------------------------------------------------------------------


def test_a_vehicle_above_the_limit_raises_one_alarm_per_plate() -> None:
    ctx = site()
    rule = make(SpeedingRule, ctx, limit_kmh=30)
    assert ctx.sample(rule, "cam-gate", car(speed=30.0)) == []  # at the limit is no breach
    [r] = raises(ctx.sample(rule, "cam-gate", car(speed=52.5)))
    assert (r.subject, r.kind, r.value, r.limit) == (
        "cam-gate:京A12345",
        "vehicle_speeding",
        52.5,
        30,
    )
    assert r.details["plate"] == "京A12345"
    assert r.details["lane"] == 1
    assert r.details["place"] == "main / gate"
    [other] = raises(ctx.sample(rule, "cam-gate", car("沪B 99999", speed=41)))
    assert other.subject == "cam-gate:沪B99999"
    # The same car again, faster: the alarm is raised again with the new speed.
    [again] = raises(ctx.sample(rule, "cam-gate", car(speed=60)))
    assert (again.subject, again.value) == ("cam-gate:京A12345", 60.0)


def test_no_speed_measured_is_no_speeding() -> None:
    ctx = site()
    rule = make(SpeedingRule, ctx, limit_kmh=5)
    assert ctx.sample(rule, "cam-gate", car(speed=0.0)) == []  # a camera without a radar
    assert ctx.sample(rule, "cam-gate", car(speed=None)) == []
    assert ctx.sample(rule, "cam-gate", {"video_loss": True}) == []
    assert ctx.sample(rule, "cam-gate", {"speed_kmh": "fast"}) == []


def test_a_lane_has_its_own_limit() -> None:
    ctx = site()
    rule = make(SpeedingRule, ctx, limit_kmh=40, per_lane={2: 15})
    assert ctx.sample(rule, "cam-gate", car(speed=30, lane=1)) == []
    [r] = raises(ctx.sample(rule, "cam-gate", car(speed=30, lane=2)))
    assert (r.limit, r.details["lane"]) == (15, 2)


def test_an_unread_plate_is_its_own_subject() -> None:
    ctx = site()
    rule = make(SpeedingRule, ctx, limit_kmh=30)
    [r] = raises(ctx.sample(rule, "cam-gate", car("无车牌", speed=50)))
    assert (r.subject, r.details["plate"]) == ("cam-gate:unread", "unread")


def test_speeding_clears_after_the_vehicle_was_last_seen_and_survives_a_restart() -> None:
    ctx = site()
    rule = make(SpeedingRule, ctx, limit_kmh=30, clear_after="10m")
    ctx.sample(rule, "cam-gate", car(speed=50))
    ctx.advance(300)
    assert ctx.tick(rule) == []
    rule = restart(rule, ctx)
    ctx.advance(299)
    assert ctx.tick(rule) == []
    ctx.advance(1)
    [c] = ctx.tick(rule)
    assert isinstance(c, Clear)
    assert c.subject == "cam-gate:京A12345"
    assert ctx.tick(rule) == []


def test_speeding_scope_is_cameras() -> None:
    ctx = site()
    rule = make(SpeedingRule, ctx, limit_kmh=30)
    assert [d.id for d in rule.watched] == ["cam-gate", "cam-garage"]


# --- unknown plates after hours ------------------------------------------------------------


def test_an_unknown_plate_after_hours_raises_and_an_allowed_one_does_not() -> None:
    ctx = site(TUESDAY_NIGHT)
    rule = make(UnknownPlateRule, ctx, allowed_plates=["京A·12345", "京B 00001"])
    assert ctx.sample(rule, "cam-gate", car("京A12345")) == []
    assert ctx.sample(rule, "cam-gate", car("京b-00001")) == []
    [r] = raises(ctx.sample(rule, "cam-gate", car("沪C55555")))
    assert (r.subject, r.kind, r.grade) == (
        "cam-gate:沪C55555",
        "unknown_plate_after_hours",
        None,
    )
    assert r.details["plate"] == "沪C55555"
    # The same car turning round at the gate: one alarm.
    assert ctx.sample(rule, "cam-gate", car("沪C55555")) == []


@pytest.mark.parametrize(
    ("now", "alarms"),
    [
        (TUESDAY_OFFICE, 0),
        (TUESDAY_NIGHT, 1),
        (HOLIDAY_NOON, 1),  # a weekday, but a public holiday
        (MAKEUP_SATURDAY, 0),  # a Saturday, but a make-up working day
        (at(2024, 10, 15, 8, 29), 1),
        (at(2024, 10, 15, 8, 30), 0),
    ],
)
def test_working_hours_come_from_the_site_calendar(now: datetime, alarms: int) -> None:
    ctx = site(now)
    rule = make(UnknownPlateRule, ctx)
    assert len(raises(ctx.sample(rule, "cam-gate", car("沪C55555")))) == alarms


def test_a_lunch_break_is_not_after_hours() -> None:
    ctx = FakeContext(
        at(2024, 10, 15, 12, 30),
        [device("cam-gate", "camera")],
        FakeCalendar(lunch=(at(2024, 1, 1, 12).time(), at(2024, 1, 1, 13, 30).time())),
    )
    assert ctx.sample(make(UnknownPlateRule, ctx), "cam-gate", car("沪C55555")) == []
    strict = make(UnknownPlateRule, ctx, breaks_up_to=0)
    assert kinds(ctx.sample(strict, "cam-gate", car("沪C55555"))) == ["unknown_plate_after_hours"]


def test_unread_plates_count_unless_told_otherwise() -> None:
    ctx = site(TUESDAY_NIGHT)
    [r] = raises(ctx.sample(make(UnknownPlateRule, ctx), "cam-gate", car("")))
    assert r.subject == "cam-gate:unread"
    quiet = make(UnknownPlateRule, ctx, unread_plates=False)
    assert ctx.sample(quiet, "cam-gate", car("无车牌")) == []


def test_only_vehicle_events_count() -> None:
    ctx = site(TUESDAY_NIGHT)
    rule = make(UnknownPlateRule, ctx)
    assert ctx.sample(rule, "cam-gate", {"plate": "沪C55555"}) == []
    assert ctx.sample(rule, "cam-gate", {"vehicle": False, "plate": "沪C55555"}) == []
    assert ctx.sample(rule, "cam-gate", {"video_loss": True}) == []


def test_the_unknown_plate_clears_after_quiet_time_and_survives_a_restart() -> None:
    ctx = site(TUESDAY_NIGHT)
    rule = make(UnknownPlateRule, ctx, clear_after="5m")
    ctx.sample(rule, "cam-gate", car("沪C55555"))
    ctx.advance(200)
    ctx.sample(rule, "cam-gate", car("沪C55555"))  # seen again: the quiet time starts over
    rule = restart(rule, ctx)
    ctx.advance(299)
    assert ctx.tick(rule) == []
    assert ctx.sample(rule, "cam-gate", car("沪C55555")) == []  # still raised after restart
    ctx.advance(300)
    assert kinds(ctx.tick(rule)) == ["clear:cam-gate:沪C55555"]


def test_rules_are_cheap_for_other_samples() -> None:
    ctx = site(TUESDAY_NIGHT)
    for rule in (make(SpeedingRule, ctx, limit_kmh=30), make(UnknownPlateRule, ctx)):
        out = rule.on_sample(Sample("cam-gate", 0, {"motion": True}), ctx)
        assert out == ()
