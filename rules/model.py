"""What rules see and what they say: the pure interface between the gateway and every rule.

A rule gets Samples and clock ticks with a read-only Context, and returns Effects: raise or
clear an alarm, issue a command, or record a derived fact for storage. It does no I/O, reads
no clock of its own (ctx.now), and keeps any state it needs across a restart (an on-delay that
was running) in snapshot().
"""

from __future__ import annotations

import fnmatch
import math
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Generic, Literal, Protocol, get_args

from pydantic import BaseModel, ConfigDict, Field
from typing_extensions import TypeVar  # a default (PEP 696) before Python 3.13

from core.types import Command, Sample, Value

Grade = Literal["red", "orange", "yellow", "blue"]


@dataclass(frozen=True, slots=True)
class PointInfo:
    unit: str = ""
    writable_min: float | None = None
    writable_max: float | None = None
    labels: Mapping[int, str] = field(default_factory=dict)  # enum labels of a coded point

    @property
    def writable(self) -> bool:
        return self.writable_min is not None


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """A device as rules see it: identity, place and points."""

    id: str
    kind: str  # meter, pv_inverter, hvac, access, camera, sensor, ...
    profile: str
    tags: Mapping[str, str] = field(default_factory=dict)  # building, floor, zone, use
    points: Mapping[str, PointInfo] = field(default_factory=dict)
    # Seconds after its last message that the device's values are stale for the rules (see
    # rules.engine); None: never by age (devices that report only events, or changes).
    stale_after: float | None = None

    @property
    def zone(self) -> str:
        return self.tags.get("zone", "")

    def writable_range(self, point: str) -> tuple[float, float] | None:
        """(min, max) a command may write to the point; None when it cannot be written."""
        info = self.points.get(point)
        if info is None or info.writable_min is None or info.writable_max is None:
            return None
        return info.writable_min, info.writable_max

    def place(self) -> str:
        """ "main / 3F / 301" — for alarm texts."""
        parts = [self.tags.get("building", ""), self.tags.get("floor", ""), self.zone]
        return " / ".join(p for p in parts if p)


@dataclass(frozen=True, slots=True)
class Raise:
    """Raise (or keep raised) the alarm of (rule, subject)."""

    rule: str
    subject: str  # a device id or a zone
    kind: str  # the alarm kind, e.g. door_forced_open: picks the grade and the text template
    value: Value | None = None
    limit: Value | None = None
    grade: Grade | None = None  # None: the site's grade for this kind
    details: Mapping[str, Value] = field(default_factory=dict)  # extra text parameters


@dataclass(frozen=True, slots=True)
class Clear:
    """The condition behind (rule, subject) is over, or no longer known (`note` says why)."""

    rule: str
    subject: str
    note: str = ""  # goes with the cleared transition, e.g. "no data since 22:14"


@dataclass(frozen=True, slots=True)
class Issue:
    """Write a point (e.g. a setpoint back to its limit), through the audited command path."""

    command: Command
    reason: str


@dataclass(frozen=True, slots=True)
class Record:
    """A fact a rule derived, to be stored beside the readings (a patrol round's outcome).

    The runtime writes it as one InfluxDB point: `measurement`, the site's tags and `tags`,
    `fields`, at `ts`. Tags are few and bounded (ids from the site file), like every tag. A
    rule may send a Record again as what it describes goes on: with the same measurement,
    tags and ts the later one replaces the fields it repeats (one point per series and time).
    """

    measurement: str
    tags: Mapping[str, str]
    fields: Mapping[str, Value]
    ts: int  # ns since the epoch


Effect = Raise | Clear | Issue | Record


# --- inputs: events from outside that rules may act on (rules.inputs parses them) ------------


DR_STRATEGIES = ("offset", "off", "precool_off")
"""Demand-response strategies: raise cooling setpoints; switch units off for the window;
"1+1": pre-cool before the window, then off in it."""


