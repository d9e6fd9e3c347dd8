"""Electricity meters of an office building: load by time of day, week and season, per phase."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Literal

from core.types import Value
from drivers.dlt645.profile import Dlt645Profile
from drivers.modbus.profile import Profile
from simulator.clock import SimClock
from simulator.models.base import (
    DeviceModel,
    Integrator,
    hour_of_day,
    noise,
    smoothstep,
    solstice_phase,
    start_of_day,
    unit_hash,
    window,
)
from simulator.models.hvac import AcUnit

MeterShape = Literal["office", "hvac", "lighting"]
NOMINAL_HZ = 50.0
_PHASE_ANGLES = (0.0, -2.0 * math.pi / 3.0, 2.0 * math.pi / 3.0)
LINE_PAIRS = (((0, 1), "l1_l2"), ((1, 2), "l2_l3"), ((2, 0), "l3_l1"))
# The share of a meter's energy, before it came into the simulation, by tariff 1-4 (尖 sharp,
# 峰 peak, 平 flat, 谷 valley).
_TARIFF_SHARES = (0.03, 0.35, 0.37, 0.25)


def tariff(local: datetime) -> int:
    """The time-of-use tariff (1 尖 sharp, 2 峰 peak, 3 平 flat, 4 谷 valley) at local time, as
    a multi-function meter's tariff table switches them, in the usual pattern of East China's
    commercial tariffs: valley 22:00-06:00, peak 08:00-11:00 and 18:00-21:00, sharp
    12:00-14:00 in July and August, flat the rest."""
    h = local.hour
    if h >= 22 or h < 6:
        return 4
    if 8 <= h < 11 or 18 <= h < 21:
        return 2
    if local.month in (7, 8) and 12 <= h < 14:
        return 1
    return 3


def load_fraction(local: datetime, shape: MeterShape = "office") -> float:
    """Fraction of the peak load a Chinese government office draws at local time (no noise).

    Weekdays: night base ~15 %, staff arriving 07:30-09:00, the long lunch break (午休,
    11:45-13:45) when lights and PCs go off, leaving 17:30-19:00, some overtime until 22:00.
    Weekends: base load plus a little daytime use. ``hvac`` follows the season (peak = summer
    peak; heating in winter draws less than cooling in summer), ``lighting`` hardly does.
    Public holidays are not modelled.
    """
    h = hour_of_day(local)
    doy = local.timetuple().tm_yday
    weekday = local.weekday() < 5
    if shape == "hvac":
        base = 0.06
        day = smoothstep(7.0, 8.5, h) * (1.0 - smoothstep(17.5, 18.5, h)) if weekday else 0.0
        # Cooling dominates: full in July/August, about half for heating in January.
        season = solstice_phase(doy)
        level = 0.45 + 0.55 * season if season > 0 else 0.25 + 0.3 * -season
        evening = 0.0
        lunch = 0.0
    elif shape == "lighting":
        base = 0.12
        day = smoothstep(7.5, 8.75, h) * (1.0 - smoothstep(17.5, 19.0, h)) if weekday else 0.0
        level = 1.0 - 0.05 * solstice_phase(doy)  # darker winter afternoons
        evening = 0.1 * window(18.5, 22.0, h) if weekday else 0.0
        lunch = 0.35 * window(11.75, 13.75, h)
    else:
        base = 0.15
        day = smoothstep(7.5, 9.0, h) * (1.0 - smoothstep(17.5, 19.0, h)) if weekday else 0.0
        season = solstice_phase(doy)
        # About 40 % of an office's daytime load is air conditioning.
        level = 0.6 + 0.4 * (0.45 + 0.55 * season if season > 0 else 0.25 + 0.3 * -season)
        evening = 0.08 * window(18.5, 22.0, h) if weekday else 0.0
        lunch = 0.2 * window(11.75, 13.75, h)
    if not weekday:
        day = 0.08 * window(8.0, 18.0, h) / max(level, 0.1)  # guards, a few staff
    return base + (1.0 - base) * level * day * (1.0 - lunch) + evening


class OfficeMeter(DeviceModel):
    """A three-phase energy meter on an office load (main incomer or a sub-metering circuit).

    ``nominal_v`` is 230 V: Chinese 10/0.4 kV distribution transformers give 400/230 V at no
    load, a little above the 220 V nominal of the appliances, and voltage sags as load rises.
    """

    def __init__(
        self,
        profile: Profile | Dlt645Profile,
        clock: SimClock,
        *,
        peak_w: float = 120_000.0,
        shape: MeterShape = "office",
        nominal_v: float = 230.0,
        seed: int = 0,
    ) -> None:
        super().__init__(profile, clock, seed=seed)
        self.peak_w = peak_w
        self.shape: MeterShape = shape
        self.nominal_v = nominal_v
        # A fixed unbalance per meter: single-phase loads are never spread evenly.
        raw = [1.0 + 0.08 * (2.0 * unit_hash(seed, "unbalance", i) - 1.0) for i in range(3)]
        self._shares = [r / sum(raw) for r in raw]
        if "voltage_l1_v" in self.names and "voltage_l2_v" not in self.names:
            # A single-phase meter (SDM120, DDSU666): the whole load on its one phase, so its
            # current and power agree with each other.
            self._shares = [1.0, 0.0, 0.0]
        # A meter that has been in service for a while: 1000-3000 full-load hours.
        start_kwh = peak_w / 1000.0 * (1000.0 + 2000.0 * unit_hash(seed, "e0", 0))
        e0 = start_kwh * 3.6e6
        self._start_kwh = start_kwh  # where the resettable counters were last reset
        self._energy = Integrator(
            self._rates,
            start_of_day(clock).timestamp(),
            # W·s of: import total, import per phase, reactive, apparent
            [e0, *(e0 * s for s in self._shares), 0.3 * e0, 1.05 * e0],
        )
        self._max_demand_w = 0.0
        # The identity string some meters carry (a Schneider PM5xxx's "meter model" register).
        self.model_name = profile.name.upper()
        # Energy by tariff, only for profiles that read it (a DL/T 645 meter's tariff
        # registers): on the same grid as the total, so the tariffs add up to it.
        self._tariffs: Integrator | None = None
        if any(f"energy_import_t{k}_kwh" in self.names for k in range(1, 5)):
            self._tariffs = Integrator(
                self._tariff_rates,
                start_of_day(clock).timestamp(),
                [e0 * share for share in _TARIFF_SHARES],
            )

    def power_w(self, ts: float, *, fast: bool = False) -> float:
        """Total active power at epoch seconds ``ts`` (``fast`` adds second-scale jitter)."""
        local = datetime.fromtimestamp(ts, self.clock.tz)
        slow = 1.0 + 0.04 * noise(self.seed, "p", ts, 600.0)
        jitter = 1.0 + 0.01 * noise(self.seed, "pj", ts, 15.0) if fast else 1.0
        return self.peak_w * load_fraction(local, self.shape) * slow * jitter

    def _pf(self, phase: int, ts: float) -> float:
        return 0.95 + 0.028 * noise(self.seed, f"pf{phase}", ts, 1200.0)

    def _phase_shares(self, ts: float) -> list[float]:
        raw = [
            s * (1.0 + 0.02 * noise(self.seed, f"share{i}", ts, 1800.0))
            for i, s in enumerate(self._shares)
        ]
        return [r / sum(raw) for r in raw]

    def _integrated_power_w(self, ts: float) -> float:
        """The power the meter's own integrators count (all of it, here)."""
        return self.power_w(ts)

    def _rates(self, ts: float) -> list[float]:
        p = self._integrated_power_w(ts)
        shares = self._phase_shares(ts)
        phases = [p * s for s in shares]
        pfs = [self._pf(i, ts) for i in range(3)]
        s_tot = sum(pp / pf for pp, pf in zip(phases, pfs, strict=True))
        q_tot = sum(pp / pf * math.sin(math.acos(pf)) for pp, pf in zip(phases, pfs, strict=True))
        return [p, *phases, q_tot, s_tot]

    def _tariff_rates(self, ts: float) -> list[float]:
        p = self._integrated_power_w(ts)
        now = tariff(datetime.fromtimestamp(ts, self.clock.tz))
        return [p if k == now else 0.0 for k in range(1, 5)]

    def _energies_kwh(self, ts: float) -> list[float]:
        """kWh of import total, import per phase, reactive (kvarh) and apparent (kVAh)."""
        return [x / 3.6e6 for x in self._energy.at(ts)]

    def _tariffs_kwh(self, ts: float) -> list[float]:
        """Import kWh by tariff 1-4 (only for profiles that read them)."""
        assert self._tariffs is not None
        return [x / 3.6e6 for x in self._tariffs.at(ts)]

    def _demand_w(self, ts: float) -> float:
        """Mean power over the last 15 minutes, as the meter's demand period does it."""
        return sum(self.power_w(ts - k * 150.0) for k in range(6)) / 6.0

    def _compute(self, local: datetime) -> dict[str, Value]:
        ts = local.timestamp()
        seed = self.seed
        p_total = self.power_w(ts, fast=True)
        frac = p_total / self.peak_w
        shares = self._phase_shares(ts)
        out: dict[str, Value] = {}
        volts: list[float] = []
        currents: list[complex] = []
        s_sum = q_sum = 0.0
        for i in range(3):
            n = i + 1
            v = self.nominal_v * (1.0 + 0.012 * noise(seed, f"v{i}", ts, 900.0) - 0.015 * frac)
            v += 0.3 * noise(seed, f"vj{i}", ts, 7.0)
            pf = self._pf(i, ts)
            p = p_total * shares[i]
            s = p / pf
            q = s * math.sin(math.acos(pf))
            amps = s / v
            angle = math.degrees(math.acos(pf))
            volts.append(v)
            currents.append(
                amps
                * complex(
                    math.cos(_PHASE_ANGLES[i] - math.acos(pf)),
                    math.sin(_PHASE_ANGLES[i] - math.acos(pf)),
                )
            )
            s_sum += s
            q_sum += q
            out |= {
                f"voltage_l{n}_v": v,
                f"current_l{n}_a": amps,
                f"active_power_l{n}_w": p,
                f"apparent_power_l{n}_va": s,
                f"reactive_power_l{n}_var": q,
                f"power_factor_l{n}": pf,
                f"phase_angle_l{n}_deg": angle,
                f"voltage_thd_l{n}_pct": 2.0 + 0.6 * noise(seed, f"vthd{i}", ts, 1800.0),
                # Electronic loads distort more, relatively, when the building is nearly empty.
                f"current_thd_l{n}_pct": 8.0
                + 8.0 * (1.0 - min(frac, 1.0))
                + 2.0 * noise(seed, f"ithd{i}", ts, 900.0),
            }
        # Line-to-line voltages of phasors 120° apart: |Va - Vb∠-120°|.
        for (a, b), name in LINE_PAIRS:
            out[f"voltage_{name}_v"] = math.sqrt(
                volts[a] ** 2 + volts[b] ** 2 + volts[a] * volts[b]
            )
        pf_total = p_total / s_sum if s_sum > 0 else 1.0
        out |= {
            "voltage_ln_avg_v": sum(volts) / 3.0,
            "voltage_ll_avg_v": sum(float(out[f"voltage_{n}_v"]) for _, n in LINE_PAIRS) / 3.0,
            "current_avg_a": sum(abs(c) for c in currents) / 3.0,
            "current_sum_a": sum(abs(c) for c in currents),
            "current_neutral_a": abs(sum(currents)),
            "active_power_total_w": p_total,
            # The same as two non-negative values (SDM72D-M V2): all import here.
            "active_power_import_w": max(p_total, 0.0),
            "active_power_export_w": max(-p_total, 0.0),
            "apparent_power_total_va": s_sum,
            "reactive_power_total_var": q_sum,
            "power_factor_total": pf_total,
            "phase_angle_total_deg": math.degrees(math.acos(min(pf_total, 1.0))),
            "frequency_hz": NOMINAL_HZ
            + 0.04 * noise(seed, "f", ts, 120.0)
            + 0.005 * noise(seed, "fj", ts, 3.0),
            "ct_ratio": 1,
            "pt_ratio": 1,
            "model_name": self.model_name,
        }
        e_import, e1, e2, e3, e_q, e_s = self._energies_kwh(ts)
        out |= {
            "energy_import_kwh": e_import,
            "energy_export_kwh": 0.0,  # an office without its own generation behind the meter
            "energy_total_kwh": e_import,
            "energy_import_l1_kwh": e1,
            "energy_import_l2_kwh": e2,
            "energy_import_l3_kwh": e3,
            "energy_export_l1_kwh": 0.0,
            "energy_export_l2_kwh": 0.0,
            "energy_export_l3_kwh": 0.0,
            "energy_total_l1_kwh": e1,
            "energy_total_l2_kwh": e2,
            "energy_total_l3_kwh": e3,
            "reactive_energy_import_kvarh": e_q,
            "reactive_energy_export_kvarh": 0.0,
            "reactive_energy_total_kvarh": e_q,
            "apparent_energy_total_kvah": e_s,
            # DL/T 645's combined active energy: import plus export by the usual combination
            # word; with nothing exported, the import.
            "energy_combined_kwh": e_import,
            "energy_net_kwh": e_import,  # import - export
            # Resettable counters (SDM72D-M V2), last reset at the start of the first day.
            "energy_total_resettable_kwh": e_import - self._start_kwh,
            "energy_import_resettable_kwh": e_import - self._start_kwh,
            "energy_export_resettable_kwh": 0.0,
        }
        if self._tariffs is not None:
            for k, kwh in enumerate(self._tariffs_kwh(ts), start=1):
                out[f"energy_import_t{k}_kwh"] = kwh
        demand = self._demand_w(ts)
        self._max_demand_w = max(self._max_demand_w, demand)
        out["import_demand_power_total_w"] = demand
        out["import_demand_power_max_w"] = self._max_demand_w
        return out


