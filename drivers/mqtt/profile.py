"""MQTT device profiles: which topics a device model publishes and how its payloads map to points.

Topics may name device variables in braces (`zigbee2mqtt/{id}`), filled from the site file, and
MQTT wildcards (`+`, `#`). A message mapping says how to read the payload (JSON or text), which
messages it applies to (`match`), and where each point's value is (`path`), with value maps,
scale and units. A mapping marked `event: true` describes something that happened (a door
forced open), not the latest state; both travel as readings and land in InfluxDB.

Paths may name device variables too (`switch:{channel}.apower`: one Shelly Pro 4PM is four
site devices, one per channel), and keys may hold `:`. Every variable a topic, match or path
names must be listed under `variables`, and the site file must give each.

A point may come from several mappings (Tasmota's relay state is in tele/STATE and in
stat/POWER): each message gives its value when it arrives, so the latest wins. It must keep one
type, or InfluxDB would refuse the second. A point is either an event point or a state point,
never both: a replayed retained state must not pass for an event, nor an event overwrite state.
A retained message on an `event: true` mapping is the broker's replay of an old event on
(re)subscribe and is dropped (counted); retained state is taken as the latest state.

Where the device says when something happened (`timestamp`) the reading carries that time, and
where it numbers its messages (`event_id`) a redelivered copy is recognised and dropped.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from core.config_types import Duration, Range
from core.field_types import check_one_type_per_point

_VAR = re.compile(r"\{([a-z_][a-z0-9_]*)\}")
JsonScalar = str | int | float | bool | None


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def topic_vars(topic: str) -> set[str]:
    return set(_VAR.findall(topic))


class JsonPoint(_Strict):
    """One value taken from a message."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$", description="Field name in InfluxDB.")
    path: str | None = Field(
        default=None,
        description="Where the value is: `a.b.c`, `list[0].x`, `params.switch:{channel}.apower` "
        "(keys may hold `:`; `{vars}` are the device's); omit for a text payload, or with "
        "`value` for a constant.",
    )
    value: JsonScalar = Field(
        default=None, description="A constant value, when the message itself is the fact."
    )
    type: Literal["float", "int", "bool", "str"] = Field(
        default="float", description="Type stored in InfluxDB."
    )
    map: dict[JsonScalar, JsonScalar] | None = Field(
        default=None,
        description="Maps raw values before conversion, e.g. {ON: true, OFF: false}; "
        "a value missing from the map is bad.",
    )
    scale: float = Field(default=1.0, description="value × scale + offset, for numbers.")
    offset: float = Field(default=0.0, description="Added after scaling.")
    unit: str = Field(default="", description="Unit.")
    description: str = Field(default="", description="What it means.")
    valid: Range | None = Field(default=None, description="Plausible range; outside is bad.")
    optional: bool = Field(
        default=False, description="A message without it is fine (else counted as missing)."
    )


class DeviceTime(_Strict):
    """Where a message says when it happened, and how the time is written."""

    path: str = Field(
        min_length=1, description="JSON path of the time, e.g. `dateTime`, `params.ts`."
    )
    format: Literal["iso8601", "unix_s", "unix_ms", "auto"] = Field(
        default="iso8601",
        description="`iso8601`: `2024-05-01T08:00:00+08:00`, `...Z`, fractions, `2024-05-01 "
        "08:00:00`; a time without a UTC offset is the site's local time (Tasmota, Dahua's "
        "LocaleTime). `unix_s`: epoch seconds, integer or fraction (Shelly's `ts`), `unix_ms`: "
        "epoch milliseconds; both as numbers or numeric strings. `auto`: a number (or numeric "
        "text) of 1e11 or more is milliseconds, else seconds; any other text ISO 8601.",
    )


EVENT_ID_DESCRIPTION = (
    "JSON paths whose values together identify one message (e.g. a controller's event "
    "counter and its time): a message seen again with the same values is a redelivery and is "
    "dropped, counted as a duplicate. Omit when the device numbers nothing."
)
TIMESTAMP_DESCRIPTION = (
    "The device's own time of the message: readings carry it instead of the arrival time "
    "(a time far from the arrival is not trusted; the arrival time is used and counted)."
)


