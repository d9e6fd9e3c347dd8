"""Finding the Modbus devices on a line (`guanjia scan`): which unit ids answer, what they say
they are (Read Device Identification, SunSpec), and how the registers of candidate profiles
read on them.

Polite by construction, since a scan runs on a live line beside other masters and slow
devices: every request goes through one budget that counts it, gives it the short per-unit
timeout and no retry, stops everything at a hard deadline, and on a serial line (RTU, or RTU
through a serial server) sends one request at a time with a pause after each answer or
timeout. Only Modbus TCP, where answers carry a transaction id, has a few requests in flight.

A unit is present when it answers anything at all, a Modbus exception too (a meter without
holding register 0 refuses the read, and so shows it is there); a TCP gateway's exceptions 10
and 11 say the unit is *not* there.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import struct
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypeVar
from urllib.parse import parse_qs, urlsplit

from pydantic import TypeAdapter, ValidationError
from pymodbus.client import AsyncModbusSerialClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException
from pymodbus.framer import FramerType

from drivers.modbus.codec import (
    NOT_AVAILABLE,
    PointSpec,
    Raw,
    decode_all,
    decode_registers,
    resolve,
)
from drivers.modbus.config import (
    ModbusConnection,
    RtuConnection,
    RtuOverTcpConnection,
    TcpConnection,
)
from drivers.modbus.errors import (
    EXCEPTION_NAMES,
    ModbusConnectionError,
    ModbusError,
    ModbusExceptionResponse,
    ModbusFrameError,
    ModbusTimeout,
)
from drivers.modbus.profile import Function, Profile
from drivers.modbus.serial_client import open_problem
from drivers.modbus.stream_client import READ_DEVICE_ID, StreamClient

Line = TcpConnection | RtuOverTcpConnection | RtuConnection
GATEWAY_ABSENT = frozenset({10, 11})  # path unavailable, target did not answer
SUNSPEC_MARKER = (0x5375, 0x6E53)  # "SunS"
SUNSPEC_BASES = (40000, 0, 50000)  # where the SunSpec spec says to look, in its order
SUNSPEC_END = 0xFFFF
MAX_SUNSPEC_MODELS = 64  # a real chain has a handful; a longer one is garbage
MAX_ID_PAGES = 4  # continuation requests of a device identification that "more follows"
ID_OBJECTS = {
    0: "VendorName",
    1: "ProductCode",
    2: "MajorMinorRevision",
    3: "VendorUrl",
    4: "ProductName",
    5: "ModelName",
    6: "UserApplicationName",
}
SerialLine = RtuConnection  # for the command that prints the snippet
TcpLine = TcpConnection
_LINE_URL = "tcp://HOST:PORT, rtu-over-tcp://HOST:PORT or rtu:/dev/ttyUSB0?baudrate=9600&parity=N"


T = TypeVar("T")


class ScanError(Exception):
    """A scan that cannot start (a bad line address): one line for the user."""


def parse_line(url: str) -> Line:
    """A line from the command line: ``tcp://HOST[:PORT]``, ``rtu-over-tcp://HOST:PORT``
    (``?baudrate=``) or ``rtu:/dev/ttyUSB0`` (``?baudrate=&parity=&bytesize=&stopbits=``),
    checked by the site file's own connection models."""
    parts = urlsplit(url)
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    data: dict[str, object]
    if parts.scheme == "tcp":
        data = {"transport": "tcp", "host": parts.hostname, "port": parts.port or 502}
    elif parts.scheme in ("rtu-over-tcp", "rtu_over_tcp"):
        data = {"transport": "rtu_over_tcp", "host": parts.hostname, "port": parts.port or 502}
    elif parts.scheme == "rtu":
        data = {"transport": "rtu", "port": parts.path or parts.netloc}
    else:
        raise ScanError(f"--modbus {url}: not a line address; write {_LINE_URL}")
    if data.get("host") is None and data["transport"] != "rtu":
        raise ScanError(f"--modbus {url}: no host; write {_LINE_URL}")
    data |= query
    try:
        conn: Line = TypeAdapter(ModbusConnection).validate_python(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(p) for p in first["loc"][1:]) or "address"
        raise ScanError(f"--modbus {url}: {key}: {first['msg']}; write {_LINE_URL}") from None
    return conn


