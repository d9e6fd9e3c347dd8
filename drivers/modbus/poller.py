"""Pollers: read planned requests on schedule, decode, hand over Samples.

A DevicePoller reads one device. The devices behind one unit id on one path that share a period
(the indoor units of a CoolMasterNet, each at its own base) are read by one GroupPoller with one
merged plan; each keeps its DevicePoller for its own Sample, status, stats and writes.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import struct
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from core.once import ProblemCounter
from core.types import Command, CommandResult, Sample, Value
from drivers.modbus.codec import (
    PointSpec,
    Raw,
    Unpack,
    check,
    decode_all,
    decode_raw,
    decode_registers,
    encode_raw,
    fused_unpacker,
    masked_words,
    to_engineering,
    to_raw,
    unpacker,
)
from drivers.modbus.derived import DerivedSpec, compute
from drivers.modbus.errors import (
    EXCEPTION_NAMES,
    ModbusError,
    ModbusExceptionResponse,
    ProblemSink,
)
from drivers.modbus.link import Link
from drivers.modbus.planner import ReadRequest, clusters
from drivers.modbus.profile import DataType, Function

log = logging.getLogger("guanjia.modbus")

OFFLINE = "offline"

# Exception codes by which a device refuses registers it does not have: 2 (illegal data
# address) by the standard, 3 (illegal data value) on devices that check the range as a value.
REFUSED_CODES = frozenset({2, 3})

# Each request with its function code; per point, name, decoder and data offset; and, where
# one struct call decodes them all, the points' names in order and that call.
Fused = tuple[tuple[str, ...], Callable[[bytes], Sequence[Any]]]
Entry = tuple[ReadRequest, int, list[tuple[str, Unpack, int]], Fused | None]
Layout = list[Entry]


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
    # Registers the device refused are skipped for this long, then the full plan is tried
    # again: a device that refused while it was starting up may answer now.
    refused_retry_s: float = 600.0
    # Computed after each poll's decode (derived.py); a profile without any pays nothing.
    derived: tuple[DerivedSpec, ...] = ()


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
    # What the device refused to read, skipped until the plan is tried again, by span:
    # {"input registers 100..101": "refused by the device: exception 2 ..."}; bounded by the
    # device's requests and points.
    refused: dict[str, str] = field(default_factory=dict)
    # Writes: sent to the device; read back as written; read back as something else (the
    # device kept another value); failed on the wire (no answer or an exception response to
    # the write or to a read around it).
    writes: int = 0
    writes_confirmed: int = 0
    writes_rejected_by_readback: int = 0
    writes_failed: int = 0


def member_key(index: int, name: str) -> str:
    """A point's name in a group's merged plan: the devices behind one unit share point names
    (every indoor unit has a `mode`), so each is prefixed with its device's place in the group.
    Profile point names never contain ':'."""
    return f"{index}:{name}"


@dataclass(frozen=True, slots=True)
class GroupPlan:
    """Devices polled together: behind one unit id on one path, with one period and the same
    request settings (the indoor units of a CoolMasterNet, at different bases). One plan reads
    all their points; each device keeps its own plan for its writes and its reads alone."""

    name: str  # for logs and task names: "<first device>+<how many more>"
    members: tuple[DevicePlan, ...]
    requests: tuple[ReadRequest, ...]  # points named member_key(index in members, name)
    unit: int
    interval: float
    timeout: float
    retries: int
    backoff_max: float = 60.0
    refused_retry_s: float = 600.0

    @classmethod
    def of(cls, members: Sequence[DevicePlan], requests: Sequence[ReadRequest]) -> GroupPlan:
        """The plan of devices that share their unit, period and settings (the first's)."""
        first = members[0]
        return cls(
            name=f"{first.device}+{len(members) - 1}",
            members=tuple(members),
            requests=tuple(requests),
            unit=first.unit,
            interval=first.interval,
            timeout=first.timeout,
            retries=first.retries,
            backoff_max=first.backoff_max,
            refused_retry_s=first.refused_retry_s,
        )


class PollPlan(Protocol):
    """What reading a plan needs, whether it is one device's or a group's."""

    @property
    def unit(self) -> int: ...
    @property
    def requests(self) -> tuple[ReadRequest, ...]: ...
    @property
    def interval(self) -> float: ...
    @property
    def timeout(self) -> float: ...
    @property
    def retries(self) -> int: ...
    @property
    def backoff_max(self) -> float: ...
    @property
    def refused_retry_s(self) -> float: ...


PlanT = TypeVar("PlanT", bound=PollPlan)
OutT = TypeVar("OutT")


class _Poller(ABC, Generic[PlanT, OutT]):
    """Reads a plan on schedule: retries, refused registers split and learned, offline while
    silent. Subclasses say whose points were read and what a poll hands over: a device poller
    one Sample, a group poller one Sample per device."""

    def __init__(self, plan: PlanT, link: Link) -> None:
        self.plan = plan
        self.link = link
        self.stats = DeviceStats()
        self._planned: Layout = [_entry(req) for req in plan.requests]
        self._layout = self._planned
        # Points (by their name in the plan) whose registers the device refused, with the
        # reason, until the retry.
        self._refused_points: dict[str, str] = {}
        self._retry_at = math.inf
        self._problems: ProblemSink = self._link_problem  # bound once, not per request

    # -- what the subclasses say ---------------------------------------------------------

    @abstractmethod
    def _link_problem(self, reason: str, message: str) -> None:
        """Something wrong on the wire that cost no value (a junk byte, a late answer)."""

    @abstractmethod
    def _request_failed(self, req: ReadRequest, what: str, exc: ModbusError) -> None:
        """A request failed (``what`` names it): count it for the points' devices."""

    @abstractmethod
    def _decode_failed(self, name: str, exc: Exception) -> None: ...

    @abstractmethod
    def _refused(self, req: ReadRequest, exc: ModbusExceptionResponse, reason: str) -> None:
        """The device refuses ``req``, pinned to one cluster of points: record and log it."""

    @abstractmethod
    def _answered_apart(self, req: ReadRequest, kept: Sequence[ReadRequest]) -> None:
        """The device refused ``req`` whole but answered all its parts."""

    @abstractmethod
    def _forget_refusals(self) -> None: ...

    @abstractmethod
    def _silent(self, ts: int, error: ModbusError) -> OutT:
        """The poll's outcome when the device stopped answering."""

    @abstractmethod
    def _answered(self, ts: int, raws: dict[str, Raw], failed: dict[str, str]) -> OutT:
        """The poll's outcome from the raw values read and the points that failed."""

    @abstractmethod
    def _deliver(self, out: OutT) -> None: ...

    @abstractmethod
    def _set_online(self, online: bool, error: str) -> None: ...

    @abstractmethod
    def _poll_failed(self, exc: Exception) -> None:
        """A poll raised (a bug, not the device): count it, and the device is offline."""

    @abstractmethod
    def _overrun(self) -> None: ...

    # -- reading --------------------------------------------------------------------------

    def _retries(self) -> int:
        # A device known to be offline is probed with one request, not retried: on a shared
        # line every retry would hold the line for another timeout.
        return self.plan.retries if self.stats.online is not False else 0

    async def _request(
        self, req: ReadRequest, attempts: int | None = None
    ) -> bytes | list[int] | list[bool]:
        """Read one request, retrying silent failures; ``attempts`` defaults to all of them."""
        fc = _FC_READ[req.function]
        read = self.link.read if fc <= 2 else self.link.read_raw
        if attempts is None:
            attempts = self._retries() + 1
        for attempt in range(1, attempts + 1):
            try:
                self.stats.requests += 1
                return await read(
                    self.plan.unit,
                    fc,
                    req.start,
                    req.count,
                    self.plan.timeout,
                    problems=self._problems,
                )
            except ModbusError as exc:
                if not exc.silent or attempt == attempts:
                    raise
        raise AssertionError("unreachable")

    async def poll_once(self) -> OutT:
        """Read every planned request once. Raises nothing: failures become bad points.

        A request the device refuses (REFUSED_CODES) is split to find what it refuses; the
        rest of it is read in the same poll, and the plan skips the refused part from then on.
        """
        plan = self.plan
        ts = time.time_ns()
        started = time.monotonic()
        if started >= self._retry_at:
            self._retry_refused()
        raws: dict[str, Raw] = {}
        failed: dict[str, str] = {}
        silent_error: ModbusError | None = None
        splits: dict[int, _Split] | None = None
        link, unit, timeout, problems = self.link, plan.unit, plan.timeout, self._problems
        stats = self.stats
        entries = self._layout
        # By index, not enumerate(): no iterator objects alive while the device answers.
        for index in range(len(entries)):
            req, fc, layout, fused = entries[index]
            data: bytes | list[int] | list[bool]
            try:
                # The first attempt of _request, inlined: one coroutine less per request.
                try:
                    stats.requests += 1
                    if fc > 2:
                        data = await link.read_raw(
                            unit, fc, req.start, req.count, timeout, problems
                        )
                    else:
                        data = await link.read(unit, fc, req.start, req.count, timeout, problems)
                except ModbusError as first:
                    retries = self._retries()
                    if not first.silent or not retries:
                        raise
                    data = await self._request(req, retries)
            except ModbusError as exc:
                if isinstance(exc, ModbusExceptionResponse) and exc.code in REFUSED_CODES:
                    split = _Split()
                    try:
                        await self._bisect(req, clusters(req.points), exc, split, raws, failed)
                    except ModbusError as during:  # silent: the device stopped answering
                        silent_error = during
                        break
                    splits = splits or {}
                    splits[index] = split
                    continue
                self._request_failed(req, f"{req.function.value} {req.start}+{req.count}", exc)
                if exc.silent:
                    silent_error = exc
                    break
                for name, _, _ in layout:
                    failed[name] = exc.reason
                continue
            try:  # _unpack, inlined: this is every request of every poll
                if fused is not None and isinstance(data, bytes):
                    raws.update(zip(fused[0], fused[1](data), strict=True))
                elif isinstance(data, bytes):
                    for name, unpack, off in layout:
                        raws[name] = unpack(data, off)
                else:
                    for name, _, off in layout:
                        raws[name] = bool(data[off])
            except Exception:  # a value the codec cannot decode is bad, not fatal
                self._decode_slowly(layout, data, raws, failed)
        stats.polls += 1
        stats.last_poll_s = time.monotonic() - started
        if silent_error is not None:
            stats.failed_polls += 1
            return self._silent(ts, silent_error)
        if splits:
            self._learn(splits)
        if self._refused_points:
            failed.update(self._refused_points)
        return self._answered(ts, raws, failed)

    def _unpack(
        self,
        layout: list[tuple[str, Unpack, int]],
        data: bytes | list[int] | list[bool],
        raws: dict[str, Raw],
        failed: dict[str, str],
    ) -> None:
        try:
            if isinstance(data, bytes):
                for name, unpack, off in layout:
                    raws[name] = unpack(data, off)
            else:
                for name, _, off in layout:
                    raws[name] = bool(data[off])
        except Exception:  # a value the codec cannot decode is bad, not fatal
            self._decode_slowly(layout, data, raws, failed)

    async def _bisect(
        self,
        req: ReadRequest,
        parts: list[list[PointSpec]],
        refusal: ModbusExceptionResponse,
        split: _Split,
        raws: dict[str, Raw],
        failed: dict[str, str],
    ) -> None:
        """Find what the device refuses in a request it refused, reading the rest meanwhile.

        ``parts`` are the request's clusters (points sharing registers stay together). Halves
        are read until each refusal is pinned to one cluster; if every part answers, the device
        refused only the registers between them (or the span): the parts are the new plan.
        Raises a silent ModbusError if the device stops answering.
        """
        if len(parts) == 1:
            split.refused.append((req, refusal))
            return
        cut = _cut(parts)
        for half in (parts[:cut], parts[cut:]):
            sub = _request_of(req.function, half)
            try:
                data = await self._request(sub)
            except ModbusExceptionResponse as exc:
                if exc.code in REFUSED_CODES:
                    await self._bisect(sub, half, exc, split, raws, failed)
                    continue
                self._request_failed(sub, _span(sub), exc)
                failed.update((s.name, exc.reason) for s in sub.points)
                split.kept.append(sub)  # not a refusal: asked again next poll
                continue
            except ModbusError as exc:
                if exc.silent:
                    raise
                self._request_failed(sub, _span(sub), exc)
                failed.update((s.name, exc.reason) for s in sub.points)
                split.kept.append(sub)
                continue
            split.kept.append(sub)
            self._unpack(_entry(sub)[2], data, raws, failed)

    def _learn(self, splits: dict[int, _Split]) -> None:
        """Skip what the device refused from the next poll on; log each refusal once."""
        layout: Layout = []
        for index, entry in enumerate(self._layout):
            split = splits.get(index)
            if split is None:
                layout.append(entry)
                continue
            layout += [_entry(sub) for sub in sorted(split.kept, key=lambda r: r.start)]
            for sub, exc in split.refused:
                reason = (
                    f"refused by the device: exception {exc.code} "
                    f"({EXCEPTION_NAMES.get(exc.code, 'unknown')}) at {_span(sub)}"
                )
                for spec in sub.points:
                    self._refused_points[spec.name] = reason
                self._refused(sub, exc, reason)
            if not split.refused:
                self._answered_apart(entry[0], split.kept)
        self._layout = layout
        if self._retry_at == math.inf:
            self._retry_at = time.monotonic() + self.plan.refused_retry_s

    def _retry_refused(self) -> None:
        """Back to the full plan: what is still refused is found (and counted) again."""
        self._layout = self._planned
        self._refused_points.clear()
        self._forget_refusals()
        self._retry_at = math.inf

    def _decode_slowly(
        self,
        layout: list[tuple[str, Unpack, int]],
        data: bytes | list[int] | list[bool],
        raws: dict[str, Raw],
        failed: dict[str, str],
    ) -> None:
        """Point by point, to find which values cannot be decoded (a short response, say)."""
        for name, unpack, off in layout:
            try:
                raws[name] = unpack(data, off) if isinstance(data, bytes) else bool(data[off])
            except Exception as exc:
                failed[name] = "decode"
                self._decode_failed(name, exc)

    async def run(self, first_poll_at: float | None = None) -> None:
        """Poll on a fixed-rate grid; back off (capped) while the device is offline.

        The grid is ``first_poll_at + k * interval`` (time.monotonic; now if None): the driver
        gives devices that share a period different phases, so they spread over it instead of
        polling in one burst. A poll that ends after its next slot is followed at once by the
        next one (back to back): a device slower than its period is read as often as it can
        answer, not every other slot. Missed slots are not made up.
        """
        plan = self.plan
        interval = plan.interval
        origin = time.monotonic() if first_poll_at is None else first_poll_at
        slot = 0  # the grid slot of the poll about to run
        next_at = origin
        failures = 0
        while True:
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            try:
                self._deliver(await self.poll_once())
            except Exception as exc:  # a poller must never end: count it and carry on
                self._poll_failed(exc)
            now = time.monotonic()
            if self.stats.online:
                failures = 0
                slot += 1
                next_at = origin + slot * interval
                if next_at <= now:
                    self._overrun()
                    # Slower than the period: poll again at once, counted from the last slot
                    # that passed (integer slots: float division never moves one back).
                    slot = max(slot, math.floor((now - origin) / interval))
                    next_at = now
            else:
                failures += 1
                # The exponent is capped: after days offline 2**n would overflow a float.
                delay = min(
                    interval * 2 ** min(failures - 1, 20),
                    max(plan.backoff_max, interval),
                )
                # Probe on the grid, so the device keeps its phase when it comes back.
                slot = max(
                    slot + 1,
                    math.ceil((now + delay * random.uniform(0.9, 1.0) - origin) / interval),
                )
                next_at = origin + slot * interval


class DevicePoller(_Poller[DevicePlan, Sample]):
    """One device: its Sample, status, stats and writes. Polls on its own, or is read by the
    GroupPoller of the devices behind its unit (then ``poll_once`` still reads it alone)."""

    def __init__(self, plan: DevicePlan, link: Link, emit: Callable[[Sample], None]) -> None:
        super().__init__(plan, link)
        self.emit = emit
        self._by_name = {s.name: s for s in plan.specs}
        self._logged: set[tuple[Function, int, int]] = set()  # bounded by the plan's requests

    def _link_problem(self, reason: str, message: str) -> None:
        self._count(reason, f"{self.plan.device}: {message}")

    def _request_failed(self, req: ReadRequest, what: str, exc: ModbusError) -> None:
        self._count(exc.reason, f"{self.plan.device}: {what}: {exc}")

    def _decode_failed(self, name: str, exc: Exception) -> None:
        self._count("decode", f"{self.plan.device}.{name}: cannot decode: {exc}")

    def _refused(self, req: ReadRequest, exc: ModbusExceptionResponse, reason: str) -> None:
        self._note_refused(req, exc, reason, [s.name for s in req.points])

    def _note_refused(
        self, req: ReadRequest, exc: ModbusExceptionResponse, reason: str, points: Sequence[str]
    ) -> None:
        """This device's ``points`` are in ``req``, which the device refuses."""
        span = _span(req)
        self.stats.refused[span] = reason
        self._refusal(
            req,
            f"{self.plan.device}: the device refuses {span} (exception {exc.code}) for points "
            f"{', '.join(points)}: they are bad and not asked for again for "
            f"{self.plan.refused_retry_s:g} s; if this model never has them, remove them from "
            "the profile (or from the device's `points:` list)",
        )

    def _answered_apart(self, req: ReadRequest, kept: Sequence[ReadRequest]) -> None:
        self._note_apart(req, kept, self.plan.device)

    def _note_apart(
        self, req: ReadRequest, kept: Sequence[ReadRequest], who: str, *, log_it: bool = True
    ) -> None:
        """``req`` (with points of this device) was refused whole, its parts answered."""
        parts = ", ".join(_span(sub) for sub in kept)
        self.stats.refused[_span(req)] = f"in one request, but answers {parts}"
        message = (
            f"{who}: the device refuses {_span(req)} in one request (registers no point uses, "
            f"or the request's size) but answers {parts}: reading those instead for "
            f"{self.plan.refused_retry_s:g} s; declare the registers in between as `holes` in "
            "the profile to plan this from the start"
        )
        if log_it:
            self._refusal(req, message)
        else:
            self.stats.errors.report(f"{self.plan.device}:refused", message, logging.DEBUG)

    def _refusal(self, req: ReadRequest, message: str) -> None:
        key = (req.function, req.start, req.count)
        self.stats.errors.report(f"{self.plan.device}:refused", message, logging.DEBUG)
        if key not in self._logged:
            self._logged.add(key)
            log.warning("%s", message)

    def _forget_refusals(self) -> None:
        self.stats.refused.clear()

    def _silent(self, ts: int, error: ModbusError) -> Sample:
        self._set_online(False, str(error))
        return Sample(self.plan.device, ts, {}, dict.fromkeys(self._by_name, OFFLINE))

    def _answered(self, ts: int, raws: dict[str, Raw], failed: dict[str, str]) -> Sample:
        device = self.plan.device
        decoded = decode_all(self.plan.specs, raws)
        for name, reason in decoded.bad.items():
            self._count(f"{reason}", f"{device}.{name}: bad value ({reason})")
        decoded.bad.update(failed)
        if self.plan.derived:
            compute(self.plan.derived, decoded.values, decoded.bad)
        self._set_online(True, "")
        self.stats.last_ok_ns = ts
        return Sample(device, ts, decoded.values, decoded.bad)

    def _deliver(self, out: Sample) -> None:
        self.emit(out)

    def _poll_failed(self, exc: Exception) -> None:
        self._count("internal", f"{self.plan.device}: poll failed: {exc!r}")
        self._set_online(False, repr(exc))

    def _overrun(self) -> None:
        self.stats.overruns += 1

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

    async def write(self, command: Command) -> CommandResult:
        """Write one point within its writable range, confirmed by reading it back; the old
        value, read first, goes to the audit."""
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
        # One write at a time on the path (so on the device), from its first read to its
        # confirmation: two fields of one register written at once would each write back the
        # other's old bits.
        async with self.link.write_turn():
            try:
                sf = await self._read_scale_factor(spec)
                return await self._write_confirmed(command, spec, value, sf)
            except ModbusError as exc:
                self.stats.writes_failed += 1
                return CommandResult(command, False, None, f"write failed: {exc}", failed=True)
            except (struct.error, OverflowError) as exc:  # a range wider than the register type
                return CommandResult(command, False, None, f"cannot encode {value!r}: {exc}")

    async def _write_confirmed(
        self, command: Command, spec: PointSpec, value: Value, sf: int | None
    ) -> CommandResult:
        """Read the point's registers (the old value, for the audit, and the bits a field
        shares its registers with), write the new ones, and read them again to confirm the
        device kept the value: compared as raw register values, so a 0.1 °C setpoint is the
        same when its words are. Runs in the path's write turn."""
        current = await self._read_words(spec)
        old = self._engineering(spec, current, sf)
        raw = bool(value) if spec.dtype is DataType.BOOL else to_raw(spec, float(value), sf)
        unit, timeout = self.plan.unit, self.plan.timeout
        if spec.function is Function.COIL:
            words = [int(bool(raw))]
            self.stats.writes += 1
            await self.link.write_coil(unit, spec.address, bool(raw), timeout)
        else:
            words = encode_raw(spec, raw)
            if spec.field_mask is not None:  # only its bits: the others keep what they hold
                words = masked_words(spec, current, words)
            self.stats.writes += 1
            await self.link.write_registers(unit, spec.address, words, timeout)
        kept = await self._read_words(spec)
        if decode_raw(spec, kept) != decode_raw(spec, words):
            self.stats.writes_rejected_by_readback += 1
            now = self._engineering(spec, kept, sf)
            return CommandResult(
                command,
                False,
                old,
                f"the device reads {command.point} = {now!r} back after writing {value!r}",
                failed=True,
            )
        self.stats.writes_confirmed += 1
        return CommandResult(command, True, old)

    async def _read_words(self, spec: PointSpec) -> list[int]:
        data = await self.link.read(
            self.plan.unit, _FC_READ[spec.function], spec.address, spec.count, self.plan.timeout
        )
        return [int(word) for word in data]

    @staticmethod
    def _engineering(spec: PointSpec, words: Sequence[int], sf: int | None) -> Value | None:
        """A point's value from its registers, None where it has none (a sentinel, NaN)."""
        raw = decode_registers(spec, words)
        if isinstance(raw, bool | str):
            return raw
        if check(raw) is not None or not isinstance(raw, int | float):
            return None
        return to_engineering(spec, raw, sf)

    async def _read_point(self, spec: PointSpec, sf: int | None) -> Value | None:
        return self._engineering(spec, await self._read_words(spec), sf)

    async def _read_scale_factor(self, spec: PointSpec) -> int | None:
        if spec.scale_factor is None:
            return None
        raw = await self._read_point(self._by_name[spec.scale_factor], None)
        if not isinstance(raw, int) or isinstance(raw, bool):
            raise ModbusExceptionResponse(3, 3)
        return raw


class GroupPoller(_Poller[GroupPlan, list[Sample]]):
    """The devices behind one unit, read with one merged plan; each device still gets its own
    Sample (its points, their quality), status and stats through its DevicePoller.

    The devices share the fate of the requests: a silent unit makes every device offline, a
    request failing with an exception makes the points it carried bad, each device counting it.
    A refusal is pinned to one point's registers as for one device, and learned and logged for
    the device owning them; the others' points are read around it. ``stats`` are the group's
    (its wire requests); each device's ``stats.requests`` counts the requests of the polls it
    took part in."""

    def __init__(
        self,
        plan: GroupPlan,
        members: Sequence[DevicePoller],
        link: Link,
        emit: Callable[[Sample], None],
    ) -> None:
        if [m.plan for m in members] != list(plan.members):
            raise ValueError("a group's pollers must be its plan's members, in its order")
        super().__init__(plan, link)
        self.emit = emit
        self.members = tuple(members)
        # Each device with its points' (name in the merged plan, own name).
        self._keys = [
            (member, [(member_key(i, s.name), s.name) for s in member.plan.specs])
            for i, member in enumerate(self.members)
        ]
        self._owner = {key: member for member, keys in self._keys for key, _name in keys}
        self._counted = 0  # the group's requests already added to its devices' stats

    def _owners(self, req: ReadRequest) -> dict[DevicePoller, list[str]]:
        """The devices with points in ``req``, in group order, with those points' names."""
        out: dict[DevicePoller, list[str]] = {}
        for spec in req.points:
            out.setdefault(self._owner[spec.name], []).append(_own_name(spec.name))
        return {m: out[m] for m in self.members if m in out}

    def _link_problem(self, reason: str, message: str) -> None:
        for member in self.members:
            member._link_problem(reason, message)

    def _request_failed(self, req: ReadRequest, what: str, exc: ModbusError) -> None:
        for member in self._owners(req):
            member._request_failed(req, what, exc)

    def _decode_failed(self, name: str, exc: Exception) -> None:
        self._owner[name]._decode_failed(_own_name(name), exc)

    def _refused(self, req: ReadRequest, exc: ModbusExceptionResponse, reason: str) -> None:
        for member, points in self._owners(req).items():
            member._note_refused(req, exc, reason, points)

    def _answered_apart(self, req: ReadRequest, kept: Sequence[ReadRequest]) -> None:
        owners = list(self._owners(req))
        who = ", ".join(m.plan.device for m in owners)
        for n, member in enumerate(owners):
            member._note_apart(req, kept, who, log_it=n == 0)  # one event, logged once

    def _forget_refusals(self) -> None:
        for member in self.members:
            member._forget_refusals()

    def _account(self) -> int:
        """The group's requests since the last poll was accounted."""
        requests = self.stats.requests - self._counted
        self._counted = self.stats.requests
        return requests

    def _share(self, member: DevicePoller, requests: int) -> None:
        stats = member.stats
        stats.polls += 1
        stats.requests += requests
        stats.last_poll_s = self.stats.last_poll_s

    def _silent(self, ts: int, error: ModbusError) -> list[Sample]:
        self.stats.online, self.stats.last_error = False, str(error)
        requests = self._account()
        out = []
        for member in self.members:
            self._share(member, requests)
            member.stats.failed_polls += 1
            out.append(member._silent(ts, error))
        return out

    def _answered(self, ts: int, raws: dict[str, Raw], failed: dict[str, str]) -> list[Sample]:
        self.stats.online = True
        self.stats.last_ok_ns = ts
        requests = self._account()
        out = []
        for member, keys in self._keys:
            self._share(member, requests)
            own = {name: raws[key] for key, name in keys if key in raws}
            bad = {name: failed[key] for key, name in keys if key in failed} if failed else {}
            out.append(member._answered(ts, own, bad))
        return out

    def _deliver(self, out: list[Sample]) -> None:
        for sample in out:
            self.emit(sample)

    def _set_online(self, online: bool, error: str) -> None:
        self.stats.online = online
        if error:
            self.stats.last_error = error
        for member in self.members:
            member._set_online(online, error)

    def _poll_failed(self, exc: Exception) -> None:
        for member in self.members:
            member._count("internal", f"{member.plan.device}: poll failed: {exc!r}")
        self._set_online(False, repr(exc))

    def _overrun(self) -> None:
        self.stats.overruns += 1
        for member in self.members:
            member.stats.overruns += 1


def _own_name(key: str) -> str:
    """A point's own name from its name in a group's plan (see member_key)."""
    return key.partition(":")[2]


_FC_READ = {Function.COIL: 1, Function.DISCRETE: 2, Function.HOLDING: 3, Function.INPUT: 4}


@dataclass
class _Split:
    """What bisecting one refused request found."""

    kept: list[ReadRequest] = field(default_factory=list)  # parts to read from now on
    refused: list[tuple[ReadRequest, ModbusExceptionResponse]] = field(default_factory=list)


def _entry(req: ReadRequest) -> Entry:
    """A request with its function code and each point's name, decoder and where its data
    starts in the response (a byte offset for registers, a bit index for coils and discrete
    inputs)."""
    scale = 1 if req.function.is_bit else 2
    offsets = [(s, scale * (s.address - req.start)) for s in req.points]
    points = [(s.name, unpacker(s), off) for s, off in offsets]
    fused = None if req.function.is_bit else fused_unpacker(offsets)
    return req, _FC_READ[req.function], points, fused


def _cut(parts: list[list[PointSpec]]) -> int:
    """Where to halve a refused request: at its widest run of registers no point uses (what a
    device most often lacks), else in the middle."""
    middle = len(parts) / 2

    def preference(i: int) -> tuple[int, float]:
        gap = parts[i][0].address - max(s.end for s in parts[i - 1])
        return gap, -abs(i - middle)

    return max(range(1, len(parts)), key=preference)


def _request_of(function: Function, parts: list[list[PointSpec]]) -> ReadRequest:
    start = parts[0][0].address
    end = max(s.end for part in parts for s in part)
    return ReadRequest(function, start, end - start + 1, tuple(s for part in parts for s in part))


def _span(req: ReadRequest) -> str:
    """A request's registers as people read them: "holding registers 100..101"."""
    what = _TABLE_NAMES[req.function]
    if req.count == 1:
        return f"{what} {req.start}"
    return f"{what}s {req.start}..{req.start + req.count - 1}"


_TABLE_NAMES = {
    Function.COIL: "coil",
    Function.DISCRETE: "discrete input",
    Function.HOLDING: "holding register",
    Function.INPUT: "input register",
}


def specs_by_name(specs: Sequence[PointSpec]) -> dict[str, PointSpec]:
    return {s.name: s for s in specs}
