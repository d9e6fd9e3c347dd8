"""The virtual building's models stepped over a period without real time: every device's values
at each step (one minute by default), as the Samples its poller would have produced, and the
energy each counter really counted, hour by hour, as the model integrated it.

What a month of meter data goes wrong with is part of it: a counter reset, a meter swapped for
one whose counter starts elsewhere, and a day of one meter's readings held back (a spool
replayed late). The values of the frames show those; the true counters do not, so a test of
the accounts can tell whether the accounts saw through them.

Stepping is strictly forward in time (the models' counters never run backwards), device after
device at each step; held-back frames come out when the step reaches their release time.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import TypeGuard

from core.types import Sample, Value
from drivers.modbus.derived import DerivedSpec, compute
from drivers.modbus.profile import Profile
from simulator.models.base import DeviceModel

# The counters whose hourly energy is kept as truth, by point name: the ones the accounts
# count by default (accounts/config.py DEFAULT_COUNTERS). The simulator does not import
# the accounts; a test names others with `counters=`.
COUNTER_POINTS: tuple[str, ...] = (
    "energy_import_kwh",
    "energy_export_kwh",
    "energy_total_kwh",
    "volume_total_m3",
)
# What a reset or a swap moves besides the tracked counters: every value that counts up.
_COUNTING_SUFFIXES = ("_kwh", "_kvarh", "_kvah", "_wh", "_m3", "_gj")


@dataclass(frozen=True, slots=True)
class CounterReset:
    """The device's counters are cleared right after its reading at ``after`` (someone pressed
    the meter's reset): the next reading holds only the energy counted since."""

    device: str
    after: datetime


@dataclass(frozen=True, slots=True)
class MeterSwap:
    """The meter is replaced right after its reading at ``after`` by one whose main counter
    (the first tracked one) stood at ``new_start`` when it went in; its other counters start
    in the same proportion."""

    device: str
    after: datetime
    new_start: float


@dataclass(frozen=True, slots=True)
class LateDay:
    """The device's readings of local ``day`` reach the gateway ``delay`` after that day's end
    (its spool replayed), after readings newer than they are."""

    device: str
    day: date
    delay: timedelta = timedelta(days=1)


Scenario = CounterReset | MeterSwap | LateDay