@dataclass(frozen=True, slots=True)
class DemandResponseEvent:
    """A grid operator's demand-response event: raise cooling setpoints from start to end.

    Valid by construction: aware times, end after start, an offset above 0 °C (None: each
    rule's own). An empty id names the event after its start (a resend replaces it).
    """

    kind: ClassVar[str] = "demand_response"

    id: str
    start: datetime
    end: datetime
    offset: float | None = None  # °C
    # "offset" (raise cooling setpoints), "off" (switch units off), "precool_off" (1+1:
    # pre-cool for `precool` before start, then off); None: each rule's own strategy.
    strategy: str | None = None
    zones: tuple[str, ...] = ()  # zone globs the event covers; (): every unit of the rule
    source: str = ""  # who sent it: "mqtt", "webhook", "openadr", "cli"

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("event start and end need a time zone")
        if self.end <= self.start:
            raise ValueError(f"event end {self.end.isoformat()} is not after its start")
        if self.offset is not None and not (math.isfinite(self.offset) and self.offset > 0):
            raise ValueError(f"event offset must be above 0 °C, got {self.offset}")
        if self.strategy is not None and self.strategy not in DR_STRATEGIES:
            raise ValueError(
                f"event strategy {self.strategy!r} is none of {', '.join(DR_STRATEGIES)}"
            )
        if not self.id:
            object.__setattr__(self, "id", f"dr-{self.start.isoformat(timespec='minutes')}")


@dataclass(frozen=True, slots=True)
class DemandResponseCancel:
    """End a demand-response event now, pending or running."""

    kind: ClassVar[str] = "demand_response"

    id: str


@dataclass(frozen=True, slots=True)
class AcWindowSwitch:
    """Switch an AC policy's daily off window (a tight-supply day) on or off, by an operator
    or a grid event."""

    kind: ClassVar[str] = "ac_window"

    name: str
    active: bool


Input = DemandResponseEvent | DemandResponseCancel | AcWindowSwitch

InputResult = Literal["accepted", "cancelled", "unknown", "refused"]
_PRECEDENCE: tuple[InputResult, ...] = ("refused", "accepted", "cancelled", "unknown")


@dataclass(frozen=True, slots=True)
class InputReply:
    """What a rule that takes an input says of it (Rule.on_input)."""

    result: InputResult
    reason: str = ""  # why it was refused
    effects: Sequence[Effect] = ()  # most act later, on ticks


@dataclass(frozen=True, slots=True)
class InputOutcome:
    """What the rules together made of an input (Engine.on_input), for the sender's answer."""

    kind: str  # the input's kind
    replies: Mapping[str, InputReply]  # rule id -> its reply; empty: no rule takes the input

    @property
    def effects(self) -> list[Effect]:
        return [e for reply in self.replies.values() for e in reply.effects]

    @property
    def result(self) -> InputResult | None:
        """refused if any rule refused, else accepted or cancelled if any took it, else
        unknown (every rule that takes the kind knows nothing of it); None: no rule."""
        results = {r.result for r in self.replies.values()}
        return next((r for r in _PRECEDENCE if r in results), None)

    def text(self) -> str:
        """The answer for the sender (MQTT `.../result`)."""
        result = self.result
        if result is None:
            return f"no {self.kind} rule in this site"
        if result == "refused":
            reasons = [f"rule {rule}: {r.reason}" for rule, r in self.replies.items() if r.reason]
            return "refused: " + "; ".join(reasons) if reasons else "refused"
        return "unknown event" if result == "unknown" else result


class Calendar(Protocol):
    def is_workday(self, day: datetime) -> bool: ...
    def in_office_hours(self, moment: datetime) -> bool: ...


class Context(Protocol):
    """Read-only view of the site for a rule."""

    @property
    def now(self) -> datetime: ...  # aware, in the site's time zone

    @property
    def calendar(self) -> Calendar: ...

    def device(self, device_id: str) -> DeviceInfo: ...

    def latest(self, device_id: str, point: str) -> tuple[Value, int] | None:
        """The point's last good value and its time (ns); None when not known: never read,
        read as bad since, or stale (the device has been silent past its allowance)."""
        ...


