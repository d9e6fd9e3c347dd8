"""What the console needs of the gateway (AlarmDesk), and that seam over the real AlarmService.

The console renders and authorises; the desk knows alarms and devices. Tests and the bench
may put any desk behind the console; the gateway puts ServiceDesk, over its AlarmService and
its drivers' statuses.
"""

from __future__ import annotations

import asyncio
import json
import math
import sqlite3
import threading
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from drivers.contract import DeviceStatus
from gateway.alarm_service import AlarmService
from gateway.alarm_store import HistoryEntry
from rules.alarms import GRADES, Alarm

MAX_NOTE = 200  # characters of an ack note or a shelving reason kept
MAX_PAGE = 200

_GRADE_RANK = {g: i for i, g in enumerate(GRADES)}  # red first
_STATE_RANK = {"active": 0, "cleared": 1, "acknowledged": 2, "closed": 3}


@dataclass(frozen=True, slots=True)
class DeskAlarm:
    """An open alarm as people read it."""

    alarm: Alarm
    text_zh: str
    text_en: str
    place: str
    respond_by: float | None  # end of the current response period; None: never escalates

    def text(self, lang: str) -> str:
        return self.text_zh if lang == "zh" else self.text_en


@dataclass(frozen=True, slots=True)
class HistoryQuery:
    alarm_id: str | None = None
    grade: str | None = None
    what: str | None = None
    before: int | None = None  # transitions with a smaller seq: the next page
    limit: int = 50


@dataclass(frozen=True, slots=True)
class HistoryPage:
    entries: Sequence[HistoryEntry]  # newest first
    next_before: int | None  # the query's `before` for the next (older) page; None: no more


class AlarmDesk(Protocol):
    """The alarm desk the console works at."""

    def open_alarms(self) -> Sequence[DeskAlarm]:
        """Not closed, most urgent first (grade, then waiting for a person, then oldest)."""

    def alarm(self, alarm_id: str) -> DeskAlarm | None:
        """One alarm, closed ones too; None if the id is unknown."""

    async def history(self, query: HistoryQuery) -> HistoryPage:
        """Transitions, newest first."""

    def ack(self, alarm_id: str, by: str, note: str) -> str:
        """ "acked", "already acknowledged" or "unknown alarm"."""

    def shelve(self, alarm_id: str, by: str, duration_s: float, reason: str) -> str:
        """ "shelved", "unknown alarm" or "refused: why"."""

    def devices(self) -> Sequence[DeviceStatus]:
        """Every device's status, as the drivers judge it."""


def urgency(a: DeskAlarm) -> tuple[int, int, float]:
    return (_GRADE_RANK.get(a.alarm.grade, 9), _STATE_RANK[a.alarm.state], a.alarm.raised_at)


class HistoryReader:
    """The alarm store's transitions, read through a read-only connection of its own.

    Not through the store's thread: that thread commits alarms (each fsynced), and a person
    paging through history must not delay one. SQLite's WAL lets this reader and that writer
    work at once. The table is the store's on-disk format (gateway/alarm_store.py, schema 1),
    which `guanjia alarms` and dashboards read too.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def _connect(self) -> sqlite3.Connection:
        if self._db is None:
            uri = f"file:{urllib.parse.quote(str(self.path.resolve()))}?mode=ro"
            self._db = sqlite3.connect(uri, uri=True, check_same_thread=False, timeout=5.0)
            self._db.execute("PRAGMA query_only = ON")
        return self._db

    def page(self, query: HistoryQuery) -> HistoryPage:
        where: list[str] = []
        args: list[Any] = []
        for column, value in (
            ("seq <", query.before),
            ("alarm_id =", query.alarm_id),
            ("grade =", query.grade),
            ("what =", query.what),
        ):
            if value is not None:
                where.append(f"{column} ?")
                args.append(value)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        limit = max(1, min(query.limit, MAX_PAGE))
        with self._lock:
            rows = (
                self._connect()
                .execute(
                    "SELECT seq, alarm_id, what, t, by, note, grade, state, value, escalation, "
                    f"quiet FROM transitions {clause} ORDER BY seq DESC LIMIT ?",
                    (*args, limit + 1),
                )
                .fetchall()
            )
        entries = [
            HistoryEntry(
                seq=r[0],
                alarm_id=r[1],
                what=r[2],
                t=r[3],
                by=r[4],
                note=r[5],
                grade=r[6],
                state=r[7],
                value=json.loads(r[8]),
                escalation=r[9],
                quiet=bool(r[10]),
            )
            for r in rows[:limit]
        ]
        more = len(rows) > limit
        return HistoryPage(entries, entries[-1].seq if more and entries else None)

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None


class ServiceDesk:
    """AlarmDesk over the gateway's AlarmService (on its event loop) and its devices."""

    def __init__(
        self,
        service: AlarmService,
        device_status: Callable[[], Sequence[DeviceStatus]],
        *,
        store_path: Path | None = None,
    ) -> None:
        self.service = service
        self.device_status = device_status
        self.reader = HistoryReader(store_path or service.store.store.path)
        # Rendering texts is the costly part of a page of 500 alarms; an Alarm is frozen and
        # replaced on every change, so its identity says whether the texts are still right.
        self._rendered: dict[str, DeskAlarm] = {}
        self._raw: list[Alarm] = []
        self._order: tuple[DeskAlarm, ...] = ()

    def _desk_alarm(self, alarm: Alarm) -> DeskAlarm:
        cached = self._rendered.get(alarm.id)
        if cached is not None and cached.alarm is alarm:
            return cached
        zh, en = self.service.texts(alarm)
        place = str(self.service.alarm_texts.params(alarm).get("place") or "")
        period = self.service.catalog.response_time(alarm.grade)
        respond_by = (
            alarm.escalation_since + period if period > 0 and math.isfinite(period) else None
        )
        return DeskAlarm(alarm, zh, en, place, respond_by)

    def open_alarms(self) -> Sequence[DeskAlarm]:
        alarms = self.service.book.open_alarms()  # in the book's stable order
        raw = self._raw
        if len(alarms) == len(raw) and all(a is b for a, b in zip(alarms, raw, strict=True)):
            return self._order
        current = [self._desk_alarm(a) for a in alarms]
        self._raw = alarms
        self._rendered = {d.alarm.id: d for d in current}
        self._order = tuple(sorted(current, key=urgency))
        return self._order

    def alarm(self, alarm_id: str) -> DeskAlarm | None:
        alarm = self.service.book.get(alarm_id)
        return None if alarm is None else self._desk_alarm(alarm)

    async def history(self, query: HistoryQuery) -> HistoryPage:
        return await asyncio.to_thread(self.reader.page, query)

    def ack(self, alarm_id: str, by: str, note: str) -> str:
        return self.service.ack(alarm_id, by, note[:MAX_NOTE])

    def shelve(self, alarm_id: str, by: str, duration_s: float, reason: str) -> str:
        return self.service.shelve_as(alarm_id, by, duration_s, reason[:MAX_NOTE])

    def devices(self) -> Sequence[DeviceStatus]:
        return self.device_status()

    def close(self) -> None:
        self.reader.close()
