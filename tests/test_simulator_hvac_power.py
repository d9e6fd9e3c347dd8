"""A/C units that draw power by their settings, and the A/C meter (`use: hvac`) that counts
it: a setpoint raised shows on the meter, a unit switched off draws nothing, the counters
integrate right under a fast clock, and the load shed measured from the meter's readings in a
real InfluxDB (gateway/dr/shed.py) is what the units' own counters say the event saved."""

from __future__ import annotations

import asyncio
import time as wall
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from drivers.modbus.profile import Profile
from gateway.config_load import BUILTIN_PROFILES, load_profile
from gateway.dr.shed import ShedAccounts
from gateway.report.query import InfluxQL
from rules.calendar import WorkCalendar
from simulator.building import HVAC_BASE_W, models_for_site
from simulator.clock import SimClock
from simulator.models import MODE_COOL, MODE_HEAT, AcUnit, OfficeMeter
from simulator.models.meters import HvacMeter
from simulator.site import read_site
from tests.servers import InfluxDB1Server

TZ = ZoneInfo("Asia/Shanghai")
DEMO_SITE = Path(__file__).resolve().parent.parent / "config" / "demo-site.yaml"
SUMMER_2PM = datetime(2025, 7, 15, 14, 0, tzinfo=TZ)  # a Tuesday
RATED_W = 3_500.0
# What 1 °C more takes off a unit whose compressor runs below its rating.
PER_DEGREE_W = RATED_W * (1 - AcUnit.COMPRESSOR_FLOOR) / AcUnit.DESIGN_DELTA_C


def profile(name: str) -> Profile:
    loaded = load_profile(BUILTIN_PROFILES / f"{name}.yaml")
    assert isinstance(loaded, Profile)
    return loaded


def units(
    clock: SimClock,
    n: int = 3,
    *,
    on: bool = True,
    mode: int = MODE_COOL,
    setpoint: float = 26.0,
) -> list[AcUnit]:
    ac = profile("coolmaster_indoor")
    return [
        AcUnit(ac, clock, on=on, mode=mode, setpoint=setpoint, rated_w=RATED_W, seed=i)
        for i in range(n)
    ]


def test_power_follows_the_settings() -> None:
    clock = SimClock(speed=0, start=SUMMER_2PM)
    (unit,) = units(clock, 1)
    at_26 = unit.power_w()
    assert AcUnit.FAN_W + RATED_W * AcUnit.COMPRESSOR_FLOOR < at_26 < RATED_W
    unit.on_write("setpoint_degc", 27.0)
    assert unit.power_w() == pytest.approx(at_26 - PER_DEGREE_W)
    unit.on_write("on_off", 0)
    assert unit.power_w() == 0.0
    unit.on_write("on_off", 1)
    unit.on_write("mode", 5)  # fan only
    assert unit.power_w() == AcUnit.FAN_W
    # Heating in January: a higher setpoint draws more.
    winter = SimClock(speed=0, start=datetime(2025, 1, 15, 10, 0, tzinfo=TZ))
    (heater,) = units(winter, 1, mode=MODE_HEAT, setpoint=18.0)
    low = heater.power_w()
    heater.on_write("setpoint_degc", 19.0)
    assert heater.power_w() == pytest.approx(low + PER_DEGREE_W)


def test_the_hvac_meter_shows_the_units() -> None:
    clock = SimClock(speed=0, start=SUMMER_2PM)
    ac = units(clock)
    meter = HvacMeter(profile("chint_dtsu666"), clock, ac, base_w=2_000.0, seed=7)
    office = OfficeMeter(profile("chint_dtsu666"), clock, seed=7)
    values = meter.values()
    assert set(values) == set(office.values())  # the same registers as any meter's
    drawn = sum(u.power_w() for u in ac)
    assert float(values["active_power_total_w"]) == pytest.approx(2_000.0 + drawn, rel=0.06)
    before = float(values["energy_import_kwh"])
    clock.advance(3600)
    for unit in ac:
        unit.on_write("on_off", 0)
    after = meter.values()
    # One hour of the units at their draw, and the base.
    assert float(after["energy_import_kwh"]) - before == pytest.approx(
        (drawn + 2_000.0) / 1000, rel=0.06
    )
    assert float(after["active_power_total_w"]) == pytest.approx(2_000.0, rel=0.06)
    assert meter.units_kwh(clock.now().timestamp()) == pytest.approx(
        sum(u.energy_kwh for u in ac), rel=1e-12
    )


