"""The building's event-stream devices, each served where the site file expects it.

Every device of a site file with an `http_events:` block and a stream profile the building
knows (simulator.streams.devices.STREAM_DEVICES) gets a simulated device; devices at one
address and port (the channels of a recorder) share one server, which demands the user and
password the site file gives (its `${ENV}` or `file:` reference, resolved as the gateway
resolves it). The simulation ticks on the event loop; what a device says goes to every stream
open on its server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from pathlib import Path

from core.secret_refs import resolve_secret
from simulator.clock import SimClock
from simulator.mqtt.device import Context, DeviceDescription, DeviceKind, EventRates, SimDevice
from simulator.site import BuildingSite, HttpEventsEndpoint
from simulator.streams.devices import STREAM_DEVICES, body_of
from simulator.streams.server import StreamDevice

log = logging.getLogger("guanjia.simulator.streams")

ServerKey = tuple[str, int]

# What each stream profile's device is, for the shared device description.
_KINDS: dict[str, DeviceKind] = {
    "hikvision_isapi_camera": "hik_camera",
    "hikvision_isapi_access_controller": "door",
    "hikvision_isapi_anpr_camera": "anpr_camera",
    "dahua_camera": "dahua_camera",
    "dahua_vto": "dahua_vto",
    "dahua_traffic_camera": "traffic_camera",
}


class StreamBuilding:
    """The site's stream devices and their servers; start() on the loop that runs them."""

    TICK_S = 0.2

    def __init__(
        self,
        site: BuildingSite,
        clock: SimClock,
        *,
        seed: int = 0,
        rates: EventRates | None = None,
        device_time: Callable[[float], float] | None = None,
    ) -> None:
        self.clock = clock
        self.ctx = Context(clock, rates or EventRates(), seed)
        if device_time is not None:
            self.ctx.device_time = device_time
        self.base_dir = site.path.parent if site.path is not None else Path.cwd()
        start = clock.now().timestamp()
        self.devices: dict[str, SimDevice] = {}
        self.endpoints: dict[ServerKey, HttpEventsEndpoint] = {}
        self.vendors: dict[ServerKey, str] = {}
        self.server_of: dict[str, ServerKey] = {}  # device id -> its server
        for dev in site.devices:
            conn = dev.http_events
            make = STREAM_DEVICES.get(dev.profile)
            if conn is None or make is None or not dev.enabled:
                continue
            channel = str(conn.channels[0]) if conn.channels else "1"
            desc = DeviceDescription(
                dev.id,
                _KINDS[dev.profile],
                {"device": dev.id, "channel": channel},
                zone=dev.tags.get("zone", ""),
                role=dev.tags.get("use", ""),
            )
            self.devices[dev.id] = make(desc, self.ctx, start)
            key = (conn.host, conn.port)
            self.endpoints.setdefault(key, conn)
            self.vendors[key] = "hikvision" if dev.profile.startswith("hikvision") else "dahua"
            self.server_of[dev.id] = key
        self.servers: dict[ServerKey, StreamDevice] = {}
        self.sent: dict[str, int] = dict.fromkeys(self.devices, 0)
        self._stack = contextlib.AsyncExitStack()
        self._task: asyncio.Task[None] | None = None
        self._last = start

    async def start(self) -> None:
        """Serve every device's stream on its port (a port in use fails here, not later)."""
        for key, conn in self.endpoints.items():
            password = resolve_secret(conn.password, self.base_dir)
            server = await self._stack.enter_async_context(
                StreamDevice.serve(
                    self.vendors[key],
                    conn.host,
                    conn.port,
                    username=conn.username,
                    password=password,
                    heartbeat=True,
                )
            )
            self.servers[key] = server
            log.info("event stream of %s on %s:%d", self.vendors[key], *key)
        if self.devices:
            self._task = asyncio.create_task(self._run(), name="simulator streams")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._stack.aclose()
        self.servers = {}

    async def _run(self) -> None:
        while True:
            try:
                self.step()
            except Exception:  # one device's bug must not stop the building
                log.exception("simulated event streams: step failed")
            await asyncio.sleep(self.TICK_S)

    def step(self) -> None:
        now = self.clock.now().timestamp()
        catch_up = now - self._last <= max(3600.0, 20.0 * self.TICK_S * self.clock.speed)
        self._last = now
        for device_id, dev in self.devices.items():
            server = self.servers.get(self.server_of[device_id])
            for message in dev.advance(now, catch_up=catch_up):
                if server is not None:
                    server.send_part(*body_of(message))
                    self.sent[device_id] += 1
