"""The Modbus client's framing under faults a pymodbus server won't produce: noise on an RTU
line, answers arriving after their request timed out, timeouts of different lengths."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import struct
from collections.abc import AsyncIterator, Callable

import pytest

from core.types import Sample
from drivers.modbus.config import TcpConnection
from drivers.modbus.driver import ModbusDevice, device_plan
from drivers.modbus.errors import ModbusTimeout
from drivers.modbus.link import Link
from drivers.modbus.poller import DevicePoller
from drivers.modbus.profile import Profile
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


# ---------------------------------------------------------------------------------------------
# Modbus TCP answers that are not the answer: another unit's, another transaction's, a wrong
# protocol id, junk around a good frame. A small server speaking MBAP on loopback.

Reply = Callable[[int, int, int, int], bytes]  # (transaction, unit, address, count) -> bytes


def mbap(tid: int, unit: int, pdu: bytes, protocol: int = 0) -> bytes:
    return struct.pack(">HHHB", tid, protocol, len(pdu) + 1, unit) + pdu


def registers(address: int, count: int) -> bytes:
    """An FC3 answer PDU whose register i holds address + i."""
    return bytes([3, 2 * count]) + struct.pack(f">{count}H", *range(address, address + count))


def exception(code: int) -> bytes:
    return bytes([0x83, code])


@contextlib.asynccontextmanager
async def tcp_device(reply: Reply) -> AsyncIterator[tuple[int, list[asyncio.StreamWriter]]]:
    """Yields the port and the connections it accepted."""
    connections: list[asyncio.StreamWriter] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                tid, _protocol, length, unit = struct.unpack(">HHHB", await reader.readexactly(7))
                pdu = await reader.readexactly(length - 1)
                _fc, address, count = struct.unpack(">BHH", pdu[:5])
                writer.write(reply(tid, unit, address, count))  # one write: one segment

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1], connections
    finally:
        server.close()
        for writer in connections:
            writer.close()
        await server.wait_closed()


WORDS = Profile.model_validate(
    {
        "name": "words",
        "kind": "meter",
        "defaults": {"function": "holding", "type": "uint16"},
        "points": [{"name": f"w{i}", "address": i} for i in range(4)],
    }
)
GOOD = {f"w{i}": i for i in range(4)}


async def _polls(port: int, n: int, *, retry_s: float = 600.0) -> tuple[list[Sample], DevicePoller]:
    device = ModbusDevice(
        "d",
        WORDS,
        TcpConnection(transport="tcp", host="127.0.0.1", port=port, unit=7, timeout=1.0, retries=0),
        1.0,
    )
    plan = dataclasses.replace(device_plan(device), refused_retry_s=retry_s)
    link = Link.for_connection(device.connection, 1.0)
    poller = DevicePoller(plan, link, lambda _s: None)
    try:
        return [await poller.poll_once() for _ in range(n)], poller
    finally:
        link.close()


async def test_an_answer_from_another_unit_is_counted_and_not_used() -> None:
    def reply(tid: int, unit: int, address: int, count: int) -> bytes:
        return mbap(tid, unit + 1, registers(address, count))

    async with tcp_device(reply) as (port, connections):
        samples, poller = await _polls(port, 2)
    for sample in samples:
        assert sample.values == {}
        assert sample.bad == dict.fromkeys(GOOD, "wrong_unit")
    assert poller.stats.errors.counts == {"d:wrong_unit": 2}
    assert len(connections) == 1


async def test_an_answer_with_another_protocol_id_is_counted_and_not_used() -> None:
    def reply(tid: int, unit: int, address: int, count: int) -> bytes:
        return mbap(tid, unit, registers(address, count), protocol=1)

    async with tcp_device(reply) as (port, _connections):
        samples, poller = await _polls(port, 2)
    assert all(s.bad == dict.fromkeys(GOOD, "wrong_protocol_id") for s in samples)
    assert poller.stats.errors.counts == {"d:wrong_protocol_id": 2}


async def test_an_answer_to_another_transaction_is_skipped_and_ours_used() -> None:
    def reply(tid: int, unit: int, address: int, count: int) -> bytes:
        stale = mbap(tid ^ 0x5555, unit, registers(address + 100, count))
        return stale + mbap(tid, unit, registers(address, count))

    async with tcp_device(reply) as (port, connections):
        samples, poller = await _polls(port, 3)
    assert all(s.values == GOOD and not s.bad for s in samples)
    assert poller.stats.errors.counts == {"d:unknown_transaction": 3}
    assert len(connections) == 1


@pytest.mark.parametrize(
    "junk",
    [
        b"\x00\x00",  # a stray CRC, as from a converter that forgot to strip it
        b"\x00\x07\x00\x00\x00\x06",  # looks like the start of the next frame
        b"\xde\xad\xbe\xef" * 4,  # longer than a header, and not one
    ],
    ids=["crc", "half_header", "garbage"],
)
async def test_junk_after_a_good_answer_is_counted_and_the_connection_kept(junk: bytes) -> None:
    def reply(tid: int, unit: int, address: int, count: int) -> bytes:
        return mbap(tid, unit, registers(address, count)) + junk

    async with tcp_device(reply) as (port, connections):
        samples, poller = await _polls(port, 3)
    assert [s.values for s in samples] == [GOOD] * 3
    assert all(not s.bad for s in samples)
    assert poller.stats.errors.counts == {"d:junk_after_answer": 3}
    assert len(connections) == 1  # no reconnect per poll


async def test_junk_before_an_answer_is_skipped() -> None:
    def reply(tid: int, unit: int, address: int, count: int) -> bytes:
        return b"\xff\xff\x01\x02\x03" + mbap(tid, unit, registers(address, count))

    async with tcp_device(reply) as (port, connections):
        samples, poller = await _polls(port, 2)
    assert [s.values for s in samples] == [GOOD] * 2
    assert poller.stats.errors.counts == {"d:junk": 2}
    assert len(connections) == 1


async def test_a_device_refusing_long_requests_with_exception_3_is_read_in_parts() -> None:
    # Some devices answer "illegal data value" to a count they do not like. Its parts are read
    # instead, until the retry finds the whole request answered again.
    longest = [2]

    def reply(tid: int, unit: int, address: int, count: int) -> bytes:
        pdu = exception(3) if count > longest[0] else registers(address, count)
        return mbap(tid, unit, pdu)

    async with tcp_device(reply) as (port, _connections):
        samples, poller = await _polls(port, 2, retry_s=0.0)
        assert poller.stats.requests == 3 + 3  # refused, both halves; again (retry 0)
        longest[0] = 125
        samples += [await poller.poll_once()]
        link_requests = poller.stats.requests
    assert [s.values for s in samples] == [GOOD] * 3
    assert link_requests == 6 + 1  # the whole request again, answered
    assert poller.stats.errors.counts == {"d:refused": 2}
