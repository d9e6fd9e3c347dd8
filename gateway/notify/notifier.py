"""The notifier: one more subscriber of the bus. Each durable AlarmTransition is routed along
the duty roster (gateway/notify/routing.py), worded per channel (texts.py), stored in the
outbox before anything is sent (outbox.py) and sent by the delivery worker, within each
channel's limits, until the channel confirms it.

Idempotency: a delivery's key is (alarm, occurrence, transition, person, channel), derived
from the alarm itself, so the same transition announced twice (a restart between the alarm
store's commit and the outbox's) never reaches a person twice on one channel. At start, the
open, unacknowledged alarms are routed again under those keys: whatever a crash kept from the
outbox goes out now, and what already went out is not repeated.

Held notices (quiet hours, the daily digest of blue alarms) wait in `held.jsonl` beside the
outbox, fsynced, and go out as one digest per person and channel when their time comes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from core.private_fs import make_private_dir
from gateway.bus import Bus, Overflow
from gateway.messages import AlarmTransition
from gateway.notify.channels.base import Channel
from gateway.notify.delivery import Delivery, Message
from gateway.notify.delivery_worker import DeliveryWorker
from gateway.notify.digest import fold, render_digest
from gateway.notify.outbox import Outbox
from gateway.notify.routing import Router, Target
from gateway.notify.texts import TextContext, compose, render
from rules.alarms import GRADES, Alarm, Transition

log = logging.getLogger("guanjia.notify")

Link = Callable[[str, str], str]  # (alarm id, person id) -> a signed URL that acknowledges


def delivery_key(tr: Transition, target: Target) -> str:
    """The same transition of the same occurrence to the same person on the same channel is
    one delivery, however often it is announced."""
    a = tr.alarm
    step = f"esc{a.escalation}" if tr.what == "escalated" else tr.what
    return f"{a.id}/{a.raised_at:.3f}/{step}/{target.person.id}/{target.channel}"


class HeldNotices:
    """Transitions held for a digest, in a JSON-lines file: appended and fsynced on a thread,
    rewritten when a digest takes some out. Bounded: past `bound` the oldest are folded away
    (counted) rather than grow the file without end."""

    def __init__(self, path: Path, bound: int = 10_000) -> None:
        self.path = path
        self.bound = bound
        self.items: list[tuple[float, AlarmTransition]] = []  # (due, event)
        self.dropped = 0
        if path.exists():
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    self.items.append(_decode(json.loads(line)))
                except (ValueError, KeyError, TypeError) as exc:
                    log.warning(
                        "notify: a held notice in %s is unreadable (%s); skipped", path, exc
                    )

    async def add(self, due: float, event: AlarmTransition) -> None:
        self.items.append((due, event))
        if len(self.items) > self.bound:
            self.items.pop(0)
            self.dropped += 1
            await asyncio.to_thread(self._rewrite)
        else:
            await asyncio.to_thread(
                self._append, json.dumps(_encode(due, event), ensure_ascii=False)
            )

    async def take_due(self, now: float) -> list[tuple[float, AlarmTransition]]:
        due = [(d, e) for d, e in self.items if d <= now]
        if due:
            self.items = [(d, e) for d, e in self.items if d > now]
            await asyncio.to_thread(self._rewrite)
        return due

    def next_due(self) -> float | None:
        return min((d for d, _ in self.items), default=None)

    def _append(self, line: str) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line + "\n")
            f.flush()
            os.fsync(f.fileno())

    def _rewrite(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            for due, event in self.items:
                f.write(json.dumps(_encode(due, event), ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)


def _encode(due: float, event: AlarmTransition) -> dict[str, Any]:
    tr = event.transition
    return {
        "due": due,
        "alarm": tr.alarm.to_row(),
        "what": tr.what,
        "t": tr.t,
        "by": tr.by,
        "note": tr.note,
        "zh": event.text_zh,
        "en": event.text_en,
    }


def _decode(doc: dict[str, Any]) -> tuple[float, AlarmTransition]:
    tr = Transition(
        Alarm.from_row(doc["alarm"]), doc["what"], float(doc["t"]), doc["by"], doc["note"]
    )
    return float(doc["due"]), AlarmTransition(tr, str(doc["zh"]), str(doc["en"]))


class Notifier:
    """Start after the bus has its publishers; stop after the rules runtime, so the last
    transitions are stored in the outbox before it closes."""

    def __init__(
        self,
        bus: Bus,
        router: Router,
        texts: TextContext,
        outbox_path: Path,
        channels: Sequence[Channel],
        *,
        link: Link | None = None,
        units: Callable[[Alarm], str] = lambda _alarm: "",
        open_alarms: Callable[[], Iterable[AlarmTransition]] = tuple,
        keep_s: float = 30 * 86400.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.router = router
        self.texts = texts
        self.link = link
        self.units = units
        self.open_alarms = open_alarms
        self.kinds = {c.name: c.kind for c in channels}
        self.clock = clock
        make_private_dir(outbox_path.parent)
        self.outbox = Outbox(outbox_path, clock=clock)
        self.worker = DeliveryWorker(self.outbox, channels, keep_s=keep_s, clock=clock)
        self.held = HeldNotices(outbox_path.with_name("held.jsonl"))
        self.inbox = bus.inbox(
            AlarmTransition, name="notify", bound=10_000, overflow=Overflow.DROP_NEWEST
        )
        # Who was told of each open alarm, for its resolved notice (None after a restart:
        # then it goes to whom the alarm would reach now).
        self.told: dict[str, set[tuple[str, str]]] = {}
        self.routed = 0
        self.enqueued = 0
        self.digests = 0
        self.nobody = 0  # transitions that should have reached someone and reached nobody
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self.outbox.start()
        self.worker.start()
        self._tasks = [
            asyncio.create_task(self._consume(), name="notify"),
            asyncio.create_task(self._digests(), name="notify-digest"),
        ]

    async def stop(self) -> None:
        """Store what the inbox still holds, then stop sending; the outbox keeps the rest."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        try:
            await self._handle(self.inbox.drain())
        finally:
            await self.worker.stop()
            await self.outbox.stop()

    async def _consume(self) -> None:
        await self._handle(list(self.open_alarms()))  # what a crash may have kept back
        while True:
            await self._handle(await self.inbox.get_batch())

    async def _handle(self, events: Sequence[AlarmTransition]) -> None:
        deliveries: list[Delivery] = []
        for event in events:
            try:
                deliveries += await self._route(event)
            except Exception:  # one bad transition must not stop the others' notices
                log.exception("notify: routing %s failed", event.transition.alarm_id)
        if deliveries:
            stored = await self.outbox.enqueue(deliveries)
            self.enqueued += len(stored)

    async def _route(self, event: AlarmTransition) -> list[Delivery]:
        tr = event.transition
        told = self.told.get(tr.alarm_id)
        route = self.router.route_transition(tr, told)
        self.routed += 1
        if route.notice == "none":
            return []
        if route.held and route.hold_until is not None:
            await self.held.add(route.hold_until.timestamp(), event)
            return []
        if not route.targets:
            self.nobody += 1
            log.warning("notify: %s %s reaches nobody: %s", tr.alarm_id, tr.what, route.reason)
            return []
        if route.notice == "resolved" or not tr.alarm.is_open:
            self.told.pop(tr.alarm_id, None)
        else:
            self.told.setdefault(tr.alarm_id, set()).update(
                (t.person.id, t.channel) for t in route.targets
            )
        return self._deliveries(event, route.targets)

    def _deliveries(self, event: AlarmTransition, targets: Sequence[Target]) -> list[Delivery]:
        tr = event.transition
        now = self.clock()
        out = []
        notices: dict[str, Any] = {}
        for target in targets:
            url = self.link(tr.alarm_id, target.person.id) if self.link else ""
            notice = notices.get(url)
            if notice is None:
                notice = notices[url] = compose(
                    event, self.texts, now=now, ack_url=url, unit=self.units(tr.alarm)
                )
            kind = self.kinds.get(target.channel, target.channel)
            recipient = target.recipient()
            message = render(notice, kind, mentions=[recipient])
            out.append(
                Delivery(
                    key=delivery_key(tr, target),
                    channel=target.channel,
                    recipient=recipient,
                    message=message,
                    grade=tr.alarm.grade,
                    alarm_id=tr.alarm_id,
                    created=now,
                )
            )
        return out

    async def _digests(self) -> None:
        while True:
            due = self.held.next_due()
            wait = 30.0 if due is None else min(30.0, max(0.0, due - self.clock()))
            await asyncio.sleep(wait)
            await self.send_digests()

    async def send_digests(self) -> int:
        """Every held notice now due, one digest per person and channel; returns how many."""
        now = self.clock()
        taken = await self.held.take_due(now)
        if not taken:
            return 0
        at = datetime.fromtimestamp(now, self.texts.tz)
        digest = fold([event for _, event in taken], at)
        stamp = f"{min(d for d, _ in taken):.0f}"
        deliveries = []
        for target in self.router.digest_targets(at):
            kind = self.kinds.get(target.channel, target.channel)
            recipient = target.recipient()
            message: Message = render_digest(digest, self.texts, kind, mentions=[recipient])
            counts = digest.counts
            grade = next(g for g in GRADES if counts.get(g) or g == "blue")
            deliveries.append(
                Delivery(
                    key=f"digest/{stamp}/{target.person.id}/{target.channel}",
                    channel=target.channel,
                    recipient=recipient,
                    message=message,
                    grade=grade,
                    created=now,
                )
            )
        if deliveries:
            self.enqueued += len(await self.outbox.enqueue(deliveries))
            self.digests += len(deliveries)
        else:
            self.nobody += 1
            log.warning(
                "notify: a digest of %d notices reaches nobody (no digest audience)", len(taken)
            )
        return len(deliveries)

    def health(self) -> dict[str, int | float]:
        return {
            "notify_routed": self.routed,
            "notify_enqueued": self.enqueued,
            "notify_digests": self.digests,
            "notify_nobody": self.nobody,
            "notify_held": len(self.held.items),
            "notify_held_dropped": self.held.dropped,
            **self.worker.health(),
        }
