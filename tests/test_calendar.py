"""The working calendar: official holidays and 调休 make-up days, site overrides, office hours in
the site's zone, the fallback for years the library does not know, and seasons."""

from __future__ import annotations

import logging
import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import chinese_calendar
import pytest
import yaml
from pydantic import ValidationError

from core.types import Sample
from rules.calendar import (
    SHIPPED_YEARS,
    CalendarConfig,
    CalendarYear,
    WorkCalendar,
    coverage_warning,
    load_year_file,
    parse_period,
    season,
    shipped_years,
)
from rules.model import Calendar

SHANGHAI = ZoneInfo("Asia/Shanghai")
SEASONS = {"summer": ("06-01", "09-30"), "winter": ("11-15", "03-15")}


def at(day: str, hm: str) -> datetime:
    return datetime.fromisoformat(f"{day}T{hm}").replace(tzinfo=SHANGHAI)


@pytest.fixture
def cal() -> WorkCalendar:
    return WorkCalendar("Asia/Shanghai", office_hours=["08:30-17:30"], lunch="12:00-13:30")


def test_implements_the_rules_calendar_protocol(cal: WorkCalendar) -> None:
    protocol: Calendar = cal  # mypy checks the structure; this keeps the check in the tests
    assert protocol.is_workday(at("2025-10-09", "10:00"))


def test_official_holidays_and_make_up_days(cal: WorkCalendar) -> None:
    # Saturday 2025-10-11 is a 调休 working day paying for the National Day week.
    assert date(2025, 10, 11).weekday() == 5
    assert cal.is_workday(date(2025, 10, 11))
    assert not cal.is_workday(date(2025, 10, 1))  # National Day, a Wednesday
    # Saturday 2026-02-14 makes up for the Spring Festival: the library says so, and so do we.
    assert date(2026, 2, 14).weekday() == 5
    assert chinese_calendar.is_workday(date(2026, 2, 14))
    assert cal.is_workday(date(2026, 2, 14))
    assert not cal.is_workday(date(2025, 11, 8))  # an ordinary Saturday
    assert cal.is_workday(date(2025, 11, 10))  # an ordinary Monday


def test_datetime_is_taken_at_the_site_date(cal: WorkCalendar) -> None:
    # 2025-09-30 17:00 UTC is 2025-10-01 01:00 in Shanghai: a holiday there.
    assert cal.is_workday(datetime(2025, 9, 30, 12, 0, tzinfo=UTC))
    assert not cal.is_workday(datetime(2025, 9, 30, 17, 0, tzinfo=UTC))


def test_site_days_win_over_the_library() -> None:
    cal = WorkCalendar(
        extra_holidays={date(2025, 11, 10)},  # a Monday the site closes
        extra_workdays={date(2025, 10, 3)},  # a National Day holiday the site works
    )
    assert not cal.is_workday(date(2025, 11, 10))
    assert not cal.in_office_hours(at("2025-11-10", "10:00"))
    assert cal.is_workday(date(2025, 10, 3))
    assert cal.in_office_hours(at("2025-10-03", "10:00"))


def test_a_day_cannot_be_both() -> None:
    with pytest.raises(ValueError, match="2025-10-03"):
        WorkCalendar(extra_holidays={date(2025, 10, 3)}, extra_workdays={date(2025, 10, 3)})


@pytest.mark.parametrize(
    ("hm", "expected"),
    [
        ("08:29:59", False),
        ("08:30", True),
        ("11:59:59", True),
        ("12:00", False),  # lunch
        ("13:29", False),
        ("13:30", True),
        ("17:29:59", True),
        ("17:30", False),  # the end is excluded
        ("20:00", False),
    ],
)
def test_office_hour_boundaries(cal: WorkCalendar, hm: str, expected: bool) -> None:
    assert cal.in_office_hours(at("2025-10-09", hm)) is expected


def test_no_office_hours_on_a_holiday_or_weekend(cal: WorkCalendar) -> None:
    assert not cal.in_office_hours(at("2025-10-01", "10:00"))
    assert not cal.in_office_hours(at("2025-11-08", "10:00"))
    assert cal.in_office_hours(at("2025-10-11", "10:00"))  # make-up Saturday


