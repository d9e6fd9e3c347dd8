"""A fake clock, calendar and Context for rule tests: rules are pure, so these are all they need."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from core.types import Sample, Value
from rules.model import Clear, DeviceInfo, Effect, PointInfo, Raise, Rule

TZ = ZoneInfo("Asia/Shanghai")


@dataclass
class FakeCalendar:
    """Monday to Friday, 08:30-17:30, with explicit holidays and make-up workdays (调休)."""

    workdays: set[date] = field(default_factory=set)
    holidays: set[date] = field(default_factory=set)
    start: time = time(8, 30)
    end: time = time(17, 30)
    lunch: tuple[time, time] | None = None

    def is_workday(self, day: datetime | date) -> bool:
        d = day.date() if isinstance(day, datetime) else day
        if d in self.holidays:
            return False
        if d in self.workdays:
            return True
        return d.weekday() < 5

    def in_office_hours(self, moment: datetime) -> bool:
        local = moment.astimezone(TZ)
        if not self.is_workday(local):
            return False
        now = local.time()
        if self.lunch is not None and self.lunch[0] <= now < self.lunch[1]:
            return False
        return self.start <= now < self.end


class FakeContext:
    """A Context whose clock the test moves; `latest` is a plain dict the test fills."""

    def __init__(
        self,
        now: datetime,
        devices: Iterable[DeviceInfo] = (),
        calendar: FakeCalendar | None = None,
    ) -> None:
        self._now = now
        self.devices = {d.id: d for d in devices}
        self._calendar = calendar or FakeCalendar()
        self.values: dict[tuple[str, str], tuple[Value, int]] = {}

    @property
    def now(self) -> datetime:
        return self._now

    @now.setter
    def now(self, value: datetime) -> None:
        self._now = value.astimezone(TZ)

    @property
    def calendar(self) -> FakeCalendar:
        return self._calendar

    @property
    def t(self) -> float:
        return self._now.timestamp()

    def advance(self, seconds: float) -> datetime:
        self._now += timedelta(seconds=seconds)
        return self._now

    def device(self, device_id: str) -> DeviceInfo:
        return self.devices[device_id]

    def latest(self, device_id: str, point: str) -> tuple[Value, int] | None:
        return self.values.get((device_id, point))

    def set_latest(self, device_id: str, point: str, value: Value) -> None:
        self.values[(device_id, point)] = (value, round(self.t * 1e9))

    # --- driving a rule ------------------------------------------------------------------

    def sample(
        self,
        rule: Rule,
        device: str,
        values: Mapping[str, Value],
        bad: Mapping[str, str] | None = None,
    ) -> list[Effect]:
        """Feed one Sample stamped with the fake clock's now."""
        s = Sample(device, round(self.t * 1e9), dict(values), dict(bad or {}))
        return list(rule.on_sample(s, self))

    def tick(self, rule: Rule) -> list[Effect]:
        return list(rule.on_tick(self))


def at(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=TZ)


def device(
    device_id: str,
    kind: str = "access",
    *,
    points: Iterable[str] = (),
    profile: str = "test",
    **tags: str,
) -> DeviceInfo:
    return DeviceInfo(device_id, kind, profile, dict(tags), {p: PointInfo() for p in points})


def make(rule_cls: type[Rule], ctx: FakeContext, rule_id: str = "r1", **params: Any) -> Rule:
    """A rule built from site-file style params (durations as text work) and bound."""
    rule = rule_cls(rule_id, rule_cls.Params.model_validate(params))
    rule.bind(list(ctx.devices.values()))
    return rule


def raises(effects: Iterable[Effect]) -> list[Raise]:
    return [e for e in effects if isinstance(e, Raise)]


def clears(effects: Iterable[Effect]) -> list[Clear]:
    return [e for e in effects if isinstance(e, Clear)]


def kinds(effects: Iterable[Effect]) -> list[str]:
    """Raises by alarm kind, clears as "clear:<subject>": one list to compare."""
    out: list[str] = []
    for e in effects:
        if isinstance(e, Raise):
            out.append(e.kind)
        elif isinstance(e, Clear):
            out.append(f"clear:{e.subject}")
    return out


def restart(rule: Rule, ctx: FakeContext) -> Rule:
    """The same rule after a gateway restart: a fresh instance fed its JSON snapshot."""
    state = json.loads(json.dumps(rule.snapshot()))
    fresh = type(rule)(rule.id, rule.params)
    fresh.bind(list(ctx.devices.values()))
    fresh.restore(state)
    return fresh
