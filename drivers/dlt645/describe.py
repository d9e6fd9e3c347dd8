"""The DL/T 645 driver's points as the gateway sees them (drivers/contract.py)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from core.field_types import FieldType
from drivers.contract import PointMeta
from drivers.dlt645.profile import Dlt645Point, Dlt645Profile

MISSED_POLLS = 3
"""A meter's values are stale this many poll intervals after its last good reading: two polls
may fail (a timeout on a busy line) before the rules stop trusting the last values."""


def stale_after(_profile: Dlt645Profile, poll: float) -> float:
    return MISSED_POLLS * poll


def float_format(point: Dlt645Point) -> str:
    """The digits the meter sends are all the value has: a BCD format of n digits, scaled by
    a power of ten, needs n significant digits (999999.99 kWh: 8), and more would store float
    noise. Another scale keeps every digit."""
    exponent = math.log10(abs(point.scale)) if point.scale else 0.5
    if exponent.is_integer():
        return f"%.{point.data_format.digits}g"
    return "%r"


def describe(profile: Dlt645Profile, points: Sequence[str] | None = None) -> dict[str, PointMeta]:
    """Every point a meter of this profile reads (the site's `points:` subset, if any): all
    numbers, stored as floats."""
    return {
        p.name: PointMeta(
            name=p.name,
            field_type=FieldType.FLOAT,
            unit=p.unit,
            float_format=float_format(p),
            description=p.description,
        )
        for p in profile.points
        if points is None or p.name in points
    }
