"""One owner per physical path: a TCP endpoint, a serial line or an RTU-over-TCP gateway.

Devices behind one path share its owner, which serialises their requests: an RS-485 line can
carry only one conversation at a time, and most TCP gateways in front of such lines misbehave
with concurrent requests. Devices on different paths never wait for each other.

A line that another driver's devices use too (DL/T 645 meters on the same RS-485 bus) belongs
to the site's line owner (drivers/lines.py): its link's requests take turns there with the
other driver's (`Link.use_line`, drivers/modbus/line_client.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
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


class Link:
    """Serialises requests on one path and reconnects it after a failure."""

    def __init__(self, key: LinkKey, client: Client) -> None:
        self.key = key
        self.client = client
        self._lock = asyncio.Lock()

    @classmethod
    def for_connection(
        cls,
        conn: TcpConnection | RtuOverTcpConnection | RtuConnection,
        line_timeout: float,
    ) -> Link:
        client: Client
        if isinstance(conn, RtuConnection):
            client = SerialClient(
                conn.port, conn.baudrate, conn.bytesize, conn.parity, conn.stopbits, line_timeout
            )
        elif isinstance(conn, RtuOverTcpConnection):
            client = StreamClient(conn.host, conn.port, "rtu", connect_timeout=line_timeout)
        else:
            client = StreamClient(conn.host, conn.port, "tcp", connect_timeout=line_timeout)
        return cls(link_key(conn), client)

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

    async def write_registers(
        self, unit: int, address: int, values: list[int], timeout: float
    ) -> None:
        await self._exclusive(lambda: self.client.write_registers(unit, address, values, timeout))

    async def write_coil(self, unit: int, address: int, value: bool, timeout: float) -> None:
        await self._exclusive(lambda: self.client.write_coil(unit, address, value, timeout))

    def use_line(self, line: SharedLine, settings: SerialSettings | None) -> None:
        """Take turns on a line another driver shares, instead of a connection of its own
        (``settings``: None behind a serial server, whose port has one setting)."""
        self.client.close()
        self.client = SharedLineClient(line, settings)

    def close(self) -> None:
        self.client.close()


__all__ = ["Client", "Link", "LinkKey", "ModbusError", "line_path", "line_settings", "link_key"]
