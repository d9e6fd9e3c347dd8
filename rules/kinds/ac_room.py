"""The measured room temperature, watched beside the setpoint.

A room far colder than the cooling floor for a long time while its unit cools (or far warmer
than the heating ceiling while it heats) points at a unit overridden locally, a setpoint the
controller does not honour, or a second unit nobody reports: the setpoint alone says nothing
wrong. The rule judges what the unit is doing as the AC policy does (by mode, or by season;
rules/kinds/ac_policy.py) and raises ac_room_temperature on the unit once the room has been
`margin` beyond the limit for `delay`. Value: the room temperature; limit: the limit less (or
plus) the margin.
"""

from __future__ import annotations

from collections.abc import Iterable

from pydantic import Field

from core.config_types import Duration
from core.types import Sample
from rules.kinds.ac_policy import AcJudgeParams
from rules.kinds.hvac import _DelayedAcRule, _iso
from rules.model import Context, DeviceInfo, Effect
from rules.numbers import finite

_DIRECTIONS = {
    "cold": ("低于制冷下限", "below the cooling minimum"),
    "warm": ("高于制热上限", "above the heating maximum"),
}


class AcRoomTemperatureParams(AcJudgeParams):
    room_point: str = Field(
        default="room_temperature_degc", description="The measured room temperature point."
    )
    margin: float = Field(
        default=3.0, gt=0, description="How far beyond the limit the room must be, °C."
    )
    delay: Duration = Field(default=7200.0, description="For this long before it alarms.")


class AcRoomTemperatureRule(_DelayedAcRule[AcRoomTemperatureParams]):
    """A room kept far beyond the limit by its unit (see the module's note)."""

    kind = "ac_room_temperature"

    def delay_s(self) -> float:
        return self.params.delay

    def on_sample(self, sample: Sample, ctx: Context) -> Iterable[Effect]:
        if sample.device not in self.delays:
            return ()
        return self._evaluate(sample.device, ctx, ctx.now.timestamp())

    def on_tick(self, ctx: Context) -> Iterable[Effect]:
        t = ctx.now.timestamp()
        effects: list[Effect] = []
        for device_id, delay in self.delays.items():
            if delay.since is not None and device_id not in self.alarms:
                effects.extend(self._evaluate(device_id, ctx, t))
        return effects

    def breach(self, info: DeviceInfo, ctx: Context) -> tuple[str, float, float] | bool | None:
        """(direction, room, limit); False: none; None: not known."""
        p = self.params
        activity = p.activity(info, ctx)
        if activity is None:
            return None
        if not activity:
            return False
        latest = ctx.latest(info.id, p.room_point)
        room = None if latest is None else finite(latest[0])
        if room is None:
            return None
        if activity == "cool" and room < p.cooling_min - p.margin:
            return "cold", room, p.cooling_min - p.margin
        if activity == "heat" and room > p.heating_max + p.margin:
            return "warm", room, p.heating_max + p.margin
        return False

    def _evaluate(self, device_id: str, ctx: Context, t: float) -> Iterable[Effect]:
        info = self.devices[device_id]
        found = self.breach(info, ctx)
        if found is None:
            return ()  # not known yet: keep the delay and the alarm
        delay = self.delays[device_id]
        if not delay.update(isinstance(found, tuple), t):
            return () if isinstance(found, tuple) else self.alarms.clear(device_id)
        if device_id in self.alarms or not isinstance(found, tuple):
            return ()
        direction, room, limit = found
        zh, en = _DIRECTIONS[direction]
        assert delay.since is not None
        return self.alarms.raise_alarm(
            device_id,
            "ac_room_temperature",
            value=round(room, 1),
            limit=limit,
            grade=self.params.grade,
            details={
                "device": device_id,
                "place": info.place(),
                "point": self.params.room_point,
                "direction": direction,
                "direction_zh": zh,
                "direction_en": en,
                "hours": round((t - delay.since) / 3600.0, 1),
                "since": _iso(delay.since, ctx.now),
            },
        )

    def describe(self) -> str:
        p = self.params
        return (
            f"room {p.margin:g} °C below {p.cooling_min:g} °C while cooling, or above "
            f"{p.heating_max:g} °C while heating, for {p.delay:g} s"
        )
