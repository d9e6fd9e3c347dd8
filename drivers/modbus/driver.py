"""The Modbus driver: links and pollers for every Modbus device of a site."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from core.types import Command, CommandResult, Sample
from drivers.contract import DeviceStatus, RuntimeContext
from drivers.modbus.codec import PointSpec, resolve
from drivers.modbus.config import RtuConnection, RtuOverTcpConnection, TcpConnection
from drivers.modbus.link import Link, LinkKey, link_key
from drivers.modbus.planner import WireModel, plan
from drivers.modbus.poller import DevicePlan, DevicePoller
from drivers.modbus.profile import Profile

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


def device_plan(device: ModbusDevice) -> DevicePlan:
    profile, conn = device.profile, device.connection
    specs: list[PointSpec] = resolve(profile, conn.base, device.points)
    base = conn.base if conn.base is not None else profile.base
    # Holes are relative to the base, like point addresses.
    holes = [
        h.model_copy(update={"start": h.start + base, "end": h.end + base}) for h in profile.holes
    ]
    requests = plan(
        specs,
        wire_model(conn, profile),
        max_registers=conn.max_registers or profile.transport.max_registers_per_request,
        max_bits=profile.transport.max_bits_per_request,
        holes=holes,
    )
    return DevicePlan(
        device=device.id,
        unit=conn.unit,
        specs=tuple(specs),
        requests=tuple(requests),
        interval=device.interval,
        timeout=conn.timeout,
        retries=conn.retries,
    )


def poll_phases(intervals: Mapping[str, float]) -> dict[str, float]:
    """Each device's first poll, in seconds after the start: the devices that share a period
    are spread evenly over it, in their order (200 devices at 1 s: one every 5 ms).

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
        return cls(devices, ctx.emit)

    def __init__(self, devices: Sequence[ModbusDevice], emit: Callable[[Sample], None]) -> None:
        self.links: dict[LinkKey, Link] = {}
        self.pollers: dict[str, DevicePoller] = {}
        line_timeouts: dict[LinkKey, float] = {}
        for device in devices:
            key = link_key(device.connection)
            line_timeouts[key] = max(line_timeouts.get(key, 0.0), device.connection.timeout)
        for device in devices:
            key = link_key(device.connection)
            if key not in self.links:
                self.links[key] = Link.for_connection(device.connection, line_timeouts[key])
            self.pollers[device.id] = DevicePoller(device_plan(device), self.links[key], emit)
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        """Start every poller, devices that share a period evenly spread over it."""
        start = time.monotonic()
        phases = poll_phases({d: p.plan.interval for d, p in self.pollers.items()})
        self._tasks = [
            asyncio.create_task(p.run(start + phases[d]), name=f"poll:{d}")
            for d, p in self.pollers.items()
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        for link in self.links.values():
            link.close()

    async def read_once(self, device: str) -> Sample:
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
        return {"modbus_errors": sum(p.stats.errors.total() for p in self.pollers.values())}

    def problems(self) -> list[str]:
        return []  # an offline device is in its status, with its last error
