"""The building's event-stream devices, each served where the site file expects it.

Every device of a site file with an `http_events:` block and a stream profile the building
knows (simulator.streams.devices.STREAM_DEVICES) gets a simulated device; devices at one
address and port (the channels of a recorder) share one server, which demands the user and
password the site file gives (its `${ENV}` or `file:` reference, resolved as the gateway
resolves it). The simulation ticks on the event loop; what a device says goes to every stream
open on its server.

A Hikvision device with `push:` serves nothing: it posts what it says to the gateway's
listener (`push.bind`:`push.port`, on loopback) with the site's user and password
(simulator.streams.push), its MAC address the site's `push.device_id`. It posts from
127.0.0.1: devices sharing a listener are told apart by their device ids, as behind a NAT.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Callable
from pathlib import Path

from core.secret_refs import resolve_secret
from simulator.clock import SimClock
from simulator.mqtt.device import Context, DeviceDescription, DeviceKind, EventRates, SimDevice
from simulator.site import BuildingSite, HttpEventsEndpoint
from simulator.streams.devices import PUSH_DEVICES, STREAM_DEVICES, body_of
from simulator.streams.push import PushDevice, push_post
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
_MAC = re.compile(r"^[0-9a-fA-F]{2}([:-][0-9a-fA-F]{2}){5}$")


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
        self.push_of: dict[str, HttpEventsEndpoint] = {}  # device id -> where it posts
        for dev in site.devices:
            conn = dev.http_events
            if conn is None or not dev.enabled:
                continue
            make = (PUSH_DEVICES if conn.push is not None else STREAM_DEVICES).get(dev.profile)
            if make is None:
                continue
            channel = str(conn.channels[0]) if conn.channels else "1"
            variables = {"device": dev.id, "channel": channel}
            if conn.push is not None and conn.push.device_id is not None:
                if not _MAC.match(conn.push.device_id):
                    raise ValueError(
                        f"device {dev.id}: the virtual building gives a posting device the MAC "
                        f"address of push.device_id; {conn.push.device_id!r} is not one "
                        "(write it as 44:19:b6:00:00:01)"
                    )
                variables["mac"] = conn.push.device_id.lower().replace("-", ":")
            desc = DeviceDescription(
                dev.id,
                _KINDS[dev.profile],
                variables,
                zone=dev.tags.get("zone", ""),
                role=dev.tags.get("use", ""),
            )
            self.devices[dev.id] = make(desc, self.ctx, start)
            if conn.push is not None:
                self.push_of[dev.id] = conn
                continue
            key = (conn.host, conn.port)
            self.endpoints.setdefault(key, conn)
            self.vendors[key] = "hikvision" if dev.profile.startswith("hikvision") else "dahua"
            self.server_of[dev.id] = key
        self.servers: dict[ServerKey, StreamDevice] = {}
        self.pushers: dict[str, PushDevice] = {}  # device id -> its posting side, once started
        self.sent: dict[str, int] = dict.fromkeys(self.devices, 0)
        self._stack = contextlib.AsyncExitStack()
        self._task: asyncio.Task[None] | None = None
        self._last = start

    @property
    def push_targets(self) -> list[tuple[str, int]]:
        """Where the posting devices post: the gateway's listeners."""
        targets = {(c.push.host, c.push.port) for c in self.push_of.values() if c.push}
        return sorted(targets)

    async def start(self) -> None:
        """Serve every device's stream on its port (a port in use fails here, not later), and
        start every posting device (its listener may come later: it retries)."""
        for key, conn in self.endpoints.items():
            password = resolve_secret(conn.password or "", self.base_dir)
            server = await self._stack.enter_async_context(
                StreamDevice.serve(
                    self.vendors[key],
                    conn.host,
                    conn.port,
                    username=conn.username or "",
                    password=password,
                    heartbeat=True,
                )
            )
            self.servers[key] = server
            log.info("event stream of %s on %s:%d", self.vendors[key], *key)
        for device_id, conn in self.push_of.items():
            assert conn.push is not None
            host = f"[{conn.push.host}]" if ":" in conn.push.host else conn.push.host
            pusher = PushDevice(
                f"http://{host}:{conn.push.port}/",
                name=device_id,
                username=conn.username,
                password=None
                if conn.password is None
                else resolve_secret(conn.password, self.base_dir),
            )
            await pusher.start()
            self._stack.push_async_callback(pusher.stop)
            self.pushers[device_id] = pusher
            log.info("%s posts its events to %s", device_id, pusher.url)
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
        self.pushers = {}

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
            messages = dev.advance(now, catch_up=catch_up)
            pusher = self.pushers.get(device_id)
            if pusher is not None:
                for message in messages:
                    post = push_post(message.payload)
                    if post is not None:
                        pusher.post(post)
                        self.sent[device_id] += 1
                continue
            server = self.servers.get(self.server_of.get(device_id, ("", 0)))
            for message in messages:
                if server is not None:
                    server.send_part(*body_of(message))
                    self.sent[device_id] += 1
