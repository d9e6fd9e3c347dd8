"""Device behaviour models: engineering values by profile point name at a simulated time.

Every model is deterministic given its seed: noise is a smooth function of (seed, quantity,
simulated time), not a random stream, so two runs over the same simulated times give the same
values however often they are polled. The only state is what a real device integrates or
remembers (energy counters, a room's temperature, the settings written to an A/C unit).

Models compute a full vocabulary of quantities and `values()` keeps those the profile names, so
one meter model serves every meter profile that uses the project's point-name conventions
(``voltage_l1_v``, ``active_power_total_w``, ``energy_import_kwh`` ...).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Literal

from core.types import Value
from drivers.modbus.profile import Profile
from simulator.clock import SimClock

# --- deterministic noise -----------------------------------------------------------------------


def _unit_hash(seed: int, key: str, n: int) -> float:
    """A pseudo-random number in [0, 1) fixed by (seed, key, n)."""
    digest = hashlib.blake2b(f"{seed}:{key}:{n}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def noise(seed: int, key: str, ts: float, period: float) -> float:
    """Smooth value noise in [-1, 1] that changes on the scale of ``period`` seconds."""
    x = ts / period
    n = math.floor(x)
    f = x - n
    f = f * f * (3.0 - 2.0 * f)  # smoothstep: no kinks at the knots
    a = 2.0 * _unit_hash(seed, key, n) - 1.0
    b = 2.0 * _unit_hash(seed, key, n + 1) - 1.0
    return a + (b - a) * f


def smoothstep(edge0: float, edge1: float, x: float) -> float:
    if x <= edge0:
        return 0.0
    if x >= edge1:
        return 1.0
    u = (x - edge0) / (edge1 - edge0)
    return u * u * (3.0 - 2.0 * u)


def _window(start: float, end: float, x: float) -> float:
    """0 outside [start, end], rising as a sine squared to 1 in the middle."""
    if not start < x < end:
        return 0.0
    return math.sin(math.pi * (x - start) / (end - start)) ** 2


def _hours(local: datetime) -> float:
    return local.hour + local.minute / 60.0 + local.second / 3600.0


def _season(doy: int) -> float:
    """+1 at the summer solstice, -1 at the winter solstice (northern hemisphere)."""
    return math.sin(2.0 * math.pi * (doy - 80) / 365.25)


# --- climate of a Chinese city around 30-32 °N (Shanghai, Nanjing, Wuhan) -----------------------

# Mid-month means. Outdoor air; and the indoor air of an office with its A/C off, which the
# building's mass and internal gains keep warmer than outside in winter.
_OUTDOOR_C = (4.5, 6.5, 10.5, 16.0, 21.5, 25.5, 29.5, 29.0, 25.0, 19.5, 13.5, 7.0)
_INDOOR_FREE_C = (12.0, 13.0, 16.0, 20.0, 25.0, 29.0, 31.0, 31.5, 28.5, 23.5, 18.0, 13.5)


def _monthly(table: Sequence[float], local: datetime) -> float:
    """Linear interpolation between mid-month values, so there is no step on the 1st."""
    month_pos = local.month - 1 + (local.day - 1) / 30.5 - 0.5
    i = math.floor(month_pos)
    f = month_pos - i
    return table[i % 12] * (1.0 - f) + table[(i + 1) % 12] * f


def outdoor_temperature(local: datetime, seed: int = 0) -> float:
    """Outdoor air temperature: monthly mean, ±4 °C daily swing peaking at 15:00, weather noise."""
    daily = 4.0 * math.cos(2.0 * math.pi * (_hours(local) - 15.0) / 24.0)
    weather = 2.0 * noise(seed, "weather", local.timestamp(), 3 * 86400.0)
    return _monthly(_OUTDOOR_C, local) + daily + weather


def indoor_free_temperature(local: datetime, seed: int = 0) -> float:
    """Air temperature of an unconditioned office (summer ~30-32 °C, winter ~12 °C)."""
    daily = 1.0 * math.cos(2.0 * math.pi * (_hours(local) - 16.0) / 24.0)
    weather = 0.8 * noise(seed, "weather", local.timestamp(), 3 * 86400.0)
    return _monthly(_INDOOR_FREE_C, local) + daily + weather


# --- integration of rates over simulated time ---------------------------------------------------


class _Integrator:
    """Running integrals of a vector of non-negative rates on a fixed grid of simulated time.

    Left Riemann sums on a grid anchored at ``t0`` make the integral a function of time alone,
    not of how often it is read; between grid points the current rate is extrapolated linearly,
    so a counter still moves between two reads a second apart. A read earlier than the last
    one returns the last value: counters never run backwards.
    """

    MAX_STEPS = 2000  # per read; a longer jump (clock.advance by a month) uses coarser steps

    def __init__(
        self,
        rate: Callable[[float], Sequence[float]],
        t0: float,
        initial: Sequence[float],
        step: float = 60.0,
        on_step: Callable[[float, Sequence[float], Sequence[float]], None] | None = None,
    ) -> None:
        self._rate = rate
        self._step = step
        self._on_step = on_step
        self._grid = t0
        self._acc = [float(x) for x in initial]
        self._r = list(rate(t0))
        self._last_ts = t0
        self._last = list(self._acc)

    def at(self, ts: float) -> list[float]:
        if ts <= self._last_ts:
            return list(self._last)
        gap = ts - self._grid
        step = self._step if gap <= self.MAX_STEPS * self._step else gap / self.MAX_STEPS
        while self._grid + step <= ts:
            for i, r in enumerate(self._r):
                self._acc[i] += r * step
            self._grid += step
            self._r = list(self._rate(self._grid))
            if self._on_step is not None:
                self._on_step(self._grid, self._acc, self._r)
        part = ts - self._grid
        out = [
            max(a + r * part, last)
            for a, r, last in zip(self._acc, self._r, self._last, strict=True)
        ]
        self._last_ts, self._last = ts, out
        return list(out)


def _midnight(clock: SimClock) -> datetime:
    now = clock.now()
    return datetime.combine(now.date(), time(0), tzinfo=clock.tz)


# --- the models ---------------------------------------------------------------------------------


class DeviceModel:
    """Base of the models: filters to the profile's point names and records writes."""

    def __init__(self, profile: Profile, clock: SimClock, *, seed: int = 0) -> None:
        self.profile = profile
        self.clock = clock
        self.seed = seed
        self.names = frozenset(p.name for p in profile.points)
        # Every write the device accepted: (simulated time, point, engineering value).
        self.writes: list[tuple[datetime, str, Value]] = []

    def values(self, t: datetime | None = None) -> dict[str, Value]:
        """Engineering values of the profile's points at simulated time ``t`` (default: now)."""
        local = (self.clock.now() if t is None else t).astimezone(self.clock.tz)
        full = self._compute(local)
        return {k: v for k, v in full.items() if k in self.names}

    def _compute(self, local: datetime) -> dict[str, Value]:
        return {}

    def on_write(self, point: str, value: Value) -> None:
        """A Modbus write to a writable point, decoded to its engineering value."""
        self.writes.append((self.clock.now(), point, value))


