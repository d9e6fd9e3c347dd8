"""The virtual building: device models, the pymodbus-backed simulator and the demo site.

Every served device is read with the gateway's own client (drivers.modbus.stream_client) and
decoded with its codec, so these tests also pin down that simulator and gateway agree on the
wire. Servers bind port 0 on 127.0.0.1; nothing here touches another host.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from pymodbus.client import AsyncModbusTcpClient

from core.types import Value
from drivers.modbus.codec import PointSpec, decode_all, decode_raw, resolve, to_raw
from drivers.modbus.driver import ModbusDevice, ModbusDriver
from drivers.modbus.errors import ModbusExceptionResponse, ModbusTimeout
from drivers.modbus.profile import Function, Profile
from drivers.modbus.stream_client import StreamClient
from gateway.config_load import BUILTIN_PROFILES, load_profile, load_site
from gateway.site import BrokerConfig, MqttConfig
from simulator.building import models_for_site, start_building
from simulator.clock import SimClock
from simulator.models import (
    MODE_COOL,
    AcUnit,
    OfficeMeter,
    PvInverter,
    StaticModel,
    load_fraction,
)
from simulator.server import SimulatedDevice, serve
from simulator.site import read_site
from tests.sites import demo_on_free_ports

ROOT = Path(__file__).resolve().parent.parent
DEMO_SITE = ROOT / "config" / "demo-site.yaml"
# The demo site names no broker (`guanjia demo` starts one); any will do for loading it.
DEMO_BROKER = MqttConfig(brokers=[BrokerConfig(name="site", host="127.0.0.1")])
# A Tuesday mid-morning in July: offices busy, sun up.
WEEKDAY_10AM = datetime(2025, 7, 15, 10, 0)
TIMEOUT = 1.0

pytestmark = pytest.mark.timeout(30)


def profile(name: str) -> Profile:
    return load_profile(BUILTIN_PROFILES / f"{name}.yaml")


def run(coro_fn: Callable[[], Awaitable[None]]) -> None:
    async def main() -> None:
        await coro_fn()

    asyncio.run(main())


def decode(specs: list[PointSpec], start: int, regs: list[int] | list[bool]) -> dict[str, Value]:
    """Decode the points wholly inside a block read from ``start``; bad points as reasons."""
    raws = {
        s.name: decode_raw(s, [int(r) for r in regs[s.address - start : s.end - start + 1]])
        for s in specs
        if s.address >= start and s.end < start + len(regs)
    }
    out = decode_all(specs, raws)
    return {**out.values, **{k: f"bad:{v}" for k, v in out.bad.items()}}


async def read_points(
    client: StreamClient, unit: int, specs: list[PointSpec], names: list[str]
) -> dict[str, Value]:
    wanted = [s for s in specs if s.name in names]
    start = min(s.address for s in wanted)
    end = max(s.end for s in wanted)
    fc = 4 if wanted[0].function is Function.INPUT else 3
    regs = await client.read(unit, fc, start, end - start + 1, TIMEOUT)
    return {k: v for k, v in decode(wanted, start, regs).items() if k in names}


# --- served devices ------------------------------------------------------------------------------


def test_sdm630_values_are_plausible_and_energy_counts_up() -> None:
    async def body() -> None:
        sdm = profile("eastron_sdm630")
        clock = SimClock(speed=3600.0, start=WEEKDAY_10AM)
        dev = SimulatedDevice(sdm, OfficeMeter(sdm, clock, peak_w=120_000.0, seed=1), unit=1)
        async with await serve([dev]) as server:
            assert server.port > 0
            client = StreamClient(server.host, server.port, "tcp")
            specs = resolve(sdm)
            regs = await client.read(1, 4, 0, 80, TIMEOUT)
            values = decode(specs, 0, regs)
            for n in (1, 2, 3):
                assert 200.0 <= float(values[f"voltage_l{n}_v"]) <= 260.0
            assert 49.8 <= float(values["frequency_hz"]) <= 50.2
            power = float(values["active_power_total_w"])
            assert 60_000.0 < power < 130_000.0  # a weekday morning near the peak
            pf = float(values["power_factor_total"])
            assert 0.9 <= pf <= 0.99
            phases = sum(float(values[f"active_power_l{n}_w"]) for n in (1, 2, 3))
            assert phases == pytest.approx(power, rel=1e-3)
            # I = P / (V * pf) per phase
            i1 = float(values["current_l1_a"])
            expected = float(values["active_power_l1_w"]) / (
                float(values["voltage_l1_v"]) * float(values["power_factor_l1"])
            )
            assert i1 == pytest.approx(expected, rel=2e-3)

            first = await read_points(client, 1, specs, ["energy_import_kwh"])
            await asyncio.sleep(0.2)  # 720 simulated seconds at ~100 kW: ~20 kWh
            second = await read_points(client, 1, specs, ["energy_import_kwh"])
            gained = float(second["energy_import_kwh"]) - float(first["energy_import_kwh"])
            assert 5.0 < gained < 60.0
            client.close()

    run(body)


def test_read_into_a_hole_gets_an_exception_response() -> None:
    async def body() -> None:
        sdm = profile("eastron_sdm630")
        clock = SimClock(start=WEEKDAY_10AM)
        dev = SimulatedDevice(sdm, OfficeMeter(sdm, clock), unit=1)
        async with await serve([dev]) as server:
            client = StreamClient(server.host, server.port, "tcp")
            # Inside the hole 108..199, and a read that starts readable and runs into it.
            for start, count in ((108, 2), (100, 10), (206, 4)):
                with pytest.raises(ModbusExceptionResponse) as info:
                    await client.read(1, 4, start, count, TIMEOUT)
                assert info.value.code == 2
            # Unused registers between points are readable, as on the meter.
            assert await client.read(1, 4, 92, 16, TIMEOUT) is not None
            # The meter has no holding registers at all.
            with pytest.raises(ModbusExceptionResponse):
                await client.read(1, 3, 0, 2, TIMEOUT)
            client.close()

    run(body)


def test_setpoint_write_changes_the_model_and_the_next_read() -> None:
    async def body() -> None:
        cm = profile("coolmaster_indoor")
        clock = SimClock(start=WEEKDAY_10AM)
        ac = AcUnit(cm, clock, on=True, mode=MODE_COOL, setpoint=24.0, seed=3)
        dev = SimulatedDevice(cm, ac, unit=1, base=32)  # VA 2
        specs = {s.name: s for s in resolve(cm, 32)}
        spec = specs["setpoint_degc"]
        assert spec.address == 34
        async with await serve([dev]) as server:
            client = StreamClient(server.host, server.port, "tcp")
            before = await read_points(client, 1, list(specs.values()), ["setpoint_degc"])
            assert before["setpoint_degc"] == pytest.approx(24.0)

            raw = to_raw(spec, 26.0)
            assert raw == 260
            await client.write_registers(1, spec.address, [int(raw)], TIMEOUT)
            assert ac.setpoint == 26.0
            assert [(c.old, c.new) for c in ac.setpoint_history] == [(24.0, 26.0)]
            assert ac.writes[-1][1:] == ("setpoint_degc", 26.0)
            after = await read_points(client, 1, list(specs.values()), ["setpoint_degc"])
            assert after["setpoint_degc"] == pytest.approx(26.0)

            # Outside the writable range (16..32 °C): illegal data value, model untouched.
            with pytest.raises(ModbusExceptionResponse) as info:
                await client.write_registers(1, spec.address, [400], TIMEOUT)
            assert info.value.code == 3
            # The room temperature is read-only: illegal data address.
            room = specs["room_temperature_degc"]
            with pytest.raises(ModbusExceptionResponse) as info:
                await client.write_registers(1, room.address, [200], TIMEOUT)
            assert info.value.code == 2
            assert ac.setpoint == 26.0

            # Switching off goes through on_off.
            await client.write_registers(1, specs["on_off"].address, [0], TIMEOUT)
            assert ac.on is False
            client.close()

    run(body)


def test_pymodbus_client_reads_a_coolmaster_unit() -> None:
    async def body() -> None:
        cm = profile("coolmaster_indoor")
        clock = SimClock(start=WEEKDAY_10AM)
        ac = AcUnit(cm, clock, on=True, setpoint=25.5, fan_speed=2, room_temperature=27.0)
        async with await serve([SimulatedDevice(cm, ac, unit=7, base=16)]) as server:
            client = AsyncModbusTcpClient(server.host, port=server.port, timeout=TIMEOUT)
            assert await client.connect()
            try:
                rr = await client.read_holding_registers(16, count=9, device_id=7)
                assert not rr.isError()
                mode, fan, setpoint, on_off, *_rest = rr.registers
                assert (mode, fan, setpoint, on_off) == (MODE_COOL, 2, 255, 1)
                assert 265 <= rr.registers[6] <= 275  # room 27.0 °C ±0.5 (x10)
            finally:
                client.close()

    run(body)


def test_rtu_over_tcp_serves_two_units_on_one_line() -> None:
    async def body() -> None:
        dtsu = profile("chint_dtsu666")
        clock = SimClock(start=WEEKDAY_10AM)
        big = SimulatedDevice(dtsu, OfficeMeter(dtsu, clock, peak_w=45_000.0, seed=1), unit=1)
        small = SimulatedDevice(dtsu, OfficeMeter(dtsu, clock, peak_w=5_000.0, seed=2), unit=2)
        specs = resolve(dtsu)
        names = ["voltage_l1_v", "voltage_l2_v", "current_l1_a", "active_power_total_w"]
        async with await serve([big, small], framer="rtu") as server:
            client = StreamClient(server.host, server.port, "rtu")
            one = await read_points(client, 1, specs, names)
            two = await read_points(client, 2, specs, names)
            for values in (one, two):
                assert 200.0 <= float(values["voltage_l1_v"]) <= 260.0
            assert float(one["active_power_total_w"]) > 4 * float(two["active_power_total_w"])
            # Nobody at unit 3 on an RS-485 line: silence, not an exception.
            with pytest.raises(ModbusTimeout):
                await client.read(3, 3, 8192, 2, 0.3)
            # The line still works afterwards.
            again = await read_points(client, 2, specs, ["voltage_l1_v"])
            assert 200.0 <= float(again["voltage_l1_v"]) <= 260.0
            client.close()

    run(body)


def test_dead_and_delayed_devices() -> None:
    async def body() -> None:
        sdm = profile("eastron_sdm630")
        clock = SimClock(start=WEEKDAY_10AM)
        dev = SimulatedDevice(sdm, OfficeMeter(sdm, clock), unit=1)
        async with await serve([dev]) as server:
            client = StreamClient(server.host, server.port, "tcp")
            dev.set_dead()
            started = time.monotonic()
            with pytest.raises(ModbusTimeout):
                await client.read(1, 4, 0, 2, 0.3)
            assert time.monotonic() - started >= 0.29
            assert client.connected  # the connection was accepted and stays up

            dev.clear_faults()
            dev.set_delay(0.3)
            # The answer to a request that timed out arrives while the next one waits: it must
            # not be taken for that one's answer (pymodbus's own handler would send it with the
            # new request's transaction id).
            with pytest.raises(ModbusTimeout):
                await client.read(1, 4, 0, 2, 0.1)
            started = time.monotonic()
            regs = await client.read(1, 4, 70, 4, TIMEOUT)
            assert len(regs) == 4
            assert time.monotonic() - started >= 0.25

            dev.clear_faults()
            assert len(await client.read(1, 4, 0, 2, TIMEOUT)) == 2
            client.close()

    run(body)


def test_bad_value_fault_is_marked_bad_by_the_codec() -> None:
    async def body() -> None:
        sdm = profile("eastron_sdm630")
        clock = SimClock(start=WEEKDAY_10AM)
        dev = SimulatedDevice(sdm, OfficeMeter(sdm, clock), unit=1)
        dev.set_bad_value("voltage_l2_v")  # float32: NaN
        dev.set_bad_value("frequency_hz", 99.0)  # outside the profile's valid range
        specs = resolve(sdm)
        async with await serve([dev]) as server:
            client = StreamClient(server.host, server.port, "tcp")
            values = decode(specs, 0, await client.read(1, 4, 0, 72, TIMEOUT))
            assert values["voltage_l2_v"] == "bad:nan"
            assert values["frequency_hz"] == "bad:out_of_range"
            assert isinstance(values["voltage_l1_v"], float)
            client.close()

    run(body)


def test_busy_port_raises_oserror() -> None:
    async def body() -> None:
        sdm = profile("eastron_sdm630")
        clock = SimClock()
        first = SimulatedDevice(sdm, OfficeMeter(sdm, clock), unit=1)
        async with await serve([first]) as server:
            second = SimulatedDevice(sdm, OfficeMeter(sdm, clock), unit=1)
            with pytest.raises(OSError, match=str(server.port)):
                await serve([second], port=server.port)
        with pytest.raises(ValueError, match="loopback"):
            await serve([first], host="192.0.2.1")

    run(body)


def test_units_sharing_an_id_differ_by_base() -> None:
    """One CoolMasterNet: one unit id, indoor units at VA bases 16 and 32."""

    async def body() -> None:
        cm = profile("coolmaster_indoor")
        clock = SimClock(start=WEEKDAY_10AM)
        a = AcUnit(cm, clock, on=True, setpoint=23.0)
        b = AcUnit(cm, clock, on=False, setpoint=27.0)
        devices = [SimulatedDevice(cm, a, 1, base=16), SimulatedDevice(cm, b, 1, base=32)]
        async with await serve(devices) as server:
            client = StreamClient(server.host, server.port, "tcp")
            assert (await client.read(1, 3, 18, 2, TIMEOUT)) == [230, 1]
            assert (await client.read(1, 3, 34, 2, TIMEOUT)) == [270, 0]
            await client.write_registers(1, 34, [250], TIMEOUT)
            assert (a.setpoint, b.setpoint) == (23.0, 25.0)
            client.close()
        with pytest.raises(ValueError, match="different bases"):
            await serve([SimulatedDevice(cm, a, 1, base=16), SimulatedDevice(cm, b, 1, base=20)])

    run(body)


def test_registers_between_units_of_one_id_read_as_ffff() -> None:
    """As a CoolMasterNet answers: a read that starts on a unit's register runs over the
    reserved registers up to the next unit as 0xFFFF; one that starts on a reserved register,
    or a write to one, is refused."""

    async def body() -> None:
        cm = profile("coolmaster_indoor")
        clock = SimClock(start=WEEKDAY_10AM)
        a = AcUnit(cm, clock, on=True, setpoint=23.0)
        b = AcUnit(cm, clock, on=False, setpoint=27.0)
        first = SimulatedDevice(cm, a, 1, base=16)
        devices = [first, SimulatedDevice(cm, b, 1, base=64)]
        end = max(first.table_addresses(Function.HOLDING))
        async with await serve(devices) as server:
            client = StreamClient(server.host, server.port, "tcp")
            words = await client.read(1, 3, 16, 64 - 16 + 4, TIMEOUT)
            assert words is not None
            assert words[end - 16 + 1 : 64 - 16] == [0xFFFF] * (64 - end - 1)
            assert words[2:4] == [230, 1]
            assert words[64 - 16 + 2 : 64 - 16 + 4] == [270, 0]
            for call in (
                client.read(1, 3, end + 1, 2, TIMEOUT),
                client.write_registers(1, end + 1, [1], TIMEOUT),
            ):
                with pytest.raises(ModbusExceptionResponse) as info:
                    await call
                assert info.value.code == 2
            client.close()

    run(body)


def test_bits_coils_and_discrete_inputs() -> None:
    """Tables no demo profile uses: coils, discrete inputs, bools packed into a register."""
    relay = Profile.model_validate(
        {
            "name": "test_relay",
            "kind": "relay",
            "holes": [{"function": "holding", "start": 11, "end": 11}],
            "points": [
                {
                    "name": "relay_1",
                    "address": 3,
                    "function": "coil",
                    "type": "bool",
                    "writable": {"min": 0, "max": 1},
                },
                {"name": "relay_2", "address": 20, "function": "coil", "type": "bool"},
                {"name": "door", "address": 5, "function": "discrete", "type": "bool"},
                {"name": "alarm_a", "address": 10, "type": "bool", "bit": 0},
                {"name": "alarm_b", "address": 10, "type": "bool", "bit": 3},
                {"name": "temp_degc", "address": 12, "type": "int16", "scale": 0.1},
            ],
        }
    )
    fixed: dict[str, Value] = {
        "relay_1": True, "relay_2": False, "door": True,
        "alarm_a": True, "alarm_b": True, "temp_degc": -5.5,
    }  # fmt: skip

    async def body() -> None:
        model = StaticModel(relay, SimClock(), fixed=fixed)
        async with await serve([SimulatedDevice(relay, model, unit=1)]) as server:
            client = StreamClient(server.host, server.port, "tcp")
            assert await client.read(1, 1, 3, 18, TIMEOUT) == [True] + [False] * 17
            assert await client.read(1, 2, 5, 1, TIMEOUT) == [True]
            assert await client.read(1, 3, 10, 1, TIMEOUT) == [0b1001]
            assert await client.read(1, 3, 12, 1, TIMEOUT) == [0x10000 - 55]
            for fc, start, count in ((1, 2, 2), (1, 20, 2), (2, 4, 1), (3, 11, 1), (4, 0, 1)):
                with pytest.raises(ModbusExceptionResponse) as info:
                    await client.read(1, fc, start, count, TIMEOUT)
                assert info.value.code == 2, (fc, start)
            await client.write_coil(1, 3, False, TIMEOUT)
            assert model.writes[-1][1:] == ("relay_1", False)
            assert await client.read(1, 1, 3, 1, TIMEOUT) == [False]
            with pytest.raises(ModbusExceptionResponse):
                await client.write_coil(1, 20, True, TIMEOUT)  # not writable
            client.close()

    run(body)


# --- the demo site ------------------------------------------------------------------------------


def _demo_on_free_ports(tmp_path: Path) -> Path:
    """The demo site on free ports (tests/sites.py); its MQTT devices are simulated elsewhere
    (test_mqtt_simulator.py)."""
    return demo_on_free_ports(tmp_path)[0]


def test_demo_site_is_valid_and_reads_clean_through_the_driver(tmp_path: Path) -> None:
    path = _demo_on_free_ports(tmp_path)
    loaded = load_site(path, resolve_secrets=False, mqtt=DEMO_BROKER)
    assert loaded.site.site.id == "city-hall"
    assert loaded.site.influxdb is None
    site = read_site(path)
    modbus = [d for d in loaded.site.devices if d.modbus is not None]

    async def body() -> None:
        for start in (WEEKDAY_10AM, datetime(2025, 1, 11, 23, 30)):  # and a winter Saturday night
            clock = SimClock(speed=60.0, start=start)
            building = await start_building(site, clock)
            devices = [
                ModbusDevice(d.id, p, d.modbus, d.poll, d.points)
                for d in modbus
                if d.modbus is not None and isinstance(p := loaded.profiles[d.profile], Profile)
            ]
            driver = ModbusDriver(devices, lambda sample: None)
            try:
                for d in modbus:
                    sample = await driver.read_once(d.id)
                    assert dict(sample.bad) == {}, d.id
                    read = loaded.profiles[d.profile]
                    assert isinstance(read, Profile)
                    # every point, and every derived point (a water meter's totals)
                    assert len(sample.values) == len(read.points) + len(read.derived), d.id
                main = (await driver.read_once("meter-b1-main")).values
                assert 200.0 <= float(main["voltage_l1_v"]) <= 260.0
                pv = (await driver.read_once("pv-roof-sunspec")).values
                huawei = (await driver.read_once("pv-roof-huawei")).values
                if start.hour == 10:
                    assert pv["operating_state"] == 4
                    assert float(pv["active_power_w"]) > 0
                    assert huawei["device_status"] == 0x0200
                else:
                    assert pv["operating_state"] == 2
                    assert pv["active_power_w"] == 0
                    assert huawei["device_status"] == 0xA000
                srv = (await driver.read_once("ac-srv-1")).values
                assert srv["on_off"] == 1
                assert srv["setpoint_degc"] == pytest.approx(22.0)
            finally:
                await driver.stop()
                await building.stop()

    run(body)


def test_building_refuses_non_loopback_hosts() -> None:
    demo = read_site(DEMO_SITE)
    dev = demo.devices[0]
    assert dev.modbus is not None
    remote = dataclasses.replace(dev, modbus=dataclasses.replace(dev.modbus, host="10.1.2.3"))
    site = dataclasses.replace(demo, devices=(remote,))

    async def body() -> None:
        with pytest.raises(ValueError, match=r"10\.1\.2\.3 is not a loopback"):
            await start_building(site, SimClock())

    run(body)


# --- models without a server --------------------------------------------------------------------


def test_models_only_return_profile_points() -> None:
    clock = SimClock(start=WEEKDAY_10AM)
    for sim in models_for_site(read_site(DEMO_SITE), clock):
        names = {p.name for p in sim.profile.points}
        values = sim.model.values()
        assert set(values) <= names, sim.config.id
        # Every point of these profiles is modelled.
        assert set(values) == names, (sim.config.id, sorted(names - set(values)))


def test_models_are_deterministic_given_a_seed() -> None:
    sdm = profile("eastron_sdm630")
    t = datetime(2025, 7, 15, 14, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
    one = OfficeMeter(sdm, SimClock(start=WEEKDAY_10AM), seed=5).values(t)
    two = OfficeMeter(sdm, SimClock(start=WEEKDAY_10AM), seed=5).values(t)
    other = OfficeMeter(sdm, SimClock(start=WEEKDAY_10AM), seed=6).values(t)
    assert one == two
    assert one["voltage_l1_v"] != other["voltage_l1_v"]


def test_office_load_curve() -> None:
    def at(day: int, hour: float) -> float:
        return load_fraction(datetime(2025, 7, day, int(hour), int(hour % 1 * 60)))

    night, morning, lunch, afternoon = at(15, 3), at(15, 10.5), at(15, 12.75), at(15, 15)
    assert 0.13 <= night <= 0.17
    assert morning > 0.8
    assert afternoon > 0.8
    assert night < lunch < morning
    assert at(19, 11) < 0.3  # Saturday
    assert at(15, 8.25) < morning  # still ramping up
    assert at(15, 18.25) < afternoon  # leaving


def test_pv_follows_the_sun_and_energy_integrates() -> None:
    sunspec = profile("sunspec_inverter")
    clock = SimClock(speed=0.0, start=datetime(2025, 7, 15, 0, 0))
    pv = PvInverter(sunspec, clock, rated_w=30_000.0, seed=1)
    night = pv.values(datetime(2025, 7, 15, 2, 0, tzinfo=clock.tz))
    noon = pv.values(datetime(2025, 7, 15, 12, 15, tzinfo=clock.tz))
    evening = pv.values(datetime(2025, 7, 15, 21, 0, tzinfo=clock.tz))
    assert night["active_power_w"] == 0
    assert night["operating_state"] == 2
    assert noon["operating_state"] == 4
    assert 5_000.0 < float(noon["active_power_w"]) <= 30_000.0
    assert float(noon["dc_power_w"]) > float(noon["active_power_w"])
    heatsink_noon = float(noon["heatsink_temperature_degc"])
    assert heatsink_noon > float(night["heatsink_temperature_degc"])
    # A summer day's yield of a 30 kW array: 60-200 kWh.
    day_wh = float(evening["energy_total_wh"]) - float(night["energy_total_wh"])
    assert 60_000.0 < day_wh < 200_000.0


def test_ac_room_temperature_follows_the_unit() -> None:
    cm = profile("coolmaster_indoor")
    clock = SimClock(speed=0.0, start=WEEKDAY_10AM)
    cooling = AcUnit(cm, clock, on=True, mode=MODE_COOL, setpoint=24.0, room_temperature=31.0)
    idle = AcUnit(cm, clock, on=False, room_temperature=24.0)
    cold = AcUnit(cm, clock, on=True, mode=MODE_COOL, setpoint=26.0, room_temperature=22.0)
    clock.advance(20 * 60)
    after_tau = float(cooling.values()["room_temperature_degc"])
    assert 26.0 < after_tau < 27.5  # 1/e of the 7 °C gap left after one time constant
    clock.advance(3 * 3600)
    assert float(cooling.values()["room_temperature_degc"]) == pytest.approx(24.0, abs=0.2)
    # Off: drifts toward the summer free-running temperature (~30-32 °C).
    assert float(idle.values()["room_temperature_degc"]) > 29.0
    # Cooling never heats: a room below the setpoint warms only by itself, up to the setpoint.
    assert float(cold.values()["room_temperature_degc"]) == pytest.approx(26.0, abs=0.3)
    assert not math.isnan(float(cold.values()["room_temperature_degc"]))


def test_clock_runs_fast_and_never_backwards() -> None:
    clock = SimClock(speed=3600.0, start=datetime(2025, 1, 1, 0, 0))
    first = clock.now()
    offset = first.utcoffset()
    assert offset is not None
    assert offset.total_seconds() == 8 * 3600  # Asia/Shanghai
    time.sleep(0.05)
    assert 100.0 < (clock.now() - first).total_seconds() < 1000.0
    clock.speed = 0.0
    frozen = clock.now()
    clock.advance(3600)
    assert (clock.now() - frozen).total_seconds() == pytest.approx(3600.0, abs=1.0)
    with pytest.raises(ValueError, match="forward"):
        clock.advance(-1)
