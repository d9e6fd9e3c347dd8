"""The small set of value types that flow between drivers, rules and the gateway."""

from __future__ import annotations

import enum
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

Value = float | int | bool | str


class Quality(enum.StrEnum):
    """How far a value can be trusted, in the OPC sense."""

    GOOD = "good"
    UNCERTAIN = "uncertain"
    BAD = "bad"
    STALE = "stale"


@dataclass(frozen=True, slots=True)
class Reading:
    """One value of one point of one device at one instant."""

    device: str
    point: str
    value: Value | None
    ts: int  # ns since the epoch, time of acquisition
    quality: Quality = Quality.GOOD


@dataclass(frozen=True, slots=True)
class Sample:
    """One acquisition of one device: its readings share a timestamp.

    This is the unit that travels on the bus, because a poll produces many values at once and
    writing them as one line keeps the storage path cheap. ``values`` holds the good values;
    ``bad`` names the points that were read but could not be trusted, with the reason.
    """

    device: str
    ts: int
    values: Mapping[str, Value]
    bad: Mapping[str, str] = field(default_factory=dict)

    def readings(self) -> Iterator[Reading]:
        for point, value in self.values.items():
            yield Reading(self.device, point, value, self.ts, Quality.GOOD)
        for point in self.bad:
            yield Reading(self.device, point, None, self.ts, Quality.BAD)


@dataclass(frozen=True, slots=True)
class Command:
    """A request to change a point on a device, with who or what asked for it."""

    device: str
    point: str
    value: Value
    origin: str  # "rule:ac_policy", "mqtt:user@host", "cli"


@dataclass(frozen=True, slots=True)
class CommandResult:
    """The outcome of a Command, for the audit trail."""

    command: Command
    ok: bool
    old_value: Value | None
    reason: str = ""
    failed: bool = False  # the device could not be written (versus refused by the checks)

    @property
    def outcome(self) -> str:
        return "accepted" if self.ok else "failed" if self.failed else "refused"
