"""Alarm messages to the home broker (a central one, or the local one a bridge forwards), held
in the alarm store until the broker has them.

Each transition makes two messages: the alarm's retained state on `<prefix>/<site>/alarm/<id>`
(empty when it closes) and the transition itself on `<prefix>/<site>/transitions`, with its
`seq` in the store's history. Both are written in the transaction that makes the transition
durable (gateway/alarm_store.py), so none is durable without its message, and they go out
QoS 1 in the order they were stored.

paho keeps what it was handed across an outage of the link and sends it again in order when
the link returns (its in-flight and queued messages, with the persistent session); what it
cannot keep is a restart of the gateway during the outage, and more than its queue holds.
So a message stays in the store until the broker's PUBACK, at most WINDOW messages are with
paho at a time, and a gateway that starts sends first what its store still holds, oldest
first. A PUBACK lost with the link, or one whose deletion was not yet written when the gateway
stopped, makes the message go out again: at least once, and the transition's `seq` lets a
reader drop the repeat.

The acknowledged messages are deleted with the store's next commit (a transition, or the
rules' tick once a second), not in a commit of their own each.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

import paho.mqtt.client as mqtt

from gateway.alarm_store import OutboxEntry, Outgoing
from gateway.mqtt_sink import alarm_state
from rules.alarms import Transition

# What the transition event leaves out of the retained alarm message (it says `alarm`, `t`, `by`).
_NOT_IN_EVENT = frozenset({"id", "raised_at", "acked_by"})

log = logging.getLogger("guanjia.mqtt")

WINDOW = 1000  # messages handed to paho and not yet acknowledged, at most
PAGE = 500  # messages read back from the store at once
RETRY_S = 1.0  # after paho's queue was full

ReadPage = Callable[[int, int], Awaitable[list[Outgoing]]]  # (after seq, limit) -> messages


class Connection(Protocol):
    """The home broker's connection as the outbox uses it (drivers/mqtt/client.Connection)."""

    on_published: Callable[[int], None] | None

    def publish(
        self, topic: str, payload: str | bytes, *, qos: int = 1, retain: bool = False
    ) -> mqtt.MQTTMessageInfo | None: ...


