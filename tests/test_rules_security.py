"""Security rules with a fake clock and calendar: doors, cards, cameras, safety inputs."""

from __future__ import annotations

from datetime import date, datetime, time

import pytest
from pydantic import ValidationError

from core.types import Sample
from rules.blocks import CountWindow
from rules.kinds.security import (
    AfterHoursAccessRule,
    CameraRule,
    DoorForcedRule,
    DoorHeldOpenRule,
    InvalidCardsRule,
    SafetyInputRule,
    flag,
)
from rules.model import Clear, Effect, Raise, Rule
from tests.rules_fakes import FakeCalendar, FakeContext, at, device, kinds, make, raises, restart

# 2024 National Day: 1-7 October off, paid for by Sunday 29 September and Saturday 12 October.
NATIONAL_DAY = FakeCalendar(
    workdays={date(2024, 9, 29), date(2024, 10, 12)},
    holidays={date(2024, 10, d) for d in range(1, 8)},
)
MAKEUP_SATURDAY = at(2024, 10, 12, 10, 0)  # a working Saturday
PLAIN_SATURDAY = at(2024, 10, 19, 10, 0)
HOLIDAY_WEDNESDAY = at(2024, 10, 2, 10, 0)
TUESDAY_OFFICE = at(2024, 10, 15, 10, 0)
TUESDAY_NIGHT = at(2024, 10, 15, 22, 0)

ALL_RULES: list[type[Rule]] = [
    DoorForcedRule,
    DoorHeldOpenRule,
    InvalidCardsRule,
    AfterHoursAccessRule,
    CameraRule,
    SafetyInputRule,
]


def site(now: datetime = TUESDAY_OFFICE) -> FakeContext:
    return FakeContext(
        now,
        [
            device("ctl-vault", zone="vault", floor="B1", building="main"),
            device("ctl-lobby", zone="lobby"),
            device("ctl-archive", zone="archive", use="secured"),
            device("contact-1", zone="vault"),
            device("contact-dock", zone="dock"),
            device("cam-hik", "camera", points=["heartbeat", "video_loss", "tamper"]),
            device("cam-frigate", "camera", points=["video_ok", "motion"]),
            device("fire-panel", "sensor"),
        ],
        NATIONAL_DAY,
    )


# --- common to every rule ----------------------------------------------------------------


@pytest.mark.parametrize("rule_cls", ALL_RULES)
def test_every_param_is_described_and_the_rule_describes_itself(rule_cls: type[Rule]) -> None:
    for name, info in rule_cls.Params.model_fields.items():
        assert info.description, f"{rule_cls.__name__}.Params.{name} has no description"
    params = {"point": "fire_button"} if rule_cls is SafetyInputRule else {}
    rule = make(rule_cls, site(), **params)
    assert rule.kind
    assert rule.describe()


@pytest.mark.parametrize("rule_cls", ALL_RULES)
def test_samples_without_the_rules_points_cost_nothing(rule_cls: type[Rule]) -> None:
    ctx = site()
    params = {"point": "fire_button"} if rule_cls is SafetyInputRule else {}
    rule = make(rule_cls, ctx, **params)
    device_id = "cam-frigate" if rule_cls is CameraRule else "ctl-vault"
    # Cameras treat any message as a sign of life but still have nothing to say.
    out = rule.on_sample(Sample(device_id, int(ctx.t * 1e9), {"battery_pct": 80}), ctx)
    assert out == ()
    assert type(out) is tuple


def test_unknown_params_are_refused() -> None:
    with pytest.raises(ValidationError):
        DoorForcedRule.Params.model_validate({"clear_afterr": "5m"})


def test_flag_reads_bools_numbers_and_words() -> None:
    assert flag(True) is True
    assert flag(0) is False
    assert flag(2) is True
    assert flag("ON") is True
    assert flag("inactive") is False
    assert flag("maybe") is None


# --- door forced -------------------------------------------------------------------------


def forced(
    ctx: FakeContext, rule: Rule, dev: str = "ctl-vault", door: int | None = 1
) -> list[Effect]:
    values: dict[str, bool | int] = {"door_forced_open": True}
    if door is not None:
        values["door_no"] = door
    return ctx.sample(rule, dev, values)


