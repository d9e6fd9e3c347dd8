"""Today's patrol rounds for the console: the rounds board, a cheap bus subscriber.

The patrol rule (rules/kinds/patrol.py) sends a `Record` (measurement `patrol`, tags `rule`
and `route`, time the scheduled start) when a round opens, at every checkpoint settled and when
it closes, each with every field: the last one is the round as known. The board keeps that last
one per (rule, route, start), for yesterday and today in the site's time zone (yesterday's
night rounds end after midnight), at most `bound` of them (the oldest start goes first,
counted). It lives in memory: after a restart it knows the rounds recorded since (earlier
ones are in InfluxDB), and says since when.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import ValidationError

from core.types import Value
from gateway.bus import Bus
from rules.kinds.patrol import MEASUREMENT, PatrolParams
from rules.model import Record

MAX_ROUNDS = 2000  # 20 routes of 24 rounds a day, two days, with room to spare
MAX_CHECKPOINTS = 200  # a record claiming more is cut there

RoundKey = tuple[str, str, int]  # rule, route, start (ns)


@dataclass(frozen=True, slots=True)
class RouteInfo:
    """A configured route: what the records do not carry (the checkpoints' names)."""

    rule: str
    route: str
    name: str
    checkpoints: tuple[str, ...]  # each checkpoint's name, "" when it has none


@dataclass(frozen=True, slots=True)
class Checkpoint:
    n: int  # 1-based, in the route's order
    name: str
    device: str
    status: str  # pending, on_time, late, skipped, out_of_order, missed
    at: float | None  # epoch seconds of the read
    card: str


@dataclass(frozen=True, slots=True)
class PatrolRound:
    rule: str
    route: str
    name: str
    start: float  # the scheduled start, epoch seconds
    state: str  # open | closed
    result: str  # ok | late | out_of_order | missed
    guard: str
    day_type: str
    watched: bool  # False: it opened while the gateway was not running, nothing is judged
    checkpoints: tuple[Checkpoint, ...]


class RoundsBoard:
    """The last record of each patrol round of yesterday and today, for the console."""

    def __init__(
        self,
        timezone: str = "Asia/Shanghai",
        routes: Sequence[RouteInfo] = (),
        *,
        bound: int = MAX_ROUNDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.tz = ZoneInfo(timezone)
        self.routes = {(r.rule, r.route): r for r in routes}
        self.bound = bound
        self.clock = clock
        self.since = clock()  # the board knows nothing from before this
        self._rounds: dict[RoundKey, dict[str, Value]] = {}
        self.evicted = 0  # rounds dropped for the bound
        self.too_old = 0  # records of rounds before yesterday, not kept

    @classmethod
    def for_rules(
        cls, rules: Sequence[Mapping[str, Any]], timezone: str, **kwargs: Any
    ) -> RoundsBoard | None:
        """A board for the site's patrol rules (site-file entries {id, kind, ...}); None when
        the site has none. The entries are the ones the rules runtime checked at start-up."""
        routes: list[RouteInfo] = []
        found = False
        for entry in rules:
            if entry.get("kind") != "patrol":
                continue
            found = True
            params = {k: v for k, v in entry.items() if k not in ("id", "kind")}
            try:
                parsed = PatrolParams.model_validate(params)
            except ValidationError:
                continue  # the rules runtime reports it; the rounds still show, unnamed
            rule_id = str(entry.get("id", ""))
            for route in parsed.routes:
                names = tuple(cp.name for cp in route.checkpoints)
                routes.append(RouteInfo(rule_id, route.id, route.label, names))
        return cls(timezone, routes, **kwargs) if found else None

    def attach(self, bus: Bus) -> None:
        bus.subscribe(Record, self.offer, name="console-rounds")

    # -- what arrives ---------------------------------------------------------------------------

    def _first_day(self, now: float) -> float:
        """Epoch seconds of yesterday's midnight in the site's time zone."""
        today = datetime.fromtimestamp(now, self.tz).date()
        return _midnight(today - timedelta(days=1), self.tz)

    def offer(self, record: Record) -> None:
        if record.measurement != MEASUREMENT:
            return
        rule, route = record.tags.get("rule", ""), record.tags.get("route", "")
        if not route:
            return
        first = self._first_day(self.clock())
        if record.ts / 1e9 < first:
            self.too_old += 1
            return
        key = (rule, route, record.ts)
        known = self._rounds.get(key)
        if known is None:
            self._drop_before(first)
            self._rounds[key] = dict(record.fields)
            while len(self._rounds) > self.bound:
                del self._rounds[min(self._rounds, key=lambda k: k[2])]
                self.evicted += 1
        else:
            known.update(record.fields)  # as InfluxDB does: the later fields win

    def _drop_before(self, first: float) -> None:
        old = [k for k in self._rounds if k[2] / 1e9 < first]
        for k in old:
            del self._rounds[k]

    # -- what the page reads --------------------------------------------------------------------

    def days(self, now: float | None = None) -> list[tuple[date, list[PatrolRound]]]:
        """Today's rounds (and any opened early for after midnight), then yesterday's; each
        newest first."""
        now = self.clock() if now is None else now
        self._drop_before(self._first_day(now))
        today = datetime.fromtimestamp(now, self.tz).date()
        yesterday = today - timedelta(days=1)
        by_day: dict[date, list[PatrolRound]] = {today: [], yesterday: []}
        for key, fields in self._rounds.items():
            rnd = self._round(key, fields)
            day = datetime.fromtimestamp(rnd.start, self.tz).date()
            by_day[today if day >= today else yesterday].append(rnd)
        for rounds in by_day.values():
            rounds.sort(key=lambda r: (-r.start, r.name, r.route))
        return [(today, by_day[today]), (yesterday, by_day[yesterday])]

    def _round(self, key: RoundKey, fields: Mapping[str, Value]) -> PatrolRound:
        rule, route, ts = key
        info = self.routes.get((rule, route))
        count = fields.get("checkpoints")
        total = count if isinstance(count, int) and not isinstance(count, bool) else 0
        total = min(max(total, _highest_checkpoint(fields)), MAX_CHECKPOINTS)
        checkpoints = []
        for n in range(1, total + 1):
            at = fields.get(f"cp{n}_at")
            name = (
                info.checkpoints[n - 1] if info is not None and n <= len(info.checkpoints) else ""
            )
            checkpoints.append(
                Checkpoint(
                    n=n,
                    name=name,
                    device=_text(fields.get(f"cp{n}_device")),
                    status=_text(fields.get(f"cp{n}_status")) or "pending",
                    at=float(at)
                    if isinstance(at, int | float) and not isinstance(at, bool)
                    else None,
                    card=_text(fields.get(f"cp{n}_card")),
                )
            )
        watched = fields.get("watched")
        return PatrolRound(
            rule=rule,
            route=route,
            name=_text(fields.get("route_name")) or (info.name if info is not None else route),
            start=ts / 1e9,
            state=_text(fields.get("state")) or "open",
            result=_text(fields.get("result")) or "ok",
            guard=_text(fields.get("guard")),
            day_type=_text(fields.get("day_type")),
            watched=watched is not False,
            checkpoints=tuple(checkpoints),
        )

    def stats(self) -> dict[str, int]:
        return {"rounds": len(self._rounds), "rounds_evicted": self.evicted}


def _midnight(day: date, tz: ZoneInfo) -> float:
    return datetime(day.year, day.month, day.day, tzinfo=tz).timestamp()


def _text(value: Value | None) -> str:
    return "" if value is None or isinstance(value, bool) else str(value)


def _highest_checkpoint(fields: Mapping[str, Value]) -> int:
    highest = 0
    for name in fields:
        if name.startswith("cp") and name.endswith("_status"):
            digits = name[2:-7]
            if digits.isascii() and digits.isdigit():
                highest = max(highest, int(digits))
    return highest
