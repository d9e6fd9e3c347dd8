"""The gateway on MQTT: ingest from every broker, publish status and state, take commands.

Topics (prefix `guanjia` by default):
- `<prefix>/<site>/status`: `online` / `offline`, retained; `offline` is the last will.
- `<prefix>/<site>/<device>/state`: the device's latest values as JSON, retained.
- Control topics, each subscribed only when the site file enables it (`mqtt.control`):
  `<prefix>/<site>/<device>/<point>/set` (a command: a bare value, or JSON
  {"value", "by", "ts"}), `<prefix>/<site>/alarm/<id>/ack`, `.../alarm/<id>/shelve` and
  `<prefix>/<site>/dr/event`. A command's outcome is answered on `.../set/result`, or on its
  MQTT 5 response topic when that lies under `<prefix>/<site>/reply/`.
- `<prefix>/<site>/sync`: the gateway's own marker, published at each connect to find where
  the broker's backlog (what it queued while the gateway was away) ends.
- `<prefix>/<site>/transitions`: every alarm transition, in order, QoS 1, not retained, with
  its `seq` in the gateway's alarm store (consecutive: a consumer sees a gap, and drops a
  repeat). Alarm messages go out through the store's outbox (gateway/mqtt_outbox.py): what
  the broker has not acknowledged is sent again after an outage or a restart, in order.

A site split across gateways (`site.gateway`) has one status, sync and transitions topic per
gateway, `.../status/<gateway>` and so on (`<prefix>/<site>/status/#` takes them all); each
gateway acts only on the commands for its own devices and answers only for its own alarms.

A command runs only while it is fresh: within its MQTT 5 message expiry when the sender sets
one, else within `commands.max_age` of its `ts`. A command without either that was queued
while the gateway was offline has an unknown age: it is refused and audited, never run late.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from core.once import ProblemCounter
from core.text import shorten
from core.types import Command, Value
from drivers.mqtt.client import BrokerSettings
from drivers.mqtt.hub import BrokerHub
from gateway.commands import CommandRouter
from gateway.config_load import LoadedSite
from gateway.mqtt_outbox import AlarmOutbox, ReadPage
from gateway.mqtt_sink import MqttSink
from gateway.site import BrokerConfig, MqttConfig

log = logging.getLogger("guanjia.mqtt")

MAX_RESPONSE_TOPIC = 256
SYNC_PATIENCE = 10.0  # seconds for the sync marker to come back before the log says so
MAX_CORRELATION = 256
MAX_COMMANDS_RUNNING = 100  # `/set` commands in flight at once; more are refused


def broker_settings(
    site_id: str, broker: BrokerConfig, password: str | None, gateway: str | None = None
) -> BrokerSettings:
    """`gateway`: the gateway's id in a site split across gateways: in its default client id,
    so that the broker keeps each one's session (two clients with one id throw each other
    off)."""
    tls = broker.tls
    who = f"{site_id}-{gateway}" if gateway else site_id
    return BrokerSettings(
        name=broker.name,
        host=broker.host,
        port=broker.port,
        client_id=broker.client_id or f"guanjia-{who}-{broker.name}",
        username=broker.username,
        password=password,
        tls=tls is not None,
        ca_file=tls.ca_file if tls else None,
        cert_file=tls.cert_file if tls else None,
        key_file=tls.key_file if tls else None,
        keepalive=broker.keepalive,
        protocol=broker.protocol,
    )


def _command_time(raw: Any) -> float:
    """A command's `ts`: epoch seconds (or ms), or ISO 8601 with a UTC offset."""
    if isinstance(raw, bool):
        raise ValueError('"ts" must be epoch seconds or an ISO 8601 time with an offset')
    if isinstance(raw, int | float):
        seconds = float(raw) / 1000 if raw > 1e11 else float(raw)
        if not math.isfinite(seconds):
            raise ValueError('"ts" is not a time')
        return seconds
    if isinstance(raw, str) and len(raw) <= 64:
        when = datetime.fromisoformat(raw.strip())
        if when.tzinfo is None:
            raise ValueError('"ts" needs a UTC offset, e.g. 2025-07-15T09:30:00+08:00')
        return when.timestamp()
    raise ValueError('"ts" must be epoch seconds or an ISO 8601 time with an offset')


