"""The alarm lifecycle: a pure state machine from rule effects and operator actions to transitions.

The model is ThingsBoard's: an alarm is ACTIVE or CLEARED (is the condition still there?) and
UNACK or ACK (has a person taken it?). Four combinations, one word each:

    active        ACTIVE_UNACK   the condition is there, nobody has taken it (it escalates)
    acknowledged  ACTIVE_ACK     the condition is there, someone is on it
    cleared       CLEARED_UNACK  the condition is over, but nobody has seen it yet
    closed        CLEARED_ACK    done; reached at once when both have happened

There is at most one open (not closed) alarm per (rule, subject). Its id is derived from the
pair alone, so a raise after a close reuses the id: the retained MQTT topic
``guanjia/<site>/alarm/<id>`` and the history of one condition on one device stay in one place.
The book keeps the last closed instance of each pair as well: it carries shelving and the flap
history into the next instance, and the number of pairs is bounded by the site file.

Nothing here does I/O or reads a clock: every call takes the time ``t`` (epoch seconds), and
every change is returned as Transitions for the store, the notifier and MQTT. Alarms are frozen;
a Transition holds the alarm as it was right after the change.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal, get_args

from core.types import Value
from rules.model import Clear, Grade, Raise
from rules.numbers import as_float, close, finite, optional_float

State = Literal["active", "acknowledged", "cleared", "closed"]
What = Literal[
    "raised",
    "updated",
    "acked",
    "cleared",
    "closed",
    "shelved",
    "unshelved",
    "escalated",
    "flapping",
]

GRADES: tuple[Grade, ...] = get_args(Grade)
SYSTEM = "guanjia"  # `by` of transitions the book makes on its own (tick)

_UNSAFE = re.compile(r"[^a-z0-9._-]+")
_MAX_ID = 64


def alarm_id(rule: str, subject: str) -> str:
    """A stable, MQTT- and URL-safe id for the alarm of (rule, subject).

    Clean pairs read as themselves ("ac-policy" + "ac-301" -> "ac-policy.ac-301"). Whenever
    the plain form could be ambiguous or lossy (upper case, Chinese zone names, a dot inside the
    rule id, a very long pair) a short hash of the exact pair is appended, so two pairs never
    share an id by sanitising alone. Deterministic across runs and machines (no hash()).
    """
    clean = f"{_UNSAFE.sub('-', rule.lower())}.{_UNSAFE.sub('-', subject.lower())}"
    if clean == f"{rule}.{subject}" and "." not in rule and len(clean) <= _MAX_ID:
        return clean
    digest = hashlib.blake2s(f"{rule}\x00{subject}".encode(), digest_size=4).hexdigest()
    return f"{clean[: _MAX_ID - len(digest) - 1]}-{digest}"


@dataclass(frozen=True, slots=True)
class Alarm:
    id: str
    rule: str
    subject: str
    kind: str
    grade: Grade
    raised_at: float  # first raise of this instance
    updated_at: float  # time of the last transition
    value: Value | None = None  # as of the last raised/updated transition, not every sample
    limit: Value | None = None
    details: Mapping[str, Value] = field(default_factory=dict)
    acked_at: float | None = None
    acked_by: str = ""
    ack_note: str = ""
    cleared_at: float | None = None
    count: int = 1  # occurrences in this instance: 1 + the raises after a clear
    escalation: int = 0  # 0 = with the first responders; n = escalated n times
    # Start of the current response-time period: the next escalation is due one response time
    # later. Moved by each escalation (to the due time, so levels land on exact multiples), by a
    # re-raise after a clear and by unshelving (both give the responders a full period again).
    escalation_since: float = 0.0
    shelved_until: float | None = None
    shelve_reason: str = ""
    flapping: bool = False
    clear_pending_since: float | None = None  # flapping: the condition has been clear since
    flap_clears: tuple[float, ...] = ()  # recent clears of this (rule, subject), for flap counting

    @property
    def state(self) -> State:
        if self.cleared_at is None:
            return "active" if self.acked_at is None else "acknowledged"
        return "cleared" if self.acked_at is None else "closed"

    @property
    def thingsboard_status(self) -> str:
        """ACTIVE_UNACK, ACTIVE_ACK, CLEARED_UNACK or CLEARED_ACK."""
        cleared = "CLEARED" if self.cleared_at is not None else "ACTIVE"
        return f"{cleared}_{'ACK' if self.acked_at is not None else 'UNACK'}"

    @property
    def is_open(self) -> bool:
        return self.state != "closed"

    @property
    def key(self) -> tuple[str, str]:
        return (self.rule, self.subject)

    def shelved(self, t: float) -> bool:
        return self.shelved_until is not None and t < self.shelved_until

    def to_row(self) -> dict[str, Any]:
        """Plain values only (details a dict, flap_clears a list), plus the derived state."""
        return {
            "id": self.id,
            "rule": self.rule,
            "subject": self.subject,
            "kind": self.kind,
            "grade": self.grade,
            "state": self.state,
            "raised_at": self.raised_at,
            "updated_at": self.updated_at,
            "value": self.value,
            "limit": self.limit,
            "details": dict(self.details),
            "acked_at": self.acked_at,
            "acked_by": self.acked_by,
            "ack_note": self.ack_note,
            "cleared_at": self.cleared_at,
            "count": self.count,
            "escalation": self.escalation,
            "escalation_since": self.escalation_since,
            "shelved_until": self.shelved_until,
            "shelve_reason": self.shelve_reason,
            "flapping": self.flapping,
            "clear_pending_since": self.clear_pending_since,
            "flap_clears": list(self.flap_clears),
        }

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Alarm:
        """Inverse of to_row; `state` is derived, so it is not read back."""
        grade = row["grade"]
        if grade not in GRADES:
            raise ValueError(f"alarm {row.get('id')!r}: unknown grade {grade!r}")
        return cls(
            id=str(row["id"]),
            rule=str(row["rule"]),
            subject=str(row["subject"]),
            kind=str(row["kind"]),
            grade=grade,
            raised_at=float(row["raised_at"]),
            updated_at=float(row["updated_at"]),
            value=row["value"],
            limit=row["limit"],
            details=dict(row["details"]),
            acked_at=optional_float(row["acked_at"]),
            acked_by=str(row["acked_by"]),
            ack_note=str(row["ack_note"]),
            cleared_at=optional_float(row["cleared_at"]),
            count=int(row["count"]),
            escalation=int(row["escalation"]),
            escalation_since=float(row["escalation_since"]),
            shelved_until=optional_float(row["shelved_until"]),
            shelve_reason=str(row["shelve_reason"]),
            flapping=bool(row["flapping"]),
            clear_pending_since=optional_float(row["clear_pending_since"]),
            flap_clears=tuple(float(x) for x in row["flap_clears"]),
        )


@dataclass(frozen=True, slots=True)
class Transition:
    """One change of one alarm. `quiet`: record it, publish state, but notify nobody."""

    alarm: Alarm  # as it was right after the change
    what: What
    t: float
    by: str = ""
    note: str = ""
    quiet: bool = False

    @property
    def alarm_id(self) -> str:
        return self.alarm.id


@dataclass(frozen=True, slots=True)
class FlapPolicy:
    """When raise/clear cycles stop being news.

    More than `max_cycles` clears of one (rule, subject) within `window_s` and the next clear is
    held: the alarm stays active and says "flapping" once. It clears when the condition has
    stayed clear for `hold_s`.
    """

    max_cycles: int = 4
    window_s: float = 600.0
    hold_s: float = 300.0
    enabled: bool = True

    def __post_init__(self) -> None:
        if self.max_cycles < 1 or self.window_s <= 0 or self.hold_s < 0:
            raise ValueError(f"invalid flap policy {self}")


class UnknownAlarm(KeyError):
    """No alarm has this id."""


GradeOf = Callable[[str, Grade | None], Grade]  # (kind, the rule's override) -> grade
ResponseTime = Callable[[Grade], float]  # seconds; <= 0 or inf: this grade never escalates


class AlarmBook:
    """Every alarm of the site, one per (rule, subject), and the rules for changing them.

    `value_tolerance` decides when a re-raise is news: a rule may raise again on every sample,
    so a new value only makes an "updated" transition when it moved by more than this fraction
    of the limit (or of the old value when there is no numeric limit). A grade, kind, limit or
    details change always does. The stored value is the one last reported, so slow drift still
    produces an update once it adds up.
    """

    def __init__(self, flap: FlapPolicy | None = None, value_tolerance: float = 0.02) -> None:
        self.flap = flap or FlapPolicy()
        self.value_tolerance = value_tolerance
        self._alarms: dict[tuple[str, str], Alarm] = {}  # latest instance per pair, closed too
        self._ids: dict[str, tuple[str, str]] = {}
        # Pairs changed since the store last saved them. Not every change makes a transition
        # (a held clear while flapping), and those must survive a restart too.
        self._unsaved: set[tuple[str, str]] = set()

    # -- queries --------------------------------------------------------------------------

    def get(self, alarm_id: str) -> Alarm | None:
        key = self._ids.get(alarm_id)
        return None if key is None else self._alarms[key]

    def find(self, rule: str, subject: str) -> Alarm | None:
        return self._alarms.get((rule, subject))

    def open_alarms(self) -> list[Alarm]:
        """Not closed: the condition is there, or nobody has acknowledged it yet."""
        return [a for a in self._alarms.values() if a.is_open]

    def active(self) -> list[Alarm]:
        """The condition is there (ACTIVE, acknowledged or not)."""
        return [a for a in self._alarms.values() if a.cleared_at is None]

    def all(self) -> list[Alarm]:
        return list(self._alarms.values())

    def __len__(self) -> int:
        return len(self._alarms)

    # -- rule effects ---------------------------------------------------------------------

    def apply(self, effect: Raise | Clear, t: float, grade_of: GradeOf) -> list[Transition]:
        if isinstance(effect, Raise):
            return self._raise(effect, t, grade_of(effect.kind, effect.grade))
        return self._clear(effect, t)

    def _raise(self, r: Raise, t: float, grade: Grade) -> list[Transition]:
        by = f"rule:{r.rule}"
        old = self._alarms.get((r.rule, r.subject))
        if old is None or not old.is_open:
            new = self._new_instance(r, t, grade, old)
            return [self._put(new, "raised", t, by)]
        if old.cleared_at is not None:
            # Back before anyone acknowledged the clear: the same occurrence chain, still
            # waiting for a person, so it becomes active again rather than a second alarm.
            new = replace(
                old,
                **_content(r, grade),
                cleared_at=None,
                count=old.count + 1,
                escalation_since=t,
                updated_at=t,
                flap_clears=self._recent(old.flap_clears, t),
            )
            return [self._put(new, "raised", t, by)]
        changes: dict[str, Any] = {}
        if old.clear_pending_since is not None:
            # Flapping: back before the hold ran out. Silent by design; only counted.
            changes.update(clear_pending_since=None, count=old.count + 1)
        if self._news(old, r, grade):
            changes.update(_content(r, grade), updated_at=t)
            return [self._put(replace(old, **changes), "updated", t, by)]
        if changes:
            self._put_silently(replace(old, **changes))
        return []

    def _new_instance(self, r: Raise, t: float, grade: Grade, last: Alarm | None) -> Alarm:
        key = (r.rule, r.subject)
        aid = last.id if last is not None else alarm_id(r.rule, r.subject)
        other = self._ids.get(aid)
        if other is not None and other != key:
            raise ValueError(f"alarm id {aid!r} of {key} is already used by {other}")
        # Shelving belongs to the id, not the instance: an operator who shelved a nuisance
        # alarm for the afternoon means its recurrences too.
        shelf = last is not None and last.shelved(t)
        return Alarm(
            id=aid,
            rule=r.rule,
            subject=r.subject,
            kind=r.kind,
            grade=grade,
            raised_at=t,
            updated_at=t,
            value=r.value,
            limit=r.limit,
            details=dict(r.details),
            escalation_since=t,
            shelved_until=last.shelved_until if shelf and last else None,
            shelve_reason=last.shelve_reason if shelf and last else "",
            flap_clears=self._recent(last.flap_clears, t) if last else (),
        )

    def _news(self, old: Alarm, r: Raise, grade: Grade) -> bool:
        if grade != old.grade or r.kind != old.kind or not _same(r.limit, old.limit):
            return True
        if dict(r.details) != dict(old.details):
            # The rule says something else (an AC unit set from 24 to 23.5 °C): the text must
            # not keep naming what no longer is, however small the change in value.
            return True
        scale = old.limit if as_float(old.limit) is not None else old.value
        return _moved(old.value, r.value, self.value_tolerance, scale)

    def _clear(self, c: Clear, t: float) -> list[Transition]:
        by = f"rule:{c.rule}"
        old = self._alarms.get((c.rule, c.subject))
        if old is None or old.cleared_at is not None:
            return []  # nothing raised, or already cleared: rules may clear on every sample
        if old.flapping:
            if old.clear_pending_since is None:
                self._put_silently(replace(old, clear_pending_since=t))
                return []
            if t - old.clear_pending_since >= self.flap.hold_s:
                return self._release(old, t, by)
            return []
        clears = (*self._recent(old.flap_clears, t), t)
        if self.flap.enabled and len(clears) > self.flap.max_cycles:
            new = replace(
                old, flapping=True, clear_pending_since=t, flap_clears=clears, updated_at=t
            )
            note = f"{len(clears)} clears within {self.flap.window_s:g} s; held"
            return [self._put(new, "flapping", t, by, note)]
        return self._close_if_acked(
            replace(old, cleared_at=t, updated_at=t, flap_clears=clears), t, by, c.note
        )

    def _release(self, old: Alarm, t: float, by: str) -> list[Transition]:
        """End of a flapping hold: the clear finally counts, and the flap history starts over."""
        assert old.clear_pending_since is not None
        new = replace(
            old,
            cleared_at=t,
            updated_at=t,
            flapping=False,
            clear_pending_since=None,
            flap_clears=(),
        )
        note = f"clear since {old.clear_pending_since:.0f}, flapping over"
        return self._close_if_acked(new, t, by, note)

    def _close_if_acked(
        self, cleared: Alarm, t: float, by: str, note: str = ""
    ) -> list[Transition]:
        out = [self._put(cleared, "cleared", t, by, note)]
        if cleared.acked_at is not None:
            out.append(self._put(cleared, "closed", t, by))
        return out

    def _recent(self, clears: Iterable[float], t: float) -> tuple[float, ...]:
        return tuple(x for x in clears if t - x < self.flap.window_s)

    # -- operator actions -----------------------------------------------------------------

    def ack(self, alarm_id: str, by: str, t: float, note: str = "") -> list[Transition]:
        """Acknowledge. Repeating it (an MQTT retry, a second CLI call) changes nothing."""
        old = self._require(alarm_id)
        if old.acked_at is not None:
            return []
        new = replace(old, acked_at=t, acked_by=by, ack_note=note, updated_at=t)
        out = [self._put(new, "acked", t, by, note)]
        if new.cleared_at is not None:
            out.append(self._put(new, "closed", t, by))
        return out

    def shelve(
        self, alarm_id: str, until: float, reason: str, by: str, t: float
    ) -> list[Transition]:
        """Silence an alarm (and its recurrences under the same id) until `until`.

        It keeps changing state and being recorded; its transitions are quiet. Shelving a
        closed id is allowed: that is how a known nuisance is silenced before it comes back.
        """
        old = self._require(alarm_id)
        if until <= t:
            raise ValueError(f"shelve {alarm_id}: until ({until}) is not after now ({t})")
        new = replace(old, shelved_until=until, shelve_reason=reason, updated_at=t)
        # Not quiet itself: the rest of the duty group should learn who silenced what.
        return [self._put(new, "shelved", t, by, reason, quiet=False)]

    def unshelve(self, alarm_id: str, by: str, t: float, note: str = "") -> list[Transition]:
        old = self._require(alarm_id)
        if old.shelved_until is None:
            return []
        return [self._unshelve(old, t, by, note)]

    def _unshelve(self, old: Alarm, t: float, by: str, note: str) -> Transition:
        new = replace(old, shelved_until=None, shelve_reason="", updated_at=t)
        if new.state == "active":
            # Nobody was asked to respond while it was shelved: a full period from now.
            new = replace(new, escalation_since=t)
        # Loud when the alarm is still open, so the notifier announces it again.
        return self._put(new, "unshelved", t, by, note, quiet=not new.is_open)

    # -- time -----------------------------------------------------------------------------

    def tick(self, t: float, response_time: ResponseTime) -> list[Transition]:
        """Expire shelving, end flapping holds, escalate what stays unacknowledged."""
        out: list[Transition] = []
        for key in list(self._alarms):
            a = self._alarms[key]
            if a.shelved_until is not None and t >= a.shelved_until:
                out.append(self._unshelve(a, t, SYSTEM, "shelving expired"))
                a = self._alarms[key]
            if (
                a.flapping
                and a.clear_pending_since is not None
                and t - a.clear_pending_since >= self.flap.hold_s
            ):
                out.extend(self._release(a, t, SYSTEM))
                a = self._alarms[key]
            if a.state == "active" and not a.shelved(t):
                out.extend(self._escalate(a, t, response_time(a.grade)))
        return out

    def _escalate(self, a: Alarm, t: float, period: float) -> list[Transition]:
        if not (period > 0 and math.isfinite(period)) or t < a.escalation_since + period:
            return []
        # After downtime several periods may have passed: one transition to the level due now,
        # not a burst of them.
        steps = int((t - a.escalation_since) // period)
        new = replace(
            a,
            escalation=a.escalation + steps,
            escalation_since=a.escalation_since + steps * period,
            updated_at=t,
        )
        note = f"unacknowledged {t - a.raised_at:.0f} s, level {new.escalation}"
        return [self._put(new, "escalated", t, SYSTEM, note)]

    # -- bookkeeping ----------------------------------------------------------------------

    def _require(self, alarm_id: str) -> Alarm:
        a = self.get(alarm_id)
        if a is None:
            raise UnknownAlarm(alarm_id)
        return a

    def _put(
        self,
        new: Alarm,
        what: What,
        t: float,
        by: str,
        note: str = "",
        quiet: bool | None = None,
    ) -> Transition:
        self._put_silently(new)
        return Transition(new, what, t, by, note, new.shelved(t) if quiet is None else quiet)

    def _put_silently(self, new: Alarm) -> None:
        self._alarms[new.key] = new
        self._ids[new.id] = new.key
        self._unsaved.add(new.key)

    def unsaved(self) -> list[Alarm]:
        """Alarms changed since the last `saved()`, for the store to write."""
        return [self._alarms[k] for k in self._unsaved]

    def saved(self, alarms: Iterable[Alarm]) -> None:
        """The store wrote these versions; a later change (not identical) stays unsaved."""
        for a in alarms:
            if self._alarms.get(a.key) is a:
                self._unsaved.discard(a.key)

    # -- persistence ----------------------------------------------------------------------

    def to_rows(self) -> list[dict[str, Any]]:
        return [a.to_row() for a in self._alarms.values()]

    @classmethod
    def from_rows(
        cls,
        rows: Iterable[Mapping[str, Any]],
        flap: FlapPolicy | None = None,
        value_tolerance: float = 0.02,
    ) -> AlarmBook:
        book = cls(flap, value_tolerance)
        for row in rows:
            a = Alarm.from_row(row)
            if a.key in book._alarms or a.id in book._ids:
                raise ValueError(f"duplicate alarm {a.id!r} for {a.key}")
            book._alarms[a.key] = a
            book._ids[a.id] = a.key
        return book


def _content(r: Raise, grade: Grade) -> dict[str, Any]:
    return {
        "kind": r.kind,
        "grade": grade,
        "value": r.value,
        "limit": r.limit,
        "details": dict(r.details),
    }


def _same(a: Value | None, b: Value | None) -> bool:
    """Equal and of the same kind: True is not 1 here, and NaN is NaN."""
    fa, fb = as_float(a), as_float(b)
    if fa is not None and fb is not None:
        return fa == fb or (math.isnan(fa) and math.isnan(fb))
    return type(a) is type(b) and a == b


def _moved(old: Value | None, new: Value | None, tolerance: float, scale: Value | None) -> bool:
    fold, fnew = as_float(old), as_float(new)
    if fold is None or fnew is None or math.isnan(fold) or math.isnan(fnew):
        return not _same(old, new)  # states, texts, flags, NaN: any change is news
    ref = abs(finite(scale) or 0.0)
    return not close(fnew, fold, tolerance * ref)
