"""Small stateful building blocks for rules: on/off delays, hysteresis, event counting, the
set of alarms a rule holds raised, and a cached office-hours check.

Time `t` is float epoch seconds, taken by the caller from `sample.ts / 1e9` or
`ctx.now.timestamp()`: the blocks never read a clock, so a rule stays pure and testable with a
fake one. Every block keeps its state in epoch seconds (not monotonic time) and can hand it
out with `snapshot()` and take it back with `restore()`, so an on-delay that was running when
the gateway restarted goes on counting from when the condition really began.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping
from datetime import datetime, timedelta, tzinfo
from typing import Any

from core.types import Value
from rules.model import Calendar, Clear, Effect, Grade, Raise
from rules.numbers import optional_float


class OnDelay:
    """True once the condition has held continuously for `delay` seconds (TON)."""

    __slots__ = ("delay", "since")

    def __init__(self, delay: float) -> None:
        if delay < 0:
            raise ValueError(f"delay must not be negative, got {delay}")
        self.delay = float(delay)
        self.since: float | None = None  # when the condition became true; None while false

    def update(self, condition: bool, t: float) -> bool:
        if not condition:
            self.since = None
            return False
        if self.since is None:
            self.since = t
        return t - self.since >= self.delay

    def reset(self) -> None:
        self.since = None

    def snapshot(self) -> dict[str, Any]:
        return {"since": self.since}

    def restore(self, state: Mapping[str, Any]) -> None:
        self.since = optional_float(state.get("since"))


class OffDelay:
    """True as soon as the condition is; false only after it has been false for `delay` (TOF)."""

    __slots__ = ("delay", "on", "since")

    def __init__(self, delay: float) -> None:
        if delay < 0:
            raise ValueError(f"delay must not be negative, got {delay}")
        self.delay = float(delay)
        self.on = False
        self.since: float | None = None  # when the condition went false while still on

    def update(self, condition: bool, t: float) -> bool:
        if condition:
            self.on, self.since = True, None
            return True
        if not self.on:
            return False
        if self.since is None:
            self.since = t
        if t - self.since >= self.delay:
            self.on, self.since = False, None
        return self.on

    def reset(self) -> None:
        self.on, self.since = False, None

    def snapshot(self) -> dict[str, Any]:
        return {"on": self.on, "since": self.since}

    def restore(self, state: Mapping[str, Any]) -> None:
        self.on = bool(state.get("on", False))
        self.since = optional_float(state.get("since"))


class Hysteresis:
    """A comparator with a dead band, so a value hovering at a limit does not chatter.

    `Hysteresis(high, low)` turns true above `high` and false again only below `low`. For a
    low-limit alarm, `Hysteresis.below(low, high)` turns true below `low` and false again only
    above `high`. Values inside the band keep the state.
    """

    __slots__ = ("_below", "high", "low", "state")

    def __init__(self, high: float, low: float) -> None:
        if low > high:
            raise ValueError(f"low ({low}) must not be above high ({high})")
        self.high = float(high)
        self.low = float(low)
        self.state = False
        self._below = False

    @classmethod
    def below(cls, low: float, high: float) -> Hysteresis:
        h = cls(high, low)
        h._below = True
        return h

    def update(self, value: float) -> bool:
        if self._below:
            if value < self.low:
                self.state = True
            elif value > self.high:
                self.state = False
        elif value > self.high:
            self.state = True
        elif value < self.low:
            self.state = False
        return self.state

    def reset(self) -> None:
        self.state = False

    def snapshot(self) -> dict[str, Any]:
        return {"state": self.state}

    def restore(self, state: Mapping[str, Any]) -> None:
        self.state = bool(state.get("state", False))


class CountWindow:
    """True when at least `count` events happened within the last `window` seconds.

    An event exactly `window` seconds old still counts: three cards at 0, 150 and 300 s are
    "3 in 5 minutes". At most `MAX_EVENTS` times are kept, so a flood cannot grow the state
    (and the snapshot) without bound; `len()` then reports that many.
    """

    MAX_EVENTS = 1000

    __slots__ = ("count", "times", "window")

    def __init__(self, count: int, window: float) -> None:
        if count < 1:
            raise ValueError(f"count must be at least 1, got {count}")
        if window < 0:
            raise ValueError(f"window must not be negative, got {window}")
        self.count = int(count)
        self.window = float(window)
        self.times: list[float] = []  # sorted, oldest first

    def add(self, t: float) -> bool:
        times = self.times
        if not times or t >= times[-1]:
            times.append(t)
        else:  # a late event (bridges may deliver out of order): keep the list sorted
            bisect.insort(times, t)
        if len(times) > self.MAX_EVENTS:
            del times[: len(times) - self.MAX_EVENTS]
        self.prune(max(t, times[-1]))
        return len(times) >= self.count

    def prune(self, t: float) -> int:
        """Forget events older than the window as of `t`; returns how many remain."""
        times = self.times
        if times and t - times[0] > self.window:
            # The first time that is still inside the window: t - x <= window.
            del times[: bisect.bisect_left(times, t - self.window)]
        return len(times)

    def __len__(self) -> int:
        return len(self.times)

    @property
    def last(self) -> float | None:
        return self.times[-1] if self.times else None

    def reset(self) -> None:
        self.times.clear()

    def snapshot(self) -> dict[str, Any]:
        return {"times": list(self.times)}

    def restore(self, state: Mapping[str, Any]) -> None:
        self.times = sorted(float(x) for x in state.get("times", ()))[-self.MAX_EVENTS :]


class AlarmLatch:
    """The alarms one rule holds raised, by subject.

    A rule speaks only on a change (a Raise per reading would flood the alarm store), and
    because the latch is part of the rule's snapshot, an alarm raised before a restart is
    still cleared after it.
    """

    __slots__ = ("raised", "rule")

    def __init__(self, rule: str) -> None:
        self.rule = rule
        self.raised: dict[str, str] = {}  # subject -> alarm kind

    def __contains__(self, subject: str) -> bool:
        return subject in self.raised

    def kind(self, subject: str) -> str | None:
        return self.raised.get(subject)

    def raise_alarm(
        self,
        subject: str,
        kind: str,
        *,
        value: Value | None = None,
        limit: Value | None = None,
        grade: Grade | None = None,
        details: Mapping[str, Value] | None = None,
        again: bool = False,
    ) -> tuple[Effect, ...]:
        """A Raise if the subject is not raised with this kind yet (or `again`: new values)."""
        if not again and self.raised.get(subject) == kind:
            return ()
        self.raised[subject] = kind
        return (Raise(self.rule, subject, kind, value, limit, grade, details or {}),)

    def clear(self, subject: str, note: str = "") -> tuple[Effect, ...]:
        """A Clear if the subject is raised; nothing (and no allocation) otherwise."""
        if self.raised.pop(subject, None) is None:
            return ()
        return (Clear(self.rule, subject, note),)

    def clear_device(self, device_id: str, note: str = "") -> tuple[Effect, ...]:
        """Clear every raised subject of a device: its id and `<device>:...`."""
        prefix = f"{device_id}:"
        out: tuple[Effect, ...] = ()
        for subject in [s for s in self.raised if s == device_id or s.startswith(prefix)]:
            out += self.clear(subject, note)
        return out

    def snapshot(self) -> dict[str, Any]:
        return {"raised": dict(self.raised)}

    def restore(self, state: Mapping[str, Any]) -> None:
        self.raised = {str(k): str(v) for k, v in state.get("raised", {}).items()}


class OfficeHours:
    """Is a moment after office hours? The calendar is asked at most once per `refresh`.

    A gap in office hours no longer than `breaks_up_to`, with office hours on both sides (a
    lunch break cut out by the site's calendar), is not "after hours": people badge in and
    the AC runs at lunch. With `refresh` 0 every call asks the calendar (rare events); rules
    that look at every meter reading use 60 s: the answer is kept for the rest of that clock
    minute (office hours start and end on a whole minute and zone offsets are whole minutes),
    so it stays exact, and a calendar lookup costs far more than a comparison.
    """

    __slots__ = ("_after", "_bucket", "breaks_up_to", "refresh")

    def __init__(self, breaks_up_to: float = 0.0, refresh: float = 0.0) -> None:
        self.breaks_up_to = float(breaks_up_to)
        self.refresh = float(refresh)
        self._bucket: float | None = None
        self._after = False

    def after_hours(self, calendar: Calendar, t: float, tz: tzinfo | None) -> bool:
        bucket = t // self.refresh if self.refresh > 0 else None
        if bucket is not None and bucket == self._bucket:
            return self._after
        moment = datetime.fromtimestamp(t, tz)
        after = not calendar.in_office_hours(moment)
        if after and self.breaks_up_to > 0:
            gap = timedelta(seconds=self.breaks_up_to)
            if calendar.in_office_hours(moment - gap) and calendar.in_office_hours(moment + gap):
                after = False
        self._bucket, self._after = bucket, after
        return after