def candidates(profiles: Iterable[object]) -> list[Profile]:
    """The profiles of this driver among all loaded ones."""
    return [p for p in profiles if isinstance(p, Profile)]


def line_text(conn: Line) -> str:
    if isinstance(conn, RtuConnection):
        return f"rtu:{conn.port}?baudrate={conn.baudrate}&parity={conn.parity}"
    scheme = "tcp" if isinstance(conn, TcpConnection) else "rtu-over-tcp"
    return f"{scheme}://{conn.host}:{conn.port}"


def parse_units(text: str) -> list[int]:
    """``1-247``, ``1,2,5-8``: unit ids in the order given, each once."""
    units: list[int] = []
    for part in text.split(","):
        match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if match is None:
            raise ScanError(f"--units {text}: write unit ids as 1-247 or 1,2,5-8")
        low = int(match[1])
        high = int(match[2]) if match[2] else low
        if not 1 <= low <= high <= 247:
            raise ScanError(
                f"--units {text}: unit ids go from 1 to 247, low to high (0 is broadcast, "
                "which nobody answers)"
            )
        units += [u for u in range(low, high + 1) if u not in units]
    return units


@dataclass(frozen=True, slots=True)
class Limits:
    """How hard a scan may press a line."""

    timeout: float = 0.3  # per request; no retries
    pause: float = 0.05  # after each request on a serial line (RTU, RTU over TCP)
    concurrency: int = 4  # requests in flight on Modbus TCP; serial lines have 1
    max_time: float = 120.0  # the whole line: a sweep past it stops and says where
    probe_points: int = 4  # registers read per candidate profile


@dataclass(frozen=True, slots=True)
class SunSpecModel:
    model_id: int
    length: int
    address: int  # of its ID register


@dataclass(slots=True)
class SunSpec:
    base: int
    models: list[SunSpecModel] = field(default_factory=list)
    manufacturer: str = ""
    model: str = ""
    version: str = ""
    serial_number: str = ""
    complete: bool = False  # the chain ended with its end marker

    @property
    def model_ids(self) -> list[int]:
        return [m.model_id for m in self.models]


@dataclass(slots=True)
class ProfileProbe:
    """How a candidate profile's points read on a unit."""

    profile: str
    tried: list[str] = field(default_factory=list)
    good: dict[str, object] = field(default_factory=dict)
    bad: dict[str, str] = field(default_factory=dict)  # point -> reason (exception_2 ...)

    @property
    def score(self) -> float:
        """The share of the tried points that read well; a zero counts half, since unused
        registers of many devices read zero too."""
        if not self.tried:
            return 0.0
        weight = sum(0.5 if value == 0 else 1.0 for value in self.good.values())
        return weight / len(self.tried)


@dataclass(slots=True)
class FoundUnit:
    unit: int
    answer: str  # what the presence probe got: "registers" or "exception 2 (...)"
    identity: dict[int, str] = field(default_factory=dict)  # FC 43 objects by id
    identity_refused: str = ""  # why there is none: "exception 1 (illegal_function)", ...
    sunspec: SunSpec | None = None
    probes: list[ProfileProbe] = field(default_factory=list)

    @property
    def identity_named(self) -> dict[str, str]:
        return {ID_OBJECTS.get(i, f"object_{i:#04x}"): v for i, v in self.identity.items()}


@dataclass(slots=True)
class LineScan:
    line: str
    connection: Line
    units: list[FoundUnit] = field(default_factory=list)
    tried: list[int] = field(default_factory=list)  # unit ids the sweep asked
    not_tried: list[int] = field(default_factory=list)  # left when the time ran out
    requests: int = 0
    error: str = ""  # why the line could not be scanned at all
    noise: int = 0  # answers that were no valid frame
    stopped: str = ""  # why the scan stopped early


class _OutOfTime(Exception):
    pass


class _Wire(Protocol):
    async def read(
        self, unit: int, function: int, address: int, count: int, t: float
    ) -> list[int]: ...
    async def device_id(self, unit: int, code: int, obj: int, t: float) -> bytes: ...
    def close(self) -> None: ...


