"""The site's MQTT brokers, one connection each, shared by everyone who reads or writes there:
the MQTT driver's ingest, the gateway's own topics (status, state, alarms, control) and the
notifier's MQTT channel. Whoever reads registers its filters and a handler before start().

On each broker, handlers that claim a topic (the gateway's control topics under its prefix)
are asked first, in order; the one fallback handler (ingest) gets everything else. A message
nobody takes is counted."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from drivers.mqtt.client import BrokerSettings, Connection

MessageHandler = Callable[[str, bytes, Any], None]  # topic, payload, paho message


@dataclass(slots=True)
class _Routes:
    claimants: list[tuple[Callable[[str], bool], MessageHandler]] = field(default_factory=list)
    fallback: MessageHandler | None = None
    untaken: int = 0


class BrokerHub:
    def __init__(self, brokers: Sequence[BrokerSettings], home: str | None = None) -> None:
        self.routes: dict[str, _Routes] = {b.name: _Routes() for b in brokers}
        self.connections: dict[str, Connection] = {
            b.name: Connection(b, [], self._dispatcher(self.routes[b.name])) for b in brokers
        }
        # Where the gateway publishes its own topics: the named broker, else the first.
        self.home_name = home or brokers[0].name
        self.started = False

    @property
    def home(self) -> Connection:
        return self.connections[self.home_name]

    def subscribe(
        self,
        broker: str,
        filters: Sequence[str],
        handler: MessageHandler,
        claims: Callable[[str], bool] | None = None,
    ) -> None:
        """Filters to subscribe on `broker` and who takes their messages: `claims(topic)`
        says which topics are the handler's; without it, the handler takes the rest."""
        if self.started:
            raise RuntimeError("subscribe before the brokers are started")
        routes, connection = self.routes[broker], self.connections[broker]
        connection.filters += [f for f in filters if f not in connection.filters]
        if claims is None:
            if routes.fallback is not None:
                raise RuntimeError(f"MQTT {broker}: two handlers for unclaimed topics")
            routes.fallback = handler
        else:
            routes.claimants.append((claims, handler))

    @staticmethod
    def _dispatcher(routes: _Routes) -> MessageHandler:
        def dispatch(topic: str, payload: bytes, message: Any) -> None:
            for claims, handler in routes.claimants:
                if claims(topic):
                    handler(topic, payload, message)
                    return
            fallback = routes.fallback
            if fallback is not None:
                fallback(topic, payload, message)
            else:
                routes.untaken += 1

        return dispatch

    def start(self) -> None:
        self.started = True
        for connection in self.connections.values():
            connection.start()

    def stop(self, finals: Mapping[str, tuple[str, str]] | None = None) -> list[str]:
        """Disconnect every broker (blocking: run it in a thread), each with its last retained
        message if any; returns what failed, one line per broker."""
        failed = []
        for name, connection in self.connections.items():
            try:
                connection.stop((finals or {}).get(name))
            except Exception as exc:  # one broker's failure must not keep the others open
                failed.append(f"MQTT {name}: stopping failed: {exc!r}")
        return failed

    def status(self) -> list[dict[str, Any]]:
        """Per broker, for the live view: where, whether connected, failed attempts, why."""
        return [
            {
                "name": name,
                "host": c.settings.host,
                "port": c.settings.port,
                "connected": c.connected.is_set(),
                "connect_failures": c.failures,
                "last_error": c.last_error,
            }
            for name, c in self.connections.items()
        ]

    def health(self) -> dict[str, int]:
        connections = self.connections
        return {
            "mqtt_brokers": len(connections),
            "mqtt_connected": sum(c.connected.is_set() for c in connections.values()),
            "mqtt_connect_failures": sum(c.failures for c in connections.values()),
            **{f"mqtt_connected_{n}": int(c.connected.is_set()) for n, c in connections.items()},
            "mqtt_untaken": sum(r.untaken for r in self.routes.values()),
        }
