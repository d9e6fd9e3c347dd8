"""One owner per physical path: a TCP endpoint, a serial line or an RTU-over-TCP gateway.

Devices behind one path share its owner, which serialises their requests: an RS-485 line can
carry only one conversation at a time, and most TCP gateways in front of such lines misbehave
with concurrent requests. Devices on different paths never wait for each other.

A path may accept only so many writes a second (a CoolMasterNet or VRF gateway relays each
write onto the slow indoor-unit bus and drops or delays what comes faster): its owner spaces
the writes (`WritePacer`). Reads are not limited, and a write waiting for its slot holds no
lock the reads need: the polls go on meanwhile, and the write then queues for the line like
any request (first come, first served: neither starves the other).

A device's write is a few requests: read the point (the old value; the other bits of a field's
register), write it, read it back. These take the path's write turn (`Link.write_turn`), one
device's write after another in the order they came: the next write's first read goes out while
the path waits for its next write slot, not in a crowd of every pending write's reads queued
ahead of each write and each read-back.

A line that another driver's devices use too (DL/T 645 meters on the same RS-485 bus) belongs
to the site's line owner (drivers/lines.py): its link's requests take turns there with the
other driver's (`Link.use_line`, drivers/modbus/line_client.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Protocol, TypeVar

from drivers.lines import PathKey, SerialSettings, SharedLine, serial_line_name
from drivers.modbus.config import RtuConnection, RtuOverTcpConnection, TcpConnection
from drivers.modbus.errors import ModbusConnectionError, ModbusError, ProblemSink
from drivers.modbus.line_client import SharedLineClient
from drivers.modbus.serial_client import SerialClient
from drivers.modbus.stream_client import StreamClient


class Client(Protocol):
    """A connection on one path. ``problems``, where a read takes it, is told of trouble on the
    line that failed no request (junk bytes, an answer to another transaction): counted by the
    device whose request was on the line, since nothing is raised for them."""

    @property
    def connected(self) -> bool: ...
    async def connect(self) -> None: ...
    def close(self) -> None: ...
    async def read(
        self,
        unit: int,
        function: int,
        address: int,
        count: int,
        timeout: float,
        problems: ProblemSink | None = None,
    ) -> list[int] | list[bool]: ...
    async def read_raw(
        self,
        unit: int,
        function: int,
        address: int,
        count: int,
        timeout: float,
        problems: ProblemSink | None = None,
    ) -> bytes: ...
    async def write_registers(
        self, unit: int, address: int, values: list[int], timeout: float
    ) -> None: ...
    async def write_coil(self, unit: int, address: int, value: bool, timeout: float) -> None: ...


LinkKey = tuple[str, str]
T = TypeVar("T")


def link_key(conn: TcpConnection | RtuOverTcpConnection | RtuConnection) -> LinkKey:
    if isinstance(conn, RtuConnection):
        return ("rtu", conn.port)
    return (conn.transport, f"{conn.host}:{conn.port}")


def line_path(conn: TcpConnection | RtuOverTcpConnection | RtuConnection) -> PathKey | None:
    """The physical line a device hangs on, as every driver names it (drivers/lines.py); None
    for Modbus TCP, whose endpoint frames its own requests and is no bare line."""
    if isinstance(conn, RtuConnection):
        return ("serial", conn.port)
    if isinstance(conn, RtuOverTcpConnection):
        return ("tcp", f"{conn.host}:{conn.port}")
    return None


def ownership(
    conn: TcpConnection | RtuOverTcpConnection | RtuConnection,
) -> list[tuple[str, str]]:
    """What the gateway polling this device must own alone, (kind, name): its serial line
    (a local port, or the serial server in front of one), or the Modbus TCP device itself.
    `guanjia check` on several files of one split site refuses two owners (gateway/fleet.py)."""
    path = line_path(conn)
    if path is not None:
        return [("serial line", serial_line_name(path))]
    assert isinstance(conn, TcpConnection)
    return [
        ("Modbus TCP device", f"Modbus TCP device {conn.host.lower()}:{conn.port} unit {conn.unit}")
    ]


def line_settings(
    conn: TcpConnection | RtuOverTcpConnection | RtuConnection,
) -> SerialSettings | None:
    """What a local port is set to for the device's turns on a shared line; None behind a
    serial server, whose port has the one setting of its configuration."""
    if isinstance(conn, RtuConnection):
        return SerialSettings(conn.baudrate, conn.bytesize, conn.parity, conn.stopbits)
    return None


class WritePacer:
    """At most ``max_writes_per_s`` writes a second on one path: each write request goes out
    at least 1/max_writes_per_s after the one before, in the order the writes came.

    Spacing, not a token bucket: a gateway that "accepts 5 writes a second" relays one write
    every 200 ms to its indoor-unit bus; a burst (what a bucket lets through after a quiet
    spell) is what such a gateway drops or answers late. A write that fails still used its
    slot: the device may have taken it."""

    def __init__(self, max_writes_per_s: float) -> None:
        if not max_writes_per_s > 0:
            raise ValueError("max_writes_per_s must be above 0")
        self.spacing = 1.0 / max_writes_per_s
        self.turn = asyncio.Lock()  # writes in the order they came
        self.next_at = -math.inf  # time.monotonic() before which no write goes out
        self.waits = 0  # writes that waited for their slot
        self.waited_s = 0.0  # how long, together
        self.closest_s = math.inf  # the shortest time between two writes sent, for proof

    async def slot(self) -> None:
        """Wait (holding ``turn``) until the next write may go out."""
        delay = self.next_at - time.monotonic()
        if delay <= 0:
            return
        self.waits += 1
        self.waited_s += delay
        while delay > 0:  # a timer may fire a hair early
            await asyncio.sleep(delay)
            delay = self.next_at - time.monotonic()

    def sent(self) -> None:
        """A write goes out now: the next one waits a spacing from here."""
        now = time.monotonic()
        self.closest_s = min(self.closest_s, now - (self.next_at - self.spacing))
        self.next_at = now + self.spacing


class Link:
    """Serialises requests on one path, paces its writes and reconnects it after a failure."""

    def __init__(self, key: LinkKey, client: Client, max_writes_per_s: float | None = None) -> None:
        self.key = key
        self.client = client
        self._lock = asyncio.Lock()
        self.pacer = WritePacer(max_writes_per_s) if max_writes_per_s is not None else None
        self.writes = 0  # write requests sent on the path
        self._write_turn = asyncio.Lock()

    @classmethod
    def for_connection(
        cls,
        conn: TcpConnection | RtuOverTcpConnection | RtuConnection,
        line_timeout: float,
        max_writes_per_s: float | None = None,
    ) -> Link:
        """``max_writes_per_s``: the path's limit (the connection's when not given)."""
        client: Client
        if isinstance(conn, RtuConnection):
            client = SerialClient(
                conn.port, conn.baudrate, conn.bytesize, conn.parity, conn.stopbits, line_timeout
            )
        elif isinstance(conn, RtuOverTcpConnection):
            client = StreamClient(conn.host, conn.port, "rtu", connect_timeout=line_timeout)
        else:
            client = StreamClient(conn.host, conn.port, "tcp", connect_timeout=line_timeout)
        limit = max_writes_per_s if max_writes_per_s is not None else conn.max_writes_per_s
        return cls(link_key(conn), client, limit)

    async def _exclusive(self, call: Callable[[], Awaitable[T]]) -> T:
        """One request at a time on the path; a broken connection is reopened next time."""
        async with self._lock:
            try:
                return await call()
            except ModbusConnectionError:
                self.client.close()
                raise

    async def read(
        self,
        unit: int,
        function: int,
        address: int,
        count: int,
        timeout: float,
        problems: ProblemSink | None = None,
    ) -> list[int] | list[bool]:
        """``problems`` hears of trouble on the line that failed no request (see Client)."""
        # _exclusive, inlined in both reads: every poll's requests come here, and a closure,
        # a coroutine and `async with`'s bound __aexit__ would stay alive (and tracked by the
        # garbage collector) for as long as the device takes to answer.
        await self._lock.acquire()
        try:
            return await self.client.read(unit, function, address, count, timeout, problems)
        except ModbusConnectionError:
            self.client.close()
            raise
        finally:
            self._lock.release()

    async def read_raw(
        self,
        unit: int,
        function: int,
        address: int,
        count: int,
        timeout: float,
        problems: ProblemSink | None = None,
    ) -> bytes:
        await self._lock.acquire()
        try:
            return await self.client.read_raw(unit, function, address, count, timeout, problems)
        except ModbusConnectionError:
            self.client.close()
            raise
        finally:
            self._lock.release()

    @contextlib.asynccontextmanager
    async def write_turn(self) -> AsyncIterator[None]:
        """The path's devices' writes one at a time, in the order they came: what a write
        reads before and after it belongs to its turn. Holds nothing a poll needs."""
        async with self._write_turn:
            yield

    async def _write(self, call: Callable[[], Awaitable[None]]) -> None:
        """A write, in its turn at the path's write rate: the wait for the slot holds no
        lock the polls need; then the write queues for the line behind the requests already
        waiting (the line's lock is first come, first served: neither starves the other)."""
        pacer = self.pacer
        if pacer is None:
            self.writes += 1
            await self._exclusive(call)
            return
        async with pacer.turn:
            await pacer.slot()
            async with self._lock:
                pacer.sent()
                self.writes += 1
                try:
                    await call()
                except ModbusConnectionError:
                    self.client.close()
                    raise

    async def write_registers(
        self, unit: int, address: int, values: list[int], timeout: float
    ) -> None:
        await self._write(lambda: self.client.write_registers(unit, address, values, timeout))

    async def write_coil(self, unit: int, address: int, value: bool, timeout: float) -> None:
        await self._write(lambda: self.client.write_coil(unit, address, value, timeout))

    def use_line(self, line: SharedLine, settings: SerialSettings | None) -> None:
        """Take turns on a line another driver shares, instead of a connection of its own
        (``settings``: None behind a serial server, whose port has one setting)."""
        self.client.close()
        self.client = SharedLineClient(line, settings)

    def close(self) -> None:
        self.client.close()


__all__ = [
    "Client",
    "Link",
    "LinkKey",
    "ModbusError",
    "WritePacer",
    "line_path",
    "line_settings",
    "link_key",
]