class _StreamWire:
    """TCP and RTU over TCP: the driver's own client (RTU framing knows FC 43's length)."""

    def __init__(self, conn: TcpConnection | RtuOverTcpConnection, timeout: float) -> None:
        framing: Literal["tcp", "rtu"] = "tcp" if isinstance(conn, TcpConnection) else "rtu"
        self.client = StreamClient(conn.host, conn.port, framing, connect_timeout=max(timeout, 2))

    async def read(self, unit: int, function: int, address: int, count: int, t: float) -> list[int]:
        return [int(r) for r in await self.client.read(unit, function, address, count, t)]

    async def device_id(self, unit: int, code: int, obj: int, t: float) -> bytes:
        pdu = await self.client.request(unit, bytes([READ_DEVICE_ID, 0x0E, code, obj]), 0, t)
        if pdu[0] == READ_DEVICE_ID | 0x80:
            raise ModbusExceptionResponse(READ_DEVICE_ID, pdu[1] if len(pdu) > 1 else 0)
        return pdu

    def close(self) -> None:
        self.client.close()


class _SerialWire:
    """A local serial port, through pymodbus (as the driver's SerialClient), no retries."""

    def __init__(self, conn: RtuConnection, timeout: float) -> None:
        self.port = conn.port
        self.client = AsyncModbusSerialClient(
            conn.port,
            framer=FramerType.RTU,
            baudrate=conn.baudrate,
            bytesize=conn.bytesize,
            parity=conn.parity,
            stopbits=conn.stopbits,
            timeout=timeout,
            retries=0,
            reconnect_delay=0,
        )

    async def _call(self, function: int, make: Callable[[], Awaitable[Any]], t: float) -> Any:
        if not self.client.connected and not await self.client.connect():
            raise open_problem(self.port)
        try:
            response = await asyncio.wait_for(make(), t + 0.5)
        except (TimeoutError, ModbusIOException):
            raise ModbusTimeout(f"no answer within {t:g} s") from None
        except ConnectionException as exc:
            raise ModbusConnectionError(str(exc)) from exc
        except ModbusException as exc:
            raise ModbusFrameError(str(exc)) from exc
        if response.isError():
            code = int(getattr(response, "exception_code", 0))
            raise ModbusExceptionResponse(function, code)
        return response

    async def read(self, unit: int, function: int, address: int, count: int, t: float) -> list[int]:
        c = self.client
        call = c.read_holding_registers if function == 3 else c.read_input_registers
        response = await self._call(function, lambda: call(address, count=count, device_id=unit), t)
        return [int(r) for r in getattr(response, "registers", [])]

    async def device_id(self, unit: int, code: int, obj: int, t: float) -> bytes:
        response = await self._call(
            READ_DEVICE_ID,
            lambda: self.client.read_device_information(
                read_code=code, object_id=obj, device_id=unit
            ),
            t,
        )
        # Back to the PDU's shape, so that both wires are parsed by one function.
        info: dict[int, bytes | list[bytes]] = getattr(response, "information", {})
        objects = b""
        count = 0
        for oid, value in info.items():
            for item in value if isinstance(value, list) else [value]:
                objects += bytes([oid, len(item)]) + item
                count += 1
        head = [
            READ_DEVICE_ID,
            0x0E,
            code,
            int(getattr(response, "conformity", 0)),
            int(getattr(response, "more_follows", 0)),
            int(getattr(response, "next_object_id", 0)),
            count,
        ]
        return bytes(head) + objects

    def close(self) -> None:
        self.client.close()


class _Budget:
    """Every request of a line's scan: counted, timed out, paused after, stopped at the end."""

    def __init__(self, wire: _Wire, serial_line: bool, limits: Limits, scan: LineScan) -> None:
        self.wire = wire
        self.limits = limits
        self.scan = scan
        self.pause = limits.pause if serial_line else 0.0
        self.slots = asyncio.Semaphore(1 if serial_line else max(1, limits.concurrency))
        loop = asyncio.get_running_loop()
        self.deadline = loop.time() + limits.max_time

    def timeout(self) -> float:
        left = self.deadline - asyncio.get_running_loop().time()
        if left <= 0:
            raise _OutOfTime
        return min(self.limits.timeout, left)

    async def _run(self, call: Callable[[float], Awaitable[T]]) -> T:
        async with self.slots:
            t = self.timeout()
            self.scan.requests += 1
            try:
                return await call(t)
            except ModbusFrameError:
                self.scan.noise += 1
                raise
            finally:
                if self.pause:
                    await asyncio.sleep(self.pause)

    async def read(self, unit: int, function: int, address: int, count: int) -> list[int]:
        return await self._run(lambda t: self.wire.read(unit, function, address, count, t))

    async def device_id(self, unit: int, code: int, obj: int) -> bytes:
        return await self._run(lambda t: self.wire.device_id(unit, code, obj, t))