def test_the_demo_site_gets_hvac_meters_and_keeps_the_others() -> None:
    clock = SimClock(speed=0, start=SUMMER_2PM)
    sims = models_for_site(read_site(DEMO_SITE), clock)
    ac = [s.model for s in sims if isinstance(s.model, AcUnit)]
    assert ac
    for sim in sims:
        kind = sim.config.kind or sim.profile.kind
        if kind == "meter" and sim.config.tags.get("use") == "hvac":
            assert isinstance(sim.model, HvacMeter), sim.config.id
            assert sim.model.base_w == HVAC_BASE_W
            # The 3F meter sees the 3F units; the switch room's A/C feeder (B1, no units
            # there) sees them all.
            floor = sim.config.tags.get("floor")
            on_floor = [
                u
                for s in sims
                if isinstance(s.model, AcUnit) and s.config.tags.get("floor") == floor
                for u in s.model.indoor_units
            ]
            everyone = [u for unit in ac for u in unit.indoor_units]
            assert sim.model.units == (on_floor or everyone), sim.config.id
        elif isinstance(sim.model, OfficeMeter):
            assert type(sim.model) is OfficeMeter, sim.config.id
    # A meter of another use reads what it read before this change: the same model and seed.
    main = next(s for s in sims if s.config.id == "meter-b1-main")
    assert isinstance(main.model, OfficeMeter)
    again = OfficeMeter(main.profile, clock, peak_w=120_000.0, seed=main.model.seed)
    assert main.model.values() == again.values()


@dataclass
class Run:
    """The readings of one simulated run: the meter's and the units' own counters."""

    lines: list[str] = field(default_factory=list)
    meter_kwh: dict[float, float] = field(default_factory=dict)
    units_kwh: dict[float, float] = field(default_factory=dict)


def write_at(clock: SimClock, unit: AcUnit, point: str, value: float, at: float) -> None:
    clock.advance(at - clock.now().timestamp())
    unit.on_write(point, value)


def test_the_counters_integrate_under_a_fast_clock() -> None:
    """Writes land wherever a fast clock happens to be; the energy must be what a stepped clock
    gives for the same settings at the same simulated moments."""
    start = SUMMER_2PM - timedelta(hours=2)
    fast = SimClock(speed=0, start=start)
    ac = units(fast)
    meter = HvacMeter(profile("eastron_sdm630"), fast, ac, seed=3)
    first = float(meter.values()["energy_import_kwh"])
    fast.speed = 4 * 3600  # four simulated hours a second
    written = False
    while fast.now() < start + timedelta(hours=4):
        meter.values()
        if not written and fast.now() >= start + timedelta(hours=2):
            for unit in ac:
                unit.on_write("setpoint_degc", 27.0)
            ac[0].on_write("on_off", 0)
            written = True
        wall.sleep(0.005)
    fast.speed = 0
    end = fast.now().timestamp()
    last = float(meter.values(fast.now())["energy_import_kwh"])
    # The meter counted the base and exactly what the units drew.
    units_drawn = sum(u.energy_kwh for u in ac)
    assert meter.units_kwh(end) == pytest.approx(units_drawn, rel=1e-12)
    base = last - first - units_drawn
    assert base == pytest.approx(2_000.0 * (end - start.timestamp()) / 3.6e6, rel=0.05)

    # The same settings at the same simulated moments on a stepped clock.
    stepped = SimClock(speed=0, start=start)
    again = units(stepped)
    writes = sorted((t.timestamp(), i, p, v) for i, u in enumerate(ac) for t, p, v in u.writes)
    for at, i, point, value in writes:
        write_at(stepped, again[i], point, float(value), at)
    for unit in again:
        unit.advance(end)
    assert [u.energy_kwh for u in again] == pytest.approx([u.energy_kwh for u in ac], rel=1e-4)
    assert ac[0].power_w(end) == 0.0


