"""The working calendar: official holidays and 调休 make-up days, site overrides, office hours in
the site's zone, the fallback for years the library does not know, and seasons."""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import chinese_calendar
import pytest
from pydantic import ValidationError

from rules.calendar import CalendarConfig, WorkCalendar, parse_period, season
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
    warnings = [r.getMessage() for r in caplog.records]
    assert warnings == ["calendar data for 2027 missing: update chinesecalendar; using Mon-Fri"]
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
