"""The MQTT sink: the gateway's own topics, from what the bus carries.

- `<prefix>/<site>/<device>/state`: the device's latest values as JSON, retained, at most one
  message per device every `state_interval` (QoS 0: only the latest matters);
- `<prefix>/<site>/alarm/<id>`: the alarm's current state, retained; an empty retained message
  when it closes. Open alarms are published again whenever the broker connection returns, and
  so is every device's latest state. When the site has rules the alarm messages go out
  through the alarm store's outbox (gateway/mqtt_outbox.py, `durable`), not from here.

`<prefix>/<site>/status` (online, and offline as the last will) belongs to the connection.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable

from core.types import Sample, Value
from gateway.bus import Bus
from gateway.messages import AlarmTransition
from rules.alarms import Alarm

Publish = Callable[..., object]  # Connection.publish(topic, payload, qos=1, retain=False)


def alarm_state(alarm: Alarm, text_zh: str, text_en: str) -> dict[str, object]:
    """The retained alarm message: what a duty console needs to show and act on it."""
    return {
        "id": alarm.id,
        "kind": alarm.kind,
        "grade": alarm.grade,
        "state": alarm.state,
        "subject": alarm.subject,
        "rule": alarm.rule,
        "value": alarm.value,
        "limit": alarm.limit,
        "raised_at": alarm.raised_at,
        "acked_by": alarm.acked_by,
        "text_zh": text_zh,
        "text_en": text_en,
    }


class MqttSink:
    def __init__(self, prefix: str, publish: Publish, state_interval: float) -> None:
        self.prefix = prefix  # `<prefix>/<site>`
        self.publish = publish
        self.state_interval = state_interval
        self._latest: dict[str, dict[str, Value]] = {}
        self._dirty: set[str] = set()
        self._alarms: dict[str, str] = {}  # open alarm id -> its retained payload
        self._task: asyncio.Task[None] | None = None
        # The alarm messages go out through the alarm store's outbox: here only remembered.
        self.durable = False
        self.alarm_messages = 0
        self.state_messages = 0

    def attach(self, bus: Bus) -> None:
        bus.subscribe(Sample, self.observe, name="mqtt")
        bus.subscribe(AlarmTransition, self.on_alarm, name="mqtt")

    def start(self) -> None:
        self._task = asyncio.create_task(self._publish_states(), name="mqtt-state")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self.flush_states()

    def latest_values(self, device: str) -> dict[str, Value]:
        return self._latest.get(device, {})

    def observe(self, sample: Sample) -> None:
        """Remember the latest values; they go out on the next state tick."""
        if not sample.values:
            return
        self._latest.setdefault(sample.device, {}).update(sample.values)
        self._dirty.add(sample.device)

    def flush_states(self) -> None:
        for device in sorted(self._dirty):
            state = {"ts": time.time(), **self._latest[device]}
            payload = json.dumps(state, ensure_ascii=False, separators=(",", ":"))
            # QoS 0: only the latest matters, and a full queue must not crowd out alarms.
            self.publish(f"{self.prefix}/{device}/state", payload, qos=0, retain=True)
            self.state_messages += 1
        self._dirty.clear()

    async def _publish_states(self) -> None:
        while True:
            await asyncio.sleep(self.state_interval)
            self.flush_states()

    def on_alarm(self, msg: AlarmTransition) -> None:
        alarm = msg.transition.alarm
        topic = f"{self.prefix}/alarm/{alarm.id}"
        self.alarm_messages += 1
        if alarm.state == "closed":
            self._alarms.pop(alarm.id, None)
            if not self.durable:
                self.publish(topic, "", retain=True)  # closed: the retained message goes away
            return
        payload = json.dumps(alarm_state(alarm, msg.text_zh, msg.text_en), ensure_ascii=False)
        self._alarms[alarm.id] = payload
        if not self.durable:
            self.publish(topic, payload, retain=True)

    def seed_alarms(self, alarms: list[tuple[Alarm, str, str]]) -> None:
        """The open alarms at start (from the store), so a reconnect republishes them too."""
        for alarm, text_zh, text_en in alarms:
            self._alarms[alarm.id] = json.dumps(
                alarm_state(alarm, text_zh, text_en), ensure_ascii=False
            )

    def republish(self) -> None:
        """Every open alarm's retained topic again (after the broker was away), and every
        device's latest state with the next tick: state messages are QoS 0, and those of a
        device that reports seldom (a door contact) were lost while the link was down."""
        for alarm_id, payload in self._alarms.items():
            self.publish(f"{self.prefix}/alarm/{alarm_id}", payload, retain=True)
        self._dirty.update(self._latest)
