"""The gateway on MQTT: ingest from every broker, publish status and state, take commands.

Topics (prefix `guanjia` by default):
- `<prefix>/<site>/status`: `online` / `offline`, retained; `offline` is the last will.
- `<prefix>/<site>/<device>/state`: the device's latest values as JSON, retained.
- `<prefix>/<site>/<device>/<point>/set`: a command (a bare value, or JSON {"value", "by"});
  the outcome is answered on the MQTT 5 response topic when given, else on `.../set/result`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import Callable
from typing import Any

from core.types import Command, Sample, Value
from drivers.mqtt.client import BrokerSettings, Connection, Handoff
from drivers.mqtt.ingest import Ingest, MqttDevice
from gateway.commands import CommandRouter
from gateway.config_load import LoadedSite
from gateway.site import BrokerConfig, MqttConfig

log = logging.getLogger("guanjia.mqtt")


def broker_settings(site_id: str, broker: BrokerConfig, password: str | None) -> BrokerSettings:
    tls = broker.tls
    return BrokerSettings(
        name=broker.name,
        host=broker.host,
        port=broker.port,
        client_id=broker.client_id or f"guanjia-{site_id}-{broker.name}",
        username=broker.username,
        password=password,
        tls=tls is not None,
        ca_file=tls.ca_file if tls else None,
        cert_file=tls.cert_file if tls else None,
        key_file=tls.key_file if tls else None,
        keepalive=broker.keepalive,
        protocol=broker.protocol,
    )


def parse_command(payload: bytes) -> tuple[Value, str]:
    """(value, who) from `26`, `true`, `"auto"` or {"value": 26, "by": "alice"}."""
    text = payload.decode("utf-8").strip()
    try:
        doc: Any = json.loads(text)
    except ValueError:
        return text, ""
    if isinstance(doc, dict):
        if "value" not in doc:
            raise ValueError('a JSON command needs "value"')
        value, who = doc["value"], str(doc.get("by", ""))
    else:
        value, who = doc, ""
    if not isinstance(value, bool | int | float | str):
        raise ValueError(f"cannot set a point to {type(value).__name__}")
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if number and (not math.isfinite(value) or abs(value) > 1e15):  # type: ignore[arg-type]
        raise ValueError(f"{value!r} is not a value any register holds")
    return value, who


class MqttService:
    def __init__(
        self,
        loaded: LoadedSite,
        config: MqttConfig,
        publish: Callable[[Sample], None],
        commands: CommandRouter,
    ) -> None:
        self.site_id = loaded.site.site.id
        self.config = config
        self.commands = commands
        self._publish_sample = publish
        prefix = f"{config.prefix}/{self.site_id}"
        self.status_topic = f"{prefix}/status"
        self.command_filter = f"{prefix}/+/+/set"
        self.ack_filter = f"{prefix}/alarm/+/ack"
        self.shelve_filter = f"{prefix}/alarm/+/shelve"
        # (alarm id, payload) -> outcome text.
        self.on_alarm_shelve: Callable[[str, bytes], str] | None = None
        self.dr_topic = f"{prefix}/dr/event"
        # Set by the gateway when demand-response rules run: payload -> outcome text.
        self.on_dr_event: Callable[[bytes], str] | None = None
        self.on_connected: Callable[[], None] | None = None
        # Set by the gateway when rules run: (alarm id, who, note) -> outcome text.
        self.on_alarm_ack: Callable[[str, str, str], str] | None = None
        self._prefix = prefix
        devices = loaded.mqtt_devices()
        self.ingest: dict[str, Ingest] = {}
        self.connections: dict[str, Connection] = {}
        publish_to = config.publish_to or config.brokers[0].name
        self._loop: asyncio.AbstractEventLoop | None = None
        self.handoff: Handoff | None = None
        for broker in config.brokers:
            mine: list[MqttDevice] = [d for d in devices if d.broker == broker.name]
            ingest = Ingest(mine, config.max_payload)
            filters = ingest.router.filters()
            is_home = broker.name == publish_to
            if is_home:
                filters += [self.command_filter, self.ack_filter, self.shelve_filter, self.dr_topic]
            self.ingest[broker.name] = ingest
            self.connections[broker.name] = Connection(
                broker_settings(self.site_id, broker, loaded.secrets.get(f"mqtt.{broker.name}")),
                filters,
                self._message_handler(ingest, is_home),
                will=(self.status_topic, "offline") if is_home else None,
                on_connected=self._announce if is_home else None,
            )
        self.home = self.connections[publish_to]
        self._latest: dict[str, dict[str, Value]] = {}
        self._dirty: set[str] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self.commands_received = 0
        self._control_ignored = 0
        self._tasks_running: set[asyncio.Task[None]] = set()

    # -- network thread --------------------------------------------------------------------

    def _message_handler(self, ingest: Ingest, is_home: bool) -> Callable[[str, bytes, Any], None]:
        prefix_len = len(self._prefix) + 1

        def handle(topic: str, payload: bytes, message: Any) -> None:
            if is_home and getattr(message, "retain", False) and self._is_control(topic):
                # A retained command, ack or event would run again on every reconnect.
                self._control_ignored += 1
                return
            if is_home and topic == self.dr_topic and self._loop is not None:
                self._loop.call_soon_threadsafe(self._dr_received, payload)
                return
            if is_home and topic.endswith("/shelve") and topic.startswith(self._prefix + "/alarm/"):
                parts = topic[prefix_len:].split("/")
                if len(parts) == 3 and self._loop is not None and self.on_alarm_shelve:
                    handler = self.on_alarm_shelve
                    alarm_id = parts[1]

                    def shelve() -> None:
                        outcome = handler(alarm_id, payload)
                        reply = json.dumps({"alarm": alarm_id, "result": outcome})
                        self.home.publish(f"{self._prefix}/alarm/{alarm_id}/shelve/result", reply)

                    self._loop.call_soon_threadsafe(shelve)
                    return
            if is_home and topic.endswith("/ack") and topic.startswith(self._prefix + "/alarm/"):
                parts = topic[prefix_len:].split("/")
                if len(parts) == 3 and self._loop is not None:
                    self._loop.call_soon_threadsafe(self._ack_received, parts[1], payload)
                    return
            if is_home and topic.endswith("/set") and topic.startswith(self._prefix + "/"):
                parts = topic[prefix_len:].split("/")
                if len(parts) == 3 and self._loop is not None:
                    props = getattr(message, "properties", None)
                    self._loop.call_soon_threadsafe(
                        self._command_received, parts[0], parts[1], payload, props
                    )
                    return
            if self.handoff is not None:
                self.handoff.put(ingest.on_message(topic, payload))

        return handle

    def _is_control(self, topic: str) -> bool:
        return topic.startswith(self._prefix + "/") and (
            topic.endswith(("/set", "/ack", "/shelve")) or topic == self.dr_topic
        )

    def _announce(self) -> None:
        self.home.publish(self.status_topic, "online", retain=True)
        if self._loop is not None and self.on_connected is not None:
            # Whatever was dropped while we were away (open alarms) is published again.
            self._loop.call_soon_threadsafe(self.on_connected)

    # -- event loop ------------------------------------------------------------------------

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.handoff = Handoff(self._loop, self._publish_sample)
        for connection in self.connections.values():
            connection.start()
        self._tasks = [
            asyncio.create_task(self._publish_states(), name="mqtt-state"),
            asyncio.create_task(self._check_heartbeats(), name="mqtt-heartbeat"),
        ]

    async def stop(self) -> None:
        """Commands in flight finish; ingest stops; what it handed over reaches the bus; the
        status goes offline. Each step runs whatever the one before did."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, *self._tasks_running, return_exceptions=True)
        for name, connection in self.connections.items():
            final = (self.status_topic, "offline") if connection is self.home else None
            try:
                if connection is self.home:
                    self._flush_states()
                await asyncio.to_thread(connection.stop, final)
            except Exception as exc:
                log.error("MQTT %s: stopping failed: %r", name, exc)
            log.info("MQTT %s closed", name)
        if self.handoff is not None:
            self.handoff.close()  # QoS 1 messages paho already acknowledged: onto the bus

    def latest_values(self, device: str) -> dict[str, Value]:
        return self._latest.get(device, {})

    def observe(self, sample: Sample) -> None:
        """Bus subscriber: remember the latest values for the retained state topics."""
        if not sample.values:
            return
        self._latest.setdefault(sample.device, {}).update(sample.values)
        self._dirty.add(sample.device)

    def _flush_states(self) -> None:
        for device in sorted(self._dirty):
            state = {"ts": time.time(), **self._latest[device]}
            payload = json.dumps(state, ensure_ascii=False, separators=(",", ":"))
            # QoS 0: only the latest matters, and a full queue must not crowd out alarms.
            self.home.publish(f"{self._prefix}/{device}/state", payload, qos=0, retain=True)
        self._dirty.clear()

    async def _publish_states(self) -> None:
        while True:
            await asyncio.sleep(self.config.state_interval)
            self._flush_states()

    async def _check_heartbeats(self) -> None:
        while True:
            await asyncio.sleep(self.config.heartbeat_check)
            for ingest in self.ingest.values():
                for sample in ingest.check_heartbeats():
                    self._publish_sample(sample)

    def _dr_received(self, payload: bytes) -> None:
        if self.on_dr_event is None:
            outcome = "no demand_response rule in this site"
        else:
            outcome = self.on_dr_event(payload)
        self.home.publish(f"{self.dr_topic}/result", json.dumps({"result": outcome}))

    def _ack_received(self, alarm_id: str, payload: bytes) -> None:
        """`.../alarm/<id>/ack` with "" / a name / {"by": ..., "note": ...}."""
        if self.on_alarm_ack is None:
            return
        by, note = "mqtt", ""
        text = payload.decode("utf-8", "replace").strip()
        try:
            doc = json.loads(text) if text else {}
        except ValueError:
            doc = text
        if isinstance(doc, dict):
            by, note = str(doc.get("by", by)), str(doc.get("note", ""))
        elif doc:
            by = str(doc)
        outcome = self.on_alarm_ack(alarm_id, f"mqtt:{by}", note)
        reply = json.dumps({"alarm": alarm_id, "result": outcome}, ensure_ascii=False)
        self.home.publish(f"{self._prefix}/alarm/{alarm_id}/ack/result", reply)

    def _command_received(self, device: str, point: str, payload: bytes, props: Any) -> None:
        self.commands_received += 1
        task = asyncio.get_running_loop().create_task(self._command(device, point, payload, props))
        self._tasks_running.add(task)
        task.add_done_callback(self._tasks_running.discard)

    async def _command(self, device: str, point: str, payload: bytes, props: Any) -> None:
        try:
            value, who = parse_command(payload)
        except (ValueError, UnicodeDecodeError) as exc:
            value, who, error = payload.decode("utf-8", "replace")[:64], "", str(exc)
        else:
            error = ""
        origin = f"mqtt:{who or 'anonymous'}"
        command = Command(device, point, value, origin)
        if error:
            result_ok, old, reason = False, None, f"bad command payload: {error}"
            self.commands.audit_refusal(command, reason)
        else:
            result = await self.commands.execute(command)
            result_ok, old, reason = result.ok, result.old_value, result.reason
        reply = json.dumps(
            {
                "ok": result_ok,
                "device": device,
                "point": point,
                "value": value,
                "old": old,
                "reason": reason,
                "by": origin,
            },
            ensure_ascii=False,
        )
        topic = getattr(props, "ResponseTopic", None)
        if not topic or topic.startswith(self._prefix + "/") or "#" in topic or "+" in topic:
            # Never answer into our own command topics: a reply must not become a command.
            topic = f"{self._prefix}/{device}/{point}/set/result"
        reply_props = None
        correlation = getattr(props, "CorrelationData", None)
        if correlation is not None and self.home.v5:
            from paho.mqtt.packettypes import PacketTypes
            from paho.mqtt.properties import Properties

            reply_props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            reply_props.CorrelationData = correlation
        self.home.publish(topic, reply, properties=reply_props)

    def health(self) -> dict[str, int]:
        stats = [i.stats for i in self.ingest.values()]
        return {
            "mqtt_messages": sum(s.messages for s in stats),
            "mqtt_rejected": sum(s.rejected for s in stats),
            "mqtt_unclaimed": sum(s.unclaimed for s in stats),
            "mqtt_connected": sum(c.connected.is_set() for c in self.connections.values()),
            "mqtt_handoff_dropped": self.handoff.dropped if self.handoff else 0,
            "commands": self.commands_received,
        }
