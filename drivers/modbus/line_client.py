"""Modbus RTU on a line another driver shares (drivers/lines.py): one request per turn.

A line that carries DL/T 645 meters too cannot be opened by pymodbus's serial client (it would
hold the port for itself) nor by a connection of our own to the serial server (a second
connection interleaves its bytes with the first's on the line). Here every request borrows
the line's owner for one turn, at the devices' serial settings, and frames its answer with the
RTU framing of the stream client: only a frame from the unit and function asked, of the length
the request implies, with a good CRC, is the answer.

A late answer that arrives after its request timed out comes during no turn, or during another
driver's, and is dropped there; a late answer of the same unit, function and length during the
next Modbus turn would pass for its answer, as on any RTU line without transaction ids.
"""

from __future__ import annotations

import asyncio
import struct

from drivers.lines import LineError, SerialSettings, SharedLine
from drivers.modbus.errors import (
    ModbusConnectionError,
    ModbusTimeout,
    ProblemSink,
    SerialPortError,
)
from drivers.modbus.stream_client import (
    _READ,
    _StreamProtocol,
    crc16,
    parse_pdu,
    register_bytes,
    write_coil_pdu,
    write_registers_pdu,
)
from drivers.modbus.stream_client import _hand_over as hand_over


class SharedLineClient:
    """The Client of a Link (drivers/modbus/link.py) whose line another driver shares."""

    def __init__(self, line: SharedLine, settings: SerialSettings | None) -> None:
        self.line = line
        self.settings = settings  # None behind a serial server: its port has one setting
        # The RTU framer alone: it is fed the line's bytes during our turns, and nothing else.
        self._framer = _StreamProtocol("rtu")

    @property
    def connected(self) -> bool:
        return self.line.is_open

    async def connect(self) -> None:
        """The line opens for the first turn that needs it."""

    def close(self) -> None:
        """The line's owner closes a lost line itself and reopens it for the next turn; the
        other driver's devices may still be using it."""

    def _lost(self, exc: Exception | None) -> None:
        waiter = self._framer.rtu_waiter
        if waiter is not None and not waiter[0].done():
            waiter[0].set_exception(
                ModbusConnectionError(f"{self.line.name}: connection lost: {exc or 'closed'}")
            )

    async def request(
        self,
        unit: int,
        pdu: bytes,
        count: int,
        timeout: float,
        problems: ProblemSink | None = None,
    ) -> bytes:
        """Send a request PDU in one turn of the line; the answer's PDU, function code first."""
        framer = self._framer
        try:
            async with self.line.turn(self.settings, framer.data_received, self._lost):
                framer.drop_stale()  # the rest of an earlier turn's bytes: no answer of ours
                fut: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
                framer.rtu_waiter = (fut, unit, pdu[0], count)
                adu = bytes([unit]) + pdu
                try:
                    self.line.write(adu + struct.pack("<H", crc16(adu)))
                    async with asyncio.timeout(timeout):
                        return await fut
                except TimeoutError:
                    raise ModbusTimeout(
                        f"no answer from unit {unit} on {self.line.name} within {timeout:g} s"
                    ) from None
                finally:
                    framer.rtu_waiter = None
                    if framer.problems and problems is not None:
                        hand_over(framer, problems)
        except LineError as exc:
            if exc.reason.startswith("serial_port"):
                raise SerialPortError(str(exc), exc.reason) from None
            raise ModbusConnectionError(str(exc)) from None

    async def read(
        self,
        unit: int,
        function: int,
        address: int,
        count: int,
        timeout: float,
        problems: ProblemSink | None = None,
    ) -> list[int] | list[bool]:
        pdu = _READ.pack(function, address, count)
        return parse_pdu(function, count, await self.request(unit, pdu, count, timeout, problems))

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
        pdu = _READ.pack(function, address, count)
        answer = await self.request(unit, pdu, count, timeout, problems)
        parse_pdu(function, count, answer)  # raises for an exception answer or a bad length
        return register_bytes(count, answer)

    async def write_registers(
        self, unit: int, address: int, values: list[int], timeout: float
    ) -> None:
        pdu = write_registers_pdu(address, values)
        parse_pdu(pdu[0], len(values), await self.request(unit, pdu, len(values), timeout))

    async def write_coil(self, unit: int, address: int, value: bool, timeout: float) -> None:
        parse_pdu(5, 1, await self.request(unit, write_coil_pdu(address, value), 1, timeout))
