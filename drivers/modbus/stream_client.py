"""A lean asyncio Modbus client for TCP (MBAP framing) and RTU framing over a TCP stream.

Why not pymodbus here: bench/bench_cpu.py measures pymodbus 3.16's AsyncModbusTcpClient at
1.4-2.0x the CPU per request of a bare asyncio client on the same requests, before any
decoding, while the gateway's budget for the whole path, decode included, is 1.5x; with this
client the whole path measures 1.25-1.3x. The protocol subset a poller needs (FC 1-6, 15,
16) is small and fixed. pymodbus still serves serial RTU lines (`serial_client.py`), where
the wire, not the CPU, is the bottleneck, and it is the device simulator and the test devices.
"""

from __future__ import annotations

import asyncio
import struct
from collections import Counter
from typing import Literal, cast

from drivers.modbus.errors import (
    ModbusConnectionError,
    ModbusExceptionResponse,
    ModbusFrameError,
    ModbusTimeout,
    ModbusWrongProtocol,
    ModbusWrongUnit,
    ProblemSink,
)


def _crc_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC_TABLE = _crc_table()


def crc16(data: bytes) -> int:
    """Modbus RTU CRC-16 (polynomial 0xA001, initial 0xFFFF), sent low byte first."""
    crc = 0xFFFF
    for byte in data:
        crc = (crc >> 8) ^ _CRC_TABLE[(crc ^ byte) & 0xFF]
    return crc


READ_FUNCTIONS = (1, 2, 3, 4)


def _expected_body(function: int, count: int) -> int:
    """Bytes of a normal response PDU after the function code."""
    if function in (1, 2):
        return 1 + (count + 7) // 8
    if function in (3, 4):
        return 1 + 2 * count
    return 4  # echo of address and value/count for writes 5, 6, 15, 16


def parse_pdu(function: int, count: int, pdu: bytes) -> list[int] | list[bool]:
    """Decode a response PDU (function code first) into registers or bits."""
    if not pdu:
        raise ModbusFrameError("empty response")
    fc = pdu[0]
    if fc == function | 0x80:
        if len(pdu) < 2:
            raise ModbusFrameError("short exception response")
        raise ModbusExceptionResponse(function, pdu[1])
    if fc != function:
        raise ModbusFrameError(f"response to function {fc}, expected {function}")
    if len(pdu) - 1 != _expected_body(function, count):
        raise ModbusFrameError(
            f"response body of {len(pdu) - 1} bytes, expected {_expected_body(function, count)}"
        )
    if function in (3, 4):
        return list(struct.unpack_from(f">{count}H", register_bytes(count, pdu), 0))
    if function in (1, 2):
        data = pdu[2:]
        return [bool(data[i >> 3] >> (i & 7) & 1) for i in range(count)]
    return []


READ_DEVICE_ID = 0x2B  # FC 43, MEI type 14: Read Device Identification (`guanjia scan`)


def device_id_frame_size(buf: bytes | bytearray) -> int | None:
    """The length of an RTU answer to Read Device Identification, which only its object list
    tells: unit, 2B, 0E, read code, conformity, more follows, next object, object count, then
    (id, length, bytes) per object, and the CRC. None while the list is incomplete."""
    size = 8
    if len(buf) < size:
        return None
    for _ in range(buf[7]):
        if len(buf) < size + 2:
            return None
        size += 2 + buf[size + 1]
    return size + 2


def register_bytes(count: int, pdu: bytes) -> bytes:
    """The data bytes of a validated FC3/FC4 response (big-endian registers)."""
    if pdu[1] != 2 * count:
        raise ModbusFrameError(f"byte count {pdu[1]}, expected {2 * count}")
    return pdu[2:]


_READ = struct.Struct(">BHH")  # function, address, count
_MBAP = struct.Struct(">HHHB")  # transaction id, protocol id, length, unit


def read_pdu(function: int, address: int, count: int) -> bytes:
    return _READ.pack(function, address, count)


def write_registers_pdu(address: int, values: list[int]) -> bytes:
    if len(values) == 1:
        return struct.pack(">BHH", 6, address, values[0])
    n = len(values)
    return struct.pack(f">BHHB{n}H", 16, address, n, 2 * n, *values)


def write_coil_pdu(address: int, value: bool) -> bytes:
    return struct.pack(">BHH", 5, address, 0xFF00 if value else 0x0000)