class StaticModel(DeviceModel):
    """Fixed values (default: none, so every register reads zero); for unknown device kinds."""

    def __init__(
        self,
        profile: Profile,
        clock: SimClock,
        *,
        seed: int = 0,
        fixed: dict[str, Value] | None = None,
    ) -> None:
        super().__init__(profile, clock, seed=seed)
        self.fixed = dict(fixed or {})

    def _compute(self, local: datetime) -> dict[str, Value]:
        return dict(self.fixed)

    def on_write(self, point: str, value: Value) -> None:
        super().on_write(point, value)
        self.fixed[point] = value


MeterShape = Literal["office", "hvac", "lighting"]

_NOMINAL_HZ = 50.0
_PHASE_ANGLES = (0.0, -2.0 * math.pi / 3.0, 2.0 * math.pi / 3.0)
_LINE_PAIRS = (((0, 1), "l1_l2"), ((1, 2), "l2_l3"), ((2, 0), "l3_l1"))


def load_fraction(local: datetime, shape: MeterShape = "office") -> float:
    """Fraction of the peak load a Chinese government office draws at local time (no noise).

    Weekdays: night base ~15 %, staff arriving 07:30-09:00, the long lunch break (午休,
    11:45-13:45) when lights and PCs go off, leaving 17:30-19:00, some overtime until 22:00.
    Weekends: base load plus a little daytime use. ``hvac`` follows the season (peak = summer
    peak; heating in winter draws less than cooling in summer), ``lighting`` hardly does.
    Public holidays are not modelled.
    """
    h = _hours(local)
    doy = local.timetuple().tm_yday
    weekday = local.weekday() < 5
    if shape == "hvac":
        base = 0.06
        day = smoothstep(7.0, 8.5, h) * (1.0 - smoothstep(17.5, 18.5, h)) if weekday else 0.0
        # Cooling dominates: full in July/August, about half for heating in January.
        season = _season(doy)
        level = 0.45 + 0.55 * season if season > 0 else 0.25 + 0.3 * -season
        evening = 0.0
        lunch = 0.0
    elif shape == "lighting":
        base = 0.12
        day = smoothstep(7.5, 8.75, h) * (1.0 - smoothstep(17.5, 19.0, h)) if weekday else 0.0
        level = 1.0 - 0.05 * _season(doy)  # darker winter afternoons
        evening = 0.1 * _window(18.5, 22.0, h) if weekday else 0.0
        lunch = 0.35 * _window(11.75, 13.75, h)
    else:
        base = 0.15
        day = smoothstep(7.5, 9.0, h) * (1.0 - smoothstep(17.5, 19.0, h)) if weekday else 0.0
        season = _season(doy)
        # About 40 % of an office's daytime load is air conditioning.
        level = 0.6 + 0.4 * (0.45 + 0.55 * season if season > 0 else 0.25 + 0.3 * -season)
        evening = 0.08 * _window(18.5, 22.0, h) if weekday else 0.0
        lunch = 0.2 * _window(11.75, 13.75, h)
    if not weekday:
        day = 0.08 * _window(8.0, 18.0, h) / max(level, 0.1)  # guards, a few staff
    return base + (1.0 - base) * level * day * (1.0 - lunch) + evening


