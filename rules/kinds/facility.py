"""Facility rules: a water leak seen in the night's flow, and a data room's PUE.

water_leak: at night (01:00-04:00 site time by default) an office draws almost no water, so the
lowest flow of the night is what runs all the time: cisterns that never stop, a burst pipe under
the floor. A minimum above the threshold for N nights in a row raises water_leak_suspected; a
night below clears it. The night's minimum comes from the meter's flow point (`flow_m3h`), or,
for meters with a volume counter only, from its hourly consumption (`volume_total_m3` at the
whole hours of the window, interpolated between readings). Working days do not matter: water
leaks on holidays too. A night the meter was hardly read (below `min_coverage`) is not known:
it neither counts towards the nights in a row nor breaks them, and a raised alarm stays (losing
contact with a leaking meter is no sign that the leak stopped), so stale values change nothing.

pue: a data room's power usage effectiveness, facility power / IT power, from the live power
points of its meters (accounts.config.DataRoom names them). Above `limit` for `duration` raises
pue_high. It is not judged while any meter's value is not known (never read, read as bad,
stale, or older than `max_age`) or while the IT load is below `min_it_power_w` (a room being
emptied: a few hundred watts of IT against the room's air conditioning is no efficiency
figure); then the delay stops and a raised alarm clears, saying why.

Subjects are the water meter's device id and the data room's name (`room`, default the rule
id); a pue alarm's {device} is the room.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, time, timedelta, tzinfo
from typing import Any, Literal, Self

from pydantic import Field, field_validator, model_validator

from core.config_types import Duration
from core.types import Sample, Value
from rules.blocks import OnDelay
from rules.kinds.base import DeviceRule, stale_note
from rules.model import Context, DeviceInfo, Effect, PointNeed, RuleParams, Scope
from rules.numbers import finite, optional_float

WATER_LEAK = "water_leak_suspected"
PUE_HIGH = "pue_high"

_WINDOW = re.compile(r"^\s*([01]\d|2[0-3]):([0-5]\d)\s*-\s*([01]\d|2[0-3]):([0-5]\d)\s*$")
_HOUR = 3600.0


def _water_scope() -> Scope:
    return Scope(kinds=["water_meter"])


def parse_window(text: str) -> tuple[time, time]:
    """'01:00-04:00' -> (01:00, 04:00); an end at or before the start runs past midnight."""
    match = _WINDOW.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a time window: write HH:MM-HH:MM, e.g. 01:00-04:00")
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    start, end = time(h1, m1), time(h2, m2)
    if start == end:
        raise ValueError(f"{text!r} is empty: the window must end at another time than it starts")
    return start, end


def night_window(t: float, tz: tzinfo | None, start: time, end: time) -> tuple[str, float, float]:
    """(key, start, end) of the window that holds epoch time t, or the last one that began
    before it; the key is the date the window starts on."""
    today = datetime.fromtimestamp(t, tz).date()
    best: tuple[str, float, float] | None = None
    for day in (today - timedelta(days=1), today):
        begin = datetime.combine(day, start, tz)
        finish = datetime.combine(day + timedelta(days=1 if end <= start else 0), end, tz)
        if begin.timestamp() <= t:
            best = (day.isoformat(), begin.timestamp(), finish.timestamp())
    assert best is not None  # yesterday's window began before t
    return best


# --- water_leak ----------------------------------------------------------------------------


class WaterLeakParams(RuleParams):
    scope: Scope = Field(default_factory=_water_scope, description="Water meters.")
    source: Literal["flow", "volume"] = Field(
        default="flow",
        description="flow: the lowest reading of `flow_point`; volume: the lowest hourly "
        "consumption from `volume_point`, for meters with a counter only.",
    )
    flow_point: str = Field(default="flow_m3h", description="Flow point, m³/h (source: flow).")
    volume_point: str = Field(
        default="volume_total_m3", description="Volume counter point, m³ (source: volume)."
    )
    threshold_m3h: float = Field(
        gt=0, description="A night's minimum flow above this is a suspected leak, m³/h."
    )
    nights: int = Field(default=3, ge=1, description="Nights in a row above the threshold.")
    window: str = Field(
        default="01:00-04:00",
        description="The night's window in site time, HH:MM-HH:MM; it may run past midnight.",
    )
    min_coverage: float = Field(
        default=0.5,
        gt=0,
        le=1,
        description="Share of the window the readings must cover (flow: from the first to the "
        "last reading; volume: the hours whose consumption is known) for the night to count.",
    )
    max_gap: Duration = Field(
        default=900.0,
        gt=0,
        description="source: volume: readings further apart than this give no counter value at "
        "an hour mark in between (that hour's consumption is not known).",
    )

    @field_validator("window")
    @classmethod
    def _window(cls, value: str) -> str:
        parse_window(value)
        return value

    @model_validator(mode="after")
    def _hours(self) -> Self:
        if self.source == "volume" and self.span() < _HOUR:
            raise ValueError(
                f"source volume reads hourly consumption: the window {self.window} must be at "
                "least an hour long"
            )
        return self

    def span(self) -> float:
        """The window's length in seconds (on a day without a clock change)."""
        start, end = parse_window(self.window)
        s, e = start.hour * 60 + start.minute, end.hour * 60 + end.minute
        return 60.0 * ((e - s) % (24 * 60))

    def reads(self) -> list[PointNeed]:
        needs = super().reads()
        unused = "volume_point" if self.source == "flow" else "flow_point"
        return [n for n in needs if n.param != unused]


