"""The AC temperature policy as inspectors apply it (国办发〔2007〕42号 and local variants).

Each unit is judged by what it is doing: a cooling setpoint below the cooling floor is a
violation whenever the unit cools, a heating setpoint above the heating ceiling whenever it
heats (`judge: mode`, the default). A unit whose profile reports no mode is judged by the
seasons (cooling in summer, heating in winter); `judge: season` judges every unit so (a mode
counts only inside its season, as the rule did before modes were judged). Auto modes count as
cooling in summer and heating in winter.

Local variants are data (config/ac_variants.yaml, `variant:`): a lower heating ceiling
(Guangdong 18 °C), no cooling below an outdoor temperature and no heating above one (read from
a sensor point, `outdoor:`), stricter floors for public-facing areas (27 °C, by zone or tag),
and daily windows with AC off on tight-supply days (Jiangsu 09:00–11:00, `off_windows:`),
switched on and off by an operator or a grid event (an `AcWindowSwitch` input, MQTT
`<prefix>/<site>/dr/event` {"window": name, "active": true}).

Each breach is its own alarm: the setpoint one on the unit (kind ac_setpoint_violation), the
outdoor one on `<unit>:outdoor` (ac_outdoor_limit), the window one on `<unit>:window`
(ac_supply_window). With `enforce`, the setpoint is written back to the limit and a unit that
may not run (outdoor, window) is switched off; every write names the rule, the variant and the
previous value (the audit record carries the value read before the write).

What the rule knows of a unit comes from ctx.latest; a unit not read yet is not judged and
keeps its delays and alarms (see rules/kinds/hvac.py); a stale unit drops them.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, time
from functools import cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from core.config_types import Duration
from core.data_dir import data_dir
from core.types import Command, Sample, Value
from rules.blocks import OnDelay
from rules.kinds.base import stale_note
from rules.kinds.hvac import AcUnitParams, Season, _AcRule, _iso
from rules.model import (
    AcWindowSwitch,
    Clear,
    Context,
    DeviceInfo,
    Effect,
    Input,
    InputReply,
    Issue,
    PointNeed,
    Raise,
)
from rules.numbers import finite, within

VARIANTS_PATH = data_dir() / "ac_variants.yaml"


@cache
def _variants(path: Path) -> dict[str, dict[str, Any]]:
    with path.open(encoding="utf-8") as f:
        doc = yaml.safe_load(f) or {}
    return {str(k): dict(v) for k, v in (doc.get("variants") or {}).items()}


def variant_names() -> list[str]:
    return sorted(_variants(VARIANTS_PATH))


def variant_defaults(name: str) -> dict[str, Any]:
    """A variant's keys (without its `source`); ValueError naming the known ones."""
    known = _variants(VARIANTS_PATH)
    if name not in known:
        raise ValueError(f"unknown variant {name!r}; the shipped ones: {', '.join(sorted(known))}")
    return {k: v for k, v in known[name].items() if k != "source"}


class LimitOverride(BaseModel):
    """Stricter (or looser, where allowed) limits for some units, e.g. 27 °C in public areas:
    by zone globs, by device tags (every given tag must match), or both."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    zones: list[str] = Field(default_factory=list, description="Zone globs.")
    tags: dict[str, str] = Field(
        default_factory=dict, description="Device tags, e.g. {area: public}."
    )
    cooling_min: float | None = Field(default=None, description="Cooling setpoint floor, °C.")
    heating_max: float | None = Field(default=None, description="Heating setpoint ceiling, °C.")

    @model_validator(mode="after")
    def _chooses(self) -> LimitOverride:
        if not self.zones and not self.tags:
            raise ValueError("an override needs zones or tags to say which units it covers")
        return self

    def covers(self, device: DeviceInfo) -> bool:
        if self.zones and not any(fnmatch.fnmatchcase(device.zone, g) for g in self.zones):
            return False
        return all(device.tags.get(k) == v for k, v in self.tags.items())


class OutdoorLimits(BaseModel):
    """No cooling while it is cool outside, no heating while it is warm (Guangdong 2021)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    device: str = Field(description="The outdoor temperature sensor's device id.")
    point: str = Field(default="temperature_degc", description="Its temperature point.")
    no_cooling_below: float | None = Field(
        default=None, description="A unit may not cool while outdoors is below this, °C."
    )
    no_heating_above: float | None = Field(
        default=None, description="A unit may not heat while outdoors is above this, °C."
    )
    max_age: Duration = Field(
        default=3600.0,
        gt=0,
        description="An outdoor reading older than this is not used (no judgement).",
    )