class HvacMeter(OfficeMeter):
    """The meter of the air conditioning (``use: hvac``): a small base load (controls, pumps,
    ventilation, ``base_w`` with slow noise) plus what the A/C units draw, so that a setpoint
    raised or a unit switched off shows on it at once.

    Its registers are an OfficeMeter's (same points, phases, power factor). Its counters count
    the base with the meter's own integrators and the units' energy from the units' own
    counters (AcUnit.energy_kwh), so over any two readings the meter's energy is the base's
    plus exactly what the units drew. The units are brought up to each reading's time in hour
    steps, which splits their energy among the time-of-use tariffs; a unit some other reader
    already took past that time counts up to where it is.
    """

    # A/C draws at about this power factor (inverter compressors, fans).
    UNITS_PF = 0.95

    def __init__(
        self,
        profile: Profile | Dlt645Profile,
        clock: SimClock,
        units: Sequence[AcUnit],
        *,
        base_w: float = 2_000.0,
        nominal_v: float = 230.0,
        seed: int = 0,
    ) -> None:
        self.units = [indoor for unit in units for indoor in unit.indoor_units]
        self.base_w = base_w
        self._synced = clock.now().timestamp()
        self._unit_start = [u.energy_kwh for u in self.units]
        self._units_kwh = 0.0  # what the units drew since the meter was made, up to _synced
        self._units_by_tariff = [0.0, 0.0, 0.0, 0.0]
        # (time, _units_kwh) of recent syncs, for the demand over the last 15 minutes.
        self._recent: deque[tuple[float, float]] = deque([(self._synced, 0.0)])
        peak = base_w + sum(u.rated_w + u.FAN_W for u in self.units)
        super().__init__(profile, clock, peak_w=peak, shape="hvac", nominal_v=nominal_v, seed=seed)

    def base_power_w(self, ts: float, *, fast: bool = False) -> float:
        """The circuit's own load at ``ts``, without the units."""
        slow = 1.0 + 0.04 * noise(self.seed, "p", ts, 600.0)
        jitter = 1.0 + 0.01 * noise(self.seed, "pj", ts, 15.0) if fast else 1.0
        return self.base_w * slow * jitter

    def power_w(self, ts: float, *, fast: bool = False) -> float:
        """The base at ``ts`` and what the units draw at ``ts`` in their current state."""
        return self.base_power_w(ts, fast=fast) + sum(u.power_w(ts) for u in self.units)

    def units_kwh(self, ts: float) -> float:
        """What the units drew from the meter's start to ``ts`` (brought up to it)."""
        self._sync(ts)
        return self._units_kwh

    def _sync(self, ts: float) -> None:
        tz = self.clock.tz
        while self._synced < ts:
            local = datetime.fromtimestamp(self._synced, tz)
            hour = local.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
            step_end = min(ts, hour.timestamp())
            for u in self.units:
                u.advance(step_end)
            drawn = math.fsum(
                u.energy_kwh - e0 for u, e0 in zip(self.units, self._unit_start, strict=True)
            )
            self._units_by_tariff[tariff(local) - 1] += drawn - self._units_kwh
            self._units_kwh = drawn
            self._synced = step_end
        recent = self._recent
        if recent[-1][0] < self._synced:
            recent.append((self._synced, self._units_kwh))
        while len(recent) > 2 and recent[1][0] <= self._synced - 900.0:
            recent.popleft()

    def _integrated_power_w(self, ts: float) -> float:
        return self.base_power_w(ts)

    def _energies_kwh(self, ts: float) -> list[float]:
        units = self.units_kwh(ts)
        e_import, e1, e2, e3, e_q, e_s = super()._energies_kwh(ts)
        shares = self._shares
        return [
            e_import + units,
            e1 + units * shares[0],
            e2 + units * shares[1],
            e3 + units * shares[2],
            e_q + units * math.tan(math.acos(self.UNITS_PF)),
            e_s + units / self.UNITS_PF,
        ]

    def _tariffs_kwh(self, ts: float) -> list[float]:
        self._sync(ts)
        return [
            base + units
            for base, units in zip(super()._tariffs_kwh(ts), self._units_by_tariff, strict=True)
        ]

    def _demand_w(self, ts: float) -> float:
        self._sync(ts)
        base = sum(self.base_power_w(ts - k * 150.0) for k in range(6)) / 6.0
        t0, e0 = self._recent[0]
        if self._synced - t0 <= 0:
            return base + sum(u.power_w(ts) for u in self.units)
        return base + (self._units_kwh - e0) * 3.6e6 / (self._synced - t0)
