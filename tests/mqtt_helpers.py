"""MQTT helpers the tests share: a small site with a sensor (and a meter), a device or
operator client on a real broker, waiting without blocking the gateway's loop."""

from __future__ import annotations

import asyncio
import textwrap
import threading
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from core.types import Sample
from gateway.service import Gateway
from tests.modbus_devices import PROFILE
from tests.servers import MosquittoServer

SENSOR_PROFILE = {
    "name": "test_sensor",
    "protocol": "mqtt",
    "kind": "sensor",
    "variables": ["id"],
    "availability": {"topic": "sensors/{id}/availability", "heartbeat": 600},
    "messages": [
        {
            "topic": "sensors/{id}",
            "points": [
                {"name": "temperature_degc", "path": "temperature", "unit": "degC"},
                {"name": "seq", "path": "seq", "type": "int"},
            ],
        }
    ],
}


def mqtt_site(
    tmp_path: Path,
    broker_yaml: str,
    modbus_port: int | None = None,
    allow: str = "[]",
    sensors: int = 1,
    control: str = "{}",
) -> Path:
    profiles = tmp_path / "profiles"
    profiles.mkdir(exist_ok=True)
    (profiles / "test_sensor.yaml").write_text(yaml.safe_dump(SENSOR_PROFILE))
    (profiles / "test_meter.yaml").write_text(
        yaml.safe_dump(PROFILE.model_dump(mode="json", exclude_defaults=True))
    )
    devices = "".join(
        f"  - {{id: room-{i}, profile: test_sensor, mqtt: {{vars: {{id: r{i}}}}}, "
        f"tags: {{zone: '30{i}'}}}}\n"
        for i in range(sensors)
    )
    if modbus_port is not None:
        devices += (
            "  - {id: ac-1, profile: test_meter, poll: 0.2s, modbus: {transport: tcp, "
            f"host: 127.0.0.1, port: {modbus_port}, timeout: 1s}}}}\n"
        )
    text = (
        "site: {name: 测试楼, id: t1}\n"
        "profile_dirs: [profiles]\n"
        "spool: {path: spool}\n"
        "batching: {max_age: 0.1s}\n"
        f"mqtt:\n{textwrap.indent(broker_yaml, '  ')}\n"
        f"  state_interval: 0.2s\n"
        f"  control: {control}\n"
        f"commands: {{allow: {allow}}}\n"
        f"devices:\n{devices}"
    )
    path = tmp_path / "site.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def broker_yaml(server: MosquittoServer) -> str:
    return f"brokers: [{{name: site, host: 127.0.0.1, port: {server.port}}}]"


class Client:
    """A device or an operator on the broker: publish, and collect what arrives."""

    def __init__(self, port: int, client_id: str = "", clean: bool = True) -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self.arrived = threading.Condition()
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean)
        self.c.on_message = self._on_message
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        with self.arrived:
            self.messages.append((msg.topic, bytes(msg.payload), bool(msg.retain)))
            self.arrived.notify_all()

    def subscribe(self, topic: str) -> None:
        result, _mid = self.c.subscribe(topic, qos=1)
        assert result == mqtt.MQTT_ERR_SUCCESS

    def publish(self, topic: str, payload: str, retain: bool = False) -> None:
        self.c.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)

    async def wait(self, topic: str, timeout: float = 5.0, count: int = 1) -> list[bytes]:
        """Wait without blocking the event loop the gateway runs on."""
        return await asyncio.to_thread(self.wait_for, topic, timeout, count)

    def wait_for(self, topic: str, timeout: float = 5.0, count: int = 1) -> list[bytes]:
        def got() -> list[bytes]:
            return [p for t, p, _ in self.messages if t == topic]

        with self.arrived:
            self.arrived.wait_for(lambda: len(got()) >= count, timeout)
        return got()

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


async def until(predicate: Any, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)


def samples_of(gateway: Gateway) -> list[Sample]:
    seen: list[Sample] = []
    gateway.bus.subscribe(Sample, seen.append, name="test")
    return seen
