"""The Modbus driver: links and pollers for every Modbus device of a site.

Devices behind one unit id on one path (the indoor units of a CoolMasterNet, each a device at
its own base) that share a period and request settings are polled as one group, with one plan
over all their points; see `poll_groups`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass

from core.types import Command, CommandResult, Sample
from drivers.contract import DeviceStatus, RuntimeContext
from drivers.lines import Lines, SharedLine
from drivers.modbus.codec import PointSpec, resolve
from drivers.modbus.config import RtuConnection, RtuOverTcpConnection, TcpConnection
from drivers.modbus.derived import DerivedSpec, needed
from drivers.modbus.line_client import SharedLineClient
from drivers.modbus.link import Link, LinkKey, line_path, line_settings, link_key
from drivers.modbus.overrides import apply_overrides
from drivers.modbus.planner import WireModel, plan
from drivers.modbus.poller import DevicePlan, DevicePoller, GroupPlan, GroupPoller, member_key
from drivers.modbus.profile import Hole, Profile

Connection = TcpConnection | RtuOverTcpConnection | RtuConnection


@dataclass(frozen=True, slots=True)
class ModbusDevice:
    """A Modbus device as the site file describes it."""

    id: str
    profile: Profile
    connection: Connection
    interval: float
    points: Sequence[str] | None = None


def wire_model(conn: Connection, profile: Profile) -> WireModel:
    turnaround = (
        conn.turnaround_ms if conn.turnaround_ms is not None else profile.transport.turnaround_ms
    )
    if isinstance(conn, RtuConnection):
        return WireModel.rtu(conn.baudrate, turnaround, conn.bits_per_char)
    if isinstance(conn, RtuOverTcpConnection):
        return WireModel.rtu(conn.baudrate, turnaround, rtt_ms=0.5)
    return WireModel.tcp(turnaround)


@dataclass(frozen=True, slots=True)
class _Limits:
    """How a device's requests are planned: the wire's model and the request sizes."""

    wire: WireModel
    max_registers: int
    max_bits: int


def _limits(device: ModbusDevice) -> _Limits:
    profile, conn = device.profile, device.connection
    return _Limits(
        wire_model(conn, profile),
        conn.max_registers or profile.transport.max_registers_per_request,
        profile.transport.max_bits_per_request,
    )


def _profile(device: ModbusDevice) -> Profile:
    """The device's profile with the site's `function_overrides` applied."""
    return apply_overrides(device.profile, device.connection.function_overrides)


def _derived(device: ModbusDevice) -> tuple[DerivedSpec, ...]:
    """The profile's derived points the site reads (all, or those its `points:` names)."""
    derived = device.profile.derived
    wanted = None if device.points is None else needed(derived, set(device.points))
    return tuple(DerivedSpec.of(d) for d in derived if wanted is None or d.name in wanted)


def _holes(device: ModbusDevice) -> list[Hole]:
    """The profile's holes at the device's base (they are relative to it, like addresses)."""
    profile, conn = _profile(device), device.connection
    base = conn.base if conn.base is not None else profile.base
    return [
        h.model_copy(update={"start": h.start + base, "end": h.end + base}) for h in profile.holes
    ]


def device_plan(device: ModbusDevice) -> DevicePlan:
    conn = device.connection
    specs: list[PointSpec] = resolve(_profile(device), conn.base, device.points)
    limits = _limits(device)
    requests = plan(
        specs,
        limits.wire,
        max_registers=limits.max_registers,
        max_bits=limits.max_bits,
        holes=_holes(device),
    )
    return DevicePlan(
        device=device.id,
        unit=conn.unit,
        specs=tuple(specs),
        requests=tuple(requests),
        interval=device.interval,
        timeout=conn.timeout,
        retries=conn.retries,
        derived=_derived(device),
    )


def group_key(device: ModbusDevice) -> Hashable:
    """Devices with one key are polled together: the same path and unit id (one slave: the
    indoor units of a CoolMasterNet, one device each at its own base), the same period, and
    the same timeout, retries and request planning (wire model, request sizes), so one merged
    plan serves each of them as well as its own would. A device the site gives other settings
    (its own `timeout`, `retries`, `max_registers` or `turnaround_ms`, or another `poll`) is
    polled apart."""
    conn = device.connection
    return (link_key(conn), conn.unit, device.interval, conn.timeout, conn.retries, _limits(device))


def poll_groups(devices: Sequence[ModbusDevice]) -> list[list[ModbusDevice]]:
    """The devices polled together (most alone), in the order of each group's first device."""
    groups: dict[Hashable, list[ModbusDevice]] = {}
    for device in devices:
        groups.setdefault(group_key(device), []).append(device)
    return list(groups.values())


def group_plan(devices: Sequence[ModbusDevice]) -> GroupPlan:
    """One plan over the points of devices that share a `group_key`: the cheapest requests by
    wire time across all of them (within the request size, never across any device's hole)."""
    members = [device_plan(d) for d in devices]
    limits = _limits(devices[0])
    specs = [
        dataclasses.replace(spec, name=member_key(index, spec.name))
        for index, member in enumerate(members)
        for spec in member.specs
    ]
    requests = plan(
        specs,
        limits.wire,
        max_registers=limits.max_registers,
        max_bits=limits.max_bits,
        holes=[h for d in devices for h in _holes(d)],
    )
    return GroupPlan.of(members, requests)


def poll_plans(devices: Sequence[ModbusDevice]) -> list[DevicePlan | GroupPlan]:
    """What the driver polls, each with its requests: a group's plan, or a device's own."""
    return [
        device_plan(group[0]) if len(group) == 1 else group_plan(group)
        for group in poll_groups(devices)
    ]


