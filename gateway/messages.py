"""The messages the bus carries besides Samples (core.types) and the rules' Records
(rules.model.Record: a patrol round): each is a fact that happened, frozen, cheap to pass
around, encoded only by the sinks that want it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from core.types import Command, Value
from rules.alarms import Transition


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """A command and what became of it: accepted, refused (by which check) or failed."""

    ts: int  # ns
    command: Command
    outcome: str  # accepted | refused | failed
    old_value: Value | None
    reason: str


@dataclass(frozen=True, slots=True)
class AlarmTransition:
    """An alarm changed (raised, acknowledged, escalated, cleared, closed, shelved). Published
    only once the alarm store holds it: a restart never forgets an alarm it announced."""

    transition: Transition
    text_zh: str
    text_en: str
    index: int = 0  # among the transitions of one instant: they must not share a timestamp


@dataclass(frozen=True, slots=True)
class ConsoleEvent:
    """Something done at the duty console or through its API, and what came of it: a login
    (ok, failed, locked, busy), a logout, an acknowledgement or a shelving (ok, already,
    unknown, refused). Who did it is as the alarm history records it (`console:<user>`,
    `api:<client>[:<person>]`); for a login that failed, the name that was typed."""

    ts: int  # ns; one console never gives two of its events the same
    who: str
    action: str  # login | logout | ack | shelve
    outcome: str
    alarm_id: str = ""
    address: str = ""  # the client's address
    via: str = "page"  # page | api | link
    detail: str = ""  # a shelving's duration and reason, a refusal's why


@dataclass(frozen=True, slots=True)
class Health:
    """The gateway's own counters, now and then (measurement `gateway`)."""

    ts: int  # ns
    values: Mapping[str, int | float | bool]