class Month:
    """A device's values at every step from ``start`` to ``end`` inclusive (the reading at
    ``end`` closes the last hour), in the order a gateway would receive them.

    ``models``: by device id (``simulator.building.models_for_site`` builds them for a site
    file). ``points``: by device id, the points to keep (default: all the profile's).
    ``counters``: the counter point names whose true hourly energy is kept
    (:data:`COUNTER_POINTS` by default, those of them the device has).

    After (or while) :meth:`samples` runs, :attr:`hourly` holds, per device and counter, the
    energy of each local hour as the model counted it, whatever the readings showed;
    :attr:`unsure` the energy of each interval whose share no counter difference can tell
    (the one across a reset or a swap: the readings cannot say whether it started at zero).
    """

    def __init__(
        self,
        models: Mapping[str, DeviceModel],
        start: datetime,
        end: datetime,
        *,
        step: timedelta = timedelta(minutes=1),
        points: Mapping[str, Collection[str]] | None = None,
        counters: Sequence[str] = COUNTER_POINTS,
        scenarios: Sequence[Scenario] = (),
    ) -> None:
        if start.tzinfo is None or end.tzinfo is None:
            raise ValueError("start and end must be time-zone aware (the site's local time)")
        if end <= start:
            raise ValueError(f"end {end} is not after start {start}")
        seconds = step.total_seconds()
        if seconds <= 0 or 3600 % seconds or seconds != int(seconds):
            raise ValueError(f"step {step} must be whole seconds that divide an hour")
        if start.minute or start.second or start.microsecond:
            raise ValueError(f"start {start} must be at the start of an hour")
        unknown = sorted({s.device for s in scenarios} - set(models))
        if unknown:
            raise ValueError(f"scenarios name devices without a model: {', '.join(unknown)}")
        self.models = dict(models)
        self.start, self.end, self.step = start, end, step
        self.tz = start.tzinfo
        self.points = {d: frozenset(p) for d, p in (points or {}).items()}
        self.counters = tuple(counters)
        self.scenarios = tuple(scenarios)
        # device -> counter -> local hour start -> energy in that hour (the counter's unit)
        self.hourly: dict[str, dict[str, dict[datetime, float]]] = {d: {} for d in models}
        # device -> [(time of the reading before the interval, energy in the interval)]
        self.unsure: dict[str, list[tuple[datetime, float]]] = {d: [] for d in models}
        self.frames_made = 0
        self._derived: dict[str, tuple[DerivedSpec, ...]] = {}

    # -- the truth ---------------------------------------------------------------------

    def daily(self, device: str, counter: str) -> dict[date, float]:
        """Energy per local day of one counter, from the hourly truth."""
        out: dict[date, float] = {}
        for hour, energy in self.hourly[device].get(counter, {}).items():
            out[hour.date()] = out.get(hour.date(), 0.0) + energy
        return out

    def total(self, device: str, counter: str) -> float:
        return math.fsum(self.hourly[device].get(counter, {}).values())

    # -- the frames --------------------------------------------------------------------

    def instants(self) -> Iterator[datetime]:
        """The reading times, in local time: exact steps of UTC time from ``start``."""
        t = self.start
        while t <= self.end:
            yield t.astimezone(self.tz)
            t = (t + self.step).astimezone(self.tz)

    def samples(self) -> Iterator[Sample]:
        """Every device's Sample at every step, held-back days released late."""
        changes = {(s.device, s.after): s for s in self.scenarios if not isinstance(s, LateDay)}
        late = [s for s in self.scenarios if isinstance(s, LateDay)]
        offsets: dict[str, dict[str, float]] = {}  # device -> point -> added to the truth
        changed_at: dict[str, float] = {}  # device -> main counter's truth at a reset or swap
        hour_mark: dict[str, dict[str, float]] = {}
        last_hour: datetime | None = None
        held: list[tuple[datetime, Sample]] = []  # (release time, frame)
        for t in self.instants():
            if held and held[0][0] <= t:
                yield from (f for r, f in held if r <= t)
                held = [(r, f) for r, f in held if r > t]
            at_hour = t.minute == 0 and t.second == 0
            ts_ns = int(t.timestamp()) * 1_000_000_000
            for device, model in self.models.items():
                values = self._values(model, t)
                keep = self.points.get(device)
                if keep is not None:
                    values = {k: v for k, v in values.items() if k in keep}
                true = {c: float(v) for c in self.counters if _number(v := values.get(c))}
                if at_hour:
                    if last_hour is not None:
                        marks = hour_mark.get(device, {})
                        per_counter = self.hourly[device]
                        for c, v in true.items():
                            if c in marks:
                                per_counter.setdefault(c, {})[last_hour] = v - marks[c]
                    hour_mark[device] = true
                main = self._main(true)
                if device in changed_at and main is not None:
                    self.unsure[device].append((t - self.step, true[main] - changed_at[device]))
                    del changed_at[device]
                shown = values
                if device in offsets:
                    shown = _shifted(values, offsets[device])
                change = changes.get((device, t))
                if change is not None:
                    offsets[device] = self._offset(change, values, true)
                    if main is not None:
                        changed_at[device] = true[main]
                sample = Sample(device, ts_ns, shown)
                self.frames_made += 1
                release = _release(late, device, t)
                if release is not None:
                    held.append((release, sample))
                    continue
                yield sample
            if at_hour:
                last_hour = t
        yield from (f for _, f in held)

    def _values(self, model: DeviceModel, t: datetime) -> dict[str, Value]:
        """The model's values and the profile's derived points on them, as the poller adds
        them (a water meter's total is the sum of its integer and fraction registers)."""
        values = model.values(t)
        profile = model.profile
        if isinstance(profile, Profile) and profile.derived:
            specs = self._derived.get(profile.name)
            if specs is None:
                specs = self._derived[profile.name] = tuple(map(DerivedSpec.of, profile.derived))
            compute(specs, values, {})
        return values

    def _main(self, true: Mapping[str, float]) -> str | None:
        return next((c for c in self.counters if c in true), None)

    def _offset(
        self,
        change: CounterReset | MeterSwap,
        values: Mapping[str, Value],
        true: Mapping[str, float],
    ) -> dict[str, float]:
        """What is added to each counting value's truth from the next reading on: minus its
        value now (a reset), or that plus the new meter's start (a swap)."""
        ratio = 0.0
        if isinstance(change, MeterSwap):
            main = self._main(true)
            if main is None or true[main] <= 0:
                raise ValueError(f"{change.device}: no counter to swap at {change.after}")
            ratio = change.new_start / true[main]
        return {
            k: float(v) * ratio - float(v) for k, v in values.items() if _counting(k) and _number(v)
        }


def _number(value: Value | None) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _counting(name: str) -> bool:
    return name.endswith(_COUNTING_SUFFIXES)


def _shifted(values: Mapping[str, Value], add: Mapping[str, float]) -> dict[str, Value]:
    out = dict(values)
    for k, v in values.items():
        if k in add and _number(v):
            out[k] = float(v) + add[k]
    return out


def _release(late: Sequence[LateDay], device: str, t: datetime) -> datetime | None:
    for s in late:
        if s.device == device and t.date() == s.day:
            next_day = datetime.combine(s.day + timedelta(days=1), time(0), tzinfo=t.tzinfo)
            return next_day + s.delay
    return None


def month_bounds(year: int, month: int, tz: str) -> tuple[datetime, datetime]:
    """Local midnight of the month's first day and of the next month's."""
    from zoneinfo import ZoneInfo

    zone = ZoneInfo(tz)
    first = datetime(year, month, 1, tzinfo=zone)
    nxt = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=zone)
    return first, nxt