def poll_phases(intervals: Mapping[str, float]) -> dict[str, float]:
    """Each poller's first poll, in seconds after the start: the pollers (a device, or a group
    of devices read together) that share a period are spread evenly over it, in their order
    (200 devices at 1 s: one every 5 ms).

    Deterministic, so a restart keeps the pattern; a burst of requests all at once would load
    the box, the network and shared lines in spikes instead of evenly."""
    by_period: dict[float, list[str]] = {}
    for device, interval in intervals.items():
        by_period.setdefault(interval, []).append(device)
    return {
        device: interval * index / len(devices)
        for interval, devices in by_period.items()
        for index, device in enumerate(devices)
    }


class ModbusDriver:
    """Owns the links and pollers; a dead device never delays a healthy one on another path."""

    name = "modbus"

    @classmethod
    def from_context(cls, ctx: RuntimeContext) -> ModbusDriver:
        devices = [
            ModbusDevice(e.id, e.profile, e.connection, e.poll, e.points) for e in ctx.devices
        ]
        return cls(devices, ctx.emit, ctx.lines)

    def __init__(
        self,
        devices: Sequence[ModbusDevice],
        emit: Callable[[Sample], None],
        lines: Lines | None = None,
    ) -> None:
        self.links: dict[LinkKey, Link] = {}
        self.pollers: dict[str, DevicePoller] = {}  # every device's, in the site's order
        self.groups: dict[str, GroupPoller] = {}  # devices read together, by group name
        # What start() runs, in the order of each one's first device: groups and the devices
        # polled alone.
        self._runners: dict[str, DevicePoller | GroupPoller] = {}
        line_timeouts: dict[LinkKey, float] = {}
        # A path's write rate: `guanjia check` refuses devices of one path that disagree;
        # built without it (tests, `guanjia read`), the strictest given applies.
        write_rates: dict[LinkKey, float] = {}
        for device in devices:
            key = link_key(device.connection)
            line_timeouts[key] = max(line_timeouts.get(key, 0.0), device.connection.timeout)
            rate = device.connection.max_writes_per_s
            if rate is not None:
                write_rates[key] = min(write_rates.get(key, rate), rate)
        made: dict[str, DevicePoller] = {}
        # The site's line owners; the lines claimed here, with a connection of each.
        self._owners = lines if lines is not None else Lines()
        self._lines: dict[LinkKey, tuple[SharedLine, Connection]] = {}
        for members in poll_groups(devices):
            conn = members[0].connection
            key = link_key(conn)
            if key not in self.links:
                self.links[key] = Link.for_connection(
                    conn, line_timeouts[key], write_rates.get(key)
                )
                path = line_path(conn)
                if path is not None:
                    self._lines[key] = (
                        self._owners.claim(path, self.name, line_timeouts[key]),
                        conn,
                    )
            link = self.links[key]
            if len(members) == 1:
                poller = DevicePoller(device_plan(members[0]), link, emit)
                made[poller.plan.device] = self._runners[poller.plan.device] = poller
                continue
            group = group_plan(members)
            pollers = [DevicePoller(member, link, emit) for member in group.members]
            made.update((p.plan.device, p) for p in pollers)
            self.groups[group.name] = self._runners[group.name] = GroupPoller(
                group, pollers, link, emit
            )
        self.pollers = {d.id: made[d.id] for d in devices}
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        """Start every poller, those that share a period evenly spread over it."""
        # Every driver has claimed its lines by now: those another driver uses too are
        # borrowed turn by turn from their owner.
        for key, (line, conn) in self._lines.items():
            if line.shared and not isinstance(self.links[key].client, SharedLineClient):
                self.links[key].use_line(line, line_settings(conn))
        start = time.monotonic()
        phases = poll_phases({name: r.plan.interval for name, r in self._runners.items()})
        self._tasks = [
            asyncio.create_task(r.run(start + phases[name]), name=f"poll:{name}")
            for name, r in self._runners.items()
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        for link in self.links.values():
            link.close()
        for line, _conn in self._lines.values():
            self._owners.release(line.path, self.name)

    async def read_once(self, device: str) -> Sample:
        """Poll one device alone, with its own plan (as `guanjia read` does), even when it is
        polled with a group."""
        return await self.pollers[device].poll_once()

    def can_write(self, device: str) -> bool:
        return device in self.pollers

    async def write(self, command: Command) -> CommandResult:
        poller = self.pollers.get(command.device)
        if poller is None:
            return CommandResult(command, False, None, f"no Modbus device {command.device!r}")
        return await poller.write(command)

    def statuses(self) -> list[DeviceStatus]:
        out = []
        for device, poller in self.pollers.items():
            s = poller.stats
            out.append(
                DeviceStatus(
                    device,
                    self.name,
                    s.online,
                    bool(s.online),
                    f"{s.last_poll_s * 1000:.1f}",
                    s.polls,
                    s.errors.total(),
                    s.last_error,
                )
            )
        return out

    def health(self) -> dict[str, int]:
        stats = [p.stats for p in self.pollers.values()]
        pacers = [link.pacer for link in self.links.values() if link.pacer is not None]
        return {
            "modbus_errors": sum(s.errors.total() for s in stats),
            "modbus_writes": sum(s.writes for s in stats),
            "modbus_writes_confirmed": sum(s.writes_confirmed for s in stats),
            "modbus_writes_rejected_by_readback": sum(s.writes_rejected_by_readback for s in stats),
            "modbus_writes_failed": sum(s.writes_failed for s in stats),
            # Writes that waited for their slot at a path's max_writes_per_s, and how long.
            "modbus_write_rate_waits": sum(p.waits for p in pacers),
            "modbus_write_rate_wait_ms": round(sum(p.waited_s for p in pacers) * 1000),
        }

    def problems(self) -> list[str]:
        return []  # an offline device is in its status, with its last error
