"""The virtual building's water meter and EV charger models (simulator/models/water.py, ev.py),
read at chosen simulated times (no server, no wall clock)."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from core.types import Value
from drivers.modbus.profile import Profile
from gateway.config_load import BUILTIN_PROFILES, load_profile
from simulator.clock import SimClock
from simulator.models import EvCharger, WaterMeter, water_demand_fraction
from simulator.models.ev import SOCKET_EMPTY, SOCKET_PLUGGED_LOCKED, STATE_CHARGING, STATE_IDLE

TZ = ZoneInfo("Asia/Shanghai")
TUESDAY = datetime(2025, 7, 15, 0, 0, tzinfo=TZ)


def profile(name: str) -> Profile:
    return load_profile(BUILTIN_PROFILES / f"{name}.yaml")


def at(hour: float, day: datetime = TUESDAY) -> datetime:
    return day + timedelta(hours=hour)


def num(values: dict[str, Value], name: str) -> float:
    value = values[name]
    assert isinstance(value, float | int), name
    return float(value)


def test_water_demand_follows_the_office_day() -> None:
    night, morning, lunch, evening = (water_demand_fraction(at(h)) for h in (3.0, 10.0, 12.0, 21.0))
    assert night == pytest.approx(0.03)
    assert night < morning < lunch  # the canteen's kitchen on top of the washrooms
    assert evening == pytest.approx(night)
    assert water_demand_fraction(at(12.0, TUESDAY + timedelta(days=4))) < 0.2  # Saturday


def test_water_meter_totalizer_counts_the_flow() -> None:
    clock = SimClock(start=TUESDAY.replace(tzinfo=None))
    meter = WaterMeter(profile("tuf2000m_water"), clock, peak_m3h=6.0, seed=3)
    readings = [meter.values(at(h)) for h in (0.0, 6.0, 12.0, 18.0, 24.0)]

    def total(v: dict[str, Value]) -> float:
        whole = num(v, "volume_forward_integer_m3")
        fraction = num(v, "volume_forward_fraction_m3")
        assert whole == int(whole)  # split as the TUF-2000M does
        assert 0.0 <= fraction < 1.0
        return whole + fraction

    totals = [total(v) for v in readings]
    assert totals == sorted(totals)
    day = totals[-1] - totals[0]
    # 24 h of the demand curve at 6 m3/h peak: some 25-45 m3 on a working day
    assert 25.0 < day < 45.0
    assert totals[1] - totals[0] < 0.1 * day  # the night is the cistern refills
    # the working-time counter runs with the clock, across midnight
    assert num(readings[-1], "running_time_s") - num(readings[0], "running_time_s") == 86400
    flow = num(readings[2], "flow_m3h")
    assert 2.0 < flow < 8.0
    velocity = num(readings[2], "flow_velocity_m_s")
    assert velocity == pytest.approx(flow / 3600.0 / (3.14159265 * 0.08**2 / 4.0), rel=1e-6)


def test_ev_charger_one_session_a_working_day() -> None:
    clock = SimClock(start=TUESDAY.replace(tzinfo=None))
    charger = EvCharger(profile("abb_terra_ac"), clock, current_limit_a=16.0, seed=7)
    session = charger.session(TUESDAY.date())
    assert session is not None
    assert 8.0 <= session.arrive_h <= 9.25
    assert 17.5 <= session.leave_h <= 19.0
    end = session.charging_until(charger.power_kw)

    total_before = charger.energy_total_kwh(at(7.0).timestamp())  # counters read in time order
    before = charger.values(at(7.0))
    charging = charger.values(at(session.arrive_h + 0.01))
    done = charger.values(at(min(end + 0.5, session.leave_h - 0.01)))
    gone = charger.values(at(20.0))

    assert (before["state"], before["socket_lock_state"]) == (STATE_IDLE, SOCKET_EMPTY)
    assert charging["state"] == STATE_CHARGING
    assert charging["socket_lock_state"] == SOCKET_PLUGGED_LOCKED
    assert num(charging, "active_power_w") == pytest.approx(11040.0, rel=0.02)
    assert num(charging, "current_l1_a") == pytest.approx(16.0, rel=0.03)
    if end < session.leave_h:  # full before the driver leaves: plugged in, drawing nothing
        assert done["state"] == 2  # B2
        assert done["active_power_w"] == 0.0
    assert (gone["state"], gone["socket_lock_state"]) == (STATE_IDLE, SOCKET_EMPTY)
    # the session's energy stays readable after unplugging, and the lifetime counter grew by it
    session_kwh = num(gone, "energy_session_kwh")
    assert session_kwh == pytest.approx(charger.power_kw * (end - session.arrive_h), rel=1e-6)
    if end < session.leave_h:
        assert session_kwh == pytest.approx(session.energy_kwh, rel=1e-6)
    grown = charger.energy_total_kwh(at(20.0).timestamp()) - total_before
    assert grown == pytest.approx(session_kwh, rel=0.02)


def test_ev_charger_bay_is_empty_at_the_weekend() -> None:
    saturday = TUESDAY + timedelta(days=4)
    clock = SimClock(start=saturday.replace(tzinfo=None))
    charger = EvCharger(profile("abb_terra_ac"), clock, seed=7)
    assert charger.session(saturday.date()) is None
    for hour in (9.0, 12.0, 15.0):
        v = charger.values(at(hour, saturday))
        assert (v["state"], v["active_power_w"]) == (STATE_IDLE, 0.0)