def _exception_text(exc: ModbusExceptionResponse) -> str:
    return f"exception {exc.code} ({EXCEPTION_NAMES.get(exc.code, 'unknown')})"


async def _present(budget: _Budget, unit: int) -> str | None:
    """What the unit answers to a read of holding register 0, or None when nobody does."""
    try:
        await budget.read(unit, 3, 0, 1)
    except ModbusExceptionResponse as exc:
        return None if exc.code in GATEWAY_ABSENT else _exception_text(exc)
    except (ModbusTimeout, ModbusFrameError):
        return None
    return "registers"


def parse_device_id(pdu: bytes) -> tuple[dict[int, str], int, bool, int]:
    """Objects, conformity level, "more follows" and the next object id of an FC 43/14 answer."""
    if len(pdu) < 7 or pdu[0] != READ_DEVICE_ID or pdu[1] != 0x0E:
        raise ModbusFrameError("not a device identification answer")
    conformity, more, next_id, count = pdu[3], pdu[4] == 0xFF, pdu[5], pdu[6]
    objects: dict[int, str] = {}
    at = 7
    for _ in range(count):
        if at + 2 > len(pdu) or at + 2 + pdu[at + 1] > len(pdu):
            raise ModbusFrameError("device identification objects run past the answer")
        oid, size = pdu[at], pdu[at + 1]
        objects[oid] = pdu[at + 2 : at + 2 + size].decode("ascii", "replace").strip("\x00 ")
        at += 2 + size
    return objects, conformity, more, next_id


async def _identify(budget: _Budget, found: FoundUnit) -> None:
    """The basic objects, then the regular ones where the device says it has them."""
    objects: dict[int, str] = {}
    try:
        code, obj = 1, 0
        for _ in range(MAX_ID_PAGES):
            page, conformity, more, next_id = parse_device_id(
                await budget.device_id(found.unit, code, obj)
            )
            objects |= page
            if more and next_id > obj:
                obj = next_id
                continue
            if code == 1 and conformity & 0x7F >= 2:  # regular objects too
                code, obj = 2, 3
                continue
            break
    except ModbusExceptionResponse as exc:
        if not objects:
            found.identity_refused = _exception_text(exc)
    except ModbusTimeout:
        if not objects:
            found.identity_refused = "no answer"
    except ModbusFrameError as exc:
        if not objects:
            found.identity_refused = f"garbled answer ({exc})"
    found.identity = {i: v for i, v in sorted(objects.items()) if v}


def _text(registers: Sequence[int]) -> str:
    data = b"".join(struct.pack(">H", r) for r in registers)
    return data.decode("ascii", "replace").strip("\x00 ")


async def _sunspec(budget: _Budget, unit: int) -> SunSpec | None:
    """The SunSpec marker at 40000, 0 or 50000, then the model chain from it."""
    for base in SUNSPEC_BASES:
        try:
            if tuple(await budget.read(unit, 3, base, 2)) == SUNSPEC_MARKER:
                break
        except (ModbusExceptionResponse, ModbusTimeout, ModbusFrameError):
            continue
    else:
        return None
    found = SunSpec(base)
    address = base + 2
    with contextlib.suppress(ModbusExceptionResponse, ModbusTimeout, ModbusFrameError):
        for _ in range(MAX_SUNSPEC_MODELS):
            if address + 2 > 0xFFFF:
                break
            model_id, length = await budget.read(unit, 3, address, 2)
            if model_id == SUNSPEC_END:
                found.complete = True
                break
            found.models.append(SunSpecModel(model_id, length, address))
            if model_id == 1 and length >= 64:  # common: Mn, Md, Opt, Vr, SN
                regs = await budget.read(unit, 3, address + 2, 64)
                found.manufacturer, found.model = _text(regs[0:16]), _text(regs[16:32])
                found.version, found.serial_number = _text(regs[40:48]), _text(regs[48:64])
            address += 2 + length
    return found