class _StreamProtocol(asyncio.Protocol):
    """Collects bytes and hands complete frames to whoever waits for them.

    Bytes that are no answer (junk after a frame, a late answer, another unit's answer) are
    dropped and noted in ``problems`` by reason; the client hands the notes to the next
    request's ``problems`` sink. The connection stays up: junk alone is no reason to reconnect.
    """

    def __init__(self, framing: Literal["tcp", "rtu"]) -> None:
        self.framing = framing
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        # tcp: by transaction id, with the unit asked
        self.waiters: dict[int, tuple[asyncio.Future[bytes], int]] = {}
        self.rtu_waiter: tuple[asyncio.Future[bytes], int, int, int] | None = None
        self.closed = asyncio.Event()
        # Bounded by the few reasons below; the last message of each says what happened.
        self.problems: Counter[str] = Counter()
        self.messages: dict[str, str] = {}

    def note(self, reason: str, message: str) -> None:
        self.problems[reason] += 1
        self.messages[reason] = message

    def drop_stale(self) -> None:
        """Before a request that no other one shares the line with: what is buffered is junk
        (or the part of a late answer), and must not be taken for the start of the answer."""
        if self.buffer:
            self.note("junk", f"{len(self.buffer)} stray bytes before a request: dropped")
            self.buffer.clear()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but behave as one.
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed.set()
        err = ModbusConnectionError(f"connection lost: {exc}" if exc else "connection closed")
        for fut, _unit in self.waiters.values():
            if not fut.done():
                fut.set_exception(err)
        self.waiters.clear()
        if self.rtu_waiter and not self.rtu_waiter[0].done():
            self.rtu_waiter[0].set_exception(err)
        self.rtu_waiter = None

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.framing == "tcp":
            self._tcp_frames()
        else:
            self._rtu_frames()

    def _tcp_frames(self) -> None:
        """MBAP frames: transaction id, protocol id 0, length, unit, PDU. An answer is used
        only for the transaction and unit it was asked with; bytes that cannot start a frame
        are skipped up to where an awaited transaction's header begins."""
        buf = self.buffer
        after_answer = False  # junk right behind an answer in the same read is "trailing"
        while buf:
            if len(buf) < 7:
                if self.waiters and (len(buf) < 4 or buf[2:4] == b"\x00\x00"):
                    return  # the start of a frame: wait for the rest
                if not self.waiters:
                    self._junk(after_answer, len(buf))
                    buf.clear()
                    return
                self._resync(after_answer)
                continue
            tid, proto, length = struct.unpack_from(">HHH", buf)
            if not 2 <= length <= 254 or (proto != 0 and tid not in self.waiters):
                self._resync(after_answer)
                continue
            if len(buf) < 6 + length:
                return
            unit = buf[6]
            pdu = bytes(buf[7 : 6 + length])
            del buf[: 6 + length]
            waiter = self.waiters.pop(tid, None)
            if waiter is None:
                # A late answer to a request that timed out, or not ours: dropped.
                self.note("unknown_transaction", f"answer to transaction {tid}, not awaited")
                continue
            fut, asked = waiter
            if fut.done():
                continue
            after_answer = True
            if proto != 0:
                fut.set_exception(ModbusWrongProtocol(f"answer with protocol id {proto}, not 0"))
            elif unit != asked:
                fut.set_exception(
                    ModbusWrongUnit(f"answer from unit {unit} to a request for unit {asked}")
                )
            else:
                fut.set_result(pdu)

    def _junk(self, after_answer: bool, count: int) -> None:
        if after_answer:
            self.note("junk_after_answer", f"{count} bytes after an answer: dropped")
        else:
            self.note("junk", f"{count} bytes that start no frame: dropped")

    def _resync(self, after_answer: bool) -> None:
        """Skip to the first header of an awaited transaction, or drop everything."""
        buf = self.buffer
        starts = [buf.find(struct.pack(">HH", tid, 0), 1) for tid in self.waiters]
        found = [i for i in starts if i > 0]
        cut = min(found) if found else len(buf)
        self._junk(after_answer, cut)
        del buf[:cut]

    def _rtu_frames(self) -> None:
        """Only a frame from the unit and function we wait for, of the length its request
        implies, with a good CRC, is an answer; anything else is skipped a byte at a time.
        Taking the length from an unverified byte count lets noise swallow the real answer."""
        buf = self.buffer
        skipped = 0
        while self.rtu_waiter is not None and len(buf) >= 5:
            fut, unit, function, count = self.rtu_waiter
            if buf[0] != unit or buf[1] & 0x7F != function:
                del buf[:1]
                skipped += 1
                continue
            if buf[1] & 0x80:
                size: int | None = 5  # unit, fc, exception code, crc
            elif function == READ_DEVICE_ID:
                size = device_id_frame_size(buf)
            else:
                size = 4 + _expected_body(function, count)  # unit, fc, crc
            if size is None or len(buf) < size:
                break
            frame = bytes(buf[:size])
            if crc16(frame[:-2]) != struct.unpack_from("<H", frame, size - 2)[0]:
                del buf[:1]
                skipped += 1
                continue
            del buf[:size]
            self.rtu_waiter = None
            if not fut.done():
                fut.set_result(frame[1:-2])
            break
        if skipped:
            self.note("junk", f"{skipped} bytes that start no answer: skipped")