def test_two_periods_equal_one_period_with_lunch(cal: WorkCalendar) -> None:
    split = WorkCalendar(office_hours=["08:30-12:00", "13:30-17:30"])
    for minute in range(0, 24 * 60, 5):
        moment = at("2025-10-09", f"{minute // 60:02d}:{minute % 60:02d}")
        assert split.in_office_hours(moment) == cal.in_office_hours(moment), moment


def test_default_hours_have_no_lunch_break() -> None:
    cal = WorkCalendar()
    assert cal.in_office_hours(at("2025-10-09", "12:30"))
    assert not cal.in_office_hours(at("2025-10-09", "17:30"))


def test_moments_are_converted_to_the_site_zone(cal: WorkCalendar) -> None:
    utc = datetime(2025, 10, 9, 1, 0, tzinfo=UTC)  # 09:00 in Shanghai
    assert cal.local(utc).hour == 9
    assert cal.in_office_hours(utc)
    assert not cal.in_office_hours(datetime(2025, 10, 9, 0, 29, tzinfo=UTC))  # 08:29
    # A naive datetime is site wall-clock time.
    assert cal.in_office_hours(datetime(2025, 10, 9, 9, 0))
    assert not cal.in_office_hours(datetime(2025, 10, 9, 1, 0))
    # Another site, another zone: 01:00 UTC is 02:00 in Paris, not office hours.
    assert not WorkCalendar("Europe/Paris").in_office_hours(utc)


def test_year_without_data_falls_back_to_weekdays_and_warns_once(
    cal: WorkCalendar, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="rules.calendar")
    assert cal.is_workday(date(2027, 1, 4))  # Monday
    assert not cal.is_workday(date(2027, 1, 2))  # Saturday
    assert cal.in_office_hours(at("2027-01-05", "10:00"))
    # The Spring Festival of 2027 is not known: a weekday is a workday.
    assert cal.is_workday(date(2027, 2, 8))
    [warning] = [r.getMessage() for r in caplog.records]
    assert warning.startswith("no calendar data for 2027: working calendar ended on 2026-12-31")
    assert "year_files" in warning
    cal.is_workday(date(2028, 3, 1))
    assert len(caplog.records) == 2
    assert "2028" in caplog.records[1].getMessage()


def test_site_days_apply_in_a_year_without_data() -> None:
    cal = WorkCalendar(extra_workdays={date(2027, 1, 2)}, extra_holidays={date(2027, 1, 4)})
    assert cal.is_workday(date(2027, 1, 2))
    assert not cal.is_workday(date(2027, 1, 4))


@pytest.mark.parametrize(
    ("day", "expected"),
    [
        ("2025-05-31", None),
        ("2025-06-01", "summer"),  # first day included
        ("2025-06-15", "summer"),
        ("2025-09-30", "summer"),  # last day included
        ("2025-10-01", None),
        ("2025-11-14", None),
        ("2025-11-15", "winter"),
        ("2025-12-31", "winter"),
        ("2026-01-01", "winter"),  # winter wraps the new year
        ("2026-02-15", "winter"),
        ("2026-03-15", "winter"),
        ("2026-03-16", None),
    ],
)
def test_seasons(day: str, expected: str | None) -> None:
    assert season(date.fromisoformat(day), SEASONS) == expected


def test_season_of_a_moment_is_taken_in_the_site_zone(cal: WorkCalendar) -> None:
    # 2025-05-31 20:00 UTC is already 06-01 in Shanghai.
    moment = datetime(2025, 5, 31, 20, 0, tzinfo=UTC)
    assert season(moment, SEASONS) is None
    assert cal.season(moment, SEASONS) == "summer"


def test_season_boundaries_are_checked() -> None:
    with pytest.raises(ValueError, match="MM-DD"):
        season(date(2025, 1, 1), {"summer": ("6-1", "09-30")})
    with pytest.raises(ValueError, match="not a day"):
        season(date(2025, 1, 1), {"summer": ("02-30", "09-30")})
    assert season(date(2024, 2, 29), {"leap": ("02-29", "02-29")}) == "leap"


def test_periods_are_checked() -> None:
    assert parse_period(" 8:30 - 17:30 ") == parse_period("08:30-17:30")
    for bad in ["08:30", "17:30-08:30", "25:00-26:00", "08:30-08:30"]:
        with pytest.raises(ValueError, match=r"period|end must|hours are"):
            parse_period(bad)


