"""One poller per device: read its planned requests on schedule, decode, hand over a Sample."""

from __future__ import annotations

import asyncio
import logging
import random
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from core.once import ProblemCounter
from core.types import Command, CommandResult, Sample, Value
from drivers.modbus.codec import (
    PointSpec,
    Unpack,
    check,
    decode_all,
    decode_raw,
    encode_raw,
    to_engineering,
    to_raw,
    unpacker,
)
from drivers.modbus.errors import ModbusError, ModbusExceptionResponse
from drivers.modbus.link import Link
from drivers.modbus.planner import ReadRequest
from drivers.modbus.profile import DataType, Function

log = logging.getLogger("guanjia.modbus")

OFFLINE = "offline"


@dataclass(frozen=True, slots=True)
class DevicePlan:
    """Everything a poller needs about its device, resolved from the site file and profile."""

    device: str
    unit: int
    specs: tuple[PointSpec, ...]
    requests: tuple[ReadRequest, ...]
    interval: float
    timeout: float
    retries: int
    backoff_max: float = 60.0


@dataclass
class DeviceStats:
    """Health of one device, as the health view and the rules see it."""

    online: bool | None = None  # None until the first poll ends
    polls: int = 0
    failed_polls: int = 0
    requests: int = 0
    last_ok_ns: int = 0
    last_error: str = ""
    last_poll_s: float = 0.0
    overruns: int = 0
    errors: ProblemCounter = field(default_factory=lambda: ProblemCounter(log))


