"""The polling schedule against real pymodbus servers: phases spread over the period, a device
slower than its period read back to back, an offline device probed without retries.

No wall-clock thresholds: counts are compared with the device's own answer time, and orders
with orders.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from collections.abc import AsyncIterator

from core.types import Sample
from drivers.modbus.config import RtuOverTcpConnection, TcpConnection
from drivers.modbus.driver import ModbusDevice, ModbusDriver, device_plan, poll_phases
from drivers.modbus.link import Link
from drivers.modbus.poller import DevicePoller
from drivers.modbus.profile import Profile
from tests.modbus_devices import dead_device, modbus_server

PROFILE = Profile.model_validate(
    {
        "name": "schedule_meter",
        "kind": "meter",
        "defaults": {"function": "holding", "type": "uint16"},
        "points": [{"name": f"value_{i}", "address": i} for i in range(4)],
    }
)
IMAGE = {"holding": {i: 100 + i for i in range(4)}}


def _tcp(port: int, timeout: float = 1.0, retries: int = 0, unit: int = 1) -> TcpConnection:
    return TcpConnection(
        transport="tcp", host="127.0.0.1", port=port, unit=unit, timeout=timeout, retries=retries
    )


@contextlib.asynccontextmanager
async def relay(
    upstream: int, *, delay: float = 0.0, drop_unit: int | None = None
) -> AsyncIterator[int]:
    """A TCP relay in front of a device: each request reaches it ``delay`` s late (a slow
    device), and RTU requests for ``drop_unit`` never reach it (a dead unit behind a
    transparent gateway). Yields the relay's port."""
    tasks: set[asyncio.Task[None]] = set()

    async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, late: float) -> None:
        loop = asyncio.get_running_loop()
        with contextlib.suppress(ConnectionError, asyncio.CancelledError):
            while data := await src.read(4096):
                if drop_unit is not None and data[0] == drop_unit:
                    continue
                if late > 0:
                    loop.call_later(late, _write, dst, data)
                else:
                    dst.write(data)
        dst.close()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", upstream)
        for task in (
            asyncio.create_task(pipe(reader, up_writer, delay)),
            asyncio.create_task(pipe(up_reader, writer, 0.0)),
        ):
            tasks.add(task)
            task.add_done_callback(tasks.discard)

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _write(writer: asyncio.StreamWriter, data: bytes) -> None:
    if not writer.is_closing():
        writer.write(data)


def test_devices_that_share_a_period_are_spread_evenly_over_it() -> None:
    intervals = {f"d{i:03d}": 1.0 for i in range(200)} | {"slow_a": 10.0, "slow_b": 10.0}
    phases = poll_phases(intervals)
    assert [phases[f"d{i:03d}"] for i in range(200)] == [i / 200 for i in range(200)]
    assert (phases["slow_a"], phases["slow_b"]) == (0.0, 5.0)


async def test_first_polls_follow_the_phases() -> None:
    interval, count = 0.8, 8
    first: dict[str, int] = {}

    def emit(sample: Sample) -> None:
        first.setdefault(sample.device, sample.ts)  # ts: when the poll started

    # One unit each: devices behind one unit would be polled together.
    async with modbus_server(dict.fromkeys(range(1, count + 1), IMAGE)) as port:
        devices = [
            ModbusDevice(f"m{i}", PROFILE, _tcp(port, unit=i + 1), interval) for i in range(count)
        ]
        driver = ModbusDriver(devices, emit)
        assert not driver.groups
        driver.start()
        for _ in range(400):
            if len(first) == count:
                break
            await asyncio.sleep(0.01)
        await driver.stop()
    starts = [first[f"m{i}"] for i in range(count)]
    # One after the other in the devices' order (a random phase would shuffle them), and
    # spread over the period rather than bunched at its start.
    assert starts == sorted(set(starts)), starts
    spread_s = (starts[-1] - starts[0]) / 1e9
    assert spread_s >= 0.5 * interval * (count - 1) / count, spread_s


