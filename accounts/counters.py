"""Period amounts from counter readings (pure: no clock, no I/O).

A counter (a meter's `energy_import_kwh`, a water meter's `volume_total_m3`) is read now and
then; what it counted between two readings is spread over the time between them, so the energy
of two readings that straddle an hour's end is split between the hours in proportion to time.
Energy never comes from integrating power.

What a track keeps is a thinned list of readings, its *marks*: the first and last reading of each
hour, both readings around every gap and every event (reset, swap, jump), and of the readings in
between only the last, marked `run`: the stretch before it was read densely and checked reading
by reading, so its amount is simply the difference. Amounts computed from the
marks equal those from every reading, so the marks are all a restart or a late reading needs.

Between two readings a counter that drops was reset or swapped, and one that rises by more than
the meter could have counted in that time jumped:

- **rollover**: with a known width (`Limits.rollover`, the value at which it reads 0 again) a
  drop that wraps to a plausible amount counts that amount;
- **reset**: a drop to a plausible amount (the meter restarted from 0) counts from the new
  start: the new value;
- **swap**: any other drop (a new meter whose counter starts elsewhere) counts nothing across
  it; counting goes on from the new meter's value. A swap the site declares (`Swap`: when, the
  old meter's last value if known, the new one's first) counts what both meters counted;
- **jump**: a rise above `Limits.max_per_hour` for the elapsed time is flagged, not counted.

Coverage: a stretch between readings longer than `Limits.max_gap_s` (or before the first
reading, or after the last) is a gap: its amount is still shared pro rata among the periods it
spans, but it does not count towards their `covered` seconds.
"""

from __future__ import annotations

import bisect
import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

PERIODS = ("hour", "day", "month")

# A float counter read through float32 may step back by a rounding step: not a reset.
_JITTER = 1e-6


class Event(enum.StrEnum):
    ROLLOVER = "rollover"
    RESET = "reset"
    SWAP = "swap"  # detected as a drop
    DECLARED_SWAP = "declared_swap"
    JUMP = "jump"


@dataclass(frozen=True, slots=True)
class Limits:
    """What is plausible for one counter."""

    max_per_hour: float  # the most the meter can count in an hour (its unit)
    max_gap_s: float = 900.0  # readings further apart leave a gap in the coverage
    rollover: float | None = None  # the value at which the counter reads 0 again
    slack: float = 1.0  # a register's resolution step: always plausible

    def allowed(self, seconds: float) -> float:
        return self.max_per_hour * seconds / 3600.0 + self.slack


@dataclass(frozen=True, slots=True)
class Swap:
    """A meter swap the site declares: at `t` (epoch seconds) the counter was replaced."""

    t: float
    new_start: float  # the new meter's counter when it was fitted
    old_final: float | None = None  # the old meter's last value, if someone noted it


@dataclass(frozen=True, slots=True)
class Mark:
    """A kept reading. `run`: the stretch from the previous mark was read densely and checked
    reading by reading (its amount is the difference)."""

    t: float  # epoch seconds
    value: float
    run: bool = False


@dataclass(frozen=True, slots=True)
class Tally:
    """What a period adds up to: `amount` in the counter's unit, `covered` seconds of it read
    without a gap, `span` its length in seconds."""

    amount: float
    covered: float
    span: float

    @property
    def coverage(self) -> float:
        return min(1.0, self.covered / self.span) if self.span > 0 else 0.0


def stretch(
    prev: Mark, t: float, value: float, limits: Limits, swaps: Sequence[Swap] = ()
) -> tuple[float, Event | None]:
    """What a counter counted from `prev` to (`t`, `value`), and what happened on the way."""
    allowed = limits.allowed(t - prev.t)
    for swap in swaps:
        if prev.t < swap.t <= t:
            before = 0.0 if swap.old_final is None else max(0.0, swap.old_final - prev.value)
            amount = before + max(0.0, value - swap.new_start)
            return (amount, Event.DECLARED_SWAP) if amount <= allowed else (0.0, Event.JUMP)
    delta = value - prev.value
    if delta >= 0:
        return (delta, None) if delta <= allowed else (0.0, Event.JUMP)
    if -delta <= abs(prev.value) * _JITTER:
        return 0.0, None
    if limits.rollover is not None:
        wrapped = limits.rollover - prev.value + value
        if 0 <= wrapped <= allowed:
            return wrapped, Event.ROLLOVER
    if 0 <= value <= allowed:
        return value, Event.RESET
    return 0.0, Event.SWAP


