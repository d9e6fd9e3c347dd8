"""Air-conditioning rules: the national temperature limits, AC after hours, AC with windows open.

国办发〔2007〕42号: in public buildings the cooling setpoint may not be below 26 °C in summer and
the heating setpoint not above 20 °C in winter; localities may be stricter (18 °C heating,
27 °C in public areas). Seasons, limits, overrides and exempt rooms are configuration.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from core.config_types import Duration
from core.types import Command, Sample, Value
from rules.blocks import OnDelay
from rules.model import Clear, Context, DeviceInfo, Effect, Issue, Raise, Rule, RuleParams, Scope


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


class AcPolicyParams(RuleParams):
    scope: Scope = Field(default_factory=lambda: Scope(kinds=["hvac"]), description="AC units.")
    summer: Season = Field(
        default=Season(start="06-01", end="09-30"), description="Cooling season."
    )
    winter: Season = Field(
        default=Season(start="11-15", end="03-15"), description="Heating season."
    )
    cooling_min: float = Field(default=26.0, description="Cooling setpoint floor in summer, °C.")
    heating_max: float = Field(default=20.0, description="Heating setpoint ceiling in winter, °C.")
    overrides: list[LimitOverride] = Field(default_factory=list, description="Per-zone limits.")
    exempt_zones: list[str] = Field(
        default_factory=list,
        description="Zone globs never checked: server rooms, archives, clinics.",
    )
    grace: Duration = Field(default=600.0, description="A violation must last this long.")
    enforce: bool = Field(default=False, description="Write the setpoint back to the limit.")
    setpoint_point: str = Field(default="setpoint_degc", description="Setpoint point name.")
    mode_point: str = Field(default="mode", description="Mode point name.")
    power_point: str = Field(default="on_off", description="On/off point name (1 = on).")
    cool_modes: list[int] = Field(default=[0], description="Mode values that cool.")
    heat_modes: list[int] = Field(default=[1, 4], description="Mode values that heat.")


class _Unit:
    """What the rule remembers of one AC unit."""

    __slots__ = ("changed_at", "delay", "enforced_at", "previous", "raised", "setpoint")

    def __init__(self, grace: float) -> None:
        self.setpoint: float | None = None
        self.previous: float | None = None  # the setpoint before the last change
        self.changed_at: float | None = None
        self.delay = OnDelay(grace)
        self.enforced_at: float | None = None
        self.raised: float | None = None  # the setpoint the alarm was raised for


class AcPolicyRule(Rule):
    """Cooling setpoints below the summer floor, heating setpoints above the winter ceiling."""

    kind = "ac_policy"
    Params = AcPolicyParams

    def __init__(self, rule_id: str, params: RuleParams) -> None:
        super().__init__(rule_id, params)
        assert isinstance(params, AcPolicyParams)
        self.p: AcPolicyParams = params
        self.units: dict[str, _Unit] = {}

    def bind(self, devices: Sequence[DeviceInfo]) -> list[str]:
        chosen = super().bind(devices)
        exempt = self.p.exempt_zones
        self.watched = [
            d for d in self.watched if not any(fnmatch.fnmatchcase(d.zone, g) for g in exempt)
        ]
        self.units = {d.id: _Unit(self.p.grace) for d in self.watched}
        return [d for d in chosen if d in self.units]

    def limits(self, device: DeviceInfo) -> tuple[float, float]:
        cooling, heating = self.p.cooling_min, self.p.heating_max
        for o in self.p.overrides:
            if any(fnmatch.fnmatchcase(device.zone, g) for g in o.zones):
                cooling = o.cooling_min if o.cooling_min is not None else cooling
                heating = o.heating_max if o.heating_max is not None else heating
        return cooling, heating

    def violation(self, device: DeviceInfo, ctx: Context) -> tuple[str, float, float] | None:
        """(direction, setpoint, limit) when the unit breaks the season's limit now."""
        unit = self.units[device.id]
        setpoint = unit.setpoint
        values = {p: ctx.latest(device.id, p) for p in (self.p.mode_point, self.p.power_point)}
        mode, power = values[self.p.mode_point], values[self.p.power_point]
        if setpoint is None or mode is None or (power is not None and not power[0]):
            return None
        cooling, heating = self.limits(device)
        cooling_now = self.p.summer.contains(ctx.now) and mode[0] in self.p.cool_modes
        if cooling_now and setpoint < cooling:
            return "below", setpoint, cooling
        heating_now = self.p.winter.contains(ctx.now) and mode[0] in self.p.heat_modes
        if heating_now and setpoint > heating:
            return "above", setpoint, heating
        return None

    def on_sample(self, sample: Sample, ctx: Context) -> Iterable[Effect]:
        unit = self.units.get(sample.device)
        if unit is None:
            return ()
        value = sample.values.get(self.p.setpoint_point)
        t = ctx.now.timestamp()
        if isinstance(value, int | float) and not isinstance(value, bool):
            if unit.setpoint is not None and value != unit.setpoint:
                unit.previous, unit.changed_at = unit.setpoint, t
            unit.setpoint = float(value)
        return self._evaluate(ctx.device(sample.device), ctx, t)

    def on_tick(self, ctx: Context) -> Iterable[Effect]:
        t = ctx.now.timestamp()
        effects: list[Effect] = []
        for device in self.watched:
            effects.extend(self._evaluate(device, ctx, t))
        return effects

    def _evaluate(self, device: DeviceInfo, ctx: Context, t: float) -> list[Effect]:
        unit = self.units[device.id]
        found = self.violation(device, ctx)
        if not unit.delay.update(found is not None, t) or found is None:
            if found is None and unit.raised is not None:
                unit.raised = unit.enforced_at = None
                return [Clear(self.id, device.id)]
            return []
        direction, setpoint, limit = found
        enforce_due = self.p.enforce and (
            unit.enforced_at is None or t - unit.enforced_at >= self.p.grace
        )
        if unit.raised == setpoint and not enforce_due:
            return []  # nothing new to say; the alarm stands
        unit.raised = setpoint
        details: dict[str, Value] = {
            "direction": direction,
            "place": device.place(),
            "previous_setpoint": unit.previous if unit.previous is not None else "",
            "changed_at": unit.changed_at or "",
        }
        effects: list[Effect] = [
            Raise(
                self.id, device.id, "ac_setpoint_violation", setpoint, limit, self.p.grade, details
            )
        ]
        if enforce_due:
            target = self._writable(device, limit)
            if target is not None:
                unit.enforced_at = t
                effects.append(
                    Issue(
                        Command(device.id, self.p.setpoint_point, target, f"rule:{self.id}"),
                        f"setpoint {setpoint:g} {direction} the limit {limit:g}",
                    )
                )
        return effects

    def _writable(self, device: DeviceInfo, limit: float) -> float | None:
        """The limit, if the profile allows writing it; never a value outside its range."""
        point = device.points.get(self.p.setpoint_point)
        if point is None or point.writable_min is None or point.writable_max is None:
            return None
        if not point.writable_min <= limit <= point.writable_max:
            return None
        return limit

    def snapshot(self) -> dict[str, Any]:
        return {
            d: {"delay": u.delay.snapshot(), "previous": u.previous, "changed_at": u.changed_at}
            for d, u in self.units.items()
            if u.delay.since is not None or u.previous is not None
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        for device, s in state.items():
            unit = self.units.get(device)
            if unit is not None:
                unit.delay.restore(s["delay"])
                unit.previous, unit.changed_at = s.get("previous"), s.get("changed_at")

    def describe(self) -> str:
        mode = "enforced" if self.p.enforce else "alarm only"
        return (
            f"cooling >= {self.p.cooling_min:g} °C in summer, heating <= {self.p.heating_max:g} °C "
            f"in winter, {mode}, grace {self.p.grace:g} s"
        )
