"""Modbus RTU on a serial line: a pymodbus serial server on one end of a socat pty pair,
two slaves on the line, the gateway's serial client on the other end."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pymodbus.framer import FramerType
from pymodbus.server import ModbusSerialServer

from core.types import Sample
from drivers.modbus.config import RtuConnection
from drivers.modbus.driver import ModbusDevice, ModbusDriver
from tests.modbus_devices import PROFILE, meter_image, sim_device


@contextlib.asynccontextmanager
async def pty_pair(tmp_path: Path) -> AsyncIterator[tuple[str, str]]:
    a, b = tmp_path / "ttyA", tmp_path / "ttyB"
    proc = subprocess.Popen(
        ["socat", "-d", f"pty,raw,echo=0,link={a}", f"pty,raw,echo=0,link={b}"],
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 5
    while not (a.exists() and b.exists()):
        assert proc.poll() is None, "socat exited"
        assert time.monotonic() < deadline, "socat did not create the pty pair"
        await asyncio.sleep(0.02)
    try:
        yield str(a), str(b)
    finally:
        proc.terminate()
        proc.wait(5)


async def test_two_slaves_on_one_serial_line(tmp_path: Path) -> None:
    async with pty_pair(tmp_path) as (device_end, gateway_end):
        server = ModbusSerialServer(
            [sim_device(1, meter_image(voltage=231.0)), sim_device(7, meter_image(voltage=229.0))],
            framer=FramerType.RTU,
            port=device_end,
            baudrate=19200,
        )
        await server.serve_forever(background=True)
        try:
            conns = [
                RtuConnection(
                    transport="rtu",
                    port=gateway_end,
                    baudrate=19200,
                    unit=u,
                    timeout=1.0,
                    retries=0,
                )
                for u in (1, 7)
            ]
            samples: list[Sample] = []
            driver = ModbusDriver(
                [ModbusDevice(f"u{c.unit}", PROFILE, c, 1.0) for c in conns], samples.append
            )
            assert len(driver.links) == 1  # one owner serialises the line
            results = await asyncio.gather(*(driver.read_once(d) for d in ("u1", "u7") * 2))
            await driver.stop()
        finally:
            await server.shutdown()
    for sample in results:
        assert sample.bad == {}, sample
        expected = 231.0 if sample.device == "u1" else 229.0
        assert sample.values["voltage_v"] == pytest.approx(expected)


async def test_a_serial_port_that_does_not_exist_is_offline_with_the_fix(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    port = str(tmp_path / "ttyUSB9")  # no such device
    conn = RtuConnection(transport="rtu", port=port, unit=1, timeout=0.5, retries=0)
    driver = ModbusDriver([ModbusDevice("meter", PROFILE, conn, 1.0)], lambda _s: None)
    samples = [await driver.read_once("meter") for _ in range(3)]
    await driver.stop()
    stats = driver.pollers["meter"].stats
    assert all(not s.values and set(s.bad.values()) == {"offline"} for s in samples)
    assert stats.online is False
    assert f"serial port {port} does not exist" in stats.last_error
    assert "check the device path" in stats.last_error
    assert stats.errors.counts == {"meter:serial_port_missing": 3}
    logged = [r.getMessage() for r in caplog.records if "does not exist" in r.getMessage()]
    # Once by the counter (with the fix), once as the device goes offline: never per poll.
    assert len(logged) == 2, logged


def test_a_serial_device_is_planned_without_an_event_loop() -> None:
    # `guanjia check` and other synchronous callers build the driver before any loop runs.
    conn = RtuConnection(transport="rtu", port="/dev/ttyUSB0", unit=1)
    driver = ModbusDriver([ModbusDevice("meter", PROFILE, conn, 1.0)], lambda _s: None)
    assert driver.pollers["meter"].plan.requests
