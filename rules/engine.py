"""Routing Samples and clock ticks to the rules that watch them; collecting their Effects.

The ingest path runs through here for every Sample, so the cost with no interested rule is one
dict lookup; with rules, one call per rule that watches the device.

Values of unknown age are not facts. The engine keeps every device's latest good values, and
ctx.latest() gives them only while they are current:

- a point read as bad (an exception, a failed poll: Sample.bad) has no current value until it is
  read again (ctx.reading: Quality.BAD, with the last good value);
- a device that has sent nothing for its allowance (DeviceInfo.stale_after: STALE_POLLS poll
  intervals for a polled device, the profile's heartbeat for an MQTT device) or whose
  availability says offline is stale: ctx.reading gives its values as Quality.STALE, and each
  rule that watches it is told once (Rule.on_stale). Devices that only report events or
  changes (no heartbeat) never go stale by age.

Between a failed poll and the allowance a rule sees "not known" and keeps its state, as right
after a restart; once stale, rules that hold state on a value drop it (see Rule.on_stale).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from core.types import Quality, Reading, Sample, Value
from rules.model import Calendar, DeviceInfo, Effect, Input, InputOutcome, InputReply, Rule

log = logging.getLogger("guanjia.rules")

STALE_POLLS = 3
"""A polled device's values are stale this many poll intervals after its last good reading:
two polls may fail (a timeout, a busy line) before the rules stop trusting the last values."""

AVAILABLE = "available"  # MQTT ingest's availability point: False means offline


class EngineContext:
    """The Context rules read: now, the calendar, devices and their latest values."""

    def __init__(self, devices: Mapping[str, DeviceInfo], calendar: Calendar, tz: str) -> None:
        self._devices = devices
        self._calendar = calendar
        self.tz = ZoneInfo(tz)
        self._now: datetime | None = datetime.now(self.tz)
        self.clock: Callable[[], datetime] = lambda: datetime.now(self.tz)
        self.values: dict[str, dict[str, Value]] = {}
        self.stamps: dict[str, int] = {}  # ns of each device's last good values
        self.bad: dict[str, set[str]] = {}  # points read as bad since their last good value
        self.stale: set[str] = set()  # devices whose values have expired

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
        if self.stale and device_id in self.stale:
            return None
        bad = self.bad.get(device_id)
        if bad and point in bad:
            return None
        return values[point], self.stamps[device_id]

    def reading(self, device_id: str, point: str) -> Reading | None:
        """The point's last good value with its quality now: GOOD, BAD (read as bad since)
        or STALE (the device has expired); None if it never had a good value."""
        values = self.values.get(device_id)
        if values is None or point not in values:
            return None
        quality = Quality.GOOD
        if device_id in self.stale:
            quality = Quality.STALE
        elif point in self.bad.get(device_id, ()):
            quality = Quality.BAD
        return Reading(device_id, point, values[point], self.stamps[device_id], quality)


class Engine:
    def __init__(
        self,
        rules: Sequence[Rule],
        devices: Sequence[DeviceInfo],
        calendar: Calendar,
        tz: str = "Asia/Shanghai",
        clock: Callable[[], datetime] | None = None,
        wall: Callable[[], float] | None = None,
    ) -> None:
        """`clock`: the rules' time (default the wall clock; the demo's building runs faster).
        `wall`: epoch seconds in the pollers' time, which allowances are measured in; a test
        passes its fake clock for both."""
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
        # device -> seconds its values last for the rules; devices without one never expire
        self.allowance = {d.id: d.stale_after for d in devices if d.stale_after is not None}
        self.wall = wall or time.time
        self.seen: dict[str, float] = {}  # device -> wall time of its last message with values
        self.started: float | None = None  # first tick: silence is counted from there
        self.stale_count = 0  # devices that went stale, for health

    def on_sample(self, sample: Sample) -> list[Effect]:
        """Effects of one Sample. Latest values are kept for every device, watched or not:
        a rule may read another device's state (a window contact in the AC's zone)."""
        self.samples += 1
        ctx = self.ctx
        rules = self.by_device.get(sample.device)
        ctx.set_now(None)
        if self.restamp:  # every Sample: ctx.latest's times are in the rules' clock
            sample = dataclasses.replace(sample, ts=int(ctx.now.timestamp() * 1e9))
        offline = False
        if sample.values:
            known = ctx.values.get(sample.device)
            if known is None:
                known = ctx.values[sample.device] = dict(sample.values)
            else:
                known.update(sample.values)
            ctx.stamps[sample.device] = sample.ts
            if sample.device in self.allowance:
                self.seen[sample.device] = self.wall()
            if sample.values.get(AVAILABLE) is False:
                offline = sample.device not in ctx.stale  # rules are told once
            elif ctx.stale:
                ctx.stale.discard(sample.device)  # back: its values count again
            bad = ctx.bad.get(sample.device)
            if bad:
                bad.difference_update(sample.values)
        if sample.bad:
            ctx.bad.setdefault(sample.device, set()).update(sample.bad)
        if not rules:
            if offline:
                self._expire(sample.device, sample.ts / 1e9, ())
            return []
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
        if offline:  # the device says it is gone: what it said before is no longer known
            effects = effects or []
            self._expire(sample.device, sample.ts / 1e9, rules, effects)
        return effects or []

    def _expire(
        self,
        device_id: str,
        since: float | None,
        rules: Sequence[Rule],
        effects: list[Effect] | None = None,
    ) -> None:
        """The device's values are stale (STALE readings, no latest); its rules are told."""
        ctx = self.ctx
        ctx.stale.add(device_id)
        self.stale_count += 1
        for rule in rules:
            try:
                out = rule.on_stale(device_id, since, ctx)
                if out and effects is not None:
                    effects.extend(out)
            except Exception as exc:
                self._failed(rule, exc)

    def _expire_silent(self, effects: list[Effect]) -> None:
        now = self.wall()
        if self.started is None:
            self.started = now
        stale = self.ctx.stale
        for device_id, allowance in self.allowance.items():
            if device_id in stale:
                continue
            last = self.seen.get(device_id)
            if now - (self.started if last is None else last) > allowance:
                # Polls keep wall time; rules see the moment in their own clock.
                since = None if last is None else self.ctx.now.timestamp() - (now - last)
                self._expire(device_id, since, self.by_device.get(device_id, ()), effects)

    def on_tick(self) -> list[Effect]:
        self.ctx.set_now(self.clock())
        effects: list[Effect] = []
        if self.allowance:
            self._expire_silent(effects)
        for rule in self.rules:
            try:
                effects.extend(rule.on_tick(self.ctx))
            except Exception as exc:
                self._failed(rule, exc)
        return effects

    def on_input(self, event: Input) -> InputOutcome:
        """Hand an event from outside (rules.inputs) to every rule; each that takes its kind
        answers. The outcome says what became of it, for the sender, and carries the effects
        to apply (most rules act on their next tick instead)."""
        self.ctx.set_now(self.clock())
        replies: dict[str, InputReply] = {}
        for rule in self.rules:
            try:
                reply = rule.on_input(event, self.ctx)
            except Exception as exc:
                self._failed(rule, exc)
                reply = InputReply("refused", f"failed ({exc!r})")
            if reply is not None:
                replies[rule.id] = reply
        return InputOutcome(event.kind, replies)

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
