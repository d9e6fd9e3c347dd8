"""The duty roster: who is on duty at a given moment, and who is next up the escalation chain.

A shift names the kind of day it runs on: a workday, a restday (a weekend not worked) or a
statutory holiday, judged by the site's working calendar (rules/calendar.py), so a 调休 make-up
Saturday runs the workday shifts. An overnight shift ("17:30-08:30") belongs to the day it
starts on: at 02:00 on a Sunday the Saturday night shift is in force, chosen by what Saturday was.

The roster lives in the site file under `notify.roster` or in a file of its own
(`load_roster`); config/roster.example.yaml shows every key.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any, Literal

import chinese_calendar
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from gateway.config_errors import (
    ConfigError,
    LineMap,
    Loc,
    Problem,
    format_loc,
    load_yaml,
    problems_from_validation,
    suggest,
)
from gateway.notify.delivery import Recipient
from rules.calendar import PACKAGE_YEARS, DayKind, WorkCalendar, day_kind

DaySpec = Literal["workday", "restday", "holiday", "any"]
Role = Literal["duty", "leader", "admin"]
DAY_KINDS: tuple[DayKind, ...] = ("workday", "restday", "holiday")

_ID = r"^[a-z0-9][a-z0-9_-]*$"
_SPAN = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")
_DAY_MIN = 24 * 60
_CHINESE = {h.value: h.chinese for h in chinese_calendar.Holiday}


# -- days -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DayInfo:
    """What kind of day a date is for the roster, and why."""

    day: date
    kind: DayKind
    why: str  # "a 调休 workday (make-up for National Day 国庆节)"

    def __str__(self) -> str:
        return f"{self.day.isoformat()} is {self.why}"


def _named(english: str | None) -> str:
    if not english:
        return ""
    chinese = _CHINESE.get(english, "")
    return f"{english} {chinese}".strip()


def _year_file_names(cal: WorkCalendar, day: date) -> tuple[str, str]:
    """(holiday name of the day, nearest holiday to a make-up day) from the site's year files;
    the next year's file first, as it may reach back into December."""
    for year in (cal.years.get(day.year + 1), cal.years.get(day.year)):
        if year is None:
            continue
        off = year.holiday_days()
        if day in off:
            return off[day], ""
        if day in year.workdays and off:
            nearest = min(off, key=lambda d: abs((d - day).days))
            return "", f"year file {year.year}; nearest holiday {off[nearest]}"
    return "", ""


def classify_day(cal: WorkCalendar, day: date) -> DayInfo:
    """The roster's kind of `day`: whether the site works is the calendar's answer; the names
    (which holiday, which holiday a make-up day pays for) are for people reading the reason."""
    weekend = day.weekday() >= 5
    if cal.is_workday(day):
        if day in cal.extra_workdays:
            return DayInfo(day, "workday", "a workday (the site's own, calendar.extra_workdays)")
        if not weekend:
            return DayInfo(day, "workday", "a workday")
        _, near = _year_file_names(cal, day)
        if not near and day.year in PACKAGE_YEARS and day.year not in cal.years:
            near = "make-up for " + _named(chinese_calendar.workdays.get(day))
        return DayInfo(day, "workday", f"a 调休 workday ({near or 'make-up working day'})")
    if day in cal.extra_holidays:
        return DayInfo(day, "holiday", "a holiday (the site's own, calendar.extra_holidays)")
    name, _ = _year_file_names(cal, day)
    if not name and day.year in PACKAGE_YEARS and day.year not in cal.years:
        name = _named(chinese_calendar.holidays.get(day))
    if name:
        return DayInfo(day, "holiday", f"a statutory holiday ({name})")
    if day_kind(cal, day, cal.tz) == "holiday":  # one definition with patrol schedules
        if weekend:
            return DayInfo(day, "holiday", "a holiday (a weekend joined to a statutory holiday)")
        return DayInfo(day, "holiday", "a day off")
    return DayInfo(day, "restday", "a restday (weekend)")


def matches(days: Sequence[DaySpec], kind: DayKind) -> bool:
    return "any" in days or kind in days


