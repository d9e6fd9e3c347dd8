"""Patrol rounds (巡查): guards walk fixed routes and read a card at each checkpoint.

A route is data: its checkpoints in order (an access reader, optionally one door or one kind
of event), the time allowed since the previous checkpoint, and the start times of its rounds
by day type: workday (调休 make-up days included), rest day, statutory holiday. The reads are
the access-control events the gateway already receives (hikvision_access_controller:
`access_granted` with `card_no` or `employee_no`, and `door_no`).

A round of a route that starts at S:

- opens at S - start_tolerance: reads before that belong to no round;
- wants checkpoint 1 by S + start_tolerance and each later one `within` its allowance after
  the previous read (or after the time the previous one was due, when it was missed);
- a checkpoint read after its due time, but no later than `grace` after it, is late; one not
  read by then is missed. A checkpoint passed over (a later one read first) waits until its
  own time is out: read by then it is out of order, else missed;
- closes when every checkpoint is settled, or when the route's next round opens (what is
  still open then is missed).

Alarms, one per route checkpoint (subject `<reader>:<route>:<n>`): patrol_missed,
patrol_late, patrol_out_of_order, of the route's grade (else the rule's, else the catalog's).
A round nobody started (nothing read when checkpoint 1 is missed) raises checkpoint 1's alarm
only: the rest of it is no news, and its record says so. An alarm stays raised until a later
round reads its checkpoint on time, so an unacknowledged one escalates; the same problem in a
later round updates it.

Records (rules.model.Record): measurement `patrol`, tags `rule` and `route`, time S. Sent when
the round opens, at every checkpoint settled and when it closes (`state` closed), each with
every field, so the last one written is the round as known: the runtime stores them in
InfluxDB and the console shows today's rounds from them.

Restarts: the snapshot keeps the raised alarms, the running rounds and each route's last
start. A round that opened while the gateway was not running is followed and recorded, but
`watched` false and raising nothing: its first reads may have been lost.

Day types come from the working calendar. It says workday or not; a day off is a holiday when
it is a weekday, or a weekend day in one run of days off with a weekday (the weekend inside
the Spring Festival, or joined to a Monday holiday), and a rest day otherwise. A start
belongs to the day whose date it has: "02:00" on a Saturday follows Saturday's list.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from core.config_types import Duration
from core.types import Sample, Value
from rules.blocks import AlarmLatch
from rules.calendar import DayKind, day_kind
from rules.kinds.security import flag
from rules.model import (
    Context,
    DeviceInfo,
    Effect,
    Grade,
    Record,
    Rule,
    RuleParams,
    Scope,
)

MEASUREMENT = "patrol"
MISSED = "patrol_missed"
LATE = "patrol_late"
OUT_OF_ORDER = "patrol_out_of_order"

SEARCH_DAYS = 400
"""How far ahead the next start is looked for: every route starts on workdays or rest days."""

CATCH_UP = 86400.0
"""After a long stop, rounds that started more than this long ago are not recorded at all."""

_HHMM = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")

# Settled states of a checkpoint, best first: a round's result is its worst.
_RESULTS = ("on_time", "late", "out_of_order", "missed")


def parse_start(text: str) -> time:
    match = _HHMM.match(text.strip())
    if not match:
        raise ValueError(f"{text!r} is not a start time: write HH:MM, e.g. 22:00 or 02:00")
    return time(int(match.group(1)), int(match.group(2)))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PatrolCheckpoint(_Strict):
    """One place on a route: a read at this reader."""

    reader: str = Field(
        min_length=1, description="Device id of the access reader (controller or terminal)."
    )
    name: str = Field(default="", description="The place as guards call it, e.g. 地下车库东门.")
    point: str = Field(
        default="access_granted",
        description="Event point of a read: a granted card, face or fingerprint by default; "
        "invalid_card for patrol tags the controller does not know.",
    )
    value: Value = Field(default=True, description="Value of `point` that is a read.")
    match: dict[str, Value] = Field(
        default_factory=dict,
        description="Other values the event must carry, e.g. {door_no: 2} for one door of a "
        "multi-door controller.",
    )
    within: Duration | None = Field(
        default=None,
        description="Time allowed since the previous checkpoint's read, e.g. 15m; default "
        "the route's `within`. Not for the first checkpoint: start_tolerance times it.",
    )

    @field_validator("within")
    @classmethod
    def _positive(cls, value: float | None) -> float | None:
        if value is not None and value <= 0:
            raise ValueError("must be above 0, e.g. 15m")
        return value


class PatrolStarts(_Strict):
    """When a route's rounds start, by the kind of day (working calendar)."""

    workday: list[str] = Field(
        default_factory=list,
        description='Start times on workdays, 调休 make-up days included, HH:MM: ["22:00"].',
    )
    restday: list[str] = Field(
        default_factory=list,
        description="Start times on weekends and other days off that are no statutory holiday.",
    )
    holiday: list[str] | None = Field(
        default=None,
        description="Start times on statutory holidays (weekend days inside one included); "
        "default: as restday.",
    )

    @field_validator("workday", "restday", "holiday")
    @classmethod
    def _times(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        seen: set[time] = set()
        for text in value:
            start = parse_start(text)
            if start in seen:
                raise ValueError(f"{text} is listed twice")
            seen.add(start)
        return value

    @model_validator(mode="after")
    def _some(self) -> PatrolStarts:
        if not self.workday and not self.restday:
            raise ValueError("give start times for workday or restday (or both)")
        return self

    def times(self, day_type: DayKind) -> list[time]:
        if day_type == "workday":
            texts = self.workday
        elif day_type == "holiday" and self.holiday is not None:
            texts = self.holiday
        else:
            texts = self.restday
        return sorted(parse_start(t) for t in texts)


class PatrolRoute(_Strict):
    """A route guards walk: checkpoints in order, the time between them, when rounds start."""

    id: str = Field(
        pattern=r"^[a-z0-9][a-z0-9_-]*$",
        description="Route id: lower case letters, digits, - and _ (a tag in InfluxDB).",
    )
    name: str = Field(default="", description="The route as people call it; default its id.")
    grade: Grade | None = Field(
        default=None,
        description="Grade of this route's alarms; default the rule's, else each kind's own.",
    )
    checkpoints: list[PatrolCheckpoint] = Field(
        min_length=1, description="The checkpoints, in the order they are walked."
    )
    within: Duration = Field(
        default=900.0, gt=0, description="Time allowed between two checkpoints, unless one says."
    )
    starts: PatrolStarts = Field(description="Start times of rounds by day type.")
    start_tolerance: Duration = Field(
        default=600.0,
        ge=0,
        description="The first checkpoint is due this long after the start; reads from this "
        "long before the start count.",
    )
    grace: Duration = Field(
        default=600.0,
        ge=0,
        description="A checkpoint read after its due time but within this is late; one not "
        "read by then is missed.",
    )
    guard_cards: list[str] = Field(
        default_factory=list,
        description="Card or employee numbers of the guards: reads by anyone else are no "
        "patrol (staff passing a reader). Default: every read counts.",
    )

    @field_validator("checkpoints")
    @classmethod
    def _first_has_no_within(cls, value: list[PatrolCheckpoint]) -> list[PatrolCheckpoint]:
        if value and value[0].within is not None:
            raise ValueError(
                "the first checkpoint is due start_tolerance after the start: remove its within"
            )
        return value

    @property
    def label(self) -> str:
        return self.name or self.id

    def allowance(self, index: int) -> float:
        """Time allowed from the previous checkpoint to this one (index > 0)."""
        within = self.checkpoints[index].within
        return self.within if within is None else within


class PatrolParams(RuleParams):
    scope: Scope = Field(
        default_factory=Scope,
        description="Not used: the rule watches the readers its routes name. Leave it out.",
    )
    routes: list[PatrolRoute] = Field(min_length=1, description="The patrol routes.")
    card_points: list[str] = Field(
        default_factory=lambda: ["card_no", "employee_no"],
        min_length=1,
        description="Points that say who read; the first one present names the guard.",
    )

    @model_validator(mode="after")
    def _routes(self) -> PatrolParams:
        if self.scope != Scope():
            raise ValueError("a patrol rule watches the readers its routes name: remove scope")
        seen: set[str] = set()
        for route in self.routes:
            if route.id in seen:
                raise ValueError(f"route id {route.id!r} is used twice")
            seen.add(route.id)
        return self


# --- the calendar ------------------------------------------------------------------------


# --- one round ---------------------------------------------------------------------------


@dataclass(slots=True)
class _Round:
    start: float  # scheduled start, epoch seconds
    day_type: str
    watched: bool
    readers: list[str]  # the route's checkpoints when it opened (a changed route drops it)
    status: list[str]  # pending, on_time, late, skipped, out_of_order, missed
    at: list[float | None]  # time of each read
    cards: list[str]
    deadline: list[float | None]  # a skipped checkpoint is missed after this
    cursor: int = 0  # the next checkpoint in order
    anchor: float = 0.0  # the cursor's allowance counts from here (cursor > 0)
    guard: str = ""

    @classmethod
    def new(cls, route: PatrolRoute, start: float, kind: str, watched: bool) -> _Round:
        n = len(route.checkpoints)
        return cls(
            start,
            kind,
            watched,
            [cp.reader for cp in route.checkpoints],
            ["pending"] * n,
            [None] * n,
            [""] * n,
            [None] * n,
        )

    @property
    def started(self) -> bool:
        return any(t is not None for t in self.at)

    @property
    def closed(self) -> bool:
        return self.cursor >= len(self.status) and "skipped" not in self.status

    def to_dict(self) -> dict[str, Any]:
        return {
            "start": self.start,
            "day_type": self.day_type,
            "watched": self.watched,
            "readers": list(self.readers),
            "status": list(self.status),
            "at": list(self.at),
            "cards": list(self.cards),
            "deadline": list(self.deadline),
            "cursor": self.cursor,
            "anchor": self.anchor,
            "guard": self.guard,
        }

    @classmethod
    def from_dict(cls, s: Mapping[str, Any]) -> _Round:
        """Raises KeyError, TypeError or ValueError for a state it cannot take back."""
        n = len(s["readers"])
        if any(len(s[key]) != n for key in ("status", "at", "cards", "deadline")):
            raise ValueError("a round's lists differ in length")
        return cls(
            start=float(s["start"]),
            day_type=str(s["day_type"]),
            watched=bool(s["watched"]),
            readers=[str(r) for r in s["readers"]],
            status=[str(x) for x in s["status"]],
            at=[None if x is None else float(x) for x in s["at"]],
            cards=[str(x) for x in s["cards"]],
            deadline=[None if x is None else float(x) for x in s["deadline"]],
            cursor=int(s["cursor"]),
            anchor=float(s["anchor"]),
            guard=str(s["guard"]),
        )


def _same(actual: Value, want: Value) -> bool:
    if isinstance(want, bool):
        return flag(actual) is want
    if isinstance(want, int | float):
        if isinstance(actual, bool):
            return False
        if isinstance(actual, int | float):
            return actual == want
        try:
            return float(actual) == want
        except ValueError:
            return False
    return str(actual) == want


def _is_read(cp: PatrolCheckpoint, values: Mapping[str, Value]) -> bool:
    value = values.get(cp.point)
    if value is None or not _same(value, cp.value):
        return False
    return all(k in values and _same(values[k], want) for k, want in cp.match.items())


# --- the rule ----------------------------------------------------------------------------


class PatrolRule(Rule[PatrolParams]):
    """Patrol rounds on fixed routes: missed, late and out-of-order checkpoints, and a record
    of every round."""

    kind = "patrol"

    def __init__(self, rule_id: str, params: PatrolParams) -> None:
        super().__init__(rule_id, params)
        self.alarms = AlarmLatch(rule_id)
        self.routes = {r.id: r for r in params.routes}
        self.by_reader: dict[str, list[tuple[PatrolRoute, int]]] = {}
        for route in params.routes:
            for i, cp in enumerate(route.checkpoints):
                self.by_reader.setdefault(cp.reader, []).append((route, i))
        self.points = frozenset(cp.point for r in params.routes for cp in r.checkpoints)
        self.devices: dict[str, DeviceInfo] = {}
        self.unknown_readers: list[str] = []
        self.rounds: dict[str, _Round] = {}  # route id -> its running round
        self.last_start: dict[str, float] = {}  # route id -> start of its last round opened
        self._next: dict[str, tuple[float, DayKind] | None] = {}  # cache of the next start
        self.alive_since: float | None = None  # first sample or tick of this instance
        self.orphans: list[str] = []  # restored alarms of checkpoints no longer configured

    def bind(self, devices: Sequence[DeviceInfo]) -> list[str]:
        known = {d.id: d for d in devices}
        self.watched = [known[r] for r in self.by_reader if r in known]
        self.devices = {d.id: d for d in self.watched}
        self.unknown_readers = sorted(r for r in self.by_reader if r not in known)
        return [d.id for d in self.watched]

    # --- events --------------------------------------------------------------------------

    def on_sample(self, sample: Sample, ctx: Context) -> Iterable[Effect]:
        targets = self.by_reader.get(sample.device)
        values = sample.values
        if targets is None or self.points.isdisjoint(values):
            return ()
        reads: dict[str, list[int]] = {}
        for route, i in targets:
            if _is_read(route.checkpoints[i], values):
                reads.setdefault(route.id, []).append(i)
        if not reads:
            return ()
        effects = self._schedule(ctx.now.timestamp(), ctx)
        t = sample.ts / 1e9
        card = self._card(values)
        for route_id, indices in reads.items():
            route = self.routes[route_id]
            rnd = self.rounds.get(route_id)
            if rnd is None or t < rnd.start - route.start_tolerance:
                continue
            if route.guard_cards and card not in route.guard_cards:
                continue
            effects.extend(self._advance(route, rnd, t, ctx))
            effects.extend(self._read(route, rnd, indices, t, card, ctx))
            if rnd.closed:
                del self.rounds[route_id]
        return effects

    def on_tick(self, ctx: Context) -> Iterable[Effect]:
        now = ctx.now.timestamp()
        effects: list[Effect] = []
        for subject in self.orphans:
            effects.extend(self.alarms.clear(subject, "the checkpoint is no longer configured"))
        self.orphans = []
        for route_id, rnd in list(self.rounds.items()):
            effects.extend(self._advance(self.routes[route_id], rnd, now, ctx))
            if rnd.closed:
                del self.rounds[route_id]
        effects.extend(self._schedule(now, ctx))
        return effects

    # --- rounds --------------------------------------------------------------------------

    def _schedule(self, now: float, ctx: Context) -> list[Effect]:
        """Open the rounds whose window has begun; a round still running is closed first."""
        if self.alive_since is None:
            self.alive_since = now
        effects: list[Effect] = []
        for route in self.routes.values():
            while True:
                upcoming = self._upcoming(route, now, ctx)
                if upcoming is None or upcoming[0] - route.start_tolerance > now:
                    break
                start, kind = upcoming
                old = self.rounds.pop(route.id, None)
                if old is not None:
                    effects.extend(self._close(route, old, ctx))
                watched = start - route.start_tolerance >= self.alive_since
                rnd = _Round.new(route, start, kind, watched)
                self.rounds[route.id] = rnd
                self.last_start[route.id] = start
                del self._next[route.id]
                effects.append(self._record(route, rnd))
        return effects

    def _upcoming(
        self, route: PatrolRoute, now: float, ctx: Context
    ) -> tuple[float, DayKind] | None:
        if route.id in self._next:
            return self._next[route.id]
        last = self.last_start.get(route.id)
        if last is None:
            # A new rule judges only rounds it can watch from their opening.
            not_before = now + route.start_tolerance
        else:
            not_before = max(last + 1.0, now - CATCH_UP)
        found = self._first_start(route, not_before, ctx)
        self._next[route.id] = found
        return found

    def _first_start(
        self, route: PatrolRoute, not_before: float, ctx: Context
    ) -> tuple[float, DayKind] | None:
        tz = ctx.now.tzinfo
        day = datetime.fromtimestamp(not_before, tz).date() - timedelta(days=1)
        for _ in range(SEARCH_DAYS):
            kind = day_kind(ctx.calendar, day, tz)
            for start in route.starts.times(kind):
                t = datetime.combine(day, start, tzinfo=tz).timestamp()
                if t >= not_before:
                    return t, kind
            day += timedelta(days=1)
        return None

    def _allowance(self, route: PatrolRoute, rnd: _Round, index: int) -> tuple[float, float]:
        """(reference, allowed): checkpoint `index` (at or after the cursor) is due at their
        sum; the checkpoints between the cursor and it add their own allowances."""
        if rnd.cursor == 0:
            ref, allowed = rnd.start, route.start_tolerance
        else:
            ref, allowed = rnd.anchor, route.allowance(rnd.cursor)
        for k in range(rnd.cursor + 1, index + 1):
            allowed += route.allowance(k)
        return ref, allowed

    def _advance(self, route: PatrolRoute, rnd: _Round, t: float, ctx: Context) -> list[Effect]:
        """Settle what is missed by time `t`."""
        effects: list[Effect] = []
        changed = False
        for k, deadline in enumerate(rnd.deadline):
            if deadline is not None and deadline < t and rnd.status[k] == "skipped":
                rnd.status[k], rnd.deadline[k] = "missed", None
                effects.extend(self._missed(route, rnd, k, ctx))
                changed = True
        while rnd.cursor < len(rnd.status):
            ref, allowed = self._allowance(route, rnd, rnd.cursor)
            if ref + allowed + route.grace >= t:
                break
            k = rnd.cursor
            rnd.status[k] = "missed"
            rnd.cursor, rnd.anchor = k + 1, ref + allowed
            effects.extend(self._missed(route, rnd, k, ctx))
            changed = True
        if changed:
            effects.append(self._record(route, rnd))
        return effects

    def _read(
        self,
        route: PatrolRoute,
        rnd: _Round,
        indices: list[int],
        t: float,
        card: str,
        ctx: Context,
    ) -> list[Effect]:
        open_ = [i for i in indices if rnd.status[i] in ("pending", "skipped")]
        if not open_:
            return []  # a second read, or one too late: settled already
        # A reader that is two checkpoints of the route: the one expected, else one passed
        # over (the guard went back for it), else the nearest ahead.
        skipped = [i for i in open_ if rnd.status[i] == "skipped"]
        i = rnd.cursor if rnd.cursor in open_ else (skipped or open_)[0]
        rnd.at[i], rnd.cards[i] = t, card
        if card and not rnd.guard:
            rnd.guard = card
        effects: list[Effect] = []
        if rnd.status[i] == "skipped":
            after = max(k for k, at in enumerate(rnd.at) if at is not None and k > i)
            rnd.status[i], rnd.deadline[i], rnd.anchor = "out_of_order", None, t
            effects.extend(self._raise(route, rnd, i, OUT_OF_ORDER, ctx, after=after + 1))
        else:
            for k in range(rnd.cursor, i):  # passed over: each waits until its own time is out
                ref, allowed = self._allowance(route, rnd, k)
                rnd.status[k], rnd.deadline[k] = "skipped", ref + allowed + route.grace
            ref, allowed = self._allowance(route, rnd, i)
            late = t > ref + allowed
            rnd.status[i] = "late" if late else "on_time"
            rnd.cursor, rnd.anchor = i + 1, t
            if late:
                took, limit = round((t - ref) / 60, 1), round(allowed / 60, 1)
                effects.extend(self._raise(route, rnd, i, LATE, ctx, value=took, limit=limit))
            else:
                effects.extend(self.alarms.clear(self._subject(route, i)))
        effects.append(self._record(route, rnd))
        return effects

    def _close(self, route: PatrolRoute, rnd: _Round, ctx: Context) -> list[Effect]:
        """The route's next round opens: what this one has not settled is missed."""
        effects: list[Effect] = []
        for k, status in enumerate(rnd.status):
            if status in ("pending", "skipped"):
                rnd.status[k], rnd.deadline[k] = "missed", None
                effects.extend(self._missed(route, rnd, k, ctx))
        rnd.cursor = len(rnd.status)
        effects.append(self._record(route, rnd))
        return effects

    # --- what the rule says --------------------------------------------------------------

    def _card(self, values: Mapping[str, Value]) -> str:
        for point in self.params.card_points:
            value = values.get(point)
            if value is not None and not isinstance(value, bool) and str(value):
                return str(value)
        return ""

    @staticmethod
    def _subject(route: PatrolRoute, index: int) -> str:
        return f"{route.checkpoints[index].reader}:{route.id}:{index + 1}"

    def _missed(self, route: PatrolRoute, rnd: _Round, index: int, ctx: Context) -> list[Effect]:
        # A round nobody started says so once, at its first checkpoint.
        if index > 0 and not rnd.started:
            return []
        return self._raise(route, rnd, index, MISSED, ctx)

    def _raise(
        self,
        route: PatrolRoute,
        rnd: _Round,
        index: int,
        kind: str,
        ctx: Context,
        value: Value | None = None,
        limit: Value | None = None,
        after: int | None = None,
    ) -> list[Effect]:
        if not rnd.watched:
            return []
        cp = route.checkpoints[index]
        info = self.devices.get(cp.reader)
        details: dict[str, Value] = {
            "device": cp.reader,
            "place": info.place() if info is not None else "",
            "route": route.label,
            "route_id": route.id,
            "round": datetime.fromtimestamp(rnd.start, ctx.now.tzinfo).strftime("%H:%M"),
            "checkpoint": index + 1,
        }
        if cp.name:
            details["checkpoint_name"] = cp.name
        if after is not None:
            details["after"] = after
        if rnd.guard:
            details["guard"] = rnd.guard
        # Again each time: the same checkpoint in a later round is news for the duty staff.
        return list(
            self.alarms.raise_alarm(
                self._subject(route, index),
                kind,
                value=value,
                limit=limit,
                grade=route.grade or self.params.grade,
                details=details,
                again=True,
            )
        )

    def _record(self, route: PatrolRoute, rnd: _Round) -> Record:
        settled = [s for s in rnd.status if s in _RESULTS]
        worst = max((_RESULTS.index(s) for s in settled), default=0)
        fields: dict[str, Value] = {
            "route_name": route.label,
            "day_type": rnd.day_type,
            "watched": rnd.watched,
            "state": "closed" if rnd.closed else "open",
            "result": "ok" if worst == 0 else _RESULTS[worst],
            "guard": rnd.guard,
            "checkpoints": len(rnd.status),
            **{name: rnd.status.count(name) for name in _RESULTS},
        }
        for k, reader in enumerate(rnd.readers):
            n = k + 1
            fields[f"cp{n}_device"] = reader
            fields[f"cp{n}_status"] = rnd.status[k]
            at = rnd.at[k]
            if at is not None:
                fields[f"cp{n}_at"] = at
                if rnd.cards[k]:
                    fields[f"cp{n}_card"] = rnd.cards[k]
        tags = {"rule": self.id, "route": route.id}
        return Record(MEASUREMENT, tags, fields, round(rnd.start) * 1_000_000_000)

    # --- restarts ------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        if not self.alarms.raised and not self.rounds and not self.last_start:
            return {}
        return {
            **self.alarms.snapshot(),
            "last_start": dict(self.last_start),
            "rounds": {route_id: rnd.to_dict() for route_id, rnd in self.rounds.items()},
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        self.alarms.restore(state)
        self.last_start = {
            str(k): float(v) for k, v in state.get("last_start", {}).items() if k in self.routes
        }
        self.rounds = {}
        for route_id, s in state.get("rounds", {}).items():
            route = self.routes.get(route_id)
            # A route changed since: its running round cannot be judged against the new one.
            if route is None or s.get("readers") != [cp.reader for cp in route.checkpoints]:
                continue
            try:
                self.rounds[route_id] = _Round.from_dict(s)
            except (KeyError, TypeError, ValueError):
                continue  # a state this version cannot read: the round is not judged
        self._next = {}
        known = {
            self._subject(route, i)
            for route in self.routes.values()
            for i in range(len(route.checkpoints))
        }
        self.orphans = [s for s in self.alarms.raised if s not in known]

    def describe(self) -> str:
        routes = ", ".join(
            f"{r.id} ({len(r.checkpoints)} checkpoints)" for r in self.routes.values()
        )
        text = f"patrol routes {routes}"
        if self.unknown_readers:
            text += f"; readers not in the site: {', '.join(self.unknown_readers)}"
        return text
