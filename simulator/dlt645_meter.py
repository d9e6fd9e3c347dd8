"""Simulated DL/T 645-2007 meters on one RS-485 line, on a pseudo-terminal or over TCP (as a
transparent serial server passes the line's bytes through).

Each meter answers from a value table (engineering values by point name; its profile says how
each is encoded): read data (11H) for the identifiers its profile names, in follow-up frames
(B1H, then 92H/B2H to each read-follow-up 12H) when an answer is longer than ``max_data``;
the broadcast read-address (13H); and error answers (D1H, error byte "no requested data") for
identifiers it does not have or is told to ``refuse``. For the tests: ``silent`` (the meter
does not answer), ``garble`` (a corrupt copy of each answer goes first), ``unavailable``
(points sent as FFH, as meters fill what they lack) and ``reads`` (how often each identifier
was asked for).

Values can be live: ``source`` (the virtual building's meter model at its clock, as
simulator/building.py sets it) is asked at each read-data request.

Frames and values are made with the driver's codec, as the Modbus simulator uses the Modbus
codec: the codec's own tests hold it to frames captured from real meters.

``python -m simulator.dlt645_meter --address 000000000001 --tcp 127.0.0.1:8899`` (or
``--pty``, which prints the device path) serves one meter with plausible values.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import tty
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from core.data_dir import data_dir
from core.yaml_load import load_yaml_file
from drivers.dlt645.codec import (
    ANSWER,
    BROADCAST,
    ERROR,
    FOLLOWS,
    READ_ADDRESS,
    READ_DATA,
    READ_FOLLOW,
    Frame,
    FrameReader,
    address_bytes,
    encode_bcd,
    encode_frame,
)
from drivers.dlt645.profile import Dlt645Point, Dlt645Profile

BUILTIN_PROFILE = data_dir() / "profiles" / "dlt645_meter.yaml"
NO_DATA = 0x02  # the error byte's "no requested data"
OTHER = 0x01


def load_profile(path: Path = BUILTIN_PROFILE) -> Dlt645Profile:
    return Dlt645Profile.model_validate(load_yaml_file(path))


def plausible_values(profile: Dlt645Profile) -> dict[str, float]:
    """A value for every point, by its unit: what a lightly loaded office floor shows."""
    by_unit = {"V": 229.8, "A": 12.345, "W": 2712.3, "kWh": 12345.67, "Hz": 50.01}
    return {p.name: by_unit.get(p.unit, 0.95) for p in profile.points}


@dataclass
class SimulatedMeter:
    """One meter: its address, profile and values (engineering units, after the profile's
    scale), and how it misbehaves."""

    address: str
    profile: Dlt645Profile
    values: dict[str, float] = field(default_factory=dict)
    refuse: set[str] = field(default_factory=set)  # DIs answered with an error, e.g. "02800002"
    # Points the meter does not have but sends in their block as FFH ("not available"): a
    # single-phase meter's phases B and C in 0201FF00.
    unavailable: set[str] = field(default_factory=set)
    silent: bool = False
    garble: bool = False
    max_data: int = 200  # longer answers go out in follow-up frames
    wakeup: int = 2  # FEH bytes before each answer, as many meters send them
    reads: Counter[str] = field(default_factory=Counter)  # by DI, as asked
    # Where live values come from (the virtual building's model at its clock): asked at each
    # read-data request, its numbers replace ``values``.
    source: Callable[[], Mapping[str, object]] | None = None
    # The follow-up frames still to send, by DI.
    _rest: dict[int, list[bytes]] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        address_bytes(self.address)  # a bad address fails here, not at the first request
        if not self.values:
            self.values = plausible_values(self.profile)

    def refresh(self) -> None:
        """Take the values of ``source`` now (numbers only)."""
        if self.source is None:
            return
        for name, value in self.source().items():
            if isinstance(value, int | float):  # bool too: a flag reads as 0 or 1
                self.values[name] = float(value)

    def _frame(self, control: int, data: bytes) -> bytes:
        frame = encode_frame(self.address, control, data, self.wakeup)
        if self.garble:
            corrupt = bytearray(frame)
            corrupt[-2] ^= 0xFF  # the checksum
            return bytes(corrupt) + frame
        return frame

    def _items(self, di: str) -> bytes | None:
        points: list[Dlt645Point] = [p for p in self.profile.points if p.di == di]
        if not points:
            return None
        size = points[0].data_format.size
        out = bytearray(size * (1 + max(p.item for p in points)))
        for p in points:
            value = self.values.get(p.name, 0.0) / p.scale
            out[p.item * size : (p.item + 1) * size] = (
                b"\xff" * size
                if p.name in self.unavailable
                else encode_bcd(value, p.data_format, p.signed)
            )
        return bytes(out)

    def answer(self, frame: Frame) -> bytes:
        """What this meter sends in answer to ``frame`` (nothing if it is not for it)."""
        if frame.from_meter or self.silent:
            return b""
        if frame.address != self.address and frame.address != BROADCAST:
            return b""
        function = frame.function
        if function == READ_ADDRESS and frame.address == BROADCAST:
            return self._frame(ANSWER | READ_ADDRESS, address_bytes(self.address))
        if frame.address == BROADCAST:
            return b""
        if function == READ_DATA and len(frame.data) >= 4:
            ident = frame.data[:4]
            di = int.from_bytes(ident, "little")
            self.reads[f"{di:08X}"] += 1
            self.refresh()
            items = None if f"{di:08X}" in self.refuse else self._items(f"{di:08X}")
            if items is None:
                return self._frame(ANSWER | ERROR | READ_DATA, bytes([NO_DATA]))
            first, step = self.max_data - 4, self.max_data - 5
            parts = [items[:first]] + [items[i : i + step] for i in range(first, len(items), step)]
            self._rest[di] = parts[1:]
            control = ANSWER | READ_DATA | (FOLLOWS if len(parts) > 1 else 0)
            return self._frame(control, ident + parts[0])
        if function == READ_FOLLOW and len(frame.data) == 5:
            ident, seq = frame.data[:4], frame.data[4]
            rest = self._rest.get(int.from_bytes(ident, "little"), [])
            if not 1 <= seq <= len(rest):
                return self._frame(ANSWER | ERROR | READ_FOLLOW, bytes([OTHER]))
            control = ANSWER | READ_FOLLOW | (FOLLOWS if seq < len(rest) else 0)
            return self._frame(control, ident + rest[seq - 1] + bytes([seq]))
        return b""


class MeterLine:
    """The meters on one line: the bytes the master sends in, the meters' answers out."""

    def __init__(self, meters: Sequence[SimulatedMeter]) -> None:
        self.meters = list(meters)
        self._reader = FrameReader()

    def receive(self, data: bytes) -> bytes:
        out = b""
        for frame in self._reader.feed(data):
            for meter in self.meters:
                out += meter.answer(frame)
        return out


