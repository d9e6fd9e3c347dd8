"""Devices behind one Modbus unit id: the indoor units of a CoolMasterNet, one device each at its
own base, read together in merged requests against a real pymodbus server.

Requests are counted where the device sees them: a relay in front of the server records every
Modbus TCP request on its way in.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from core.types import Command, Sample
from drivers.modbus.config import RtuOverTcpConnection, TcpConnection
from drivers.modbus.driver import (
    ModbusDevice,
    ModbusDriver,
    group_plan,
    poll_groups,
    poll_plans,
)
from drivers.modbus.poller import GroupPoller, member_key
from drivers.modbus.profile import Function, Hole, Profile
from tests.modbus_devices import coolmaster_image, dead_device, modbus_server

PROFILE_FILE = Path(__file__).resolve().parent.parent / "config/profiles/coolmaster_indoor.yaml"
COOLMASTER = Profile.model_validate(yaml.safe_load(PROFILE_FILE.read_text(encoding="utf-8")))
UNITS = 8  # VA 1..8: bases 16, 32, ... 128
READ_HOLDING = 3
REFUSED = "refused by the device: exception 2 (illegal_data_address) at holding register"


def hvac_image(*, missing: tuple[int, ...] = ()) -> dict[str, dict[int, int]]:
    """Indoor units VA 1..UNITS behind one unit id (none at the VAs in ``missing``): each VA's
    setpoint is 20 + VA °C, its mode VA % 3, on when VA is odd. The registers between units
    read 0xFFFF, as a CoolMasterNet answers a read across units."""
    holding: dict[int, int] = {}
    for va in range(1, UNITS + 1):
        if va in missing:
            continue
        image = coolmaster_image(20.0 + va, mode=va % 3, on=va % 2)["holding"]  # at VA 1
        holding.update({address + 16 * (va - 1): word for address, word in image.items()})
        holding.update({16 * va + offset: 0xFFFF for offset in range(11, 16)})
    return {"holding": holding}


def expected(va: int) -> dict[str, object]:
    return {
        "mode": va % 3,
        "fan_speed": 1,
        "setpoint_degc": pytest.approx(20.0 + va),
        "on_off": va % 2,
        "filter_sign": 0,
        "swing": 0,
        "room_temperature_degc": pytest.approx(25.0),
        "malfunction_code": 0,
        "lock_bits": 0,
    }


def indoor_units(
    port: int, *, poll: float = 1.0, timeout: float = 0.5, profile: Profile = COOLMASTER
) -> list[ModbusDevice]:
    return [
        ModbusDevice(
            f"ac-{va}",
            profile,
            TcpConnection(
                transport="tcp",
                host="127.0.0.1",
                port=port,
                unit=1,
                base=16 * va,
                timeout=timeout,
                retries=0,
            ),
            poll,
        )
        for va in range(1, UNITS + 1)
    ]


@dataclass
class Wire:
    """Modbus TCP requests as the device received them: (unit, function, address, count), the
    count being the value for a single-register write (function 6)."""

    requests: list[tuple[int, int, int, int]] = field(default_factory=list)

    def reads(self) -> list[tuple[int, int]]:
        return [(a, n) for _u, fc, a, n in self.requests if fc == READ_HOLDING]

    def writes(self) -> list[int]:
        return [a for _u, fc, a, _n in self.requests if fc in (6, 16)]


@contextlib.asynccontextmanager
async def recording(upstream: int) -> AsyncIterator[tuple[int, Wire]]:
    """A relay in front of a Modbus TCP server that records each request passing through."""
    wire = Wire()
    tasks: set[asyncio.Task[None]] = set()

    async def requests(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        buffer = b""
        with contextlib.suppress(ConnectionError, asyncio.CancelledError):
            while data := await src.read(4096):
                buffer += data
                while len(buffer) >= 7:
                    _tid, _proto, length, unit = struct.unpack_from(">HHHB", buffer)
                    if len(buffer) < 6 + length:
                        break
                    fc, address, count = struct.unpack_from(">BHH", buffer, 7)
                    wire.requests.append((unit, fc, address, count))
                    buffer = buffer[6 + length :]
                dst.write(data)
        dst.close()

    async def answers(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.CancelledError):
            while data := await src.read(4096):
                dst.write(data)
        dst.close()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", upstream)
        for task in (
            asyncio.create_task(requests(reader, up_writer)),
            asyncio.create_task(answers(up_reader, writer)),
        ):
            tasks.add(task)
            task.add_done_callback(tasks.discard)

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1], wire
    finally:
        server.close()
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def only_group(driver: ModbusDriver) -> GroupPoller:
    (group,) = driver.groups.values()
    return group


def test_indoor_units_behind_one_unit_id_are_planned_as_one() -> None:
    devices = indoor_units(502)  # never connected: planning only
    assert [[d.id for d in g] for g in poll_groups(devices)] == [[d.id for d in devices]]
    plan = group_plan(devices)
    assert [(r.function, r.start, r.count) for r in plan.requests] == [(Function.HOLDING, 16, 121)]
    names = {s.name for r in plan.requests for s in r.points}
    assert names == {member_key(i, p.name) for i in range(UNITS) for p in COOLMASTER.points}
    assert [m.device for m in plan.members] == [d.id for d in devices]
    # Each device keeps its own plan (for writes and reads alone) at its own base.
    assert [(r.start, r.count) for r in plan.members[2].requests] == [(48, 9)]


def test_a_hole_of_any_device_is_never_read_across() -> None:
    # Registers 9..15 of each unit declared as holes: the merged plan reads each unit alone.
    holes = [Hole(function=Function.HOLDING, start=9, end=15)]
    profile = COOLMASTER.model_copy(update={"holes": holes})
    plan = group_plan(indoor_units(502, profile=profile))
    assert [(r.start, r.count) for r in plan.requests] == [(16 * va, 9) for va in range(1, 9)]


def test_devices_with_another_period_unit_path_or_settings_are_polled_apart() -> None:
    devices = indoor_units(502)
    conn = devices[0].connection
    devices[5] = dataclasses.replace(devices[5], interval=2.0)
    devices[6] = dataclasses.replace(devices[6], connection=conn.model_copy(update={"unit": 2}))
    devices[7] = dataclasses.replace(
        devices[7], connection=devices[7].connection.model_copy(update={"timeout": 2.0})
    )
    other_port = dataclasses.replace(
        devices[4], connection=devices[4].connection.model_copy(update={"port": 503})
    )
    groups = poll_groups([*devices[:4], other_port, *devices[5:]])
    assert [[d.id for d in g] for g in groups] == [
        ["ac-1", "ac-2", "ac-3", "ac-4"],
        ["ac-5"],
        ["ac-6"],
        ["ac-7"],
        ["ac-8"],
    ]
    plans = poll_plans([*devices[:4], other_port, *devices[5:]])
    assert [len(p.requests) for p in plans] == [1, 1, 1, 1, 1]


async def test_a_poll_reads_every_unit_in_one_request_and_each_device_gets_its_values() -> None:
    async with modbus_server({1: hvac_image()}) as upstream, recording(upstream) as (port, wire):
        driver = ModbusDriver(indoor_units(port), lambda _s: None)
        group = only_group(driver)
        samples = await group.poll_once()
        await driver.stop()
    assert wire.reads() == [(16, 121)]
    assert [s.device for s in samples] == [f"ac-{va}" for va in range(1, UNITS + 1)]
    assert len({s.ts for s in samples}) == 1  # one poll
    for va, sample in enumerate(samples, start=1):
        assert sample.bad == {}, sample.device
        assert sample.values == expected(va), sample.device
    for poller in driver.pollers.values():
        assert (poller.stats.online, poller.stats.polls, poller.stats.requests) == (True, 1, 1)
    assert group.stats.requests == 1


async def test_the_running_driver_polls_the_group_and_emits_a_sample_per_device() -> None:
    samples: list[Sample] = []
    async with modbus_server({1: hvac_image()}) as upstream, recording(upstream) as (port, wire):
        driver = ModbusDriver(indoor_units(port, poll=0.1), samples.append)
        group = only_group(driver)
        driver.start()
        for _ in range(300):
            if len(samples) >= 3 * UNITS:
                break
            await asyncio.sleep(0.01)
        await driver.stop()
    assert len(samples) >= 3 * UNITS
    assert set(wire.reads()) == {(16, 121)}
    assert len(wire.reads()) == group.stats.requests
    by_poll: dict[int, list[str]] = {}
    for sample in samples:
        by_poll.setdefault(sample.ts, []).append(sample.device)
    ids = [f"ac-{va}" for va in range(1, UNITS + 1)]
    assert all(devices == ids for devices in by_poll.values())
    statuses = driver.statuses()
    assert [s.device for s in statuses] == ids
    assert all(s.online and s.count == group.stats.polls for s in statuses)


async def test_one_units_refused_registers_make_only_its_points_bad(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # VA 3 is not configured on the gateway: it refuses registers 48..63.
    async with (
        modbus_server({1: hvac_image(missing=(3,))}) as upstream,
        recording(upstream) as (port, wire),
    ):
        driver = ModbusDriver(indoor_units(port), lambda _s: None)
        group = only_group(driver)
        polls, reads = [], []
        for _ in range(3):
            before = len(wire.reads())
            polls.append(await group.poll_once())
            reads.append(wire.reads()[before:])
        await driver.stop()
    for samples in polls:
        for va, sample in enumerate(samples, start=1):
            if va == 3:
                assert sample.values == {}
                assert set(sample.bad) == {p.name for p in COOLMASTER.points}
                assert all(reason.startswith(REFUSED) for reason in sample.bad.values())
                assert sample.bad["mode"] == f"{REFUSED} 48"
            else:
                assert sample.bad == {}, sample.device
                assert sample.values == expected(va), sample.device
    # Learned after the first poll: the refused registers are no longer asked for, the other
    # units still in merged requests.
    assert reads[1] == reads[2]
    assert len(reads[1]) < UNITS - 1
    read = {a for start, count in reads[1] for a in range(start, start + count)}
    assert not read & set(range(48, 64))
    assert all(16 * va + offset in read for va in (1, 2, 4, 5, 6, 7, 8) for offset in range(9))
    unit3 = driver.pollers["ac-3"].stats
    assert unit3.online is True  # it answered, with exceptions
    assert set(unit3.refused) == {f"holding register {48 + offset}" for offset in range(9)}
    assert unit3.errors.counts == {"ac-3:refused": 9}
    for device, poller in driver.pollers.items():
        if device != "ac-3":
            assert poller.stats.online is True
            assert poller.stats.refused == {}, device
            assert poller.stats.errors.total() == 0, device
    logged = [r.getMessage() for r in caplog.records if "refuses" in r.getMessage()]
    assert logged
    assert all(message.startswith("ac-3: ") for message in logged), logged


async def test_a_dead_gateway_makes_every_device_offline() -> None:
    async with dead_device() as port:
        driver = ModbusDriver(indoor_units(port, timeout=0.2), lambda _s: None)
        group = only_group(driver)
        samples = await group.poll_once()
        again = await group.poll_once()
        await driver.stop()
    for sample in (*samples, *again):
        assert sample.values == {}
        assert set(sample.bad.values()) == {"offline"}
        assert set(sample.bad) == {p.name for p in COOLMASTER.points}
    assert group.stats.requests == 2  # one request per poll for all eight devices
    for status in driver.statuses():
        assert status.online is False
        assert status.count == 2
        assert status.last_error, status


async def test_writes_go_to_each_units_own_registers() -> None:
    async with modbus_server({1: hvac_image()}) as upstream, recording(upstream) as (port, wire):
        driver = ModbusDriver(indoor_units(port), lambda _s: None)
        group = only_group(driver)
        setpoint = await driver.write(Command("ac-3", "setpoint_degc", 26.0, "test"))
        mode = await driver.write(Command("ac-8", "mode", 2, "test"))
        samples = await group.poll_once()
        await driver.stop()
    assert setpoint.ok, setpoint
    assert setpoint.old_value == pytest.approx(23.0)
    assert mode.ok, mode
    assert mode.old_value == 8 % 3
    assert wire.writes() == [16 * 3 + 2, 16 * 8]
    values = {s.device: s.values for s in samples}
    assert values["ac-3"] == expected(3) | {"setpoint_degc": pytest.approx(26.0)}
    assert values["ac-8"] == expected(8) | {"mode": 2}
    for va in (1, 2, 4, 5, 6, 7):
        assert values[f"ac-{va}"] == expected(va)


async def test_units_on_a_serial_line_behind_a_gateway_are_read_together() -> None:
    async with modbus_server({1: hvac_image()}, framer="rtu") as port:
        devices = [
            dataclasses.replace(
                d,
                connection=RtuOverTcpConnection(
                    transport="rtu_over_tcp",
                    host="127.0.0.1",
                    port=port,
                    unit=1,
                    base=d.connection.base,
                    timeout=0.5,
                    retries=0,
                    baudrate=9600,
                ),
            )
            for d in indoor_units(port)
        ]
        driver = ModbusDriver(devices, lambda _s: None)
        group = only_group(driver)
        # At 9600 baud the 7 unused registers between units cost less than a request.
        assert [(r.start, r.count) for r in group.plan.requests] == [(16, 121)]
        samples = await group.poll_once()
        alone = await driver.read_once("ac-5")  # `guanjia read`: the device on its own
        await driver.stop()
    assert group.stats.requests == 1
    for va, sample in enumerate(samples, start=1):
        assert sample.bad == {}, sample.device
        assert sample.values == expected(va), sample.device
    assert alone.values == expected(5)
    assert driver.pollers["ac-5"].stats.polls == 2  # the group's poll and its own
