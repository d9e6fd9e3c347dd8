"""The building's MQTT devices on one broker: one client per real-world publisher, the
simulation's tick, injections for tests and the scripted demo, and the devices of a site file."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, get_args

from simulator.clock import SimClock
from simulator.models.hvac import AcUnit
from simulator.mqtt.dahua import DahuaBridgeCamera
from simulator.mqtt.device import (
    DEVICE_KINDS,
    Context,
    DeviceDescription,
    DeviceKind,
    EventRates,
    Injection,
    Message,
    SimDevice,
)
from simulator.mqtt.frigate import FrigateCamera, available
from simulator.mqtt.hikvision import Door, HikCamera
from simulator.mqtt.link import Link
from simulator.mqtt.shelly import ShellyChannel, ShellyEmChannel, online
from simulator.mqtt.tasmota import Plug
from simulator.mqtt.zigbee2mqtt import Climate, Contact, Occupancy, bridge_state

if TYPE_CHECKING:
    from simulator.building import Building
    from simulator.site import BuildingSite

log = logging.getLogger("guanjia.simulator.mqtt")

# MQTT profile (config/profiles/<name>.yaml) -> the simulated device that publishes for it.
PROFILE_KINDS: dict[str, DeviceKind] = {
    "hikvision_access_controller": "door",
    "z2m_door_contact": "contact",
    "z2m_temperature_humidity": "climate",
    "z2m_occupancy": "occupancy",
    "tasmota_energy_plug": "plug",
    "frigate_camera": "frigate_camera",
    "hikvision_camera": "hik_camera",
    "shelly_pro_4pm": "shelly_channel",
    "shelly_pro_em": "shelly_em_channel",
    "dahua_mqtt_camera": "dahua_bridge_camera",
}


class MqttBuilding:
    """The building's MQTT devices, publishing to one broker.

    ``ac_units`` maps a zone to the A/C model serving it (see ac_units_by_zone): a climate
    sensor in that zone reports the A/C's room temperature, so the gateway's A/C policy and the
    Zigbee sensors tell the same story. Everything runs on the event loop that called start();
    inject() and step() must be called from that loop.
    """

    TICK_S = 0.2

    def __init__(
        self,
        devices: Sequence[DeviceDescription],
        clock: SimClock,
        *,
        seed: int = 0,
        rates: EventRates | None = None,
        ac_units: Mapping[str, AcUnit] | None = None,
        device_time: Callable[[float], float] | None = None,
    ) -> None:
        ids = [d.id for d in devices]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"duplicate device ids: {', '.join(dupes)}")
        self.clock = clock
        self.ctx = Context(clock, rates or EventRates(), seed)
        if device_time is not None:
            self.ctx.device_time = device_time
        start = clock.now().timestamp()
        self.devices: dict[str, SimDevice] = {}
        for desc in devices:
            self.devices[desc.id] = self._make(desc, start, ac_units or {})
        # Messages published per device id (births included): for tests and the demo's status.
        self.sent: Counter[str] = Counter()
        self._links: dict[str, Link] = {}
        self._host = ""
        self._port = 0
        self._token = secrets.token_hex(3)  # two buildings on one broker: distinct client ids
        self._last = start
        self._task: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()

    def _make(self, desc: DeviceDescription, start: float, ac: Mapping[str, AcUnit]) -> SimDevice:
        ctx = self.ctx
        match desc.kind:
            case "door":
                return Door(desc, ctx, start)
            case "contact":
                return Contact(desc, ctx, start)
            case "climate":
                return Climate(desc, ctx, start, ac.get(desc.zone) if desc.zone else None)
            case "occupancy":
                return Occupancy(desc, ctx, start)
            case "plug":
                return Plug(desc, ctx, start)
            case "frigate_camera":
                return FrigateCamera(desc, ctx, start)
            case "hik_camera":
                return HikCamera(desc, ctx, start)
            case "shelly_channel":
                return ShellyChannel(desc, ctx, start)
            case "shelly_em_channel":
                return ShellyEmChannel(desc, ctx, start)
            case "dahua_bridge_camera":
                return DahuaBridgeCamera(desc, ctx, start)
        raise ValueError(f"{desc.id}: unknown kind {desc.kind!r}; one of {DEVICE_KINDS}")

    # -- connections -------------------------------------------------------------------------

    def _link_of(self, dev: SimDevice) -> str:
        if isinstance(dev, ShellyChannel):
            return dev.client  # the channels of one Shelly share its connection
        return f"tasmota:{dev.desc.id}" if isinstance(dev, Plug) else dev.link

    def _new_link(self, name: str) -> Link:
        loop = asyncio.get_running_loop()
        client_id = f"sim-{self._token}-{name.replace(':', '-')}"
        will: Message | None = None
        final: list[Message] = []
        if name == "zigbee2mqtt":
            will = bridge_state("offline")
            final = [will]
        elif name == "frigate":
            will = available("offline")
            final = [available("stopped")]
        elif name.startswith("tasmota:"):
            plug = self.devices[name.split(":", 1)[1]]
            assert isinstance(plug, Plug)
            will = plug.will
            # Tasmota says Offline itself before a restart; a power cut leaves it to the will.
            final = [plug.will]
        elif name.startswith("shelly:"):
            will = online(name.split(":", 1)[1], False)
            final = [will]
        return Link(name, client_id, loop, self._link_up, will=will, final=final)

    def _link_up(self, link: Link) -> None:
        """A client (re)connected: its bridge-level birth, then every device's."""
        now = self.clock.now().timestamp()
        if link.name == "zigbee2mqtt":
            self._send(link, "", bridge_state("online"))
        elif link.name == "frigate":
            self._send(link, "", available("online"))
        elif link.name.startswith("shelly:"):
            self._send(link, "", online(link.name.split(":", 1)[1], True))
        for dev in self.devices.values():
            if self._link_of(dev) == link.name:
                for message in dev.birth(now):
                    self._send(link, dev.desc.id, message)

    def _send(self, link: Link, device: str, message: Message) -> None:
        link.publish(message)
        if device:
            self.sent[device] += 1

    async def start(self, host: str, port: int, *, timeout: float = 10.0) -> None:
        """Connect every device's client and start the simulation; raises if the broker
        does not accept them within ``timeout`` seconds."""
        if self._task is not None:
            raise RuntimeError("MqttBuilding is already running")
        self._host, self._port = host, port
        names = sorted({self._link_of(d) for d in self.devices.values()})
        for name in names:
            link = self._new_link(name)
            self._links[name] = link
            link.start(host, port)
        try:
            waits = [
                asyncio.to_thread(link.connected.wait, timeout) for link in self._links.values()
            ]
            results = await asyncio.gather(*waits)
            missing = [n for n, ok in zip(self._links, results, strict=True) if not ok]
            if missing:
                raise RuntimeError(
                    f"simulated MQTT devices could not connect to {host}:{port} "
                    f"within {timeout:g} s: {', '.join(missing)}"
                )
        except BaseException:
            await self.stop()
            raise
        self._last = self.clock.now().timestamp()
        for dev in self.devices.values():
            dev.t = max(dev.t, self._last)
        self._task = asyncio.create_task(self._run(), name="mqtt-building")
        log.info(
            "%d simulated MQTT devices on %s:%d (%d clients)",
            len(self.devices),
            host,
            port,
            len(self._links),
        )

    async def stop(self) -> None:
        """Stop the simulation; every client says goodbye (final messages, DISCONNECT)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for background in list(self._background):
            background.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        links, self._links = self._links, {}
        await asyncio.gather(*(link.stop() for link in links.values()), return_exceptions=True)

    async def __aenter__(self) -> MqttBuilding:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- simulation --------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            try:
                self.step()
            except Exception:  # one device's bug must not stop the whole building
                log.exception("simulated MQTT devices: step failed")
            await asyncio.sleep(self.TICK_S)

    def step(self) -> list[tuple[str, Message]]:
        """Advance every device to the clock's now; publish (when started) and return what is
        due, as (device id, message). Tests drive a paused clock with this."""
        now = self.clock.now().timestamp()
        # A jump (clock.advance, a laptop resumed) is not replayed event by event.
        catch_up = now - self._last <= max(3600.0, 20.0 * self.TICK_S * self.clock.speed)
        self._last = now
        out: list[tuple[str, Message]] = []
        for dev in self.devices.values():
            if isinstance(dev, Plug):
                self._plug_power(dev, now)
                if not dev.powered:
                    dev.t = now
                    continue
            for message in dev.advance(now, catch_up=catch_up):
                out.append((dev.desc.id, message))
                link = self._links.get(self._link_of(dev))
                if link is not None:
                    self._send(link, dev.desc.id, message)
        return out

    def _plug_power(self, plug: Plug, now: float) -> None:
        if plug.powered or plug.restore_at is None or now < plug.restore_at:
            return
        if self._task is None:
            plug.power_on(now)  # not connected (a test driving step()): only the state
        else:
            plug.restore_at = None  # once: the reconnect takes a moment
            self._spawn(self._power_on(plug))

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _power_on(self, plug: Plug) -> None:
        name = self._link_of(plug)
        plug.power_on(self.clock.now().timestamp())
        if self._task is None:
            return  # not started: the state changes, nothing connects
        link = self._new_link(name)
        self._links[name] = link
        link.start(self._host, self._port)
        await asyncio.to_thread(link.connected.wait, 10.0)

    async def inject(
        self,
        kind: Injection,
        device: str,
        *,
        count: int = 3,
        duration_s: float | None = None,
    ) -> list[tuple[str, Message]]:
        """Make something happen now, whatever the rates say (tests, the scripted demo).

        ``count``: how many invalid cards or persons; ``duration_s`` (simulated seconds): how
        long a video loss, tamper alarm or power cut lasts (default: the device's own draw; a
        power cut lasts until ``power_restore``). What is due at once is published before this
        returns, and returned as step() does; later parts (a door closing) follow in time.
        """
        if kind not in get_args(Injection):
            raise ValueError(f"unknown injection {kind!r}; one of {get_args(Injection)}")
        dev = self.devices.get(device)
        if dev is None:
            raise KeyError(f"no simulated MQTT device {device!r}")
        now = self.clock.now().timestamp()
        if kind in ("power_loss", "power_restore"):
            if not isinstance(dev, Plug):
                raise ValueError(f"{device} ({dev.desc.kind}) has no power to cut")
            if kind == "power_loss" and dev.powered:
                dev.power_off(now, duration_s)
                link = self._links.get(self._link_of(dev))
                if link is not None:
                    await link.kill()
            elif kind == "power_restore" and not dev.powered:
                await self._power_on(dev)
            return []
        dev.inject(kind, now, count=count, duration_s=duration_s)
        return self.step()


# --- from a site file -------------------------------------------------------------------------


def from_site(site: BuildingSite) -> list[DeviceDescription]:
    """Descriptions of a site's enabled devices whose profile is one of PROFILE_KINDS.

    Variables come from the device's `mqtt: {vars: ...}` block, the zone and the role from its
    `zone` and `use` tags.
    """
    out: list[DeviceDescription] = []
    for dev in site.devices:
        kind = PROFILE_KINDS.get(dev.profile)
        if kind is None or not dev.enabled:
            continue
        variables = dict(dev.mqtt.vars) if dev.mqtt is not None else {}
        zone, role = dev.tags.get("zone", ""), dev.tags.get("use", "")
        out.append(DeviceDescription(dev.id, kind, variables, zone=zone, role=role))
    return out


def ac_units_by_zone(site: BuildingSite, building: Building) -> dict[str, AcUnit]:
    """The A/C models of a running Modbus building by their devices' `zone` tag."""
    out: dict[str, AcUnit] = {}
    for dev in site.devices:
        model = building.models.get(dev.id)
        zone = dev.tags.get("zone")
        if isinstance(model, AcUnit) and zone:
            out.setdefault(zone, model)
    return out