class AlarmOutbox:
    """The event loop's side: builds the messages of transitions, hands the stored ones to
    paho in order, hears which the broker acknowledged."""

    def __init__(
        self,
        connection: Connection,
        prefix: str,
        transitions_topic: str,
        read_page: ReadPage,
        *,
        site: str,
        gateway: str | None = None,
        stored_last: int = 0,
        window: int = WINDOW,
    ) -> None:
        self.connection = connection
        self.prefix = prefix  # `<prefix>/<site>`
        self.transitions_topic = transitions_topic
        self.read_page = read_page
        self.identity: dict[str, str] = {"site": site, **({"gateway": gateway} if gateway else {})}
        self.window = window
        self._handed: collections.deque[tuple[int, mqtt.MQTTMessageInfo]] = collections.deque()
        self._after = 0  # the last seq handed to paho (or read past)
        self._stored_last = stored_last  # the last seq in the store
        self._paging: asyncio.Task[None] | None = None
        self._sent: list[int] = []  # acknowledged, to delete with the store's next commit
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ack_scheduled = False
        self.closed = False
        self.handed = 0
        self.acknowledged = 0
        self.sent_unstored = 0  # sent without the store (it failed): not kept for a restart
        connection.on_published = self._published

    # -- building --------------------------------------------------------------------------

    def messages(
        self, transitions: Sequence[Transition], texts: Sequence[tuple[str, str]]
    ) -> list[OutboxEntry]:
        """The messages of these transitions, in order, for the store to keep with them."""
        entries = []
        for i, (tr, (text_zh, text_en)) in enumerate(zip(transitions, texts, strict=True)):
            alarm = tr.alarm
            shown = alarm_state(alarm, text_zh, text_en)
            # Closed: an empty retained message, and the retained alarm goes away.
            state = _dumps(shown).encode() if alarm.state != "closed" else b""
            entries.append(OutboxEntry(i, f"{self.prefix}/alarm/{alarm.id}", state, retain=True))
            event: dict[str, Any] = {
                **self.identity,
                "alarm": alarm.id,
                "what": tr.what,
                "t": tr.t,
                "by": tr.by,
                "note": tr.note,
                "escalation": alarm.escalation,
                **{k: v for k, v in shown.items() if k not in _NOT_IN_EVENT},
            }
            entries.append(OutboxEntry(i, self.transitions_topic, event))
        return entries

    # -- the event loop --------------------------------------------------------------------

    def start(self) -> None:
        """Hand paho what the store still holds (before anything new), then keep up."""
        self._loop = asyncio.get_running_loop()
        self._pump()

    def stored(self, rows: Sequence[Outgoing]) -> None:
        """Messages the store has just made durable, in seq order."""
        if not rows:
            return
        caught_up = self._after >= self._stored_last and self._paging is None
        self._stored_last = max(self._stored_last, rows[-1].seq)
        if caught_up and len(self._handed) + len(rows) <= self.window and not self.closed:
            for row in rows:  # the usual case: straight to paho, no read back
                if not self._hand(row):
                    return
        else:
            self._pump()

    def unstored(self, entries: Sequence[OutboxEntry]) -> None:
        """The store failed: the messages go out now all the same (without a `seq`), kept
        only by paho while the gateway runs."""
        for e in entries:
            payload = e.payload if isinstance(e.payload, bytes) else _dumps(dict(e.payload))
            self.sent_unstored += 1
            self.connection.publish(e.topic, payload, qos=1, retain=e.retain)

    def take_sent(self) -> list[int]:
        """The acknowledged messages' seqs, for the store's next commit to delete."""
        sent, self._sent = self._sent, []
        return sent

    def give_back(self, sent: Sequence[int]) -> None:
        """The commit that was to delete them failed: they go with the next one."""
        self._sent[:0] = sent

    @property
    def depth(self) -> int:
        """Messages not yet acknowledged by the broker (handed or still in the store)."""
        return len(self._handed) + max(0, self._stored_last - self._after)

    async def stop(self) -> None:
        """No more handing (the connection is stopping); what is unacknowledged stays stored."""
        self.closed = True
        if self._paging is not None:
            self._paging.cancel()
            await asyncio.gather(self._paging, return_exceptions=True)

    def _hand(self, row: Outgoing) -> bool:
        info = self.connection.publish(row.topic, row.payload, qos=1, retain=row.retain)
        if info is None:  # paho's queue is full (other messages): read back in a while
            assert self._loop is not None
            self._loop.call_later(RETRY_S, self._pump)
            return False
        self._after = row.seq
        self.handed += 1
        self._handed.append((row.seq, info))
        return True

    def _pump(self) -> None:
        if self._paging is None and self._after < self._stored_last and not self.closed:
            self._paging = asyncio.get_running_loop().create_task(self._page())

    async def _page(self) -> None:
        """Read the store past what was handed, while paho has room."""
        try:
            while self._after < self._stored_last and not self.closed:
                room = self.window - len(self._handed)
                if room <= 0:
                    return  # an acknowledgement pumps again
                rows = await self.read_page(self._after, min(room, PAGE))
                if not rows:
                    self._after = self._stored_last  # the bound dropped them meanwhile
                    return
                for row in rows:
                    if self.closed or not self._hand(row):
                        return
        except Exception:
            log.exception("MQTT outbox: reading the alarm store failed; trying again later")
        finally:
            self._paging = None

    # -- paho's network thread, then the loop ----------------------------------------------

    def _published(self, _mid: int) -> None:
        """paho: some message went out (QoS 0) or was acknowledged (QoS 1); which of ours is
        told by each one's MQTTMessageInfo, looked at on the loop."""
        if self._ack_scheduled or self._loop is None:
            return
        self._ack_scheduled = True
        with contextlib.suppress(RuntimeError):  # the loop is closed: shutting down
            self._loop.call_soon_threadsafe(self._collect)

    def _collect(self) -> None:
        self._ack_scheduled = False
        handed = self._handed
        while handed and _acknowledged(handed[0][1]):
            seq, _info = handed.popleft()
            self._sent.append(seq)
            self.acknowledged += 1
        # Acknowledged out of order (rare): looked at again with the next one.
        self._pump()

    def health(self) -> dict[str, int]:
        return {
            "mqtt_outbox_depth": self.depth,
            "mqtt_outbox_handed": len(self._handed),
            "mqtt_outbox_acknowledged": self.acknowledged,
            "mqtt_outbox_unstored": self.sent_unstored,
        }


def _acknowledged(info: mqtt.MQTTMessageInfo) -> bool:
    """Whether the broker has acknowledged the message. Not `info.is_published()`: that
    raises for a message handed while the link was down (its rc says "not connected"),
    though paho keeps it and sends it when the link returns; the flag it reads is the truth,
    set when the PUBACK comes."""
    return bool(info._published)


def _dumps(doc: dict[str, Any]) -> str:
    return json.dumps(doc, ensure_ascii=False)  # as the MQTT sink writes the alarm's state
