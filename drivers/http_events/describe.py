"""The HTTP event-stream driver's points as the gateway sees them (drivers/contract.py)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from core.field_types import FieldType, json_field_type
from drivers.contract import PointMeta
from drivers.http_events.profile import HttpEventsProfile
from drivers.mqtt.ingest import ARRIVAL_LAG, AVAILABLE


def definitions(profile: HttpEventsProfile) -> Iterator[PointMeta]:
    """Every definition of a point, repeated where the profile maps one name twice (the
    field catalogue checks that they agree)."""
    yield PointMeta(AVAILABLE, FieldType.BOOLEAN, description="The device's event stream is up.")
    if profile.timestamp is not None or any(m.timestamp is not None for m in profile.events):
        yield PointMeta(
            ARRIVAL_LAG,
            FieldType.FLOAT,
            unit="s",
            description="Arrival time minus the device's own time of the event.",
        )
    for mapping in profile.events:
        for p in mapping.points:
            yield PointMeta(p.name, json_field_type(p.type), p.unit, description=p.description)


def describe(
    profile: HttpEventsProfile, points: Sequence[str] | None = None
) -> dict[str, PointMeta]:
    out: dict[str, PointMeta] = {}
    for meta in definitions(profile):
        if points is None or meta.name in points or meta.name in (AVAILABLE, ARRIVAL_LAG):
            out.setdefault(meta.name, meta)
    return out


def stale_after(_profile: HttpEventsProfile, _poll: float) -> None:
    """Never by age: events are facts, and the driver says when a device is offline (its
    `available` point), from the stream's keep-alives or its connection."""
    return None