def parse_command(payload: bytes) -> tuple[Value, str, float | None]:
    """(value, who, ts) from `26`, `true`, `"auto"` or {"value": 26, "by": "alice", "ts": ...}."""
    text = payload.decode("utf-8").strip()
    try:
        doc: Any = json.loads(text)
    except ValueError:
        return text, "", None
    ts: float | None = None
    if isinstance(doc, dict):
        if "value" not in doc:
            raise ValueError('a JSON command needs "value"')
        value, who = doc["value"], str(doc.get("by", ""))
        if doc.get("ts") is not None:
            ts = _command_time(doc["ts"])
    else:
        value, who = doc, ""
    if not isinstance(value, bool | int | float | str):
        raise ValueError(f"cannot set a point to {type(value).__name__}")
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if number and (not math.isfinite(value) or abs(value) > 1e15):  # type: ignore[arg-type]
        raise ValueError(f"{value!r} is not a value any register holds")
    return value, shorten(who), ts


def _echo(value: Value | None) -> Value | None:
    """A value as a reply may repeat it: text from outside is cut short."""
    return shorten(value) if isinstance(value, str) else value


@dataclass(frozen=True, slots=True)
class Received:
    """How a control message arrived: when, from the broker's backlog or live, and the
    MQTT 5 properties that bound its life and its reply."""

    at: float  # epoch seconds, on arrival
    backlog: bool  # delivered from the session's queue, before our sync marker came back
    expiry: int | None  # MQTT 5 message expiry interval left, in seconds
    response_topic: str | None
    correlation: bytes | None


