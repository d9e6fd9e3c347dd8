"""The duty roster on the real working calendar: 调休 make-up days run workday shifts, weekends
and statutory holidays their own, overnight shifts belong to the day they start on; mistakes
are reported with file, line and key path; gaps are warnings."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import chinese_calendar
import pytest
import yaml

from gateway.config_errors import ConfigError, LineMap
from gateway.notify.roster import (
    Roster,
    RosterConfig,
    classify_day,
    describe_duty,
    load_roster,
    parse_span,
    validate_roster,
)
from rules.calendar import CalendarYear, WorkCalendar

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "config" / "roster.example.yaml"
SHANGHAI = ZoneInfo("Asia/Shanghai")


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=SHANGHAI)


@pytest.fixture(scope="module")
def roster() -> Roster:
    return load_roster(EXAMPLE)


def ids(people: tuple[object, ...]) -> list[str]:
    return [p.id for p in people]  # type: ignore[attr-defined]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "roster.yaml"
    path.write_text(text, encoding="utf-8")
    return path


MINIMAL = """\
people:
  - {id: zhang-wei, name: 张伟, channels: [sms], mobile: "13800138001"}
  - {id: chen-jun, name: 陈军, role: leader, channels: [sms], mobile: "13800138005"}
shifts:
  - name: day
    time: "08:30-17:30"
    days: [workday]
    on_duty: [zhang-wei]
    leader: chen-jun
