"""Writes at a path's rate, each confirmed by reading it back (drivers/modbus/link.py's
WritePacer, DevicePoller.write), against the simulator's CoolMasterNet indoor units on loopback.

The spacing is read from the server's side: every simulated unit records the (simulated, here
real-time) moment each write reached it. What is asserted is the limiter's property (no two
writes on one path closer than its spacing, less a tolerance for the loop's jitter) and the
order and count of the writes, not how fast this machine is.
"""

from __future__ import annotations

import asyncio
import itertools
import socket
import textwrap
import time
from datetime import datetime
from pathlib import Path

import pytest

from core.types import Command, CommandResult, Value
from drivers.modbus.config import TcpConnection
from drivers.modbus.driver import ModbusDevice, ModbusDriver
from drivers.modbus.profile import Profile
from gateway.config_errors import ConfigError
from gateway.config_load import BUILTIN_PROFILES, load_profile, load_site
from simulator.clock import SimClock
from simulator.models import MODE_COOL, AcUnit
from simulator.server import RunningServer, SimulatedDevice, serve

pytestmark = pytest.mark.timeout(60)

TOLERANCE_S = 0.02  # the server runs on the test's own event loop: its jitter, not ours


class StubbornUnit(AcUnit):
    """An indoor unit that answers a setpoint write and keeps its old setpoint (a unit
    locked at its remote controller, a gateway that lost the write on the VRF bus)."""

    def on_write(self, point: str, value: Value) -> None:
        if point != "setpoint_degc":
            super().on_write(point, value)


def _profile() -> Profile:
    return load_profile(BUILTIN_PROFILES / "coolmaster_indoor.yaml")


def _units(count: int, clock: SimClock, cls: type[AcUnit] = AcUnit) -> list[AcUnit]:
    cm = _profile()
    return [cls(cm, clock, on=True, mode=MODE_COOL, setpoint=26.0, seed=i) for i in range(count)]


async def _serve(units: list[AcUnit]) -> RunningServer:
    """The units behind one CoolMasterNet (unit id 1, VA 1.. at base 16 × VA)."""
    cm = _profile()
    server = await serve(
        [SimulatedDevice(cm, u, unit=1, base=16 * (i + 1)) for i, u in enumerate(units)]
    )
    with socket.create_connection((server.host, server.port), timeout=2):
        pass  # it listens
    return server


def _devices(
    prefix: str, server: RunningServer, count: int, rate: float | None, poll: float = 0.1
) -> list[ModbusDevice]:
    cm = _profile()
    return [
        ModbusDevice(
            f"{prefix}-{i}",
            cm,
            TcpConnection(
                transport="tcp",
                host=server.host,
                port=server.port,
                unit=1,
                base=16 * (i + 1),
                max_writes_per_s=rate,
            ),
            poll,
        )
        for i in range(count)
    ]


def _write_times(units: list[AcUnit]) -> list[tuple[datetime, int, Value]]:
    """Every setpoint write the units received: (when, which unit, value), in time order."""
    return sorted(
        (ts, index, value)
        for index, unit in enumerate(units)
        for ts, point, value in unit.writes
        if point == "setpoint_degc"
    )


def _gaps(times: list[tuple[datetime, int, Value]]) -> list[float]:
    return [(b[0] - a[0]).total_seconds() for a, b in itertools.pairwise(times)]


async def _set_all(driver: ModbusDriver, ids: list[str], value: float) -> list[CommandResult]:
    return await asyncio.gather(
        *(driver.write(Command(d, "setpoint_degc", value, "test")) for d in ids)
    )


def test_writes_on_one_path_keep_its_spacing_in_order_while_polls_go_on() -> None:
    async def body() -> None:
        clock = SimClock()
        units = _units(6, clock)
        async with await _serve(units) as server:
            devices = _devices("ac", server, 6, rate=10.0)  # one write per 100 ms
            driver = ModbusDriver(devices, lambda s: None)
            driver.start()
            try:
                await asyncio.sleep(0.3)  # polling
                (group,) = driver.groups.values()
                polls_before = group.stats.polls
                started = time.monotonic()
                results = await _set_all(driver, [d.id for d in devices], 27.5)
                took = time.monotonic() - started
                polls_during = group.stats.polls - polls_before
            finally:
                await driver.stop()
        assert [r.ok for r in results] == [True] * 6, [r.reason for r in results]
        assert [r.old_value for r in results] == [26.0] * 6
        assert [u.setpoint for u in units] == [27.5] * 6
        times = _write_times(units)
        # Each unit written once, in the order the commands came.
        assert [index for _ts, index, _v in times] == list(range(6))
        gaps = _gaps(times)
        assert min(gaps) >= 0.1 - TOLERANCE_S, gaps
        assert took >= 5 * 0.1 - TOLERANCE_S
        # The limiter's own account: five writes waited for their slot, about 0.1 s each.
        (link,) = driver.links.values()
        assert link.pacer is not None
        assert link.pacer.waits == 5
        assert link.pacer.closest_s >= 0.1
        assert link.writes == 6
        health = driver.health()
        assert health["modbus_writes"] == 6
        assert health["modbus_writes_confirmed"] == 6
        assert health["modbus_writes_rejected_by_readback"] == 0
        assert health["modbus_write_rate_waits"] == 5
        assert 300 <= health["modbus_write_rate_wait_ms"] <= 600
        # Waiting for a write slot holds nothing the polls need: they went on at their period.
        assert polls_during >= 2, polls_during

    asyncio.run(body())


