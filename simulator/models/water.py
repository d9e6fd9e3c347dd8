"""Water meters of an office building: the main supply's flow by time of day, and its totalizer."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime

from core.types import Value
from drivers.modbus.profile import Profile
from simulator.clock import SimClock
from simulator.models.base import (
    DeviceModel,
    Integrator,
    hour_of_day,
    noise,
    outdoor_temperature,
    smoothstep,
    start_of_day,
    unit_hash,
    window,
)

# Kaifeng Xintai water meter codes: pipe segment status, valve status bit 0 (open).
PIPE_FULL = 0xAA
VALVE_OPEN = 0x0001


def water_demand_fraction(local: datetime) -> float:
    """Fraction of the peak flow a government office draws at local time (no noise).

    Weekdays: washrooms and pantries from staff arrival (08:00) to leaving (18:00), the canteen's
    kitchen before and through the lunch break (11:00-13:00) the highest; the night's flow is the
    cistern refills and a small leak, as real buildings show (some 3 % of the peak). Weekends:
    the night base and a little daytime use.
    """
    h = hour_of_day(local)
    base = 0.03
    if local.weekday() >= 5:
        return base + 0.08 * window(9.0, 17.0, h)
    office = 0.45 * smoothstep(7.5, 8.5, h) * (1.0 - smoothstep(17.5, 18.5, h))
    kitchen = 0.5 * window(10.5, 13.25, h)
    return base + office + kitchen


class WaterMeter(DeviceModel):
    """An ultrasonic meter on the building's main water supply (DN80 by default).

    Flow follows `water_demand_fraction` times ``peak_m3h`` with short-term noise (taps open and
    close); the totalizer integrates it from a few years' use, as ``volume_total_m3`` and split
    into whole cubic metres and the decimal fraction (``volume_forward_integer_m3``,
    ``volume_forward_fraction_m3``), as the TUF-2000M keeps it. Nothing flows backwards.

    A prepaid meter with a valve (``xintai_water_meter``) also reads a full pipe, an open
    valve, its lithium battery, the mains pressure (a little lower while water flows) and the
    prepaid volume left of ``credit_m3`` bought at the start of the simulated first day.
    """

    def __init__(
        self,
        profile: Profile,
        clock: SimClock,
        *,
        peak_m3h: float = 6.0,
        pipe_dn_mm: float = 80.0,
        credit_m3: float = 1000.0,
        seed: int = 0,
    ) -> None:
        super().__init__(profile, clock, seed=seed)
        self.peak_m3h = peak_m3h
        self.credit_m3 = credit_m3
        self.pipe_area_m2 = math.pi * (pipe_dn_mm / 1000.0) ** 2 / 4.0
        # A few years of use: about 9 m3 an hour of peak flow per day (working days).
        years = 2.0 + 3.0 * unit_hash(seed, "age", 0)
        v0_m3 = peak_m3h * 9.0 * 250.0 * years
        midnight = start_of_day(clock)
        # Integrated in m3 per second of simulated time.
        self._volume = Integrator(self._rates, midnight.timestamp(), [v0_m3])
        self._v0_m3 = v0_m3
        # Powered on some days before the simulation starts (its working-time counter).
        self._powered_on = midnight.timestamp() - 86400.0 * (1 + int(60 * unit_hash(seed, "on", 0)))

    def flow_m3h(self, ts: float, *, fast: bool = False) -> float:
        local = datetime.fromtimestamp(ts, self.clock.tz)
        flow = self.peak_m3h * water_demand_fraction(local)
        flow *= 1.0 + 0.25 * noise(self.seed, "demand", ts, 600.0)
        if fast:
            flow *= 1.0 + 0.1 * noise(self.seed, "taps", ts, 20.0)
        return max(flow, 0.0)

    def _rates(self, ts: float) -> Sequence[float]:
        return [self.flow_m3h(ts) / 3600.0]

    def _compute(self, local: datetime) -> dict[str, Value]:
        ts = local.timestamp()
        flow = self.flow_m3h(ts, fast=True)
        (volume,) = self._volume.at(ts)
        velocity = flow / 3600.0 / self.pipe_area_m2
        # Mains water follows the ground's temperature: the air's with a lag and less swing.
        water_c = 16.0 + 0.5 * (outdoor_temperature(local, self.seed) - 16.0)
        whole = math.floor(volume)
        return {
            "flow_m3h": flow,
            "flow_velocity_m_s": velocity,
            "sound_speed_m_s": 1482.0 + 3.0 * (water_c - 20.0),  # speed of sound in water
            "volume_total_m3": volume,
            "volume_forward_integer_m3": float(whole),
            "volume_forward_fraction_m3": volume - whole,
            "volume_reverse_m3": 0.0,
            "volume_reverse_integer_m3": 0.0,
            "volume_reverse_fraction_m3": 0.0,
            "volume_net_m3": volume,
            "volume_net_integer_m3": float(whole),
            "volume_net_fraction_m3": volume - whole,
            "temperature_inlet_degc": water_c,
            "temperature_outlet_degc": water_c + 0.2,
            "error_code": 0,
            "signal_quality": 85.0 + 5.0 * noise(self.seed, "q", ts, 300.0),
            "running_time_s": float(int(ts - self._powered_on)),
            # A prepaid meter with a valve (Kaifeng Xintai): codes as its protocol gives them.
            "pipe_status": PIPE_FULL,
            "valve_status": VALVE_OPEN,
            "volume_remaining_m3": max(self.credit_m3 - (volume - self._v0_m3), 0.0),
            "pressure_mpa": 0.35 - 0.05 * min(flow / self.peak_m3h, 1.5),
            "temperature_degc": water_c,
            "battery_voltage_v": 3.6 - 0.02 * unit_hash(self.seed, "battery", 0),
        }
