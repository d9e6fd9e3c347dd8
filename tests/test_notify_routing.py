"""Routing by grade and shift on the real calendar (a 调休 Saturday, weekends, holidays,
overnight shifts), quiet hours that never hold red, escalation tiers, resolved notices."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml
from pydantic import ValidationError

from gateway.notify.roster import Roster, RosterConfig, load_roster
from gateway.notify.routing import Route, Router, RoutingConfig, channel_problems
from rules.alarms import Alarm, Transition
from rules.model import Grade

ROOT = Path(__file__).resolve().parent.parent
SHANGHAI = ZoneInfo("Asia/Shanghai")
KINDS = {"dingtalk-duty": "dingtalk", "wecom-duty": "wecom", "sms": "sms", "email": "email"}


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=SHANGHAI)


def alarm(grade: Grade, when: datetime, escalation: int = 0, **changes: object) -> Alarm:
    t = when.timestamp()
    fields: dict[str, object] = {
        "id": "door.d-301",
        "rule": "door",
        "subject": "d-301",
        "kind": "door_forced_open",
        "grade": grade,
        "raised_at": t,
        "updated_at": t,
        "escalation": escalation,
        "escalation_since": t,
    }
    fields.update(changes)
    return Alarm(**fields)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def roster() -> Roster:
    return load_roster(ROOT / "config" / "roster.example.yaml")


@pytest.fixture(scope="module")
def router(roster: Roster) -> Router:
    return Router(RoutingConfig(), roster, KINDS)


def sent(route: Route) -> set[tuple[str, str]]:
    return {(t.person.id, t.channel) for t in route.targets}


def route(router: Router, grade: Grade, when: str, what: str = "raised", n: int = 0) -> Route:
    moment = at(when)
    return router.route(alarm(grade, moment, n), what, moment)  # type: ignore[arg-type]


# -- by grade, on the calendar --------------------------------------------------------------


def test_red_reaches_duty_and_leader_on_every_channel_on_a_make_up_saturday(
    router: Router,
) -> None:
    r = route(router, "red", "2026-10-10T10:00")  # a 调休 workday: the day shift
    assert sent(r) == {
        ("zhang-wei", "dingtalk-duty"),
        ("zhang-wei", "sms"),
        ("chen-jun", "dingtalk-duty"),
        ("chen-jun", "sms"),
    }
    assert not r.held
    assert "调休 workday" in r.reason
    assert {t.why for t in r.targets} == {"on duty", "leader"}


def test_orange_reaches_the_person_on_duty_without_sms(router: Router) -> None:
    assert sent(route(router, "orange", "2026-10-10T10:00")) == {("zhang-wei", "dingtalk-duty")}


def test_yellow_reaches_the_duty_group(router: Router) -> None:
    assert sent(route(router, "yellow", "2026-10-12T10:00")) == {
        ("zhang-wei", "dingtalk-duty"),
        ("li-na", "wecom-duty"),
        ("wang-fang", "email"),
    }


def test_weekends_holidays_and_overnight_shifts(router: Router) -> None:
    saturday = route(router, "red", "2026-10-17T15:00")  # an ordinary Saturday
    assert {p.id for p in saturday.people()} == {"li-na", "liu-ju"}
    holiday = route(router, "red", "2026-10-01T12:00")  # National Day
    assert {p.id for p in holiday.people()} == {"li-na", "liu-ju"}
    # 03:00 on Sunday after the make-up Saturday: Saturday's night shift answers.
    night = route(router, "red", "2026-10-11T03:00")
    assert {p.id for p in night.people()} == {"zhao-lei", "chen-jun"}
    assert "shift 'night' 17:30-08:30 (began 2026-10-10" in night.reason


def test_blue_waits_for_the_daily_digest(router: Router) -> None:
    r = route(router, "blue", "2026-10-12T10:00")
    assert (r.notice, r.targets, r.hold_until) == ("alarm", (), at("2026-10-13T08:30"))
    early = route(router, "blue", "2026-10-12T06:00")
    assert early.hold_until == at("2026-10-12T08:30")


def test_the_digest_goes_to_whoever_is_on_duty_when_it_is_due(router: Router) -> None:
    targets = router.digest_targets(at("2026-10-17T08:30"))  # Saturday: the weekend shift
    assert {(t.person.id, t.channel) for t in targets} == {
        ("li-na", "wecom-duty"),
        ("zhao-lei", "dingtalk-duty"),
    }


# -- quiet hours ----------------------------------------------------------------------------


def test_quiet_hours_hold_yellow_but_never_red(router: Router) -> None:
    yellow = route(router, "yellow", "2026-10-12T23:00")
    assert (yellow.targets, yellow.hold_until) == ((), at("2026-10-13T07:00"))
    after_midnight = route(router, "yellow", "2026-10-13T02:00")
    assert after_midnight.hold_until == at("2026-10-13T07:00")
    red = route(router, "red", "2026-10-12T23:00")
    assert not red.held
    assert {p.id for p in red.people()} == {"zhao-lei", "chen-jun"}
    orange = route(router, "orange", "2026-10-12T23:00")  # sent by default
    assert sent(orange) == {("zhao-lei", "dingtalk-duty")}
    assert not route(router, "yellow", "2026-10-13T07:00").held


def test_orange_may_be_held_and_quiet_hours_may_be_off(roster: Roster) -> None:
    config = RoutingConfig.model_validate({"grades": {"orange": {"quiet": "hold"}}})
    held = Router(config, roster, KINDS)
    assert route(held, "orange", "2026-10-12T23:00").hold_until == at("2026-10-13T07:00")
    never = Router(RoutingConfig.model_validate({"quiet": None}), roster, KINDS)
    assert not route(never, "yellow", "2026-10-12T23:00").held


def test_quiet_hours_on_some_kinds_of_day_only(roster: Roster) -> None:
    config = RoutingConfig.model_validate(
        {"quiet": {"time": "12:00-14:00", "days": ["restday", "holiday"]}}
    )
    router = Router(config, roster, KINDS)
    assert route(router, "yellow", "2026-10-17T13:00").held  # Saturday
    assert not route(router, "yellow", "2026-10-10T13:00").held  # the make-up Saturday


def test_red_can_not_be_configured_to_wait() -> None:
    for rule in ({"quiet": "hold"}, {"digest_only": True}):
        with pytest.raises(ValidationError) as err:
            RoutingConfig.model_validate({"grades": {"red": rule}})
        assert err.value.errors()[0]["loc"] == ("grades", "red")
        assert "red alarms are never held" in str(err.value)


def test_a_grade_given_changes_only_the_keys_written() -> None:
    config = RoutingConfig.model_validate({"grades": {"orange": {"sms": True}}})
    orange = config.grades.of("orange")
    assert (orange.to, orange.sms, orange.quiet) == (["on_duty"], True, "send")
    assert config.grades.of("red").to == ["on_duty", "leader"]


# -- escalation -----------------------------------------------------------------------------


def test_escalation_adds_the_tiers(router: Router) -> None:
    once = route(router, "orange", "2026-10-12T10:00", "escalated", 1)
    assert sent(once) == {("zhang-wei", "dingtalk-duty"), ("chen-jun", "dingtalk-duty")}
    twice = route(router, "orange", "2026-10-12T10:00", "escalated", 2)
    # Tier 2 (the director) is reached by SMS whatever the grade: the tier says sms: true.
    assert sent(twice) == sent(once) | {("liu-ju", "sms"), ("liu-ju", "email")}
    assert {t.why for t in twice.targets if t.person.id == "liu-ju"} == {"tier 2"}
    # Past the last tier, the last tier again.
    assert sent(route(router, "orange", "2026-10-12T10:00", "escalated", 6)) == sent(twice)


def test_escalation_reaches_tier_n_only_when_not_cumulative(roster: Roster) -> None:
    router = Router(RoutingConfig(cumulative=False), roster, KINDS)
    twice = route(router, "orange", "2026-10-12T10:00", "escalated", 2)
    assert {p.id for p in twice.people()} == {"zhang-wei", "liu-ju"}


def test_a_person_reached_by_sms_only_is_not_dropped() -> None:
    data = {
        "people": [{"id": "wu", "name": "吴", "mobile": "13800138009", "channels": ["sms"]}],
        "shifts": [{"name": "all", "time": "00:00-24:00", "days": ["any"], "on_duty": ["wu"]}],
    }
    router = Router(RoutingConfig(), Roster(RosterConfig.model_validate(data)), KINDS)
    (target,) = route(router, "orange", "2026-10-12T10:00").targets
    assert (target.channel, target.why) == ("sms", "on duty; SMS is their only channel")


# -- transitions ----------------------------------------------------------------------------


def test_updates_and_flapping_reach_nobody(router: Router) -> None:
    for what in ("updated", "flapping", "closed"):
        r = route(router, "red", "2026-10-12T10:00", what)
        assert (r.notice, r.targets) == ("none", ())


def test_resolved_notices_go_to_whoever_was_told_without_sms(router: Router) -> None:
    told = [("zhang-wei", "dingtalk-duty"), ("zhang-wei", "sms"), ("li-na", "wecom-duty")]
    moment = at("2026-10-12T10:05")
    r = router.route(alarm("red", moment, acked_at=moment.timestamp()), "acked", moment, told)
    assert r.notice == "resolved"
    assert sent(r) == {("zhang-wei", "dingtalk-duty"), ("li-na", "wecom-duty")}
    # Nobody was told (the alarm waited in a digest): nobody hears it was resolved.
    assert router.route(alarm("red", moment), "acked", moment, told=[]).targets == ()
    # Without the outbox's record: whom the alarm reaches now, SMS left out.
    again = route(router, "red", "2026-10-12T10:05", "cleared")
    assert sent(again) == {("zhang-wei", "dingtalk-duty"), ("chen-jun", "dingtalk-duty")}


def test_a_quiet_transition_reaches_nobody(router: Router) -> None:
    moment = at("2026-10-12T10:00")
    tr = Transition(alarm("red", moment), "raised", moment.timestamp(), quiet=True)
    assert router.route_transition(tr).notice == "none"
    loud = Transition(alarm("red", moment), "raised", moment.timestamp())
    assert {p.id for p in router.route_transition(loud).people()} == {"zhang-wei", "chen-jun"}


def test_unshelving_an_unacknowledged_alarm_tells_again(router: Router) -> None:
    assert route(router, "orange", "2026-10-12T10:00", "unshelved").targets
    moment = at("2026-10-12T10:00")
    acked = alarm("orange", moment, acked_at=moment.timestamp())
    assert router.route(acked, "unshelved", moment).notice == "none"


def test_a_gap_without_fallback_is_said() -> None:
    data = {
        "people": [{"id": "wu", "name": "吴", "channels": ["email"], "email": "wu@example.cn"}],
        "shifts": [{"name": "day", "time": "08:30-17:30", "days": ["workday"], "on_duty": ["wu"]}],
    }
    router = Router(RoutingConfig(), Roster(RosterConfig.model_validate(data)), KINDS)
    r = route(router, "red", "2026-10-17T10:00")
    assert r.targets == ()
    assert "nobody to tell" in r.reason


def test_channel_problems(roster: Roster) -> None:
    kinds = {"dingtalk-duty": "dingtalk", "sms": "sms"}
    routing = RoutingConfig.model_validate({"grades": {"red": {"channels": ["pager"]}}})
    problems = dict(channel_problems(roster, kinds, routing))
    assert problems[("people", 1, "channels", 0)].startswith("no channel 'wecom-duty'")
    assert problems[("grades", "red", "channels", 0)].startswith("no channel 'pager'")
    no_mobile = yaml.safe_load(
        "people: [{id: a, name: A, channels: [sms]}]\n"
        "shifts: [{name: d, time: '08:00-09:00', days: [any], on_duty: [a]}]\n"
    )
    lone = Roster(RosterConfig.model_validate(no_mobile))
    assert channel_problems(lone, {"sms": "sms"}) == [
        (("people", 0, "channels", 0), "'sms' is SMS but a has no mobile; add mobile:")
    ]