class OfficeMeter(DeviceModel):
    """A three-phase energy meter on an office load (main incomer or a sub-metering circuit).

    ``nominal_v`` is 230 V: Chinese 10/0.4 kV distribution transformers give 400/230 V at no
    load, a little above the 220 V nominal of the appliances, and voltage sags as load rises.
    """

    def __init__(
        self,
        profile: Profile,
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
        raw = [1.0 + 0.08 * (2.0 * _unit_hash(seed, "unbalance", i) - 1.0) for i in range(3)]
        self._shares = [r / sum(raw) for r in raw]
        # A meter that has been in service for a while: 1000-3000 full-load hours.
        start_kwh = peak_w / 1000.0 * (1000.0 + 2000.0 * _unit_hash(seed, "e0", 0))
        e0 = start_kwh * 3.6e6
        self._energy = _Integrator(
            self._rates,
            _midnight(clock).timestamp(),
            # W·s of: import total, import per phase, reactive, apparent
            [e0, *(e0 * s for s in self._shares), 0.3 * e0, 1.05 * e0],
        )
        self._max_demand_w = 0.0

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

    def _rates(self, ts: float) -> list[float]:
        p = self.power_w(ts)
        shares = self._phase_shares(ts)
        phases = [p * s for s in shares]
        pfs = [self._pf(i, ts) for i in range(3)]
        s_tot = sum(pp / pf for pp, pf in zip(phases, pfs, strict=True))
        q_tot = sum(pp / pf * math.sin(math.acos(pf)) for pp, pf in zip(phases, pfs, strict=True))
        return [p, *phases, q_tot, s_tot]

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
        for (a, b), name in _LINE_PAIRS:
            out[f"voltage_{name}_v"] = math.sqrt(
                volts[a] ** 2 + volts[b] ** 2 + volts[a] * volts[b]
            )
        pf_total = p_total / s_sum if s_sum > 0 else 1.0
        out |= {
            "voltage_ln_avg_v": sum(volts) / 3.0,
            "voltage_ll_avg_v": sum(float(out[f"voltage_{n}_v"]) for _, n in _LINE_PAIRS) / 3.0,
            "current_avg_a": sum(abs(c) for c in currents) / 3.0,
            "current_sum_a": sum(abs(c) for c in currents),
            "current_neutral_a": abs(sum(currents)),
            "active_power_total_w": p_total,
            "apparent_power_total_va": s_sum,
            "reactive_power_total_var": q_sum,
            "power_factor_total": pf_total,
            "phase_angle_total_deg": math.degrees(math.acos(min(pf_total, 1.0))),
            "frequency_hz": _NOMINAL_HZ
            + 0.04 * noise(seed, "f", ts, 120.0)
            + 0.005 * noise(seed, "fj", ts, 3.0),
            "ct_ratio": 1,
            "pt_ratio": 1,
        }
        e_import, e1, e2, e3, e_q, e_s = (x / 3.6e6 for x in self._energy.at(ts))
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
        }
        # Demand: mean power over the last 15 minutes, as the meter's demand period does it.
        demand = sum(self.power_w(ts - k * 150.0) for k in range(6)) / 6.0
        self._max_demand_w = max(self._max_demand_w, demand)
        out["import_demand_power_total_w"] = demand
        out["import_demand_power_max_w"] = self._max_demand_w
        return out


