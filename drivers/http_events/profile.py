"""Event-stream profiles: what a camera, recorder or access controller sends on its HTTP event
stream and how each event becomes readings.

A profile names its protocol (`hikvision_isapi`: the ISAPI alertStream; `dahua_events`: the
eventManager.cgi attach stream), the events that are its keep-alive and how often they come,
where an event says its channel, its own time and its id, and a list of event mappings: a
`match` on the decoded event (drivers/http_events/decode.py gives the shapes) and the points it
yields, in the MQTT driver's point language (`value`, `path`, `type`, `map`, ...), so that a
camera on the alertStream writes the same fields as one bridged onto MQTT and every rule reads
both alike.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from core.config_types import Duration
from core.field_types import check_one_type_per_point
from drivers.mqtt.profile import (
    EVENT_ID_DESCRIPTION,
    TIMESTAMP_DESCRIPTION,
    DeviceTime,
    JsonPoint,
    JsonScalar,
)

Protocol = Literal["hikvision_isapi", "dahua_events"]
PROTOCOLS: tuple[str, ...] = ("hikvision_isapi", "dahua_events")
VENDORS: dict[str, str] = {"hikvision_isapi": "hikvision", "dahua_events": "dahua"}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Keepalive(_Strict):
    """The events a device sends while nothing happens, so that silence means trouble."""

    match: dict[str, JsonScalar] = Field(
        min_length=1,
        description="An event with these values is a keep-alive, e.g. {eventType: videoloss, "
        "eventState: inactive} (Hikvision) or {Code: Heartbeat} (Dahua); it yields no reading.",
    )
    interval: Duration | None = Field(
        default=None,
        gt=0,
        description="At most this long between two keep-alives (Dahua streams are asked for "
        "one this often, `heartbeat=`). Without it keep-alives are taken when they come, and "
        "silence is no sign of trouble.",
    )
    missed: int = Field(
        default=3,
        ge=1,
        le=100,
        description="After this many intervals without a byte the stream is judged silent: "
        "the device is offline and the stream is opened again.",
    )

    @property
    def allowance(self) -> float | None:
        return self.interval * self.missed if self.interval is not None else None


class EventMapping(_Strict):
    """How one kind of event becomes readings."""

    match: dict[str, JsonScalar] = Field(
        min_length=1,
        description="Only events whose paths have these values, e.g. {eventType: VMD, "
        "eventState: active} or {Code: VideoMotion, action: Start}.",
    )
    event: bool = Field(default=True, description="Events, not state.")
    points: list[JsonPoint] = Field(min_length=1, description="Values taken from the event.")
    event_id: list[str] | None = Field(
        default=None, description=EVENT_ID_DESCRIPTION + " Overrides the profile's."
    )
    timestamp: DeviceTime | None = Field(
        default=None, description=TIMESTAMP_DESCRIPTION + " Overrides the profile's."
    )

    @model_validator(mode="after")
    def _paths(self) -> EventMapping:
        for p in self.points:
            if p.path is None and p.value is None:
                raise ValueError(f"point {p.name!r} needs a `path` (or a constant `value`)")
        return self


class HttpEventsProfile(_Strict):
    """A device model that reports its events on an HTTP event stream."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$", description="Must match the file name.")
    protocol: Protocol = Field(
        description="`hikvision_isapi` (ISAPI alertStream) or `dahua_events` (eventManager.cgi "
        "attach)."
    )
    description: str = Field(default="", description="Vendor, models.")
    kind: str = Field(pattern=r"^[a-z][a-z0-9_]*$", description="InfluxDB measurement.")
    sources: list[str] = Field(default_factory=list, description="Where the shapes come from.")
    keepalive: Keepalive | None = Field(
        default=None,
        description="The device's keep-alive events; without them (an access controller speaks "
        "only when something happens) a dead connection is found by TCP keep-alives, and the "
        "device is offline while its stream is down.",
    )
    channel: list[str] = Field(
        default_factory=list,
        description="Paths of an event's channel number (1 = the first channel), the first "
        "present wins: what the site's `channels:` filter reads. Empty: the device has no "
        "channels to filter.",
    )
    codes: list[str] = Field(
        default_factory=lambda: ["All"],
        min_length=1,
        description="Dahua: the event codes to attach to (`codes=[...]`); All by default.",
    )
    event_id: list[str] = Field(
        default_factory=list,
        description=EVENT_ID_DESCRIPTION + " Applies to every mapping without its own.",
    )
    timestamp: DeviceTime | None = Field(
        default=None,
        description=TIMESTAMP_DESCRIPTION + " Applies to every mapping without its own.",
    )
    events: list[EventMapping] = Field(min_length=1, description="Event mappings.")
    catch_up: Literal["hikvision_acs_search"] | None = Field(
        default=None,
        description="After a stream comes back, read what the device logged while it was down: "
        "`hikvision_acs_search` (an access controller's AcsEvent search from the last event "
        "the stream brought). Events the stream had already brought are not counted twice "
        "(give `event_id`).",
    )

    @property
    def vendor(self) -> str:
        return VENDORS[self.protocol]

    @model_validator(mode="after")
    def _consistent(self) -> HttpEventsProfile:
        if self.protocol != "dahua_events" and self.codes != ["All"]:
            raise ValueError("`codes` applies to dahua_events profiles only")
        interval = self.keepalive.interval if self.keepalive is not None else None
        dahua = self.protocol == "dahua_events"
        if dahua and interval is not None and (interval < 1 or not float(interval).is_integer()):
            raise ValueError(
                f"keepalive.interval {interval:g} s: Dahua devices are asked for a heartbeat "
                "in whole seconds; write 1s or more, e.g. 5s"
            )
        for code in self.codes:
            if not code or any(c in code for c in ",[]&= "):
                raise ValueError(f"event code {code!r}: letters and digits only, e.g. VideoMotion")
        # One type per point, as InfluxDB keeps one type per field (as in MQTT profiles).
        check_one_type_per_point(type(self).__name__, "events", self.events)
        if self.catch_up is not None and (self.protocol != "hikvision_isapi" or not self.event_id):
            raise ValueError(
                "catch_up: hikvision_acs_search needs a hikvision_isapi profile with `event_id` "
                "(e.g. [AccessControllerEvent.serialNo, dateTime]), so that a record the stream "
                "had already brought is not counted twice"
            )
        return self