@contextlib.asynccontextmanager
async def serve_tcp(
    meters: Sequence[SimulatedMeter], host: str = "127.0.0.1", port: int = 0
) -> AsyncIterator[int]:
    """The meters behind a transparent serial server at ``host``; yields its port. Each
    connection is the line (a serial server has one)."""
    line = MeterLine(meters)
    writers: set[asyncio.StreamWriter] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.add(writer)
        try:
            while data := await reader.read(4096):
                answer = line.receive(data)
                if answer:
                    writer.write(answer)
                    await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writers.discard(writer)
            writer.close()

    server = await asyncio.start_server(handle, host, port)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        server.close()
        for writer in list(writers):
            writer.close()
        with contextlib.suppress(Exception):
            await server.wait_closed()


@contextlib.asynccontextmanager
async def serve_pty(meters: Sequence[SimulatedMeter]) -> AsyncIterator[str]:
    """The meters on a pseudo-terminal; yields the device path the gateway opens as its
    serial port."""
    line = MeterLine(meters)
    master, slave = os.openpty()
    tty.setraw(slave)  # no echo, no line editing until the gateway's own settings apply
    os.set_blocking(master, False)
    loop = asyncio.get_running_loop()

    def readable() -> None:
        try:
            data = os.read(master, 4096)
        except (BlockingIOError, OSError):
            return  # EIO while nobody holds the other end
        answer = line.receive(data)
        if answer:
            with contextlib.suppress(BlockingIOError):
                os.write(master, answer)

    loop.add_reader(master, readable)
    try:
        yield os.ttyname(slave)
    finally:
        loop.remove_reader(master)
        os.close(master)
        os.close(slave)


def meters_from(
    profile: Dlt645Profile, addresses: Sequence[str], values: Mapping[str, float] | None = None
) -> list[SimulatedMeter]:
    return [SimulatedMeter(a, profile, dict(values or {})) for a in addresses]


async def _main(args: argparse.Namespace) -> None:
    profile = load_profile(Path(args.profile))
    meters = meters_from(profile, args.address)
    if args.pty:
        async with serve_pty(meters) as path:
            print(path, flush=True)
            await asyncio.Event().wait()
    host, _, port = args.tcp.rpartition(":")
    async with serve_tcp(meters, host or "127.0.0.1", int(port)) as bound:
        print(f"{host or '127.0.0.1'}:{bound}", flush=True)
        await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description="simulated DL/T 645-2007 meters on one line")
    parser.add_argument("--profile", default=str(BUILTIN_PROFILE), help="a dlt645 profile")
    parser.add_argument(
        "--address", action="append", required=True, help="a meter's 12 digits (repeatable)"
    )
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--tcp", help="HOST:PORT to listen on, as a serial server")
    where.add_argument("--pty", action="store_true", help="a pseudo-terminal; prints its path")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main(parser.parse_args()))


if __name__ == "__main__":
    main()