# -- time spans -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Span:
    """A daily span in minutes from the midnight of the day it starts on. An overnight span
    ends past 1440 (the next day); `start == end` as written means 24 hours."""

    start: int
    end: int
    text: str

    @property
    def overnight(self) -> bool:
        return self.end > _DAY_MIN

    def bounds(self, day: date, tz: tzinfo) -> tuple[datetime, datetime]:
        midnight = datetime(day.year, day.month, day.day, tzinfo=tz)
        return midnight + timedelta(minutes=self.start), midnight + timedelta(minutes=self.end)


def parse_span(text: str) -> Span:
    """'08:30-17:30', overnight '17:30-08:30', a whole day '00:00-24:00' or '08:00-08:00'."""
    match = _SPAN.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a time span: write HH:MM-HH:MM, e.g. 08:30-17:30")
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    if h1 > 23 or h2 > 24 or m1 > 59 or m2 > 59 or (h2 == 24 and m2):
        raise ValueError(f"{text!r}: hours are 0-23 (24:00 only as an end), minutes 0-59")
    start, end = h1 * 60 + m1, h2 * 60 + m2
    if end <= start:
        end += _DAY_MIN  # overnight; equal ends are a 24-hour shift
    return Span(start, end, text.strip())


def hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


# -- configuration --------------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _text_as_written(value: Any) -> Any:
    """YAML reads `off`, `no`, `on` as booleans and 13800138000 as a number; a roster's ids,
    names and numbers are text, and quietly turning them back could not restore a lost '+'
    or leading zero."""
    if isinstance(value, bool):
        raise ValueError("YAML read this as true/false (on, off, yes, no); put it in quotes")
    if isinstance(value, int | float):
        raise ValueError(f'YAML read {value} as a number; put it in quotes, e.g. "{value}"')
    return value


class Person(_Strict):
    """Someone who can be told: their contacts and the channels that reach them."""

    id: str = Field(pattern=_ID, description="Short id shifts refer to, e.g. `zhang-wei`.")
    name: str = Field(min_length=1, description="Name as people read it, e.g. 张伟.")
    mobile: str = Field(
        default="",
        pattern=r"^(\+?[0-9]{5,15})?$",
        description="Mobile number: SMS, and the @ in DingTalk and WeCom, e.g. 13800138000.",
    )
    email: str = Field(
        default="", pattern=r"^([^@\s]+@[^@\s]+\.[^@\s]+)?$", description="Email address."
    )
    dingtalk_user: str = Field(default="", description="DingTalk user id (for @ by id).")
    wecom_user: str = Field(default="", description="WeCom user id (for <@userid> in markdown).")
    channels: list[str] = Field(
        default_factory=list,
        description="Names of the site's notification channels that reach this person "
        "(as in notify.channels), e.g. [dingtalk-duty, sms].",
    )
    role: Role = Field(
        default="duty",
        description="duty (值班人员), leader (带班领导) or admin (the gateway's administrator).",
    )

    _as_written = field_validator(
        "id", "name", "mobile", "dingtalk_user", "wecom_user", mode="before"
    )(_text_as_written)

    def recipient(self) -> Recipient:
        return Recipient(
            name=self.name,
            mobile=self.mobile,
            email=self.email,
            dingtalk_user=self.dingtalk_user,
            wecom_user=self.wecom_user,
        )


class Shift(_Strict):
    """A shift: when it runs, on which kinds of day, who is on it."""

    name: str = Field(pattern=_ID, description="Short name, e.g. `day`, `night`.")
    time: str = Field(
        description="HH:MM-HH:MM, start included, end excluded; an end before the start "
        "crosses midnight (17:30-08:30); 08:30-08:30 is 24 hours."
    )
    days: list[DaySpec] = Field(
        min_length=1,
        description="Kinds of day the shift starts on: workday (调休 make-up days included), "
        "restday (weekend not worked), holiday (statutory), or any.",
    )
    on_duty: list[str] = Field(
        min_length=1, description="Ids of the person (or people) on duty: told first."
    )
    people: list[str] = Field(
        default_factory=list,
        description="Ids of the rest of the duty group (yellow alarms reach on_duty and these).",
    )
    leader: str | None = Field(default=None, description="Id of the duty leader (带班领导).")

    _as_written = field_validator("name", "leader", mode="before")(_text_as_written)

    @field_validator("time")
    @classmethod
    def _time(cls, value: str) -> str:
        parse_span(value)
        return value

    @property
    def span(self) -> Span:
        return parse_span(self.time)


