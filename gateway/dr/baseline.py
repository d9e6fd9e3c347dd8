"""The baseline of a demand-response event (pure: no clock, no I/O): which days are like the
event's day, and how much energy a meter used in a window, from its readings.

Similar days follow the working calendar, not the weekday: a make-up working Saturday (调休)
is a working day like a Tuesday, and a statutory holiday on a Wednesday is a day off. Energy
comes from the meter's cumulative counter the way the accounts count it
(accounts.counters.CounterTrack: readings straddling a boundary shared pro rata, resets and
rollovers counted, implausible jumps not); from integrated power only where the meter has no
counter.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Collection, Iterable, Iterator
from datetime import date, datetime, timedelta, tzinfo

from accounts.counters import CounterTrack, Limits, Mark, Periods, Tally
from rules.calendar import WorkCalendar, day_kind

Reading = tuple[float, float]
"""(epoch seconds, value) of one reading of one point."""

DEFAULT_MAX_KWH_PER_HOUR = 20_000.0
"""The most a meter can count in an hour when not told (the accounts' default, a 20 MW intake)."""


def similar_days(
    calendar: WorkCalendar,
    day: date,
    *,
    look_back: int = 30,
    exclude: Collection[date] = (),
) -> Iterator[date]:
    """The days before `day`, newest first and at most `look_back` days back, of the same
    kind in the working calendar (rules.calendar.day_kind: working days, 调休 included; rest
    days; statutory holidays, whose load is not a weekend's), without the `exclude`d ones
    (days of other demand-response events)."""
    kind = day_kind(calendar, day, calendar.tz)
    for back in range(1, look_back + 1):
        other = day - timedelta(days=back)
        if other not in exclude and day_kind(calendar, other, calendar.tz) == kind:
            yield other


def day_window(day: date, start: float, span: float, tz: tzinfo) -> tuple[float, float]:
    """The window [start, start + span) moved to `day` at the same local time of day."""
    local = datetime.fromtimestamp(start, tz)
    moved = datetime.combine(day, local.timetz()).replace(tzinfo=tz)
    return moved.timestamp(), moved.timestamp() + span


def counter_tally(
    readings: Iterable[Reading],
    start: float,
    end: float,
    *,
    max_gap_s: float = 900.0,
    max_per_hour: float = DEFAULT_MAX_KWH_PER_HOUR,
    rollover: float | None = None,
) -> Tally:
    """What a cumulative counter counted in [start, end) from its readings (any order).

    Every reading is kept as a mark: CounterTrack.add would thin a dense run within an hour
    to its ends (enough for hourly accounts), and a window of minutes inside that hour would
    then be apportioned over the whole run, as if the load had been even. A second reading at
    the same instant is dropped."""
    kept: dict[float, float] = {}
    for t, value in readings:
        if math.isfinite(value):
            kept.setdefault(t, value)
    track = CounterTrack(
        Limits(max_per_hour=max_per_hour, max_gap_s=max_gap_s, rollover=rollover),
        Periods("UTC"),  # the amounts do not depend on the zone
        marks=[Mark(t, value) for t, value in sorted(kept.items())],
    )
    return track.tally(start, end)


def power_tally(
    readings: Iterable[Reading], start: float, end: float, *, max_gap_s: float = 900.0
) -> Tally:
    """kWh in [start, end) from power readings in W: the trapezoids between readings no further
    apart than `max_gap_s`; a longer gap counts nothing and is not covered."""
    points = sorted((t, w) for t, w in readings if math.isfinite(w))
    joules = covered = 0.0
    for (t0, w0), (t1, w1) in itertools.pairwise(points):
        dt = t1 - t0
        lo, hi = max(start, t0), min(end, t1)
        if dt <= 0 or dt > max_gap_s or hi <= lo:
            continue
        slope = (w1 - w0) / dt
        joules += (w0 + slope * (lo - t0) + w0 + slope * (hi - t0)) / 2.0 * (hi - lo)
        covered += hi - lo
    return Tally(joules / 3.6e6, covered, end - start)
