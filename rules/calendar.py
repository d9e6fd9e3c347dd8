"""The site's working calendar: workdays, office hours and seasons.

Chinese offices do not work Monday to Friday: the State Council announces statutory holidays
and the make-up working days (调休) that pay for them every year, so a weekday rule is wrong
several times a year. Where a year's days come from, the newest source first:

1. the site's year files (`calendar: {year_files: [2027.yaml]}`), one file per announced year;
2. the year files shipped in config/calendar/ (format: config/calendar/README.md);
3. the `chinesecalendar` package (2004-2026 in 1.11.0).

A year file replaces the older sources for its year. On top of all, the site's own days
(extra_holidays, extra_workdays: a local holiday, a weekend inspection day). A year no source
knows falls back to Monday-Friday, logged once; coverage_warning() says so from 60 days before.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime, time, timedelta, tzinfo
from pathlib import Path
from typing import Literal, Protocol
from zoneinfo import ZoneInfo

import chinese_calendar
import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from core.data_dir import data_dir
from core.yaml_load import UniqueKeyLoader

log = logging.getLogger(__name__)

Period = tuple[time, time]
"""A half-open span of wall-clock time [start, end) within one day."""

DEFAULT_TIMEZONE = "Asia/Shanghai"
DEFAULT_OFFICE_HOURS = ("08:30-17:30",)

SHIPPED_YEARS = data_dir() / "calendar"
"""Year files shipped with the gateway: every announced year the package does not know."""

WARN_DAYS = 60
"""coverage_warning() speaks from this many days before the calendar's last known day."""

# The years the package carries announcements for (it refuses any other year).
PACKAGE_YEARS = range(min(chinese_calendar.holidays).year, max(chinese_calendar.holidays).year + 1)
PACKAGE = f"chinesecalendar {getattr(chinese_calendar, '__version__', '')}".strip()

_PERIOD = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")
_MONTH_DAY = re.compile(r"^(\d{2})-(\d{2})$")


DayKind = Literal["workday", "restday", "holiday"]

LONGEST_BREAK = 12
"""Days off in a row a holiday run is looked through for a weekday (Spring Festival: 8-9)."""


class WorkdayCalendar(Protocol):
    def is_workday(self, day: datetime) -> bool: ...


def day_kind(calendar: WorkdayCalendar, day: date, tz: tzinfo | None = None) -> DayKind:
    """Workday (调休 make-up days included), rest day or statutory holiday.

    A day off is a holiday when it is a weekday, or a weekend day in one run of days off with
    a weekday (the weekend inside the Spring Festival, or joined to a Monday holiday: the
    State Council's notices count such a break as one holiday, 与周末连休); a rest day
    otherwise. Shifts (the duty roster) and patrol schedules both judge days by this."""

    def works(d: date) -> bool:
        return calendar.is_workday(datetime.combine(d, time(12), tzinfo=tz))

    if works(day):
        return "workday"
    if day.weekday() < 5:
        return "holiday"
    for step in (timedelta(days=-1), timedelta(days=1)):
        other = day + step
        for _ in range(LONGEST_BREAK):
            if works(other):
                break
            if other.weekday() < 5:
                return "holiday"
            other += step
    return "restday"


def parse_period(text: str) -> Period:
    """'08:30-12:00' -> (08:30, 12:00). The end must come after the start: office hours
    never cross midnight, and a reversed span is far more likely a typo than a night shift."""
    match = _PERIOD.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a period: write HH:MM-HH:MM, e.g. 08:30-12:00")
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    try:
        start, end = time(h1, m1), time(h2, m2)
    except ValueError:
        raise ValueError(f"{text!r}: hours are 0-23 and minutes 0-59") from None
    if end <= start:
        raise ValueError(f"{text!r}: the end must come after the start")
    return start, end


def _as_period(value: str | Period) -> Period:
    return parse_period(value) if isinstance(value, str) else value


def _subtract(periods: Sequence[Period], gap: Period | None) -> list[Period]:
    """The periods with the gap (a lunch break) cut out of them."""
    if gap is None:
        return list(periods)
    out: list[Period] = []
    for start, end in periods:
        if start < gap[0]:
            out.append((start, min(end, gap[0])))
        if end > gap[1]:
            out.append((max(start, gap[1]), end))
    return out


