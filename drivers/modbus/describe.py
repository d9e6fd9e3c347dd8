"""The Modbus driver's points as the gateway sees them (drivers/contract.py)."""

from __future__ import annotations

from collections.abc import Sequence

from core.field_types import float_format
from drivers.contract import PointMeta
from drivers.modbus.derived import needed
from drivers.modbus.profile import Profile

MISSED_POLLS = 3
"""A polled device's values are stale this many poll intervals after its last good reading:
two polls may fail (a timeout, a busy line) before the rules stop trusting the last values."""


def stale_after(_profile: Profile, poll: float) -> float:
    return MISSED_POLLS * poll


def describe(profile: Profile, points: Sequence[str] | None = None) -> dict[str, PointMeta]:
    """Every point a device of this profile reads, derived ones last: a subset and the scale
    factors, ratios and inputs it needs, when the site names `points:`."""
    wanted: set[str] | None = None
    if points is not None:
        wanted = needed(profile.derived, set(points))
        wanted |= {p.scale_factor for p in profile.points if p.name in wanted and p.scale_factor}
        wanted.update(r for p in profile.points if p.name in wanted for r in p.scale_by or ())
    types = profile.field_types()
    out: dict[str, PointMeta] = {}
    for p in profile.points:
        if wanted is not None and p.name not in wanted:
            continue
        scaled = p.scale != 1.0 or p.offset != 0.0 or p.scale_factor is not None or p.scale_by
        out[p.name] = PointMeta(
            name=p.name,
            field_type=types[p.name],
            unit=p.unit,
            float_format=float_format((p.type or profile.defaults.type).value, bool(scaled)),
            writable=(p.writable.min, p.writable.max) if p.writable is not None else None,
            labels=dict(p.enum or {}),
            bits=dict(p.bits or {}),
            description=p.description,
        )
    for d in profile.derived:
        if wanted is None or d.name in wanted:
            out[d.name] = PointMeta(
                name=d.name,
                field_type=types[d.name],
                unit=d.unit,
                float_format="%.12g",  # sums of scaled registers: no float noise, all digits
                writable=None,
                labels={},
                bits={},
                description=d.description or f"{d.operation.value} of {', '.join(d.inputs)}",
            )
    return out
