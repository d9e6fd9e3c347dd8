"""The DL/T 645 driver at run time: one poller per meter, one owner per line.

Each poll reads every data identifier the meter's points need, once (a block such as 0201FF00
gives phases A, B and C in one answer), and hands one Sample to the bus. An identifier the
meter refuses (an error answer) makes its points bad with the meter's reason; the meter is
online, it answered. A meter that does not answer at all is offline: logged once, its points
bad as ``offline``, and probed on its poll grid with a backoff that doubles from the period up
to a minute, each probe one request without retries, so a dead meter on a shared line costs
the others one timeout now and then, not every cycle. A meter with ``discover: true`` asks the
line for its address first, and again after it was offline (a replaced meter is found).

Meters are read, not written: every command is refused.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from core.once import ProblemCounter
from core.types import Command, CommandResult, Sample, Value
from drivers.contract import DeviceStatus, RuntimeContext
from drivers.dlt645.codec import Dlt645Error, ErrorAnswer, FrameError, decode_bcd_count
from drivers.dlt645.config import RtuConnection, TcpConnection
from drivers.dlt645.line import Line, LineKey, line_key, line_path
from drivers.dlt645.profile import Dlt645Point, Dlt645Profile
from drivers.lines import Lines

log = logging.getLogger("guanjia.dlt645")

OFFLINE = "offline"
BACKOFF_MAX = 60.0

Connection = RtuConnection | TcpConnection


@dataclass(frozen=True, slots=True)
class Dlt645Device:
    """A meter as the site file describes it."""

    id: str
    profile: Dlt645Profile
    connection: Connection
    interval: float
    points: Sequence[str] | None = None


@dataclass(frozen=True, slots=True)
class Read:
    """One request of a poll: an identifier and the points its answer carries."""

    di: int
    size: int  # data bytes expected: up to the end of the last item read
    points: tuple[Dlt645Point, ...]


def reads(profile: Dlt645Profile, points: Sequence[str] | None = None) -> list[Read]:
    """The requests of one poll, in the order the profile first names each identifier."""
    wanted = None if points is None else set(points)
    by_di: dict[int, list[Dlt645Point]] = {}
    for p in profile.points:
        if wanted is None or p.name in wanted:
            by_di.setdefault(p.identifier, []).append(p)
    return [
        Read(di, max((p.item + 1) * p.data_format.size for p in group), tuple(group))
        for di, group in by_di.items()
    ]


@dataclass
class MeterStats:
    """One meter's health, as the status view and health counters show it."""

    online: bool | None = None  # None until the first poll ends
    polls: int = 0
    failed_polls: int = 0
    requests: int = 0
    last_ok_ns: int = 0
    last_error: str = ""
    last_poll_s: float = 0.0
    overruns: int = 0
    address: str = ""  # the one polled: given, or found by discovery
    errors: ProblemCounter = field(default_factory=lambda: ProblemCounter(log))
    # By kind, for health: no answer (a timeout, no connection), error answers, bad frames,
    # problems on the line.
    kinds: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(("no_answer", "error_answer", "bad_frame", "line"), 0)
    )


