"""One owner per physical line, whichever drivers' devices hang on it.

An RS-485 line carries one conversation at a time, and in Chinese buildings Modbus devices
and DL/T 645 meters often share one. Each driver speaks its own protocol, but the line itself
(a local serial port read through the event loop, or the one TCP connection to a transparent
serial server) belongs to a `SharedLine` here: a driver borrows it for one exchange (`turn`:
the request, its answer or timeout, follow-up frames) and gives it back, and the next turn
starts only after the line has been quiet for an inter-frame silence.

Where the borrowers' serial settings differ (DL/T 645 at 2400 8E1, Modbus at 9600 8N1), a
local port is reconfigured between turns: pyserial applies new settings to an open port. A
serial server's port has the one setting of its configuration page, so `guanjia check`
refuses a mix of settings there (drivers/dlt645/checks.py).

The gateway builds one `Lines` per site and hands it to every driver (drivers/contract.py);
drivers claim the paths their devices use, so each knows whether another driver shares a
line. Bytes that arrive between turns (a late answer) belong to nobody and are dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import termios
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Literal, Protocol, cast

import serial

PathKey = tuple[Literal["serial", "tcp"], str]
"""A physical line: ("serial", "/dev/ttyUSB0") or ("tcp", "10.0.8.9:8899")."""


def serial_line_name(path: PathKey) -> str:
    """A line as a person names it: `serial port /dev/ttyUSB0`, `serial server 10.0.8.9:8899`
    (host names in any case are one host; a device path is case-sensitive)."""
    kind, name = path
    return f"serial port {name}" if kind == "serial" else f"serial server {name.lower()}"


OnData = Callable[[bytes], None]
OnLost = Callable[[Exception | None], None]


@dataclass(frozen=True, slots=True)
class SerialSettings:
    """How a device on a line expects its characters."""

    baudrate: int
    bytesize: int = 8
    parity: str = "N"
    stopbits: int = 1

    @property
    def bits_per_char(self) -> int:
        return 1 + self.bytesize + (0 if self.parity == "N" else 1) + self.stopbits

    @property
    def silence(self) -> float:
        """Seconds of quiet that end a frame: 3.5 characters (Modbus RTU's t3.5), at least
        1.75 ms as Modbus fixes it above 19200 baud. A device that was listening at other
        settings needs it to see the next request as a frame of its own."""
        return max(3.5 * self.bits_per_char / self.baudrate, 0.00175)

    def __str__(self) -> str:
        return f"{self.baudrate} {self.bytesize}{self.parity}{self.stopbits}"


class LineError(Exception):
    """The line failed: it did not open, or it was lost. ``reason`` is a counter key."""

    def __init__(self, message: str, reason: str = "connection") -> None:
        super().__init__(message)
        self.reason = reason


class _Transport(Protocol):
    @property
    def is_open(self) -> bool: ...
    async def open(self, settings: SerialSettings | None) -> None: ...
    def configure(self, settings: SerialSettings) -> None: ...
    def write(self, data: bytes) -> None: ...
    def close(self) -> None: ...


class _SerialPort:
    """A local serial port, opened exclusively (a second program on the port would mix its
    bytes into ours), read and written through the event loop."""

    def __init__(self, path: str, on_data: OnData, on_lost: OnLost) -> None:
        self.path = path
        self._on_data = on_data
        self._on_lost = on_lost
        self._serial: serial.Serial | None = None
        self._pending = b""  # what a full output buffer did not take yet

    @property
    def is_open(self) -> bool:
        return self._serial is not None

    async def open(self, settings: SerialSettings | None) -> None:
        s = settings or SerialSettings(9600)
        try:
            port = serial.Serial(
                self.path,
                baudrate=s.baudrate,
                bytesize=s.bytesize,
                parity=s.parity,
                stopbits=s.stopbits,
                timeout=0,
                exclusive=True,
            )
        except (serial.SerialException, OSError, ValueError, termios.error) as exc:
            raise open_problem(self.path, exc) from None
        self._serial = port
        asyncio.get_running_loop().add_reader(port.fileno(), self._readable)

    def configure(self, settings: SerialSettings) -> None:
        port = self._serial
        if port is None:
            return
        try:
            # All at once, in one tcsetattr: the previous turn's frame has left the wire, its
            # answer is in or its time is up.
            port.apply_settings(
                {
                    "baudrate": settings.baudrate,
                    "bytesize": settings.bytesize,
                    "parity": settings.parity,
                    "stopbits": settings.stopbits,
                }
            )
        except (serial.SerialException, OSError, ValueError, termios.error) as exc:
            self._lost(exc)
            raise LineError(f"cannot set {self.path} to {settings}: {exc}") from None

    def _readable(self) -> None:
        port = self._serial
        if port is None:
            return
        try:
            data = os.read(port.fileno(), 4096)
        except BlockingIOError:
            return
        except OSError as exc:
            self._lost(exc)
            return
        if not data:
            self._lost(None)
            return
        self._on_data(data)

    def _lost(self, exc: Exception | None) -> None:
        self.close()
        self._on_lost(exc)

    def write(self, data: bytes) -> None:
        port = self._serial
        if port is None:
            raise LineError(f"{self.path} is not open")
        try:
            written = os.write(port.fileno(), data)
        except BlockingIOError:
            written = 0
        except OSError as exc:
            self.close()
            raise LineError(f"cannot write to {self.path}: {exc}") from exc
        if written < len(data):
            self._pending = data[written:]
            asyncio.get_running_loop().add_writer(port.fileno(), self._writable)

    def _writable(self) -> None:
        port = self._serial
        if port is None:
            return
        try:
            written = os.write(port.fileno(), self._pending)
        except BlockingIOError:
            return
        except OSError as exc:
            self._lost(exc)
            return
        self._pending = self._pending[written:]
        if not self._pending:
            asyncio.get_running_loop().remove_writer(port.fileno())

    def close(self) -> None:
        port, self._serial = self._serial, None
        if port is None:
            return
        with contextlib.suppress(Exception):  # the loop may be gone at interpreter exit
            loop = asyncio.get_running_loop()
            loop.remove_reader(port.fileno())
            loop.remove_writer(port.fileno())
        self._pending = b""
        port.close()


class _StreamProtocol(asyncio.Protocol):
    def __init__(self, on_data: OnData, on_lost: OnLost) -> None:
        self.on_data = on_data
        self.on_lost = on_lost
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but behave as one.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.on_data(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.on_lost(exc)


class _TcpStream:
    """A transparent serial server's TCP port: the line's bytes, unframed, one connection
    (many servers take only one, and two would interleave on the line)."""

    def __init__(
        self, host: str, port: int, on_data: OnData, on_lost: OnLost, connect_timeout: float
    ) -> None:
        self.host = host
        self.port = port
        self._on_data = on_data
        self._on_lost = on_lost
        self.connect_timeout = connect_timeout
        self._protocol: _StreamProtocol | None = None

    @property
    def is_open(self) -> bool:
        return self._protocol is not None and self._protocol.transport is not None

    async def open(self, _settings: SerialSettings | None) -> None:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, protocol = await loop.create_connection(
                    lambda: _StreamProtocol(self._on_data, self._on_lost), self.host, self.port
                )
        except Exception as exc:  # OSError, TimeoutError, UnicodeError for a bad host name
            raise LineError(
                f"cannot connect to {self.host}:{self.port}: {exc or 'timeout'}"
            ) from None
        self._protocol = protocol

    def configure(self, _settings: SerialSettings) -> None:
        """The server's port has the settings of its own configuration (checked to be one)."""

    def write(self, data: bytes) -> None:
        protocol = self._protocol
        if protocol is None or protocol.transport is None:
            raise LineError(f"not connected to {self.host}:{self.port}")
        protocol.transport.write(data)

    def close(self) -> None:
        protocol, self._protocol = self._protocol, None
        if protocol is not None and protocol.transport is not None:
            protocol.transport.close()


class SharedLine:
    """The owner of one line: its transport, whose turn it is, and the line's settings.

    A borrower gets the line with `turn`, writes with `write`, and hears the line's bytes
    through its own ``on_data`` until the turn ends. One turn at a time, in the order asked
    (asyncio.Lock is fair), so no driver starves another.
    """

    def __init__(self, path: PathKey, connect_timeout: float = 3.0) -> None:
        self.path = path
        self.name = path[1]
        self.connect_timeout = connect_timeout
        self.users: set[str] = set()  # the drivers that claimed the line
        self._lock = asyncio.Lock()
        self._transport: _Transport
        if path[0] == "serial":
            self._transport = _SerialPort(path[1], self._data, self._lost)
        else:
            host, _, port = path[1].rpartition(":")
            self._transport = _TcpStream(
                host.strip("[]"), int(port), self._data, self._lost, connect_timeout
            )
        self._settings: SerialSettings | None = None  # what the port is set to now
        self._listener: tuple[OnData, OnLost] | None = None
        self._quiet_at = 0.0  # loop time from which the line has been quiet long enough
        self.turns = 0
        self.reconfigured = 0  # settings changes between turns
        self.stray_bytes = 0  # bytes that came between turns (late answers, noise): dropped

    @property
    def shared(self) -> bool:
        """More than one driver's devices are on the line."""
        return len(self.users) > 1

    @property
    def is_open(self) -> bool:
        return self._transport.is_open

    def _data(self, data: bytes) -> None:
        listener = self._listener
        if listener is None:
            self.stray_bytes += len(data)
            return
        listener[0](data)

    def _lost(self, exc: Exception | None) -> None:
        listener = self._listener
        if listener is not None:
            listener[1](exc)

    @contextlib.asynccontextmanager
    async def turn(
        self, settings: SerialSettings | None, on_data: OnData, on_lost: OnLost
    ) -> AsyncIterator[None]:
        """The line for one exchange, opened (raises LineError) and set to ``settings`` (a
        serial server's port: None); the line's bytes go to ``on_data`` until it ends."""
        async with self._lock:
            loop = asyncio.get_running_loop()
            wait = self._quiet_at - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            await self._ready(settings)
            self._listener = (on_data, on_lost)
            self.turns += 1
            try:
                yield
            finally:
                self._listener = None
                if self.shared:
                    self._quiet_at = loop.time() + (
                        (settings or self._settings or SerialSettings(9600)).silence
                    )

    async def _ready(self, settings: SerialSettings | None) -> None:
        transport = self._transport
        if not transport.is_open:
            await transport.open(settings)
            self._settings = settings
        elif settings is not None and settings != self._settings:
            transport.configure(settings)
            self._settings = settings
            self.reconfigured += 1

    def write(self, data: bytes) -> None:
        """Send during a turn; raises LineError when the line is gone."""
        self._transport.write(data)

    def close(self) -> None:
        self._transport.close()
        self._settings = None


class Lines:
    """The site's lines, one owner per path: built once per site by the gateway (or by a
    driver run on its own), shared by every driver."""

    def __init__(self) -> None:
        self._lines: dict[PathKey, SharedLine] = {}

    def claim(self, path: PathKey, driver: str, connect_timeout: float = 3.0) -> SharedLine:
        """The owner of ``path``, which ``driver``'s devices use."""
        line = self._lines.get(path)
        if line is None:
            line = self._lines[path] = SharedLine(path, connect_timeout)
        line.users.add(driver)
        line.connect_timeout = max(line.connect_timeout, connect_timeout)
        return line

    def release(self, path: PathKey, driver: str) -> None:
        """``driver`` is done with ``path``; the last user's release closes it."""
        line = self._lines.get(path)
        if line is None:
            return
        line.users.discard(driver)
        if not line.users:
            line.close()

    def __iter__(self) -> Iterator[SharedLine]:
        return iter(self._lines.values())


def open_problem(path: str, exc: BaseException) -> LineError:
    """Why a serial port does not open, with what to do about it."""
    cause = exc.__cause__ or exc.__context__ or exc
    errno = getattr(exc, "errno", None) or getattr(cause, "errno", None)
    if errno == 2 or isinstance(cause, FileNotFoundError) or not os.path.exists(path):
        return LineError(
            f"serial port {path} does not exist: check the device path in the site file "
            "(`ls -l /dev/serial/by-id/` names the adapters plugged in; a by-id path survives "
            "re-plugging) and that the adapter is connected",
            "serial_port_missing",
        )
    if errno == 13 or isinstance(cause, PermissionError):
        return LineError(
            f"no permission to open serial port {path}: add the gateway's user to the port's "
            "group (usually `dialout`: `sudo usermod -aG dialout <user>`), then log in again "
            "or restart the service",
            "serial_port_permission",
        )
    return LineError(
        f"cannot open serial port {path}: {exc} (is another program, ModemManager or a second "
        "gateway, holding it?)",
        "serial_port_error",
    )
