"""The demo's script: the building misbehaves on schedule so the alarms appear within minutes.

Times are seconds of simulated time after the demo starts (the demo's clock starts on a July
weekday before office hours, so `--speed` shortens the whole script).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from simulator.building import Building
from simulator.clock import SimClock
from simulator.models import AcUnit
from simulator.mqtt import MqttBuilding
from simulator.mqtt.device import Injection, SimDevice

log = logging.getLogger("guanjia.demo")


@dataclass(frozen=True, slots=True)
class Step:
    at: float  # simulated seconds after the start
    what: str  # told in the log, in both languages
    act: Callable[[], Awaitable[None]]


class Scenario:
    def __init__(self, clock: SimClock, modbus: Building, mqtt: MqttBuilding) -> None:
        self.clock = clock
        self.modbus = modbus
        self.mqtt = mqtt
        self.steps: list[Step] = []
        self.done: list[str] = []
        self._task: asyncio.Task[None] | None = None

    def add(self, at: float, what: str, act: Callable[[], Awaitable[None]]) -> None:
        self.steps.append(Step(at, what, act))

    @classmethod
    def default(cls, clock: SimClock, modbus: Building, mqtt: MqttBuilding) -> Scenario:
        """The issue's story; steps whose device the site lacks are left out."""
        s = cls(clock, modbus, mqtt)
        ac = modbus.models.get("ac-301")
        if isinstance(ac, AcUnit):

            async def too_cold() -> None:
                ac.on_write("on_off", 1)
                ac.on_write("mode", 0)  # cool
                ac.on_write("setpoint_degc", 22.0)

            s.add(40, "有人把 301 空调设为 22 °C / someone sets AC 301 to 22 °C", too_cold)
        # The devices that post their events only post when something happens: early on,
        # something does (their first post also makes them available).
        streams = modbus.streams.devices if modbus.streams is not None else {}
        if "cam-gate-car-park" in streams:
            s.add(
                20,
                "送货车到停车场门口 / a delivery van at the car-park gate (its plate is posted)",
                _inject(clock, streams["cam-gate-car-park"], "card_pass"),
            )
        if "cam-loading-bay" in streams:
            s.add(
                25,
                "卸货区有人走动 / someone in the loading bay (the camera posts its motion)",
                _inject(clock, streams["cam-loading-bay"], "person"),
            )
        door = "door-archive"
        if door in mqtt.devices:
            s.add(
                70,
                "档案室门被强行打开 / the archive door is forced",
                lambda: _quietly(mqtt.inject("forced_door", door)),
            )
        meter = modbus.devices.get("meter-b1-lighting")
        if meter is not None:

            async def meter_dies() -> None:
                meter.set_dead()

            async def meter_back() -> None:
                meter.clear_faults()

            s.add(100, "照明插座电表离线 / the lighting meter goes offline", meter_dies)
            s.add(600, "照明插座电表恢复 / the lighting meter is back", meter_back)
        if "door-main-entrance" in mqtt.devices:
            s.add(
                130,
                "大门被撑开不关 / the main entrance is held open",
                lambda: _quietly(mqtt.inject("held_open", "door-main-entrance")),
            )
        if "cam-lobby" in mqtt.devices:
            s.add(
                160,
                "大厅摄像机视频丢失 / the lobby camera loses video",
                lambda: _quietly(mqtt.inject("video_loss", "cam-lobby", duration_s=300)),
            )
        if "door-main-entrance" in mqtt.devices:
            s.add(
                190,
                "大门连续刷无效卡 / repeated invalid cards at the main entrance",
                lambda: _quietly(mqtt.inject("invalid_cards", "door-main-entrance", count=4)),
            )
        return s

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="demo-scenario")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        start = self.clock.now().timestamp()
        for step in sorted(self.steps, key=lambda s: s.at):
            due = start + step.at - self.clock.now().timestamp()  # simulated seconds
            if due > 0:
                await asyncio.sleep(due / max(self.clock.speed, 1e-6))
            log.warning("demo: %s", step.what)
            try:
                await step.act()
            except Exception:  # a broken step must not end the demo
                log.exception("demo step failed: %s", step.what)
            self.done.append(step.what)


async def _quietly(awaitable: Awaitable[object]) -> None:
    await awaitable


def _inject(clock: SimClock, device: SimDevice, kind: Injection) -> Callable[[], Awaitable[None]]:
    """A step that sets something off at an event-stream device, now in simulated time."""

    async def act() -> None:
        device.inject(kind, clock.now().timestamp(), count=1, duration_s=None)

    return act
