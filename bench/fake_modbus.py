"""A farm of fake Modbus TCP devices, run as its own process (stdlib only).

It runs in a separate process so that its CPU never counts against the gateway being measured;
bench.common.ModbusFarm starts it. Usage:

    python bench/fake_modbus.py --ports 200 --dead 20 --delay-ms 20

It listens on ``--ports`` loopback ports (port 0 each: the kernel picks free ones), prints one JSON
line ``{"healthy": [...], "dead": [...]}`` on stdout, and serves until its stdin is closed (so it
cannot outlive the benchmark that started it, even if that one crashes).

Healthy ports answer FC3/FC4 reads of any address and count with deterministic registers (see
``register``) after ``--delay-ms``, scheduled with call_later so that hundreds of devices wait at
the same time rather than one after the other. Other function codes get exception 1 (illegal
function). Dead ports (the last ``--dead`` of them) accept connections and read requests but
never answer, like a device whose TCP stack is up and whose application has hung.

``--rtu-units N --rtu-dead D`` instead serves one RS-485 line behind a transparent serial
gateway (RTU frames over TCP) on one port: units 1..N-D answer FC3/FC4 like the healthy ports,
one request at a time on the line, each after ``--delay-ms``; units N-D+1..N are dead (the
request goes out on the line and nothing comes back). It prints ``{"line": port, "healthy":
[units], "dead": [units]}``.

``--flip N --flip-period S`` (off by default) makes the first N healthy ports change their
values: each serves every register ``FLIP_OFFSET`` higher for half of each S-second cycle, the
ports' cycles evenly staggered, so that a threshold between the two images is crossed by N
devices twice per cycle, at a steady rate (alarms raised and cleared, for the rules benches).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import struct
import sys
import time

_MBAP = struct.Struct(">HHHB")  # transaction id, protocol id, length, unit id


FLIP_OFFSET = 0x0200  # a flipping port's other image: 0x43xx pairs decode as about 130 to 140


def register(address: int, offset: int = 0) -> int:
    """The value every fake device keeps at ``address`` (``offset``: a flipping port's other
    image).

    0x41xx pairs decode as float32 to ordinary finite numbers (about 8 to 12), so float32 points
    read across any two registers are good values, not NaN or denormals.
    """
    return (0x4100 + offset + address) & 0xFFFF


# Responses depend only on (function, address, count): build each once so that the farm's own
# CPU stays small and its answers arrive on time even under 200 concurrent devices.
_PDU_CACHE: dict[tuple[int, int, int, int], bytes] = {}


def response_pdu(pdu: bytes, offset: int = 0) -> bytes:
    if len(pdu) < 5 or pdu[0] not in (3, 4):
        return bytes([(pdu[0] if pdu else 0) | 0x80, 1])
    function, address, count = struct.unpack_from(">BHH", pdu)
    key = (function, address, count, offset)
    cached = _PDU_CACHE.get(key)
    if cached is None:
        if not 1 <= count <= 125:
            cached = bytes([function | 0x80, 3])  # illegal data value
        else:
            regs = [register(address + i, offset) for i in range(count)]
            cached = struct.pack(f">BB{count}H", function, 2 * count, *regs)
        _PDU_CACHE[key] = cached
    return cached


class DeviceProtocol(asyncio.Protocol):
    def __init__(
        self, delay: float, dead: bool, flip: tuple[float, float, float] | None = None
    ) -> None:
        self.delay = delay
        self.dead = dead
        self.flip = flip  # (start, period, phase): the other image for half of each period
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def offset(self) -> int:
        if self.flip is None:
            return 0
        start, period, phase = self.flip
        position = ((time.monotonic() - start) / period + phase) % 1.0
        return FLIP_OFFSET if position >= 0.5 else 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.dead:
            return  # swallow the request: the client must time out
        buf = self.buffer
        buf += data
        while len(buf) >= 8:
            tid, _proto, length, unit = _MBAP.unpack_from(buf)
            if len(buf) < 6 + length:
                return
            pdu = response_pdu(bytes(buf[7 : 6 + length]), self.offset())
            del buf[: 6 + length]
            frame = _MBAP.pack(tid, 0, len(pdu) + 1, unit) + pdu
            if self.delay > 0:
                asyncio.get_running_loop().call_later(self.delay, self._reply, frame)
            else:
                self._reply(frame)

    def _reply(self, frame: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(frame)


async def serve(ports: int, dead: int, delay: float, flip: int, flip_period: float) -> None:
    loop = asyncio.get_running_loop()
    servers: list[asyncio.Server] = []
    healthy_ports: list[int] = []
    dead_ports: list[int] = []
    start = time.monotonic()
    for i in range(ports):
        is_dead = i >= ports - dead
        flipping = (start, flip_period, i / flip) if i < flip and not is_dead else None
        server = await loop.create_server(
            functools.partial(DeviceProtocol, delay, is_dead, flipping),
            "127.0.0.1",
            0,
            backlog=256,
        )
        servers.append(server)
        port = server.sockets[0].getsockname()[1]
        (dead_ports if is_dead else healthy_ports).append(port)
    hello = {"healthy": healthy_ports, "dead": dead_ports, "flipping": healthy_ports[:flip]}
    sys.stdout.write(json.dumps(hello) + "\n")
    sys.stdout.flush()
    # Serve until the parent closes our stdin (or dies, which closes it too).
    await loop.run_in_executor(None, sys.stdin.buffer.read)
    for server in servers:
        server.close()


def crc16(data: bytes) -> int:
    """Modbus RTU CRC-16 (polynomial 0xA001, initial 0xFFFF), sent low byte first."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


