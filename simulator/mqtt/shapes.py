"""Time-of-day shapes, 0..1: how busy a process of the building is at local time."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, time, timedelta
from typing import Any

from simulator.models.base import hour_of_day, smoothstep, window


def entrance_traffic(local: datetime) -> float:
    """People through a building entrance: arrivals, the lunch break, departures, overtime."""
    h = hour_of_day(local)
    if local.weekday() >= 5:
        return 0.04 * window(8.0, 18.0, h) + 0.005
    day = 0.25 * smoothstep(8.5, 9.25, h) * (1.0 - smoothstep(17.0, 17.75, h))
    arrivals = window(7.5, 9.5, h)
    lunch = 0.45 * (window(11.5, 12.5, h) + window(13.0, 14.25, h))
    departures = 0.8 * window(17.0, 19.0, h)
    overtime = 0.06 * window(19.0, 22.5, h)
    return min(1.0, 0.005 + day + arrivals + lunch + departures + overtime)


def office_presence(local: datetime) -> float:
    """People at their desks (government office hours 08:30-17:30, the long lunch break)."""
    h = hour_of_day(local)
    if local.weekday() >= 5:
        return 0.03 * window(9.0, 17.0, h)
    day = smoothstep(8.0, 8.75, h) * (1.0 - smoothstep(17.25, 18.25, h))
    lunch = 0.7 * window(11.75, 13.75, h)
    return day * (1.0 - lunch) + 0.06 * window(18.0, 22.0, h)


def secured_traffic(local: datetime) -> float:
    """Visits to a secured room: working hours only, no crowds."""
    h = hour_of_day(local)
    if local.weekday() >= 5:
        return 0.0
    return smoothstep(8.5, 9.0, h) * (1.0 - smoothstep(17.0, 17.5, h))


def night(local: datetime) -> float:
    """1 between 22:00 and 06:00, when nobody should open a door without a card."""
    h = hour_of_day(local)
    return 1.0 if h >= 22.0 or h < 6.0 else 0.0


def always(local: datetime) -> float:
    return 1.0


def camera_activity(local: datetime) -> float:
    """People in a camera's view: office presence, and a guard's round or a cleaner at night."""
    return max(0.02, office_presence(local))


Shape = Callable[[datetime], float]
_REFERENCE_WEEKDAY = date(2025, 1, 15)  # a Wednesday


def hours_per_day(shape: Shape, tz: Any) -> float:
    """The shape integrated over a weekday, in hours: turns "per day" into a peak rate."""
    start = datetime.combine(_REFERENCE_WEEKDAY, time(0), tzinfo=tz)
    steps = 24 * 12
    return sum(shape(start + timedelta(minutes=5 * i)) for i in range(steps)) / 12.0
