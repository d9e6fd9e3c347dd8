"""DL/T 645 on one physical path: a serial port, or a serial server's TCP port.

An RS-485 line carries one conversation at a time, and a transparent serial server passes bytes
through without any notion of whose they are: every meter on a line goes through the line's
one owner (drivers/lines.py, shared with the Modbus devices on the same line), which lets one
request out, and the next only after its answer (or the timeout). A read that the meter
answers in parts (follow-up frames) holds the line until its last part. Lines never wait for
each other.

The owner reads the serial port through the event loop and sets it to the meters' settings
for their turns, so a slow meter never blocks anything but its own line.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Callable

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
from drivers.lines import LineError, PathKey, SerialSettings, SharedLine, serial_line_name

LineKey = tuple[str, str]
ProblemSink = Callable[[str, str], None]
"""Told of trouble on the line that failed no request: (reason, message)."""

MAX_FOLLOW_UPS = 32  # a read of a few items never needs more; a meter that goes on is broken
FRAME_OVERHEAD = 16  # 68, address, 68, C, L, CS, 16, and up to four wake-up bytes


def line_key(conn: RtuConnection | TcpConnection) -> LineKey:
    if isinstance(conn, RtuConnection):
        return ("rtu", conn.port)
    return ("tcp", f"{conn.host}:{conn.port}")


def line_path(conn: RtuConnection | TcpConnection) -> PathKey:
    """The physical line, as every driver names it (drivers/lines.py)."""
    if isinstance(conn, RtuConnection):
        return ("serial", conn.port)
    return ("tcp", f"{conn.host}:{conn.port}")


def ownership(conn: RtuConnection | TcpConnection) -> list[tuple[str, str]]:
    """What the gateway reading this meter must own alone: its line (gateway/fleet.py)."""
    return [("serial line", serial_line_name(line_path(conn)))]


def line_settings(conn: RtuConnection | TcpConnection) -> SerialSettings | None:
    """What a local port is set to for the meters' turns (a serial server has its own)."""
    if isinstance(conn, RtuConnection):
        return SerialSettings(conn.baudrate, conn.bytesize, conn.parity, conn.stopbits)
    return None


class Line:
    """The owner of one path: one request on it at a time, answers matched to their request.

    An answer is taken only from the meter asked, for the function and identifier asked;
    anything else on the line (a late answer to an earlier request, another master's traffic,
    the echo of our own request, noise) is skipped and noted, and handed to the ``problems``
    of the request during which it came.
    """

    def __init__(
        self,
        conn: RtuConnection | TcpConnection,
        connect_timeout: float,
        shared: SharedLine | None = None,
    ) -> None:
        self.key = line_key(conn)
        self.name = self.key[1]
        self._reader = FrameReader()
        # The path's owner: the site's (shared with other drivers), or one of its own.
        self.shared = shared or SharedLine(line_path(conn), connect_timeout)
        self._settings = line_settings(conn)
        self._char_time = conn.bits_per_char / conn.baudrate
        self._holding = False
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
        """The line for one transaction (a read with all its follow-ups). Raises
        Dlt645ConnectionError (SerialPortError) when the path does not open."""
        async with contextlib.AsyncExitStack() as stack:
            try:
                await stack.enter_async_context(
                    self.shared.turn(self._settings, self._data, self._lost)
                )
            except LineError as exc:
                self.open_problem = str(exc)
                if exc.reason.startswith("serial_port"):
                    raise SerialPortError(str(exc), exc.reason) from None
                raise Dlt645ConnectionError(str(exc)) from None
            self.open_problem = ""
            self._holding = True
            try:
                yield
            finally:
                self._holding = False

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
        if not self._holding:
            raise RuntimeError("Line.exchange outside Line.held()")
        loop = asyncio.get_running_loop()
        self._reader.clear()
        future: asyncio.Future[Frame] = loop.create_future()
        self._waiter = (future, accept)
        wire = (len(request) + answer_size) * self._char_time
        try:
            self.shared.write(request)
            async with asyncio.timeout(timeout + wire):
                return await future
        except TimeoutError:
            raise Dlt645Timeout(f"no answer on {self.name} within {timeout:g} s") from None
        except LineError as exc:  # lost: the owner opens it again for the next turn
            raise Dlt645ConnectionError(f"{self.name}: {exc}") from None
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
        self.shared.close()
