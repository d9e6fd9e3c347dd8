"""The site's working calendar: workdays, office hours and seasons.

Chinese offices do not work Monday to Friday: the State Council announces statutory holidays
and the make-up working days (调休) that pay for them every year, so a weekday rule is wrong
several times a year. The `chinesecalendar` library carries those announcements (2004-2026 in
1.11.0); the site adds its own days on top (a local holiday, a weekend inspection day).
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime, time, tzinfo
from zoneinfo import ZoneInfo

import chinese_calendar
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

log = logging.getLogger(__name__)

Period = tuple[time, time]
"""A half-open span of wall-clock time [start, end) within one day."""

DEFAULT_TIMEZONE = "Asia/Shanghai"
DEFAULT_OFFICE_HOURS = ("08:30-17:30",)

_PERIOD = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")
_MONTH_DAY = re.compile(r"^(\d{2})-(\d{2})$")


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
    ) -> None:
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

    @classmethod
    def from_config(cls, cfg: CalendarConfig, tz: str | tzinfo = DEFAULT_TIMEZONE) -> WorkCalendar:
        """The calendar of a site: its `calendar:` section and its time zone."""
        return cls(
            tz,
            office_hours=cfg.office_hours,
            lunch=cfg.lunch,
            extra_workdays=cfg.extra_workdays,
            extra_holidays=cfg.extra_holidays,
        )

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
        try:
            return bool(chinese_calendar.is_workday(d))
        except NotImplementedError:
            # The library only knows announced years; keep working on a weekday rule rather than
            # stop every after-hours rule, and say loudly what to update.
            if d.year not in self._warned_years:
                self._warned_years.add(d.year)
                log.warning(
                    "calendar data for %d missing: update chinesecalendar; using Mon-Fri", d.year
                )
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
