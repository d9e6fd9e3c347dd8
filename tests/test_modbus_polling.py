"""Pollers against real pymodbus servers: decoding, bad responses, dead devices, writes."""

from __future__ import annotations

import asyncio
import dataclasses
import math

import pytest

from core.types import Command, Sample
from drivers.modbus.config import RtuOverTcpConnection, TcpConnection
from drivers.modbus.driver import ModbusDevice, ModbusDriver
from drivers.modbus.profile import Profile
from tests.modbus_devices import PROFILE, dead_device, f32_words, meter_image, modbus_server


def _driver(devices: list[ModbusDevice], samples: list[Sample] | None = None) -> ModbusDriver:
    return ModbusDriver(devices, (samples.append if samples is not None else lambda _s: None))


def _tcp(port: int, unit: int = 1, timeout: float = 0.5) -> TcpConnection:
    return TcpConnection(
        transport="tcp", host="127.0.0.1", port=port, unit=unit, timeout=timeout, retries=0
    )


async def test_poll_decodes_every_type() -> None:
    async with modbus_server({1: meter_image()}) as port:
        driver = _driver([ModbusDevice("m1", PROFILE, _tcp(port), 1.0)])
        sample = await driver.read_once("m1")
        await driver.stop()
    assert sample.bad == {}
    assert sample.values["voltage_v"] == pytest.approx(230.5)
    assert sample.values["current_a"] == pytest.approx(5.25)
    assert sample.values["energy_kwh"] == pytest.approx(4321.0)
    assert sample.values["status"] == 3
    assert sample.values["temp_degc"] == pytest.approx(-5.5)
    assert sample.values["setpoint_degc"] == pytest.approx(24.5)
    # Each point read once, in three requests: two input blocks split by the hole, one holding.
    poller = driver.pollers["m1"]
    assert sum(len(r.points) for r in poller.plan.requests) == len(PROFILE.points)
    assert [(r.function.value, r.start, r.count) for r in poller.plan.requests] == [
        ("holding", 0, 4),
        ("input", 0, 6),
        ("input", 100, 2),
    ]


async def test_bad_values_are_marked_and_counted_and_polling_goes_on() -> None:
    image = meter_image(voltage=float("nan"), power=5e7)  # NaN, and far outside the valid range
    image["holding"][0] = 65535  # "not available"
    async with modbus_server({1: image}) as port:
        driver = _driver([ModbusDevice("m1", PROFILE, _tcp(port), 1.0)])
        first = await driver.read_once("m1")
        second = await driver.read_once("m1")
        await driver.stop()
    for sample in (first, second):
        assert sample.bad == {
            "voltage_v": "nan",
            "power_w": "out_of_range",
            "status": "not_available",
        }
        assert sample.values["current_a"] == pytest.approx(5.25)
    stats = driver.pollers["m1"].stats
    assert stats.online is True
    assert stats.errors.counts == {"m1:nan": 2, "m1:out_of_range": 2, "m1:not_available": 2}


REFUSED_ENERGY = (
    "refused by the device: exception 2 (illegal_data_address) at input registers 100..101"
)


async def test_a_refused_request_marks_only_its_points_and_is_not_asked_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    image = meter_image()
    del image["input"][100], image["input"][101]  # the device refuses the energy registers
    async with modbus_server({1: image}) as port:
        driver = _driver([ModbusDevice("m1", PROFILE, _tcp(port), 1.0)])
        stats = driver.pollers["m1"].stats
        samples, requests = [], []
        for _ in range(3):
            before = stats.requests
            samples.append(await driver.read_once("m1"))
            requests.append(stats.requests - before)
        await driver.stop()
    for sample in samples:
        assert sample.bad == {"energy_kwh": REFUSED_ENERGY}
        assert sample.values["voltage_v"] == pytest.approx(230.5)
    assert requests == [3, 2, 2]  # learned: the refused registers are skipped
    assert stats.online is True
    assert stats.refused == {"input registers 100..101": REFUSED_ENERGY}
    logged = [r for r in caplog.records if "refuses input registers 100..101" in r.getMessage()]
    assert len(logged) == 1, [r.getMessage() for r in caplog.records]
    assert "energy_kwh" in logged[0].getMessage()
    assert stats.errors.counts == {"m1:refused": 1}