async def test_devices_read_together_take_one_slot_of_the_period() -> None:
    interval = 0.8
    first: dict[str, int] = {}

    def emit(sample: Sample) -> None:
        first.setdefault(sample.device, sample.ts)  # ts: when the poll started

    # Units 1 and 2 each with two devices (bases 0 and 4: read together), unit 3 with one.
    image = {"holding": {i: 100 + i for i in range(8)}}
    async with modbus_server({1: image, 2: image, 3: image}) as port:
        devices = [
            ModbusDevice(
                f"u{unit}_{base}",
                PROFILE,
                _tcp(port, unit=unit).model_copy(update={"base": base}),
                interval,
            )
            for unit, base in ((1, 0), (1, 4), (2, 0), (2, 4), (3, 0))
        ]
        driver = ModbusDriver(devices, emit)
        assert [[p.plan.device for p in g.members] for g in driver.groups.values()] == [
            ["u1_0", "u1_4"],
            ["u2_0", "u2_4"],
        ]
        driver.start()
        for _ in range(400):
            if len(first) == len(devices):
                break
            await asyncio.sleep(0.01)
        await driver.stop()
    # One poll for the devices of a group; the two groups and the device alone spread over
    # the period in the devices' order, three slots rather than five.
    assert first["u1_0"] == first["u1_4"] < first["u2_0"] == first["u2_4"] < first["u3_0"]


async def test_a_device_slower_than_its_period_is_polled_back_to_back() -> None:
    polls: list[tuple[float, float]] = []  # (when emitted, how long that poll took)
    async with modbus_server({1: IMAGE}) as upstream, relay(upstream, delay=0.025) as port:
        driver = ModbusDriver(
            [ModbusDevice("slow", PROFILE, _tcp(port), 0.02)],
            lambda _s: polls.append((time.monotonic(), poller.stats.last_poll_s)),
        )
        poller = driver.pollers["slow"]
        driver.start()
        await asyncio.sleep(1.5)
        await driver.stop()
    window = polls[-1][0] - polls[0][0]
    reads = len(polls) - 1
    answer = statistics.median(d for _, d in polls)
    assert answer > 0.02  # the device is slower than its period
    # Every other slot would give window / 0.04 s; back to back gives window / answer.
    assert reads >= 0.8 * window / answer, (reads, window, answer)
    assert poller.stats.overruns >= reads // 2


async def test_an_offline_device_is_probed_once_not_retried() -> None:
    async with dead_device() as port:
        device = ModbusDevice("dead", PROFILE, _tcp(port, timeout=0.1, retries=2), 1.0)
        link = Link.for_connection(device.connection, 0.1)
        poller = DevicePoller(device_plan(device), link, lambda _s: None)
        await poller.poll_once()
        assert (poller.stats.online, poller.stats.requests) == (False, 3)  # retried while new
        await poller.poll_once()
        await poller.poll_once()
        link.close()
    assert poller.stats.requests == 5  # then one request per probe


async def test_a_dead_unit_on_a_shared_line_costs_one_timeout_per_probe() -> None:
    interval = 0.1
    samples: list[Sample] = []
    async with (
        modbus_server({1: IMAGE, 2: IMAGE}, framer="rtu") as upstream,
        relay(upstream, drop_unit=2) as port,  # unit 2 is dead behind the gateway
    ):
        devices = [
            ModbusDevice(
                f"u{unit}",
                PROFILE,
                RtuOverTcpConnection(
                    transport="rtu_over_tcp",
                    host="127.0.0.1",
                    port=port,
                    unit=unit,
                    timeout=0.2,
                    retries=1,
                ),
                interval,
            )
            for unit in (1, 2)
        ]
        driver = ModbusDriver(devices, samples.append)
        assert len(driver.links) == 1
        driver.start()
        await asyncio.sleep(2.0)
        await driver.stop()
    dead = driver.pollers["u2"].stats
    assert dead.online is False
    # Backed off, and only the first poll (while the unit was not yet known dead) retried.
    assert 2 <= dead.polls <= 8, dead.polls
    assert dead.requests <= dead.polls + 1, (dead.requests, dead.polls)
    # The healthy unit kept being read between the probes.
    assert sum(1 for s in samples if s.device == "u1" and s.values) > dead.polls