class RtuLine:
    """The RS-485 line behind the gateway: one conversation at a time, whoever connects."""

    def __init__(self, delay: float, dead: frozenset[int]) -> None:
        self.delay = delay
        self.dead = dead
        self.free_at = 0.0  # loop time when the line's current answer has been sent


class RtuGatewayProtocol(asyncio.Protocol):
    """A transparent serial gateway: RTU requests in, the addressed unit's answer out."""

    def __init__(self, line: RtuLine) -> None:
        self.line = line
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        buf = self.buffer
        buf += data
        while len(buf) >= 8:  # every request the gateway serves is 8 bytes (FC3/FC4 reads)
            frame = bytes(buf[:8])
            del buf[:8]
            if crc16(frame[:6]) != struct.unpack_from("<H", frame, 6)[0]:
                buf.clear()  # out of step: drop what is buffered, as a line would
                return
            unit = frame[0]
            loop = asyncio.get_running_loop()
            # The request takes the line whether or not anyone answers it.
            start = max(loop.time(), self.line.free_at)
            self.line.free_at = start + self.line.delay
            if unit in self.line.dead:
                continue
            adu = bytes([unit]) + response_pdu(frame[1:6])
            answer = adu + struct.pack("<H", crc16(adu))
            loop.call_at(self.line.free_at, self._reply, answer)

    def _reply(self, frame: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(frame)


async def serve_line(units: int, dead: int, delay: float) -> None:
    loop = asyncio.get_running_loop()
    dead_units = frozenset(range(units - dead + 1, units + 1))
    line = RtuLine(delay, dead_units)
    server = await loop.create_server(lambda: RtuGatewayProtocol(line), "127.0.0.1", 0, backlog=256)
    hello = {
        "line": server.sockets[0].getsockname()[1],
        "healthy": [u for u in range(1, units + 1) if u not in dead_units],
        "dead": sorted(dead_units),
    }
    sys.stdout.write(json.dumps(hello) + "\n")
    sys.stdout.flush()
    await loop.run_in_executor(None, sys.stdin.buffer.read)
    server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ports", type=int, default=1)
    parser.add_argument("--dead", type=int, default=0)
    parser.add_argument("--delay-ms", type=float, default=0.0)
    parser.add_argument("--flip", type=int, default=0, help="the first N healthy ports flip")
    parser.add_argument("--flip-period", type=float, default=10.0, help="seconds per cycle")
    parser.add_argument("--rtu-units", type=int, default=0, help="serve an RTU line instead")
    parser.add_argument("--rtu-dead", type=int, default=0, help="dead units on the line")
    args = parser.parse_args()
    if args.rtu_units:
        asyncio.run(serve_line(args.rtu_units, args.rtu_dead, args.delay_ms / 1000.0))
        return
    asyncio.run(serve(args.ports, args.dead, args.delay_ms / 1000.0, args.flip, args.flip_period))


if __name__ == "__main__":
    main()