def test_door_forced_in_office_hours_takes_the_sites_grade() -> None:
    ctx = site()
    rule = make(DoorForcedRule, ctx, secured_zones=["vault"])
    [r] = forced(ctx, rule)
    assert isinstance(r, Raise)
    assert (r.rule, r.subject, r.kind, r.grade) == (
        "r1",
        "ctl-vault:door1",
        "door_forced_open",
        None,
    )
    assert r.details["place"] == "main / B1 / vault"
    assert r.details["door_no"] == 1


@pytest.mark.parametrize(
    ("moment", "grade"),
    [
        (TUESDAY_OFFICE, None),
        (TUESDAY_NIGHT, "red"),
        (MAKEUP_SATURDAY, None),  # 调休: a Saturday that is a working day
        (PLAIN_SATURDAY, "red"),
        (HOLIDAY_WEDNESDAY, "red"),  # a weekday inside the National Day holiday
    ],
)
def test_door_forced_is_red_after_hours_in_a_secured_zone(
    moment: datetime, grade: str | None
) -> None:
    ctx = site(moment)
    rule = make(DoorForcedRule, ctx, secured_zones=["va*"])
    assert raises(forced(ctx, rule))[0].grade == grade


def test_door_forced_after_hours_outside_secured_zones_is_not_red() -> None:
    ctx = site(TUESDAY_NIGHT)
    rule = make(DoorForcedRule, ctx, secured_zones=["vault"])
    assert raises(forced(ctx, rule, "ctl-lobby"))[0].grade is None
    # use=secured on the device is as good as a listed zone
    assert raises(forced(ctx, rule, "ctl-archive"))[0].grade == "red"


def test_door_forced_lunch_break_is_not_after_hours_unless_configured() -> None:
    calendar = FakeCalendar(lunch=(time(12, 0), time(13, 30)))
    ctx = FakeContext(at(2024, 10, 15, 12, 15), site().devices.values(), calendar)
    assert raises(forced(ctx, make(DoorForcedRule, ctx, secured_zones=["vault"])))[0].grade is None
    strict = make(DoorForcedRule, ctx, secured_zones=["vault"], breaks_up_to=0)
    assert raises(forced(ctx, strict))[0].grade == "red"


def test_door_forced_repeats_are_quiet_unless_the_alarm_gets_worse() -> None:
    ctx = site(at(2024, 10, 15, 17, 25))
    rule = make(DoorForcedRule, ctx, secured_zones=["vault"])
    assert kinds(forced(ctx, rule)) == ["door_forced_open"]
    ctx.advance(60)
    assert forced(ctx, rule) == []  # still office hours: nothing new
    ctx.advance(300)  # 17:31, after hours
    [again] = forced(ctx, rule)
    assert isinstance(again, Raise)
    assert again.grade == "red"
    ctx.advance(60)
    assert forced(ctx, rule) == []


def test_door_forced_clears_after_the_last_event() -> None:
    ctx = site()
    rule = make(DoorForcedRule, ctx, clear_after="10m")
    forced(ctx, rule)
    ctx.advance(300)
    forced(ctx, rule)  # a second event restarts the 10 minutes
    ctx.advance(599)
    assert ctx.tick(rule) == []
    ctx.advance(1)
    assert ctx.tick(rule) == [Clear("r1", "ctl-vault:door1")]
    assert ctx.tick(rule) == []


def test_door_forced_survives_a_restart() -> None:
    ctx = site(TUESDAY_NIGHT)
    rule = make(DoorForcedRule, ctx, secured_zones=["vault"])
    forced(ctx, rule)
    ctx.advance(300)
    rule = restart(rule, ctx)
    assert forced(ctx, rule) == []  # still raised red: nothing new
    ctx.advance(600)
    assert ctx.tick(rule) == [Clear("r1", "ctl-vault:door1")]


def test_door_forced_false_or_missing_does_nothing() -> None:
    ctx = site()
    rule = make(DoorForcedRule, ctx)
    assert ctx.sample(rule, "ctl-vault", {"door_forced_open": False}) == []
    assert ctx.sample(rule, "ctl-vault", {"door_no": 1}) == []


# --- door held open ----------------------------------------------------------------------