class Tier(_Strict):
    """One step of the escalation chain: who else hears of an alarm nobody acknowledged."""

    on_duty: bool = Field(default=False, description="The people on duty.")
    leader: bool = Field(default=False, description="The duty leader of the shift.")
    group: bool = Field(default=False, description="The whole duty group.")
    people: list[str] = Field(
        default_factory=list, description="Ids of named people, e.g. the director."
    )
    sms: bool | None = Field(
        default=None,
        description="Reach this tier by SMS too (true) or never (false); null: as the "
        "alarm's grade says.",
    )

    def is_empty(self) -> bool:
        return not (self.on_duty or self.leader or self.group or self.people)


def _default_tiers() -> list[Tier]:
    return [Tier(on_duty=True), Tier(leader=True)]


class RosterConfig(_Strict):
    """The duty roster: people, shifts and the escalation chain."""

    people: list[Person] = Field(min_length=1, description="Everyone the roster names.")
    shifts: list[Shift] = Field(min_length=1, description="Shifts, in any order; may overlap.")
    escalation: list[Tier] = Field(
        default_factory=_default_tiers,
        min_length=1,
        description="Tiers: an alarm escalated n times reaches tier n as well (past the last, "
        "the last again). Default: tier 0 the people on duty, tier 1 the leader.",
    )
    fallback: list[str] = Field(
        default_factory=list,
        description="Ids of people told when no shift is in force (a gap in the shifts).",
    )


def _unknown(pid: str, known: dict[str, Person]) -> str:
    hint = suggest(pid, known) or f"; people are: {', '.join(list(known)[:12])}"
    return f"unknown person '{pid}'{hint}"


def _refs(
    ids: Sequence[str], loc: Loc, known: dict[str, Person], out: list[tuple[Loc, str]]
) -> None:
    seen: set[str] = set()
    for k, pid in enumerate(ids):
        if pid in seen:
            out.append(((*loc, k), f"'{pid}' is listed twice; remove one"))
        seen.add(pid)
        if pid not in known:
            out.append(((*loc, k), _unknown(pid, known)))


def roster_problems(cfg: RosterConfig) -> list[tuple[Loc, str]]:
    """What the schema cannot see: unique ids, people that exist, days not given twice."""
    out: list[tuple[Loc, str]] = []
    known: dict[str, Person] = {}
    for i, person in enumerate(cfg.people):
        if person.id in known:
            first = next(j for j, p in enumerate(cfg.people) if p.id == person.id)
            out.append((("people", i, "id"), f"'{person.id}' is already used by people[{first}]"))
        known.setdefault(person.id, person)
    names: dict[str, int] = {}
    for i, shift in enumerate(cfg.shifts):
        loc: Loc = ("shifts", i)
        if shift.name in names:
            out.append(
                ((*loc, "name"), f"'{shift.name}' is already used by shifts[{names[shift.name]}]")
            )
        names.setdefault(shift.name, i)
        if "any" in shift.days and len(shift.days) > 1:
            out.append(((*loc, "days"), "'any' already includes every kind of day; keep only it"))
        elif len(set(shift.days)) < len(shift.days):
            out.append(((*loc, "days"), "a kind of day is given twice; remove one"))
        _refs(shift.on_duty, (*loc, "on_duty"), known, out)
        _refs(shift.people, (*loc, "people"), known, out)
        both = set(shift.on_duty) & set(shift.people)
        if both:
            out.append(((*loc, "people"), f"{', '.join(sorted(both))} already in on_duty"))
        if shift.leader is not None and shift.leader not in known:
            out.append(((*loc, "leader"), _unknown(shift.leader, known)))
    for i, tier in enumerate(cfg.escalation):
        if tier.is_empty():
            out.append((("escalation", i), "names nobody: set on_duty, leader, group or people"))
        _refs(tier.people, ("escalation", i, "people"), known, out)
    _refs(cfg.fallback, ("fallback",), known, out)
    return out


def validate_roster(data: Any, file: str, lines: LineMap, prefix: Loc = ()) -> RosterConfig:
    """A roster from parsed YAML (a file of its own, or the site's `notify.roster` with
    `prefix=("notify", "roster")`); every mistake a Problem with file, line and key path."""
    if not isinstance(data, dict):
        where = format_loc(prefix)
        message = "a roster is a mapping with people: and shifts: (config/roster.example.yaml)"
        raise ConfigError([Problem(file, lines.line(prefix), where, message)])
    try:
        cfg = RosterConfig.model_validate(data)
    except ValidationError as exc:
        problems = problems_from_validation(exc, RosterConfig, data, file, lines, prefix)
        raise ConfigError(problems) from None
    found = roster_problems(cfg)
    if found:
        raise ConfigError(
            [
                Problem(file, lines.line((*prefix, *loc)), format_loc((*prefix, *loc)), msg)
                for loc, msg in found
            ]
        )
    return cfg


