"""One MQTT client (paho, on its own network thread) per real-world publisher."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from simulator.mqtt.device import Message

log = logging.getLogger("guanjia.simulator.mqtt")


class Link:
    """One MQTT client (paho, on its own network thread) for one real-world publisher."""

    def __init__(
        self,
        name: str,
        client_id: str,
        loop: asyncio.AbstractEventLoop,
        on_up: Callable[[Link], None],
        will: Message | None = None,
        final: Sequence[Message] = (),
    ) -> None:
        self.name = name
        self.final = list(final)
        self.connected = threading.Event()
        self.killed = False
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=True,  # devices publish only; there is nothing to keep
            protocol=MQTTProtocolVersion.MQTTv311,
        )
        client.reconnect_delay_set(1, 10)
        if will is not None:
            client.will_set(will.topic, will.payload, qos=will.qos, retain=will.retain)

        def connected(_c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
            if reason.is_failure:
                log.warning("simulated %s: broker refused the connection: %s", name, reason)
                return
            # The birth messages are built on the event loop, which owns the device state;
            # scheduled before `connected` is set so they go out before any tick's messages.
            with contextlib.suppress(RuntimeError):  # loop closed: shutting down
                loop.call_soon_threadsafe(on_up, self)
            self.connected.set()

        def disconnected(_c: mqtt.Client, _u: Any, _f: Any, _r: Any, _p: Any) -> None:
            self.connected.clear()

        client.on_connect = connected
        client.on_disconnect = disconnected
        self.client = client

    def start(self, host: str, port: int) -> None:
        self.client.connect_async(host, port, keepalive=30)
        self.client.loop_start()

    def publish(self, message: Message) -> None:
        if self.killed:
            return
        self.client.publish(message.topic, message.payload, qos=message.qos, retain=message.retain)

    async def stop(self) -> None:
        """A clean goodbye: the final messages (Frigate's `stopped`), then DISCONNECT."""
        if self.killed:
            return
        if self.connected.is_set():
            infos = [
                self.client.publish(m.topic, m.payload, qos=m.qos, retain=m.retain)
                for m in self.final
            ]
            for info in infos:
                with contextlib.suppress(RuntimeError, ValueError):
                    await asyncio.to_thread(info.wait_for_publish, 2.0)
        self.client.disconnect()
        await asyncio.to_thread(self.client.loop_stop)

    async def kill(self) -> None:
        """Drop the TCP connection without DISCONNECT, as a power cut does: the broker then
        publishes the last will."""
        self.killed = True
        # Stop the network thread first, or paho would reconnect at once.
        await asyncio.to_thread(self.client.loop_stop)
        sock = self.client.socket()
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()
        self.connected.clear()
