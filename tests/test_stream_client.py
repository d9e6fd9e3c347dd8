"""The Modbus client's framing under faults a pymodbus server won't produce: noise on an RTU
line, answers arriving after their request timed out, timeouts of different lengths."""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import AsyncIterator, Callable

import pytest

from drivers.modbus.errors import ModbusTimeout
from drivers.modbus.stream_client import StreamClient, crc16


def _rtu_answer(unit: int, address: int, count: int) -> bytes:
    body = bytes([unit, 3, 2 * count]) + b"".join(
        struct.pack(">H", address + i) for i in range(count)
    )
    return body + struct.pack("<H", crc16(body))


@contextlib.asynccontextmanager
async def rtu_line(
    answer: Callable[[int, int, int, asyncio.StreamWriter], None],
) -> AsyncIterator[int]:
    """A transparent serial server: RTU requests in, whatever `answer` writes out."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                request = await reader.readexactly(8)
                unit, _fc, address, count = struct.unpack(">BBHH", request[:6])
                answer(unit, address, count, writer)

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


async def test_noise_before_an_answer_is_skipped() -> None:
    def answer(unit: int, address: int, count: int, writer: asyncio.StreamWriter) -> None:
        writer.write(b"\x00\x03" + _rtu_answer(unit, address, count))  # two bytes of noise

    async with rtu_line(answer) as port:
        client = StreamClient("127.0.0.1", port, "rtu")
        assert await client.read(100, 3, 10, 2, 1.0) == [10, 11]
        client.close()


async def test_a_late_answer_is_never_taken_for_the_next_one() -> None:
    loop = asyncio.get_running_loop()

    def answer(unit: int, address: int, count: int, writer: asyncio.StreamWriter) -> None:
        delay = 0.6 if address == 0 else 0.0  # the first request's answer comes too late
        loop.call_later(delay, writer.write, _rtu_answer(unit, address, count))

    async with rtu_line(answer) as port:
        client = StreamClient("127.0.0.1", port, "rtu")
        with pytest.raises(ModbusTimeout):
            await client.read(1, 3, 0, 2, 0.3)
        await asyncio.sleep(0.4)  # the late answer arrives now, on the old connection
        assert await client.read(1, 3, 100, 2, 1.0) == [100, 101]
        client.close()


async def test_a_short_timeout_is_not_stretched_by_a_long_one() -> None:
    def answer(unit: int, address: int, count: int, writer: asyncio.StreamWriter) -> None:
        pass  # a dead line

    async with rtu_line(answer) as port:
        client = StreamClient("127.0.0.1", port, "tcp")
        slow = asyncio.ensure_future(client.read(1, 3, 0, 1, 5.0))
        await asyncio.sleep(0.05)
        with pytest.raises(ModbusTimeout):
            await client.read(2, 3, 0, 1, 0.2)
        # It failed at its own deadline: the 5 s request armed before it is still waiting.
        assert not slow.done()
        slow.cancel()
        client.close()