# --- photovoltaics ------------------------------------------------------------------------------


def sun_hours(day: date) -> tuple[float, float]:
    """Local sunrise and sunset hours (China Standard Time, ~31 °N, ~118 °E).

    About 06:10-18:20 at the equinoxes, 05:10-19:20 in June, 07:10-17:20 in December.
    """
    doy = day.timetuple().tm_yday
    length = 12.2 + 2.0 * _season(doy)
    noon = 12.25
    return noon - length / 2.0, noon + length / 2.0


def clear_sky_fraction(local: datetime) -> float:
    """Clear-sky AC output of a well-sized array as a fraction of its rating (0 at night)."""
    sunrise, sunset = sun_hours(local.date())
    h = _hours(local)
    if not sunrise < h < sunset:
        return 0.0
    elevation = math.sin(math.pi * (h - sunrise) / (sunset - sunrise))
    season = 0.82 + 0.18 * _season(local.timetuple().tm_yday)  # lower winter sun
    # sin² narrows the curve to what fixed arrays give (low sun, long air path mornings and
    # evenings); 0.85 is the array's noon best after heat, soiling and wiring losses. Clear
    # days then yield ~5.3 kWh/kWp in June and ~2.5 in December, as around Shanghai.
    return 0.85 * season * elevation**2