class MeterPoller:
    """Reads one meter on its line on schedule and hands its Samples to ``emit``."""

    def __init__(self, device: Dlt645Device, line: Line, emit: Callable[[Sample], None]) -> None:
        self.device = device
        self.line = line
        self.emit = emit
        self.conn = device.connection
        self.reads = reads(device.profile, device.points)
        self.names = [p.name for r in self.reads for p in r.points]
        self.stats = MeterStats(address=device.connection.address or "")
        # Scale, then divide by the format's decimals: one rounding (12.3456 kW: 123456 *
        # 1000 / 10**4 is 12345.6 exactly as a float gets it).
        self._scales: dict[str, tuple[float, int]] = {
            p.name: (p.scale, 10**p.data_format.decimals) for r in self.reads for p in r.points
        }

    # -- counting ---------------------------------------------------------------------------

    def _count(self, reason: str, kind: str, message: str) -> None:
        self.stats.errors.report(f"{self.device.id}:{reason}", f"{self.device.id}: {message}")
        self.stats.kinds[kind] += 1

    def _line_problem(self, reason: str, message: str) -> None:
        self._count(reason, "line", message)

    def _failed(self, exc: Dlt645Error, what: str) -> None:
        kind = (
            "no_answer"
            if exc.silent
            else "error_answer"
            if isinstance(exc, ErrorAnswer)
            else "bad_frame"
        )
        self._count(exc.reason, kind, f"{what}: {exc}")

    def _set_online(self, online: bool, error: str = "") -> None:
        stats = self.stats
        if online != stats.online:
            if online:
                log.info("%s is online (address %s)", self.device.id, stats.address)
            else:
                log.warning("%s is offline: %s", self.device.id, error)
        stats.online = online
        if error:
            stats.last_error = error

    # -- reading ----------------------------------------------------------------------------

    def _attempts(self) -> int:
        # A meter known to be offline is probed with one request, not retried: on a shared
        # line every retry would hold the line for another timeout.
        return 1 + (self.conn.retries if self.stats.online is not False else 0)

    async def _read(self, read: Read) -> bytes:
        attempts = self._attempts()
        for attempt in range(1, attempts + 1):
            self.stats.requests += 1
            try:
                return await self.line.read(
                    self.stats.address,
                    read.di,
                    self.conn.timeout,
                    read.size,
                    self.conn.wakeup,
                    self._line_problem,
                )
            except Dlt645Error as exc:
                if not exc.silent or attempt == attempts:
                    raise
        raise AssertionError("unreachable")

    async def _discover(self) -> None:
        attempts = self._attempts()
        for attempt in range(1, attempts + 1):
            self.stats.requests += 1
            try:
                address = await self.line.read_address(
                    self.conn.timeout, self.conn.wakeup, self._line_problem
                )
            except Dlt645Error as exc:
                if not exc.silent or attempt == attempts:
                    raise
                continue
            log.info(
                '%s: the meter on %s gives its address as %s (write `address: "%s"` in the '
                "site file to skip the broadcast)",
                self.device.id,
                self.line.name,
                address,
                address,
            )
            self.stats.address = address
            return

    async def poll_once(self) -> Sample:
        """Read every identifier once. Raises nothing: failures become bad points."""
        ts = time.time_ns()
        started = time.monotonic()
        stats = self.stats
        if not stats.address:
            try:
                await self._discover()
            except Dlt645Error as exc:  # no address, nothing to read
                self._failed(exc, "broadcast read-address")
                return self._offline(ts, started, exc)
        values: dict[str, Value] = {}
        bad: dict[str, str] = {}
        for read in self.reads:
            try:
                data = await self._read(read)
            except Dlt645Error as exc:
                self._failed(exc, f"DI {read.di:08X}")
                if exc.silent:
                    return self._offline(ts, started, exc)
                bad.update(dict.fromkeys((p.name for p in read.points), exc.reason))
                continue
            self._decode(read, data, values, bad)
        stats.polls += 1
        stats.last_poll_s = time.monotonic() - started
        self._set_online(True)
        stats.last_ok_ns = ts
        return Sample(self.device.id, ts, values, bad)

    def _offline(self, ts: int, started: float, error: Dlt645Error) -> Sample:
        stats = self.stats
        stats.polls += 1
        stats.failed_polls += 1
        stats.last_poll_s = time.monotonic() - started
        if self.conn.discover:
            stats.address = ""  # ask again next time: the meter may have been replaced
        self._set_online(False, str(error))
        return Sample(self.device.id, ts, {}, dict.fromkeys(self.names, OFFLINE))

    def _decode(
        self, read: Read, data: bytes, values: dict[str, Value], bad: dict[str, str]
    ) -> None:
        for p in read.points:
            size = p.data_format.size
            chunk = data[p.item * size : (p.item + 1) * size]
            if len(chunk) < size:
                bad[p.name] = "short_answer"
                self._count(
                    "short_answer",
                    "bad_frame",
                    f"DI {read.di:08X} answered {len(data)} data bytes, no item {p.item} "
                    f"({p.name})",
                )
                continue
            try:
                count = decode_bcd_count(chunk, p.data_format, p.signed)
            except FrameError as exc:
                bad[p.name] = exc.reason
                self._count(exc.reason, "bad_frame", f"{p.name} (DI {read.di:08X}): {exc}")
                continue
            scale, divisor = self._scales[p.name]
            value = count * scale / divisor
            if p.valid is not None and not p.valid.contains(value):
                bad[p.name] = "out_of_range"
                self._count(
                    "out_of_range",
                    "bad_frame",
                    f"{p.name} = {value:g} is outside {p.valid.min:g}..{p.valid.max:g}",
                )
                continue
            values[p.name] = value

    async def run(self, first_poll_at: float | None = None) -> None:
        """Poll on a fixed grid of the period; while offline, probe on the grid with a backoff
        that doubles up to BACKOFF_MAX (never below the period). A poll that ends after its
        next slot is followed at once by the next: missed slots are not made up."""
        interval = self.device.interval
        origin = time.monotonic() if first_poll_at is None else first_poll_at
        slot = 0
        next_at = origin
        failures = 0
        while True:
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            try:
                self.emit(await self.poll_once())
            except Exception as exc:  # a poller must never end: count it and carry on
                self._count("internal", "line", f"poll failed: {exc!r}")
                self._set_online(False, repr(exc))
            now = time.monotonic()
            if self.stats.online:
                failures = 0
                slot += 1
                next_at = origin + slot * interval
                if next_at <= now:
                    self.stats.overruns += 1
                    slot = max(slot, math.floor((now - origin) / interval))
                    next_at = now
            else:
                failures += 1
                delay = min(interval * 2 ** min(failures - 1, 20), max(BACKOFF_MAX, interval))
                slot = max(
                    slot + 1,
                    math.ceil((now + delay * random.uniform(0.9, 1.0) - origin) / interval),
                )
                next_at = origin + slot * interval