"""


# -- kinds of day ---------------------------------------------------------------------------


def test_the_calendar_facts_these_tests_rely_on() -> None:
    # Saturday 2026-10-10 is a 调休 workday for National Day; 2026-10-17 an ordinary Saturday.
    assert date(2026, 10, 10).weekday() == 5
    assert chinese_calendar.is_workday(date(2026, 10, 10))
    assert date(2026, 10, 17).weekday() == 5
    assert not chinese_calendar.is_workday(date(2026, 10, 17))
    assert not chinese_calendar.is_workday(date(2026, 10, 1))  # National Day, a Thursday


def test_days_are_judged_by_the_working_calendar() -> None:
    cal = WorkCalendar()
    makeup = classify_day(cal, date(2026, 10, 10))
    assert makeup.kind == "workday"
    assert str(makeup) == "2026-10-10 is a 调休 workday (make-up for National Day 国庆节)"
    assert classify_day(cal, date(2026, 10, 17)).kind == "restday"
    holiday = classify_day(cal, date(2026, 10, 1))
    assert holiday.kind == "holiday"
    assert "National Day 国庆节" in holiday.why
    assert classify_day(cal, date(2026, 10, 3)).kind == "holiday"  # a Saturday inside the break
    assert classify_day(cal, date(2026, 10, 12)).why == "a workday"


def test_the_sites_own_days_and_year_files_name_their_source() -> None:
    year = CalendarYear(
        year=2025,
        source="国务院办公厅关于2025年部分节假日安排的通知 (as carried by chinesecalendar 1.11.0)",
        holidays={
            "春节": [date(2025, 1, 28), date(2025, 2, 4)],
            "国庆节、中秋节": [date(2025, 10, 1), date(2025, 10, 8)],
        },
        workdays=[date(2025, 1, 26), date(2025, 9, 28)],
    )
    cal = WorkCalendar(
        years=[year], extra_workdays=[date(2026, 10, 17)], extra_holidays=[date(2026, 10, 12)]
    )
    assert "nearest holiday 国庆节、中秋节" in classify_day(cal, date(2025, 9, 28)).why
    assert classify_day(cal, date(2025, 10, 2)).why == "a statutory holiday (国庆节、中秋节)"
    inspection = classify_day(cal, date(2026, 10, 17))
    assert (inspection.kind, "extra_workdays" in inspection.why) == ("workday", True)
    closed = classify_day(cal, date(2026, 10, 12))
    assert (closed.kind, "extra_holidays" in closed.why) == ("holiday", True)


# -- who is on duty -------------------------------------------------------------------------


def test_a_make_up_saturday_runs_the_workday_shifts(roster: Roster) -> None:
    duty = roster.on_duty(at("2026-10-10T10:00"))
    assert [s.shift.name for s in duty.shifts] == ["day"]
    assert ids(duty.on_duty) == ["zhang-wei"]
    assert ids(duty.group) == ["zhang-wei", "li-na", "wang-fang"]
    assert ids(duty.leaders) == ["chen-jun"]
    assert duty.reason == (
        "2026-10-10 is a 调休 workday (make-up for National Day 国庆节); shift 'day' 08:30-17:30"
    )


def test_an_ordinary_saturday_and_a_holiday_run_the_weekend_shift(roster: Roster) -> None:
    saturday = roster.on_duty(at("2026-10-17T10:00"))
    assert [s.shift.name for s in saturday.shifts] == ["weekend"]
    assert saturday.today.kind == "restday"
    assert ids(saturday.leaders) == ["liu-ju"]
    national_day = roster.on_duty(at("2026-10-01T12:00"))
    assert [s.shift.name for s in national_day.shifts] == ["weekend"]
    assert national_day.today.kind == "holiday"


def test_overnight_shifts_belong_to_the_day_they_start_on(roster: Roster) -> None:
    # Sunday 03:00 after the make-up Saturday: Saturday's night shift, not a weekend shift.
    sunday = roster.on_duty(at("2026-10-11T03:00"))
    assert [s.shift.name for s in sunday.shifts] == ["night"]
    assert sunday.shifts[0].day.day == date(2026, 10, 10)
    assert sunday.today.kind == "restday"
    assert "began 2026-10-10, a 调休 workday" in sunday.reason
    # At 08:30 the night ends (end excluded) and Sunday's 24-hour weekend shift begins.
    assert [s.shift.name for s in roster.on_duty(at("2026-10-11T08:29")).shifts] == ["night"]
    assert [s.shift.name for s in roster.on_duty(at("2026-10-11T08:30")).shifts] == ["weekend"]
    # Monday 05:00: Sunday's 24-hour shift still runs; a holiday's eve night shift into 10-01.
    monday = roster.on_duty(at("2026-10-19T05:00"))
    assert [(s.shift.name, s.day.day) for s in monday.shifts] == [("weekend", date(2026, 10, 18))]
    eve = roster.on_duty(at("2026-10-01T03:00"))
    assert [(s.shift.name, s.day.kind) for s in eve.shifts] == [("night", "workday")]


def test_shift_boundaries_are_half_open(roster: Roster) -> None:
    assert [s.shift.name for s in roster.on_duty(at("2026-10-12T17:29:59")).shifts] == ["day"]
    assert [s.shift.name for s in roster.on_duty(at("2026-10-12T17:30")).shifts] == ["night"]


def test_a_time_in_another_zone_is_converted_to_the_site(roster: Roster) -> None:
    utc = datetime.fromisoformat("2026-10-10T02:00+00:00")  # 10:00 in Shanghai
    assert [s.shift.name for s in roster.on_duty(utc).shifts] == ["day"]


def test_escalation_tiers_past_the_last_stay_at_the_last(roster: Roster) -> None:
    duty = roster.on_duty(at("2026-10-12T10:00"))
    assert ids(duty.tier(0)) == ["zhang-wei"]
    assert ids(duty.tier(1)) == ["chen-jun"]
    assert ids(duty.tier(2)) == ids(duty.tier(7)) == ["liu-ju"]


def test_without_a_shift_the_fallback_stands_in(tmp_path: Path) -> None:
    roster = load_roster(write(tmp_path, MINIMAL + "fallback: [chen-jun]\n"))
    duty = roster.on_duty(at("2026-10-17T10:00"))
    assert not duty.covered
    assert ids(duty.on_duty) == ["chen-jun"]
    assert "no shift at 10:00: the fallback people" in duty.reason


def test_describe_duty_for_the_roster_command(roster: Roster) -> None:
    text = describe_duty(roster.on_duty(at("2026-10-11T03:00")))
    lines = text.splitlines()
    assert lines[0].startswith("2026-10-11 03:00 CST: 2026-10-11 is a restday")
    assert "shift 'night' 17:30-08:30" in lines[1]
    assert "赵磊 (zhao-lei: dingtalk-duty, sms)" in text
    assert "tier 2 (and every escalation past it): 刘局长" in text


# -- checks ---------------------------------------------------------------------------------


def test_the_example_is_complete(roster: Roster) -> None:
    assert roster.warnings() == []


def test_gaps_are_warnings_per_kind_of_day(tmp_path: Path) -> None:
    roster = load_roster(write(tmp_path, MINIMAL))
    gaps = roster.gaps()
    assert "on a workday: 00:00-08:30, 17:30-24:00 no shift is in force; set fallback: [ids]" in (
        gaps
    )
    assert any(g.startswith("on a restday: 00:00-24:00") for g in gaps)
    assert any(g.startswith("on a holiday: 00:00-24:00") for g in gaps)


def test_gaps_follow_overnight_shifts_into_the_next_kind_of_day(tmp_path: Path) -> None:
    text = MINIMAL + (
        "  - {name: night, time: '17:30-08:30', days: [workday], on_duty: [zhang-wei]}\n"
        "  - {name: rest, time: '08:30-08:30', days: [restday, holiday], on_duty: [chen-jun]}\n"
    )
    gaps = load_roster(write(tmp_path, text)).gaps()
    # Covered everywhere, however the kinds of day follow each other.
    assert gaps == []
    text = (
        MINIMAL + "  - {name: night, time: '17:30-08:30', days: [workday], on_duty: [zhang-wei]}\n"
    )
    gaps = load_roster(write(tmp_path, text)).gaps()
    assert "on a workday after a restday: 00:00-08:30 no shift is in force" in gaps[0]


def test_warnings_name_missing_leaders_and_channels(tmp_path: Path) -> None:
    text = MINIMAL.replace("    leader: chen-jun\n", "").replace(
        "channels: [sms], mobile", "mobile"
    )
    warnings = load_roster(write(tmp_path, text)).warnings()
    assert "shift 'day' has no leader: red alarms and escalation reach none" in warnings
    assert "people[0] (zhang-wei): no channels, so nothing reaches them" in warnings


def test_unknown_people_are_named_with_line_and_key_path(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL.replace("on_duty: [zhang-wei]", "on_duty: [zhang-wie]"))
    with pytest.raises(ConfigError) as err:
        load_roster(path)
    (problem,) = err.value.problems
    assert (problem.file, problem.line, problem.path) == (str(path), 8, "shifts[0].on_duty[0]")
    assert "unknown person 'zhang-wie'; did you mean 'zhang-wei'?" in problem.message


def test_schema_mistakes_are_named_too(tmp_path: Path) -> None:
    text = (
        MINIMAL.replace('time: "08:30-17:30"', 'time: "8.30-17.30"')
        .replace("days: [workday]", "days: [weekday]")
        .replace("leader: chen-jun", "leeder: chen-jun")
    )
    with pytest.raises(ConfigError) as err:
        load_roster(write(tmp_path, text))
    found = {p.path: p.message for p in err.value.problems}
    assert "is not a time span: write HH:MM-HH:MM" in found["shifts[0].time"]
    assert "'weekday' is not allowed" in found["shifts[0].days[0]"]
    assert found["shifts[0].leeder"] == "unknown key 'leeder'; did you mean 'leader'?"


def test_yaml_booleans_and_numbers_are_not_taken_for_text(tmp_path: Path) -> None:
    text = MINIMAL.replace("name: day", "name: off").replace('"13800138001"', "13800138001")
    with pytest.raises(ConfigError) as err:
        load_roster(write(tmp_path, text))
    found = {p.path: p.message for p in err.value.problems}
    assert found["shifts[0].name"].startswith("YAML read this as true/false")
    assert found["people[0].mobile"].startswith("YAML read 13800138001 as a number; put it in")


def test_duplicates_and_empty_tiers_are_refused(tmp_path: Path) -> None:
    text = (
        MINIMAL.replace("id: chen-jun", "id: zhang-wei").replace(
            "days: [workday]", "days: [any, workday]"
        )
        + "escalation: [{on_duty: true}, {}]\n"
    )
    with pytest.raises(ConfigError) as err:
        load_roster(write(tmp_path, text))
    found = {p.path: p.message for p in err.value.problems}
    assert found["people[1].id"] == "'zhang-wei' is already used by people[0]"
    assert "'any' already includes" in found["shifts[0].days"]
    assert found["escalation[1]"].startswith("names nobody")


def test_an_inline_roster_in_the_site_file_is_reported_under_its_prefix() -> None:
    site = "site: {name: x, id: x}\nnotify:\n  roster:\n" + "".join(
        f"    {line}\n" for line in MINIMAL.replace("zhang-wei]", "nobody]").splitlines()
    )
    data = yaml.safe_load(site)
    with pytest.raises(ConfigError) as err:
        validate_roster(
            data["notify"]["roster"], "site.yaml", LineMap.of(site), ("notify", "roster")
        )
    (problem,) = err.value.problems
    assert problem.path == "notify.roster.shifts[0].on_duty[0]"
    assert problem.line == 11
    assert str(problem).startswith("site.yaml:11: notify.roster.shifts[0].on_duty[0]: unknown")


def test_a_roster_that_is_no_mapping(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="a roster is a mapping with people: and shifts:"):
        load_roster(write(tmp_path, "- just a list\n"))


def test_an_unchecked_config_cannot_become_a_roster() -> None:
    data = yaml.safe_load(MINIMAL.replace("leader: chen-jun", "leader: nobody"))
    with pytest.raises(ValueError, match=r"shifts\[0\].leader: unknown person 'nobody'"):
        Roster(RosterConfig.model_validate(data))


@pytest.mark.parametrize(
    ("text", "start", "end"),
    [
        ("08:30-17:30", 510, 1050),
        ("17:30-08:30", 1050, 1440 + 510),
        ("08:30-08:30", 510, 1440 + 510),
        ("00:00-24:00", 0, 1440),
    ],
)
def test_spans(text: str, start: int, end: int) -> None:
    span = parse_span(text)
    assert (span.start, span.end) == (start, end)


@pytest.mark.parametrize("text", ["24:00-08:00", "08:60-09:00", "08:30-24:30", "0830-1730"])
def test_bad_spans(text: str) -> None:
    with pytest.raises(ValueError, match=text):
        parse_span(text)


def test_a_weekend_joined_to_a_statutory_holiday_is_a_holiday_for_shifts_and_patrols() -> None:
    """2024-06-08/09 run into the Dragon Boat Festival on Monday 06-10 (与周末连休): the roster
    and the patrol schedules (rules.calendar.day_kind) both call them holidays."""
    from rules.calendar import WorkCalendar, day_kind

    cal = WorkCalendar("Asia/Shanghai")
    for day in (date(2024, 6, 8), date(2024, 6, 9), date(2024, 6, 10)):
        assert classify_day(cal, day).kind == "holiday" == day_kind(cal, day, cal.tz)
    assert (
        classify_day(cal, date(2024, 6, 15)).kind == "restday" == day_kind(cal, date(2024, 6, 15))
    )