class PvInverter(DeviceModel):
    """A three-phase PV string inverter; serves SunSpec (models 1/103/160) and Huawei SUN2000.

    AC power follows a clear-sky curve times a cloud factor that varies slowly (some days are
    overcast, clouds pass within a day); DC power is AC over an efficiency of ~97 %; the
    lifetime and daily yields integrate AC power. Status codes follow the profile: SunSpec
    ``St`` 4 MPPT by day and 2 SLEEPING at night, Huawei 0x0200 On-grid and 0xA000 Standby: no
    irradiation. ``site_load`` (the building's main meter model) feeds the Huawei profile's
    external-meter block; without it that meter reads offline.
    """

    def __init__(
        self,
        profile: Profile,
        clock: SimClock,
        *,
        rated_w: float = 50_000.0,
        seed: int = 0,
        unit: int = 1,
        site_load: OfficeMeter | None = None,
        manufacturer: str = "Guanjia Sim",
        model_name: str | None = None,
        serial: str | None = None,
    ) -> None:
        super().__init__(profile, clock, seed=seed)
        self.rated_w = rated_w
        self.unit = unit
        self.site_load = site_load
        self.manufacturer = manufacturer
        kw = round(rated_w / 1000.0)
        self.model_name = model_name or (
            f"SUN2000-{kw}KTL-M3" if "device_status" in self.names else f"PV-{kw}K-3P"
        )
        digits = "".join(str(int(10 * _unit_hash(seed, "sn", i))) for i in range(10))
        self.serial = serial or (f"HV{digits}" if "device_status" in self.names else f"GJ{digits}")
        self.fault = False  # set to show FAULT / "Shutdown: fault" with zero output
        # SunSpec scale factors, fixed for the device's life and chosen so the rating fits the
        # register: int16 power registers hold 32767 at most.
        w_sf = max(0, math.ceil(math.log10(rated_w * 1.2 / 32767.0)))
        mppt_w_sf = max(0, math.ceil(math.log10(rated_w * 0.7 / 65535.0)))
        self.scale_factors: dict[str, int] = {
            "a_sf": -2 if rated_w < 150_000 else -1,
            "v_sf": -1,
            "w_sf": w_sf,
            "hz_sf": -2,
            "va_sf": w_sf,
            "var_sf": w_sf,
            "pf_sf": -2,
            "wh_sf": 0,
            "dca_sf": -2 if rated_w < 150_000 else -1,
            "dcv_sf": -1,
            "dcw_sf": w_sf,
            "tmp_sf": -1,
            "mppt_dca_sf": -2,
            "mppt_dcv_sf": -1,
            "mppt_dcw_sf": mppt_w_sf,
            "mppt_dcwh_sf": 0,
        }
        # Lifetime energy of a plant a few years old: 1100 kWh per kWp and year.
        years = 1.0 + 3.0 * _unit_hash(seed, "age", 0)
        e0_ws = rated_w / 1000.0 * 1100.0 * years * 3.6e6
        self._mppt_split = 0.5 + 0.04 * (2.0 * _unit_hash(seed, "split", 0) - 1.0)
        midnight = _midnight(clock)
        self._day = midnight.date()
        self._day_peak_w = 0.0
        initial = [
            e0_ws,
            e0_ws / 0.97,
            e0_ws / 0.97 * self._mppt_split,
            e0_ws / 0.97 * (1.0 - self._mppt_split),
            # The grid meter's counters: an office imports far more than its roof produces.
            0.02 * e0_ws,
            3.0 * e0_ws,
            0.9 * e0_ws,
        ]
        self._day_start = list(initial)
        self._energy = _Integrator(
            self._rates, midnight.timestamp(), initial, on_step=self._on_step
        )

    # AC power and its parts, without fast jitter (integration) or with it (readings).
    def ac_power_w(self, ts: float, *, fast: bool = False) -> float:
        if self.fault:
            return 0.0
        local = datetime.fromtimestamp(ts, self.clock.tz)
        clear = clear_sky_fraction(local)
        if clear <= 0.0:
            return 0.0
        overcast = _unit_hash(self.seed, "overcast", local.date().toordinal())
        cloudiness = (
            0.6 * overcast**2
            + 0.2 * (1.0 + noise(self.seed, "cloud", ts, 1800.0)) / 2.0
            + 0.1 * (1.0 + noise(self.seed, "cloudlet", ts, 240.0)) / 2.0
        )
        p = self.rated_w * clear * (1.0 - 0.8 * cloudiness)
        if fast:
            p *= 1.0 + 0.005 * noise(self.seed, "pj", ts, 5.0)
        return min(p, self.rated_w)  # the inverter clips at its rating

    def efficiency(self, ac_w: float) -> float:
        """Conversion efficiency: ~97.5 % at load, lower at the start of the day."""
        return 0.975 - 0.06 * math.exp(-ac_w / (0.05 * self.rated_w))

    def _grid_rates(self, ts: float, ac: float) -> tuple[float, float]:
        if self.site_load is None:
            return 0.0, 0.0
        net = ac - self.site_load.power_w(ts)
        return max(net, 0.0), max(-net, 0.0)

    def _rates(self, ts: float) -> list[float]:
        ac = self.ac_power_w(ts)
        dc = ac / self.efficiency(ac) if ac > 0 else 0.0
        export, imported = self._grid_rates(ts, ac)
        reactive = abs(ac * 0.02)
        return [
            ac,
            dc,
            dc * self._mppt_split,
            dc * (1.0 - self._mppt_split),
            export,
            imported,
            reactive,
        ]

    def _on_step(self, ts: float, acc: Sequence[float], rates: Sequence[float]) -> None:
        today = datetime.fromtimestamp(ts, self.clock.tz).date()
        if today != self._day:
            self._day = today
            self._day_start = list(acc)
            self._day_peak_w = 0.0
        self._day_peak_w = max(self._day_peak_w, rates[0])

    def _epoch_at(self, day: date, hour: float) -> int:
        start = datetime.combine(day, time(0), tzinfo=self.clock.tz)
        return int((start + timedelta(hours=hour)).timestamp())

    def _compute(self, local: datetime) -> dict[str, Value]:
        ts = local.timestamp()
        seed = self.seed
        ac = self.ac_power_w(ts, fast=True)
        producing = ac > 0.002 * self.rated_w
        sun_up = clear_sky_fraction(local) > 0.0
        eff = self.efficiency(ac)
        dc = ac / eff if producing else 0.0
        frac = ac / self.rated_w
        out: dict[str, Value] = {}

        # Grid side: the inverter sees the grid voltage even while it sleeps.
        volts = [
            230.0 * (1.0 + 0.01 * noise(seed, f"v{i}", ts, 900.0)) + 2.0 * frac for i in range(3)
        ]
        pf = 0.999 if producing else 1.0
        amps = [ac / 3.0 / v / pf if producing else 0.0 for v in volts]
        hz = _NOMINAL_HZ + 0.04 * noise(seed, "f", ts, 120.0)
        reactive = ac * 0.02 * noise(seed, "q", ts, 600.0)
        for i, (v, a) in enumerate(zip(volts, amps, strict=True)):
            out[f"voltage_l{i + 1}_v"] = v
            out[f"current_l{i + 1}_a"] = a
        for (a, b), name in _LINE_PAIRS:
            out[f"voltage_{name}_v"] = math.sqrt(
                volts[a] ** 2 + volts[b] ** 2 + volts[a] * volts[b]
            )

        # DC side: strings sit near their MPP voltage while producing, near open circuit at
        # dawn and dusk, and at zero in the dark; hot modules have a lower voltage.
        outdoor = outdoor_temperature(local, seed)
        cell = outdoor + 30.0 * frac
        if producing:
            dc_v = 620.0 * (1.0 - 0.0035 * (cell - 25.0)) + 3.0 * noise(seed, "dcv", ts, 60.0)
        elif sun_up:
            dc_v = 690.0 * (1.0 - 0.0035 * (cell - 25.0))
        else:
            dc_v = 0.0
        split = self._mppt_split
        dc_parts = [dc * split, dc * (1.0 - split)]
        dc_volts = [dc_v, dc_v * (1.0 + 0.01 * noise(seed, "dcv2", ts, 300.0)) if dc_v else 0.0]
        dc_amps = [p / v if v > 0 else 0.0 for p, v in zip(dc_parts, dc_volts, strict=True)]

        energy = self._energy.at(ts)
        e_ac, e_dc, e_m1, e_m2, e_exp, e_imp, e_q = energy
        day_ac = energy[0] - self._day_start[0]
        day_peak = max(self._day_peak_w, ac)

        # Temperatures rise with power above the outdoor air.
        cabinet = outdoor + 2.0 + 15.0 * frac
        heatsink = outdoor + 3.0 + 35.0 * frac
        internal = outdoor + 5.0 + 25.0 * frac

        # --- SunSpec models 1, 103, 160
        if self.fault:
            state = 7  # FAULT
        elif producing:
            state = 4  # MPPT
        elif sun_up:
            state = 3  # STARTING: light, but not enough to feed in yet
        else:
            state = 2  # SLEEPING
        out |= {
            "sunspec_marker": "SunS",
            "common_model_id": 1,
            "common_model_length": 66,
            "manufacturer": self.manufacturer,
            "model": self.model_name,
            "options": "",
            "version": "1.4.2",
            "serial_number": self.serial,
            "device_address": self.unit,
            "inverter_model_id": 103,
            "inverter_model_length": 50,
            "current_total_a": sum(amps),
            "active_power_w": ac if producing else 0.0,
            # An inverter that is not synchronised with the grid reports 0 Hz.
            "frequency_hz": hz if producing else 0.0,
            "apparent_power_va": ac / pf if producing else 0.0,
            "reactive_power_var": reactive if producing else 0.0,
            "power_factor_pct": 100.0 * pf if producing else 100.0,
            "energy_total_wh": e_ac / 3600.0,
            "dc_current_a": sum(dc_amps),
            "dc_voltage_v": dc_v,
            "dc_power_w": dc,
            "cabinet_temperature_degc": cabinet,
            "heatsink_temperature_degc": heatsink,
            "operating_state": state,
            "vendor_operating_state": state,
            "event_1": 0,
            "mppt_model_id": 160,
            "mppt_model_length": 48,
            "mppt_module_count": 2,
            "end_model_id": 0xFFFF,
            "end_model_length": 0,
        }
        out |= self.scale_factors
        for k, (p, v, a, e) in enumerate(
            zip(dc_parts, dc_volts, dc_amps, (e_m1, e_m2), strict=True)
        ):
            m = f"mppt{k + 1}_"
            out |= {
                m + "dc_current_a": a,
                m + "dc_voltage_v": v,
                m + "dc_power_w": p,
                m + "energy_wh": e / 3600.0,
                m + "temperature_degc": round(cabinet),
                m + "operating_state": state,
            }

        # --- Huawei SUN2000
        if self.fault:
            status, state_1 = 0x0300, 1 << 6  # Shutdown: fault; Stop due to faults
        elif producing:
            status, state_1 = 0x0200, (1 << 1) | (1 << 2)  # On-grid; Grid-Connected normally
        elif sun_up:
            status, state_1 = 0x0002, 1 << 0  # Standby: detecting irradiation
        else:
            status, state_1 = 0xA000, 1 << 0  # Standby: no irradiation
        today = local.date()
        sunrise, sunset = sun_hours(today)
        h = _hours(local)
        start_day = today if h >= sunrise else today - timedelta(days=1)
        stop_day = today if h >= sunset else today - timedelta(days=1)
        out |= {
            "model_name": self.model_name,
            "model_id": 428,  # illustrative; real IDs depend on the model
            "nb_pv_strings": 2,
            "nb_mpp_trackers": 2,
            "rated_power_w": round(self.rated_w),
            "p_max_w": round(self.rated_w * 1.1),
            "s_max_va": round(self.rated_w * 1.1),
            "q_max_out_var": round(self.rated_w * 0.6),
            "q_max_in_var": -round(self.rated_w * 0.6),
            "state_1": state_1,
            "state_2": 0,
            "state_3": 0,
            "alarm_1": 0,
            "alarm_2": 0,
            "alarm_3": 0,
            "pv_01_voltage_v": dc_volts[0],
            "pv_01_current_a": dc_amps[0],
            "pv_02_voltage_v": dc_volts[1],
            "pv_02_current_a": dc_amps[1],
            "input_power_dc_w": round(dc),
            "day_active_power_peak_w": round(day_peak),
            "power_factor": pf,
            "grid_frequency_hz": hz if producing else 0.0,
            "efficiency_pct": 100.0 * eff if producing else 0.0,
            "internal_temperature_degc": internal,
            "insulation_resistance_mohm": 3.0 + 0.5 * noise(seed, "riso", ts, 86400.0),
            "device_status": status,
            "fault_code": 0,
            "startup_time_s": self._epoch_at(start_day, sun_hours(start_day)[0]),
            "shutdown_time_s": self._epoch_at(stop_day, sun_hours(stop_day)[1]),
            "accumulated_yield_energy_kwh": e_ac / 3.6e6,
            "total_dc_input_energy_kwh": e_dc / 3.6e6,
            "daily_yield_energy_kwh": day_ac / 3.6e6,
        }
        # Huawei AC registers are integers in W/var (the SunSpec ones are rescaled anyway).
        out["active_power_w"] = round(ac) if producing else 0
        out["reactive_power_var"] = round(reactive) if producing else 0
        out |= self._meter_block(ts, local, ac, volts, hz, e_exp, e_imp, e_q)
        return out

    def _meter_block(
        self,
        ts: float,
        local: datetime,
        ac: float,
        volts: list[float],
        hz: float,
        e_exp: float,
        e_imp: float,
        e_q: float,
    ) -> dict[str, Value]:
        """The external grid meter the Huawei re-exposes: positive power = export."""
        if self.site_load is None:
            return {"meter_status": 0, "meter_type": 1}
        load_w = self.site_load.power_w(ts, fast=True)
        net = ac - load_w
        pf = 0.95
        out: dict[str, Value] = {
            "meter_status": 1,
            "meter_type": 1,
            "meter_active_power_w": round(net),
            "meter_reactive_power_var": round(-abs(load_w) * math.tan(math.acos(pf))),
            "meter_power_factor": pf if net < 0 else -pf,
            "meter_frequency_hz": hz,
            "grid_exported_energy_kwh": e_exp / 3.6e6,
            "grid_accumulated_energy_kwh": e_imp / 3.6e6,
            "grid_accumulated_reactive_energy_kvarh": e_q / 3.6e6,
        }
        for i, v in enumerate(volts):
            out[f"grid_voltage_l{i + 1}_v"] = v - 0.5
            out[f"grid_current_l{i + 1}_a"] = abs(net) / 3.0 / v / pf
            out[f"grid_active_power_l{i + 1}_w"] = round(net / 3.0)
        return out


# --- air conditioning ---------------------------------------------------------------------------

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
