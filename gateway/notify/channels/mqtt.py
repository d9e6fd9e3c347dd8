"""Notifications published on the gateway's own broker connection (a pager bridge, a wall
display, a second system that routes further).

The channel owns no connection: the gateway hands it a publish callable on its broker client
(topic, payload, qos, retain), which queues the message and returns. A publish that raises
(not connected, queue full) is a retryable failure. The payload is the same JSON object the
webhook sends (gateway.notify.channels.base.delivery_json), with the delivery key in it, so a
subscriber can drop the repeat a QoS 1 redelivery or a retry may bring.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from gateway.notify.channels.base import delivery_json
from gateway.notify.channels.config import MqttChannelConfig
from gateway.notify.delivery import Delivery, SendResult
from gateway.notify.ratelimit import RateLimit

Publish = Callable[[str, str, int, bool], None]  # topic, payload, qos, retain


def _topic_part(value: str) -> str:
    """A value that is safe inside one topic level."""
    cleaned = "".join("_" if c in "/+#\0" else c for c in value)
    return cleaned or "_"


class MqttChannel:
    kind = "mqtt"

    def __init__(self, config: MqttChannelConfig, publish: Publish) -> None:
        self.name = config.name
        self.config = config
        self.rate: RateLimit = config.rate.limit()
        self._publish = publish

    def topic(self, delivery: Delivery) -> str:
        return self.config.topic.format(
            channel=_topic_part(delivery.channel),
            grade=delivery.grade,
            alarm_id=_topic_part(delivery.alarm_id),
            recipient=_topic_part(delivery.recipient.name),
        )

    async def send(self, delivery: Delivery) -> SendResult:
        payload = json.dumps(delivery_json(delivery), ensure_ascii=False)
        try:
            self._publish(self.topic(delivery), payload, self.config.qos, self.config.retain)
        except Exception as exc:  # the broker client's own errors: not connected, queue full
            return SendResult(ok=False, reason=f"publish failed: {type(exc).__name__}: {exc}")
        return SendResult(ok=True)

    async def close(self) -> None:
        return None
