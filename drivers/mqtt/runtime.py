"""The MQTT driver at run time: the site's MQTT devices, read from the brokers they publish to.

The connections are the site's (drivers/mqtt/hub.py): the gateway's own topics share them. On
each broker this driver takes every message nobody else claims, maps it on the network thread
(drivers/mqtt/ingest.py) and hands the Samples to the event loop in batches (Handoff). Devices
publish, they are not written: commands to them are refused by the gateway's command path.
"""

from __future__ import annotations

import asyncio
from typing import Any

from core.types import Command, CommandResult
from drivers.contract import DeviceStatus, RuntimeContext
from drivers.mqtt.client import Handoff
from drivers.mqtt.config import MqttDeviceConfig
from drivers.mqtt.hub import BrokerHub
from drivers.mqtt.ingest import Ingest, MqttDevice


class MqttDriver:
    name = "mqtt"

    def __init__(self, ctx: RuntimeContext) -> None:
        if ctx.brokers is None:
            raise ValueError("MQTT devices need the site's `mqtt: {brokers: [...]}` section")
        self.brokers: BrokerHub = ctx.brokers
        self.emit = ctx.emit
        self.heartbeat_check = ctx.heartbeat_check
        devices = [self._device(e.id, e.profile, e.connection) for e in ctx.devices]
        self.ingest: dict[str, Ingest] = {}
        for broker in self.brokers.connections:
            mine = [d for d in devices if d.broker == broker]
            ingest = Ingest(mine, ctx.max_payload, timezone=ctx.timezone)
            self.ingest[broker] = ingest
            self.brokers.subscribe(broker, ingest.router.filters(), self._handler(ingest))
        self.handoff: Handoff | None = None
        self._tasks: list[asyncio.Task[None]] = []

    def _device(self, device_id: str, profile: Any, conn: MqttDeviceConfig) -> MqttDevice:
        broker = conn.broker or next(iter(self.brokers.connections))
        return MqttDevice(device_id, profile, broker, {"device": device_id, **conn.vars})

    def _handler(self, ingest: Ingest) -> Any:
        def handle(topic: str, payload: bytes, message: Any) -> None:
            handoff = self.handoff
            if handoff is not None:
                handoff.put(ingest.on_message(topic, payload, bool(message.retain)))

        return handle

    def start(self) -> None:
        self.handoff = Handoff(asyncio.get_running_loop(), self.emit)
        self._tasks = [asyncio.create_task(self._check_heartbeats(), name="mqtt-heartbeat")]

    async def stop(self) -> None:
        """The gateway stops the brokers first: what paho acknowledged reaches the bus here."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.handoff is not None:
            self.handoff.close()

    async def _check_heartbeats(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_check)
            for ingest in self.ingest.values():
                for sample in ingest.check_heartbeats():
                    self.emit(sample)

    def can_write(self, _device: str) -> bool:
        return False

    async def write(self, command: Command) -> CommandResult:
        return CommandResult(command, False, None, f"{command.device!r} is an MQTT device")

    def statuses(self) -> list[DeviceStatus]:
        return [
            DeviceStatus(device, self.name, st.online, st.up, "mqtt", st.messages, 0)
            for ingest in self.ingest.values()
            for device, st in ingest.state.items()
        ]

    def health(self) -> dict[str, int]:
        stats = [i.stats for i in self.ingest.values()]
        states = [s for i in self.ingest.values() for s in i.state.values()]
        return {
            "mqtt_messages": sum(s.messages for s in stats),
            "mqtt_rejected": sum(s.rejected for s in stats),
            "mqtt_unclaimed": sum(s.unclaimed for s in stats),
            "mqtt_unmatched": sum(s.unmatched for s in stats),
            "mqtt_duplicates": sum(s.duplicates for s in stats),
            "mqtt_clock_refused": sum(s.clock_refused for s in stats),
            "mqtt_retained_events_dropped": sum(s.retained_events for s in stats),
            "mqtt_problems_folded": sum(s.folded for s in stats),
            "mqtt_devices_unmonitored": sum(not s.tracked for s in states),
            "mqtt_handoff_dropped": self.handoff.dropped if self.handoff else 0,
        }

    def problems(self) -> list[str]:
        return []  # a broker's trouble is the hub's, shown once for everyone who uses it