class _Night:
    """One night's window of one meter, as far as its readings went."""

    __slots__ = ("broken", "end", "first_t", "key", "last_t", "low", "marks", "start")

    def __init__(self, key: str, start: float, end: float) -> None:
        self.key, self.start, self.end = key, start, end
        self.low: float | None = None  # source flow: the lowest flow read
        self.first_t: float | None = None
        self.last_t: float | None = None
        self.marks: dict[int, float] = {}  # source volume: hour index -> counter at that mark
        self.broken: set[int] = set()  # source volume: hours with a counter reset in them

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "start": self.start,
            "end": self.end,
            "low": self.low,
            "first_t": self.first_t,
            "last_t": self.last_t,
            "marks": {str(k): v for k, v in self.marks.items()},
            "broken": sorted(self.broken),
        }

    @classmethod
    def from_dict(cls, s: Mapping[str, Any]) -> _Night:
        night = cls(str(s["key"]), float(s["start"]), float(s["end"]))
        night.low = optional_float(s.get("low"))
        night.first_t = optional_float(s.get("first_t"))
        night.last_t = optional_float(s.get("last_t"))
        night.marks = {int(k): float(v) for k, v in s.get("marks", {}).items()}
        night.broken = {int(k) for k in s.get("broken", ())}
        return night


class _Meter:
    __slots__ = ("judged", "night", "prev", "streak")

    def __init__(self) -> None:
        self.night: _Night | None = None  # the window being read, until it is judged
        self.judged: str | None = None  # key of the last night judged
        self.streak = 0  # nights in a row above the threshold
        self.prev: tuple[float, float] | None = None  # source volume: last (counter, t)


