"""Sends what the outbox holds: one lane per channel, within its rate limit, red first.

At least once. Each delivery goes out under its idempotency key (DingTalk's msgUuid, the
webhook's Idempotency-Key header, the SMS gateway's `key`), is marked delivered only after
the channel said so, and stays pending through failures and restarts.

How a lane chooses what to send next:
- red before orange before yellow before blue, then oldest first;
- within the channel's sliding-window budget (gateway.notify.ratelimit); the lower grades
  leave `red_reserve` slots of each window to red alarms;
- in a flood (more due on the channel than its budget allows now), the waiting deliveries
  of the top one's recipient are folded into one digest (`fold`), red ones only with red
  ones, so nothing is dropped and the limit holds; when the digest is delivered, every folded
  key is marked delivered. A red alarm never waits behind a digest of lower grades: it is
  picked first, and the reserve keeps a slot for it;
- an answer "too fast" holds the whole channel for the limit's `hold_s`;
- any other retryable failure pauses the lane with exponential backoff and jitter, so a
  channel that is down is probed once per backoff period, not once per waiting delivery; a
  delivery still failing `give_up_s` after it was stored is dead, as is one the channel
  refuses for good.

Memory: deliveries the outbox just stored arrive through its `subscribe` callback and go out
at once; a scan of the file adds the ones this process did not see (a restart, another
process, or past the in-memory bound `max_in_memory`, the overflow policy: leave them on
disk for a later scan, counted as `deferred`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field

from gateway.notify.channels.base import Channel
from gateway.notify.delivery import Delivery, Message, SendResult
from gateway.notify.outbox import RANK, Outbox, OutboxStats, Pending
from gateway.notify.ratelimit import Limiter, RetryPolicy

log = logging.getLogger(__name__)

Fold = Callable[[list[Delivery]], Message]

_GRADE_ZH = {"red": "红", "orange": "橙", "yellow": "黄", "blue": "蓝"}
FOLD_LINES = 50


def default_fold(deliveries: list[Delivery]) -> Message:
    """A plain digest: one line per notification (at most FOLD_LINES), highest grade first."""
    ordered = sorted(deliveries, key=lambda d: (RANK.get(d.grade, 9), d.created))
    lines = [f"[{_GRADE_ZH.get(d.grade, d.grade)}] {d.message.title}" for d in ordered]
    shown = lines[:FOLD_LINES]
    if len(lines) > FOLD_LINES:
        shown.append(f"…另有 {len(lines) - FOLD_LINES} 条")
    title = f"汇总：{len(deliveries)} 条通知"
    return Message(
        title=title,
        text="\n".join([title, *shown]),
        markdown="\n".join([f"**{title}**", "", *(f"- {line}" for line in shown)]),
        params={"count": str(len(deliveries)), "title": ordered[0].message.title},
    )


def digest_key(keys: Iterable[str]) -> str:
    """The same set of folded keys gives the same key (DingTalk's msgUuid on a retry)."""
    return "digest:" + hashlib.sha256("\n".join(sorted(keys)).encode()).hexdigest()[:32]


@dataclass(slots=True)
class _Item:
    delivery: Delivery
    attempts: int
    enqueued: float  # epoch seconds
    rank: int
    seq: int
    not_before: float = 0.0  # monotonic


@dataclass(slots=True)
class _Lane:
    channel: Channel
    limiter: Limiter
    items: dict[str, _Item] = field(default_factory=dict)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    paused_until: float = 0.0  # monotonic
    failures: int = 0  # consecutive retryable failures
    sent: int = 0  # requests the channel accepted (a digest counts once)
    throttled: int = 0
    failed: int = 0
    dead: int = 0
    digests: int = 0
    folded: int = 0  # deliveries that went out inside a digest


class DeliveryWorker:
    """Start with `start()` on the running loop, after `outbox.start()`; `stop()` before the
    outbox's. The worker closes the channels it was given when it stops."""

    def __init__(
        self,
        outbox: Outbox,
        channels: Iterable[Channel],
        *,
        fold: Fold = default_fold,
        retry: RetryPolicy | None = None,
        scan_interval_s: float = 1.0,
        max_in_memory: int = 10_000,
        keep_s: float = 7 * 86400.0,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.outbox = outbox
        self.fold = fold
        self.retry = retry or RetryPolicy()
        self.scan_interval_s = scan_interval_s
        self.max_in_memory = max_in_memory
        self.keep_s = keep_s
        self._clock = clock
        self._mono = monotonic
        self._rng = rng or random.Random()
        self._lanes = {c.name: _Lane(c, Limiter(c.rate, monotonic)) for c in channels}
        self._seq = itertools.count()
        self._tasks: list[asyncio.Task[None]] = []
        self._scan_wake = asyncio.Event()
        self._stopping = False
        self.stats = OutboxStats()
        self.deferred = 0
        self.orphaned = 0  # deliveries for a channel the site file no longer has: dead

    # -- life -------------------------------------------------------------------------------

    def start(self) -> None:
        self.outbox.subscribe(self.offer)
        self._tasks = [asyncio.create_task(self._scan_loop(), name="notify-scan")]
        self._tasks += [
            asyncio.create_task(self._lane_loop(lane), name=f"notify-{name}")
            for name, lane in self._lanes.items()
        ]

    async def stop(self, grace_s: float = 5.0) -> None:
        """Let sends in flight finish (up to `grace_s`), then stop; what is left stays pending."""
        self._stopping = True
        for lane in self._lanes.values():
            lane.wake.set()
        self._scan_wake.set()
        if self._tasks:
            _done, running = await asyncio.wait(self._tasks, timeout=grace_s)
            for task in running:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
        for lane in self._lanes.values():
            await lane.channel.close()

    # -- intake -----------------------------------------------------------------------------

    def in_memory(self) -> int:
        return sum(len(lane.items) for lane in self._lanes.values())

    def offer(self, deliveries: list[Delivery]) -> None:
        """Deliveries the outbox just stored (its subscribe callback, on the loop)."""
        now = self._clock()
        self._take([(d, 0, now, now) for d in deliveries])

    def _take(self, rows: Sequence[tuple[Delivery, int, float, float]]) -> int:
        """Into the lanes: (delivery, failed attempts, enqueued, next try), unless known."""
        taken = 0
        room = self.max_in_memory - self.in_memory()
        for delivery, attempts, enqueued, next_try in rows:
            lane = self._lanes.get(delivery.channel)
            if lane is None:
                self.orphaned += 1
                reason = f"no channel named {delivery.channel!r} in the site file"
                self._background(self.outbox.mark_dead(delivery.key, reason))
                continue
            if delivery.key in lane.items:
                continue
            if room <= 0:
                self.deferred += 1
                continue
            room -= 1
            taken += 1
            wait = max(0.0, next_try - self._clock())
            lane.items[delivery.key] = _Item(
                delivery,
                attempts,
                enqueued,
                RANK.get(delivery.grade, len(RANK)),
                next(self._seq),
                self._mono() + wait,
            )
            lane.wake.set()
        return taken

    def _background(self, work: Awaitable[None]) -> None:
        async def run() -> None:
            try:
                await work
            except Exception:
                log.exception("notification outbox write failed")

        task = asyncio.create_task(run())
        self._tasks.append(task)
        task.add_done_callback(lambda t: self._tasks.remove(t) if t in self._tasks else None)

    async def _scan_loop(self) -> None:
        """Statistics for health; deliveries this process has not seen; pruning."""
        next_prune = self._mono()
        gap = self.scan_interval_s  # between scans of the file that found nothing new
        next_scan = 0.0
        while not self._stopping:
            self._scan_wake.clear()
            try:
                self.stats = await self.outbox.stats()
                room = self.max_in_memory - self.in_memory()
                if self.stats.depth > self.in_memory() and room > 0 and self._mono() >= next_scan:
                    rows = await self.outbox.due(math.inf, self.in_memory() + max(room, 0))
                    found = self._take([_row(p) for p in rows])
                    # Nothing new: what the file holds beyond memory is not due yet, or is
                    # another process's; look again less and less often.
                    gap = self.scan_interval_s if found else min(gap * 2, 60.0)
                    next_scan = self._mono() + gap
                if self._mono() >= next_prune:
                    await self.outbox.prune(self._clock() - self.keep_s)
                    next_prune = self._mono() + 3600.0
            except Exception:
                log.exception("notification outbox scan failed")
            await _sleep_or_wake(self._scan_wake, self.scan_interval_s)

    # -- sending ----------------------------------------------------------------------------

    async def _lane_loop(self, lane: _Lane) -> None:
        while not self._stopping:
            lane.wake.clear()
            choice = self._choose(lane)
            if isinstance(choice, float):
                await _sleep_or_wake(lane.wake, choice)
                continue
            try:
                await self._send(lane, choice)
            except Exception:
                log.exception("notification lane %s failed; it goes on", lane.channel.name)
                await _sleep_or_wake(lane.wake, self.retry.first_s)

    def _choose(self, lane: _Lane) -> list[_Item] | float:
        """What to send now (one delivery, or several to fold), or how long to wait."""
        now = self._mono()
        if now < lane.paused_until:
            return lane.paused_until - now
        ready = [i for i in lane.items.values() if i.not_before <= now]
        if not ready:
            later = min((i.not_before for i in lane.items.values()), default=math.inf)
            return later - now
        top = min(ready, key=lambda i: (i.rank, i.seq))
        red = top.rank == 0
        wait = lane.limiter.wait_s(red)
        if wait > 0:
            return wait
        same_class = [i for i in ready if (i.rank == 0) == red]
        need = len(same_class) if red else len(ready)
        if need <= lane.limiter.available(red):
            return [top]
        group = [i for i in same_class if i.delivery.recipient == top.delivery.recipient]
        return sorted(group, key=lambda i: (i.rank, i.seq))

    async def _send(self, lane: _Lane, group: list[_Item]) -> None:
        delivery = group[0].delivery if len(group) == 1 else self._digest(group)
        try:
            result = await lane.channel.send(delivery)
        except Exception as exc:  # a channel's bug must not lose the delivery
            log.exception("channel %s raised", lane.channel.name)
            result = SendResult(ok=False, reason=f"channel error: {type(exc).__name__}: {exc}")
        if result.ok or not result.retry:
            # Counted when the service took or judged it. A retryable failure (no answer,
            # 5xx) is not: the backoff spaces those, and an outage's probes must not use up
            # the budget the recovery needs.
            lane.limiter.record()
        keys = [i.delivery.key for i in group]
        if result.ok:
            lane.failures = 0
            lane.sent += 1
            if len(group) > 1:
                lane.digests += 1
                lane.folded += len(group)
            await self._settle(lane, keys, self.outbox.mark_delivered(*keys))
        elif result.throttled:
            lane.throttled += 1
            held = lane.limiter.hold()
            log.warning(
                "channel %s: too fast (%s); holding it %.0f s",
                lane.channel.name,
                result.reason,
                lane.limiter.limit.hold_s,
            )
            await self._failed(lane, group, result.reason, held)
        elif not result.retry:
            lane.dead += len(group)
            log.error("channel %s refused %s: %s", lane.channel.name, delivery.key, result.reason)
            marks = [self.outbox.mark_dead(k, result.reason) for k in keys]
            await self._settle(lane, keys, asyncio.gather(*marks))
        else:
            lane.failed += 1
            lane.failures += 1
            lane.paused_until = self._mono() + self.retry.delay(lane.failures, self._rng)
            if lane.failures == 1:  # logged once per outage, not once per attempt
                log.warning("channel %s failing: %s", lane.channel.name, result.reason)
            await self._failed(lane, group, result.reason, lane.paused_until)

    async def _failed(self, lane: _Lane, group: list[_Item], reason: str, until: float) -> None:
        """Not delivered: back to waiting until `until` (monotonic), or dead if too old."""
        next_try = self._clock() + max(0.0, until - self._mono())
        marks: list[Awaitable[None]] = []
        dead: list[str] = []
        for item in group:
            item.attempts += 1
            item.not_before = until
            key = item.delivery.key
            if self._clock() - item.enqueued > self.retry.give_up_s:
                dead.append(key)
                hours = self.retry.give_up_s / 3600
                marks.append(self.outbox.mark_dead(key, f"gave up after {hours:g} h: {reason}"))
            else:
                marks.append(self.outbox.mark_failed(key, reason, next_try))
        lane.dead += len(dead)
        await self._settle(lane, dead, asyncio.gather(*marks))

    async def _settle(self, lane: _Lane, keys: list[str], marks: Awaitable[object]) -> None:
        """Wait for the outcome to be written, then forget the keys.

        They leave memory only after their row left `pending`, so a scan can never bring a
        sent delivery back (the outbox thread answers in the order it was asked)."""
        try:
            await marks
        except Exception:
            log.exception("outbox write failed; the deliveries may be sent again")
        for key in keys:
            lane.items.pop(key, None)

    def _digest(self, group: list[_Item]) -> Delivery:
        first = group[0].delivery
        return Delivery(
            key=digest_key(i.delivery.key for i in group),
            channel=first.channel,
            recipient=first.recipient,
            message=self.fold([i.delivery for i in group]),
            grade=first.grade,  # the group is sorted: the highest grade
            alarm_id="",
            created=self._clock(),
        )

    # -- health -----------------------------------------------------------------------------

    def health(self) -> dict[str, int | float]:
        s = self.stats
        out: dict[str, int | float] = {
            "outbox_depth": s.depth,
            "outbox_failing": s.failing,
            "outbox_dead": s.dead,
            "outbox_oldest_s": round(s.oldest_s, 3),
            "outbox_overflowed": s.overflowed,
            "notify_in_memory": self.in_memory(),
            "notify_deferred": self.deferred,
            "notify_orphaned": self.orphaned,
            "notify_failures": sum(lane.failed for lane in self._lanes.values()),
        }
        now = self._mono()
        for name, lane in self._lanes.items():
            channel = s.channels.get(name)
            prefix = f"notify_{name}_"
            out[prefix + "sent"] = lane.sent
            out[prefix + "throttled"] = lane.throttled
            out[prefix + "failed"] = lane.failed
            out[prefix + "dead"] = lane.dead
            out[prefix + "digests"] = lane.digests
            out[prefix + "folded"] = lane.folded
            out[prefix + "depth"] = channel.depth if channel else 0
            out[prefix + "held_s"] = round(max(0.0, lane.limiter.held_until - now), 3)
        return out


def _row(p: Pending) -> tuple[Delivery, int, float, float]:
    return (p.delivery, p.attempts, p.enqueued, p.next_try)


async def _sleep_or_wake(event: asyncio.Event, seconds: float) -> None:
    if event.is_set():
        return
    if math.isinf(seconds):
        await event.wait()
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), max(0.0, seconds))
