"""What most rule kinds share: the devices they watch, by id, and the latch of raised alarms."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from core.types import Value
from rules.blocks import AlarmLatch, OnDelay
from rules.model import Context, DeviceInfo, Effect, P, Rule


class DeviceRule(Rule[P]):
    """Keeps the bound devices by id (their tags are read on the hot path) and the latch."""

    def __init__(self, rule_id: str, params: P) -> None:
        super().__init__(rule_id, params)
        self.devices: dict[str, DeviceInfo] = {}
        self.alarms = AlarmLatch(rule_id)
        # subject -> time of its last event (or last implausible reading), for expire()
        self.last: dict[str, float] = {}

    def bind(self, devices: Sequence[DeviceInfo]) -> list[str]:
        ids = super().bind(devices)
        self.devices = {d.id: d for d in self.watched}
        return ids

    def details(self, device_id: str, ctx: Context, **extra: Value) -> dict[str, Value]:
        """`device` and `place` for the alarm texts, plus the rule's own fields."""
        info = self.devices.get(device_id)
        if info is None:
            info = ctx.device(device_id)
        return {"device": info.id, "place": info.place(), **extra}

    def expire(self, ctx: Context, clear_after: float) -> list[Effect]:
        """Clear the alarms of subjects whose last event is `clear_after` seconds old: for
        alarms raised by events (a forced door), which never send an all-clear."""
        if not self.last:
            return []
        now = ctx.now.timestamp()
        effects: list[Effect] = []
        for subject in [s for s, t in self.last.items() if now - t >= clear_after]:
            del self.last[subject]
            effects.extend(self.alarms.clear(subject))
        return effects


def stale_note(device_id: str, since: float | None, ctx: Context) -> str:
    """Why an alarm cleared when its device's values expired, for the cleared transition."""
    if since is None:
        return f"{device_id}: no data since the gateway started; the condition is not known"
    when = datetime.fromtimestamp(since, ctx.now.tzinfo).isoformat(timespec="seconds")
    return f"{device_id}: no data since {when}; the condition is no longer known"


def snapshot_delays(alarms: AlarmLatch, delays: Mapping[str, OnDelay]) -> dict[str, Any]:
    """The raised alarms and the running delays: what a restart must not forget."""
    running = {d: x.snapshot() for d, x in delays.items() if x.since is not None}
    if not running and not alarms.raised:
        return {}
    return {**alarms.snapshot(), "delays": running}


def restore_delays(
    alarms: AlarmLatch, delays: Mapping[str, OnDelay], state: Mapping[str, Any]
) -> None:
    alarms.restore(state)
    for device_id, s in state.get("delays", {}).items():
        delay = delays.get(device_id)
        if delay is not None:
            delay.restore(s)
