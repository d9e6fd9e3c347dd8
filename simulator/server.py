"""Serving device models over Modbus TCP or RTU-over-TCP with pymodbus's SimDevice datastore.

Each profile's register map becomes a pymodbus device image: in every data table the profile
uses, every register from the lowest to the highest point address is readable (zero unless a
point lives there) except the profile's holes, which are left out so a read into one gets an
"illegal data address" exception, as the real device answers. Coils, discrete inputs, holding
and input registers are separate tables, as on real meters.

On every request the SimDevice action refreshes the points of the addressed table from the model
at the current simulated time, encoded with the project's own codec (scale, offset, SunSpec
scale factors, word and byte order), so the simulator and the gateway agree by construction on
the encoding and a profile mistake cannot hide behind a second implementation. Writes are
decoded back to engineering values and handed to the model's ``on_write``.

Several devices may share a server (an RS-485 line behind a gateway: framer ``rtu``) and even a
unit id (units of one CoolMasterNet that differ only by base address).

Read Device Identification (FC 43 / MEI 14) is answered from the profile's ``identity`` block
for each unit; a unit whose profile has none refuses it (illegal function), as most meters do.
Each server counts the requests it receives by unit id, and how many it was answering at once,
for the tests of polite clients (`guanjia scan`).

Faults for the tests and the demo: ``dead`` (the connection is accepted, the unit never
answers), ``delay`` (answers after N seconds) and bad values (a point reads NaN or an
out-of-range / "not available" raw value).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import itertools
import logging
import math
import socket
import struct
from collections import Counter
from collections.abc import Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pymodbus.constants import ExcCodes
from pymodbus.exceptions import ModbusIOException
from pymodbus.framer import FramerType
from pymodbus.pdu import ExceptionResponse, ModbusPDU
from pymodbus.pdu.mei_message import ReadDeviceInformationRequest, ReadDeviceInformationResponse
from pymodbus.server import ModbusTcpServer
from pymodbus.server.requesthandler import ServerRequestHandler
from pymodbus.simulator import DataType as SimType
from pymodbus.simulator import SimData, SimDevice
from pymodbus.transaction import TransactionManager

from core.types import Value
from drivers.modbus.codec import (
    INT_RANGES,
    PointSpec,
    decode_raw,
    encode_raw,
    field_range,
    masked_words,
    resolve,
    to_engineering,
    to_raw,
)
from drivers.modbus.profile import DataType, Function, Profile
from simulator.models import DeviceModel

log = logging.getLogger("guanjia.simulator")

Framer = Literal["tcp", "rtu"]

# Function codes to the table they address.
_FC_TABLE: dict[int, Function] = {
    1: Function.COIL,
    5: Function.COIL,
    15: Function.COIL,
    2: Function.DISCRETE,
    3: Function.HOLDING,
    6: Function.HOLDING,
    16: Function.HOLDING,
    22: Function.HOLDING,
    23: Function.HOLDING,
    4: Function.INPUT,
}
_TABLE_ORDER = (Function.COIL, Function.DISCRETE, Function.HOLDING, Function.INPUT)


@dataclass
class Faults:
    """What is wrong with a simulated device right now."""

    dead: bool = False
    delay: float = 0.0
    # point -> engineering value to serve instead of the model's; None: NaN for floats, the
    # profile's first "not available" raw value or the type's extreme for integers.
    bad_values: dict[str, float | None] = field(default_factory=dict)


class SimulatedDevice:
    """One simulated device: a profile's register map at a unit id and base, fed by a model."""

    def __init__(
        self,
        profile: Profile,
        model: DeviceModel,
        unit: int = 1,
        base: int | None = None,
        name: str | None = None,
    ) -> None:
        if not 0 <= unit <= 255:
            raise ValueError(f"unit {unit} is outside 0..255")
        self.profile = profile
        self.model = model
        self.unit = unit
        self.base = profile.base if base is None else base
        self.name = name or profile.name
        self.specs = resolve(profile, self.base)
        self.by_name = {s.name: s for s in self.specs}
        # Points that scale others (PT and CT ratios): a model that leaves them out serves 1,
        # as a meter wired without transformers is set.
        self._ratios = frozenset(r for s in self.specs for r in s.scale_by)
        self.faults = Faults()
        shift = self.base - profile.base
        self.holes: dict[Function, list[tuple[int, int]]] = {f: [] for f in _TABLE_ORDER}
        for hole in profile.holes:
            self.holes[hole.function].append((hole.start + shift, hole.end + shift))
        if model.profile.name != profile.name:
            raise ValueError(
                f"{self.name}: the model simulates {model.profile.name}, not {profile.name}"
            )

    # --- faults

    def set_dead(self, dead: bool = True) -> None:
        """Accept connections but never answer (a powered-off device behind a gateway)."""
        self.faults.dead = dead

    def set_delay(self, seconds: float) -> None:
        """Answer every request ``seconds`` late (a slow or overloaded device)."""
        if seconds < 0:
            raise ValueError("delay must be >= 0")
        self.faults.delay = seconds

    def set_bad_value(self, point: str, value: float | None = None) -> None:
        """Serve ``value`` (default: NaN or a "not available" raw value) for ``point``."""
        if point not in self.by_name:
            raise KeyError(f"{self.name} has no point {point!r}")
        self.faults.bad_values[point] = value

    def clear_faults(self) -> None:
        self.faults = Faults()

    # --- layout

    def table_addresses(self, function: Function) -> set[int]:
        """Addresses readable in one table: lowest to highest point address minus holes."""
        specs = [s for s in self.specs if s.function is function]
        if not specs:
            return set()
        low = min(s.address for s in specs)
        high = max(s.end for s in specs)
        out = set(range(low, high + 1))
        for start, end in self.holes[function]:
            out -= set(range(start, end + 1))
        return out

    def writable_addresses(self, function: Function) -> set[int]:
        out: set[int] = set()
        for s in self.specs:
            if s.function is function and s.writable is not None:
                out.update(range(s.address, s.end + 1))
        return out

    # --- encoding

    def image(self, function: Function) -> dict[int, int]:
        """Register (or bit) values of one table's points from the model at simulated now."""
        values = self.model.values()
        if self._ratios:
            values = {**dict.fromkeys(self._ratios, 1), **values}
        out: dict[int, int] = {}
        for spec in self.specs:
            if spec.function is not function:
                continue
            if spec.name in self.faults.bad_values:
                words = self._bad_words(spec, self.faults.bad_values[spec.name], values)
            elif spec.name in values:
                words = self._encode(spec, values[spec.name], values)
            else:
                continue  # not modelled: the registers keep what they hold (zero or a write)
            if spec.field_mask is not None:
                # Several points may share one register (bits, fields): merge their bits.
                addresses = range(spec.address, spec.end + 1)
                current = [out.get(a, 0) for a in addresses]
                out.update(zip(addresses, masked_words(spec, current, words), strict=True))
                continue
            for i, word in enumerate(words):
                out[spec.address + i] = word
        return out

    def _sf(self, spec: PointSpec, values: dict[str, Value]) -> int | None:
        if spec.scale_factor is None:
            return None
        sf = values.get(spec.scale_factor)
        return int(sf) if isinstance(sf, int | float) and not isinstance(sf, bool) else 0

    def _encode(self, spec: PointSpec, value: Value, values: dict[str, Value]) -> list[int]:
        if spec.dtype is DataType.BOOL:
            return encode_raw(spec, bool(value))
        if spec.dtype is DataType.STRING:
            return encode_raw(spec, str(value))
        if spec.dtype is DataType.DATETIME:  # ISO-8601 text or Unix seconds
            return encode_raw(spec, value if isinstance(value, str) else int(value))
        if isinstance(value, str):
            raise TypeError(f"{self.name}.{spec.name}: model gave a string {value!r}")
        ratio = math.prod(float(values.get(r, 1)) for r in spec.scale_by) if spec.scale_by else 1.0
        raw = to_raw(spec, float(value), self._sf(spec, values), ratio)
        if spec.dtype in INT_RANGES:  # clamp what the register cannot hold, as a device saturates
            low, high = field_range(spec) if spec.field_width else INT_RANGES[spec.dtype]
            raw = min(max(int(raw), low), high)
        return encode_raw(spec, raw)

    def _bad_words(
        self, spec: PointSpec, value: float | None, values: dict[str, Value]
    ) -> list[int]:
        if value is not None:
            return self._encode(spec, value, values)
        if spec.dtype in (DataType.FLOAT32, DataType.FLOAT64):
            return encode_raw(spec, math.nan)
        if spec.dtype is DataType.DATETIME:
            # Its "not available" words, or words that are no date (0xFF is no BCD digit, no
            # month; as Unix seconds, the latest time there is).
            words = min(spec.invalid_words) if spec.invalid_words else b"\xff" * (2 * spec.count)
            return list(struct.unpack(f">{spec.count}H", words))
        if spec.invalid:
            return encode_raw(spec, min(spec.invalid))
        if spec.dtype in INT_RANGES:  # clamp what the register cannot hold, as a device saturates
            high = field_range(spec)[1] if spec.field_width else INT_RANGES[spec.dtype][1]
            return encode_raw(spec, high)
        return encode_raw(spec, "\ufffd" if spec.dtype is DataType.STRING else 1)

    def decode_write(self, spec: PointSpec, words: Sequence[int]) -> Value:
        """The engineering value a write of the point's registers means."""
        raw = decode_raw(spec, list(words))
        if isinstance(raw, bool | str):
            return raw
        return to_engineering(spec, raw, self._sf(spec, self.model.values()))