class Periods:
    """Period boundaries at local time in the site's zone (epoch seconds)."""

    def __init__(self, timezone: str) -> None:
        self.tz = ZoneInfo(timezone)

    def floor(self, t: float, period: str) -> float:
        local = datetime.fromtimestamp(t, self.tz)
        if period == "hour":
            local = local.replace(minute=0, second=0, microsecond=0)
        elif period == "day":
            local = local.replace(hour=0, minute=0, second=0, microsecond=0)
        else:
            local = local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        return local.timestamp()

    def next(self, start: float, period: str) -> float:
        """The start of the period after the one starting at `start`."""
        if period == "hour":
            return self.floor(start + 3600.0, "hour")
        local = datetime.fromtimestamp(start, self.tz)
        if period == "day":
            day = local.date() + timedelta(days=1)
            return datetime(day.year, day.month, day.day, tzinfo=self.tz).timestamp()
        year, month = (local.year + 1, 1) if local.month == 12 else (local.year, local.month + 1)
        return datetime(year, month, 1, tzinfo=self.tz).timestamp()

    def starts(self, lo: float, hi: float, period: str) -> list[float]:
        """Starts of the periods that overlap [lo, hi]."""
        out = []
        start = self.floor(lo, period)
        while start <= hi:
            out.append(start)
            start = self.next(start, period)
        return out


class Added(enum.Enum):
    IN_ORDER = "in_order"
    LATE = "late"  # inserted before the newest reading: periods are recomputed
    COVERED = "covered"  # late, inside a stretch already read densely: nothing changes
    TOO_OLD = "too_old"  # before the first kept reading: nothing left to recompute with
    DUPLICATE = "duplicate"


@dataclass(frozen=True, slots=True)
class AddResult:
    added: Added
    event: Event | None = None
    changed: tuple[float, float] | None = None  # the time span whose periods changed