def test_contact_open_longer_than_max_open() -> None:
    ctx = site()
    rule = make(DoorHeldOpenRule, ctx, max_open="3m")
    assert ctx.sample(rule, "contact-1", {"door_open": True}) == []
    ctx.advance(179)
    assert ctx.tick(rule) == []
    ctx.advance(1)
    [r] = ctx.tick(rule)
    assert isinstance(r, Raise)
    assert (r.subject, r.kind, r.value, r.limit) == ("contact-1", "door_held_open", 180, 180.0)
    assert r.details["source"] == "contact"
    ctx.advance(60)
    assert ctx.tick(rule) == []
    assert ctx.sample(rule, "contact-1", {"door_open": True, "battery_pct": 90}) == []
    assert ctx.sample(rule, "contact-1", {"door_open": False}) == [Clear("r1", "contact-1")]
    assert ctx.sample(rule, "contact-1", {"door_open": False}) == []
    ctx.sample(rule, "contact-1", {"door_open": True})
    ctx.advance(180)
    ctx.tick(rule)
    assert ctx.sample(rule, "contact-1", {"door_open": "unknown"}) == []  # not a close


def test_door_closed_before_max_open_never_alarms_and_the_timer_restarts() -> None:
    ctx = site()
    rule = make(DoorHeldOpenRule, ctx, max_open=180)
    ctx.sample(rule, "contact-1", {"door_open": True})
    ctx.advance(170)
    ctx.sample(rule, "contact-1", {"door_open": False})
    ctx.sample(rule, "contact-1", {"door_open": True})
    ctx.advance(170)
    assert ctx.tick(rule) == []
    ctx.advance(10)
    assert kinds(ctx.tick(rule)) == ["door_held_open"]


def test_per_door_limits() -> None:
    ctx = site()
    rule = make(DoorHeldOpenRule, ctx, max_open=180, per_door={"contact-dock": "10m"})
    ctx.sample(rule, "contact-dock", {"door_open": True})
    ctx.sample(rule, "contact-1", {"door_open": True})
    ctx.advance(180)
    assert [e.subject for e in raises(ctx.tick(rule))] == ["contact-1"]
    ctx.advance(420)
    assert [e.subject for e in raises(ctx.tick(rule))] == ["contact-dock"]


def test_controller_held_open_event_and_door_closed_event_per_door() -> None:
    ctx = site()
    rule = make(DoorHeldOpenRule, ctx)
    [r] = ctx.sample(rule, "ctl-vault", {"door_held_open": True, "door_no": 2})
    assert isinstance(r, Raise)
    assert r.subject == "ctl-vault:door2"
    assert r.details["source"] == "controller"
    assert ctx.sample(rule, "ctl-vault", {"door_open": False, "door_no": 1}) == []  # other door
    assert ctx.sample(rule, "ctl-vault", {"door_open": False, "door_no": 2}) == [
        Clear("r1", "ctl-vault:door2")
    ]


def test_held_open_delay_continues_across_a_restart() -> None:
    ctx = site()
    rule = make(DoorHeldOpenRule, ctx, max_open=180)
    ctx.sample(rule, "ctl-vault", {"door_open": True, "door_no": 1})
    ctx.advance(120)
    rule = restart(rule, ctx)
    ctx.advance(59)
    assert ctx.tick(rule) == []
    ctx.advance(1)
    [r] = ctx.tick(rule)
    assert isinstance(r, Raise)
    assert r.subject == "ctl-vault:door1"
    assert r.value == 180
    assert r.details["door_no"] == 1


# --- invalid cards -----------------------------------------------------------------------


def card(
    ctx: FakeContext, rule: Rule, no: str, door: int = 1, dev: str = "ctl-lobby"
) -> list[Effect]:
    return ctx.sample(rule, dev, {"invalid_card": True, "card_no": no, "door_no": door})


def test_count_window_boundary_is_inclusive() -> None:
    w = CountWindow(3, 300)
    assert not w.add(0)
    assert not w.add(150)
    assert w.add(300)  # 0, 150, 300: three within five minutes
    w2 = CountWindow(3, 300)
    w2.add(0)
    w2.add(150)
    assert not w2.add(300.5)  # the first has just left the window
    assert len(w2) == 2
    assert w2.prune(450.5) == 1
    assert w2.prune(601) == 0


def test_count_window_keeps_late_events_in_order_and_restores() -> None:
    w = CountWindow(2, 60)
    w.add(100)
    assert w.add(90)  # late, but within the window
    assert w.times == [90, 100]
    copy = CountWindow(2, 60)
    copy.restore(w.snapshot())
    assert copy.times == [90.0, 100.0]


