"""Air-conditioning rules: what every AC rule shares (the units, their modes and power), AC
after hours and AC with a window open. The temperature policy is rules/kinds/ac_policy.py, the
room temperature watch rules/kinds/ac_room.py, demand response rules/kinds/demand_response.py.

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
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr
from typing_extensions import TypeVar

from core.config_types import Duration
from core.types import Sample, Value
from rules.blocks import AlarmLatch, OfficeHours, OnDelay
from rules.kinds.base import restore_delays, snapshot_delays, stale_note
from rules.kinds.security import flag
from rules.model import (
    Context,
    DeviceInfo,
    Effect,
    PointNeed,
    Rule,
    RuleParams,
    Scope,
)

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


def _hvac_scope() -> Scope:
    return Scope(kinds=["hvac"])


@dataclass(frozen=True, slots=True)
class ModeCodes:
    """Which codes of a unit's mode point cool, heat, dehumidify (dry: the compressor cools)
    or follow the room (auto); the others (fan, ventilation) move no heat."""

    cool: frozenset[int]
    heat: frozenset[int]
    auto: frozenset[int]
    dry: frozenset[int]

    def kind(self, code: Value) -> str:
        """ "cool", "heat", "auto", "dry", or "" for a code that moves no heat."""
        if isinstance(code, bool) or not isinstance(code, int | float):
            return ""
        for name in ("cool", "heat", "dry", "auto"):
            if code in getattr(self, name):
                return name
        return ""


# What a mode label starts with -> its kind (CoolMasterNet's Haux and HH heat too).
_LABEL_KINDS = (
    ("cool", "cool"),
    ("heat", "heat"),
    ("haux", "heat"),
    ("hh", "heat"),
    ("auto", "auto"),
    ("dry", "dry"),
)
# A mode point without labels: CoolMasterNet's codes.
COOLMASTER_CODES = ModeCodes(frozenset({0}), frozenset({1, 4, 6}), frozenset({2}), frozenset({3}))


def codes_from_labels(labels: Mapping[int, str]) -> ModeCodes:
    """The kinds of a mode point's codes from the profile's labels (Cool, Heat, Auto, Dry)."""
    found: dict[str, set[int]] = {"cool": set(), "heat": set(), "auto": set(), "dry": set()}
    for code, label in labels.items():
        text = str(label).strip().lower()
        for prefix, kind in _LABEL_KINDS:
            if text.startswith(prefix):
                found[kind].add(int(code))
                break
    return ModeCodes(*(frozenset(found[k]) for k in ("cool", "heat", "auto", "dry")))


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
    cool_modes: list[int] | None = Field(
        default=None,
        description="Mode codes that cool; default: those the profile labels Cool "
        "(CoolMasterNet's 0 where the mode point has no labels).",
    )
    heat_modes: list[int] | None = Field(
        default=None, description="Mode codes that heat; default: labelled Heat (Haux, HH)."
    )
    auto_modes: list[int] | None = Field(
        default=None,
        description="Mode codes that cool in summer and heat in winter; default: labelled Auto.",
    )
    dry_modes: list[int] | None = Field(
        default=None,
        description="Mode codes that dehumidify (the compressor cools); default: labelled Dry.",
    )
    _codes: dict[tuple[str, str], ModeCodes] = PrivateAttr(default_factory=dict)

    def exempt(self, device: DeviceInfo) -> bool:
        return any(fnmatch.fnmatchcase(device.zone, g) for g in self.exempt_zones)

    def power(self, device_id: str, ctx: Context) -> bool | None:
        """On (True), off (False), or not known (no reading yet, or one that is no flag)."""
        latest = ctx.latest(device_id, self.power_point)
        return None if latest is None else flag(latest[0])

    def codes(self, device: DeviceInfo) -> ModeCodes:
        """The unit's mode codes: the rule's lists where given, else its profile's labels."""
        key = (device.profile, device.id if not device.profile else "")
        found = self._codes.get(key)
        if found is None:
            point = device.points.get(self.mode_point)
            labelled = (
                codes_from_labels(point.labels) if point and point.labels else COOLMASTER_CODES
            )
            found = self._codes[key] = ModeCodes(
                *(
                    frozenset(given) if given is not None else default
                    for given, default in (
                        (self.cool_modes, labelled.cool),
                        (self.heat_modes, labelled.heat),
                        (self.auto_modes, labelled.auto),
                        (self.dry_modes, labelled.dry),
                    )
                )
            )
        return found

    def mode_kind(self, device: DeviceInfo, ctx: Context) -> str | None:
        """What the unit's mode does ("cool", "heat", "auto", "dry"; "" when it is off or
        its mode moves no heat); None while its mode, or its on/off, is not known. A unit
        whose profile has no on/off point counts as on."""
        mode = ctx.latest(device.id, self.mode_point)
        if mode is None:
            return None
        on = self.power(device.id, ctx)
        if on is False:
            return ""
        if on is None and self.power_point in device.points:
            return None  # its on/off not read yet, or read as bad: not known
        return self.codes(device).kind(mode[0])

    def mode_in(self, device: DeviceInfo, ctx: Context, kinds: Sequence[str]) -> bool | None:
        """Is the unit on and in a mode of one of `kinds`? None while its mode is not known."""
        kind = self.mode_kind(device, ctx)
        return None if kind is None else kind in kinds