class CounterTrack:
    """One counter's marks, fed reading by reading (in order, or late)."""

    def __init__(
        self,
        limits: Limits,
        periods: Periods,
        marks: Iterable[Mark] = (),
        swaps: Sequence[Swap] = (),
    ) -> None:
        self.limits = limits
        self.periods = periods
        self.swaps = sorted(swaps, key=lambda s: s.t)
        self.marks: list[Mark] = sorted(marks, key=lambda m: m.t)
        self._times = [m.t for m in self.marks]
        # Marks to save since the last `take_changes`: t -> the mark, or None (removed).
        self.changes: dict[float, Mark | None] = {}
        self._hour = (0.0, 0.0)  # the newest mark's hour [start, end), cached

    # -- feeding ---------------------------------------------------------------------------

    def add(self, t: float, value: float) -> AddResult:
        marks = self.marks
        if not marks:
            self._put(len(marks), Mark(t, value))
            return AddResult(Added.IN_ORDER)
        last = marks[-1]
        if t > last.t:
            return self._append(last, t, value)
        if t == last.t:
            return AddResult(Added.DUPLICATE)
        return self._insert(t, value)

    def _append(self, last: Mark, t: float, value: float) -> AddResult:
        amount_event = stretch(last, t, value, self.limits, self._swaps_near(last.t, t))
        event = amount_event[1]
        dense = t - last.t <= self.limits.max_gap_s
        marks = self.marks
        lo = last.t
        if (
            event is None
            and dense
            and len(marks) >= 2
            and self._same_hour(t)
            and (last.run or self._clean(marks[-2], last))
        ):
            # `last` was inside a dense run of this hour: the new reading replaces it.
            self._remove(len(marks) - 1)
            lo = marks[-1].t
            self._put(len(marks), Mark(t, value, run=True))
            return AddResult(Added.IN_ORDER, None, (lo, t))
        self._put(len(marks), Mark(t, value))
        return AddResult(Added.IN_ORDER, event, (lo, t))

    def _insert(self, t: float, value: float) -> AddResult:
        i = bisect.bisect_left(self._times, t)
        if i < len(self._times) and self._times[i] == t:
            return AddResult(Added.DUPLICATE)
        if i == 0:
            return AddResult(Added.TOO_OLD)
        prev, nxt = self.marks[i - 1], self.marks[i]
        if nxt.run:
            return AddResult(Added.COVERED)
        swaps = self._swaps_near(prev.t, nxt.t)
        event = stretch(prev, t, value, self.limits, swaps)[1]
        after = stretch(Mark(t, value), nxt.t, nxt.value, self.limits, swaps)[1]
        changed = (prev.t, nxt.t)
        # A replayed stretch arrives reading by reading: thin it as it comes (the reading
        # before joins a run, like in-order readings).
        if i >= 2 and event is None and t - prev.t <= self.limits.max_gap_s:
            before = self.marks[i - 2]
            same_hour = self.periods.floor(before.t, "hour") == self.periods.floor(t, "hour")
            if same_hour and (prev.run or self._clean(before, prev)):
                self._remove(i - 1)
                self._put(i - 1, Mark(t, value, run=True))
                return AddResult(Added.LATE, after, changed)
        self._put(i, Mark(t, value))
        return AddResult(Added.LATE, event or after, changed)

    def _clean(self, prev: Mark, cur: Mark) -> bool:
        """The stretch prev -> cur was short and eventless: it may join a run."""
        if cur.t - prev.t > self.limits.max_gap_s:
            return False
        return stretch(prev, cur.t, cur.value, self.limits, self.swaps)[1] is None

    def _same_hour(self, t: float) -> bool:
        """Is `t` in the hour of the mark before the newest (a run stays inside an hour)?"""
        start, end = self._hour
        if not start <= t < end:
            start = self.periods.floor(t, "hour")
            end = self.periods.next(start, "hour")
            self._hour = (start, end)
        return start <= self.marks[-2].t

    def _swaps_near(self, lo: float, hi: float) -> Sequence[Swap]:
        if not self.swaps:
            return ()
        return [s for s in self.swaps if lo < s.t <= hi]

    def _put(self, i: int, mark: Mark) -> None:
        self.marks.insert(i, mark)
        self._times.insert(i, mark.t)
        self.changes[mark.t] = mark

    def _remove(self, i: int) -> None:
        mark = self.marks.pop(i)
        del self._times[i]
        if self.changes.get(mark.t) is not None:
            del self.changes[mark.t]  # never saved: nothing to delete
        else:
            self.changes[mark.t] = None

    def take_changes(self) -> dict[float, Mark | None]:
        changes, self.changes = self.changes, {}
        return changes

    def prune(self, before: float) -> None:
        """Forget marks older than `before`, keeping the last of them (a stretch starts there)."""
        i = bisect.bisect_left(self._times, before) - 1
        if i > 0:
            self.marks = self.marks[i:]
            self._times = self._times[i:]
            # Pruned marks are deleted from the store by age, not one by one.

    # -- reading ---------------------------------------------------------------------------

    @property
    def first_t(self) -> float | None:
        return self.marks[0].t if self.marks else None

    @property
    def last_t(self) -> float | None:
        return self.marks[-1].t if self.marks else None

    def amount(self, prev: Mark, cur: Mark) -> float:
        if cur.run:
            return max(0.0, cur.value - prev.value)
        return stretch(prev, cur.t, cur.value, self.limits, self._swaps_near(prev.t, cur.t))[0]

    def tally(self, start: float, end: float) -> Tally:
        """What the counter counted in [start, end), and how much of it was read."""
        marks = self.marks
        amount = covered = 0.0
        i = max(1, bisect.bisect_right(self._times, start))
        while i < len(marks):
            prev, cur = marks[i - 1], marks[i]
            if prev.t >= end:
                break
            dt = cur.t - prev.t
            overlap = min(end, cur.t) - max(start, prev.t)
            if overlap > 0 and dt > 0:
                amount += self.amount(prev, cur) * overlap / dt
                if cur.run or dt <= self.limits.max_gap_s:
                    covered += overlap
            i += 1
        return Tally(amount, covered, end - start)