async def test_one_refused_register_in_a_merged_request_costs_only_its_point(
    caplog: pytest.LogCaptureFixture,
) -> None:
    image = meter_image()
    del image["holding"][2]  # setpoint_degc, inside the one request for holding 0..3
    async with modbus_server({1: image}) as port:
        driver = _driver([ModbusDevice("m1", PROFILE, _tcp(port), 1.0)])
        poller = driver.pollers["m1"]
        assert ("holding", 0, 4) in [
            (r.function.value, r.start, r.count) for r in poller.plan.requests
        ]
        samples, requests = [], []
        for _ in range(3):
            before = poller.stats.requests
            samples.append(await driver.read_once("m1"))
            requests.append(poller.stats.requests - before)
        await driver.stop()
    reason = "refused by the device: exception 2 (illegal_data_address) at holding register 2"
    for sample in samples:
        assert sample.bad == {"setpoint_degc": reason}
        assert sample.values["status"] == 3
        assert sample.values["temp_degc"] == pytest.approx(-5.5)
        assert sample.values["alarm_bits"] == 0b1001
        assert sample.values["voltage_v"] == pytest.approx(230.5)
    # First poll: 0..3 refused, then 0..1 answered, 2..3 refused, 2 refused, 3 answered; plus
    # the two input requests. Later polls: 0..1 and 3 and the input requests.
    assert requests == [7, 4, 4]
    assert poller.stats.online is True
    assert poller.stats.errors.counts == {"m1:refused": 1}
    logged = [r.getMessage() for r in caplog.records if "refuses" in r.getMessage()]
    assert len(logged) == 1, logged
    assert "holding register 2 " in logged[0]


GAPPY = Profile.model_validate(
    {
        "name": "gappy",
        "kind": "meter",
        "defaults": {"function": "holding", "type": "uint16"},
        "points": [
            {"name": "a", "address": 0},
            {"name": "b", "address": 1},
            {"name": "c", "address": 5},
        ],
    }
)


