"""Demand response (空调负荷柔性调控): AC units give up load while a grid event runs.

Strategies, per event (its `strategy`) or the rule's default:
- offset: every unit in scope that is cooling gets its own setpoint plus the event's offset
  (capped by max_offset and the setpoint's writable maximum). Of overlapping events the
  largest offset applies; when it ends the units go down to the next one's.
- off: units that are cooling are switched off for the window.
- precool_off ("1+1"): for `precool` before the window the units cool harder (their setpoint
  lowered by precool_offset, never below precool_floor, the national floor), then they are
  switched off for the window.
Of events running at once for a unit, off wins over an offset, an offset over pre-cooling.

Staggering: with `stagger`, the zones of the rule (in order of their names) join one after
another, `stagger` apart, and are restored in the same order after the end, so the building
neither drops nor rebounds all at once. An event names the zones it covers (globs; none: every
unit of the rule); exempt zones never take part. An event that arrives later than `min_notice`
before its start is refused, one longer than max_duration is cut.

At the end each unit gets its own setpoint back, and a unit the event switched off is switched
on again. A person who changes a unit during the event wins: a setpoint set by hand, or a unit
switched on again by hand, is left alone for the rest of the event and kept at the end (unless
restore_manual). Events and the units taken are in the snapshot: a restart in the middle of an
event still restores. No alarm is raised: every write is an audited command, and the gateway
measures the load shed (gateway/dr/).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Literal, cast

from pydantic import Field, field_validator

from core.config_types import Duration
from core.types import Command, Sample, Value
from rules.kinds.hvac import SAME, AcUnitParams, Season, _AcRule
from rules.kinds.security import flag
from rules.model import (
    Context,
    DemandResponseCancel,
    DemandResponseEvent,
    DeviceInfo,
    Effect,
    Input,
    InputReply,
    Issue,
)
from rules.numbers import close, finite, optional_float, within

Strategy = Literal["offset", "off", "precool_off"]
COOLING = ("cool", "dry", "auto")
"""Modes an event takes a unit in: cooling, dehumidifying, or auto in the cooling season."""
Phase = Literal["precool", "offset", "off"]
_PRIORITY: dict[Phase, int] = {"precool": 0, "offset": 1, "off": 2}


class DemandResponseParams(AcUnitParams):
    strategy: Strategy = Field(
        default="offset", description="The strategy of an event that names none."
    )
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
    min_notice: Duration = Field(
        default=0.0,
        ge=0,
        description="An event must arrive at least this long before its start, else refused.",
    )
    precool: Duration = Field(
        default=3600.0, ge=0, description="precool_off: pre-cooling before the window."
    )
    precool_offset: float = Field(
        default=1.0, gt=0, description="precool_off: the setpoint lowered by this, °C."
    )
    precool_floor: float = Field(
        default=26.0, description="precool_off: never pre-cool below this setpoint, °C."
    )
    stagger: Duration = Field(
        default=0.0,
        ge=0,
        description="Zones join, and are restored, one after another this far apart.",
    )
    cooling_season: Season = Field(
        default=Season(start="05-01", end="10-31"),
        description="Units in an auto mode are taken in this season only (they may heat "
        "outside it); units that cool or dry are taken all year.",
    )
    retry: Duration = Field(
        default=60.0,
        gt=0,
        description="A write the unit does not show this long after (refused, failed, lost) "
        "is issued again.",
    )
    restore_manual: bool = Field(
        default=False,
        description="At the end, restore also units someone changed during the event "
        "(default: keep the person's value).",
    )
    setpoint_point: str = Field(default="setpoint_degc", description="Setpoint point name.")

    @field_validator("strategy", mode="before")
    @classmethod
    def _yaml_off(cls, value: Any) -> Any:
        return "off" if value is False else value  # YAML 1.1 reads a bare `off` as false


@dataclass(slots=True)
class DrEvent:
    """One demand-response event as the rule keeps it (epoch seconds, °C)."""

    id: str
    start: float
    end: float  # the end asked for, cut to start + max_duration
    offset: float  # the raise applied: the one asked for, capped
    requested: float  # the raise asked for
    strategy: Strategy = "offset"
    zones: tuple[str, ...] = ()
    source: str = ""

    def covers(self, zone: str) -> bool:
        return not self.zones or any(fnmatch.fnmatchcase(zone, g) for g in self.zones)

    def phase(self, t: float, shift: float, precool: float) -> Phase | None:
        """What the event asks of a unit whose zone is shifted by `shift` seconds."""
        start, end = self.start + shift, self.end + shift
        if start <= t < end:
            return "offset" if self.strategy == "offset" else "off"
        if self.strategy == "precool_off" and start - precool <= t < start:
            return "precool"
        return None

    def to_json(self) -> dict[str, Any]:
        return {
            "start": self.start,
            "end": self.end,
            "offset": self.offset,
            "requested": self.requested,
            "strategy": self.strategy,
            "zones": list(self.zones),
            "source": self.source,
        }

    @classmethod
    def from_json(cls, key: str, e: Mapping[str, Any]) -> DrEvent:
        strategy = e.get("strategy", "offset")
        return cls(
            key,
            float(e["start"]),
            float(e["end"]),
            float(e["offset"]),
            float(e.get("requested", e["offset"])),
            strategy if strategy in ("offset", "off", "precool_off") else "offset",
            tuple(str(z) for z in e.get("zones", ())),
            str(e.get("source", "")),
        )


@dataclass(slots=True)
class _Taken:
    """A unit the rule has taken into an event: its own settings and what was written."""

    base: float  # the unit's setpoint when the event took it
    target: float | None  # the setpoint written; None: nothing (already there)
    ours: list[float] = field(default_factory=list)  # values the rule wrote, and base
    manual: bool = False  # someone set another value during the event
    phase: Phase = "offset"
    switched_off: bool = False  # the rule switched the unit off
    off_seen: bool = False  # a reading showed it off since
    label: str = ""  # the events that took it, for the restore's reason
    issued_at: float | None = None  # when the last write was issued (epoch seconds)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, s: Mapping[str, Any]) -> _Taken:
        phase = s.get("phase", "offset")
        return cls(
            float(s["base"]),
            optional_float(s.get("target")),
            [float(x) for x in s.get("ours", ())],
            bool(s.get("manual", False)),
            phase if phase in _PRIORITY else "offset",
            bool(s.get("switched_off", False)),
            bool(s.get("off_seen", False)),
            str(s.get("label", "")),
            optional_float(s.get("issued_at")),
        )


class DemandResponseRule(_AcRule[DemandResponseParams]):
    """Takes AC load off the grid while demand-response events run (see the module's note).

    Events arrive as inputs (Engine.on_input with a DemandResponseEvent or DemandResponseCancel
    from rules.inputs: MQTT `<prefix>/<site>/dr/event`, the webhook, the OpenADR VEN); the rule
    acts on its next tick.
    """

    kind = "demand_response"

    MAX_EVENTS: ClassVar[int] = 100
    """Events kept at once: a misbehaving adapter cannot grow the state without bound."""

    def __init__(self, rule_id: str, params: DemandResponseParams) -> None:
        super().__init__(rule_id, params)
        self.devices: dict[str, DeviceInfo] = {}
        self.events: dict[str, DrEvent] = {}
        self.units: dict[str, _Taken] = {}  # units taken into the running event(s)
        self.shift: dict[str, float] = {}  # device -> its zone's stagger, seconds
        self.horizon = 0.0

    def bind(self, devices: Sequence[DeviceInfo]) -> list[str]:
        super().bind(devices)
        # Only units whose setpoint can be written take part.
        self.watched = [d for d in self.watched if self._range(d) is not None]
        self.devices = {d.id: d for d in self.watched}
        zones = sorted({d.zone for d in self.watched})
        order = {z: i for i, z in enumerate(zones)}
        self.shift = {d.id: order[d.zone] * self.params.stagger for d in self.watched}
        # How long after an event's end the last zone is restored.
        self.horizon = self.params.stagger * max(len(zones) - 1, 0)
        return list(self.devices)

    def writes(self, device: DeviceInfo) -> list[str]:
        # Setpoints for offsets and pre-cooling, the power point for off (any event may ask).
        points = (self.params.setpoint_point, self.params.power_point)
        return [p for p in points if device.writable_range(p) is not None]

    # -- events in --------------------------------------------------------------------------

    def on_input(self, event: Input, ctx: Context) -> InputReply | None:
        if isinstance(event, DemandResponseCancel):
            return InputReply("cancelled" if self.cancel(event.id) else "unknown")
        if isinstance(event, DemandResponseEvent):
            try:
                self.take(event, ctx.now.timestamp())
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
        strategy: Strategy | None = None,
    ) -> DrEvent:
        """Take an event (or an update of one with the same id); it acts on the next tick.

        `offset` is the setpoint raise in °C (None: the rule's `offset`), capped by
        `max_offset`. Raises ValueError for naive or reversed times and offsets not above 0.
        """
        return self.take(DemandResponseEvent(event_id or "", start, end, offset, strategy))

    def take(self, event: DemandResponseEvent, now: float | None = None) -> DrEvent:
        """Take a (valid) event; raises ValueError when it comes too late for the notice
        period or MAX_EVENTS are pending already."""
        p = self.params
        if event.id not in self.events and len(self.events) >= self.MAX_EVENTS:
            raise ValueError(f"{self.MAX_EVENTS} events already pending")
        t0, t1 = event.start.timestamp(), event.end.timestamp()
        if (
            event.id not in self.events
            and now is not None
            and p.min_notice > 0
            and (t0 - now < p.min_notice)
        ):
            raise ValueError(
                f"event {event.id} starts {max(t0 - now, 0):.0f} s after it arrived; the "
                f"notice period is {p.min_notice:g} s"
            )
        strategy = cast(Strategy, event.strategy or p.strategy)
        requested = p.offset if event.offset is None else event.offset
        ev = DrEvent(
            event.id,
            t0,
            min(t1, t0 + p.max_duration),
            min(requested, p.max_offset),
            requested,
            strategy,
            tuple(event.zones),
            event.source,
        )
        self.events[event.id] = ev
        return ev

    def window(self, event_id: str) -> tuple[float, float] | None:
        """When the event acts on the units (epoch seconds): from its start (pre-cooling
        included) to its end, cut to max_duration, and the last zone's staggered restore."""
        event = self.events.get(event_id)
        if event is None:
            return None
        precool = self.params.precool if event.strategy == "precool_off" else 0.0
        return event.start - precool, event.end + self.horizon

    def cancel(self, event_id: str) -> bool:
        """End an event now (pending or running); False if the rule does not know it."""
        return self.events.pop(event_id, None) is not None

    # -- samples and ticks ------------------------------------------------------------------

    def on_sample(self, sample: Sample, ctx: Context) -> Iterable[Effect]:
        # Only to notice a person's change of a unit the event has taken.
        if not self.units:
            return ()
        unit = self.units.get(sample.device)
        if unit is not None and not unit.manual:
            self._observe(unit, sample.values)
        return ()

    def _observe(self, unit: _Taken, values: Mapping[str, Value]) -> None:
        setpoint = finite(values.get(self.params.setpoint_point))
        if setpoint is not None and not any(close(setpoint, v, SAME) for v in unit.ours):
            unit.manual = True
        if unit.switched_off and self.params.power_point in values:
            on = flag(values[self.params.power_point])
            if on is False:
                unit.off_seen = True
            elif on and unit.off_seen:
                unit.manual = True  # switched on again by hand

    def on_tick(self, ctx: Context) -> Iterable[Effect]:
        if not self.events and not self.units:
            return ()
        t = ctx.now.timestamp()
        for key in [k for k, e in self.events.items() if e.end + self.horizon <= t]:
            del self.events[key]
        effects: list[Effect] = []
        for device_id, info in self.devices.items():
            wanted = self._wanted(info, t)
            unit = self.units.get(device_id)
            if wanted is None:
                if unit is not None:
                    effects.extend(self._restore(info, unit, ctx))
                    del self.units[device_id]
                continue
            phase, offset, label = wanted
            if unit is None:
                unit = self._take(info, ctx)
                if unit is None:
                    continue
            if unit.manual:
                continue
            unit.label = label
            done = self._apply(info, unit, phase, offset, label)
            if done:
                unit.issued_at = t
            else:
                done = self._again(info, unit, label, ctx, t)
            effects.extend(done)
        if not self.events:
            # Units restored from a snapshot that the site no longer has: nothing to restore.
            self.units = {d: u for d, u in self.units.items() if d in self.devices}
        return effects

    def _wanted(self, info: DeviceInfo, t: float) -> tuple[Phase, float, str] | None:
        """The phase the running events ask of the unit now, its offset, and their ids."""
        shift = self.shift.get(info.id, 0.0)
        best: tuple[Phase, float] | None = None
        ids: list[str] = []
        for e in self.events.values():
            if not e.covers(info.zone):
                continue
            phase = e.phase(t, shift, self.params.precool)
            if phase is None:
                continue
            ids.append(e.id)
            offset = e.offset if phase == "offset" else 0.0
            rank = (_PRIORITY[phase], offset)
            if best is None or rank > (_PRIORITY[best[0]], best[1]):
                best = (phase, offset)
        if best is None:
            return None
        return best[0], best[1], ", ".join(sorted(ids))

    def _take(self, info: DeviceInfo, ctx: Context) -> _Taken | None:
        """A unit not yet in an event: taken if it is cooling now."""
        cooling = COOLING if self.params.cooling_season.contains(ctx.now) else ("cool", "dry")
        if not self.params.mode_in(info, ctx, cooling):
            return None
        latest = ctx.latest(info.id, self.params.setpoint_point)
        base = None if latest is None else finite(latest[0])
        if base is None:
            return None
        unit = self.units[info.id] = _Taken(base, None, [base])
        return unit

    def _apply(
        self, info: DeviceInfo, unit: _Taken, phase: Phase, offset: float, label: str
    ) -> list[Effect]:
        if phase == "off":
            unit.phase = "off"
            if not self._can_switch(info):
                # Not to be switched off: at least no pre-cooling through the window.
                if unit.target is None or close(unit.target, unit.base, SAME):
                    return []
                unit.target = unit.base
                return [
                    self._command(
                        info,
                        self.params.setpoint_point,
                        unit.base,
                        f"demand response {label}: cannot switch off; setpoint back to "
                        f"{unit.base:g} °C",
                    )
                ]
            if unit.switched_off:
                return []
            unit.switched_off = True
            return [
                self._command(
                    info,
                    self.params.power_point,
                    0,
                    f"demand response {label}: switched off for the window",
                )
            ]
        effects: list[Effect] = []
        if unit.switched_off:
            # An off event over, another still asking for less (an offset): on again first.
            unit.switched_off = unit.off_seen = False
            effects.append(
                self._command(
                    info, self.params.power_point, 1, f"demand response {label}: on again"
                )
            )
        writable = self._range(info)
        assert writable is not None  # bind() keeps only writable units
        low, high = writable
        if phase == "precool":
            target = round(
                max(unit.base - self.params.precool_offset, self.params.precool_floor), 1
            )
            if target >= unit.base:
                target = unit.base  # at the floor already: pre-cooling changes nothing
        else:
            target = round(min(unit.base + offset, high), 1)
        unit.phase = phase
        current = unit.target if unit.target is not None else unit.base
        if target < low or target > high or close(target, current, SAME):
            return effects  # outside the range, or nothing new to write
        unit.target = target
        unit.ours.append(target)
        what = "pre-cooling" if phase == "precool" else "setpoint"
        effects.append(
            self._command(
                info,
                self.params.setpoint_point,
                target,
                f"demand response {label}: {what} {unit.base:g} -> {target:g} °C",
            )
        )
        return effects

    def _again(
        self, info: DeviceInfo, unit: _Taken, label: str, ctx: Context, t: float
    ) -> list[Effect]:
        """The last write again, when the unit still does not show it `retry` after it was
        issued (the command was refused, failed, or its reading was lost); a person's change
        is no missing write: it makes the unit manual (on_sample)."""
        if unit.issued_at is None or t - unit.issued_at < self.params.retry:
            return []
        p = self.params
        if unit.phase == "off":
            if not unit.switched_off or unit.off_seen:
                return []
            point: str = p.power_point
            value: Value = 0
        else:
            latest = ctx.latest(info.id, p.setpoint_point)
            now = None if latest is None else finite(latest[0])
            if unit.target is None or now is None or close(now, unit.target, SAME):
                return []
            point, value = p.setpoint_point, unit.target
        unit.issued_at = t  # the audit record of each write says "again"
        return [
            self._command(
                info, point, value, f"demand response {label}: {point} {value} not shown; again"
            )
        ]

    def _restore(self, info: DeviceInfo, unit: _Taken, ctx: Context) -> list[Effect]:
        """The unit's events are over: its own setpoint back, switched on if the rule
        switched it off; a person's change stays unless restore_manual."""
        if not unit.manual:
            latest = {
                point: value[0]
                for point in (self.params.setpoint_point, self.params.power_point)
                if (value := ctx.latest(info.id, point)) is not None
            }
            self._observe(unit, latest)
        if unit.manual and not self.params.restore_manual:
            return []
        effects: list[Effect] = []
        label = unit.label or "events"
        if (
            unit.target is not None
            and not close(unit.target, unit.base, SAME)
            and within(unit.base, self._range(info))
        ):
            effects.append(
                self._command(
                    info,
                    self.params.setpoint_point,
                    unit.base,
                    f"demand response {label} over: setpoint back to {unit.base:g} °C",
                )
            )
        if unit.switched_off and within(1, info.writable_range(self.params.power_point)):
            effects.append(
                self._command(
                    info,
                    self.params.power_point,
                    1,
                    f"demand response {label} over: switched on again",
                )
            )
        return effects

    def _range(self, info: DeviceInfo) -> tuple[float, float] | None:
        return info.writable_range(self.params.setpoint_point)

    def _can_switch(self, info: DeviceInfo) -> bool:
        return within(0, info.writable_range(self.params.power_point))

    def _command(self, info: DeviceInfo, point: str, value: Value, reason: str) -> Issue:
        return Issue(Command(info.id, point, value, f"rule:{self.id}"), reason)

    def snapshot(self) -> dict[str, Any]:
        if not self.events and not self.units:
            return {}
        return {
            "events": {k: e.to_json() for k, e in self.events.items()},
            "units": {d: u.to_json() for d, u in self.units.items()},
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        self.events = {
            str(k): DrEvent.from_json(str(k), e) for k, e in state.get("events", {}).items()
        }
        # Units no longer bound are kept: they are restored if the site still has them.
        self.units = {str(d): _Taken.from_json(u) for d, u in state.get("units", {}).items()}

    def describe(self) -> str:
        p = self.params
        keep = "restored" if p.restore_manual else "kept"
        stagger = f", zones staggered {p.stagger:g} s" if p.stagger else ""
        return (
            f"demand response: {p.strategy} by default (cooling setpoints +{p.offset:g} °C, "
            f"at most +{p.max_offset:g} °C), events at most {p.max_duration:g} s, manual "
            f"changes {keep}{stagger}"
        )