class _Overdue(Exception):
    """Set by the watchdog on a request past its deadline; the request raises ModbusTimeout."""


class StreamClient:
    """One TCP connection to a device or gateway; requests are awaited one at a time per caller.

    TCP framing matches answers by transaction id, so late answers are dropped safely. RTU
    framing (an RTU-over-TCP gateway in front of an RS-485 line) has no ids: the caller must
    serialise requests, which the link owner does.
    """

    def __init__(
        self, host: str, port: int, framing: Literal["tcp", "rtu"], connect_timeout: float = 3.0
    ) -> None:
        self.host = host
        self.port = port
        self.framing = framing
        self.connect_timeout = connect_timeout
        self._protocol: _StreamProtocol | None = None
        self._tid = 0
        self._connecting: asyncio.Lock = asyncio.Lock()
        self._deadlines: dict[asyncio.Future[bytes], float] = {}
        self._watchdog: asyncio.TimerHandle | None = None

    def _expire_overdue(self) -> None:
        """Fail every request past its deadline; sleep until the next deadline, if any."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        for fut, deadline in list(self._deadlines.items()):
            if deadline <= now and not fut.done():
                fut.set_exception(_Overdue())  # the request turns it into a ModbusTimeout
        pending = [d for d in self._deadlines.values() if d > now]
        self._watchdog = loop.call_at(min(pending), self._expire_overdue) if pending else None

    @property
    def connected(self) -> bool:
        return self._protocol is not None and not self._protocol.closed.is_set()

    async def connect(self) -> None:
        async with self._connecting:
            if self.connected:
                return
            loop = asyncio.get_running_loop()
            try:
                _transport, protocol = await asyncio.wait_for(
                    loop.create_connection(
                        lambda: _StreamProtocol(self.framing), self.host, self.port
                    ),
                    self.connect_timeout,
                )
            except Exception as exc:  # OSError, TimeoutError, UnicodeError for a bad host name
                raise ModbusConnectionError(
                    f"cannot connect to {self.host}:{self.port}: {exc or 'timeout'}"
                ) from exc
            self._protocol = protocol

    def close(self) -> None:
        if self._protocol is not None and self._protocol.transport is not None:
            self._protocol.transport.close()
        self._protocol = None

    async def request(
        self,
        unit: int,
        pdu: bytes,
        count: int,
        timeout: float,
        problems: ProblemSink | None = None,
    ) -> bytes:
        """Send a request PDU and return the response PDU (function code first).

        Problems on the line that failed no request (junk, late answers) since the last
        request with a ``problems`` sink are handed to this one's.
        """
        protocol = self._protocol
        if protocol is None or protocol.closed.is_set():
            protocol = await self._reconnect()
        fut, tid = self._send(protocol, unit, pdu, count, timeout)
        try:
            return await fut
        except _Overdue:
            raise self._timed_out(tid, unit, timeout) from None
        finally:
            self._finish(protocol, fut, tid, problems)

    async def _reconnect(self) -> _StreamProtocol:
        await self.connect()
        protocol = self._protocol
        if protocol is None or protocol.transport is None:
            raise ModbusConnectionError(f"not connected to {self.host}:{self.port}")
        return protocol

    def _send(
        self, protocol: _StreamProtocol, unit: int, pdu: bytes, count: int, timeout: float
    ) -> tuple[asyncio.Future[bytes], int]:
        """Write the request; returns the future of its answer and its transaction id (-1 for
        RTU framing). The caller awaits the future and then calls _finish."""
        transport = protocol.transport
        if transport is None:
            raise ModbusConnectionError(f"not connected to {self.host}:{self.port}")
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[bytes] = loop.create_future()
        if self.framing == "tcp":
            if protocol.buffer and not protocol.waiters:
                protocol.drop_stale()
            self._tid = tid = (self._tid + 1) & 0xFFFF
            protocol.waiters[tid] = (fut, unit)
            transport.write(_MBAP.pack(tid, 0, len(pdu) + 1, unit) + pdu)
        else:
            tid = -1
            protocol.drop_stale()
            protocol.rtu_waiter = (fut, unit, pdu[0], count)
            adu = bytes([unit]) + pdu
            transport.write(adu + struct.pack("<H", crc16(adu)))
        # Timeouts come from one watchdog timer per connection, not wait_for or asyncio.timeout:
        # on 3.11 wait_for costs an extra loop pass per request and can swallow a cancellation
        # racing with the answer (gh-86296); a timer per request is cheaper but still a heap
        # push and a cancel every time (bench/bench_cpu.py measures the whole path).
        deadline = loop.time() + timeout
        self._deadlines[fut] = deadline  # a float: no object more per request in flight
        watchdog = self._watchdog
        if watchdog is None or deadline < watchdog.when():
            if watchdog is not None:  # a shorter timeout than the one armed
                watchdog.cancel()
            self._watchdog = loop.call_at(deadline, self._expire_overdue)
        return fut, tid

    def _timed_out(self, tid: int, unit: int, timeout: float) -> ModbusTimeout:
        if tid < 0:
            # RTU frames carry no id: a late answer would pass for the next request's.
            # Drop the connection, and the late bytes with it.
            self.close()
        return ModbusTimeout(f"no answer from unit {unit} within {timeout:g} s")

    def _finish(
        self,
        protocol: _StreamProtocol,
        fut: asyncio.Future[bytes],
        tid: int,
        problems: ProblemSink | None,
    ) -> None:
        """After a request, answered or not: forget it, hand over the line's problems."""
        del self._deadlines[fut]
        if tid >= 0:
            protocol.waiters.pop(tid, None)
        elif protocol.rtu_waiter is not None and protocol.rtu_waiter[0] is fut:
            protocol.rtu_waiter = None
        if protocol.problems and problems is not None:
            _hand_over(protocol, problems)

    async def read(
        self,
        unit: int,
        function: int,
        address: int,
        count: int,
        timeout: float,
        problems: ProblemSink | None = None,
    ) -> list[int] | list[bool]:
        pdu = await self.request(unit, read_pdu(function, address, count), count, timeout, problems)
        return parse_pdu(function, count, pdu)

    async def read_raw(
        self,
        unit: int,
        function: int,
        address: int,
        count: int,
        timeout: float,
        problems: ProblemSink | None = None,
    ) -> bytes:
        """FC3/FC4 registers as big-endian bytes: what the decoder's unpackers read from."""
        # request(), inlined: this is every request of every poll, and one coroutine less per
        # request in flight is less work for the loop and the garbage collector.
        protocol = self._protocol
        if protocol is None or protocol.closed.is_set():
            protocol = await self._reconnect()
        fut, tid = self._send(protocol, unit, _READ.pack(function, address, count), count, timeout)
        try:
            pdu = await fut
        except _Overdue:
            raise self._timed_out(tid, unit, timeout) from None
        finally:
            self._finish(protocol, fut, tid, problems)
        if pdu[0] != function:
            parse_pdu(function, count, pdu)  # raises: an exception response or a wrong function
        if len(pdu) != 2 + 2 * count:
            raise ModbusFrameError(f"response of {len(pdu)} bytes, expected {2 + 2 * count}")
        return register_bytes(count, pdu)

    async def write_registers(
        self, unit: int, address: int, values: list[int], timeout: float
    ) -> None:
        pdu = write_registers_pdu(address, values)
        parse_pdu(pdu[0], len(values), await self.request(unit, pdu, len(values), timeout))

    async def write_coil(self, unit: int, address: int, value: bool, timeout: float) -> None:
        pdu = write_coil_pdu(address, value)
        parse_pdu(5, 1, await self.request(unit, pdu, 1, timeout))


def _hand_over(protocol: _StreamProtocol, problems: ProblemSink) -> None:
    for reason, times in protocol.problems.items():
        for _ in range(times):
            problems(reason, protocol.messages[reason])
    protocol.problems.clear()
    protocol.messages.clear()