def test_three_invalid_cards_in_five_minutes() -> None:
    ctx = site()
    rule = make(InvalidCardsRule, ctx)
    assert card(ctx, rule, "111") == []
    ctx.advance(150)
    assert card(ctx, rule, "222") == []
    ctx.advance(150)
    [r] = card(ctx, rule, "111")
    assert isinstance(r, Raise)
    assert (r.subject, r.kind, r.value, r.limit) == (
        "ctl-lobby:door1",
        "invalid_cards_repeated",
        3,
        3,
    )
    assert r.details["cards"] == "111, 222"
    assert r.details["distinct_cards"] == 2


def test_invalid_cards_just_outside_the_window_do_not_alarm() -> None:
    ctx = site()
    rule = make(InvalidCardsRule, ctx)
    card(ctx, rule, "1")
    ctx.advance(150)
    card(ctx, rule, "2")
    ctx.advance(150.5)
    assert card(ctx, rule, "3") == []


def test_invalid_cards_at_different_doors_do_not_add_up() -> None:
    ctx = site()
    rule = make(InvalidCardsRule, ctx)
    card(ctx, rule, "1", door=1)
    card(ctx, rule, "2", door=2)
    assert card(ctx, rule, "3", dev="ctl-vault") == []
    assert kinds(card(ctx, rule, "4", door=1) + card(ctx, rule, "5", door=1)) == [
        "invalid_cards_repeated"
    ]


def test_invalid_cards_count_updates_and_clears_a_window_after_the_last() -> None:
    ctx = site()
    rule = make(InvalidCardsRule, ctx, count=3, window="5m")
    for _ in range(3):
        card(ctx, rule, "9")
        ctx.advance(10)
    [r] = card(ctx, rule, "9")
    assert isinstance(r, Raise)
    assert r.value == 4
    ctx.advance(300)
    assert ctx.tick(rule) == []  # exactly a window after the last card: still inside
    ctx.advance(1)
    assert ctx.tick(rule) == [Clear("r1", "ctl-lobby:door1")]
    assert rule.snapshot()["windows"] == {}


def test_invalid_cards_window_survives_a_restart() -> None:
    ctx = site()
    rule = make(InvalidCardsRule, ctx)
    card(ctx, rule, "1")
    ctx.advance(60)
    card(ctx, rule, "2")
    rule = restart(rule, ctx)
    ctx.advance(60)
    assert kinds(card(ctx, rule, "3")) == ["invalid_cards_repeated"]


# --- after-hours access ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("moment", "alarm"),
    [
        (TUESDAY_OFFICE, False),
        (TUESDAY_NIGHT, True),
        (MAKEUP_SATURDAY, False),
        (PLAIN_SATURDAY, True),
    ],
)
def test_after_hours_access_in_a_secured_zone(moment: datetime, alarm: bool) -> None:
    ctx = site(moment)
    rule = make(AfterHoursAccessRule, ctx, secured_zones=["vault"])
    out = ctx.sample(
        rule, "ctl-vault", {"access_granted": True, "employee_no": "E42", "door_no": 1}
    )
    assert kinds(out) == (["after_hours_access"] if alarm else [])
    if alarm:
        assert raises(out)[0].details["employee_no"] == "E42"


def test_after_hours_access_ignores_open_zones_and_clears_later() -> None:
    ctx = site(TUESDAY_NIGHT)
    rule = make(AfterHoursAccessRule, ctx, secured_zones=["vault"], clear_after="10m")
    assert ctx.sample(rule, "ctl-lobby", {"access_granted": True}) == []
    assert kinds(ctx.sample(rule, "contact-1", {"door_open": True})) == ["after_hours_access"]
    ctx.advance(300)
    assert ctx.sample(rule, "contact-1", {"door_open": True}) == []  # still open: keeps it up
    assert ctx.sample(rule, "contact-1", {"door_open": False}) == []
    ctx.advance(599)
    assert ctx.tick(rule) == []
    ctx.advance(1)
    assert ctx.tick(rule) == [Clear("r1", "contact-1")]


# --- cameras -----------------------------------------------------------------------------