class Scope(BaseModel):
    """Which devices a rule watches; every given filter must match."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    devices: list[str] = Field(default_factory=list, description="Device id globs.")
    kinds: list[str] = Field(default_factory=list, description="Device kinds (meter, hvac...).")
    zones: list[str] = Field(default_factory=list, description="Zone globs.")
    tags: dict[str, str] = Field(default_factory=dict, description="Tags that must match.")

    def matches(self, device: DeviceInfo) -> bool:
        if self.devices and not any(fnmatch.fnmatchcase(device.id, g) for g in self.devices):
            return False
        if self.kinds and device.kind not in self.kinds:
            return False
        if self.zones and not any(fnmatch.fnmatchcase(device.zone, g) for g in self.zones):
            return False
        return all(device.tags.get(k) == v for k, v in self.tags.items())


class RuleParams(BaseModel):
    """Parameters every rule kind shares; kinds subclass it with their own."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    scope: Scope = Field(default_factory=Scope, description="Devices the rule watches.")
    grade: Grade | None = Field(default=None, description="Overrides the kind's default grade.")

    # Point parameters a device may lack without the rule losing its judgement (an AC unit
    # without an on/off point counts as on).
    optional_points: ClassVar[frozenset[str]] = frozenset()

    def device_refs(self) -> dict[str, list[str]]:
        """Device ids the rule names outside its scope, by parameter (pue's `facility` and
        `it` meters): the site check refuses an id the site does not have, which would
        otherwise leave the rule without a judgement and nothing said."""
        return {}

    def reads(self) -> list[PointNeed]:
        """The points the rule reads from each device it watches, for `guanjia check`: a
        parameter `point` or `*_point` is one need, `points` or `*_points` one need met by any
        of its names. Kinds whose needs differ (either of two points) override this."""
        needs: list[PointNeed] = []
        for name in type(self).model_fields:
            if name in self.optional_points:
                continue
            value = getattr(self, name)
            if (name == "point" or name.endswith("_point")) and isinstance(value, str):
                needs.append(PointNeed(name, (value,)))
            elif (name == "points" or name.endswith("_points")) and isinstance(value, list):
                needs.append(PointNeed(name, tuple(str(v) for v in value)))
        return needs


@dataclass(frozen=True, slots=True)
class PointNeed:
    """A point a rule reads: the parameter that names it and the names that meet it (any)."""

    param: str
    names: tuple[str, ...]


P = TypeVar("P", bound=RuleParams, default=RuleParams, covariant=True)
"""A rule kind's parameters. Covariant, and plain `Rule` is `Rule[RuleParams]`: the engine
holds rules of every kind in one list."""


class Rule(ABC, Generic[P]):
    """One rule instance from the site file. A kind sets `kind` and names its parameters as
    the type argument, `class ThresholdRule(DeviceRule[ThresholdParams])`: self.params is
    typed, and `Params` (what the registry validates a site entry with) is taken from it."""

    kind: ClassVar[str]
    Params: ClassVar[type[RuleParams]] = RuleParams

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "Params" in cls.__dict__:
            return
        for base in getattr(cls, "__orig_bases__", ()):
            for arg in get_args(base):
                if isinstance(arg, type) and issubclass(arg, RuleParams):
                    cls.Params = arg

    def __init__(self, rule_id: str, params: P) -> None:
        self.id = rule_id
        self.params = params
        self.watched: list[DeviceInfo] = []

    def bind(self, devices: Sequence[DeviceInfo]) -> list[str]:
        """Choose the devices to watch; returns their ids (the engine routes their Samples)."""
        self.watched = [d for d in devices if self.params.scope.matches(d)]
        return [d.id for d in self.watched]

    def reads(self, device: DeviceInfo) -> list[PointNeed]:
        """The points the rule reads from one device it watches (`guanjia check` warns of
        those its profile lacks); by default every device is read alike."""
        return self.params.reads()

    def writes(self, device: DeviceInfo) -> list[str]:
        """The points the rule may write on one device it watches (`guanjia check` warns of
        those the site's command allowlist refuses); none by default."""
        return []

    def on_sample(self, sample: Sample, ctx: Context) -> Iterable[Effect]:
        return ()

    def on_tick(self, ctx: Context) -> Iterable[Effect]:
        return ()

    def on_stale(self, device_id: str, since: float | None, ctx: Context) -> Iterable[Effect]:
        """The device's values have expired (no message within its allowance since `since`,
        epoch seconds; None: none since the gateway started). ctx.latest() now returns None
        for them. Rules that hold state on a value (a delay running, an alarm raised because
        of it) drop it here: a stale value neither raises nor keeps an alarm raised. Rules
        that act on events, or must not forget (fire, faults), keep theirs: the default."""
        return ()

    def on_input(self, event: Input, ctx: Context) -> InputReply | None:
        """An event from outside (rules.inputs). Rules that take its kind answer it (and keep
        what they need in snapshot(): an input must survive a restart); None: not for this
        rule, the default."""
        return None

    def snapshot(self) -> dict[str, Any]:
        """State worth keeping across a restart (JSON-serialisable)."""
        return {}

    def restore(self, state: Mapping[str, Any]) -> None:
        """Take back what snapshot() returned before the restart (stateless rules: nothing)."""

    @abstractmethod
    def describe(self) -> str:
        """One line for `guanjia check` and the logs."""