@functools.lru_cache(maxsize=256)
def _month_day(text: str) -> tuple[int, int]:
    """'06-01' -> (6, 1), checked against a leap year so that 02-29 is accepted."""
    match = _MONTH_DAY.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a season boundary: write MM-DD, e.g. 06-01")
    month, day = int(match.group(1)), int(match.group(2))
    try:
        date(2000, month, day)
    except ValueError:
        raise ValueError(f"{text!r} is not a day of the year") from None
    return month, day


def season(moment: date, seasons: Mapping[str, tuple[str, str]]) -> str | None:
    """The name of the season `moment` falls in, or None.

    `seasons` maps a name to inclusive (first, last) days as MM-DD, e.g.
    {"summer": ("06-01", "09-30"), "winter": ("11-15", "03-15")}; a span whose first day comes
    after its last (winter) wraps the new year. Seasons should not overlap; if they do, the
    first one in the mapping wins. A datetime is taken at its own wall-clock date: pass
    ctx.now (already in the site's zone) or use WorkCalendar.season to convert first.
    """
    today = (moment.month, moment.day)
    for name, (first_text, last_text) in seasons.items():
        first, last = _month_day(first_text), _month_day(last_text)
        if first <= last:
            if first <= today <= last:
                return name
        elif today >= first or today <= last:
            return name
    return None


def _in_year(day: date, year: int) -> bool:
    # An announcement may reach into the December before (New Year's Day off from 30 Dec).
    return date(year - 1, 12, 1) <= day <= date(year, 12, 31)


class CalendarYear(BaseModel):
    """One year's statutory holidays and make-up working days, as the State Council announces
    them (国务院办公厅关于YYYY年部分节假日安排的通知). Days not listed follow Monday-Friday."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    year: int = Field(ge=2000, le=2200, description="The year announced.")
    source: str = Field(
        min_length=1,
        description="The announcement copied: issuer, title, document number, date.",
    )
    holidays: dict[str, list[date]] = Field(
        min_length=1,
        description="Each holiday as the announcement names it -> [first day, last day] of the "
        "time off (weekend days inside included), or [day] for one day.",
    )
    workdays: list[date] = Field(
        default_factory=list,
        description="Make-up working days (调休): weekend days worked to pay for the holidays.",
    )

    @field_validator("holidays")
    @classmethod
    def _spans(cls, value: dict[str, list[date]], info: ValidationInfo) -> dict[str, list[date]]:
        year = info.data.get("year")
        for name, span in value.items():
            if len(span) not in (1, 2) or span[0] > span[-1]:
                raise ValueError(f"{name}: give [first, last] in order, or [day]")
            for day in span:
                if year is not None and not _in_year(day, year):
                    raise ValueError(f"{name}: {day} is not in {year}")
        return value

    @field_validator("workdays")
    @classmethod
    def _workdays(cls, value: list[date], info: ValidationInfo) -> list[date]:
        year = info.data.get("year")
        for day in value:
            if year is not None and not _in_year(day, year):
                raise ValueError(f"{day} is not in {year}")
        return value

    @model_validator(mode="after")
    def _disjoint(self) -> CalendarYear:
        both = set(self.workdays) & set(self.holiday_days())
        if both:
            days = ", ".join(sorted(d.isoformat() for d in both))
            raise ValueError(f"days both holiday and make-up workday: {days}")
        return self

    def holiday_days(self) -> dict[date, str]:
        """Every day off, with the holiday's name."""
        out: dict[date, str] = {}
        for name, span in self.holidays.items():
            day = span[0]
            while day <= span[-1]:
                out[day] = name
                day += timedelta(days=1)
        return out


def load_year_file(path: Path) -> CalendarYear:
    """A year file; raises OSError, yaml.YAMLError or pydantic.ValidationError (the site
    loader checks site files first and reports file:line; see gateway/config_load.py)."""
    with open(path, encoding="utf-8") as f:
        return CalendarYear.model_validate(yaml.load(f, Loader=UniqueKeyLoader))


def shipped_years(directory: Path = SHIPPED_YEARS) -> list[CalendarYear]:
    return [load_year_file(p) for p in sorted(directory.glob("*.yaml"))]