def test_camera_unavailable_longer_than_offline_after() -> None:
    ctx = site()
    rule = make(CameraRule, ctx, offline_after="2m")
    ctx.tick(rule)
    assert ctx.sample(rule, "cam-frigate", {"available": False}) == []
    ctx.advance(119)
    assert ctx.tick(rule) == []
    ctx.advance(1)
    [r] = ctx.tick(rule)
    assert isinstance(r, Raise)
    assert (r.subject, r.kind, r.details["reason"]) == (
        "cam-frigate:camera_offline",
        "camera_offline",
        "unavailable",
    )
    assert ctx.tick(rule) == []
    assert ctx.sample(rule, "cam-frigate", {"available": True}) == [
        Clear("r1", "cam-frigate:camera_offline")
    ]


def test_camera_back_before_offline_after_never_alarms() -> None:
    ctx = site()
    rule = make(CameraRule, ctx)
    ctx.sample(rule, "cam-frigate", {"available": False})
    ctx.advance(100)
    ctx.sample(rule, "cam-frigate", {"available": True})
    ctx.advance(100)
    assert ctx.tick(rule) == []


@pytest.mark.parametrize(
    ("point", "bad", "good", "kind"),
    [
        ("video_ok", False, True, "video_loss"),
        ("video_loss", True, False, "video_loss"),
        ("tamper", True, False, "camera_tamper"),
        ("disk_error", True, False, "recorder_disk_error"),
        ("disk_full", True, False, "recorder_disk_full"),
    ],
)
def test_camera_state_alarms_clear_on_the_opposite(
    point: str, bad: bool, good: bool, kind: str
) -> None:
    ctx = site()
    rule = make(CameraRule, ctx)
    assert ctx.sample(rule, "cam-hik", {point: good}) == []
    [r] = ctx.sample(rule, "cam-hik", {point: bad, "channel_id": "1"})
    assert isinstance(r, Raise)
    assert (r.subject, r.kind) == (f"cam-hik:{kind}", kind)
    assert r.details["channel_id"] == "1"
    assert ctx.sample(rule, "cam-hik", {point: bad}) == []
    assert ctx.sample(rule, "cam-hik", {point: good}) == [Clear("r1", f"cam-hik:{kind}")]


def test_camera_alarms_are_independent() -> None:
    ctx = site()
    rule = make(CameraRule, ctx)
    ctx.sample(rule, "cam-hik", {"tamper": True})
    ctx.sample(rule, "cam-hik", {"disk_full": True})
    assert ctx.sample(rule, "cam-hik", {"tamper": False}) == [Clear("r1", "cam-hik:camera_tamper")]
    assert set(rule.snapshot()["raised"]) == {"cam-hik:recorder_disk_full"}


def test_hikvision_video_loss_event_clears_after_a_quiet_spell() -> None:
    ctx = site()
    rule = make(CameraRule, ctx, video_loss_clear_after="10m", silence_check="off")
    assert kinds(ctx.sample(rule, "cam-hik", {"video_loss": True})) == ["video_loss"]
    ctx.advance(300)
    assert ctx.sample(rule, "cam-hik", {"video_loss": True}) == []  # still lost
    ctx.advance(599)
    assert ctx.tick(rule) == []
    ctx.advance(1)
    assert ctx.tick(rule) == [Clear("r1", "cam-hik:video_loss")]


def test_camera_heartbeat_timeout() -> None:
    ctx = site()
    rule = make(CameraRule, ctx, heartbeat_timeout="10m")
    assert ctx.tick(rule) == []  # the clock starts now, not at the last message before a restart
    ctx.advance(300)
    ctx.sample(rule, "cam-hik", {"heartbeat": True})
    ctx.advance(599)
    assert ctx.tick(rule) == []
    ctx.advance(1)
    [r] = ctx.tick(rule)
    assert isinstance(r, Raise)
    assert (r.subject, r.details["reason"], r.value) == ("cam-hik:camera_offline", "silent", 600)
    # Frigate cameras report changes only: silence says nothing about them by default.
    assert ctx.tick(rule) == []
    assert ctx.sample(rule, "cam-hik", {"motion": True}) == [Clear("r1", "cam-hik:camera_offline")]


def test_camera_silence_check_for_all_cameras_and_the_gateways_own_offline() -> None:
    ctx = site()
    rule = make(CameraRule, ctx, silence_check="all", offline_after="1h")
    ctx.tick(rule)
    ctx.advance(300)
    # The ingest's "went offline" is not a sign of life from the camera.
    ctx.sample(rule, "cam-frigate", {"available": False})
    ctx.advance(300)
    subjects = {e.subject for e in raises(ctx.tick(rule))}
    assert subjects == {"cam-frigate:camera_offline", "cam-hik:camera_offline"}