class MessageMapping(_Strict):
    """How messages on one topic become readings."""

    topic: str = Field(min_length=1, description="Topic, with {vars} and MQTT wildcards.")
    format: Literal["json", "text"] = Field(default="json", description="Payload format.")
    match: dict[str, JsonScalar] = Field(
        default_factory=dict,
        description="Only messages whose paths have these values (strings may name {vars}).",
    )
    event: bool = Field(
        default=False,
        description="Messages are one-shot events, not state: a retained one (the broker's "
        "replay on subscribe) is dropped and counted. Its points may not be state points.",
    )
    points: list[JsonPoint] = Field(min_length=1, description="Values taken from the message.")
    event_id: list[str] | None = Field(
        default=None, description=EVENT_ID_DESCRIPTION + " Overrides the profile's."
    )
    timestamp: DeviceTime | None = Field(
        default=None, description=TIMESTAMP_DESCRIPTION + " Overrides the profile's."
    )

    @model_validator(mode="after")
    def _paths(self) -> MessageMapping:
        for p in self.points:
            if self.format == "json" and p.path is None and p.value is None:
                raise ValueError(f"point {p.name!r} needs a `path` (or a constant `value`)")
        return self


class Availability(_Strict):
    """How the device (or its bridge) says it is online."""

    topic: str | None = Field(
        default=None, description="Availability topic; `online`/`offline` text or {state: …}."
    )
    online: list[str] = Field(default=["online", "Online"], description="Payloads meaning up.")
    offline: list[str] = Field(
        default=["offline", "Offline", "stopped"], description="Payloads meaning down."
    )
    heartbeat: Duration | None = Field(
        default=None, description="Offline when no message arrives for this long."
    )


class MqttProfile(_Strict):
    """A device model that publishes over MQTT."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$", description="Must match the file name.")
    protocol: Literal["mqtt"] = Field(description="`mqtt`")
    description: str = Field(default="", description="Vendor, models, bridge.")
    kind: str = Field(pattern=r"^[a-z][a-z0-9_]*$", description="InfluxDB measurement.")
    sources: list[str] = Field(default_factory=list, description="Where the shapes come from.")
    variables: list[str] = Field(
        default_factory=list, description="Variables the site file must give (e.g. `id`)."
    )
    availability: Availability = Field(default_factory=Availability, description="Online/offline.")
    event_id: list[str] = Field(
        default_factory=list,
        description=EVENT_ID_DESCRIPTION + " Applies to every JSON mapping without its own.",
    )
    timestamp: DeviceTime | None = Field(
        default=None,
        description=TIMESTAMP_DESCRIPTION + " Applies to every JSON mapping without its own.",
    )
    messages: list[MessageMapping] = Field(min_length=1, description="Topic mappings.")

    @model_validator(mode="after")
    def _vars_declared(self) -> MqttProfile:
        declared = set(self.variables)
        for text in self.templates():
            missing = topic_vars(text) - declared
            if missing:
                raise ValueError(
                    f"{text!r} uses {', '.join(sorted(missing))}; list it under `variables`"
                )
        # A point in several mappings is fine (the latest message wins), as long as it keeps
        # one type: the error names the later declaration's line, where the fix goes.
        check_one_type_per_point(type(self).__name__, "messages", self.messages)
        self._events_apart()
        return self

    def templates(self) -> list[str]:
        """Every text that may name {variables}: topics, match values, JSON paths."""
        out = [self.availability.topic or "", *self.paths()]
        for m in self.messages:
            out.append(m.topic)
            out += [v for v in m.match.values() if isinstance(v, str)]
        return out

    def paths(self) -> list[str]:
        """Every JSON path: points', match keys, event ids, device times."""
        out = [t.path for t in (self.timestamp, *(m.timestamp for m in self.messages)) if t]
        out += self.event_id
        for m in self.messages:
            out += [*m.match, *(m.event_id or [])]
            out += [p.path for p in m.points if p.path is not None]
        return out

    def _events_apart(self) -> None:
        """A point is an event point or a state point: were it both, a replayed retained
        state could pass for the event, or an event overwrite the state. The error names the
        later declaration's line."""
        first: dict[str, tuple[int, bool]] = {}
        for i, m in enumerate(self.messages):
            for j, p in enumerate(m.points):
                seen = first.setdefault(p.name, (i, m.event))
                if seen[1] != m.event:
                    this, that = ("an event", "state") if m.event else ("state", "an event")
                    message = (
                        f"point {p.name!r} is {this} point here and {that} point in "
                        f"messages[{seen[0]}]; rename one (e.g. {p.name}_event), or make both "
                        "mappings state or both `event: true`"
                    )
                    error = PydanticCustomError("value_error", message)
                    loc = ("messages", i, "points", j, "name")
                    detail = InitErrorDetails(type=error, loc=loc, input=p.name)
                    raise ValidationError.from_exception_data(type(self).__name__, [detail])