def test_paths_do_not_wait_for_each_other() -> None:
    async def body() -> None:
        clock = SimClock()
        units_a, units_b = _units(3, clock), _units(3, clock)
        async with await _serve(units_a) as server_a, await _serve(units_b) as server_b:
            a = _devices("a", server_a, 3, rate=5.0, poll=1.0)
            b = _devices("b", server_b, 3, rate=5.0, poll=1.0)
            driver = ModbusDriver([*a, *b], lambda s: None)  # not started: writes alone
            try:
                started = time.monotonic()
                results = await _set_all(driver, [d.id for d in [*a, *b]], 28.0)
                took = time.monotonic() - started
            finally:
                await driver.stop()
        assert all(r.ok for r in results), [r.reason for r in results]
        times_a, times_b = _write_times(units_a), _write_times(units_b)
        for times in (times_a, times_b):
            assert [index for _ts, index, _v in times] == [0, 1, 2]
            assert min(_gaps(times)) >= 0.2 - TOLERANCE_S
        # Both paths' first writes went out at once, and the whole took one path's time
        # (two spacings), not two paths' (five).
        assert abs((times_a[0][0] - times_b[0][0]).total_seconds()) < 0.1
        assert 0.4 - TOLERANCE_S <= took < 0.8, took

    asyncio.run(body())


def test_an_unlimited_path_does_not_wait() -> None:
    async def body() -> None:
        units = _units(4, SimClock())
        async with await _serve(units) as server:
            devices = _devices("ac", server, 4, rate=None, poll=1.0)
            driver = ModbusDriver(devices, lambda s: None)
            try:
                results = await _set_all(driver, [d.id for d in devices], 25.0)
            finally:
                await driver.stop()
        assert all(r.ok for r in results)
        (link,) = driver.links.values()
        assert link.pacer is None
        assert link.writes == 4
        assert driver.health()["modbus_write_rate_waits"] == 0

    asyncio.run(body())


def test_a_unit_that_keeps_its_value_fails_the_command_with_what_it_reads_back() -> None:
    async def body() -> None:
        clock = SimClock()
        units = [*_units(1, clock), *_units(1, clock, StubbornUnit)]
        async with await _serve(units) as server:
            devices = _devices("ac", server, 2, rate=5.0, poll=1.0)
            driver = ModbusDriver(devices, lambda s: None)
            try:
                good, stubborn = await _set_all(driver, ["ac-0", "ac-1"], 27.0)
            finally:
                await driver.stop()
        assert good.ok
        assert good.outcome == "accepted"
        assert stubborn.outcome == "failed"
        assert stubborn.old_value == 26.0
        assert stubborn.reason == "the device reads setpoint_degc = 26.0 back after writing 27.0"
        assert units[1].setpoint == 26.0
        assert units[0].setpoint == 27.0
        stats = driver.pollers["ac-1"].stats
        assert stats.writes == 1
        assert stats.writes_confirmed == 0
        assert stats.writes_rejected_by_readback == 1
        health = driver.health()
        assert health["modbus_writes"] == 2
        assert health["modbus_writes_confirmed"] == 1
        assert health["modbus_writes_rejected_by_readback"] == 1

    asyncio.run(body())


SITE = """\
site: {name: t, id: t}
devices:
  - {id: ac-1, profile: coolmaster_indoor, modbus: {transport: tcp, host: 10.0.8.20, unit: 1, base: 16, max_writes_per_s: 5}}
  - {id: ac-2, profile: coolmaster_indoor, modbus: {transport: tcp, host: 10.0.8.20, unit: 1, base: 32, max_writes_per_s: %s}}
  - {id: ac-3, profile: coolmaster_indoor, modbus: {transport: tcp, host: 10.0.8.21, unit: 1, base: 16, max_writes_per_s: 2}}
"""  # noqa: E501


def test_check_refuses_two_write_rates_on_one_path(tmp_path: Path) -> None:
    path = tmp_path / "site.yaml"
    path.write_text(textwrap.dedent(SITE % "5"), encoding="utf-8")
    load_site(path)  # the same rate on one path, another on another path: fine
    path.write_text(textwrap.dedent(SITE % "4"), encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_site(path)
    problems = [str(p) for p in info.value.problems]
    assert len(problems) == 1
    assert problems[0].endswith(
        "site.yaml:4: devices[1].modbus.max_writes_per_s: 10.0.8.20:502 is paced at "
        "5 writes/s by devices[0], not 4 writes/s: one owner paces a path's writes; give "
        "every device on it the same max_writes_per_s"
    )