def test_camera_silence_check_off() -> None:
    ctx = site()
    rule = make(CameraRule, ctx, silence_check="off")
    ctx.tick(rule)
    ctx.advance(86400)
    assert ctx.tick(rule) == []


def test_camera_offline_delay_survives_a_restart() -> None:
    ctx = site()
    rule = make(CameraRule, ctx, offline_after="2m")
    ctx.sample(rule, "cam-frigate", {"available": False})
    ctx.advance(90)
    rule = restart(rule, ctx)
    ctx.advance(30)
    assert kinds(ctx.tick(rule)) == ["camera_offline"]
    rule = restart(rule, ctx)
    assert ctx.sample(rule, "cam-frigate", {"available": True}) == [
        Clear("r1", "cam-frigate:camera_offline")
    ]


# --- safety inputs -----------------------------------------------------------------------


def test_fire_button_event_is_red_and_clears_after_a_while() -> None:
    ctx = site()
    rule = make(SafetyInputRule, ctx, point="fire_button", event=True, clear_after="10m")
    [r] = ctx.sample(rule, "ctl-vault", {"fire_button": True})
    assert isinstance(r, Raise)
    assert (r.subject, r.kind, r.grade) == ("ctl-vault", "fire_alarm", "red")
    ctx.advance(300)
    assert ctx.sample(rule, "ctl-vault", {"fire_button": True}) == []
    ctx.advance(599)
    assert ctx.tick(rule) == []
    ctx.advance(1)
    assert ctx.tick(rule) == [Clear("r1", "ctl-vault")]


def test_gas_input_state_clears_on_false() -> None:
    ctx = site()
    rule = make(SafetyInputRule, ctx, point="gas_alarm", alarm_kind="gas_leak")
    assert ctx.sample(rule, "fire-panel", {"gas_alarm": False}) == []
    [r] = ctx.sample(rule, "fire-panel", {"gas_alarm": True})
    assert isinstance(r, Raise)
    assert (r.kind, r.grade) == ("gas_leak", "red")
    assert ctx.sample(rule, "fire-panel", {"gas_alarm": True}) == []
    assert ctx.sample(rule, "fire-panel", {"gas_alarm": False}) == [Clear("r1", "fire-panel")]
    ctx.advance(86400)
    assert ctx.tick(rule) == []


def test_safety_grades_by_kind_and_override() -> None:
    ctx = site()
    tamper = make(SafetyInputRule, ctx, point="controller_tamper", alarm_kind="device_tamper")
    assert raises(ctx.sample(tamper, "ctl-vault", {"controller_tamper": True}))[0].grade == "orange"
    duress = make(SafetyInputRule, ctx, point="duress", alarm_kind="duress", grade="orange")
    out = ctx.sample(duress, "ctl-vault", {"duress": True, "employee_no": "E7", "door_no": 3})
    [r] = raises(out)
    assert (r.kind, r.grade, r.details["employee_no"], r.details["door_no"]) == (
        "duress",
        "orange",
        "E7",
        3,
    )


def test_normally_closed_modbus_input() -> None:
    ctx = site()
    rule = make(SafetyInputRule, ctx, point="di_1", invert=True)
    assert ctx.sample(rule, "fire-panel", {"di_1": 1}) == []
    assert kinds(ctx.sample(rule, "fire-panel", {"di_1": 0})) == ["fire_alarm"]
    assert ctx.sample(rule, "fire-panel", {"di_1": "garbage"}) == []
    assert ctx.sample(rule, "fire-panel", {"di_1": 1}) == [Clear("r1", "fire-panel")]


def test_safety_alarm_raised_before_a_restart_is_cleared_after_it() -> None:
    ctx = site()
    rule = make(SafetyInputRule, ctx, point="gas_alarm", alarm_kind="gas_leak")
    ctx.sample(rule, "fire-panel", {"gas_alarm": True})
    rule = restart(rule, ctx)
    assert ctx.sample(rule, "fire-panel", {"gas_alarm": True}) == []
    assert ctx.sample(rule, "fire-panel", {"gas_alarm": False}) == [Clear("r1", "fire-panel")]