def test_config_builds_the_calendar() -> None:
    cfg = CalendarConfig.model_validate(
        {
            "office_hours": ["08:30-12:00", "13:30-17:30"],
            "extra_workdays": ["2025-10-03"],
            "extra_holidays": [date(2025, 11, 10)],
        }
    )
    cal = WorkCalendar.from_config(cfg, "Asia/Shanghai")
    assert cal.is_workday(date(2025, 10, 3))
    assert not cal.is_workday(date(2025, 11, 10))
    assert not cal.in_office_hours(at("2025-10-09", "12:30"))
    assert WorkCalendar.from_config(CalendarConfig()).in_office_hours(at("2025-10-09", "12:30"))


@pytest.mark.parametrize(
    "data",
    [
        {"office_hours": ["8.30-17.30"]},
        {"office_hours": []},
        {"lunch": "13:30-12:00"},
        {"timezone": "Asia/Shanghai"},  # the site's, not the calendar's
        {"extra_workdays": ["2025-10-03"], "extra_holidays": ["2025-10-03"]},
        {"extra_holidays": ["2025-02-30"]},
    ],
)
def test_config_refuses_mistakes(data: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        CalendarConfig.model_validate(data)


def test_every_config_field_is_described() -> None:
    for name, info in CalendarConfig.model_fields.items():
        assert info.description, name


# --- year files: announced years as data --------------------------------------------------

# Invented days for the tests, in a year no source knows: NOT the State Council's announcement.
FIXTURE_2027 = """\
year: 2027
source: test fixture, invented days (not an announcement)
holidays:
  测试假日: [2027-01-04, 2027-01-05]
workdays: [2027-01-03]
"""


def readme_example() -> CalendarYear:
    """The year file shown in config/calendar/README.md (2025, as the package has it)."""
    text = (SHIPPED_YEARS / "README.md").read_text(encoding="utf-8")
    block = re.search(r"```yaml\n(.*?)```", text, re.S)
    assert block is not None
    return CalendarYear.model_validate(yaml.safe_load(block.group(1)))


def test_year_files_express_a_real_year_exactly() -> None:
    # The README's example and every shipped year file load; each says the same as the package
    # for every day of a year the package knows, so the format loses nothing.
    files = [readme_example(), *shipped_years()]
    for year in files:
        cal = WorkCalendar(years=[year], shipped=[])
        if year.year not in range(2004, 2027):
            continue
        day = date(year.year, 1, 1)
        while day.year == year.year:
            assert cal.is_workday(day) == chinese_calendar.is_workday(day), day
            day += timedelta(days=1)
    assert files[0].year == 2025


def test_newest_source_wins() -> None:
    example = readme_example()
    # A corrected 2025 (National Day one day shorter) shipped: it replaces the package's.
    shipped = example.model_copy(
        update={
            "holidays": {
                **example.holidays,
                "国庆节、中秋节": [date(2025, 10, 1), date(2025, 10, 7)],
            }
        }
    )
    assert not WorkCalendar(shipped=[]).is_workday(date(2025, 10, 8))
    assert WorkCalendar(shipped=[shipped]).is_workday(date(2025, 10, 8))
    # The site's own file for the year beats the shipped one.
    site = example.model_copy(update={"workdays": [*example.workdays, date(2025, 10, 12)]})
    both = WorkCalendar(years=[site], shipped=[shipped])
    assert not both.is_workday(date(2025, 10, 8))
    assert both.is_workday(date(2025, 10, 12))  # a Sunday, worked in the site's file
    assert both.sources[2025] == "site"
    with pytest.raises(ValueError, match="two year files for 2025"):
        WorkCalendar(years=[site, example])


def test_a_year_file_may_reach_into_the_december_before() -> None:
    year = CalendarYear(
        year=2027,
        source="test fixture, invented days",
        holidays={"元旦": [date(2026, 12, 31), date(2027, 1, 1)]},
    )
    cal = WorkCalendar(years=[year], shipped=[])
    # The newer announcement wins over the package's 2026 for a day it names.
    assert chinese_calendar.is_workday(date(2026, 12, 31))
    assert not cal.is_workday(date(2026, 12, 31))
    assert cal.is_workday(date(2026, 12, 30))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"holidays": {"春节": [date(2027, 2, 11), date(2027, 2, 5)]}}, "give \\[first, last\\]"),
        ({"holidays": {"春节": [date(2028, 1, 1)]}}, "2028-01-01 is not in 2027"),
        ({"workdays": [date(2026, 6, 1)]}, "2026-06-01 is not in 2027"),
        ({"workdays": [date(2027, 1, 4)]}, "both holiday and make-up workday: 2027-01-04"),
        ({"source": ""}, "source"),
        ({"extra": 1}, "extra"),
    ],
)
def test_a_wrong_year_file_is_refused(change: dict[str, object], message: str) -> None:
    data = {**yaml.safe_load(FIXTURE_2027), **change}
    with pytest.raises(ValidationError, match=message):
        CalendarYear.model_validate(data)


