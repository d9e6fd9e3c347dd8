"""Photovoltaic inverters: output under the sun of an east-China city (~31 °N), and the grid
meter a Huawei inverter reads."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import date, datetime, time, timedelta

from core.types import Value
from drivers.modbus.profile import Profile
from simulator.clock import SimClock
from simulator.models.base import (
    DeviceModel,
    Integrator,
    hour_of_day,
    noise,
    outdoor_temperature,
    solstice_phase,
    start_of_day,
    unit_hash,
)
from simulator.models.meters import LINE_PAIRS, NOMINAL_HZ, OfficeMeter


def sun_hours(day: date) -> tuple[float, float]:
    """Local sunrise and sunset hours (China Standard Time, ~31 °N, ~118 °E).

    About 06:10-18:20 at the equinoxes, 05:10-19:20 in June, 07:10-17:20 in December.
    """
    doy = day.timetuple().tm_yday
    length = 12.2 + 2.0 * solstice_phase(doy)
    noon = 12.25
    return noon - length / 2.0, noon + length / 2.0


def clear_sky_fraction(local: datetime) -> float:
    """Clear-sky AC output of a well-sized array as a fraction of its rating (0 at night)."""
    sunrise, sunset = sun_hours(local.date())
    h = hour_of_day(local)
    if not sunrise < h < sunset:
        return 0.0
    elevation = math.sin(math.pi * (h - sunrise) / (sunset - sunrise))
    season = 0.82 + 0.18 * solstice_phase(local.timetuple().tm_yday)  # lower winter sun
    # sin² narrows the curve to what fixed arrays give (low sun, long air path mornings and
    # evenings); 0.85 is the array's noon best after heat, soiling and wiring losses. Clear
    # days then yield ~5.3 kWh/kWp in June and ~2.5 in December, as around Shanghai.
    return 0.85 * season * elevation**2


class PvInverter(DeviceModel):
    """A three-phase PV string inverter; serves SunSpec (models 1/103/160), Huawei SUN2000 and
    the Sungrow, Growatt, GoodWe and Solis string-inverter profiles.

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
        digits = "".join(str(int(10 * unit_hash(seed, "sn", i))) for i in range(10))
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
        years = 1.0 + 3.0 * unit_hash(seed, "age", 0)
        e0_ws = rated_w / 1000.0 * 1100.0 * years * 3.6e6
        self._mppt_split = 0.5 + 0.04 * (2.0 * unit_hash(seed, "split", 0) - 1.0)
        midnight = start_of_day(clock)
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
        self._energy = Integrator(self._rates, midnight.timestamp(), initial, on_step=self._on_step)

    # AC power and its parts, without fast jitter (integration) or with it (readings).
    def ac_power_w(self, ts: float, *, fast: bool = False) -> float:
        if self.fault:
            return 0.0
        local = datetime.fromtimestamp(ts, self.clock.tz)
        clear = clear_sky_fraction(local)
        if clear <= 0.0:
            return 0.0
        overcast = unit_hash(self.seed, "overcast", local.date().toordinal())
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
        hz = NOMINAL_HZ + 0.04 * noise(seed, "f", ts, 120.0)
        reactive = ac * 0.02 * noise(seed, "q", ts, 600.0)
        for i, (v, a) in enumerate(zip(volts, amps, strict=True)):
            out[f"voltage_l{i + 1}_v"] = v
            out[f"current_l{i + 1}_a"] = a
        for (a, b), name in LINE_PAIRS:
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
        h = hour_of_day(local)
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
        out |= self._string_inverter_block(
            local,
            producing,
            frac,
            hz if producing else 0.0,
            dc_parts,
            dc_volts,
            dc_amps,
            energy,
            (cabinet, heatsink),
        )
        # The Huawei grid meter last: its meter values win over the GoodWe meter's defaults.
        out |= self._meter_block(ts, local, ac, volts, hz, e_exp, e_imp, e_q)
        return out

    def _string_inverter_block(
        self,
        local: datetime,
        producing: bool,
        frac: float,
        hz: float,
        dc_parts: list[float],
        dc_volts: list[float],
        dc_amps: list[float],
        energy: list[float],
        temperatures: tuple[float, float],
    ) -> dict[str, Value]:
        """The names of the Sungrow, Growatt, GoodWe and Solis profiles: strings by number (a
        third and fourth string unconnected), kWh counters, and each vendor's state code for
        producing, waiting and fault. The monthly and yearly counters some models keep are
        today's yield plus an average day for each day before it, not integrated."""
        e_ac, e_dc, e_m1, e_m2 = energy[:4]
        cabinet, heatsink = temperatures
        today_kwh = (e_ac - self._day_start[0]) / 3.6e6
        avg_day_kwh = 3.2 * self.rated_w / 1000.0
        phase_va = frac * self.rated_w / 3.0 / 0.999 if producing else 0.0
        out: dict[str, Value] = {
            "clock": local.replace(tzinfo=None, microsecond=0).isoformat(),  # GoodWe's, local
            "energy_this_month_kwh": round((local.day - 1) * avg_day_kwh + today_kwh),
            "energy_last_month_kwh": round(30 * avg_day_kwh),
            "energy_yesterday_kwh": avg_day_kwh,
            "energy_this_year_kwh": round(
                (local.timetuple().tm_yday - 1) * avg_day_kwh + today_kwh
            ),
            "energy_last_year_kwh": round(365 * avg_day_kwh),
            "apparent_power_l1_va": phase_va,
            "apparent_power_l2_va": phase_va,
            "apparent_power_l3_va": phase_va,
            "pv3_voltage_v": 0.0,
            "pv3_current_a": 0.0,
            "pv4_voltage_v": 0.0,
            "pv4_current_a": 0.0,
            "warning_code": 0,
            "derating_mode": 0,
            "product_model": 0,
            # GoodWe's export-limit meter: none wired in the demo (2 = disconnected)
            "meter_active_power_w": 0,
            "meter_comm_status": 2,
            "energy_total_kwh": e_ac / 3.6e6,
            "dc_energy_total_kwh": e_dc / 3.6e6,
            # about a third of the daylight hours at full power, over the plant's life
            "running_time_h": round(3.0 * e_ac / 3.6e6 / (self.rated_w / 1000.0)),
            "output_type": 1,
            "ac_output_type": 1,
            "safety_country": 11,  # GoodWe's "China"
            "frequency_l2_hz": hz,
            "frequency_l3_hz": hz,
            "output_pct": round(100.0 * frac),
            "ipm_temperature_degc": heatsink,
            "boost_temperature_degc": cabinet,
            "dc_bus_voltage_v": 650.0 if producing else 0.0,
            "dc_bus_n_voltage_v": 325.0 if producing else 0.0,
            # Sungrow: Run / Standby / Fault; GoodWe: Normal / Wait / Error; Growatt: Normal /
            # Waiting / Fault; Solis: Generating / Waiting.
            "work_state": 0x5500 if self.fault else (0x0000 if producing else 0x1400),
            "running_state_bits": (1 << 9)
            if self.fault
            else ((1 << 0) | (1 << 17) if producing else 1 << 4),
            "work_mode": 2 if self.fault else (1 if producing else 0),
            "run_state": 3 if self.fault else (1 if producing else 0),
            "inverter_status": 3 if producing else 0,
        }
        starts = (self._day_start[2], self._day_start[3])
        for k, (p, v, a, e, e0) in enumerate(
            zip(dc_parts, dc_volts, dc_amps, (e_m1, e_m2), starts, strict=True)
        ):
            pv = f"pv{k + 1}_"
            out |= {
                pv + "voltage_v": v,
                pv + "current_a": a,
                pv + "power_w": p,
                pv + "energy_total_kwh": e / 3.6e6,
                pv + "energy_today_kwh": (e - e0) / 3.6e6,
            }
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
