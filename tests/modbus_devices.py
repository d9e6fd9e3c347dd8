"""Test devices: pymodbus 3.16 servers on free loopback ports serving exact register images.

The virtual building (simulator/) models how devices behave; these serve precisely the
registers a test needs, including values no healthy device would send.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import AsyncIterator, Mapping

from pymodbus.framer import FramerType
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from drivers.modbus.profile import Profile

# table -> {address: word}; tables: "coil", "discrete", "holding", "input"
Image = Mapping[str, Mapping[int, int]]


def _blocks(words: Mapping[int, int], bits: bool) -> list[SimData]:
    """Contiguous runs of addresses become one SimData each; gaps stay invalid (exceptions)."""
    if not words:
        # pymodbus wants every table non-empty: one register far away, never read.
        return [
            SimData(
                60000,
                values=[False] * 16 if bits else 0,
                datatype=DataType.BITS if bits else DataType.REGISTERS,
            )
        ]
    out: list[SimData] = []
    run: list[int] = []
    start = prev = -2
    for address in sorted(words):
        if address != prev + 1 and run:
            out.append(_block(start, run, bits))
            run = []
        if not run:
            start = address
        run.append(words[address])
        prev = address
    out.append(_block(start, run, bits))
    return out


def _block(start: int, values: list[int], bits: bool) -> SimData:
    if bits:
        return SimData(start, values=[bool(v) for v in values], datatype=DataType.BITS)
    return SimData(start, values=values, datatype=DataType.REGISTERS)


def sim_device(unit: int, image: Image) -> SimDevice:
    return SimDevice(
        id=unit,
        simdata=(
            _blocks(image.get("coil", {}), True),
            _blocks(image.get("discrete", {}), True),
            _blocks(image.get("holding", {}), False),
            _blocks(image.get("input", {}), False),
        ),
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def _wait_listening(port: int, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            _r, w = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.02)
            continue
        w.close()
        return


@contextlib.asynccontextmanager
async def modbus_server(units: Mapping[int, Image], *, framer: str = "tcp") -> AsyncIterator[int]:
    """Serve the images (one per unit id) on a free port; yields the port."""
    port = free_port()
    server = ModbusTcpServer(
        [sim_device(unit, image) for unit, image in units.items()],
        framer=FramerType.SOCKET if framer == "tcp" else FramerType.RTU,
        address=("127.0.0.1", port),
    )
    await server.serve_forever(background=True)
    # A pymodbus server on a busy port may only log a warning: check that it is us listening.
    sockets = getattr(server.transport, "sockets", None) or []
    if not any(sock.getsockname()[1] == port for sock in sockets):
        await server.shutdown()
        raise OSError(f"pymodbus server is not listening on 127.0.0.1:{port}")
    await _wait_listening(port)
    try:
        yield port
    finally:
        await server.shutdown()


@contextlib.asynccontextmanager
async def dead_device() -> AsyncIterator[int]:
    """Accepts connections and reads requests, never answers: the worst kind of dead device."""
    held: list[asyncio.StreamWriter] = []

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)
        with contextlib.suppress(ConnectionError):
            while await reader.read(1024):
                pass

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port: int = server.sockets[0].getsockname()[1]
    try:
        yield port
    finally:
        for w in held:
            w.close()
        server.close()


# -- devices several test modules share ------------------------------------------------

PROFILE = Profile.model_validate(
    {
        "name": "test_meter",
        "kind": "meter",
        "defaults": {"function": "input", "type": "float32"},
        # The device refuses reads between its two input blocks.
        "holes": [{"function": "input", "start": 6, "end": 99}],
        "points": [
            {"name": "voltage_v", "address": 0, "unit": "V", "valid": {"min": 0, "max": 1000}},
            {"name": "current_a", "address": 2, "unit": "A"},
            {"name": "power_w", "address": 4, "unit": "W", "valid": {"min": -1e6, "max": 1e6}},
            {"name": "energy_kwh", "address": 100, "unit": "kWh"},
            {
                "name": "status",
                "address": 0,
                "function": "holding",
                "type": "uint16",
                "invalid": [65535],
            },
            {
                "name": "temp_degc",
                "address": 1,
                "function": "holding",
                "type": "int16",
                "scale": 0.1,
                "unit": "degC",
            },
            {
                "name": "setpoint_degc",
                "address": 2,
                "function": "holding",
                "type": "int16",
                "scale": 0.1,
                "unit": "degC",
                "writable": {"min": 16, "max": 30},
            },
            {"name": "alarm_bits", "address": 3, "function": "holding", "type": "uint16"},
        ],
    }
)


def f32_words(value: float) -> tuple[int, int]:
    hi, lo = struct.unpack(">HH", struct.pack(">f", value))
    return hi, lo


def meter_image(voltage: float = 230.5, power: float = 1234.5) -> dict[str, dict[int, int]]:
    inputs: dict[int, int] = {}
    for addr, value in ((0, voltage), (2, 5.25), (4, power), (100, 4321.0)):
        inputs[addr], inputs[addr + 1] = f32_words(value)
    holding = {0: 3, 1: (-55) & 0xFFFF, 2: 245, 3: 0b1001}
    return {"input": inputs, "holding": holding}


def coolmaster_image(setpoint_c: float, mode: int = 0, on: int = 1) -> dict[str, dict[int, int]]:
    """A CoolMasterNet indoor unit at VA 1 (base 16): mode, fan, setpoint ×10, on/off..."""
    base = 16
    words = [mode, 1, round(setpoint_c * 10) & 0xFFFF, on, 0, 0, 250, 0, 0, 0, 0]
    return {"holding": {base + i: w for i, w in enumerate(words)}}