# --- the load shed, measured ---------------------------------------------------------------------

SITE = "sim-site"
STEP = 300.0
FIRST_DAY = date(2025, 7, 8)  # a Tuesday: five working days before the event's
EVENT_DAY = date(2025, 7, 15)
EVENT_START = datetime.combine(EVENT_DAY, time(14), TZ).timestamp()
EVENT_END = EVENT_START + 2 * 3600


def simulate(meter_id: str, *, event: bool) -> Run:
    """A week of three office units (on 08:00-18:00 on working days at 26 °C) and their meter,
    read every 5 minutes; with `event`, setpoints at 27 °C in the event's window."""
    calendar = WorkCalendar("Asia/Shanghai")
    start = datetime.combine(FIRST_DAY, time(0), TZ)
    clock = SimClock(speed=0, start=start)
    ac = units(clock, on=False)
    meter = HvacMeter(profile("chint_dtsu666"), clock, ac, seed=11)
    run = Run()
    t = start.timestamp()
    end = EVENT_END + 3600
    while t <= end:
        clock.advance(t - clock.now().timestamp())
        local = clock.now()
        if calendar.is_workday(local.date()) and local.minute == 0:
            for unit in ac:
                if local.hour == 8:
                    unit.on_write("on_off", 1)
                elif local.hour == 18:
                    unit.on_write("on_off", 0)
        if event and t in (EVENT_START, EVENT_END):
            for unit in ac:
                unit.on_write("setpoint_degc", 27.0 if t == EVENT_START else 26.0)
        values = meter.values()
        kwh, watts = float(values["energy_import_kwh"]), float(values["active_power_total_w"])
        run.meter_kwh[t] = kwh
        run.units_kwh[t] = sum(u.energy_kwh for u in ac)
        run.lines.append(
            f"meter,device={meter_id},kind=meter,site={SITE} "
            f"energy_import_kwh={kwh!r},active_power_total_w={watts!r} {int(t)}"
        )
        t += STEP
    return run


@pytest.mark.servers
def test_the_measured_shed_is_what_the_units_saved(influx1: InfluxDB1Server) -> None:
    without, with_event = simulate("ac-meter-a", event=False), simulate("ac-meter-b", event=True)
    influx1.write(without.lines + with_event.lines, "building", precision="s")
    query = InfluxQL(influx1.url, "building").query
    calendar = WorkCalendar("Asia/Shanghai")

    def figure(meter: str) -> tuple[float, float, float, tuple[str, ...]]:
        shed = ShedAccounts(query, SITE, meter, calendar)
        shed.event_started("e", EVENT_START, EVENT_END)
        got = asyncio.run(shed.figure("e", EVENT_END + 3600))
        assert got is not None
        assert got.known, got.reason
        return got.baseline_kwh, got.actual_kwh, got.reduction_kwh, got.baseline_days

    base_a, actual_a, reduction_a, days_a = figure("ac-meter-a")
    base_b, actual_b, reduction_b, days_b = figure("ac-meter-b")
    assert (
        days_a == days_b == ("2025-07-14", "2025-07-11", "2025-07-10", "2025-07-09", "2025-07-08")
    )
    assert base_a == pytest.approx(base_b, rel=1e-12)  # the same history
    # The actual energy is the meter's own counter over the window.
    for run, actual in ((without, actual_a), (with_event, actual_b)):
        assert actual == pytest.approx(
            run.meter_kwh[EVENT_END] - run.meter_kwh[EVENT_START], rel=1e-9
        )
    # What the event saved by the units' own counters: 1 °C on three units for two hours.
    saved = (without.units_kwh[EVENT_END] - without.units_kwh[EVENT_START]) - (
        with_event.units_kwh[EVENT_END] - with_event.units_kwh[EVENT_START]
    )
    assert saved == pytest.approx(3 * 2 * PER_DEGREE_W / 1000, rel=1e-6)
    # ...is what the measured reductions differ by.
    assert reduction_b - reduction_a == pytest.approx(saved, rel=1e-6)
    # Without the event the baseline misses the day by the weather alone (here about 6 %).
    assert abs(reduction_a) < 0.1 * base_a