def probe_specs(profile: Profile, points: int) -> tuple[list[PointSpec], list[PointSpec]]:
    """A few telling registers of a profile, and the scale factors they need.

    Points with a plausible range that excludes zero come first (a frequency, a model id):
    unused registers read zero, which proves nothing, but 0 Hz is no meter's frequency.
    """
    specs = resolve(profile)
    by_name = {s.name: s for s in specs}
    numbers = [
        s
        for s in specs
        if s.is_number and not s.function.is_bit and s.valid is not None and s.bit is None
    ]
    numbers.sort(key=lambda s: (s.valid is None or s.valid.contains(0), s.address))
    chosen = numbers[:points]
    factors = {s.scale_factor for s in chosen if s.scale_factor}
    return chosen, [by_name[f] for f in sorted(factors)]


async def _probe(budget: _Budget, unit: int, profile: Profile, points: int) -> ProfileProbe:
    chosen, factors = probe_specs(profile, points)
    probe = ProfileProbe(profile.name, tried=[s.name for s in chosen])
    raws: dict[str, Raw] = {}
    for spec in [*factors, *chosen]:
        function = 4 if spec.function is Function.INPUT else 3
        try:
            raws[spec.name] = decode_registers(
                spec, await budget.read(unit, function, spec.address, spec.count)
            )
        except ModbusExceptionResponse as exc:
            probe.bad[spec.name] = f"exception_{exc.code}"
            if len(probe.bad) >= 2:  # refused twice: not this device's map
                break
        except (ModbusTimeout, ModbusFrameError) as exc:
            probe.bad[spec.name] = exc.reason
    decoded = decode_all([*factors, *chosen], raws)
    for spec in chosen:
        if spec.name in decoded.values:
            probe.good[spec.name] = decoded.values[spec.name]
        elif spec.name in decoded.bad:
            probe.bad[spec.name] = decoded.bad[spec.name]
        elif spec.name not in probe.bad:
            why = "not_available" if raws.get(spec.name) is NOT_AVAILABLE else "not_read"
            probe.bad[spec.name] = why
    return probe


async def _examine(
    budget: _Budget, found: FoundUnit, candidates: Sequence[Profile], points: int
) -> None:
    await _identify(budget, found)
    found.sunspec = await _sunspec(budget, found.unit)
    if found.identity or found.sunspec is not None:
        return  # the device said what it is; probing every profile would only add traffic
    for profile in candidates:
        found.probes.append(await _probe(budget, found.unit, profile, points))


async def scan_line(
    conn: Line,
    units: Sequence[int],
    limits: Limits = Limits(),
    candidates: Sequence[Profile] = (),
) -> LineScan:
    """Sweep ``units`` on one line, then identify what answered and probe ``candidates`` on
    the units that say nothing of themselves."""
    scan = LineScan(line_text(conn), conn)
    wire: _Wire
    if isinstance(conn, RtuConnection):
        wire = _SerialWire(conn, limits.timeout)
    else:
        wire = _StreamWire(conn, limits.timeout)
    budget = _Budget(wire, not isinstance(conn, TcpConnection), limits, scan)
    pending = list(units)

    async def sweep_one(unit: int) -> None:
        answer = await _present(budget, unit)
        scan.tried.append(unit)
        if answer is not None:
            scan.units.append(FoundUnit(unit, answer))

    try:
        # Workers take the next unit from one list: at most `slots` requests in flight.
        async def worker() -> None:
            while pending:
                unit = pending.pop(0)
                try:
                    await sweep_one(unit)
                except _OutOfTime:
                    pending.insert(0, unit)
                    return

        workers = 1 if budget.pause else max(1, limits.concurrency)
        await asyncio.gather(*(worker() for _ in range(workers)))
        scan.units.sort(key=lambda f: f.unit)
        scan.tried.sort()
        if pending:
            scan.not_tried = sorted(pending)
            scan.stopped = f"the sweep ran out of its {limits.max_time:g} s"
        for found in scan.units:
            await _examine(budget, found, candidates, limits.probe_points)
    except _OutOfTime:
        scan.stopped = scan.stopped or (
            f"identification stopped at {limits.max_time:g} s; the units after it are "
            "listed without it"
        )
    except ModbusConnectionError as exc:
        scan.error = str(exc)
    except ModbusError as exc:  # pragma: no cover - every other kind is handled per request
        scan.error = str(exc)
    finally:
        wire.close()
    return scan
