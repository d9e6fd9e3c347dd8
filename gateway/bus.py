"""The bus: every message between the gateway's parts, and who receives which.

Drivers publish Samples; the rules runtime publishes alarm transitions; the command path
publishes audit records; the gateway publishes its own health. Everything that leaves the
process (InfluxDB lines, MQTT topics, notifications) is a subscriber, so nothing writes to a
sink behind the bus's back.

A subscriber is one of two kinds:

- **cheap and synchronous**: a callback that returns at once (appending to a buffer,
  updating a dict). It runs inside `publish`, in the publisher's task; one that raises is
  counted and logged once, and the others still get the message;
- **queued**: an `Inbox` with a bound and a named overflow policy, drained by the
  subscriber's own task, for work that takes time (rule evaluation, alarm-store writes).
  What overflows is counted, and health reports every inbox's depth and losses.

Delivery is by the message's exact type (one dict lookup per publish).
"""

from __future__ import annotations

import asyncio
import collections
import enum
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from core.once import ProblemCounter

log = logging.getLogger("guanjia.bus")

M = TypeVar("M")


class Overflow(enum.StrEnum):
    """What a full inbox does with one more message."""

    DROP_OLDEST = "drop_oldest"  # the newest matters more (readings for the rules)
    DROP_NEWEST = "drop_newest"  # what was queued first must go through (ordered work)


@dataclass
class InboxStats:
    received: int = 0
    dropped: int = 0
    high_water: int = 0


@dataclass
class Inbox(Generic[M]):
    """A subscriber's bounded queue on the event loop, drained by its own task.

    The task awaits `get_batch()`, or loops on `ready()` and `take()`, which wake it with a
    bare future and make no coroutine per batch. Under a steady stream (2,000 readings a second
    arrive one per loop pass) a consumer wakes for nearly every message, and each wake-up costs
    a pass of the loop and more than most messages do to handle. `pace` (seconds, 0 = off):
    at most one batch per `pace`, with all that arrived meanwhile; a message waits at most
    `pace` longer, and after a quiet spell the first one is taken at once.
    """

    name: str
    bound: int
    overflow: Overflow
    pace: float = 0.0
    stats: InboxStats = field(default_factory=InboxStats)
    _items: collections.deque[M] = field(default_factory=collections.deque)
    _waiter: asyncio.Future[None] | None = None  # ready()'s, done by the next put()
    _taken_at: float = -math.inf  # loop time of the last take(), with a pace

    def put(self, message: M) -> None:
        stats = self.stats
        stats.received += 1
        items = self._items
        if len(items) >= self.bound:
            stats.dropped += 1
            if self.overflow is Overflow.DROP_NEWEST:
                return
            items.popleft()
        items.append(message)
        if len(items) > stats.high_water:
            stats.high_water = len(items)
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    async def get_batch(self, limit: int = 1000) -> list[M]:
        """Wait for at least one message; take up to `limit` in arrival order."""
        while (waiter := self.ready()) is not None:
            await waiter
        return self.take(limit)

    def ready(self) -> asyncio.Future[None] | None:
        """None if `take()` has something now; else a future to await before asking again,
        done when a message arrives (or, with a pace, when the next batch is due)."""
        loop = asyncio.get_running_loop()
        if self.pace > 0:
            due = self._taken_at + self.pace
            if due > loop.time():
                timer: asyncio.Future[None] = loop.create_future()
                loop.call_at(due, _wake, timer)
                return timer
        if self._items:
            return None
        waiter = self._waiter
        if waiter is None or waiter.done():
            waiter = self._waiter = loop.create_future()
        return waiter

    def take(self, limit: int = 1000) -> list[M]:
        """Up to `limit` messages in arrival order, without waiting (none: [])."""
        items = self._items
        if not items:
            return []
        if self.pace > 0:
            self._taken_at = asyncio.get_running_loop().time()
        if len(items) <= limit:
            batch = list(items)
            items.clear()
            return batch
        return [items.popleft() for _ in range(limit)]

    def drain(self) -> list[M]:
        """Everything queued now, without waiting (at stop)."""
        batch = list(self._items)
        self._items.clear()
        return batch

    def __len__(self) -> int:
        return len(self._items)


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


Handler = Callable[[Any], None]


class Bus:
    """Fan-out of typed messages to synchronous subscribers and bounded inboxes."""

    def __init__(self) -> None:
        self._handlers: dict[type, list[tuple[str, Handler]]] = {}
        self.inboxes: list[Inbox[Any]] = []
        self.published: collections.Counter[str] = collections.Counter()
        self.failures: collections.Counter[str] = collections.Counter()
        self.problems = ProblemCounter(log)

    def subscribe(self, kind: type[M], callback: Callable[[M], None], *, name: str) -> None:
        """A cheap synchronous subscriber: it must return at once and never block."""
        self._handlers.setdefault(kind, []).append((name, callback))

    def inbox(
        self, kind: type[M], *, name: str, bound: int, overflow: Overflow, pace: float = 0.0
    ) -> Inbox[M]:
        """A queued subscriber: messages of `kind` wait in a bounded inbox for its task
        (`pace`: at most one batch per so many seconds, see Inbox)."""
        box: Inbox[M] = Inbox(name, bound, overflow, pace)
        self.inboxes.append(box)
        self.subscribe(kind, box.put, name=name)
        return box

    def publish(self, message: object) -> None:
        kind = type(message)
        self.published[kind.__name__] += 1
        for name, callback in self._handlers.get(kind, ()):
            try:
                callback(message)
            except Exception as exc:  # one subscriber's bug must not starve the others
                self.failures[name] += 1
                self.problems.report(
                    f"subscriber:{name}",
                    f"bus subscriber {name} failed on a {kind.__name__}: {exc!r}",
                    logging.ERROR,
                )

    def health(self) -> dict[str, int]:
        out = {f"bus_{kind.lower()}s": n for kind, n in self.published.items()}
        out["bus_subscriber_failures"] = sum(self.failures.values())
        for box in self.inboxes:
            out[f"inbox_{box.name}_queued"] = len(box)
            out[f"inbox_{box.name}_dropped"] = box.stats.dropped
            out[f"inbox_{box.name}_high_water"] = box.stats.high_water
        return out