class _UnitImage:
    """Everything served at one unit id: one or more devices' points, merged per table."""

    def __init__(self, unit: int, devices: Sequence[SimulatedDevice]) -> None:
        self.unit = unit
        self.devices = list(devices)
        self.valid: dict[Function, set[int]] = {}
        self.writable: dict[Function, set[int]] = {}
        self.owner: dict[tuple[Function, int], SimulatedDevice] = {}
        # Registers between the devices of one unit id (a CoolMasterNet's indoor units): a
        # read that starts on a device's register reads them as 0xFFFF; one that starts there,
        # or a write to them, is refused (illegal data address), as the real gateway answers.
        self.reserved: dict[Function, set[int]] = {}
        for function in _TABLE_ORDER:
            valid: set[int] = set()
            for dev in self.devices:
                addresses = dev.table_addresses(function)
                for spec in dev.specs:
                    if spec.function is not function:
                        continue
                    for a in range(spec.address, spec.end + 1):
                        other = self.owner.setdefault((function, a), dev)
                        if other is not dev:
                            raise ValueError(
                                f"unit {unit}: {dev.name} and {other.name} both use "
                                f"{function.value} register {a}; give them different bases"
                            )
                valid |= addresses
            self.valid[function] = valid
            self.writable[function] = set().union(
                *(d.writable_addresses(function) for d in self.devices)
            )
            self.reserved[function] = self._between(function) if not function.is_bit else set()
        self.sim_device = SimDevice(
            id=unit,
            simdata=(
                self._bit_table(self.valid[Function.COIL]),
                self._bit_table(self.valid[Function.DISCRETE]),
                self._register_table(
                    self.valid[Function.HOLDING] | self.reserved[Function.HOLDING]
                ),
                self._register_table(self.valid[Function.INPUT] | self.reserved[Function.INPUT]),
            ),
            action=self._action,
        )

    def _between(self, function: Function) -> set[int]:
        spans = sorted(
            (min(a), max(a)) for a in (d.table_addresses(function) for d in self.devices) if a
        )
        out: set[int] = set()
        for (_, end), (start, _) in itertools.pairwise(spans):
            out.update(range(end + 1, start))
        return out

    def identification(self, pdu: ReadDeviceInformationRequest) -> ModbusPDU:
        """The answer to Read Device Identification: the profile's ``identity`` objects (basic:
        0-2, regular and extended: 0-6, specific: the one asked), or illegal function."""
        identity = next((d.profile.identity for d in self.devices if d.profile.identity), None)
        if identity is None:
            return ExceptionResponse(pdu.function_code, ExcCodes.ILLEGAL_FUNCTION)
        objects = {i: v.encode("ascii", "replace") for i, v in identity.objects().items()}
        if pdu.read_code == 4:  # one specific object
            if pdu.object_id not in objects:
                return ExceptionResponse(pdu.function_code, ExcCodes.ILLEGAL_ADDRESS)
            chosen = {pdu.object_id: objects[pdu.object_id]}
        elif pdu.read_code in (1, 2, 3):
            last = 2 if pdu.read_code == 1 else 6
            chosen = {i: v for i, v in objects.items() if pdu.object_id <= i <= last}
        else:
            return ExceptionResponse(pdu.function_code, ExcCodes.ILLEGAL_VALUE)
        response = ReadDeviceInformationResponse(read_code=pdu.read_code, information=chosen)
        response.conformity = 0x82  # basic and regular, stream and individual access
        return response

    def check_reserved(self, pdu: ModbusPDU) -> ExcCodes | None:
        """A register access that starts on a reserved register, or writes one: refused."""
        function = _FC_TABLE.get(pdu.function_code)
        if function is None or function.is_bit or not self.reserved[function]:
            return None
        if pdu.address in self.reserved[function]:
            return ExcCodes.ILLEGAL_ADDRESS
        if pdu.function_code in (6, 16, 22, 23):
            count = 1 if pdu.function_code in (6, 22) else len(getattr(pdu, "registers", [])) or 1
            if self.reserved[function] & set(range(pdu.address, pdu.address + count)):
                return ExcCodes.ILLEGAL_ADDRESS
        return None

    # Bit tables: pymodbus keeps bits 16 to a register and marks validity per register, so
    # unmapped bits inside the block are rejected by `check_bits` instead.
    @staticmethod
    def _bit_table(valid: set[int]) -> list[SimData]:
        if not valid:
            # pymodbus needs one entry per table; the action refuses every access to it.
            return [SimData(0, count=16, values=False, datatype=SimType.BITS)]
        low, high = min(valid), max(valid)
        return [SimData(low, count=high - low + 1, values=False, datatype=SimType.BITS)]

    @staticmethod
    def _register_table(valid: set[int]) -> list[SimData]:
        if not valid:
            return [SimData(0, datatype=SimType.INVALID)]
        runs: list[SimData] = []
        for start, count in _runs(sorted(valid)):
            runs.append(SimData(start, count=count, values=0, datatype=SimType.REGISTERS))
        return runs

    @property
    def dead(self) -> bool:
        return any(d.faults.dead for d in self.devices)

    @property
    def delay(self) -> float:
        return max((d.faults.delay for d in self.devices), default=0.0)

    def check_bits(self, pdu: ModbusPDU) -> ExcCodes | None:
        """Reject coil/discrete requests that touch unmapped bits (pymodbus cannot tell)."""
        function = _FC_TABLE.get(pdu.function_code)
        if function is None or not function.is_bit:
            return None
        count = len(pdu.bits) if pdu.function_code in (5, 15) else pdu.count
        if not self.valid[function].issuperset(range(pdu.address, pdu.address + max(count, 1))):
            return ExcCodes.ILLEGAL_ADDRESS
        return None

    async def _action(
        self,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        """Called by pymodbus on every access, before a write is stored."""
        function = _FC_TABLE[function_code]
        if not self.valid[function]:
            return ExcCodes.ILLEGAL_ADDRESS
        if set_values is not None:
            result = self._write(function, start_address, address, registers, set_values)
            if result is not None:
                return result
        for dev in self.devices:
            for a, word in dev.image(function).items():
                _store(function, start_address, registers, a, word)
        for a in self.reserved.get(function, ()):
            _store(function, start_address, registers, a, 0xFFFF)
        return None

    def _write(
        self,
        function: Function,
        start_address: int,
        address: int,
        registers: list[int],
        set_values: list[int] | list[bool],
    ) -> ExcCodes | None:
        written = range(address, address + len(set_values))
        if not self.writable[function].issuperset(written):
            return ExcCodes.ILLEGAL_ADDRESS
        # Decode every point the write touches from its registers as they will be after it.
        after = {a: int(v) for a, v in zip(written, set_values, strict=True)}
        changes: list[tuple[SimulatedDevice, str, Value]] = []
        for dev in self.devices:
            for spec in dev.specs:
                if spec.function is not function or spec.writable is None:
                    continue
                if spec.end < written.start or spec.address >= written.stop:
                    continue
                words = [
                    after[a] if a in after else _load(function, start_address, registers, a)
                    for a in range(spec.address, spec.end + 1)
                ]
                value = dev.decode_write(spec, words)
                if (
                    isinstance(value, int | float)
                    and not isinstance(value, bool)
                    and not spec.writable.contains(value)
                ):
                    return ExcCodes.ILLEGAL_VALUE  # what devices answer to 99 °C
                changes.append((dev, spec.name, value))
        for dev, point, value in changes:
            dev.model.on_write(point, value)
        return None


def _runs(addresses: Sequence[int]) -> Iterable[tuple[int, int]]:
    """Consecutive runs of sorted addresses as (start, count)."""
    start = prev = addresses[0]
    for a in addresses[1:]:
        if a != prev + 1:
            yield start, prev - start + 1
            start = a
        prev = a
    yield start, prev - start + 1


def _store(function: Function, start_address: int, registers: list[int], a: int, v: int) -> None:
    if function.is_bit:
        # Bit tables: registers hold 16 bits each, block start counted in registers.
        i, bit = a // 16 - start_address, a % 16
        registers[i] = registers[i] & ~(1 << bit) | (1 << bit if v else 0)
    else:
        registers[a - start_address] = v & 0xFFFF


def _load(function: Function, start_address: int, registers: list[int], a: int) -> int:
    if function.is_bit:
        return registers[a // 16 - start_address] >> (a % 16) & 1
    return registers[a - start_address]


class _Handler(ServerRequestHandler):
    """pymodbus's request handler, made safe for slow and silent devices.

    pymodbus 3.16 reads ``self.last_pdu`` again after the datastore call returns to fill in the
    response's transaction and unit id, so a request that arrives while another is delayed
    makes the late answer carry the new request's ids: the client then takes it for the answer
    to the new request. This handler keeps each request's PDU with its own task, answers
    pipelined frames that arrive in one segment (pymodbus handles one per segment), applies the
    dead/delay faults, and lets the server cancel its tasks on stop.
    """

    def __init__(self, owner: _SimServer) -> None:
        # pymodbus leaves this constructor unannotated.
        super().__init__(  # type: ignore[no-untyped-call]
            owner, owner.trace_packet, owner.trace_pdu, owner.trace_connect
        )
        self.sim = owner

    def callback_data(self, data: bytes, addr: tuple[str, int] | None = None) -> int:
        used = 0
        while used < len(data):
            try:
                cut = TransactionManager.callback_data(self, data[used:], addr)
            except ModbusIOException as exc:
                fc = 0x00 if exc.fcode is None else exc.fcode
                response = ExceptionResponse(
                    fc,
                    exception_code=ExcCodes.ILLEGAL_FUNCTION,
                    device_id=exc.dev_id,
                    transaction=exc.transaction_id,
                )
                self._send(response, addr)
                return len(data)
            pdu = self.last_pdu
            if pdu is not None:
                self.sim.spawn(self._answer(pdu, addr))
            if cut <= 0:
                break
            used += cut
        return used

    async def _answer(self, pdu: ModbusPDU, addr: tuple[str, int] | None) -> None:
        sim = self.sim
        sim.requests[pdu.dev_id] += 1
        sim.answering += 1
        sim.most_answering = max(sim.most_answering, sim.answering)
        try:
            await self._answer_unit(pdu, addr)
        finally:
            sim.answering -= 1

    async def _answer_unit(self, pdu: ModbusPDU, addr: tuple[str, int] | None) -> None:
        unit = self.sim.units.get(pdu.dev_id)
        if unit is None:
            # Nobody at that address: silence on an RS-485 line, exception 0x0B from a gateway.
            if self.sim.framer_name == "rtu":
                return
            response: ModbusPDU = ExceptionResponse(pdu.function_code, ExcCodes.GATEWAY_NO_RESPONSE)
        else:
            if unit.dead:
                return
            if unit.delay > 0:
                await asyncio.sleep(unit.delay)
            code = unit.check_bits(pdu) or unit.check_reserved(pdu)
            if code is not None:
                response = ExceptionResponse(pdu.function_code, code)
            elif isinstance(pdu, ReadDeviceInformationRequest):
                response = unit.identification(pdu)
            else:
                try:
                    # pymodbus annotates `context` as ModbusServerContext but passes the
                    # SimCore it builds from SimDevices, as here.
                    response = await pdu.datastore_update(
                        self.sim.context,  # type: ignore[arg-type]
                        pdu.dev_id,
                    )
                except Exception:  # a model bug answers "device failure", like firmware would
                    log.exception("simulated unit %d failed to answer", pdu.dev_id)
                    response = ExceptionResponse(pdu.function_code, ExcCodes.DEVICE_FAILURE)
        response.transaction_id = pdu.transaction_id
        response.dev_id = pdu.dev_id
        if self.transport is not None:
            self._send(response, addr)

    def _send(self, response: ModbusPDU, addr: tuple[str, int] | None) -> None:
        self.server_send(response, addr)  # type: ignore[no-untyped-call]  # unannotated upstream


class _SimServer(ModbusTcpServer):
    def __init__(
        self,
        units: dict[int, _UnitImage],
        framer: Framer,
        address: tuple[str, int],
    ) -> None:
        super().__init__(
            [u.sim_device for u in units.values()],
            framer=FramerType.RTU if framer == "rtu" else FramerType.SOCKET,
            address=address,
        )
        self.units = units
        self.framer_name = framer
        self.tasks: set[asyncio.Task[None]] = set()
        self.requests: Counter[int] = Counter()  # received, by unit id (absent units too)
        self.answering = 0  # requests being answered now (a delayed unit's included)
        self.most_answering = 0

    def callback_new_connection(self) -> _Handler:
        return _Handler(self)

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)


@dataclass
class RunningServer:
    """A listening simulator; ``port`` is the bound port, also when 0 was asked for."""

    host: str
    port: int
    framer: Framer
    devices: list[SimulatedDevice]
    _server: _SimServer

    @property
    def requests(self) -> Counter[int]:
        """Requests received so far, by unit id, whether a device is there or not."""
        return self._server.requests

    @property
    def most_answering(self) -> int:
        """The most requests this server was answering at one time (a client that waits for
        each answer before the next request never makes it more than 1)."""
        return self._server.most_answering

    def device(self, unit: int, name: str | None = None) -> SimulatedDevice:
        for dev in self.devices:
            if dev.unit == unit and (name is None or dev.name == name):
                return dev
        raise KeyError(f"no device at unit {unit}" + (f" named {name}" if name else ""))

    async def stop(self) -> None:
        """Stop listening, drop the connections and cancel answers still waiting."""
        server = self._server
        listener = server.transport
        for task in list(server.tasks):
            task.cancel()
        await asyncio.gather(*server.tasks, return_exceptions=True)
        await server.shutdown()  # type: ignore[no-untyped-call]  # unannotated upstream
        if isinstance(listener, asyncio.Server):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(listener.wait_closed(), 2.0)

    async def __aenter__(self) -> RunningServer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def serve(
    devices: Sequence[SimulatedDevice],
    host: str = "127.0.0.1",
    port: int = 0,
    framer: Framer = "tcp",
    *,
    allow_remote: bool = False,
) -> RunningServer:
    """Serve devices on one TCP port; ``framer="rtu"`` is RTU over TCP (a serial gateway).

    Devices with different unit ids emulate an RS-485 line behind a gateway; devices with the
    same unit id are merged (their addresses must not overlap). Raises OSError when the port
    cannot be bound, ValueError for a non-loopback host unless ``allow_remote``.
    """
    if not devices:
        raise ValueError("serve() needs at least one device")
    if framer not in ("tcp", "rtu"):
        raise ValueError(f"framer must be 'tcp' or 'rtu', not {framer!r}")
    if not allow_remote and not is_loopback(host):
        raise ValueError(
            f"{host} is not a loopback address; the simulator serves on 127.0.0.1 only "
            "(pass allow_remote=True to expose simulated devices on a network)"
        )
    by_unit: dict[int, list[SimulatedDevice]] = {}
    for dev in devices:
        by_unit.setdefault(dev.unit, []).append(dev)
    units = {unit: _UnitImage(unit, devs) for unit, devs in sorted(by_unit.items())}
    server = _SimServer(units, framer, (host, port))
    try:
        await server.serve_forever(background=True)
    except RuntimeError:  # pymodbus logs the OSError and raises this instead
        server.close()
        raise _bind_error(host, port) from None
    listener = server.transport
    sockets = listener.sockets if isinstance(listener, asyncio.Server) else ()
    if not sockets:
        server.close()
        raise _bind_error(host, port)
    bound = int(sockets[0].getsockname()[1])
    running = RunningServer(host, bound, framer, list(devices), server)
    # Prove it: pymodbus versions differ in whether a failed listen raises or only logs.
    try:
        _reader, writer = await asyncio.wait_for(asyncio.open_connection(host, bound), 2.0)
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    except (OSError, TimeoutError) as exc:
        await running.stop()
        raise OSError(f"simulator on {host}:{bound} does not accept connections: {exc}") from exc
    log.info(
        "simulating %s on %s:%d (%s)",
        ", ".join(f"{d.name}@{d.unit}" for d in devices),
        host,
        bound,
        framer,
    )
    return running


def _bind_error(host: str, port: int) -> OSError:
    """The real reason a listen failed, found by trying the bind ourselves."""
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
            probe.listen()
    except OSError as exc:
        return OSError(
            exc.errno, f"cannot serve simulated devices on {host}:{port}: {exc.strerror}"
        )
    return OSError(f"cannot serve simulated devices on {host}:{port} (see pymodbus log)")