# -- who is on duty -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ShiftInForce:
    shift: Shift
    day: DayInfo  # the day the shift began
    start: datetime
    end: datetime

    def describe(self) -> str:
        return f"shift '{self.shift.name}' {self.shift.span.text}"


@dataclass(frozen=True, slots=True)
class Duty:
    """Who is on duty at one moment, and why."""

    at: datetime  # in the site's zone
    today: DayInfo
    shifts: tuple[ShiftInForce, ...]
    on_duty: tuple[Person, ...]
    group: tuple[Person, ...]  # on_duty first, then the rest of the duty group
    leaders: tuple[Person, ...]
    tiers: tuple[tuple[Person, ...], ...]  # the escalation chain, tier 0 first
    reason: str

    @property
    def covered(self) -> bool:
        """A shift is in force (False: the fallback people stand in, if any)."""
        return bool(self.shifts)

    def tier(self, level: int) -> tuple[Person, ...]:
        """Tier `level`; levels past the last stay at the last."""
        return self.tiers[min(max(level, 0), len(self.tiers) - 1)]


def _unique(people: Iterable[Person]) -> tuple[Person, ...]:
    out: dict[str, Person] = {}
    for p in people:
        out.setdefault(p.id, p)
    return tuple(out.values())


class Roster:
    """A checked roster on the site's working calendar."""

    def __init__(self, config: RosterConfig, calendar: WorkCalendar | None = None) -> None:
        found = roster_problems(config)
        if found:
            raise ValueError("; ".join(f"{format_loc(loc)}: {msg}" for loc, msg in found))
        self.config = config
        self.calendar = calendar or WorkCalendar()
        self.people: dict[str, Person] = {p.id: p for p in config.people}

    def day(self, day: date) -> DayInfo:
        return classify_day(self.calendar, day)

    def shifts_at(self, at: datetime) -> list[ShiftInForce]:
        """The shifts in force at `at`: those begun today, and yesterday's overnight ones."""
        local = self.calendar.local(at)
        out: list[ShiftInForce] = []
        for back in (1, 0):
            day = local.date() - timedelta(days=back)
            info = self.day(day)
            for shift in self.config.shifts:
                span = shift.span
                start, end = span.bounds(day, self.calendar.tz)
                if matches(shift.days, info.kind) and start <= local < end:
                    out.append(ShiftInForce(shift, info, start, end))
        return out

    def on_duty(self, at: datetime) -> Duty:
        local = self.calendar.local(at)
        today = self.day(local.date())
        shifts = self.shifts_at(local)
        if shifts:
            on = _unique(self.people[i] for s in shifts for i in s.shift.on_duty)
            rest = _unique(self.people[i] for s in shifts for i in s.shift.people)
            leaders = _unique(self.people[s.shift.leader] for s in shifts if s.shift.leader)
            reason = f"{today}; " + "; ".join(self._why(s, today) for s in shifts)
        else:
            on = rest = _unique(self.people[i] for i in self.config.fallback)
            leaders = ()
            who = "the fallback people" if on else "nobody (no fallback set)"
            reason = f"{today}; no shift at {local:%H:%M}: {who}"
        group = _unique((*on, *rest))
        tiers = tuple(self._tier(t, on, group, leaders) for t in self.config.escalation)
        return Duty(local, today, tuple(shifts), on, group, leaders, tiers, reason)

    @staticmethod
    def _why(s: ShiftInForce, today: DayInfo) -> str:
        text = s.describe()
        if s.day.day != today.day:
            text += f" (began {s.day.day.isoformat()}, {s.day.why})"
        return text

    def _tier(
        self,
        tier: Tier,
        on: tuple[Person, ...],
        group: tuple[Person, ...],
        leaders: tuple[Person, ...],
    ) -> tuple[Person, ...]:
        picked: list[Person] = []
        if tier.on_duty:
            picked += on
        if tier.leader:
            picked += leaders
        if tier.group:
            picked += group
        picked += [self.people[i] for i in tier.people]
        return _unique(picked)

    # -- checks for `guanjia check` --------------------------------------------------------

    def gaps(self) -> list[str]:
        """Times of day no shift covers, per kind of day (and the kind of the day before,
        whose overnight shifts reach into the morning). Warnings, not errors: a site may mean
        them, and the fallback people stand in."""
        out: list[str] = []
        for kind in DAY_KINDS:
            by_prev = {prev: self._uncovered(prev, kind) for prev in DAY_KINDS}
            if len({tuple(g) for g in by_prev.values()}) == 1:
                if by_prev["workday"]:
                    out.append(f"on a {kind}: {_spans(by_prev['workday'])} no shift is in force")
                continue
            for prev, missing in by_prev.items():
                if missing:
                    out.append(
                        f"on a {kind} after a {prev}: {_spans(missing)} no shift is in force"
                    )
        if out:
            names = ", ".join(self.people[i].name for i in self.config.fallback)
            tail = f"fallback ({names}) is told then" if names else "set fallback: [ids]"
            out = [f"{line}; {tail}" for line in out]
        return out

    def _uncovered(self, prev: DayKind, kind: DayKind) -> list[tuple[int, int]]:
        covered: list[tuple[int, int]] = []
        for shift in self.config.shifts:
            span = shift.span
            if matches(shift.days, kind):
                covered.append((span.start, min(span.end, _DAY_MIN)))
            if matches(shift.days, prev) and span.overnight:
                covered.append((0, span.end - _DAY_MIN))
        missing: list[tuple[int, int]] = []
        at = 0
        for start, end in sorted(covered):
            if start > at:
                missing.append((at, start))
            at = max(at, end)
        if at < _DAY_MIN:
            missing.append((at, _DAY_MIN))
        return missing

    def warnings(self) -> list[str]:
        """gaps() and what else reaches fewer people than the roster seems to mean."""
        out = self.gaps()
        tiers_use_leader = any(t.leader for t in self.config.escalation)
        for s in self.config.shifts:
            if s.leader is None and tiers_use_leader:
                out.append(f"shift '{s.name}' has no leader: red alarms and escalation reach none")
            elif s.leader is not None and self.people[s.leader].role == "duty":
                out.append(f"shift '{s.name}': leader '{s.leader}' has the role duty, not leader")
        for i, p in enumerate(self.config.people):
            if not p.channels:
                out.append(f"people[{i}] ({p.id}): no channels, so nothing reaches them")
        return out