class DevicePoller:
    def __init__(self, plan: DevicePlan, link: Link, emit: Callable[[Sample], None]) -> None:
        self.plan = plan
        self.link = link
        self.emit = emit
        self.stats = DeviceStats()
        self._by_name = {s.name: s for s in plan.specs}
        # Per request: each point's name, decoder and where its data starts in the response
        # (a byte offset for registers, a bit index for coils and discrete inputs).
        self._layout = [
            (
                req,
                [
                    (
                        spec.name,
                        unpacker(spec),
                        spec.address - req.start
                        if req.function.is_bit
                        else 2 * (spec.address - req.start),
                    )
                    for spec in req.points
                ],
            )
            for req in plan.requests
        ]

    async def _request(self, req: ReadRequest) -> bytes | list[int] | list[bool]:
        fc = _FC_READ[req.function]
        read = self.link.read if fc <= 2 else self.link.read_raw
        for attempt in range(self.plan.retries + 1):
            try:
                self.stats.requests += 1
                return await read(self.plan.unit, fc, req.start, req.count, self.plan.timeout)
            except ModbusError as exc:
                if not exc.silent or attempt == self.plan.retries:
                    raise
        raise AssertionError("unreachable")

    async def poll_once(self) -> Sample:
        """Read every planned request once. Raises nothing: failures become bad points."""
        plan = self.plan
        ts = time.time_ns()
        started = time.monotonic()
        raws: dict[str, int | float | bool | str] = {}
        failed: dict[str, str] = {}
        silent_error: ModbusError | None = None
        for req, layout in self._layout:
            try:
                data = await self._request(req)
            except ModbusError as exc:
                self._count(
                    exc.reason,
                    f"{plan.device}: {req.function.value} {req.start}+{req.count}: {exc}",
                )
                if exc.silent:
                    silent_error = exc
                    break
                for name, _, _ in layout:
                    failed[name] = exc.reason
                continue
            try:
                if isinstance(data, bytes):
                    for name, unpack, off in layout:
                        raws[name] = unpack(data, off)
                else:
                    for name, _, off in layout:
                        raws[name] = bool(data[off])
            except Exception:  # a value the codec cannot decode is bad, not fatal
                self._decode_slowly(layout, data, raws, failed)
        self.stats.polls += 1
        self.stats.last_poll_s = time.monotonic() - started
        if silent_error is not None:
            self._set_online(False, str(silent_error))
            self.stats.failed_polls += 1
            return Sample(plan.device, ts, {}, dict.fromkeys(self._by_name, OFFLINE))
        decoded = decode_all(plan.specs, raws)
        for name, reason in decoded.bad.items():
            self._count(f"{reason}", f"{plan.device}.{name}: bad value ({reason})")
        decoded.bad.update(failed)
        self._set_online(True, "")
        self.stats.last_ok_ns = ts
        return Sample(plan.device, ts, decoded.values, decoded.bad)

    def _decode_slowly(
        self,
        layout: list[tuple[str, Unpack, int]],
        data: bytes | list[int] | list[bool],
        raws: dict[str, int | float | bool | str],
        failed: dict[str, str],
    ) -> None:
        """Point by point, to find which values cannot be decoded (a short response, say)."""
        for name, unpack, off in layout:
            try:
                raws[name] = unpack(data, off) if isinstance(data, bytes) else bool(data[off])
            except Exception as exc:
                failed[name] = "decode"
                self._count("decode", f"{self.plan.device}.{name}: cannot decode: {exc}")

    def _count(self, reason: str, message: str) -> None:
        self.stats.errors.report(f"{self.plan.device}:{reason}", message)

    def _set_online(self, online: bool, error: str) -> None:
        if online != self.stats.online:
            if online:
                log.info("%s is online", self.plan.device)
            else:
                log.warning("%s is offline: %s", self.plan.device, error)
        self.stats.online = online
        if error:
            self.stats.last_error = error

    async def run(self) -> None:
        """Poll on a fixed-rate schedule; back off (capped) while the device is offline."""
        plan = self.plan
        # Spread devices over the first interval so a large site doesn't poll in one burst.
        await asyncio.sleep(random.uniform(0, min(plan.interval, 1.0)))
        next_at = time.monotonic()
        failures = 0
        while True:
            try:
                sample = await self.poll_once()
                self.emit(sample)
            except Exception as exc:  # a poller must never end: count it and carry on
                self._count("internal", f"{plan.device}: poll failed: {exc!r}")
                self._set_online(False, repr(exc))
            now = time.monotonic()
            if self.stats.online:
                failures = 0
                next_at += plan.interval
                if next_at < now:
                    self.stats.overruns += 1
                    next_at = now + plan.interval - (now - next_at) % plan.interval
            else:
                failures += 1
                # The exponent is capped: after days offline 2**n would overflow a float.
                delay = min(
                    plan.interval * 2 ** min(failures - 1, 20),
                    max(plan.backoff_max, plan.interval),
                )
                next_at = now + delay * random.uniform(0.9, 1.0)
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))

    async def write(self, command: Command) -> CommandResult:
        """Write one point within its writable range; read the old value first for the audit."""
        spec = self._by_name.get(command.point)
        if spec is None:
            return CommandResult(command, False, None, f"no point {command.point!r}")
        if spec.writable is None:
            return CommandResult(command, False, None, f"{command.point} is not writable")
        value = command.value
        if isinstance(value, bool) and spec.dtype is not DataType.BOOL:
            return CommandResult(
                command, False, None, f"{command.point} takes a number, not {value!r}"
            )
        if isinstance(value, str) or (
            isinstance(value, int | float)
            and not isinstance(value, bool)
            and not spec.writable.contains(value)
        ):
            return CommandResult(
                command,
                False,
                None,
                f"{value!r} is outside {command.point}'s writable range "
                f"{spec.writable.min:g}..{spec.writable.max:g}",
            )
        try:
            sf = await self._read_scale_factor(spec)
            old = await self._read_point(spec, sf)
            await self._write_point(spec, value, sf)
        except ModbusError as exc:
            return CommandResult(command, False, None, f"write failed: {exc}", failed=True)
        except (struct.error, OverflowError) as exc:  # a range wider than the register type
            return CommandResult(command, False, None, f"cannot encode {value!r}: {exc}")
        return CommandResult(command, True, old)

    async def _read_point(self, spec: PointSpec, sf: int | None) -> Value | None:
        data = await self.link.read(
            self.plan.unit, _FC_READ[spec.function], spec.address, spec.count, self.plan.timeout
        )
        raw = decode_raw(spec, data)
        if check(spec, raw) is not None or isinstance(raw, bool | str):
            return raw if isinstance(raw, bool | str) else None
        return to_engineering(spec, raw, sf)

    async def _read_scale_factor(self, spec: PointSpec) -> int | None:
        if spec.scale_factor is None:
            return None
        raw = await self._read_point(self._by_name[spec.scale_factor], None)
        if not isinstance(raw, int) or isinstance(raw, bool):
            raise ModbusExceptionResponse(3, 3)
        return raw

    async def _write_point(self, spec: PointSpec, value: Value, sf: int | None) -> None:
        if spec.function is Function.COIL:
            await self.link.write_coil(self.plan.unit, spec.address, bool(value), self.plan.timeout)
            return
        if spec.dtype is DataType.BOOL and spec.bit is not None:
            # One bit of a shared register: keep the other bits as the device has them.
            (word,) = await self.link.read(
                self.plan.unit, _FC_READ[spec.function], spec.address, 1, self.plan.timeout
            )
            mask = 1 << spec.bit
            words = [(int(word) | mask) if value else (int(word) & ~mask)]
        else:
            raw = bool(value) if spec.dtype is DataType.BOOL else to_raw(spec, float(value), sf)
            words = encode_raw(spec, raw)
        await self.link.write_registers(self.plan.unit, spec.address, words, self.plan.timeout)


_FC_READ = {Function.COIL: 1, Function.DISCRETE: 2, Function.HOLDING: 3, Function.INPUT: 4}


def specs_by_name(specs: Sequence[PointSpec]) -> dict[str, PointSpec]:
    return {s.name: s for s in specs}
