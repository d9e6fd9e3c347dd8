"""One MQTT connection per broker, on paho-mqtt's own network thread.

Why paho directly and not aiomqtt on this path: aiomqtt hands every message through an asyncio
queue and a task switch before user code sees it. Here the message is mapped on paho's thread
and the Samples cross to the event loop in batches (Handoff). bench/bench_ingest.py runs the
whole gateway (ingest, bus, InfluxDB sink and writer) on a broker's backlog against a bare paho
subscriber doing only json.loads: it keeps 0.66x of bare paho's rate per CPU second at QoS 0
and 0.77x at QoS 1. Shown there for information, a naive aiomqtt loop that only parses: bare
paho does 2.2x its rate at QoS 0 but only 1.45-1.6x at QoS 1, and the gateway 1.4x and 1.2x.
The 1.5x that ingest_vs_aiomqtt asked for would take 0.95-1.03x of bare paho's own rate at
QoS 1, mapping and storage included: that target was dropped.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import socket
import ssl
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from core.types import Sample

log = logging.getLogger("guanjia.mqtt")


@dataclass(frozen=True, slots=True)
class BrokerSettings:
    name: str
    host: str
    port: int
    client_id: str
    username: str | None = None
    password: str | None = None
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    tls: bool = False
    keepalive: int = 30
    protocol: str = "3.1.1"
    session_expiry: int = 7 * 24 * 3600
    reconnect_min: int = 1
    reconnect_max: int = 60
    max_queued: int = 10_000


class Handoff:
    """Samples from the network thread to the event loop, in batches, bounded.

    The first message after a quiet spell wakes the loop at once. While messages keep
    coming, the loop drains on a short timer instead of being woken per message: a wake-up
    costs a socket write and a hand-over of the GIL, which bench/bench_ingest.py measured at
    more than the mapping itself. Samples then wait at most `every` seconds, small against
    InfluxDB's batching. Over the bound the oldest are dropped and counted.

    Under a steady stream the timer is the largest part of what the gateway adds to paho's
    own CPU per message: one loop wake-up (about 45 µs on the benchmark machine, a VM) and a
    cold pass through the bus per `every`. With bench/bench_mqtt_cpu.py's load (500 messages
    a second) and parts of the path switched off in turn, it came to about 14 of the 30-40 µs
    the gateway adds to bare paho's 65-100 µs; 20 ms instead of 10 ms saved 15-20 µs per
    message. `every` trades CPU against latency, but only while messages stream: the first
    message after a quiet spell (a door forced at night) wakes the loop at once, so 20 ms is
    the most a reading waits in a stream, against InfluxDB batches of a second.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        publish: Callable[[Sample], None],
        bound: int = 100_000,
        every: float = 0.02,
    ) -> None:
        self.loop = loop
        self.publish = publish
        self.bound = bound
        self.every = every
        self.dropped = 0
        self._buffer: collections.deque[Sample] = collections.deque()
        self._lock = threading.Lock()
        self._scheduled = False
        self.closed = False

    def put(self, samples: Sequence[Sample]) -> None:
        if not samples or self.closed:
            return
        with self._lock:
            self._buffer.extend(samples)
            over = len(self._buffer) - self.bound
            if over > 0:
                for _ in range(over):
                    self._buffer.popleft()
                self.dropped += over
            if self._scheduled:
                return
            self._scheduled = True
        with contextlib.suppress(RuntimeError):  # the loop is closed: shutting down
            self.loop.call_soon_threadsafe(self._drain)

    def close(self) -> None:
        """Deliver what is buffered now and take no more (the connection is stopped)."""
        self.closed = True
        self._drain()

    def _drain(self) -> None:
        with self._lock:
            batch, self._buffer = self._buffer, collections.deque()
            # Still streaming: look again shortly, without being woken. Quiet: go idle.
            self._scheduled = bool(batch)
        for sample in batch:
            self.publish(sample)
        if batch and not self.closed:
            self.loop.call_later(self.every, self._drain)


# CONNACK reason codes (MQTT 5 numbering; paho maps 3.1.1's return codes onto them) that mean
# the broker does not accept these credentials.
_AUTH_REFUSALS = {134, 135}  # bad user name or password, not authorized