RUNNING = ("cool", "heat", "auto", "dry")
"""Modes that move heat: a window open beside them wastes it."""

A = TypeVar("A", bound=AcUnitParams, default=AcUnitParams, covariant=True)


class _AcRule(Rule[A]):
    """Binds the units in scope that are not exempt."""

    def bind(self, devices: Sequence[DeviceInfo]) -> list[str]:
        super().bind(devices)
        self.watched = [d for d in self.watched if not self.params.exempt(d)]
        return [d.id for d in self.watched]


class _DelayedAcRule(_AcRule[A]):
    """A unit's condition held for a delay raises its alarm (`alarms`, one `delays` entry per
    unit): a stale unit stops its delay and clears its alarm; both are in the snapshot."""

    def __init__(self, rule_id: str, params: A) -> None:
        super().__init__(rule_id, params)
        self.alarms = AlarmLatch(rule_id)
        self.devices: dict[str, DeviceInfo] = {}
        self.delays: dict[str, OnDelay] = {}

    def delay_s(self) -> float:
        """How long the condition must hold (the kind's `delay`)."""
        raise NotImplementedError

    def bind(self, devices: Sequence[DeviceInfo]) -> list[str]:
        ids = super().bind(devices)
        self.devices = {d.id: d for d in self.watched}
        self.delays = {d: OnDelay(self.delay_s()) for d in ids}
        return ids

    def on_stale(self, device_id: str, since: float | None, ctx: Context) -> Iterable[Effect]:
        delay = self.delays.get(device_id)
        if delay is not None:
            delay.reset()
        return self.alarms.clear(device_id, stale_note(device_id, since, ctx))

    def snapshot(self) -> dict[str, Any]:
        return snapshot_delays(self.alarms, self.delays)

    def restore(self, state: Mapping[str, Any]) -> None:
        restore_delays(self.alarms, self.delays, state)


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


class AcAfterHoursRule(_DelayedAcRule[AcAfterHoursParams]):
    """An AC unit left on outside office hours (the working calendar, 调休 included)."""

    kind = "ac_after_hours"

    def __init__(self, rule_id: str, params: AcAfterHoursParams) -> None:
        super().__init__(rule_id, params)
        # Asked on every poll of every unit: the answer is kept for the clock minute (exact).
        self.hours = OfficeHours(params.breaks_up_to, refresh=60.0)

    def delay_s(self) -> float:
        return self.params.delay

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
        running = self.params.mode_in(info, ctx, RUNNING)
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