class OffWindow(BaseModel):
    """A daily window with AC off, in force while switched on (tight-supply days)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, description="What operators and grid events switch.")
    start: str = Field(pattern=r"^\d\d:\d\d$", description="Local time, HH:MM.")
    end: str = Field(pattern=r"^\d\d:\d\d$", description="Local time, HH:MM (after start).")
    days: Literal["working", "all"] = Field(
        default="working", description="working: the calendar's working days (调休 included)."
    )
    active: bool = Field(default=False, description="In force from the start, until switched.")
    zones: list[str] = Field(default_factory=list, description="Zone globs; empty: every unit.")

    @field_validator("start", "end")
    @classmethod
    def _clock(cls, value: str) -> str:
        time.fromisoformat(value)
        return value

    @model_validator(mode="after")
    def _ordered(self) -> OffWindow:
        if self.end <= self.start:
            raise ValueError(f"end {self.end} is not after start {self.start}")
        return self

    def covers(self, device: DeviceInfo) -> bool:
        return not self.zones or any(fnmatch.fnmatchcase(device.zone, g) for g in self.zones)

    def open_at(self, moment: datetime, ctx: Context) -> bool:
        """Is `moment` (site time) inside the window on a day it applies?"""
        clock = moment.strftime("%H:%M")
        if not self.start <= clock < self.end:
            return False
        return self.days == "all" or ctx.calendar.is_workday(moment)


class AcJudgeParams(AcUnitParams):
    """How to tell what a unit is doing, and the limits: shared by the policy and the room
    temperature watch."""

    judge: Literal["mode", "season"] = Field(
        default="mode",
        description="mode: by the unit's operating mode all year (seasons for units without "
        "a mode); season: modes count only inside their season.",
    )
    summer: Season = Field(
        default=Season(start="06-01", end="09-30"), description="Cooling season."
    )
    winter: Season = Field(
        default=Season(start="11-15", end="03-15"), description="Heating season."
    )
    cooling_min: float = Field(default=26.0, description="Cooling setpoint floor, °C.")
    heating_max: float = Field(default=20.0, description="Heating setpoint ceiling, °C.")

    def reads(self) -> list[PointNeed]:
        # The mode is optional: a unit without one is judged by the seasons.
        return [n for n in super().reads() if n.param != "mode_point"]

    def activity(self, device: DeviceInfo, ctx: Context) -> str | None:
        """What the unit does now: "cool", "heat", "" (neither: off, fan, out of season) or
        None (not known). Dry counts as cooling (the compressor cools), auto as cooling in
        summer and heating in winter."""
        on = self.power(device.id, ctx)
        if on is False:
            return ""
        summer, winter = self.summer.contains(ctx.now), self.winter.contains(ctx.now)
        if self.mode_point not in device.points:
            # No mode reported: the seasons say what a running unit does.
            if on is None and self.power_point in device.points:
                return None
            return "cool" if summer else "heat" if winter else ""
        kind = self.mode_kind(device, ctx)
        if kind is None:
            return None
        by_mode = self.judge == "mode"
        if kind in ("cool", "dry") and (by_mode or summer):
            return "cool"
        if kind == "heat" and (by_mode or winter):
            return "heat"
        if kind == "auto":
            return "cool" if summer else "heat" if winter else ""
        return ""


class AcPolicyParams(AcJudgeParams):
    variant: str | None = Field(
        default=None,
        description="A shipped variant (config/ac_variants.yaml) whose keys are the defaults.",
    )
    overrides: list[LimitOverride] = Field(
        default_factory=list, description="Limits of some zones or tagged units."
    )
    outdoor: OutdoorLimits | None = Field(
        default=None, description="Outdoor-temperature limits on cooling and heating."
    )
    off_windows: list[OffWindow] = Field(
        default_factory=list, description="Daily AC-off windows, switched by inputs."
    )
    grace: Duration = Field(default=600.0, description="A violation must last this long.")
    enforce: bool = Field(
        default=False,
        description="Write the setpoint back to the limit; switch off units that may not run.",
    )
    retry: Duration = Field(
        default=60.0,
        description="With enforce: while the violation lasts the write-back is repeated, at "
        "most once per grace and never more often than this (a grace of 0 writes at once).",
    )
    setpoint_point: str = Field(default="setpoint_degc", description="Setpoint point name.")

    @model_validator(mode="before")
    @classmethod
    def _variant(cls, data: Any) -> Any:
        """The variant's keys under the entry's own (`outdoor` merged key by key)."""
        if not isinstance(data, dict) or not data.get("variant"):
            return data
        merged = variant_defaults(str(data["variant"]))
        for key, value in data.items():
            base = merged.get(key)
            if key == "outdoor" and isinstance(base, dict) and isinstance(value, dict):
                merged[key] = {**base, **value}
            else:
                merged[key] = value
        if merged.get("outdoor") is None:
            merged.pop("outdoor", None)  # `outdoor: null` turns the variant's limits off
        elif "device" not in merged["outdoor"]:
            raise ValueError(
                f"variant {data['variant']} limits cooling and heating by the outdoor "
                "temperature: add outdoor: {device: <the outdoor sensor's id>}"
            )
        return merged


# direction -> the catalog's {direction_zh}, {direction_en}
_DIRECTIONS: dict[str, tuple[str, str]] = {
    "below": ("低于制冷下限", "below the cooling minimum"),
    "above": ("高于制热上限", "above the heating maximum"),
}
_ACTIVITY: dict[str, tuple[str, str]] = {"cool": ("制冷", "cooling"), "heat": ("制热", "heating")}

Check = Literal["setpoint", "outdoor", "window"]
_SUFFIX: dict[Check, str] = {"setpoint": "", "outdoor": ":outdoor", "window": ":window"}


class _Breach:
    """One check of one unit: its grace, its alarm and its enforcement."""

    __slots__ = ("awaiting", "delay", "enforced_at", "raised")

    def __init__(self, grace: float) -> None:
        self.delay = OnDelay(grace)
        self.raised: Value | None = None  # the value the alarm was raised for
        self.enforced_at: float | None = None
        # A write was issued and the point it wrote has not been read since: what the rule
        # knows predates the write, so it writes nothing more (the rules' clock may run
        # faster than the polls: a sped-up demo, a retry shorter than the poll interval).
        self.awaiting = False

    def reset(self) -> None:
        self.delay.reset()
        self.enforced_at = None
        self.awaiting = False

    def to_json(self) -> dict[str, Any]:
        return {
            "delay": self.delay.snapshot(),
            "raised": self.raised,
            "enforced_at": self.enforced_at,
            "awaiting": self.awaiting,
        }

    def restore(self, s: Mapping[str, Any]) -> None:
        self.delay.restore(s.get("delay", {}))
        self.raised, self.enforced_at = s.get("raised"), s.get("enforced_at")
        self.awaiting = bool(s.get("awaiting", False))


class _Unit:
    """What the rule remembers of one AC unit."""

    __slots__ = ("breaches", "changed_at", "previous", "setpoint")

    def __init__(self, grace: float) -> None:
        self.setpoint: float | None = None
        self.previous: float | None = None  # the setpoint before the last change
        self.changed_at: float | None = None
        self.breaches: dict[Check, _Breach] = {c: _Breach(grace) for c in _SUFFIX}

    @property
    def tracked(self) -> bool:
        return self.previous is not None or any(
            b.delay.since is not None or b.raised is not None for b in self.breaches.values()
        )


Finding = tuple[Value, float, dict[str, Value], Value | None]
"""(value, limit, details, what enforcement writes or None) of a breach found now."""


class AcPolicyRule(_AcRule[AcPolicyParams]):
    """Cooling below the floor, heating above the ceiling, AC where the variant forbids it."""

    kind = "ac_policy"

    def __init__(self, rule_id: str, params: AcPolicyParams) -> None:
        super().__init__(rule_id, params)
        self.units: dict[str, _Unit] = {}
        self.devices: dict[str, DeviceInfo] = {}
        # Off windows switched on: name -> True (the switch survives a restart).
        self.windows: dict[str, bool] = {w.name: w.active for w in params.off_windows}
        self.open: tuple[str, ...] = ()  # the windows open at the last tick
        checks: list[Check] = ["setpoint"]
        if params.outdoor is not None:
            checks.append("outdoor")
        if params.off_windows:
            checks.append("window")
        self.checks = tuple(checks)

    def bind(self, devices: Sequence[DeviceInfo]) -> list[str]:
        ids = super().bind(devices)
        outdoor = self.params.outdoor
        units = [d for d in self.watched if outdoor is None or d.id != outdoor.device]
        self.units = {d.id: _Unit(self.params.grace) for d in units}
        self.devices = {d.id: d for d in units}
        self.watched = units
        if outdoor is not None:
            ids = [*(d.id for d in units), outdoor.device]
        return ids

    def writes(self, device: DeviceInfo) -> list[str]:
        if not self.params.enforce or device.id not in self.units:
            return []
        out = [self.params.setpoint_point]
        if self.params.outdoor is not None or self.params.off_windows:
            out.append(self.params.power_point)
        return [p for p in out if device.writable_range(p) is not None]

    def device_refs(self) -> dict[str, list[str]]:
        return {"outdoor.device": [self.params.outdoor.device]} if self.params.outdoor else {}

    def limits(self, device: DeviceInfo) -> tuple[float, float]:
        cooling, heating = self.params.cooling_min, self.params.heating_max
        for o in self.params.overrides:
            if o.covers(device):
                cooling = o.cooling_min if o.cooling_min is not None else cooling
                heating = o.heating_max if o.heating_max is not None else heating
        return cooling, heating

    # -- what a unit is doing --------------------------------------------------------------

    def activity(self, device: DeviceInfo, ctx: Context) -> str | None:
        return self.params.activity(device, ctx)

    def outdoor_temperature(self, ctx: Context) -> float | None:
        o = self.params.outdoor
        if o is None:
            return None
        latest = ctx.latest(o.device, o.point)
        if latest is None or ctx.now.timestamp() - latest[1] / 1e9 > o.max_age:
            return None
        return finite(latest[0])

    def open_window(self, device: DeviceInfo, ctx: Context) -> OffWindow | None:
        for w in self.params.off_windows:
            if self.windows.get(w.name) and w.covers(device) and w.open_at(ctx.now, ctx):
                return w
        return None

    def _running(self, device: DeviceInfo, ctx: Context) -> bool | None:
        on = self.params.power(device.id, ctx)
        if on is not None:
            return on
        return None if self.params.power_point in device.points else True

    # -- the checks ------------------------------------------------------------------------

    def _find(self, check: Check, device: DeviceInfo, ctx: Context) -> Finding | bool | None:
        """The breach now; False when there is none; None when it cannot be judged."""
        if check == "window":
            window = self.open_window(device, ctx)
            if window is None:
                return False
            running = self._running(device, ctx)
            if running is None:
                return None
            if not running:
                return False
            details: dict[str, Value] = {
                "window": window.name,
                "start": window.start,
                "end": window.end,
                "point": self.params.power_point,
            }
            return True, 0.0, details, self._off_value(device)
        activity = self.activity(device, ctx)
        if activity is None:
            return None
        if not activity:
            return False
        if check == "outdoor":
            outdoor = self.params.outdoor
            assert outdoor is not None
            temperature = self.outdoor_temperature(ctx)
            if temperature is None:
                return None
            if activity == "cool" and outdoor.no_cooling_below is not None:
                limit = outdoor.no_cooling_below
                breach = temperature < limit
            elif activity == "heat" and outdoor.no_heating_above is not None:
                limit = outdoor.no_heating_above
                breach = temperature > limit
            else:
                return False
            if not breach:
                return False
            zh, en = _ACTIVITY[activity]
            details = {"activity_zh": zh, "activity_en": en, "sensor": outdoor.device}
            return round(temperature, 1), limit, details, self._off_value(device)
        setpoint = self.units[device.id].setpoint
        if setpoint is None:
            return None
        cooling, heating = self.limits(device)
        if activity == "cool" and setpoint < cooling:
            direction, limit = "below", cooling
        elif activity == "heat" and setpoint > heating:
            direction, limit = "above", heating
        else:
            return False
        zh, en = _DIRECTIONS[direction]
        unit = self.units[device.id]
        details = {
            "direction": direction,
            "direction_zh": zh,
            "direction_en": en,
            "point": self.params.setpoint_point,
            "previous_setpoint": unit.previous if unit.previous is not None else "",
            "changed_at": _iso(unit.changed_at, ctx.now) if unit.changed_at else "",
        }
        writable = device.writable_range(self.params.setpoint_point)
        return setpoint, limit, details, limit if within(limit, writable) else None

    def _off_value(self, device: DeviceInfo) -> Value | None:
        """What switches the unit off, if the profile lets its power point be written."""
        writable = device.writable_range(self.params.power_point)
        return 0 if within(0, writable) else None

    # -- events ----------------------------------------------------------------------------

    def on_sample(self, sample: Sample, ctx: Context) -> Iterable[Effect]:
        unit = self.units.get(sample.device)
        if unit is None:
            return self._all(ctx) if self.params.outdoor is not None else ()
        t = ctx.now.timestamp()
        value = finite(sample.values.get(self.params.setpoint_point))
        if value is not None:
            if unit.setpoint is not None and value != unit.setpoint:
                unit.previous, unit.changed_at = unit.setpoint, t
            unit.setpoint = value
            unit.breaches["setpoint"].awaiting = False
        if self.params.power_point in sample.values:
            unit.breaches["outdoor"].awaiting = False
            unit.breaches["window"].awaiting = False
        return self._evaluate(self.devices[sample.device], ctx, t)

    def on_tick(self, ctx: Context) -> Iterable[Effect]:
        # Samples evaluate their unit; the tick catches a grace (or a retry) running out
        # between two readings, and a window opening or closing (every unit then: one that
        # reports only changes sends nothing at 09:00).
        t = ctx.now.timestamp()
        if self.params.off_windows:
            open_now = tuple(
                w.name
                for w in self.params.off_windows
                if self.windows[w.name] and w.open_at(ctx.now, ctx)
            )
            if open_now != self.open:
                self.open = open_now
                return self._all(ctx)
        effects: list[Effect] = []
        for device_id, unit in self.units.items():
            if any(b.delay.since is not None for b in unit.breaches.values()):
                effects.extend(self._evaluate(self.devices[device_id], ctx, t))
        return effects

    def on_input(self, event: Input, ctx: Context) -> InputReply | None:
        if not isinstance(event, AcWindowSwitch):
            return None
        if event.name not in self.windows:
            return InputReply("unknown")
        self.windows[event.name] = event.active
        return InputReply("accepted", effects=self._all(ctx))

    def _all(self, ctx: Context) -> list[Effect]:
        t = ctx.now.timestamp()
        effects: list[Effect] = []
        for device in self.devices.values():
            effects.extend(self._evaluate(device, ctx, t))
        return effects

    def _evaluate(self, device: DeviceInfo, ctx: Context, t: float) -> list[Effect]:
        effects: list[Effect] = []
        for check in self.checks:
            effects.extend(self._judge(check, device, ctx, t))
        return effects

    def _judge(self, check: Check, device: DeviceInfo, ctx: Context, t: float) -> list[Effect]:
        breach = self.units[device.id].breaches[check]
        subject = device.id + _SUFFIX[check]
        found = self._find(check, device, ctx)
        if found is None:
            return []  # not known yet (just restarted): keep the delay and the alarm
        if not isinstance(found, tuple):
            breach.delay.reset()
            breach.enforced_at = None
            if breach.raised is None:
                return []
            breach.raised = None
            return [Clear(self.id, subject)]
        if not breach.delay.update(True, t):
            return []
        value, limit, details, target = found
        effects: list[Effect] = []
        if breach.raised != value:
            breach.raised = value
            details = {"device": device.id, "place": device.place(), **details}
            if self.params.variant:
                details["variant"] = self.params.variant
            kind = {
                "setpoint": "ac_setpoint_violation",
                "outdoor": "ac_outdoor_limit",
                "window": "ac_supply_window",
            }[check]
            grade = self.params.grade
            effects.append(Raise(self.id, subject, kind, value, limit, grade, details))
        every = max(self.params.grace, self.params.retry)
        due = breach.enforced_at is None or t - breach.enforced_at >= every
        if self.params.enforce and due and not breach.awaiting:
            # Tried once per interval even when nothing can be written: no write, and no
            # new Raise (the alarm stands), but no work on every sample either.
            breach.enforced_at = t
            if target is not None:
                breach.awaiting = True
                effects.append(self._write(check, device, value, limit, target, details))
        return effects

    def _write(
        self,
        check: Check,
        device: DeviceInfo,
        value: Value,
        limit: float,
        target: Value,
        details: Mapping[str, Value],
    ) -> Issue:
        variant = f", variant {self.params.variant}" if self.params.variant else ""
        if check == "setpoint":
            point = self.params.setpoint_point
            why = f"setpoint {value} {details['direction']} the limit {limit:g}"
        elif check == "outdoor":
            point = self.params.power_point
            activity = details["activity_en"]
            why = f"{activity} with the outdoor temperature at {value} (limit {limit:g})"
        else:
            point = self.params.power_point
            why = (
                f"running in the off window {details['window']} {details['start']}-{details['end']}"
            )
        return Issue(Command(device.id, point, target, f"rule:{self.id}"), f"{why}{variant}")

    def on_stale(self, device_id: str, since: float | None, ctx: Context) -> Iterable[Effect]:
        outdoor = self.params.outdoor
        if outdoor is not None and device_id == outdoor.device:
            return ()  # the outdoor checks are not judged until it is back: alarms stay
        unit = self.units.get(device_id)
        if unit is None:
            return ()
        unit.setpoint = None  # the next good poll says what it is now
        effects: list[Effect] = []
        for check, breach in unit.breaches.items():
            breach.reset()
            if breach.raised is not None:
                breach.raised = None
                effects.append(
                    Clear(self.id, device_id + _SUFFIX[check], stale_note(device_id, since, ctx))
                )
        return effects

    def snapshot(self) -> dict[str, Any]:
        units = {
            d: {
                "previous": u.previous,
                "changed_at": u.changed_at,
                "setpoint": u.setpoint,
                "breaches": {c: b.to_json() for c, b in u.breaches.items()},
            }
            for d, u in self.units.items()
            if u.tracked
        }
        # Every window switched away from its configured state (on, or off when it starts
        # active): a restart keeps what operators and grid events said.
        defaults = {w.name: w.active for w in self.params.off_windows}
        if all(self.windows[n] == defaults[n] for n in defaults):
            return units
        return {**units, "_windows": dict(self.windows)}

    def restore(self, state: Mapping[str, Any]) -> None:
        for name, active in (state.get("_windows") or {}).items():
            if name in self.windows:
                self.windows[name] = bool(active)
        for device, s in state.items():
            unit = self.units.get(device)
            if unit is None or not isinstance(s, Mapping):
                continue
            unit.previous, unit.changed_at = s.get("previous"), s.get("changed_at")
            unit.setpoint = s.get("setpoint", unit.setpoint)
            breaches = s.get("breaches")
            if breaches is None:  # a state saved before the checks were split
                breaches = {"setpoint": s}
            for check, b in breaches.items():
                if check in unit.breaches:
                    unit.breaches[check].restore(b)

    def describe(self) -> str:
        p = self.params
        mode = "enforced" if p.enforce else "alarm only"
        by = "by operating mode" if p.judge == "mode" else "in their seasons"
        parts = [f"cooling >= {p.cooling_min:g} °C, heating <= {p.heating_max:g} °C {by}"]
        if p.variant:
            parts.append(f"variant {p.variant}")
        if p.outdoor is not None:
            parts.append(f"outdoor limits from {p.outdoor.device}")
        if p.off_windows:
            windows = ", ".join(f"{w.name} {w.start}-{w.end}" for w in p.off_windows)
            parts.append(f"off windows {windows}")
        return f"{', '.join(parts)}, {mode}, grace {p.grace:g} s"
