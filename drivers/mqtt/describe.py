"""The MQTT driver's points as the gateway sees them (drivers/contract.py)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from core.field_types import FieldType, json_field_type
from drivers.contract import PointMeta
from drivers.mqtt.ingest import ARRIVAL_LAG, AVAILABLE
from drivers.mqtt.profile import MqttProfile


def definitions(profile: MqttProfile) -> Iterator[PointMeta]:
    """Every definition of a point, repeated where the profile maps one name twice (the
    field catalogue checks that they agree)."""
    yield PointMeta(AVAILABLE, FieldType.BOOLEAN, description="The device (or bridge) is up.")
    if profile.timestamp is not None or any(m.timestamp is not None for m in profile.messages):
        yield PointMeta(
            ARRIVAL_LAG,
            FieldType.FLOAT,
            unit="s",
            description="Arrival time minus the device's own time.",
        )
    for message in profile.messages:
        for p in message.points:
            yield PointMeta(p.name, json_field_type(p.type), p.unit, description=p.description)


def describe(profile: MqttProfile, points: Sequence[str] | None = None) -> dict[str, PointMeta]:
    out: dict[str, PointMeta] = {}
    for meta in definitions(profile):
        if points is None or meta.name in points or meta.name == AVAILABLE:
            out.setdefault(meta.name, meta)
    return out


def stale_after(profile: MqttProfile, _poll: float) -> float | None:
    """The profile's heartbeat; a device that only reports events never goes stale by age."""
    return profile.availability.heartbeat
