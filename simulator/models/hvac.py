"""Air-conditioning indoor units (CoolMasterNet, Intesis, Daikin DIII and other gateways):
settings written over Modbus, and the room temperature that follows them.

The model thinks in CoolMasterNet's mode codes; a profile whose `mode` point labels its codes
otherwise (Intesis: 4 Cool; Daikin: 2 Cool) is served and written in its own codes, matched by
label. A gateway profile that holds several indoor units as `unit<n>_<point>` (a Daikin DIII
interface's blocks) gets one unit per prefix, each with its own room."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from core.types import Value
from drivers.modbus.profile import Profile
from simulator.clock import SimClock
from simulator.models.base import (
    DeviceModel,
    indoor_free_temperature,
    noise,
    outdoor_temperature,
)

# CoolMasterNet mode codes (profile coolmaster_indoor).
MODE_COOL, MODE_HEAT, MODE_AUTO, MODE_DRY, MODE_HAUX, MODE_FAN, MODE_HH = range(7)
_HEATING_MODES = frozenset({MODE_HEAT, MODE_HAUX, MODE_HH})

# Mode labels of other gateways' profiles, by their first word, as CoolMasterNet codes.
_MODE_WORDS = {
    "cool": MODE_COOL,
    "heat": MODE_HEAT,
    "auto": MODE_AUTO,
    "dry": MODE_DRY,
    "haux": MODE_HAUX,
    "fan": MODE_FAN,
    "hh": MODE_HH,
}
_UNIT_PREFIX = re.compile(r"^(unit\d+_)")


def _mode_codes(profile: Profile, name: str) -> dict[int, int] | None:
    """The profile's code of each CoolMasterNet mode, read from the labels of point `name`;
    None where the profile's codes are CoolMasterNet's (or it labels no modes)."""
    point = next((p for p in profile.points if p.name == name and p.enum), None)
    if point is None or point.enum is None:
        return None
    out: dict[int, int] = {}
    for code, label in point.enum.items():
        words = str(label).lower().split()
        semantic = _MODE_WORDS.get(words[0]) if words else None
        if semantic is not None and semantic not in out:
            out[semantic] = int(code)
    return None if all(k == v for k, v in out.items()) else out


def _label_code(labels: Mapping[int, str], word: str, default: int) -> int:
    """The code whose label starts with `word` (a Daikin operation status: Fan/Heating/Cooling)."""
    for code, label in labels.items():
        if str(label).lower().startswith(word):
            return int(code)
    return default


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

    Electrical draw (its share of the outdoor unit's, `power_w`): nothing when off; the fan's
    FAN_W when on; while the compressor runs (the room's free-running temperature on the far
    side of the setpoint) a floor of COMPRESSOR_FLOOR of ``rated_w`` plus the rest in
    proportion to that difference, the full rating at DESIGN_DELTA_C. So a setpoint raised by
    1 °C in summer draws about rated_w * 0.75 / 8 less. The unit integrates its own draw over
    simulated time, in the same steps as its room (`energy_kwh`): whatever the clock's speed
    or how seldom it is read, a setting changed by a write counts from the moment of the write.
    """

    TAU_ON_S = 20 * 60.0
    TAU_OFF_S = 90 * 60.0
    TAU_FAN_S = 60 * 60.0
    FAN_W = 60.0
    COMPRESSOR_FLOOR = 0.25
    DESIGN_DELTA_C = 8.0

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
        rated_w: float = 3_500.0,
        seed: int = 0,
        _prefix: str = "",
    ) -> None:
        super().__init__(profile, clock, seed=seed)
        self.rated_w = rated_w
        self.energy_kwh = 0.0  # drawn since the model was made
        self._prefix = _prefix
        self._codes = _mode_codes(profile, f"{_prefix}mode")
        self._status_labels: Mapping[int, str] = next(
            (p.enum or {} for p in profile.points if p.name == f"{_prefix}operation_status"), {}
        )
        self.on = on
        self.mode = mode
        self._raw_mode: int | None = None
        # Settings the unit only keeps (a window contact or remote lock given over Modbus).
        self.settings: dict[str, Value] = {
            "window_contact": 0,
            "remote_lock": 0,
            "swing_horizontal": 0,
        }
        self.operation_s = 0
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
        # The other indoor units of a multi-unit gateway profile (this one is the first).
        prefixes = sorted(
            {m.group(1) for m in map(_UNIT_PREFIX.match, self.names) if m},
            key=lambda p: int(p[4:-1]),
        )
        self.units: dict[str, AcUnit] = {}
        if not _prefix and prefixes:
            self._prefix = prefixes[0]
            self._codes = _mode_codes(profile, f"{self._prefix}mode")
            self._status_labels = next(
                (
                    p.enum or {}
                    for p in profile.points
                    if p.name == f"{self._prefix}operation_status"
                ),
                {},
            )
            self.units = {prefixes[0]: self}
            for k, prefix in enumerate(prefixes[1:], start=1):
                self.units[prefix] = AcUnit(
                    profile,
                    clock,
                    on=on if k % 2 == 0 else not on,
                    mode=mode,
                    setpoint=setpoint,
                    fan_speed=fan_speed,
                    heat_gain_c=heat_gain_c,
                    rated_w=rated_w,
                    seed=seed + k,
                    _prefix=prefix,
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

    def _draw_w(self, free: float) -> float:
        """Electrical power in the current state, the room running free at ``free`` °C."""
        if not self.on:
            return 0.0
        if self.mode in (MODE_COOL, MODE_DRY):
            load = free - self.setpoint
        elif self.mode in _HEATING_MODES:
            load = self.setpoint - free
        elif self.mode == MODE_AUTO:
            load = abs(free - self.setpoint)
        else:
            return self.FAN_W  # fan only
        if load <= 0:
            return self.FAN_W  # the compressor rests
        floor = self.COMPRESSOR_FLOOR
        return self.FAN_W + self.rated_w * min(
            1.0, floor + (1.0 - floor) * load / self.DESIGN_DELTA_C
        )

    def power_w(self, ts: float | None = None) -> float:
        """What the unit draws at epoch seconds ``ts`` (default: now) in its current state."""
        if not self.on:
            return 0.0
        local = self.clock.now() if ts is None else datetime.fromtimestamp(ts, self.clock.tz)
        return self._draw_w(self._free_temperature(local))

    @property
    def indoor_units(self) -> list[AcUnit]:
        """This unit, or every unit of a multi-unit gateway."""
        return list(self.units.values()) if self.units else [self]

    @property
    def simulated_until(self) -> float:
        """Epoch seconds the room and `energy_kwh` have been brought up to."""
        return self._t

    def advance(self, ts: float) -> None:
        """Bring the room temperature and the energy drawn up to epoch seconds ``ts`` (never
        backwards)."""
        while self._t < ts:
            dt = min(60.0, ts - self._t)
            local = datetime.fromtimestamp(self._t + dt / 2.0, self.clock.tz)
            free = self._free_temperature(local)
            target, tau = self._target(free)
            self.room_temperature = target + (self.room_temperature - target) * math.exp(-dt / tau)
            if self.on:
                self.operation_s += int(dt)
                self.energy_kwh += self._draw_w(free) * dt / 3.6e6
            self._t += dt

    def _mode_code(self) -> int:
        """The mode as the profile codes it."""
        if self._raw_mode is not None:
            return self._raw_mode
        if self._codes is None:
            return self.mode
        # A mode the profile has no code for (Dry on an LG gateway) shows as its fan-only code.
        return self._codes.get(self.mode, self._codes.get(MODE_FAN, self.mode))

    def _operation_status(self) -> int:
        """What the unit is doing now (Daikin's operation status: fan, heating or cooling)."""
        labels = self._status_labels
        if self.on and self.mode in _HEATING_MODES:
            return _label_code(labels, "heat", 1)
        if self.on and self.mode in (MODE_COOL, MODE_DRY):
            return _label_code(labels, "cool", 2)
        return _label_code(labels, "fan", 0)

    def _supply_air(self, room: float) -> float:
        """Air leaving the coil: cold when cooling, warm when heating, the room's otherwise."""
        if self.on and self.mode in (MODE_COOL, MODE_DRY):
            return 14.0
        if self.on and self.mode in _HEATING_MODES:
            return 40.0
        return room

    def _compute(self, local: datetime) -> dict[str, Value]:
        ts = local.timestamp()
        self.advance(ts)
        # The sensor's own jitter, not part of the room's state.
        sensed = self.room_temperature + 0.05 * noise(self.seed, "sensor", ts, 30.0)
        own: dict[str, Value] = {
            "mode": self._mode_code(),
            "fan_speed": self.fan_speed,
            "setpoint_degc": self.setpoint,
            "on_off": 1 if self.on else 0,
            "filter_sign": 0,
            "swing": self.swing,
            "room_temperature_degc": sensed,
            "malfunction_code": self.malfunction_code,
            "lock_bits": self.lock_bits,
            # Gateways that also report the unit's actual state (Intesis, Daikin DIII).
            "setpoint_actual_degc": self.setpoint,
            "setpoint_min_degc": 16.0,
            "setpoint_max_degc": 32.0,
            "on_off_status": 1 if self.on else 0,
            "mode_status": self._mode_code(),
            "setpoint_status_degc": self.setpoint,
            "operation_status": self._operation_status(),
            "cool_heat_master": 2,
            "sensor_flags": 0x8000,  # temperature valid
            "adapter_ready": 1,
            "alarm": 1 if self.malfunction_code else 0,
            "forced_off": 0,
            "interface_disabled": 0,
            "device_id": 0x0701,  # what an Intesis INMBSDAI001I000 answers
            "operation_time_h": self.operation_s // 3600,
            # A thermostat on the Modbus side, as a BMS would feed one.
            "external_temperature_degc": round(sensed, 1),
            # Hitachi H-LINK gateways: the unit's own readings beside the settings.
            "present": 1,
            "central_lock_bits": self.lock_bits,
            "fan_speed_status": self.fan_speed,
            "swing_status": self.swing,
            "outlet_temperature_degc": self._supply_air(sensed),
            "gas_pipe_temperature_degc": self._supply_air(sensed),
            "liquid_pipe_temperature_degc": self._supply_air(sensed),
            "compressor_stop_cause": 0,
            "expansion_valve_pct": 40 if self.on else 0,
            "operation_condition": 2 if self.on else 0,
            "ambient_temperature_degc": outdoor_temperature(local, self.seed),
            "remote_controller_temperature_degc": sensed,
            "remote_sensor_temperature_degc": sensed,
            # LG PDRYCB500: on/off as a coil, the coil's pipe temperatures.
            "running": self.on,
            "pipe_in_temperature_degc": self._supply_air(sensed),
            "pipe_out_temperature_degc": self._supply_air(sensed),
            **self.settings,
        }
        if not self.units:
            return own
        out: dict[str, Value] = {}
        bitmap = 0
        for prefix, unit in self.units.items():
            values = own if unit is self else unit._compute(local)
            out.update({prefix + k: v for k, v in values.items()})
            index = int(prefix[4:-1])
            if index < 16:
                bitmap |= 1 << index
        out["adapter_ready"] = 1
        out["units_connected_1"] = bitmap
        out["units_comm_error_1"] = 0
        return out

    def on_write(self, point: str, value: Value) -> None:
        match = _UNIT_PREFIX.match(point)
        if match and self.units and match.group(1) in self.units:
            unit = self.units[match.group(1)]
            point = point[len(match.group(1)) :]
            if unit is not self:
                unit._apply(point, value)
                DeviceModel.on_write(self, match.group(1) + point, value)
                return
            DeviceModel.on_write(self, match.group(1) + point, value)
            self._apply(point, value)
            return
        super().on_write(point, value)
        self._apply(point, value)

    def _apply(self, point: str, value: Value) -> None:
        # The room evolved under the old settings until now.
        now = self.clock.now()
        self.advance(now.timestamp())
        if point == "setpoint_degc":
            new = float(value)
            self.setpoint_history.append(SetpointChange(now, self.setpoint, new))
            self.setpoint = new
        elif point == "mode":
            code = int(value)
            self._raw_mode = None
            if self._codes is None:
                self.mode = code
            else:
                back = {v: k for k, v in self._codes.items()}
                if code in back:
                    self.mode = back[code]
                else:  # a mode without a CoolMasterNet twin (Daikin's ventilation): air only
                    self.mode, self._raw_mode = MODE_FAN, code
        elif point == "swing":
            self.swing = int(value)
        elif point in self.settings:
            self.settings[point] = value
        elif point == "fan_speed":
            self.fan_speed = int(value)
        elif point in ("on_off", "running"):
            self.on = bool(value)