def poll_phases(periods: Mapping[str, float]) -> dict[str, float]:
    """Each meter's first poll after the start: meters sharing a period spread evenly over it
    (a line's meters one after another, not all at once)."""
    by_period: dict[float, list[str]] = {}
    for device, period in periods.items():
        by_period.setdefault(period, []).append(device)
    return {
        device: period * index / len(devices)
        for period, devices in by_period.items()
        for index, device in enumerate(devices)
    }


class Dlt645Driver:
    """The DriverRuntime of the site's DL/T 645 meters (drivers/contract.py)."""

    name = "dlt645"

    def __init__(self, ctx: RuntimeContext) -> None:
        devices = [
            Dlt645Device(e.id, e.profile, e.connection, e.poll, e.points) for e in ctx.devices
        ]
        self.lines: dict[LineKey, Line] = {}
        self.pollers: dict[str, MeterPoller] = {}
        # The site's line owners, shared with the Modbus devices on the same lines.
        self._owners = ctx.lines if ctx.lines is not None else Lines()
        for device in devices:
            key = line_key(device.connection)
            if key not in self.lines:
                timeout = max(
                    d.connection.timeout for d in devices if line_key(d.connection) == key
                )
                connect_timeout = max(timeout, 3.0)
                shared = self._owners.claim(
                    line_path(device.connection), self.name, connect_timeout
                )
                self.lines[key] = Line(device.connection, connect_timeout, shared)
            self.pollers[device.id] = MeterPoller(device, self.lines[key], ctx.emit)
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        start = time.monotonic()
        phases = poll_phases({d: p.device.interval for d, p in self.pollers.items()})
        self._tasks = [
            asyncio.create_task(poller.run(start + phases[device]), name=f"dlt645:{device}")
            for device, poller in self.pollers.items()
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        for line in self.lines.values():
            self._owners.release(line.shared.path, self.name)

    async def read_once(self, device: str) -> Sample:
        """Poll one meter now (as `guanjia read` would)."""
        return await self.pollers[device].poll_once()

    def can_write(self, _device: str) -> bool:
        return False

    async def write(self, command: Command) -> CommandResult:
        return CommandResult(
            command, False, None, f"{command.device!r} is a DL/T 645 meter: it is read, not written"
        )

    def statuses(self) -> list[DeviceStatus]:
        return [
            DeviceStatus(
                device,
                self.name,
                p.stats.online,
                bool(p.stats.online),
                f"{p.stats.last_poll_s * 1000:.1f}",
                p.stats.polls,
                p.stats.errors.total(),
                p.stats.last_error,
            )
            for device, p in self.pollers.items()
        ]

    def health(self) -> dict[str, int]:
        stats = [p.stats for p in self.pollers.values()]
        return {
            "dlt645_polls": sum(s.polls for s in stats),
            "dlt645_requests": sum(s.requests for s in stats),
            "dlt645_errors": sum(s.errors.total() for s in stats),
            "dlt645_no_answer": sum(s.kinds["no_answer"] for s in stats),
            "dlt645_error_answers": sum(s.kinds["error_answer"] for s in stats),
            "dlt645_bad_frames": sum(s.kinds["bad_frame"] for s in stats),
            "dlt645_line_problems": sum(s.kinds["line"] for s in stats),
            "dlt645_offline": sum(s.online is False for s in stats),
        }

    def problems(self) -> list[str]:
        """A line that does not open needs a person (a missing adapter, a permission)."""
        return [line.open_problem for line in self.lines.values() if line.open_problem]