class MqttService:
    """The gateway's own topics on the site's home broker: status, state and alarms (through
    its sink), and the control topics the site enables. Devices' topics are the MQTT driver's;
    both share the brokers' connections (drivers/mqtt/hub.py)."""

    def __init__(
        self,
        loaded: LoadedSite,
        config: MqttConfig,
        brokers: BrokerHub,
        commands: CommandRouter,
    ) -> None:
        site = loaded.site
        self.site_id = site.site.id
        self.config = config
        self.control = config.control
        self.commands = commands
        self.max_age = site.commands.max_age
        self.max_control_payload = site.commands.max_payload
        prefix = f"{config.prefix}/{self.site_id}"
        # One gateway of a split site: its own status (and last will), marker and stream.
        self.gateway = site.site.gateway
        own = f"/{self.gateway}" if self.gateway else ""
        self.status_topic = f"{prefix}/status{own}"
        self.sync_topic = f"{prefix}/sync{own}"
        self.transitions_topic = f"{prefix}/transitions{own}"
        self._own_devices = frozenset(d.id for d in site.devices)
        self.reply_prefix = f"{prefix}/reply/"
        self.command_filter = f"{prefix}/+/+/set"
        self.ack_filter = f"{prefix}/alarm/+/ack"
        self.shelve_filter = f"{prefix}/alarm/+/shelve"
        # (alarm id, payload) -> outcome text.
        self.on_alarm_shelve: Callable[[str, bytes], str] | None = None
        self.dr_topic = f"{prefix}/dr/event"
        # Set by the gateway when demand-response rules run: payload -> outcome text.
        self.on_dr_event: Callable[[bytes], str] | None = None
        # Set by the gateway when rules run: (alarm id, who, note) -> outcome text.
        self.on_alarm_ack: Callable[[str, str, str], str] | None = None
        self._prefix = prefix
        self._control_prefix = prefix + "/"  # every control topic starts so
        self._loop: asyncio.AbstractEventLoop | None = None
        # Network thread only: True from a connect until the broker hands back our marker.
        self._backlog = False
        self._sync_nonce = ""
        self._sync_count = itertools.count(1)
        self._sync_session = os.urandom(4).hex()
        self.brokers = brokers
        self.home = brokers.home
        self.home.set_will(self.status_topic, "offline")
        self.home.on_connected = self._announce
        self.home.unsubscribe = self.all_control_filters()  # what an earlier run subscribed
        brokers.subscribe(
            brokers.home_name, self.control_filters(), self._on_control, claims=self._claims
        )
        self.sink = MqttSink(prefix, self.home.publish, config.state_interval)
        self.outbox: AlarmOutbox | None = None  # `alarm_outbox`, when the site has rules
        self.commands_received = 0
        self.commands_stale = 0
        self.commands_busy = 0  # refused: too many commands already in flight
        self._control_ignored = 0  # retained control messages: never acted on
        self._control_refused = 0  # control payloads over the size limit
        self._control_others = 0  # commands for another gateway's devices (a split site)
        self.problems = ProblemCounter(log, 100)
        self._tasks_running: set[asyncio.Task[None]] = set()

    def alarm_outbox(self, read_page: ReadPage, stored_last: int) -> AlarmOutbox:
        """The alarm messages through the alarm store's outbox instead of the sink: what the
        broker has not acknowledged is sent again after an outage or a restart."""
        self.outbox = AlarmOutbox(
            self.home,
            self._prefix,
            self.transitions_topic,
            read_page,
            site=self.site_id,
            gateway=self.gateway,
            stored_last=stored_last,
        )
        self.sink.durable = True
        return self.outbox

    def all_control_filters(self) -> list[str]:
        return [
            self.command_filter,
            self.sync_topic,
            self.ack_filter,
            self.shelve_filter,
            self.dr_topic,
        ]

    def control_filters(self) -> list[str]:
        """The control topics the site enabled; the others are not even subscribed."""
        c = self.control
        filters = []
        if c.commands:
            filters += [self.command_filter, self.sync_topic]
        if c.ack:
            filters.append(self.ack_filter)
        if c.shelve:
            filters.append(self.shelve_filter)
        if c.demand_response:
            filters.append(self.dr_topic)
        return filters

    # -- network thread --------------------------------------------------------------------

    def _control_kind(self, topic: str) -> tuple[str, list[str]] | None:
        """("set" | "ack" | "shelve" | "dr", topic levels under the site) for an enabled
        control topic, else None (the message is ingest's, or nobody's)."""
        if not topic.startswith(self._control_prefix):
            return None
        c = self.control
        if topic == self.dr_topic:
            return ("dr", []) if c.demand_response else None
        parts = topic[len(self._prefix) + 1 :].split("/")
        if len(parts) != 3:
            return None
        if parts[0] == "alarm" and parts[2] in ("ack", "shelve"):
            enabled = c.ack if parts[2] == "ack" else c.shelve
            return (parts[2], parts) if enabled else None
        if parts[2] == "set" and c.commands:
            return "set", parts
        return None

    def _claims(self, topic: str) -> bool:
        """The gateway's own control topics (and its sync marker); the rest is ingest's."""
        if not topic.startswith(self._control_prefix):  # per message: most topics stop here
            return False
        if topic == self.sync_topic:
            return self.control.commands
        return self._control_kind(topic) is not None

    def _on_control(self, topic: str, payload: bytes, message: Any) -> None:
        if topic == self.sync_topic:
            if payload.decode("utf-8", "replace") == self._sync_nonce:
                self._backlog = False  # everything the broker queued came before this
            return
        control = self._control_kind(topic)
        if control is None:
            return
        if getattr(message, "retain", False):
            # A retained command, ack or event would run again on every reconnect.
            self._control_ignored += 1
            return
        kind, parts = control
        if kind == "set" and self.gateway and parts[0] not in self._own_devices:
            self._control_others += 1  # the device of another gateway of this site: its own
            return
        too_large = len(payload) > self.max_control_payload
        if too_large:
            self._control_refused += 1
            self.problems.report(
                f"too_large:{kind}",
                f"MQTT {shorten(topic, 120)}: a payload of {len(payload)} bytes is over "
                f"commands.max_payload ({self.max_control_payload}); refused",
            )
            payload = b""  # refused with a reply, and never echoed
        loop = self._loop
        if loop is None:
            return
        if kind == "dr":
            loop.call_soon_threadsafe(self._dr_received, payload, too_large)
        elif kind == "ack":
            loop.call_soon_threadsafe(self._ack_received, parts[1], payload, too_large)
        elif kind == "shelve":
            loop.call_soon_threadsafe(self._shelve_received, parts[1], payload, too_large)
        else:
            loop.call_soon_threadsafe(
                self._command_received,
                parts[0],
                parts[1],
                payload,
                self._received(message),
                too_large,
            )

    def _received(self, message: Any) -> Received:
        props = getattr(message, "properties", None)
        expiry = getattr(props, "MessageExpiryInterval", None)
        response = getattr(props, "ResponseTopic", None)
        correlation = getattr(props, "CorrelationData", None)
        return Received(
            at=time.time(),
            backlog=self._backlog,
            expiry=expiry if isinstance(expiry, int) else None,
            response_topic=response if isinstance(response, str) else None,
            correlation=bytes(correlation) if isinstance(correlation, bytes | bytearray) else None,
        )

    def _announce(self) -> None:
        """Connected (network thread): status online, and the marker that ends the backlog."""
        if self.control.commands:
            self._backlog = True
            nonce = self._sync_nonce = f"{self._sync_session}-{next(self._sync_count)}"
            self.home.publish(self.sync_topic, nonce)
            if self._loop is not None:
                self._loop.call_soon_threadsafe(
                    self._loop.call_later, SYNC_PATIENCE, self._sync_overdue, nonce
                )
        self.home.publish(self.status_topic, "online", retain=True)
        if self._loop is not None:
            # Whatever was dropped while we were away (open alarms) is published again.
            self._loop.call_soon_threadsafe(self.sink.republish)

    # -- event loop ------------------------------------------------------------------------

    def _sync_overdue(self, nonce: str) -> None:
        if self._backlog and self._sync_nonce == nonce and self.home.connected.is_set():
            self.problems.report(
                "sync",
                f"MQTT: the broker has not returned the gateway's marker on {self.sync_topic} "
                f"within {SYNC_PATIENCE:g} s of connecting: a long backlog, or the broker does "
                f"not let the gateway's user publish and subscribe there (its ACL needs "
                f'readwrite on {self._prefix}/#). Until it returns, commands without a "ts" '
                "are refused as possibly queued while the gateway was offline",
            )

    def start(self) -> None:
        """Before the brokers start: the first connect announces the gateway."""
        self._loop = asyncio.get_running_loop()
        self.sink.start()
        if self.outbox is not None:
            self.outbox.start()  # what the store still holds goes first

    async def stop(self) -> None:
        """Commands in flight finish; the sink publishes what it holds. The gateway then
        stops the brokers, with the status `offline` as the home broker's last message."""
        await asyncio.gather(*self._tasks_running, return_exceptions=True)
        await self.sink.stop()
        if self.outbox is not None:
            await self.outbox.stop()  # later transitions wait in the store for the next run

    def publish_retained(self, subtopic: str, payload: str) -> None:
        """A retained message on `<prefix>/<site>/<subtopic>` (a demand-response summary)."""
        self.home.publish(f"{self._prefix}/{subtopic}", payload, retain=True)

    def final_messages(self) -> dict[str, tuple[str, str]]:
        return {self.brokers.home_name: (self.status_topic, "offline")}

    def _too_large(self) -> str:
        return f"refused: the payload is over commands.max_payload ({self.max_control_payload})"

    def _dr_received(self, payload: bytes, too_large: bool = False) -> None:
        if too_large:
            outcome = self._too_large()
        elif self.on_dr_event is None:
            if self.gateway:
                return  # another gateway of the site may have them; it answers
            outcome = "no demand_response rule in this site"
        else:
            outcome = self.on_dr_event(payload)
        self.home.publish(f"{self.dr_topic}/result", json.dumps({"result": shorten(outcome, 300)}))

    def _shelve_received(self, alarm_id: str, payload: bytes, too_large: bool = False) -> None:
        if too_large:
            outcome = self._too_large()
        elif self.on_alarm_shelve is None:
            outcome = "no rules in this site"
        else:
            outcome = self.on_alarm_shelve(alarm_id, payload)
        if self.gateway and outcome in ("unknown alarm", "no rules in this site"):
            return  # another gateway's alarm: that one answers
        reply = json.dumps({"alarm": shorten(alarm_id), "result": shorten(outcome, 300)})
        self.home.publish(f"{self._prefix}/alarm/{alarm_id}/shelve/result", reply)

    def _ack_received(self, alarm_id: str, payload: bytes, too_large: bool = False) -> None:
        """`.../alarm/<id>/ack` with "" / a name / {"by": ..., "note": ...}."""
        if too_large:
            reply = json.dumps({"alarm": shorten(alarm_id), "result": self._too_large()})
            self.home.publish(f"{self._prefix}/alarm/{alarm_id}/ack/result", reply)
            return
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
        outcome = self.on_alarm_ack(alarm_id, f"mqtt:{shorten(by)}", shorten(note, 500))
        if self.gateway and outcome == "unknown alarm":
            return  # another gateway's alarm: that one answers
        reply = json.dumps({"alarm": shorten(alarm_id), "result": outcome}, ensure_ascii=False)
        self.home.publish(f"{self._prefix}/alarm/{alarm_id}/ack/result", reply)

    def _command_received(
        self, device: str, point: str, payload: bytes, received: Received, too_large: bool
    ) -> None:
        self.commands_received += 1
        if len(self._tasks_running) >= MAX_COMMANDS_RUNNING:
            # A flood of `/set` messages must not grow tasks without bound (each holds a
            # payload and waits its turn on a device line): refused, audited, counted.
            self.commands_busy += 1
            self.commands.audit_refusal(
                Command(shorten(device), shorten(point), "", "mqtt"),
                f"{MAX_COMMANDS_RUNNING} commands already waiting; not executed, send it again",
            )
            return
        task = asyncio.get_running_loop().create_task(
            self._command(device, point, payload, received, too_large)
        )
        self._tasks_running.add(task)
        task.add_done_callback(self._tasks_running.discard)

    def staleness(self, ts: float | None, received: Received) -> str:
        """Why a command is too old to run, or "" when it is fresh."""
        now = time.time()
        if received.expiry is not None:
            # The sender's own limit; the broker dropped it if it ran out while queued.
            if now > received.at + received.expiry:
                return "its MQTT 5 message expiry ran out before it could run; not executed"
            return ""
        if ts is not None:
            age = now - ts
            if age > self.max_age:
                return (
                    f"stale: sent {age:.0f} s ago, older than commands.max_age "
                    f"({self.max_age:g} s); not executed, send it again if it still holds"
                )
            if age < -self.max_age:
                return (
                    f'its "ts" is {-age:.0f} s in the future; not executed: check the '
                    "sender's clock"
                )
            return ""
        if received.backlog:
            return (
                'queued by the broker while the gateway was offline; with neither a "ts" '
                "nor an MQTT 5 message expiry its age is unknown, so it is not executed: "
                'send it again (and give commands a "ts")'
            )
        return ""

    async def _command(
        self, device: str, point: str, payload: bytes, received: Received, too_large: bool
    ) -> None:
        ts: float | None = None
        if too_large:
            value: Value = f"({self.max_control_payload}+ bytes)"
            who, error = "", self._too_large().removeprefix("refused: ")
        else:
            try:
                value, who, ts = parse_command(payload)
            except (ValueError, UnicodeDecodeError, OverflowError) as exc:
                value, who, error = shorten(payload.decode("utf-8", "replace")), "", str(exc)
            else:
                error = ""
        origin = f"mqtt:{who or 'anonymous'}"
        command = Command(device, point, value, origin)
        stale = "" if error else self.staleness(ts, received)
        if error:
            result_ok, old, reason = False, None, f"bad command payload: {shorten(error, 200)}"
            self.commands.audit_refusal(command, reason)
        elif stale:
            self.commands_stale += 1
            result_ok, old, reason = False, None, stale
            self.commands.audit_refusal(command, reason)
        else:
            result = await self.commands.execute(command)
            result_ok, old, reason = result.ok, result.old_value, result.reason
        reply = json.dumps(
            {
                "ok": result_ok,
                "device": shorten(device),
                "point": shorten(point),
                "value": _echo(value),
                "old": _echo(old),
                "reason": shorten(reason, 300),
                "by": origin,
            },
            ensure_ascii=False,
        )
        self.home.publish(
            self._reply_topic(device, point, received.response_topic),
            reply,
            properties=self._reply_properties(received.correlation),
        )

    def _reply_topic(self, device: str, point: str, asked: str | None) -> str:
        """The MQTT 5 response topic when it lies under `<prefix>/<site>/reply/`: never a
        device's command topic, never one of the gateway's own."""
        default = f"{self._prefix}/{device}/{point}/set/result"
        if not asked:
            return default
        if (
            asked.startswith(self.reply_prefix)
            and len(asked) <= MAX_RESPONSE_TOPIC
            and not any(c in asked for c in "+#\0")
        ):
            return asked
        self.problems.report(
            "response_topic",
            f"MQTT: a command asked for its reply on {shorten(asked, 120)!r}, outside "
            f"{self.reply_prefix}; answered on .../set/result instead",
        )
        return default

    def _reply_properties(self, correlation: bytes | None) -> Any:
        if correlation is None or len(correlation) > MAX_CORRELATION or not self.home.v5:
            return None
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        props.CorrelationData = correlation
        return props

    def health(self) -> dict[str, int]:
        return {
            "mqtt_control_ignored": self._control_ignored,
            "mqtt_control_refused": self._control_refused,
            **({"mqtt_control_other_gateway": self._control_others} if self.gateway else {}),
            "commands": self.commands_received,
            "commands_stale": self.commands_stale,
            "commands_busy": self.commands_busy,
        }