class WorkCalendar:
    """Workdays from the official calendar plus site overrides; office hours in the site's zone.

    Implements rules.model.Calendar. Office hours are half-open: with the default 08:30-17:30,
    08:30:00 is in and 17:30:00 is out, so back-to-back periods never both claim a minute.
    """

    def __init__(
        self,
        tz: str | tzinfo = DEFAULT_TIMEZONE,
        *,
        office_hours: Sequence[str | Period] = DEFAULT_OFFICE_HOURS,
        lunch: str | Period | None = None,
        extra_workdays: Iterable[date] = (),
        extra_holidays: Iterable[date] = (),
        years: Iterable[CalendarYear] = (),
        shipped: Iterable[CalendarYear] | None = None,
    ) -> None:
        """`years`: the site's year files; `shipped`: None for those in config/calendar/."""
        self.tz: tzinfo = ZoneInfo(tz) if isinstance(tz, str) else tz
        self.office_hours: list[Period] = [_as_period(p) for p in office_hours]
        if not self.office_hours:
            raise ValueError("office_hours: give at least one period, e.g. 08:30-17:30")
        self.lunch: Period | None = None if lunch is None else _as_period(lunch)
        # Lunch is cut out once here, so the per-tick check is a plain membership test.
        self.periods: list[Period] = _subtract(self.office_hours, self.lunch)
        self.extra_workdays: set[date] = set(extra_workdays)
        self.extra_holidays: set[date] = set(extra_holidays)
        both = self.extra_workdays & self.extra_holidays
        if both:
            days = ", ".join(sorted(d.isoformat() for d in both))
            raise ValueError(f"days both extra workday and extra holiday: {days}")
        # Years already reported as missing from the library: one warning each, not one per
        # tick (rules ask many times a minute).
        self._warned_years: set[int] = set()
        # year -> its file and where it came from; the site's replace the shipped ones.
        self.years: dict[int, CalendarYear] = {}
        self.sources: dict[int, str] = {}
        for year in shipped_years() if shipped is None else shipped:
            self.years[year.year], self.sources[year.year] = year, "shipped"
        for year in years:
            if self.sources.get(year.year) == "site":
                raise ValueError(f"two year files for {year.year}")
            self.years[year.year], self.sources[year.year] = year, "site"
        # Every day a year file lists: False off, True worked. In year order, so the newer
        # announcement wins a day both name (30 December, in the next year's New Year).
        self._listed: dict[date, bool] = {}
        for _, year in sorted(self.years.items()):
            self._listed.update(dict.fromkeys(year.holiday_days(), False))
            self._listed.update(dict.fromkeys(year.workdays, True))

    @classmethod
    def from_config(
        cls,
        cfg: CalendarConfig,
        tz: str | tzinfo = DEFAULT_TIMEZONE,
        base_dir: Path | None = None,
    ) -> WorkCalendar:
        """The calendar of a site: its `calendar:` section and its time zone. Year files are
        found relative to `base_dir` (the site file's directory)."""
        return cls(
            tz,
            office_hours=cfg.office_hours,
            lunch=cfg.lunch,
            extra_workdays=cfg.extra_workdays,
            extra_holidays=cfg.extra_holidays,
            years=[load_year_file(p) for p in cfg.year_paths(base_dir)],
        )

    def covers(self, year: int) -> bool:
        """Whether some source knows the year's holidays and make-up days."""
        return year in self.years or year in PACKAGE_YEARS

    def known_until(self, today: date) -> date | None:
        """The last day of the known years that reach from today's year on; when today's year
        is not known, the last day the calendar knew (in the past); None if it knows none."""
        year = today.year
        if self.covers(year):
            while self.covers(year + 1):
                year += 1
            return date(year, 12, 31)
        earlier = [y for y in [*self.years, *PACKAGE_YEARS] if y < year]
        return date(max(earlier), 12, 31) if earlier else None

    def coverage_warning(self, today: date, days: int = WARN_DAYS) -> str | None:
        """One line for `guanjia check`, the live view and health when the calendar ends
        within `days` (or has ended): the date and how to add the next year; else None."""
        end = self.known_until(today)
        if end is None:
            return "no working-calendar data: office hours follow Monday-Friday"
        following = end.year + 1
        how = (
            f"when the State Council announces {following}'s holidays, add them as a year file "
            f"(calendar: {{year_files: [{following}.yaml]}} in the site file, format in "
            f"config/calendar/README.md) or update {PACKAGE.split()[0]}"
        )
        if today > end:
            return (
                f"working calendar ended on {end.isoformat()}: since {end + timedelta(days=1)} "
                f"office hours follow Monday-Friday, without {following}'s statutory holidays "
                f"and make-up workdays (调休); {how}"
            )
        if (end - today).days <= days:
            return (
                f"working calendar ends on {end.isoformat()}: from {end + timedelta(days=1)} "
                f"office hours fall back to Monday-Friday; {how}"
            )
        return None

    def local(self, moment: datetime) -> datetime:
        """The moment in the site's zone. A naive datetime is taken as site wall-clock time
        already (what a person types in a test or a CLI), not as UTC."""
        if moment.tzinfo is None:
            return moment.replace(tzinfo=self.tz)
        return moment.astimezone(self.tz)

    def _day(self, day: date) -> date:
        # A datetime is a date too: convert it first, or 01:00 UTC would count as the UTC date.
        if isinstance(day, datetime):
            return self.local(day).date()
        return day

    def is_workday(self, day: date) -> bool:
        """Whether the site works on that day (a date, or a datetime converted to the site)."""
        d = self._day(day)
        # The site's own days win: a local holiday or a weekend duty day is not in the library.
        if d in self.extra_holidays:
            return False
        if d in self.extra_workdays:
            return True
        listed = self._listed.get(d)
        if listed is not None:
            return listed
        if d.year in self.years:
            return d.weekday() < 5  # the year file replaces the package for its year
        if d.year in PACKAGE_YEARS:
            return bool(chinese_calendar.is_workday(d))
        # No source knows the year: keep working on a weekday rule rather than stop every
        # after-hours rule, and say loudly what to add.
        if d.year not in self._warned_years:
            self._warned_years.add(d.year)
            log.warning("no calendar data for %d: %s", d.year, self.coverage_warning(d))
        return d.weekday() < 5

    def in_office_hours(self, moment: datetime) -> bool:
        """A workday and within one of the office-hour periods (lunch excluded), site time."""
        local = self.local(moment)
        if not self.is_workday(local.date()):
            return False
        now = local.time()
        return any(start <= now < end for start, end in self.periods)

    def season(self, moment: date, seasons: Mapping[str, tuple[str, str]]) -> str | None:
        """season() on the moment's date in the site's zone."""
        return season(self._day(moment), seasons)


