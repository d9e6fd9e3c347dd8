"""`guanjia demo`: the gateway against the virtual building.

The demo's wiring: an embedded MQTT broker when the site names none, the building's Modbus
devices and MQTT devices, the scripted misbehaviour, and the gateway on the same (possibly
faster) clock. The gateway may use the simulator; the simulator never uses the gateway.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from core.data_dir import data_dir, in_checkout
from gateway.config_load import LoadedSite, load_site, needs_embedded_broker
from gateway.site import BrokerConfig, MqttConfig
from simulator.broker import EmbeddedBroker, start_embedded_broker
from simulator.building import start_building
from simulator.clock import SimClock
from simulator.mqtt import MqttBuilding, ac_units_by_zone, from_site
from simulator.scenario import Scenario
from simulator.site import read_site

# Runs the gateway on a loaded site until it stops; the rules read time from the clock given.
RunGateway = Callable[[LoadedSite, Callable[[], datetime]], Awaitable[None]]


class DemoError(Exception):
    """The demo cannot start, for a reason the user can fix (said in one line)."""


DEMO_SITE_NAME = "demo-site.yaml"


def shipped_demo_site() -> Path:
    """The demo's site file. In a checkout, config/demo-site.yaml, whose spool and stores
    (../var/) land in the checkout's var/. An installed package's folder is no place for
    them: there the file, and the files it names beside it (`file:` secrets), are copied to
    $XDG_STATE_HOME/guanjia/demo/config/ (~/.local/state/... by default) on every start (a
    new release's demo replaces the old one's), and its var/ is beside that copy."""
    shipped = data_dir() / DEMO_SITE_NAME
    if in_checkout():
        return shipped
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    folder = Path(state) / "guanjia" / "demo" / "config"
    folder.mkdir(parents=True, exist_ok=True)
    text = shipped.read_text(encoding="utf-8")
    for name in sorted(set(re.findall(r"file:([\w.-]+)", text))):
        shutil.copyfile(shipped.parent / name, folder / name)
    copy = folder / DEMO_SITE_NAME
    copy.write_text(text, encoding="utf-8")
    return copy


@dataclass(frozen=True, slots=True)
class DemoOptions:
    site: Path
    speed: float = 1.0
    start: datetime | None = None  # simulated local start; None: now
    scenario: bool = True
    alarm_store: str | None = None  # instead of the site file's


async def run_demo(options: DemoOptions, run_gateway: RunGateway) -> None:
    """Start the virtual building of a site, run the gateway against it, stop everything."""
    path = options.site
    broker: EmbeddedBroker | None = None
    mqtt: MqttConfig | None = None
    if needs_embedded_broker(path):
        # The site names no broker: the demo brings its own, on loopback.
        broker = await start_embedded_broker()
        mqtt = MqttConfig(brokers=[BrokerConfig(name="site", host=broker.host, port=broker.port)])
    try:
        loaded = load_site(path, mqtt=mqtt)
        if options.alarm_store:
            alarms = loaded.site.alarms.model_copy(update={"store": options.alarm_store})
            loaded.site = loaded.site.model_copy(update={"alarms": alarms})
            notify = loaded.site.notify
            if notify is not None:  # the outbox beside the alarm store (a test's own folder)
                outbox = str(Path(options.alarm_store).with_name("notify-outbox.db"))
                notify = notify.model_copy(update={"outbox": outbox})
                loaded.site = loaded.site.model_copy(update={"notify": notify})
        clock = SimClock(speed=options.speed, start=options.start, tz=loaded.site.site.timezone)
        site = read_site(path)  # the building's own reading of the file just validated
        try:
            building = await start_building(site, clock, device_time=_wall_clock(clock))
        except OSError as exc:  # a port of the building taken: another demo running
            raise DemoError(
                f"{exc}; is another demo (or `python -m simulator.building`) running? Stop it "
                "first: the demo's devices are on fixed ports"
            ) from None
        devices = MqttBuilding(
            from_site(site),
            clock,
            ac_units=ac_units_by_zone(site, building),
            device_time=_wall_clock(clock),
        )
        scenario = Scenario.default(clock, building, devices)
        try:
            if loaded.site.mqtt is not None and devices.devices:
                first = loaded.site.mqtt.brokers[0]
                await devices.start(first.host, first.port)
            if options.scenario:
                scenario.start()
            await run_gateway(loaded, clock.now)  # rules live in the building's time
        finally:
            await scenario.stop()
            await devices.stop()
            await building.stop()
    finally:
        if broker is not None:
            await broker.stop()


def _wall_clock(clock: SimClock) -> Callable[[float], float]:
    """The simulated devices' own clocks show the wall time at which a simulated instant
    happens, as a real building's devices do: the gateway checks device time against its own
    and would (rightly) distrust the building's July."""

    def wall(t: float) -> float:
        speed = clock.speed or 1.0
        return time.time() - (clock.now().timestamp() - t) / speed

    return wall
