"""Routing Samples and clock ticks to the rules that watch them; collecting their Effects.

The ingest path runs through here for every Sample, so the cost with no interested rule is one
dict lookup; with rules, one call per rule that watches the device.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from core.types import Sample, Value
from rules.model import Calendar, DeviceInfo, Effect, Rule

log = logging.getLogger("guanjia.rules")


class EngineContext:
    """The Context rules read: now, the calendar, devices and their latest values."""

    def __init__(self, devices: Mapping[str, DeviceInfo], calendar: Calendar, tz: str) -> None:
        self._devices = devices
        self._calendar = calendar
        self.tz = ZoneInfo(tz)
        self._now: datetime | None = datetime.now(self.tz)
        self.clock: Callable[[], datetime] = lambda: datetime.now(self.tz)
        self.values: dict[str, dict[str, Value]] = {}
        self.stamps: dict[str, int] = {}

    @property
    def now(self) -> datetime:
        # Read lazily: most rules judge a Sample by its own timestamp and never ask.
        if self._now is None:
            self._now = self.clock().astimezone(self.tz)
        return self._now

    def set_now(self, now: datetime | None) -> None:
        self._now = None if now is None else now.astimezone(self.tz)

    @property
    def calendar(self) -> Calendar:
        return self._calendar

    def device(self, device_id: str) -> DeviceInfo:
        return self._devices[device_id]

    def latest(self, device_id: str, point: str) -> tuple[Value, int] | None:
        values = self.values.get(device_id)
        if values is None or point not in values:
            return None
        return values[point], self.stamps[device_id]


class Engine:
    def __init__(
        self,
        rules: Sequence[Rule],
        devices: Sequence[DeviceInfo],
        calendar: Calendar,
        tz: str = "Asia/Shanghai",
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.rules = list(rules)
        self.devices = {d.id: d for d in devices}
        self.ctx = EngineContext(self.devices, calendar, tz)
        # Rules read time from ctx.now and sample.ts. With a clock of its own (the demo's
        # simulated building) the engine restamps Samples in that clock, so both agree.
        self.restamp = clock is not None
        self.clock = clock or self.ctx.clock
        self.ctx.clock = self.clock
        self.by_device: dict[str, list[Rule]] = {}
        for rule in self.rules:
            for device_id in rule.bind(devices):
                self.by_device.setdefault(device_id, []).append(rule)
        self.samples = 0
        self.errors: dict[str, int] = {}

    def on_sample(self, sample: Sample) -> list[Effect]:
        """Effects of one Sample. Latest values are kept for every device, watched or not:
        a rule may read another device's state (a window contact in the AC's zone)."""
        self.samples += 1
        if sample.values:
            known = self.ctx.values.get(sample.device)
            if known is None:
                self.ctx.values[sample.device] = dict(sample.values)
            else:
                known.update(sample.values)
            self.ctx.stamps[sample.device] = sample.ts
        rules = self.by_device.get(sample.device)
        if not rules:
            return []
        ctx = self.ctx
        ctx.set_now(None)
        if self.restamp:
            sample = dataclasses.replace(sample, ts=int(ctx.now.timestamp() * 1e9))
        effects: list[Effect] | None = None
        for rule in rules:
            try:
                out = rule.on_sample(sample, ctx)
                if out:  # usually an empty tuple: no list is made for it
                    if effects is None:
                        effects = []
                    effects.extend(out)
            except Exception as exc:  # one rule's bug must not silence the others
                self._failed(rule, exc)
        return effects or []

    def on_tick(self) -> list[Effect]:
        self.ctx.set_now(self.clock())
        effects: list[Effect] = []
        for rule in self.rules:
            try:
                effects.extend(rule.on_tick(self.ctx))
            except Exception as exc:
                self._failed(rule, exc)
        return effects

    def _failed(self, rule: Rule, exc: Exception) -> None:
        """Counted per rule, logged with its traceback the first time only."""
        self.errors[rule.id] = self.errors.get(rule.id, 0) + 1
        if self.errors[rule.id] == 1:
            log.error(
                "rule %s (%s) failed; counting further failures: %r",
                rule.id,
                rule.kind,
                exc,
                exc_info=exc,
            )

    def snapshot(self) -> dict[str, dict[str, Any]]:
        return {rule.id: state for rule in self.rules if (state := rule.snapshot())}

    def restore(self, states: Mapping[str, Mapping[str, Any]]) -> None:
        for rule in self.rules:
            if rule.id in states:
                rule.restore(states[rule.id])

    def describe(self) -> Iterable[str]:
        for rule in self.rules:
            watched = len(rule.watched)
            yield f"{rule.id} ({rule.kind}): {rule.describe()} — {watched} devices"