class WaterLeakRule(DeviceRule[WaterLeakParams]):
    """A water meter's lowest night-time flow above a threshold for N nights in a row."""

    kind = "water_leak"

    def __init__(self, rule_id: str, params: WaterLeakParams) -> None:
        super().__init__(rule_id, params)
        self.start, self.end = parse_window(params.window)
        self.volume = params.source == "volume"
        self.point = params.volume_point if self.volume else params.flow_point
        # A night is judged this long after its window: time for the reading after the
        # window, which gives the counter at its end.
        self.grace = params.max_gap if self.volume else 0.0
        self.meters: dict[str, _Meter] = {}

    def on_sample(self, sample: Sample, ctx: Context) -> Iterable[Effect]:
        value = finite(sample.values.get(self.point))
        if value is None:
            return ()
        t = sample.ts / 1e9
        meter = self.meters.get(sample.device)
        if meter is None:
            meter = self.meters[sample.device] = _Meter()
        if meter.prev is not None and t <= meter.prev[1]:
            return ()  # late or repeated: the night's figures are taken in time order
        out: list[Effect] = []
        night = meter.night
        if night is not None and t >= night.end:
            self._mark(night, meter.prev, value, t)
            out.extend(self._judge(sample.device, meter, ctx))
        key, start, end = night_window(t, ctx.now.tzinfo, self.start, self.end)
        if t < end and meter.night is None and meter.judged != key:
            meter.night = _Night(key, start, end)
        night = meter.night
        if night is not None:
            if self.volume:
                self._mark(night, meter.prev, value, t)
            else:
                night.low = value if night.low is None else min(night.low, value)
                if night.first_t is None:
                    night.first_t = t
                night.last_t = t
        if self.volume:
            meter.prev = (value, t)
        return out or ()

    def _mark(self, night: _Night, prev: tuple[float, float] | None, v: float, t: float) -> None:
        """The counter at each hour mark of the window between the last reading and this one."""
        if not self.volume or prev is None:
            return
        v0, t0 = prev
        hours = int((night.end - night.start) // _HOUR)
        if v < v0:
            # A counter reset or a swapped meter: the use of the hours it falls in is not
            # known, whatever the marks on either side say.
            for k in range(hours):
                if t0 < night.start + (k + 1) * _HOUR and t > night.start + k * _HOUR:
                    night.broken.add(k)
            return
        if t - t0 > self.params.max_gap:
            return  # a gap: no counter value at the marks within it
        first = max(0, math.ceil((t0 - night.start) / _HOUR))
        for k in range(first, hours + 1):
            mark = night.start + k * _HOUR
            if mark > t:
                break
            if mark > t0:
                night.marks[k] = v0 + (v - v0) * (mark - t0) / (t - t0)

    def _figures(self, night: _Night) -> tuple[float | None, float]:
        """(the night's lowest flow in m³/h, the share of the window it covers)."""
        span = night.end - night.start
        if not self.volume:
            if night.first_t is None or night.last_t is None:
                return None, 0.0
            return night.low, (night.last_t - night.first_t) / span
        hours = int(span // _HOUR)
        used = [
            night.marks[k + 1] - night.marks[k]
            for k in range(hours)
            if k in night.marks and k + 1 in night.marks and k not in night.broken
        ]
        return (min(used) if used else None), len(used) / hours

    def _judge(self, device_id: str, meter: _Meter, ctx: Context) -> tuple[Effect, ...]:
        night = meter.night
        assert night is not None
        meter.night, meter.judged = None, night.key
        low, coverage = self._figures(night)
        if low is None or coverage < self.params.min_coverage:
            return ()  # not known: neither a night above nor one below
        if low <= self.params.threshold_m3h:
            meter.streak = 0
            return self.alarms.clear(device_id)
        meter.streak += 1
        if meter.streak < self.params.nights:
            return ()
        return self.alarms.raise_alarm(
            device_id,
            WATER_LEAK,
            value=round(low, 3),
            limit=self.params.threshold_m3h,
            grade=self.params.grade,
            details=self.details(
                device_id,
                ctx,
                nights=meter.streak,
                night=night.key,
                source=self.params.source,
                read_point=self.point,
            ),
        )

    def on_tick(self, ctx: Context) -> Iterable[Effect]:
        # A meter that went silent during the night is judged on what it gave.
        effects: list[Effect] | None = None
        now: float | None = None
        for device_id, meter in self.meters.items():
            if meter.night is None:
                continue
            if now is None:
                now = ctx.now.timestamp()
            if now >= meter.night.end + self.grace:
                effects = effects if effects is not None else []
                effects.extend(self._judge(device_id, meter, ctx))
        return effects or ()

    def snapshot(self) -> dict[str, Any]:
        meters = {
            d: {
                "night": m.night.to_dict() if m.night is not None else None,
                "judged": m.judged,
                "streak": m.streak,
                "prev": list(m.prev) if m.prev is not None else None,
            }
            for d, m in self.meters.items()
        }
        return {**self.alarms.snapshot(), "meters": meters}

    def restore(self, state: Mapping[str, Any]) -> None:
        self.alarms.restore(state)
        for device_id, s in state.get("meters", {}).items():
            meter = self.meters[device_id] = _Meter()
            night = s.get("night")
            meter.night = _Night.from_dict(night) if night else None
            judged = s.get("judged")
            meter.judged = None if judged is None else str(judged)
            meter.streak = int(s.get("streak", 0))
            prev = s.get("prev")
            meter.prev = (float(prev[0]), float(prev[1])) if prev else None

    def describe(self) -> str:
        p = self.params
        what = (
            f"{p.flow_point} minimum"
            if p.source == "flow"
            else f"lowest hourly use from {p.volume_point}"
        )
        return (
            f"{what} in {p.window} above {p.threshold_m3h:g} m³/h for {p.nights} nights "
            f"-> {WATER_LEAK}"
        )


# --- pue -----------------------------------------------------------------------------------


class PueParams(RuleParams):
    facility: list[str] = Field(
        min_length=1, description="Meter ids whose sum is the data room's total power."
    )
    it: list[str] = Field(
        min_length=1, description="Meter ids of the IT load (the UPS output, the racks' PDUs)."
    )
    limit: float = Field(default=1.8, gt=1, description="PUE above this alarms.")
    duration: Duration = Field(
        default=900.0, ge=0, description="Above the limit this long raises pue_high."
    )
    release: float = Field(
        default=0.05,
        ge=0,
        description="The alarm clears only at limit - release or below, so a PUE at the "
        "limit does not chatter.",
    )
    point: str = Field(default="active_power_total_w", description="Power point of the meters, W.")
    min_it_power_w: float = Field(
        default=500.0,
        ge=0,
        description="No judgement while the IT load is below this, W (a room being emptied).",
    )
    max_age: Duration | None = Field(
        default=None,
        gt=0,
        description="A meter value older than this is not used (meters polled at very "
        "different rates); empty: as long as the engine keeps it current.",
    )
    room: str = Field(default="", description="The data room's name in texts; default the id.")

    def device_refs(self) -> dict[str, list[str]]:
        return {"facility": list(self.facility), "it": list(self.it)}

    @model_validator(mode="after")
    def _meters(self) -> Self:
        if self.scope != Scope():
            raise ValueError("pue watches the meters in `facility` and `it`; remove `scope`")
        both = sorted(set(self.facility) & set(self.it))
        if both:
            raise ValueError(f"{', '.join(both)} in both `facility` and `it`; name each once")
        return self


class PueRule(DeviceRule[PueParams]):
    """A data room's PUE (facility power / IT power) above a limit for a while."""

    kind = "pue"

    def __init__(self, rule_id: str, params: PueParams) -> None:
        super().__init__(rule_id, params)
        self.room = params.room or rule_id
        self.delay = OnDelay(params.duration)
        self.unknown: list[str] = []  # meters named that the site does not have

    def bind(self, devices: Sequence[DeviceInfo]) -> list[str]:
        known = {d.id: d for d in devices}
        names = [*self.params.facility, *self.params.it]
        self.watched = [known[n] for n in names if n in known]
        self.devices = {d.id: d for d in self.watched}
        self.unknown = [n for n in names if n not in known]
        return [d.id for d in self.watched]

    def _sum(self, ids: list[str], t: float, ctx: Context) -> tuple[float | None, str]:
        """The meters' summed power, or None and the first meter whose value is not known."""
        total = 0.0
        max_age = self.params.max_age
        for device_id in ids:
            latest = ctx.latest(device_id, self.params.point)
            value = None if latest is None else finite(latest[0])
            if latest is None or value is None:
                return None, device_id
            if max_age is not None and t - latest[1] / 1e9 > max_age:
                return None, device_id
            total += value
        return total, ""

    def _details(self, **extra: Value) -> dict[str, Value]:
        first = self.devices.get(self.params.facility[0])
        return {"device": self.room, "place": first.place() if first else "", **extra}

    def _evaluate(self, t: float, ctx: Context) -> tuple[Effect, ...]:
        facility, missing = self._sum(self.params.facility, t, ctx)
        it, missing_it = self._sum(self.params.it, t, ctx)
        if facility is None or it is None:
            self.delay.reset()
            meter = missing or missing_it
            return self.alarms.clear(self.room, f"{meter}: no current {self.params.point}")
        if it < self.params.min_it_power_w:
            self.delay.reset()
            note = f"IT load {it:.0f} W below {self.params.min_it_power_w:g} W: PUE not judged"
            return self.alarms.clear(self.room, note)
        pue = facility / it
        raised = self.room in self.alarms
        bar = self.params.limit - self.params.release if raised else self.params.limit
        high = pue > bar
        if not self.delay.update(high, t):
            return () if high else self.alarms.clear(self.room)
        if raised:
            return ()
        return self.alarms.raise_alarm(
            self.room,
            PUE_HIGH,
            value=round(pue, 2),
            limit=self.params.limit,
            grade=self.params.grade,
            details=self._details(facility_w=round(facility), it_w=round(it)),
        )

    def on_sample(self, sample: Sample, ctx: Context) -> Iterable[Effect]:
        if self.params.point not in sample.values:
            return ()
        return self._evaluate(sample.ts / 1e9, ctx)

    def on_tick(self, ctx: Context) -> Iterable[Effect]:
        # The duration runs out between readings; only while it runs is there anything to do.
        if self.delay.since is None or self.room in self.alarms:
            return ()
        return self._evaluate(ctx.now.timestamp(), ctx)

    def on_stale(self, device_id: str, since: float | None, ctx: Context) -> Iterable[Effect]:
        self.delay.reset()
        return self.alarms.clear(self.room, stale_note(device_id, since, ctx))

    def snapshot(self) -> dict[str, Any]:
        return {**self.alarms.snapshot(), "delay": self.delay.snapshot()}

    def restore(self, state: Mapping[str, Any]) -> None:
        self.alarms.restore(state)
        self.delay.restore(state.get("delay", {}))

    def describe(self) -> str:
        p = self.params
        text = (
            f"{self.room}: PUE sum({', '.join(p.facility)}) / sum({', '.join(p.it)}) "
            f"{p.point} above {p.limit:g} for {p.duration:g} s"
        )
        if self.unknown:
            text += f"; meters not in the site: {', '.join(self.unknown)}"
        return text