async def test_registers_between_points_that_the_device_refuses_are_read_around(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # No point uses 2..4 and the device has nothing there: TCP merges 0..5 into one request,
    # which the device refuses whole; its parts are answered.
    async with modbus_server({1: {"holding": {0: 10, 1: 11, 5: 15}}}) as port:
        driver = _driver([ModbusDevice("g", GAPPY, _tcp(port), 1.0)])
        poller = driver.pollers["g"]
        assert [(r.start, r.count) for r in poller.plan.requests] == [(0, 6)]
        samples, requests = [], []
        for _ in range(3):
            before = poller.stats.requests
            samples.append(await driver.read_once("g"))
            requests.append(poller.stats.requests - before)
        await driver.stop()
    for sample in samples:
        assert sample.bad == {}
        assert sample.values == {"a": 10, "b": 11, "c": 15}
    assert requests == [3, 2, 2]
    assert poller.stats.errors.counts == {"g:refused": 1}
    logged = [r.getMessage() for r in caplog.records if "refuses" in r.getMessage()]
    assert len(logged) == 1, logged
    assert "holding registers 0..5 in one request" in logged[0]
    assert "holding registers 0..1, holding register 5" in logged[0]


async def test_refusals_are_tried_again_after_the_retry_time(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from drivers.modbus.driver import device_plan
    from drivers.modbus.link import Link
    from drivers.modbus.poller import DevicePoller

    image = meter_image()
    del image["holding"][2]
    async with modbus_server({1: image}) as port:
        device = ModbusDevice("m1", PROFILE, _tcp(port), 1.0)
        plan = dataclasses.replace(device_plan(device), refused_retry_s=0.0)
        link = Link.for_connection(device.connection, 1.0)
        poller = DevicePoller(plan, link, lambda _s: None)
        requests = []
        for _ in range(3):
            before = poller.stats.requests
            sample = await poller.poll_once()
            requests.append(poller.stats.requests - before)
            assert set(sample.bad) == {"setpoint_degc"}
        link.close()
    assert requests == [7, 7, 7]  # the full plan every time: the retry time is 0
    assert poller.stats.errors.counts == {"m1:refused": 3}  # counted each time it is found
    assert len([r for r in caplog.records if "refuses" in r.getMessage()]) == 1  # logged once


async def test_not_available_sentinels_of_every_width_in_a_poll() -> None:
    profile = Profile.model_validate(
        {
            "name": "sentinels",
            "kind": "meter",
            "defaults": {"function": "holding"},
            "points": [
                {"name": "temp_degc", "address": 0, "type": "int16", "invalid": [0x8000]},
                {"name": "power_w", "address": 1, "type": "float32", "invalid": ["0x8000 0x8000"]},
                {"name": "energy_wh", "address": 3, "type": "int32", "invalid": [0x7FFFFFFF]},
                {"name": "flow_m3", "address": 5, "type": "float32", "invalid": ["0x8000 0x8000"]},
            ],
        }
    )
    holding = {0: 0x8000, 1: 0x8000, 2: 0x8000, 3: 0x7FFF, 4: 0xFFFF}
    holding[5], holding[6] = f32_words(12.5)
    async with modbus_server({1: {"holding": holding}}) as port:
        driver = _driver([ModbusDevice("s", profile, _tcp(port), 1.0)])
        sample = await driver.read_once("s")
        await driver.stop()
    assert sample.bad == dict.fromkeys(("temp_degc", "power_w", "energy_wh"), "not_available")
    assert sample.values == {"flow_m3": 12.5}


async def test_dead_device_is_offline_and_never_delays_healthy_ones() -> None:
    interval = 0.2
    samples: list[Sample] = []
    async with (
        modbus_server({1: meter_image()}) as p1,
        modbus_server({1: meter_image()}) as p2,
        modbus_server({1: meter_image()}) as p3,
        dead_device() as dead,
    ):
        devices = [
            ModbusDevice(f"ok{i}", PROFILE, _tcp(p), interval) for i, p in enumerate((p1, p2, p3))
        ]
        devices.append(ModbusDevice("dead", PROFILE, _tcp(dead, timeout=1.0), interval))
        driver = _driver(devices, samples)
        driver.start()
        await asyncio.sleep(3.0)
        await driver.stop()
    good = {d: [s for s in samples if s.device == d and s.values] for d in ("ok0", "ok1", "ok2")}
    # Polled sequentially with the dead device, each healthy one would get ~2 samples in 3 s.
    for device, got in good.items():
        assert len(got) >= 10, (device, len(got))
    dead_samples = [s for s in samples if s.device == "dead"]
    assert dead_samples
    assert all(not s.values and set(s.bad.values()) == {"offline"} for s in dead_samples)
    assert driver.pollers["dead"].stats.online is False
    # Backed off: far fewer attempts than a 0.2 s schedule would make.
    assert driver.pollers["dead"].stats.polls <= 4


async def test_device_recovers_after_being_offline() -> None:
    async with modbus_server({1: meter_image()}) as port:
        pass  # the port is now closed: nothing listens there
    driver = _driver([ModbusDevice("m1", PROFILE, _tcp(port), 1.0)])
    offline = await driver.read_once("m1")
    assert driver.pollers["m1"].stats.online is False
    assert not offline.values
    from pymodbus.server import ModbusTcpServer

    from tests.modbus_devices import sim_device  # same port, device now back

    server = ModbusTcpServer([sim_device(1, meter_image())], address=("127.0.0.1", port))
    await server.serve_forever(background=True)
    try:
        back = await driver.read_once("m1")
    finally:
        await driver.stop()
        await server.shutdown()
    assert driver.pollers["m1"].stats.online is True
    assert back.values["voltage_v"] == pytest.approx(230.5)


async def test_rtu_over_tcp_serialises_two_units_on_one_line() -> None:
    images = {1: meter_image(voltage=231.0), 2: meter_image(voltage=229.0)}
    async with modbus_server(images, framer="rtu") as port:
        conns = [
            RtuOverTcpConnection(
                transport="rtu_over_tcp",
                host="127.0.0.1",
                port=port,
                unit=u,
                timeout=1.0,
                retries=0,
                baudrate=9600,
            )
            for u in (1, 2)
        ]
        driver = _driver([ModbusDevice(f"u{c.unit}", PROFILE, c, 1.0) for c in conns])
        assert len(driver.links) == 1  # one owner for the line
        results = await asyncio.gather(*(driver.read_once(d) for d in ("u1", "u2") * 3))
        await driver.stop()
    for sample in results:
        expected = 231.0 if sample.device == "u1" else 229.0
        assert sample.values["voltage_v"] == pytest.approx(expected), sample
        assert sample.bad == {}


async def test_write_within_range_refused_outside_and_for_read_only_points() -> None:
    async with modbus_server({1: meter_image()}) as port:
        driver = _driver([ModbusDevice("m1", PROFILE, _tcp(port), 1.0)])
        ok = await driver.write(Command("m1", "setpoint_degc", 26.0, "test"))
        after = await driver.read_once("m1")
        too_low = await driver.write(Command("m1", "setpoint_degc", 12.0, "test"))
        read_only = await driver.write(Command("m1", "temp_degc", 20.0, "test"))
        unknown = await driver.write(Command("m1", "nope", 1, "test"))
        boolean = await driver.write(Command("m1", "setpoint_degc", True, "test"))
        await driver.stop()
    assert ok.ok
    assert ok.old_value == pytest.approx(24.5)
    assert after.values["setpoint_degc"] == pytest.approx(26.0)
    assert not too_low.ok
    assert "outside" in too_low.reason
    assert not read_only.ok
    assert "not writable" in read_only.reason
    assert not unknown.ok
    assert not boolean.ok  # `true` is no temperature
    assert "takes a number" in boolean.reason


def test_nan_is_not_a_number_we_store() -> None:
    # Guard for the codec: a float32 NaN decodes to a float NaN that the checks reject.
    from drivers.modbus.codec import check, decode_raw, resolve

    spec = resolve(PROFILE, include=["voltage_v"])[0]
    raw = decode_raw(spec, list(f32_words(float("nan"))))
    assert isinstance(raw, float)
    assert math.isnan(raw)
    assert check(raw) == "nan"
