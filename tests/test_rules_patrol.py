"""Patrol rounds (巡查) through the real Engine, a fake clock and the real working calendar:
card reads as the Hikvision controllers report them, rounds on time, late, with a checkpoint
skipped or read out of order, on a 调休 Saturday and across restarts; the round records, the
alarms' texts, the parameters' checks and the site schema."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import jsonschema
import pytest
import yaml
from pydantic import ValidationError

from core.types import Sample, Value
from gateway.schema import site_schema
from rules.alarms import AlarmBook
from rules.calendar import WorkCalendar
from rules.calendar import day_kind as day_type
from rules.catalog import Catalog
from rules.engine import Engine
from rules.kinds.patrol import LATE, MISSED, OUT_OF_ORDER, PatrolRule
from rules.model import Clear, DeviceInfo, Effect, PointInfo, Raise, Record
from rules.registry import build_rule
from rules.texts import AlarmTexts

TZ = ZoneInfo("Asia/Shanghai")
CALENDAR = WorkCalendar("Asia/Shanghai")

POINTS = ("access_granted", "card_no", "employee_no", "door_no", "door_open")
DEVICES = [
    DeviceInfo(
        reader,
        "access",
        "hikvision_access_controller",
        {"building": "main", "floor": floor, "zone": zone},
        {p: PointInfo() for p in POINTS},
    )
    for reader, floor, zone in (
        ("ctl-gate", "1", "east-gate"),
        ("ctl-b1", "B1", "garage"),
        ("ctl-roof", "R", "roof"),
        ("ctl-lobby", "1", "lobby"),
    )
]

# Night round on workdays at 22:00, a day round on rest days at 10:00: gate, garage, roof.
ROUTE: dict[str, Any] = {
    "id": "night",
    "name": "夜间外围巡查",
    "grade": "orange",
    "checkpoints": [
        {"reader": "ctl-gate", "name": "东门"},
        {"reader": "ctl-b1", "name": "地下车库", "within": "15m"},
        {"reader": "ctl-roof", "name": "屋面"},
    ],
    "within": "15m",
    "starts": {"workday": ["22:00"], "restday": ["10:00"]},
    "start_tolerance": "10m",
    "grace": "10m",
    "guard_cards": ["G001", "G002"],
}

TUESDAY = (2025, 10, 14)  # a plain workday after the National Day week
MAKEUP_SATURDAY = (2025, 10, 11)  # 调休: worked to pay for the National Day week
PLAIN_SATURDAY = (2025, 10, 18)
NATIONAL_DAY = (2025, 10, 2)


def at(day: tuple[int, int, int], hhmm: str) -> datetime:
    hour, minute = (int(x) for x in hhmm.split(":"))
    return datetime(*day, hour, minute, tzinfo=TZ)


class Site:
    """One patrol rule in the real Engine; the test moves the clock and swipes cards."""

    def __init__(self, now: datetime, **params: Any) -> None:
        self.now = now
        self.entry: dict[str, Any] = {"id": "patrol", "kind": "patrol", "routes": [ROUTE]}
        self.entry.update(params)
        self.effects: list[Effect] = []
        self.engine = self._engine()

    def _engine(self) -> Engine:
        return Engine(
            [build_rule(self.entry)],
            DEVICES,
            CALENDAR,
            "Asia/Shanghai",
            clock=lambda: self.now,
            wall=lambda: self.now.timestamp(),
        )

    @property
    def rule(self) -> PatrolRule:
        rule = self.engine.rules[0]
        assert isinstance(rule, PatrolRule)
        return rule

    def run_until(self, when: datetime, step: float = 60.0) -> None:
        """Tick every `step` seconds up to `when`, as the alarm service does."""
        while self.now < when:
            self.now = min(self.now + timedelta(seconds=step), when)
            self.effects.extend(self.engine.on_tick())

    def swipe(self, when: datetime, reader: str, card: str = "G001", **values: Value) -> None:
        self.run_until(when)
        event: dict[str, Value] = {"access_granted": True, "card_no": card, "door_no": 1}
        event.update(values)
        ts = round(self.now.timestamp() * 1e9)
        self.effects.extend(self.engine.on_sample(Sample(reader, ts, event)))

    def restart(self, down_until: datetime | None = None) -> None:
        """Stop (the state as the alarm store keeps it, through JSON) and start again."""
        state = json.loads(json.dumps(self.engine.snapshot()))
        if down_until is not None:
            self.now = down_until
        self.engine = self._engine()
        self.engine.restore(state)

    # --- what came out -------------------------------------------------------------------

    def raises(self) -> list[Raise]:
        return [e for e in self.effects if isinstance(e, Raise)]

    def clears(self) -> list[Clear]:
        return [e for e in self.effects if isinstance(e, Clear)]

    def records(self) -> list[Record]:
        return [e for e in self.effects if isinstance(e, Record)]

    def rounds(self) -> dict[int, Mapping[str, Value]]:
        """Each round as the last record says it (what InfluxDB keeps), by start time."""
        out: dict[int, Mapping[str, Value]] = {}
        for record in self.records():
            out[record.ts] = record.fields
        return out

    def round_at(self, start: datetime) -> Mapping[str, Value]:
        return self.rounds()[round(start.timestamp()) * 1_000_000_000]


def statuses(fields: Mapping[str, Value]) -> list[Value]:
    return [fields[f"cp{n}_status"] for n in range(1, int(fields["checkpoints"]) + 1)]


# --- the rounds --------------------------------------------------------------------------


def test_a_round_on_time_raises_nothing_and_records_every_checkpoint() -> None:
    site = Site(at(TUESDAY, "21:00"))
    site.swipe(at(TUESDAY, "21:58"), "ctl-gate")  # in the start window: 21:50-22:10
    site.swipe(at(TUESDAY, "22:10"), "ctl-b1")  # 12 min after the gate, 15 allowed
    site.swipe(at(TUESDAY, "22:20"), "ctl-roof")
    site.run_until(at(TUESDAY, "23:59"))

    assert site.raises() == []
    start = at(TUESDAY, "22:00")
    records = site.records()
    assert {r.ts for r in records} == {round(start.timestamp()) * 1_000_000_000}
    assert {r.measurement for r in records} == {"patrol"}
    assert records[-1].tags == {"rule": "patrol", "route": "night"}
    assert records[0].fields["state"] == "open"  # sent when the round opened at 21:50
    final = site.round_at(start)
    assert final["state"] == "closed"
    assert final["result"] == "ok"
    assert final["day_type"] == "workday"
    assert final["watched"] is True
    assert final["guard"] == "G001"
    assert final["route_name"] == "夜间外围巡查"
    assert statuses(final) == ["on_time"] * 3
    assert (final["on_time"], final["missed"]) == (3, 0)
    assert final["cp1_device"] == "ctl-gate"
    assert final["cp1_at"] == at(TUESDAY, "21:58").timestamp()
    assert final["cp3_card"] == "G001"
    assert site.rule.rounds == {}  # closed at the last checkpoint, not at the next round


def test_a_late_checkpoint_raises_patrol_late_with_the_minutes() -> None:
    site = Site(at(TUESDAY, "21:00"))
    site.swipe(at(TUESDAY, "22:05"), "ctl-gate")
    site.swipe(at(TUESDAY, "22:26"), "ctl-b1")  # 21 min: late, but within the 10 min grace
    site.swipe(at(TUESDAY, "22:35"), "ctl-roof")  # 9 min after the garage: on time

    [late] = site.raises()
    assert (late.kind, late.subject, late.grade) == (LATE, "ctl-b1:night:2", "orange")
    assert (late.value, late.limit) == (21.0, 15.0)
    assert late.details["route"] == "夜间外围巡查"
    assert late.details["round"] == "22:00"
    assert late.details["checkpoint"] == 2
    assert late.details["place"] == "main / B1 / garage"
    final = site.round_at(at(TUESDAY, "22:00"))
    assert statuses(final) == ["on_time", "late", "on_time"]
    assert (final["state"], final["result"]) == ("closed", "late")


def test_a_late_start_is_timed_from_the_scheduled_start() -> None:
    site = Site(at(TUESDAY, "21:00"))
    site.swipe(at(TUESDAY, "22:14"), "ctl-gate")  # 10 min tolerance, 10 min grace
    [late] = site.raises()
    assert (late.kind, late.subject, late.value, late.limit) == (
        LATE,
        "ctl-gate:night:1",
        14.0,
        10.0,
    )


def test_a_skipped_checkpoint_is_missed_when_its_time_is_out() -> None:
    site = Site(at(TUESDAY, "21:00"))
    site.swipe(at(TUESDAY, "22:00"), "ctl-gate")
    site.swipe(at(TUESDAY, "22:20"), "ctl-roof")  # the garage passed over
    assert site.raises() == []  # the guard may still go back for it: due 22:15, grace 22:25
    assert site.rule.rounds["night"].status == ["on_time", "skipped", "on_time"]
    site.run_until(at(TUESDAY, "22:25"))
    assert site.raises() == []
    site.run_until(at(TUESDAY, "22:26"))

    [missed] = site.raises()
    assert (missed.kind, missed.subject, missed.grade) == (MISSED, "ctl-b1:night:2", "orange")
    assert missed.details["guard"] == "G001"
    final = site.round_at(at(TUESDAY, "22:00"))
    assert statuses(final) == ["on_time", "missed", "on_time"]
    assert (final["state"], final["result"], final["missed"]) == ("closed", "missed", 1)
    assert "cp2_at" not in final
    # A read after it was missed changes nothing: the round is over.
    site.swipe(at(TUESDAY, "22:30"), "ctl-b1")
    assert len(site.raises()) == 1


def test_a_checkpoint_read_after_a_later_one_is_out_of_order() -> None:
    site = Site(at(TUESDAY, "21:00"))
    site.swipe(at(TUESDAY, "22:00"), "ctl-gate")
    site.swipe(at(TUESDAY, "22:12"), "ctl-roof")
    site.swipe(at(TUESDAY, "22:18"), "ctl-b1")  # went back for the garage before 22:25
    site.run_until(at(TUESDAY, "23:30"))

    [wrong] = site.raises()
    assert (wrong.kind, wrong.subject) == (OUT_OF_ORDER, "ctl-b1:night:2")
    assert (wrong.details["checkpoint"], wrong.details["after"]) == (2, 3)
    final = site.round_at(at(TUESDAY, "22:00"))
    assert statuses(final) == ["on_time", "out_of_order", "on_time"]
    assert (final["state"], final["result"]) == ("closed", "out_of_order")


def test_a_round_nobody_starts_raises_one_alarm_not_one_per_checkpoint() -> None:
    site = Site(at(TUESDAY, "21:00"))
    site.run_until(at(TUESDAY, "23:59"))
    [missed] = site.raises()
    assert (missed.kind, missed.subject) == (MISSED, "ctl-gate:night:1")
    assert "guard" not in missed.details
    final = site.round_at(at(TUESDAY, "22:00"))
    assert statuses(final) == ["missed"] * 3
    assert (final["state"], final["guard"]) == ("closed", "")


def test_reads_by_other_cards_and_other_events_are_no_patrol() -> None:
    site = Site(at(TUESDAY, "21:00"))
    site.swipe(at(TUESDAY, "21:55"), "ctl-gate", card="S999")  # a colleague going home
    site.swipe(at(TUESDAY, "21:56"), "ctl-gate", access_granted=False)
    site.engine.on_sample(
        Sample("ctl-gate", round(site.now.timestamp() * 1e9), {"door_open": True})
    )
    assert site.rule.rounds["night"].status == ["pending"] * 3
    site.swipe(at(TUESDAY, "21:40"), "ctl-lobby")  # no checkpoint
    site.swipe(at(TUESDAY, "22:02"), "ctl-gate", card="G002")
    assert site.rule.rounds["night"].status[0] == "on_time"
    assert site.rule.rounds["night"].guard == "G002"


def test_an_alarm_stays_until_a_later_round_reads_the_checkpoint_on_time() -> None:
    site = Site(at(TUESDAY, "21:00"))
    site.swipe(at(TUESDAY, "22:05"), "ctl-gate")
    site.swipe(at(TUESDAY, "22:26"), "ctl-b1")  # late
    site.swipe(at(TUESDAY, "22:35"), "ctl-roof")
    assert site.clears() == []
    wednesday = (2025, 10, 15)
    site.swipe(at(wednesday, "22:00"), "ctl-gate")
    site.swipe(at(wednesday, "22:10"), "ctl-b1")
    [cleared] = site.clears()
    assert cleared.subject == "ctl-b1:night:2"
    assert len(site.rounds()) == 2


def test_the_next_round_closes_one_still_running() -> None:
    route = {**ROUTE, "starts": {"workday": ["22:00", "22:20"], "restday": []}}
    site = Site(at(TUESDAY, "21:00"), routes=[route])
    site.swipe(at(TUESDAY, "22:00"), "ctl-gate")
    site.run_until(at(TUESDAY, "22:10"))  # the 22:20 round opens: this one is over
    assert [r.subject for r in site.raises()] == ["ctl-b1:night:2", "ctl-roof:night:3"]
    first = site.round_at(at(TUESDAY, "22:00"))
    assert (first["state"], statuses(first)) == ("closed", ["on_time", "missed", "missed"])
    assert site.round_at(at(TUESDAY, "22:20"))["state"] == "open"


# --- the working calendar ----------------------------------------------------------------


def test_day_types_come_from_the_official_calendar() -> None:
    assert CALENDAR.is_workday(date(*MAKEUP_SATURDAY))  # the package knows the 调休 day
    assert day_type(CALENDAR, date(*MAKEUP_SATURDAY), TZ) == "workday"
    assert day_type(CALENDAR, date(2025, 9, 28), TZ) == "workday"  # a make-up Sunday
    assert day_type(CALENDAR, date(*PLAIN_SATURDAY), TZ) == "restday"
    assert day_type(CALENDAR, date(2025, 10, 12), TZ) == "restday"  # after the make-up day
    assert day_type(CALENDAR, date(*NATIONAL_DAY), TZ) == "holiday"
    assert day_type(CALENDAR, date(2025, 10, 4), TZ) == "holiday"  # a Saturday in the break
    assert day_type(CALENDAR, date(2025, 2, 1), TZ) == "holiday"  # Spring Festival weekend
    assert day_type(CALENDAR, date(2025, 1, 26), TZ) == "workday"  # its make-up Sunday


def test_a_makeup_saturday_has_the_workday_rounds() -> None:
    site = Site(at(MAKEUP_SATURDAY, "08:00"))
    site.run_until(at(MAKEUP_SATURDAY, "21:45"))
    assert site.records() == []  # no rest-day round at 10:00
    site.swipe(at(MAKEUP_SATURDAY, "21:58"), "ctl-gate")
    site.swipe(at(MAKEUP_SATURDAY, "22:10"), "ctl-b1")
    site.swipe(at(MAKEUP_SATURDAY, "22:20"), "ctl-roof")
    final = site.round_at(at(MAKEUP_SATURDAY, "22:00"))
    assert (final["day_type"], final["result"], final["state"]) == ("workday", "ok", "closed")
    assert site.raises() == []


def test_a_plain_saturday_and_a_holiday_have_the_rest_day_rounds() -> None:
    route = {**ROUTE, "starts": {"workday": ["22:00"], "restday": ["10:00"], "holiday": ["09:00"]}}
    site = Site(at(PLAIN_SATURDAY, "08:00"), routes=[route])
    site.run_until(at(PLAIN_SATURDAY, "23:59"))
    assert [fields["day_type"] for fields in site.rounds().values()] == ["restday"]
    site.round_at(at(PLAIN_SATURDAY, "10:00"))

    holiday = Site(at(NATIONAL_DAY, "07:00"), routes=[route])
    holiday.run_until(at(NATIONAL_DAY, "23:59"))
    assert [fields["day_type"] for fields in holiday.rounds().values()] == ["holiday"]
    holiday.round_at(at(NATIONAL_DAY, "09:00"))

    default = Site(at(NATIONAL_DAY, "07:00"))  # holiday not given: as on rest days
    default.run_until(at(NATIONAL_DAY, "23:59"))
    assert list(default.rounds()) == [round(at(NATIONAL_DAY, "10:00").timestamp()) * 10**9]


# --- restarts ----------------------------------------------------------------------------


def test_a_restart_mid_round_goes_on_with_the_round() -> None:
    site = Site(at(TUESDAY, "21:00"))
    site.swipe(at(TUESDAY, "21:58"), "ctl-gate")
    site.run_until(at(TUESDAY, "22:03"))
    site.restart(down_until=at(TUESDAY, "22:05"))
    assert site.rule.rounds["night"].status == ["on_time", "pending", "pending"]
    site.swipe(at(TUESDAY, "22:12"), "ctl-b1")  # 14 min after the gate, before the restart
    site.swipe(at(TUESDAY, "22:20"), "ctl-roof")
    site.run_until(at(TUESDAY, "23:00"))
    assert site.raises() == []
    final = site.round_at(at(TUESDAY, "22:00"))
    assert (final["state"], final["result"], final["guard"]) == ("closed", "ok", "G001")
    assert final["cp1_at"] == at(TUESDAY, "21:58").timestamp()


def test_a_restart_keeps_the_raised_alarms_and_the_time_a_skipped_checkpoint_has() -> None:
    site = Site(at(TUESDAY, "21:00"))
    site.swipe(at(TUESDAY, "22:00"), "ctl-gate")
    site.swipe(at(TUESDAY, "22:20"), "ctl-roof")  # garage skipped, missed after 22:25
    site.restart(down_until=at(TUESDAY, "22:22"))
    site.run_until(at(TUESDAY, "22:30"))
    [missed] = site.raises()
    assert missed.subject == "ctl-b1:night:2"
    site.restart()
    site.swipe(at((2025, 10, 15), "22:00"), "ctl-gate")
    site.swipe(at((2025, 10, 15), "22:10"), "ctl-b1")
    assert [c.subject for c in site.clears()] == ["ctl-b1:night:2"]


def test_a_round_that_opened_while_the_gateway_was_down_is_followed_but_not_judged() -> None:
    site = Site(at(TUESDAY, "21:00"))
    site.run_until(at(TUESDAY, "23:59"))  # a first round, nobody came: one alarm
    assert len(site.raises()) == 1
    wednesday = (2025, 10, 15)
    site.run_until(at(wednesday, "21:40"))
    site.restart(down_until=at(wednesday, "22:05"))  # down while the 22:00 round opened
    site.swipe(at(wednesday, "22:08"), "ctl-b1")  # the gate read may have been lost
    site.run_until(at(wednesday, "23:59"))
    assert len(site.raises()) == 1
    final = site.round_at(at(wednesday, "22:00"))
    assert final["watched"] is False
    assert statuses(final) == ["missed", "on_time", "missed"]


def test_a_changed_route_drops_its_running_round_and_clears_gone_checkpoints() -> None:
    site = Site(at(TUESDAY, "21:00"))
    site.swipe(at(TUESDAY, "22:00"), "ctl-gate")
    site.swipe(at(TUESDAY, "22:20"), "ctl-roof")
    site.run_until(at(TUESDAY, "22:30"))  # the garage missed: its alarm stays raised
    wednesday = (2025, 10, 15)
    site.swipe(at(wednesday, "22:00"), "ctl-gate")
    assert "night" in site.rule.rounds
    # Restarted with the garage taken off the route.
    shorter = {**ROUTE, "checkpoints": [ROUTE["checkpoints"][0], ROUTE["checkpoints"][2]]}
    site.entry["routes"] = [shorter]
    site.restart()
    assert site.rule.rounds == {}  # Wednesday's round cannot be judged against the new route
    site.run_until(at(wednesday, "22:01"))
    assert [(c.subject, c.note) for c in site.clears()] == [
        ("ctl-b1:night:2", "the checkpoint is no longer configured")
    ]
    site.swipe(at(wednesday, "22:10"), "ctl-roof")  # no round: nothing to judge
    site.run_until(at((2025, 10, 16), "23:00"))  # Thursday's round is the new route's
    thursday = site.round_at(at((2025, 10, 16), "22:00"))
    assert statuses(thursday) == ["missed", "missed"]


# --- texts, parameters, schema -----------------------------------------------------------


def test_the_alarm_texts_are_complete_in_both_languages() -> None:
    catalog = Catalog.load()
    book = AlarmBook()
    texts = AlarmTexts(catalog, {d.id: d for d in DEVICES})
    site = Site(at(TUESDAY, "21:00"))

    def rendered() -> dict[str, tuple[str, str]]:
        for effect in site.effects:
            if isinstance(effect, Raise | Clear):
                book.apply(effect, site.now.timestamp(), catalog.grade_of)
        site.effects.clear()
        return {a.kind: texts.render(a) for a in book.all()}

    site.swipe(at(TUESDAY, "22:00"), "ctl-gate")
    site.swipe(at(TUESDAY, "22:12"), "ctl-roof")
    site.swipe(at(TUESDAY, "22:18"), "ctl-b1")  # out of order
    assert rendered()[OUT_OF_ORDER] == (
        "main / B1 / garage 巡查点 ctl-b1 顺序错误：路线 夜间外围巡查，"
        "22:00 轮第 2 点在第 3 点之后巡查",
        "main / B1 / garage: patrol checkpoint ctl-b1 out of order: route 夜间外围巡查, "
        "round 22:00, checkpoint 2 read after checkpoint 3",
    )
    wednesday = (2025, 10, 15)
    site.swipe(at(wednesday, "22:00"), "ctl-gate")
    site.swipe(at(wednesday, "22:24"), "ctl-b1")  # late
    site.run_until(at(wednesday, "23:00"))  # the roof missed
    texts_now = rendered()
    # The garage's alarm of Tuesday became Wednesday's late one: one alarm per checkpoint.
    assert OUT_OF_ORDER not in texts_now
    assert texts_now[LATE] == (
        "main / B1 / garage 巡查点 ctl-b1 超时：路线 夜间外围巡查，"
        "22:00 轮第 2 点用时 24 分钟，允许 15 分钟",
        "main / B1 / garage: patrol checkpoint ctl-b1 late: route 夜间外围巡查, round 22:00, "
        "checkpoint 2 after 24 min, 15 min allowed",
    )
    assert (
        texts_now[MISSED][0]
        == "main / R / roof 巡查点 ctl-roof 漏巡：路线 夜间外围巡查，22:00 轮第 3 点"
    )
    assert {a.grade for a in book.all()} == {"orange"}  # the route's grade


@pytest.mark.parametrize("kind", [MISSED, LATE, OUT_OF_ORDER])
def test_the_kinds_texts_use_their_documented_fields(kind: str) -> None:
    spec = Catalog.load().kind(kind)
    for field in spec.params:
        assert f"{{{field}}}" in spec.description, field
    fields = {lang: set(re.findall(r"{(\w+)}", getattr(spec, lang))) for lang in ("zh", "en")}
    assert (
        fields["zh"]
        == fields["en"]
        == {"place", "device", *spec.params} | ({"value", "limit"} if kind == LATE else set())
    )


def test_without_a_route_grade_the_kinds_own_apply() -> None:
    route = {k: v for k, v in ROUTE.items() if k != "grade"}
    site = Site(at(TUESDAY, "21:00"), routes=[route])
    site.run_until(at(TUESDAY, "23:00"))
    [missed] = site.raises()
    assert missed.grade is None
    assert Catalog.load().grade_of(missed.kind, missed.grade) == "yellow"
    site = Site(at(TUESDAY, "21:00"), routes=[route], grade="red")
    site.run_until(at(TUESDAY, "23:00"))
    assert [r.grade for r in site.raises()] == ["red"]


def _route(**change: Any) -> dict[str, Any]:
    return {**ROUTE, **change}


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"routes": [_route(starts={"workday": ["25:00"]})]}, "is not a start time"),
        ({"routes": [_route(starts={"workday": ["22:00", "22:00"]})]}, "listed twice"),
        ({"routes": [_route(starts={"holiday": ["09:00"]})]}, "workday or restday"),
        ({"routes": [ROUTE, ROUTE]}, "used twice"),
        ({"routes": [_route(checkpoints=[])]}, "at least 1"),
        ({"routes": [_route(checkpoints=[{"reader": "x", "within": "5m"}])]}, "remove its within"),
        ({"routes": [_route(within="0s")]}, "greater than 0"),
        ({"routes": [_route(id="Night Route")]}, "pattern"),
        ({"routes": [ROUTE], "scope": {"kinds": ["access"]}}, "remove scope"),
        ({"routes": [_route(checkpoints=[{"reader": "x", "door": 2}])]}, "Extra inputs"),
        ({}, "Field required"),
    ],
)
def test_mistakes_in_the_parameters_are_refused(params: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        build_rule({"id": "p", "kind": "patrol", **params})


def test_every_parameter_is_described_and_the_rule_names_unknown_readers() -> None:
    from rules.kinds.patrol import PatrolCheckpoint, PatrolParams, PatrolRoute, PatrolStarts

    for model in (PatrolParams, PatrolRoute, PatrolCheckpoint, PatrolStarts):
        for name, info in model.model_fields.items():
            assert info.description, f"{model.__name__}.{name}"
    route = _route(checkpoints=[{"reader": "ctl-gate"}, {"reader": "ctl-nowhere"}])
    rule = build_rule({"id": "p", "kind": "patrol", "routes": [route]})
    assert rule.bind(DEVICES) == ["ctl-gate"]
    assert rule.describe() == (
        "patrol routes night (2 checkpoints); readers not in the site: ctl-nowhere"
    )


def test_a_checkpoint_can_be_one_door_or_another_event() -> None:
    route = _route(
        checkpoints=[
            {"reader": "ctl-gate", "match": {"door_no": 2}},
            {"reader": "ctl-b1", "point": "invalid_card", "value": True},
        ],
        guard_cards=[],
    )
    site = Site(at(TUESDAY, "21:00"), routes=[route])
    site.swipe(at(TUESDAY, "21:58"), "ctl-gate", door_no=1)
    assert site.rule.rounds["night"].status == ["pending", "pending"]
    site.swipe(at(TUESDAY, "21:59"), "ctl-gate", door_no=2, card="T-77")
    site.swipe(at(TUESDAY, "22:05"), "ctl-b1", access_granted=False, invalid_card=True)
    final = site.round_at(at(TUESDAY, "22:00"))
    assert statuses(final) == ["on_time", "on_time"]
    assert final["guard"] == "T-77"  # any card counts without guard_cards


SITE = """\
site: {name: t, id: t}
devices:
  - {id: ctl-gate, profile: hikvision_access_controller, mqtt: {vars: {device: gate}}}
rules:
  - id: patrol
    kind: patrol
    routes:
      - id: night
        name: 夜间外围巡查
        grade: orange
        checkpoints:
          - {reader: ctl-gate, name: 东门}
          - {reader: ctl-b1, within: 15m, match: {door_no: 2}}
        starts: {workday: ["22:00", "02:00"], restday: ["10:00"]}
        start_tolerance: 10m
        guard_cards: ["G001"]
"""


def test_the_site_schema_has_the_patrol_kind() -> None:
    schema = site_schema()
    validator = jsonschema.validators.validator_for(schema)(schema)
    data = yaml.safe_load(SITE)
    assert list(validator.iter_errors(data)) == []
    data["rules"][0]["routes"][0]["checkpoints"][0]["door"] = 2
    assert not validator.is_valid(data)
