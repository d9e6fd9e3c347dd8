"""Air-conditioning indoor units (CoolMasterNet): settings written over Modbus, and the room
temperature that follows them."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

from core.types import Value
from drivers.modbus.profile import Profile
from simulator.clock import SimClock
from simulator.models.base import DeviceModel, indoor_free_temperature, noise

# CoolMasterNet mode codes (profile coolmaster_indoor).
MODE_COOL, MODE_HEAT, MODE_AUTO, MODE_DRY, MODE_HAUX, MODE_FAN, MODE_HH = range(7)
_HEATING_MODES = frozenset({MODE_HEAT, MODE_HAUX, MODE_HH})


@dataclass(frozen=True, slots=True)
class SetpointChange:
    at: datetime
    old: float
    new: float


class AcUnit(DeviceModel):
    """A CoolMasterNet indoor unit: settings that Modbus writes change, and its room's air.

    The room temperature relaxes exponentially toward an equilibrium: with the unit running
    (time constant ~20 simulated minutes), the setpoint, but cooling only ever cools and heating
    only heats; with the unit off (time constant ~90 minutes), the room's free-running
    temperature, driven by the month and the hour plus ``heat_gain_c`` of internal gains (a
    server room runs ~10 °C above an office).
    """

    TAU_ON_S = 20 * 60.0
    TAU_OFF_S = 90 * 60.0
    TAU_FAN_S = 60 * 60.0

    def __init__(
        self,
        profile: Profile,
        clock: SimClock,
        *,
        on: bool = False,
        mode: int = MODE_COOL,
        setpoint: float = 26.0,
        fan_speed: int = 3,
        heat_gain_c: float = 0.0,
        room_temperature: float | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(profile, clock, seed=seed)
        self.on = on
        self.mode = mode
        self.setpoint = setpoint
        self.fan_speed = fan_speed
        self.swing = 5  # Auto
        self.lock_bits = 0
        self.malfunction_code = 0
        self.heat_gain_c = heat_gain_c
        self.setpoint_history: list[SetpointChange] = []
        now = clock.now()
        self._t = now.timestamp()
        self.room_temperature = (
            room_temperature
            if room_temperature is not None
            else self._free_temperature(now.astimezone(clock.tz))
        )

    def _free_temperature(self, local: datetime) -> float:
        return indoor_free_temperature(local, self.seed) + self.heat_gain_c

    def _target(self, free: float) -> tuple[float, float]:
        """Equilibrium temperature and time constant in the current state."""
        if not self.on:
            return free, self.TAU_OFF_S
        if self.mode in (MODE_COOL, MODE_DRY):
            return min(self.setpoint, free), self.TAU_ON_S
        if self.mode in _HEATING_MODES:
            return max(self.setpoint, free), self.TAU_ON_S
        if self.mode == MODE_AUTO:
            return self.setpoint, self.TAU_ON_S
        return free, self.TAU_FAN_S  # fan only: stirs the air, no heat moved

    def advance(self, ts: float) -> None:
        """Bring the room temperature up to epoch seconds ``ts`` (never backwards)."""
        while self._t < ts:
            dt = min(60.0, ts - self._t)
            local = datetime.fromtimestamp(self._t + dt / 2.0, self.clock.tz)
            target, tau = self._target(self._free_temperature(local))
            self.room_temperature = target + (self.room_temperature - target) * math.exp(-dt / tau)
            self._t += dt

    def _compute(self, local: datetime) -> dict[str, Value]:
        ts = local.timestamp()
        self.advance(ts)
        # The sensor's own jitter, not part of the room's state.
        sensed = self.room_temperature + 0.05 * noise(self.seed, "sensor", ts, 30.0)
        return {
            "mode": self.mode,
            "fan_speed": self.fan_speed,
            "setpoint_degc": self.setpoint,
            "on_off": 1 if self.on else 0,
            "filter_sign": 0,
            "swing": self.swing,
            "room_temperature_degc": sensed,
            "malfunction_code": self.malfunction_code,
            "lock_bits": self.lock_bits,
        }

    def on_write(self, point: str, value: Value) -> None:
        super().on_write(point, value)
        # The room evolved under the old settings until now.
        now = self.clock.now()
        self.advance(now.timestamp())
        if point == "setpoint_degc":
            new = float(value)
            self.setpoint_history.append(SetpointChange(now, self.setpoint, new))
            self.setpoint = new
        elif point == "mode":
            self.mode = int(value)
        elif point == "fan_speed":
            self.fan_speed = int(value)
        elif point == "on_off":
            self.on = bool(value)