def test_coverage_warning_from_60_days_before_and_after_the_end(tmp_path: Path) -> None:
    assert coverage_warning(date(2026, 10, 31)) is None
    ends = coverage_warning(date(2026, 11, 1))
    assert ends is not None
    assert ends.startswith("working calendar ends on 2026-12-31")
    assert "from 2027-01-01 office hours fall back to Monday-Friday" in ends
    assert "year_files: [2027.yaml]" in ends
    assert "config/calendar/README.md" in ends
    assert coverage_warning(date(2026, 12, 1)) == ends
    # The clock moves past the last known year: the fallback is in force and said so.
    ended = coverage_warning(date(2027, 2, 6))
    assert ended is not None
    assert ended.startswith("working calendar ended on 2026-12-31")
    assert "without 2027's statutory holidays" in ended
    # A site that adds 2027 is covered until its end, and told about 2028 in time.
    (tmp_path / "2027.yaml").write_text(FIXTURE_2027, encoding="utf-8")
    site = WorkCalendar(years=[load_year_file(tmp_path / "2027.yaml")])
    assert site.coverage_warning(date(2027, 2, 6)) is None
    later = coverage_warning(date(2027, 11, 15), site)
    assert later is not None
    assert "ends on 2027-12-31" in later
    assert "2028" in later


@pytest.mark.parametrize("with_file", [True, False])
def test_past_the_last_known_year_a_site_year_file_decides_office_hours(
    tmp_path: Path, with_file: bool
) -> None:
    from gateway.alarm_service import device_infos
    from gateway.config_load import load_site
    from rules.engine import Engine
    from rules.kinds.hvac import AcAfterHoursRule
    from rules.model import Raise

    (tmp_path / "2027.yaml").write_text(FIXTURE_2027, encoding="utf-8")
    files = "[2027.yaml]" if with_file else "[]"
    (tmp_path / "site.yaml").write_text(
        "site: {name: t, id: t}\n"
        "devices:\n"
        "  - {id: ac-1, profile: coolmaster_indoor, poll: 10s, tags: {zone: '301'},\n"
        "     modbus: {transport: tcp, host: 127.0.0.1, port: 1502, unit: 1, base: 16}}\n"
        f"calendar: {{office_hours: ['08:30-17:30'], year_files: {files}}}\n",
        encoding="utf-8",
    )
    loaded = load_site(tmp_path / "site.yaml")
    cal = WorkCalendar.from_config(loaded.site.calendar, "Asia/Shanghai", loaded.base_dir)
    rule = AcAfterHoursRule("night", AcAfterHoursRule.Params.model_validate({"delay": "1h"}))

    def raised_on(day: str) -> bool:
        """Is the AC alarm raised after the unit runs 08:30-11:00 on that day?"""
        now = at(day, "08:30")
        engine = Engine([rule], device_infos(loaded), cal, clock=lambda: now)
        found = False
        while now < at(day, "11:00"):
            ts = round(now.timestamp() * 1e9)
            effects = engine.on_sample(Sample("ac-1", ts, {"on_off": 1, "mode": 0}))
            found = found or any(isinstance(e, Raise) for e in [*effects, *engine.on_tick()])
            now += timedelta(seconds=10)
        rule.alarms.clear("ac-1")
        return found

    # 2027-01-03 is a Sunday worked in the site's file; 2027-01-04 a Monday off in it.
    assert raised_on("2027-01-03") is not with_file
    assert raised_on("2027-01-04") is with_file
    warning = cal.coverage_warning(date(2027, 1, 3))
    if with_file:
        assert warning is None
    else:
        assert warning is not None
        assert warning.startswith("working calendar ended on 2026-12-31")
