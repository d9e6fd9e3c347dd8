"""One owner per physical path: a serial port, or a serial server's TCP port.

An RS-485 line carries one conversation at a time, and a transparent serial server passes bytes
through without any notion of whose they are: every meter on a line shares the line's owner,
which sends one request, waits for its answer (or the timeout) and only then lets the next
request out. A read that the meter answers in parts (follow-up frames) holds the line until its
last part. Lines never wait for each other.

The serial port is read through the event loop (pyserial opens and configures it; the loop
watches its descriptor), so a slow meter never blocks anything but its own line.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Protocol, cast

import serial

from drivers.dlt645.codec import (
    BROADCAST,
    READ_ADDRESS,
    READ_DATA,
    READ_FOLLOW,
    Dlt645ConnectionError,
    Dlt645Timeout,
    Frame,
    FrameError,
    FrameReader,
    SerialPortError,
    address_answer,
    answers,
    read_address_request,
    read_answer,
    read_follow_request,
    read_request,
)
from drivers.dlt645.config import RtuConnection, TcpConnection

LineKey = tuple[str, str]
ProblemSink = Callable[[str, str], None]
"""Told of trouble on the line that failed no request: (reason, message)."""

MAX_FOLLOW_UPS = 32  # a read of a few items never needs more; a meter that goes on is broken
FRAME_OVERHEAD = 16  # 68, address, 68, C, L, CS, 16, and up to four wake-up bytes


def line_key(conn: RtuConnection | TcpConnection) -> LineKey:
    if isinstance(conn, RtuConnection):
        return ("rtu", conn.port)
    return ("tcp", f"{conn.host}:{conn.port}")


class _Transport(Protocol):
    @property
    def is_open(self) -> bool: ...
    async def open(self) -> None: ...
    def write(self, data: bytes) -> None: ...
    def close(self) -> None: ...


OnData = Callable[[bytes], None]
OnLost = Callable[[Exception | None], None]


class SerialTransport:
    """A local serial port, opened exclusively (a second program on the port would mix its
    bytes into ours)."""

    def __init__(self, conn: RtuConnection, on_data: OnData, on_lost: OnLost) -> None:
        self.conn = conn
        self._on_data = on_data
        self._on_lost = on_lost
        self._serial: serial.Serial | None = None
        self._pending = b""  # what a full output buffer did not take yet

    @property
    def is_open(self) -> bool:
        return self._serial is not None

    async def open(self) -> None:
        conn = self.conn
        try:
            port = serial.Serial(
                conn.port,
                baudrate=conn.baudrate,
                bytesize=conn.bytesize,
                parity=conn.parity,
                stopbits=conn.stopbits,
                timeout=0,
                exclusive=True,
            )
        except (serial.SerialException, OSError, ValueError) as exc:
            raise open_problem(conn.port, exc) from None
        self._serial = port
        asyncio.get_running_loop().add_reader(port.fileno(), self._readable)

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
            raise Dlt645ConnectionError(f"{self.conn.port} is not open")
        try:
            written = os.write(port.fileno(), data)
        except BlockingIOError:
            written = 0
        except OSError as exc:
            self.close()
            raise Dlt645ConnectionError(f"cannot write to {self.conn.port}: {exc}") from exc
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
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.on_data(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.on_lost(exc)


class TcpTransport:
    """A transparent serial server's TCP port: the line's bytes, unframed."""

    def __init__(
        self, conn: TcpConnection, on_data: OnData, on_lost: OnLost, connect_timeout: float
    ) -> None:
        self.conn = conn
        self._on_data = on_data
        self._on_lost = on_lost
        self.connect_timeout = connect_timeout
        self._protocol: _StreamProtocol | None = None

    @property
    def is_open(self) -> bool:
        return self._protocol is not None and self._protocol.transport is not None

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        conn = self.conn
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, protocol = await loop.create_connection(
                    lambda: _StreamProtocol(self._on_data, self._on_lost), conn.host, conn.port
                )
        except Exception as exc:  # OSError, TimeoutError, UnicodeError for a bad host name
            raise Dlt645ConnectionError(
                f"cannot connect to {conn.host}:{conn.port}: {exc or 'timeout'}"
            ) from None
        self._protocol = protocol

    def write(self, data: bytes) -> None:
        protocol = self._protocol
        if protocol is None or protocol.transport is None:
            raise Dlt645ConnectionError(f"not connected to {self.conn.host}:{self.conn.port}")
        protocol.transport.write(data)

    def close(self) -> None:
        protocol, self._protocol = self._protocol, None
        if protocol is not None and protocol.transport is not None:
            protocol.transport.close()


class Line:
    """The owner of one path: one request on it at a time, answers matched to their request.

    An answer is taken only from the meter asked, for the function and identifier asked;
    anything else on the line (a late answer to an earlier request, another master's traffic,
    the echo of our own request, noise) is skipped and noted, and handed to the ``problems``
    of the request during which it came.
    """

    def __init__(self, conn: RtuConnection | TcpConnection, connect_timeout: float) -> None:
        self.key = line_key(conn)
        self.name = self.key[1]
        self._reader = FrameReader()
        self._transport: _Transport
        if isinstance(conn, RtuConnection):
            self._transport = SerialTransport(conn, self._data, self._lost)
        else:
            self._transport = TcpTransport(conn, self._data, self._lost, connect_timeout)
        self._char_time = conn.bits_per_char / conn.baudrate
        self._lock = asyncio.Lock()
        self._waiter: tuple[asyncio.Future[Frame], Callable[[Frame], bool]] | None = None
        self._unexpected: Counter[str] = Counter()
        self._unexpected_message: dict[str, str] = {}
        self.open_problem = ""  # why the path did not open last time, while it does not

    # -- bytes in ---------------------------------------------------------------------------

    def _data(self, data: bytes) -> None:
        for frame in self._reader.feed(data):
            waiter = self._waiter
            if waiter is not None and not waiter[0].done() and waiter[1](frame):
                waiter[0].set_result(frame)
            elif frame.from_meter:
                self._note(
                    "unexpected_answer",
                    f"an answer from {frame.address} (control {frame.control:02X}H) that no "
                    "request awaited: dropped",
                )
            # A request on the line (our own echoed by the adapter, or another master's) is
            # no answer, and no trouble either.

    def _lost(self, exc: Exception | None) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter[0].done():
            waiter[0].set_exception(
                Dlt645ConnectionError(f"{self.name}: connection lost: {exc or 'closed'}")
            )

    def _note(self, reason: str, message: str) -> None:
        self._unexpected[reason] += 1
        self._unexpected_message[reason] = message

    def _hand_over(self, problems: ProblemSink | None) -> None:
        if problems is None:
            return
        reader = self._reader
        for counts, messages in (
            (reader.problems, reader.messages),
            (self._unexpected, self._unexpected_message),
        ):
            for reason, times in counts.items():
                for _ in range(times):
                    problems(reason, f"{self.name}: {messages[reason]}")
            counts.clear()
            messages.clear()

    # -- requests ---------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def held(self) -> AsyncIterator[None]:
        """The line for one transaction (a read with all its follow-ups)."""
        async with self._lock:
            yield

    async def exchange(
        self,
        request: bytes,
        accept: Callable[[Frame], bool],
        timeout: float,
        answer_size: int,
        problems: ProblemSink | None = None,
    ) -> Frame:
        """Send ``request`` and return the first frame ``accept`` takes. The caller holds the
        line (``held``). ``timeout`` runs after the request and the answer's ``answer_size``
        bytes have had their time on the wire."""
        if not self._lock.locked():
            raise RuntimeError("Line.exchange outside Line.held()")
        transport = self._transport
        if not transport.is_open:
            try:
                await transport.open()
            except Dlt645ConnectionError as exc:
                self.open_problem = str(exc)
                raise
            self.open_problem = ""
        loop = asyncio.get_running_loop()
        self._reader.clear()
        future: asyncio.Future[Frame] = loop.create_future()
        self._waiter = (future, accept)
        wire = (len(request) + answer_size) * self._char_time
        try:
            transport.write(request)
            async with asyncio.timeout(timeout + wire):
                return await future
        except TimeoutError:
            raise Dlt645Timeout(f"no answer on {self.name} within {timeout:g} s") from None
        except Dlt645ConnectionError:
            transport.close()
            raise
        finally:
            self._waiter = None
            self._hand_over(problems)

    async def read(
        self,
        address: str,
        di: int,
        timeout: float,
        size: int,
        wakeup: int,
        problems: ProblemSink | None = None,
    ) -> bytes:
        """The data items the meter at ``address`` answers for ``di`` (``size`` bytes
        expected), its follow-up frames joined. Raises ErrorAnswer, FrameError, Dlt645Timeout
        or Dlt645ConnectionError."""
        ident = di.to_bytes(4, "little")

        def ours(function: int) -> Callable[[Frame], bool]:
            def accept(frame: Frame) -> bool:
                return answers(frame, address, function) and (
                    frame.is_error or frame.data[:4] == ident
                )

            return accept

        expected = FRAME_OVERHEAD + 4 + size
        async with self.held():
            frame = await self.exchange(
                read_request(address, di, wakeup), ours(READ_DATA), timeout, expected, problems
            )
            parts = [read_answer(frame, di)]
            seq = 0
            while frame.follows:
                seq += 1
                if seq > MAX_FOLLOW_UPS:
                    raise FrameError(
                        "too_many_follow_ups", f"more than {MAX_FOLLOW_UPS} follow-up frames"
                    )
                request = read_follow_request(address, di, seq, wakeup)
                frame = await self.exchange(request, ours(READ_FOLLOW), timeout, expected, problems)
                parts.append(read_answer(frame, di, seq))
        return b"".join(parts)

    async def read_address(
        self, timeout: float, wakeup: int, problems: ProblemSink | None = None
    ) -> str:
        """The address of the one meter on the line (broadcast read-address)."""

        def accept(frame: Frame) -> bool:
            return answers(frame, BROADCAST, READ_ADDRESS)

        async with self.held():
            frame = await self.exchange(
                read_address_request(wakeup), accept, timeout, FRAME_OVERHEAD + 6, problems
            )
        return address_answer(frame)

    def close(self) -> None:
        self._transport.close()


def open_problem(port: str, exc: BaseException) -> SerialPortError:
    """Why a serial port does not open, with what to do about it."""
    cause = exc.__cause__ or exc.__context__ or exc
    errno = getattr(exc, "errno", None) or getattr(cause, "errno", None)
    if errno == 2 or isinstance(cause, FileNotFoundError) or not os.path.exists(port):
        return SerialPortError(
            f"serial port {port} does not exist: check the device path in the site file "
            "(`ls -l /dev/serial/by-id/` names the adapters plugged in; a by-id path survives "
            "re-plugging) and that the adapter is connected",
            "serial_port_missing",
        )
    if errno == 13 or isinstance(cause, PermissionError):
        return SerialPortError(
            f"no permission to open serial port {port}: add the gateway's user to the port's "
            "group (usually `dialout`: `sudo usermod -aG dialout <user>`), then log in again "
            "or restart the service",
            "serial_port_permission",
        )
    return SerialPortError(
        f"cannot open serial port {port}: {exc} (is another program, ModemManager or a second "
        "gateway, holding it?)",
        "serial_port_error",
    )