class CalendarConfig(BaseModel):
    """The `calendar:` section of a site file. The time zone is the site's own (site.timezone)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    office_hours: list[str] = Field(
        default_factory=lambda: list(DEFAULT_OFFICE_HOURS),
        min_length=1,
        description=(
            "Office-hour periods on workdays as HH:MM-HH:MM, start included, end excluded, "
            'e.g. ["08:30-12:00", "13:30-17:30"]. Default 08:30-17:30.'
        ),
    )
    lunch: str | None = Field(
        default=None,
        description=(
            "Break cut out of the office hours, HH:MM-HH:MM, e.g. 12:00-13:30; or list the "
            "morning and afternoon periods in office_hours instead."
        ),
    )
    extra_workdays: list[date] = Field(
        default_factory=list,
        description="Days the site works although the official calendar says holiday.",
    )
    extra_holidays: list[date] = Field(
        default_factory=list,
        description="Days the site is closed although the official calendar says workday.",
    )
    year_files: list[str] = Field(
        default_factory=list,
        description="Files of announced years (holidays and 调休 make-up workdays, format in "
        "config/calendar/README.md), relative to the site file; each replaces the shipped "
        "data and the chinesecalendar package for its year.",
    )

    def year_paths(self, base_dir: Path | None = None) -> list[Path]:
        paths = [Path(p) for p in self.year_files]
        if base_dir is None:
            return paths
        return [p if p.is_absolute() else base_dir / p for p in paths]

    @field_validator("office_hours")
    @classmethod
    def _periods(cls, value: list[str]) -> list[str]:
        for text in value:
            parse_period(text)
        return value

    @field_validator("lunch")
    @classmethod
    def _lunch(cls, value: str | None) -> str | None:
        if value is not None:
            parse_period(value)
        return value

    @model_validator(mode="after")
    def _disjoint(self) -> CalendarConfig:
        both = set(self.extra_workdays) & set(self.extra_holidays)
        if both:
            days = ", ".join(sorted(d.isoformat() for d in both))
            raise ValueError(f"days listed both as extra_workdays and extra_holidays: {days}")
        return self


def coverage_warning(today: date, calendar: WorkCalendar | None = None) -> str | None:
    """For health and the live view: one line when the working calendar ends within
    WARN_DAYS of `today` (or has ended), naming the date and how to add the next year; None
    while it is far off. `calendar`: the site's (its year files count); None for the shipped
    data and the package only."""
    return (calendar or WorkCalendar()).coverage_warning(today)