def _spans(missing: Sequence[tuple[int, int]]) -> str:
    return ", ".join(f"{hhmm(a)}-{hhmm(b)}" for a, b in missing)


def load_roster(path: Path, calendar: WorkCalendar | None = None) -> Roster:
    """A roster file (the mapping config/roster.example.yaml shows); ConfigError names the
    file, line, key path and fix of every mistake."""
    data, lines = load_yaml(path)
    return Roster(validate_roster(data, str(path), lines), calendar)


def describe_duty(duty: Duty) -> str:
    """Lines for `guanjia roster [--at TIME]`: the day, the shifts, the people, the chain."""

    def who(people: Sequence[Person]) -> str:
        if not people:
            return "-"
        return ", ".join(
            f"{p.name} ({p.id}: {', '.join(p.channels) or 'no channels'})" for p in people
        )

    lines = [f"{duty.at:%Y-%m-%d %H:%M %Z}: {duty.today}"]
    for s in duty.shifts:
        since = f"; began {s.day}" if s.day.day != duty.today.day else ""
        lines.append(
            f"{s.describe()} ({', '.join(s.shift.days)}{since}): "
            f"{s.start:%m-%d %H:%M} to {s.end:%m-%d %H:%M}"
        )
    if not duty.shifts:
        lines.append(f"no shift in force; {'fallback' if duty.on_duty else 'nobody is told'}")
    rest = [p for p in duty.group if p not in duty.on_duty]
    lines.append(f"  on duty: {who(duty.on_duty)}")
    lines.append(f"  group:   {who(rest)}")
    lines.append(f"  leader:  {who(duty.leaders)}")
    for level, people in enumerate(duty.tiers):
        last = " (and every escalation past it)" if level == len(duty.tiers) - 1 else ""
        lines.append(f"  tier {level}{last}: {', '.join(p.name for p in people) or '-'}")
    return "\n".join(lines)
