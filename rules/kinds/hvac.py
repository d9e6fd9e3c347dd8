"""Air-conditioning rules: the national temperature limits, AC after hours, AC with a window
open, and demand response (raising cooling setpoints during a grid event).

国办发〔2007〕42号: in public buildings the cooling setpoint may not be below 26 °C in summer and
the heating setpoint not above 20 °C in winter; localities may be stricter (18 °C heating,
27 °C in public areas). Seasons, limits, overrides and exempt rooms are configuration.

Point names are those of the coolmaster_indoor profile (mode: 0 Cool, 1 Heat, 2 Auto, 3 Dry,
4 Haux, 5 Fan, 6 HH; on_off; setpoint_degc writable 16..32) and of z2m_door_contact
(door_open); every rule takes them as parameters.

What a unit is doing comes from ctx.latest, which the engine keeps for every device. Right
after a restart it is empty until the first poll, and after a failed poll until the next good
one: a rule then knows nothing about the unit and keeps its state (a running delay, a raised
alarm) instead of taking "unknown" for "off". Once the unit's values are stale (no good poll for
STALE_POLLS intervals, see rules.engine) on_stale drops that state: running delays stop and a
raised alarm clears, its cleared transition saying since when the unit has sent nothing. A unit
that comes back still in breach must hold the full delay (grace) again before it alarms.

Every Raise carries `device` and `place` in its details. ac_after_hours and ac_window_open
report as value how many seconds the condition has lasted and as limit their delay.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field
from typing_extensions import TypeVar

from core.config_types import Duration
from core.types import Command, Sample, Value
from rules.blocks import AlarmLatch, OfficeHours, OnDelay
from rules.kinds.base import restore_delays, snapshot_delays, stale_note
from rules.kinds.security import flag
from rules.model import (
    Clear,
    Context,
    DemandResponseCancel,
    DemandResponseEvent,
    DeviceInfo,
    Effect,
    Input,
    InputReply,
    Issue,
    PointNeed,
    Raise,
    Rule,
    RuleParams,
    Scope,
)
from rules.numbers import close, finite, optional_float, within

SAME = 0.05
"""Setpoints closer than this are the same: readings come in 0.1 °C steps (x10 registers)."""


def _iso(t: float, moment: datetime) -> str:
    """Epoch seconds as local time of the site (moment's zone), for alarm details."""
    return datetime.fromtimestamp(t, moment.tzinfo).isoformat(timespec="seconds")


class Season(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    start: str = Field(pattern=r"^\d\d-\d\d$", description="First day, MM-DD.")
    end: str = Field(pattern=r"^\d\d-\d\d$", description="Last day, MM-DD (may wrap the year).")

    def contains(self, moment: datetime) -> bool:
        day = moment.strftime("%m-%d")
        if self.start <= self.end:
            return self.start <= day <= self.end
        return day >= self.start or day <= self.end


class LimitOverride(BaseModel):
    """Stricter (or looser, where allowed) limits for some zones, e.g. 27 °C in public areas."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    zones: list[str] = Field(min_length=1, description="Zone globs.")
    cooling_min: float | None = Field(default=None, description="Cooling setpoint floor, °C.")
    heating_max: float | None = Field(default=None, description="Heating setpoint ceiling, °C.")


def _hvac_scope() -> Scope:
    return Scope(kinds=["hvac"])


class AcUnitParams(RuleParams):
    """What every AC rule needs: which units, which are exempt, and how to read a unit."""

    scope: Scope = Field(default_factory=_hvac_scope, description="AC units.")
    exempt_zones: list[str] = Field(
        default_factory=list,
        description="Zone globs never checked: server rooms, archives, clinics.",
    )
    mode_point: str = Field(default="mode", description="Mode point name.")
    power_point: str = Field(default="on_off", description="On/off point name (1 = on).")
    optional_points: ClassVar[frozenset[str]] = frozenset({"power_point"})
    cool_modes: list[int] = Field(default=[0], description="Mode values that cool.")
    heat_modes: list[int] = Field(default=[1, 4], description="Mode values that heat.")

    def exempt(self, device: DeviceInfo) -> bool:
        return any(fnmatch.fnmatchcase(device.zone, g) for g in self.exempt_zones)

    def power(self, device_id: str, ctx: Context) -> bool | None:
        """On (True), off (False), or not known (no reading yet, or one that is no flag)."""
        latest = ctx.latest(device_id, self.power_point)
        return None if latest is None else flag(latest[0])

    def mode_in(self, device_id: str, ctx: Context, modes: Sequence[int]) -> bool | None:
        """Is the unit on and in one of `modes`? None while its mode is not known.

        A unit with no on/off reading (a profile without the point) counts as on.
        """
        mode = ctx.latest(device_id, self.mode_point)
        if mode is None:
            return None
        if self.power(device_id, ctx) is False:
            return False
        value = mode[0]
        return not isinstance(value, bool) and value in modes


A = TypeVar("A", bound=AcUnitParams, default=AcUnitParams, covariant=True)


class _AcRule(Rule[A]):
    """Binds the units in scope that are not exempt."""

    def bind(self, devices: Sequence[DeviceInfo]) -> list[str]:
        super().bind(devices)
        self.watched = [d for d in self.watched if not self.params.exempt(d)]
        return [d.id for d in self.watched]


# --- the national limits -------------------------------------------------------------------


class AcPolicyParams(AcUnitParams):
    summer: Season = Field(
        default=Season(start="06-01", end="09-30"), description="Cooling season."
    )
    winter: Season = Field(
        default=Season(start="11-15", end="03-15"), description="Heating season."
    )
    cooling_min: float = Field(default=26.0, description="Cooling setpoint floor in summer, °C.")
    heating_max: float = Field(default=20.0, description="Heating setpoint ceiling in winter, °C.")
    overrides: list[LimitOverride] = Field(default_factory=list, description="Per-zone limits.")
    grace: Duration = Field(default=600.0, description="A violation must last this long.")
    enforce: bool = Field(default=False, description="Write the setpoint back to the limit.")
    retry: Duration = Field(
        default=60.0,
        description="With enforce: while the violation lasts the write-back is repeated, at "
        "most once per grace and never more often than this (a grace of 0 writes at once).",
    )
    setpoint_point: str = Field(default="setpoint_degc", description="Setpoint point name.")


_DIRECTIONS: dict[str, tuple[str, str]] = {
    # direction -> the catalog's {direction_zh}, {direction_en}
    "below": ("低于夏季下限", "below the summer minimum"),
    "above": ("高于冬季上限", "above the winter maximum"),
}


class _Unit:
    """What the rule remembers of one AC unit."""

    __slots__ = (
        "awaiting",
        "changed_at",
        "delay",
        "enforced_at",
        "previous",
        "raised",
        "setpoint",
    )

    def __init__(self, grace: float) -> None:
        self.setpoint: float | None = None
        self.previous: float | None = None  # the setpoint before the last change
        self.changed_at: float | None = None
        self.delay = OnDelay(grace)
        self.enforced_at: float | None = None
        # A write was issued and no setpoint has been read since: what the rule knows of the
        # unit predates the write, so it writes nothing more (the rules' clock may run faster
        # than the polls: a sped-up demo, a retry shorter than the poll interval).
        self.awaiting = False
        self.raised: float | None = None  # the setpoint the alarm was raised for


class AcPolicyRule(_AcRule[AcPolicyParams]):
    """Cooling setpoints below the summer floor, heating setpoints above the winter ceiling."""

    kind = "ac_policy"

    def __init__(self, rule_id: str, params: AcPolicyParams) -> None:
        super().__init__(rule_id, params)
        self.units: dict[str, _Unit] = {}
        self.devices: dict[str, DeviceInfo] = {}

    def bind(self, devices: Sequence[DeviceInfo]) -> list[str]:
        ids = super().bind(devices)
        self.units = {d.id: _Unit(self.params.grace) for d in self.watched}
        self.devices = {d.id: d for d in self.watched}
        return ids

    def limits(self, device: DeviceInfo) -> tuple[float, float]:
        cooling, heating = self.params.cooling_min, self.params.heating_max
        for o in self.params.overrides:
            if any(fnmatch.fnmatchcase(device.zone, g) for g in o.zones):
                cooling = o.cooling_min if o.cooling_min is not None else cooling
                heating = o.heating_max if o.heating_max is not None else heating
        return cooling, heating

    def violation(self, device: DeviceInfo, ctx: Context) -> tuple[str, float, float] | None:
        """(direction, setpoint, limit) when the unit breaks the season's limit now."""
        found = self._check(device, ctx)
        return found if isinstance(found, tuple) else None

    def _check(self, device: DeviceInfo, ctx: Context) -> tuple[str, float, float] | bool | None:
        """The violation; False when there is none; None when the unit's state is not known."""
        setpoint = self.units[device.id].setpoint
        mode = ctx.latest(device.id, self.params.mode_point)
        if setpoint is None or mode is None:
            return None
        if self.params.power(device.id, ctx) is False:
            return False
        cooling, heating = self.limits(device)
        if (
            setpoint < cooling
            and mode[0] in self.params.cool_modes
            and self.params.summer.contains(ctx.now)
        ):
            return "below", setpoint, cooling
        if (
            setpoint > heating
            and mode[0] in self.params.heat_modes
            and self.params.winter.contains(ctx.now)
        ):
            return "above", setpoint, heating
        return False

    def on_sample(self, sample: Sample, ctx: Context) -> Iterable[Effect]:
        unit = self.units.get(sample.device)
        if unit is None:
            return ()
        value = finite(sample.values.get(self.params.setpoint_point))
        t = ctx.now.timestamp()
        if value is not None:
            if unit.setpoint is not None and value != unit.setpoint:
                unit.previous, unit.changed_at = unit.setpoint, t
            unit.setpoint = value
            unit.awaiting = False
        return self._evaluate(self.devices[sample.device], ctx, t)

    def on_tick(self, ctx: Context) -> Iterable[Effect]:
        # Samples evaluate their unit; the tick only has to catch a grace (or a retry) running
        # out between two readings.
        t = ctx.now.timestamp()
        effects: list[Effect] = []
        for device_id, unit in self.units.items():
            if unit.delay.since is not None:
                effects.extend(self._evaluate(self.devices[device_id], ctx, t))
        return effects

    def _evaluate(self, device: DeviceInfo, ctx: Context, t: float) -> list[Effect]:
        unit = self.units[device.id]
        found = self._check(device, ctx)
        if found is None:
            return []  # not known yet (just restarted): keep the delay and the alarm
        if not isinstance(found, tuple):
            unit.delay.reset()
            unit.enforced_at = None
            if unit.raised is None:
                return []
            unit.raised = None
            return [Clear(self.id, device.id)]
        if not unit.delay.update(True, t):
            return []
        direction, setpoint, limit = found
        effects: list[Effect] = []
        if unit.raised != setpoint:
            unit.raised = setpoint
            direction_zh, direction_en = _DIRECTIONS[direction]
            details: dict[str, Value] = {
                "device": device.id,
                "place": device.place(),
                "direction": direction,
                "direction_zh": direction_zh,
                "direction_en": direction_en,
                "point": self.params.setpoint_point,
                "previous_setpoint": unit.previous if unit.previous is not None else "",
                "changed_at": _iso(unit.changed_at, ctx.now) if unit.changed_at else "",
            }
            effects.append(
                Raise(
                    self.id,
                    device.id,
                    "ac_setpoint_violation",
                    setpoint,
                    limit,
                    self.params.grade,
                    details,
                )
            )
        every = max(self.params.grace, self.params.retry)
        due = unit.enforced_at is None or t - unit.enforced_at >= every
        if self.params.enforce and due and not unit.awaiting:
            # Tried once per interval even when the limit cannot be written: no write, and
            # no new Raise (the alarm stands), but no work on every sample either.
            unit.enforced_at = t
            target = self._writable(device, limit)
            if target is not None:
                unit.awaiting = True
                effects.append(
                    Issue(
                        Command(device.id, self.params.setpoint_point, target, f"rule:{self.id}"),
                        f"setpoint {setpoint:g} {direction} the limit {limit:g}",
                    )
                )
        return effects

    def on_stale(self, device_id: str, since: float | None, ctx: Context) -> Iterable[Effect]:
        unit = self.units.get(device_id)
        if unit is None:
            return ()
        unit.setpoint = None  # the next good poll says what it is now
        unit.delay.reset()
        unit.enforced_at = None
        unit.awaiting = False
        if unit.raised is None:
            return ()
        unit.raised = None
        return (Clear(self.id, device_id, stale_note(device_id, since, ctx)),)

    def _writable(self, device: DeviceInfo, limit: float) -> float | None:
        """The limit, if the profile allows writing it; never a value outside its range."""
        return limit if within(limit, device.writable_range(self.params.setpoint_point)) else None

    def snapshot(self) -> dict[str, Any]:
        return {
            d: {
                "delay": u.delay.snapshot(),
                "previous": u.previous,
                "changed_at": u.changed_at,
                "setpoint": u.setpoint,
                "raised": u.raised,
                "enforced_at": u.enforced_at,
                "awaiting": u.awaiting,
            }
            for d, u in self.units.items()
            if u.delay.since is not None or u.previous is not None or u.raised is not None
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        for device, s in state.items():
            unit = self.units.get(device)
            if unit is not None:
                unit.delay.restore(s.get("delay", {}))
                unit.previous, unit.changed_at = s.get("previous"), s.get("changed_at")
                unit.setpoint = s.get("setpoint", unit.setpoint)
                unit.raised, unit.enforced_at = s.get("raised"), s.get("enforced_at")
                unit.awaiting = bool(s.get("awaiting", False))

    def describe(self) -> str:
        p = self.params
        mode = "enforced" if p.enforce else "alarm only"
        return (
            f"cooling >= {p.cooling_min:g} °C in summer, heating <= {p.heating_max:g} °C "
            f"in winter, {mode}, grace {p.grace:g} s"
        )


# --- after hours ---------------------------------------------------------------------------


class AcAfterHoursParams(AcUnitParams):
    delay: Duration = Field(
        default=1800.0, description="A unit on outside office hours for this long alarms."
    )
    breaks_up_to: Duration = Field(
        default=7200.0,
        description="Gaps in office hours up to this long with office hours on both sides "
        "(a lunch break in the calendar) count as office hours.",
    )


class AcAfterHoursRule(_AcRule[AcAfterHoursParams]):
    """An AC unit left on outside office hours (the working calendar, 调休 included)."""

    kind = "ac_after_hours"

    def __init__(self, rule_id: str, params: AcAfterHoursParams) -> None:
        super().__init__(rule_id, params)
        # Asked on every poll of every unit: the answer is kept for the clock minute (exact).
        self.hours = OfficeHours(params.breaks_up_to, refresh=60.0)
        self.alarms = AlarmLatch(rule_id)
        self.devices: dict[str, DeviceInfo] = {}
        self.delays: dict[str, OnDelay] = {}

    def bind(self, devices: Sequence[DeviceInfo]) -> list[str]:
        ids = super().bind(devices)
        self.devices = {d.id: d for d in self.watched}
        self.delays = {d: OnDelay(self.params.delay) for d in ids}
        return ids

    def on_sample(self, sample: Sample, ctx: Context) -> Iterable[Effect]:
        if self.params.power_point not in sample.values or sample.device not in self.delays:
            return ()
        return self._evaluate(sample.device, ctx, sample.ts / 1e9)

    def on_tick(self, ctx: Context) -> Iterable[Effect]:
        # The delay runs out, and office hours begin or end, between two polls.
        t = ctx.now.timestamp()
        effects: list[Effect] = []
        for device_id in self.delays:
            effects.extend(self._evaluate(device_id, ctx, t))
        return effects

    def _evaluate(self, device_id: str, ctx: Context, t: float) -> Iterable[Effect]:
        on = self.params.power(device_id, ctx)
        if on is None:
            return ()
        running = on and self.hours.after_hours(ctx.calendar, t, ctx.now.tzinfo)
        delay = self.delays[device_id]
        if not delay.update(running, t):
            return self.alarms.clear(device_id) if not running else ()
        if device_id in self.alarms:
            return ()
        assert delay.since is not None
        info = self.devices[device_id]
        return self.alarms.raise_alarm(
            device_id,
            "ac_after_hours",
            value=round(t - delay.since),
            limit=self.params.delay,
            grade=self.params.grade,
            details={
                "device": device_id,
                "place": info.place(),
                "since": _iso(delay.since, ctx.now),
            },
        )

    def on_stale(self, device_id: str, since: float | None, ctx: Context) -> Iterable[Effect]:
        delay = self.delays.get(device_id)
        if delay is not None:
            delay.reset()
        return self.alarms.clear(device_id, stale_note(device_id, since, ctx))

    def snapshot(self) -> dict[str, Any]:
        return snapshot_delays(self.alarms, self.delays)

    def restore(self, state: Mapping[str, Any]) -> None:
        restore_delays(self.alarms, self.delays, state)

    def describe(self) -> str:
        p = self.params
        return f"{p.power_point} on outside office hours for {p.delay:g} s"


# --- window open ---------------------------------------------------------------------------


def _contact_scope() -> Scope:
    return Scope(kinds=["access", "sensor"])


class AcWindowOpenParams(AcUnitParams):
    contacts: Scope = Field(
        default_factory=_contact_scope,
        description="Window and door contacts: devices of this scope that have contact_point, "
        "matched to AC units by their zone tag (e.g. add tags: {use: window}).",
    )
    contact_point: str = Field(default="door_open", description="Contact state point (true: open).")
    delay: Duration = Field(
        default=300.0,
        description="A unit cooling or heating with a contact in its zone open this long alarms.",
    )


class AcWindowOpenRule(_AcRule[AcWindowOpenParams]):
    """An AC unit cooling or heating while a window (or door) in its zone stands open."""

    kind = "ac_window_open"

    def __init__(self, rule_id: str, params: AcWindowOpenParams) -> None:
        super().__init__(rule_id, params)
        self.modes: tuple[int, ...] = (*params.cool_modes, *params.heat_modes)
        self.alarms = AlarmLatch(rule_id)
        self.units: dict[str, DeviceInfo] = {}
        self.delays: dict[str, OnDelay] = {}
        self.contacts: dict[str, list[str]] = {}  # zone -> contact ids
        self.zone_units: dict[str, list[str]] = {}  # zone -> unit ids
        self.contact_zone: dict[str, str] = {}  # contact id -> zone

    def bind(self, devices: Sequence[DeviceInfo]) -> list[str]:
        super().bind(devices)
        units = [d for d in self.watched if d.zone]
        unit_ids = {u.id for u in units}
        contacts = [
            d
            for d in devices
            if d.zone
            and d.id not in unit_ids
            and self.params.contact_point in d.points
            and self.params.contacts.matches(d)
        ]
        self.contacts = {}
        for c in contacts:
            self.contacts.setdefault(c.zone, []).append(c.id)
        # Only units with a contact in their zone can ever alarm; only contacts next to a unit
        # matter.
        self.units = {u.id: u for u in units if u.zone in self.contacts}
        self.zone_units = {}
        for u in self.units.values():
            self.zone_units.setdefault(u.zone, []).append(u.id)
        self.contacts = {z: ids for z, ids in self.contacts.items() if z in self.zone_units}
        self.contact_zone = {c: z for z, ids in self.contacts.items() for c in ids}
        self.delays = {u: OnDelay(self.params.delay) for u in self.units}
        chosen = [*self.units.values(), *(d for d in contacts if d.id in self.contact_zone)]
        self.watched = chosen
        return [d.id for d in chosen]

    def reads(self, device: DeviceInfo) -> list[PointNeed]:
        """Units are read for their mode; contacts are chosen by having contact_point."""
        if device.id in self.contact_zone:
            return []
        return [n for n in self.params.reads() if n.param != "contact_point"]

    def open_contacts(self, zone: str, ctx: Context) -> list[str] | None:
        """The zone's open contacts; None if none is known open and some are not known."""
        opened: list[str] = []
        unknown = False
        for contact in self.contacts.get(zone, ()):
            latest = ctx.latest(contact, self.params.contact_point)
            state = None if latest is None else flag(latest[0])
            if state:
                opened.append(contact)
            elif state is None:
                unknown = True
        return None if unknown and not opened else opened

    def on_sample(self, sample: Sample, ctx: Context) -> Iterable[Effect]:
        device_id = sample.device
        values = sample.values
        t = sample.ts / 1e9
        if device_id in self.units:
            if self.params.mode_point not in values and self.params.power_point not in values:
                return ()
            return self._evaluate(device_id, ctx, t)
        zone = self.contact_zone.get(device_id)
        if zone is None or self.params.contact_point not in values:
            return ()
        effects: list[Effect] = []
        for unit in self.zone_units[zone]:
            effects.extend(self._evaluate(unit, ctx, t))
        return effects

    def on_tick(self, ctx: Context) -> Iterable[Effect]:
        # Contacts report changes, not durations: the delay runs out between messages.
        t = ctx.now.timestamp()
        effects: list[Effect] = []
        for unit, delay in self.delays.items():
            if delay.since is not None and unit not in self.alarms:
                effects.extend(self._evaluate(unit, ctx, t))
        return effects

    def _evaluate(self, unit: str, ctx: Context, t: float) -> Iterable[Effect]:
        info = self.units[unit]
        running = self.params.mode_in(unit, ctx, self.modes)
        opened = self.open_contacts(info.zone, ctx) if running else []
        if running is None or opened is None:
            return ()  # not known yet: keep the delay and the alarm
        condition = bool(running and opened)
        delay = self.delays[unit]
        if not delay.update(condition, t):
            return () if condition else self.alarms.clear(unit)
        if unit in self.alarms:
            return ()
        assert delay.since is not None
        return self.alarms.raise_alarm(
            unit,
            "ac_window_open",
            value=round(t - delay.since),
            limit=self.params.delay,
            grade=self.params.grade,
            details={"device": unit, "place": info.place(), "window": ", ".join(opened)},
        )

    def on_stale(self, device_id: str, since: float | None, ctx: Context) -> Iterable[Effect]:
        # A stale unit, or a stale contact: the units of its zone no longer know the window.
        zone = self.contact_zone.get(device_id)
        units = [device_id] if zone is None else self.zone_units.get(zone, [])
        note = stale_note(device_id, since, ctx)
        effects: list[Effect] = []
        for unit in units:
            delay = self.delays.get(unit)
            if delay is not None:
                delay.reset()
            effects.extend(self.alarms.clear(unit, note))
        return effects

    def snapshot(self) -> dict[str, Any]:
        return snapshot_delays(self.alarms, self.delays)

    def restore(self, state: Mapping[str, Any]) -> None:
        restore_delays(self.alarms, self.delays, state)

    def describe(self) -> str:
        p = self.params
        return (
            f"cooling or heating with a {p.contact_point} contact in the zone open for "
            f"{p.delay:g} s ({len(self.units)} units, {len(self.contact_zone)} contacts)"
        )


# --- demand response -----------------------------------------------------------------------


class DemandResponseParams(AcUnitParams):
    offset: float = Field(
        default=1.0, gt=0, description="Setpoint raise of an event that names none, °C."
    )
    max_offset: float = Field(
        default=2.0, gt=0, description="The largest raise applied, whatever an event asks, °C."
    )
    max_duration: Duration = Field(
        default=14400.0,
        gt=0,
        description="An event ends this long after its start at the latest, whatever its end.",
    )
    restore_manual: bool = Field(
        default=False,
        description="At the end, restore also units whose setpoint someone changed during the "
        "event (default: keep the person's value).",
    )
    setpoint_point: str = Field(default="setpoint_degc", description="Setpoint point name.")


@dataclass(slots=True)
class DrEvent:
    """One demand-response event as the rule keeps it (epoch seconds, °C)."""

    id: str
    start: float
    end: float  # the end asked for, cut to start + max_duration
    offset: float  # the raise applied: the one asked for, capped
    requested: float  # the raise asked for

    def to_json(self) -> dict[str, Any]:
        return {
            "start": self.start,
            "end": self.end,
            "offset": self.offset,
            "requested": self.requested,
        }


@dataclass(slots=True)
class _Shifted:
    """A unit the rule has taken into an event: its own setpoint and what was written."""

    base: float  # the unit's setpoint when the event took it
    target: float | None  # the setpoint written; None: nothing (already at the top)
    ours: list[float] = field(default_factory=list)  # values the rule wrote, and base
    manual: bool = False  # someone set another value during the event
    offset: float = 0.0  # the raise the target stands for

    def to_json(self) -> dict[str, Any]:
        return {
            "base": self.base,
            "target": self.target,
            "ours": list(self.ours),
            "manual": self.manual,
            "offset": self.offset,
        }

    @classmethod
    def from_json(cls, s: Mapping[str, Any]) -> _Shifted:
        return cls(
            float(s["base"]),
            optional_float(s.get("target")),
            [float(x) for x in s.get("ours", ())],
            bool(s.get("manual", False)),
            float(s.get("offset", 0.0)),
        )


class DemandResponseRule(_AcRule[DemandResponseParams]):
    """Raises the cooling setpoints of the units in scope while a demand-response event runs.

    Events arrive as inputs (Engine.on_input with a DemandResponseEvent or DemandResponseCancel
    from rules.inputs: the gateway's MQTT `guanjia/<site>/dr/event`); the rule acts on its
    next tick. While one or more events run,
    every unit in scope that is cooling gets its own setpoint plus the largest offset of the
    running events (capped by max_offset and the setpoint's writable maximum); a unit that
    starts cooling during the event joins it. When the last event ends (its end, max_duration
    after its start, or cancel()), each unit gets its own setpoint back, also one that was
    switched off meanwhile (it starts at that setpoint next time). Of overlapping events the
    largest offset applies; when it ends the units go down to the next one's.

    A person who changes a unit's setpoint during the event wins: the unit is left alone for
    the rest of the event and keeps that value at the end, unless restore_manual. Events and
    the remembered setpoints are in the snapshot, so a restart in the middle of an event still
    restores. No alarm is raised: every write is an audited command.
    """

    kind = "demand_response"

    MAX_EVENTS: ClassVar[int] = 100
    """Events kept at once: a misbehaving adapter cannot grow the state without bound."""

    def __init__(self, rule_id: str, params: DemandResponseParams) -> None:
        super().__init__(rule_id, params)
        self.devices: dict[str, DeviceInfo] = {}
        self.events: dict[str, DrEvent] = {}
        self.units: dict[str, _Shifted] = {}  # units taken into the running event(s)

    def bind(self, devices: Sequence[DeviceInfo]) -> list[str]:
        super().bind(devices)
        # Only units whose setpoint can be written take part.
        self.watched = [d for d in self.watched if self._range(d) is not None]
        self.devices = {d.id: d for d in self.watched}
        return list(self.devices)

    # -- events in --------------------------------------------------------------------------

    def on_input(self, event: Input, ctx: Context) -> InputReply | None:
        if isinstance(event, DemandResponseCancel):
            return InputReply("cancelled" if self.cancel(event.id) else "unknown")
        if isinstance(event, DemandResponseEvent):
            try:
                self.take(event)
            except ValueError as exc:
                return InputReply("refused", str(exc))
            return InputReply("accepted")  # the commands follow on the next tick
        return None

    def event(
        self,
        start: datetime,
        end: datetime,
        offset: float | None = None,
        event_id: str | None = None,
    ) -> DrEvent:
        """Take an event (or an update of one with the same id); it acts on the next tick.

        `offset` is the setpoint raise in °C (None: the rule's `offset`), capped by
        `max_offset`. Raises ValueError for naive or reversed times and offsets not above 0.
        """
        return self.take(DemandResponseEvent(event_id or "", start, end, offset))

    def take(self, event: DemandResponseEvent) -> DrEvent:
        """Take a (valid) event; raises ValueError when MAX_EVENTS are pending already."""
        if event.id not in self.events and len(self.events) >= self.MAX_EVENTS:
            raise ValueError(f"{self.MAX_EVENTS} events already pending")
        requested = self.params.offset if event.offset is None else event.offset
        t0, t1 = event.start.timestamp(), event.end.timestamp()
        ev = DrEvent(
            event.id,
            t0,
            min(t1, t0 + self.params.max_duration),
            min(requested, self.params.max_offset),
            requested,
        )
        self.events[event.id] = ev
        return ev

    def cancel(self, event_id: str) -> bool:
        """End an event now (pending or running); False if the rule does not know it."""
        return self.events.pop(event_id, None) is not None

    # -- samples and ticks ------------------------------------------------------------------

    def on_sample(self, sample: Sample, ctx: Context) -> Iterable[Effect]:
        # Only to notice a person's change of a unit the event has shifted.
        if not self.units:
            return ()
        unit = self.units.get(sample.device)
        if unit is not None and not unit.manual:
            self._observe(unit, finite(sample.values.get(self.params.setpoint_point)))
        return ()

    def on_tick(self, ctx: Context) -> Iterable[Effect]:
        if not self.events and not self.units:
            return ()
        t = ctx.now.timestamp()
        for key in [k for k, e in self.events.items() if e.end <= t]:
            del self.events[key]
        running = [e for e in self.events.values() if e.start <= t]
        if not running:
            return self._end_all(ctx) if self.units else ()
        best = max(running, key=lambda e: e.offset)
        label = ", ".join(sorted(e.id for e in running))
        effects: list[Effect] = []
        for device_id, info in self.devices.items():
            unit = self.units.get(device_id)
            if unit is None:
                effects.extend(self._take(info, best.offset, label, ctx))
            elif not unit.manual and unit.target is not None and unit.offset != best.offset:
                effects.extend(self._shift(info, unit, best.offset, label))
        return effects

    def _observe(self, unit: _Shifted, value: float | None) -> None:
        if value is not None and not any(close(value, v, SAME) for v in unit.ours):
            unit.manual = True

    def _range(self, info: DeviceInfo) -> tuple[float, float] | None:
        return info.writable_range(self.params.setpoint_point)

    def _command(self, info: DeviceInfo, value: float, reason: str) -> Issue:
        return Issue(Command(info.id, self.params.setpoint_point, value, f"rule:{self.id}"), reason)

    def _take(self, info: DeviceInfo, offset: float, label: str, ctx: Context) -> list[Effect]:
        """A unit not yet in the event: shifted if it is cooling now."""
        if not self.params.mode_in(info.id, ctx, self.params.cool_modes):
            return []
        latest = ctx.latest(info.id, self.params.setpoint_point)
        base = None if latest is None else finite(latest[0])
        if base is None:
            return []
        unit = self.units[info.id] = _Shifted(base, None, [base])
        return self._shift(info, unit, offset, label)

    def _shift(self, info: DeviceInfo, unit: _Shifted, offset: float, label: str) -> list[Effect]:
        writable = self._range(info)
        assert writable is not None  # bind() keeps only writable units
        low, high = writable
        target = round(min(unit.base + offset, high), 1)
        unit.offset = offset
        if target < low or target <= unit.base or target == unit.target:
            return []  # at the top of the range already, or nothing new to write
        unit.target = target
        unit.ours.append(target)
        return [
            self._command(
                info,
                target,
                f"demand response {label}: setpoint {unit.base:g} -> {target:g} °C",
            )
        ]

    def _end_all(self, ctx: Context) -> list[Effect]:
        """The last event is over: each unit gets its own setpoint back."""
        effects: list[Effect] = []
        for device_id, unit in self.units.items():
            info = self.devices.get(device_id)
            if info is None or unit.target is None:
                continue  # nothing was written
            if not unit.manual:
                latest = ctx.latest(device_id, self.params.setpoint_point)
                self._observe(unit, None if latest is None else finite(latest[0]))
            if unit.manual and not self.params.restore_manual:
                continue  # the person's value stays
            if not within(unit.base, self._range(info)):
                continue  # never write outside the range, even to restore
            effects.append(
                self._command(
                    info, unit.base, f"demand response over: setpoint back to {unit.base:g} °C"
                )
            )
        self.units.clear()
        return effects

    def snapshot(self) -> dict[str, Any]:
        if not self.events and not self.units:
            return {}
        return {
            "events": {k: e.to_json() for k, e in self.events.items()},
            "units": {d: u.to_json() for d, u in self.units.items()},
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        self.events = {
            str(k): DrEvent(
                str(k),
                float(e["start"]),
                float(e["end"]),
                float(e["offset"]),
                float(e.get("requested", e["offset"])),
            )
            for k, e in state.get("events", {}).items()
        }
        # Units no longer bound are kept: they are restored if the site still has them.
        self.units = {str(d): _Shifted.from_json(u) for d, u in state.get("units", {}).items()}

    def describe(self) -> str:
        p = self.params
        keep = "restored" if p.restore_manual else "kept"
        return (
            f"demand response: cooling setpoints +{p.offset:g} °C by default, at most "
            f"+{p.max_offset:g} °C, events at most {p.max_duration:g} s, manual "
            f"changes {keep}"
        )