def _probe(host: str, port: int, timeout: float = 2.0) -> str:
    """Why a TCP connection to the broker fails, in words, for the one log line."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return "the port answers, but the MQTT (or TLS) handshake failed"
    except socket.gaierror as exc:
        return f"the host name does not resolve ({exc.strerror})"
    except TimeoutError:
        return "no answer (timed out)"
    except OSError as exc:
        return exc.strerror or str(exc)


class Connection:
    """A paho client with a persistent session, QoS 1 subscriptions and capped reconnects.

    A broker that cannot be reached or refuses the gateway is logged once per outage, with
    what to check, and every failed attempt is counted (`failures`)."""

    def __init__(
        self,
        settings: BrokerSettings,
        filters: Sequence[str],
        on_message: Callable[[str, bytes, Any], None],
        *,
        will: tuple[str, str] | None = None,
        on_connected: Callable[[], None] | None = None,
        unsubscribe: Sequence[str] = (),
    ) -> None:
        self.settings = settings
        self.filters = list(filters)
        # Filters a persistent session may still hold from an earlier run (a control topic the
        # site file has since turned off): dropped at every connect.
        self.unsubscribe = list(unsubscribe)
        self.connected = threading.Event()
        self.connects = 0
        self.failures = 0  # connection attempts that failed (unreachable or refused)
        self.last_error = ""
        self._failing = False  # in an outage that has been logged
        self._stopping = False
        self.on_connected = on_connected  # network thread, after each connect's subscribe
        # Network thread: a message went out (QoS 0) or was acknowledged (QoS 1), by mid.
        self.on_published: Callable[[int], None] | None = None
        v5 = settings.protocol == "5"
        self.v5 = v5
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=settings.client_id,
            # A persistent session: the broker keeps our subscriptions and queues QoS 1
            # messages while we are away (restarts), and delivers them when we return.
            clean_session=None if v5 else False,
            protocol=MQTTProtocolVersion.MQTTv5 if v5 else MQTTProtocolVersion.MQTTv311,
        )
        client = self.client
        client.max_queued_messages_set(settings.max_queued)
        client.reconnect_delay_set(settings.reconnect_min, settings.reconnect_max)
        if settings.username:
            client.username_pw_set(settings.username, settings.password)
        if settings.tls or settings.ca_file:
            client.tls_set(
                ca_certs=settings.ca_file,
                certfile=settings.cert_file,
                keyfile=settings.key_file,
                cert_reqs=ssl.CERT_REQUIRED,
            )
        if will is not None:
            self.set_will(*will)
        client.on_connect = self._connected
        client.on_connect_fail = self._connect_failed
        client.on_disconnect = self._disconnected
        client.on_publish = self._published
        client.on_message = lambda _c, _u, msg: on_message(msg.topic, cast(bytes, msg.payload), msg)

    def set_will(self, topic: str, payload: str) -> None:
        """The retained message the broker publishes if the gateway vanishes; before start()."""
        self.client.will_set(topic, payload, qos=1, retain=True)

    def _connected(
        self, client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any, _properties: Any
    ) -> None:
        if reason.is_failure:
            code = getattr(reason, "value", None)
            if code in _AUTH_REFUSALS:
                fix = (
                    "check the user name and password of this broker in the site file "
                    "(mqtt.brokers: username, password) and that the broker knows the user"
                )
            else:
                fix = "see the broker's log for why"
            self._failed(
                f"refused the connection: {reason} (reason code {code}); {fix}",
                f"refused: {reason} (reason code {code})",
            )
            return
        self.connects += 1
        self.connected.set()
        s = self.settings
        if self._failing:
            log.info(
                "MQTT %s connected (%s:%d) after %d failed attempts",
                s.name,
                s.host,
                s.port,
                self.failures,
            )
        else:
            log.info("MQTT %s connected (%s:%d)", s.name, s.host, s.port)
        self._failing = False
        self.last_error = ""
        stale = [f for f in self.unsubscribe if f not in self.filters]
        if stale:
            client.unsubscribe(stale)
        if self.filters:
            client.subscribe([(f, 1) for f in self.filters])
        if self.on_connected is not None:
            self.on_connected()

    def _published(
        self, _client: mqtt.Client, _userdata: Any, mid: int, _reason: Any, _properties: Any
    ) -> None:
        if self.on_published is not None:
            self.on_published(mid)

    def _connect_failed(self, _client: mqtt.Client, _userdata: Any) -> None:
        s = self.settings
        why = _probe(s.host, s.port) if not self._failing else self.last_error
        self._failed(
            f"cannot reach the broker at {s.host}:{s.port}: {why}; check the host and port "
            "in the site file (mqtt.brokers), that the broker runs, and that no firewall is "
            "in the way",
            why,
        )

    def _failed(self, message: str, short: str | None = None) -> None:
        """One failed attempt: counted; logged at the first of an outage only."""
        self.failures += 1
        self.last_error = short or message
        if self._failing or self._stopping:
            return
        self._failing = True
        s = self.settings
        log.warning(
            "MQTT %s %s; retrying every %d-%d s (attempts are counted in health as "
            "mqtt_connect_failures, not logged)",
            s.name,
            message,
            s.reconnect_min,
            s.reconnect_max,
        )

    def _disconnected(
        self, _client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any, _properties: Any
    ) -> None:
        if self.connected.is_set() and not self._stopping:
            log.warning("MQTT %s disconnected: %s; reconnecting", self.settings.name, reason)
        self.connected.clear()

    def start(self) -> None:
        """Connect in the background; paho reconnects on its own, with capped backoff."""
        properties = None
        if self.v5:
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            properties.SessionExpiryInterval = self.settings.session_expiry
        self.client.connect_async(
            self.settings.host,
            self.settings.port,
            keepalive=self.settings.keepalive,
            clean_start=False if self.v5 else mqtt.MQTT_CLEAN_START_FIRST_ONLY,
            properties=properties,
        )
        self.client.loop_start()

    def publish(
        self,
        topic: str,
        payload: str | bytes,
        *,
        qos: int = 1,
        retain: bool = False,
        properties: Properties | None = None,
    ) -> mqtt.MQTTMessageInfo | None:
        """Hand a message to paho; its MQTTMessageInfo says when the broker has it (QoS 1),
        None when paho's queue was full and it was not taken."""
        info = self.client.publish(topic, payload, qos=qos, retain=retain, properties=properties)
        if info.rc == mqtt.MQTT_ERR_QUEUE_SIZE:
            log.warning("MQTT %s: outgoing queue full; %s not sent", self.settings.name, topic)
            return None
        return info

    def stop(self, final: tuple[str, str] | None = None, timeout: float = 3.0) -> None:
        """Publish a last retained message (status offline), then disconnect cleanly."""
        self._stopping = True
        if final is not None and self.connected.is_set():
            info = self.client.publish(final[0], final[1], qos=1, retain=True)
            with contextlib.suppress(RuntimeError, ValueError):  # not sent: the will says it
                info.wait_for_publish(timeout)
        self.client.disconnect()
        self.client.loop_stop()
