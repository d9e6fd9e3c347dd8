"""The models' base: the DeviceModel, deterministic noise, daily and seasonal shapes, the
climate they run in, and integration of rates over simulated time.

Every model is deterministic given its seed: noise is a smooth function of (seed, quantity,
simulated time), not a random stream, so two runs over the same simulated times give the same
values however often they are polled. The only state is what a real device integrates or
remembers (energy counters, a room's temperature, the settings written to an A/C unit).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from datetime import datetime, time

from core.types import Value
from drivers.dlt645.profile import Dlt645Profile
from drivers.modbus.profile import Profile
from simulator.clock import SimClock

# --- deterministic noise -----------------------------------------------------------------------


def unit_hash(seed: int, key: str, n: int) -> float:
    """A pseudo-random number in [0, 1) fixed by (seed, key, n)."""
    digest = hashlib.blake2b(f"{seed}:{key}:{n}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def noise(seed: int, key: str, ts: float, period: float) -> float:
    """Smooth value noise in [-1, 1] that changes on the scale of ``period`` seconds."""
    x = ts / period
    n = math.floor(x)
    f = x - n
    f = f * f * (3.0 - 2.0 * f)  # smoothstep: no kinks at the knots
    a = 2.0 * unit_hash(seed, key, n) - 1.0
    b = 2.0 * unit_hash(seed, key, n + 1) - 1.0
    return a + (b - a) * f


def smoothstep(edge0: float, edge1: float, x: float) -> float:
    if x <= edge0:
        return 0.0
    if x >= edge1:
        return 1.0
    u = (x - edge0) / (edge1 - edge0)
    return u * u * (3.0 - 2.0 * u)


def window(start: float, end: float, x: float) -> float:
    """0 outside [start, end], rising as a sine squared to 1 in the middle."""
    if not start < x < end:
        return 0.0
    return math.sin(math.pi * (x - start) / (end - start)) ** 2


def hour_of_day(local: datetime) -> float:
    return local.hour + local.minute / 60.0 + local.second / 3600.0


def solstice_phase(doy: int) -> float:
    """+1 at the summer solstice, -1 at the winter solstice (northern hemisphere)."""
    return math.sin(2.0 * math.pi * (doy - 80) / 365.25)


# --- climate of a Chinese city around 30-32 °N (Shanghai, Nanjing, Wuhan) -----------------------

# Mid-month means. Outdoor air; and the indoor air of an office with its A/C off, which the
# building's mass and internal gains keep warmer than outside in winter.
_OUTDOOR_C = (4.5, 6.5, 10.5, 16.0, 21.5, 25.5, 29.5, 29.0, 25.0, 19.5, 13.5, 7.0)
_INDOOR_FREE_C = (12.0, 13.0, 16.0, 20.0, 25.0, 29.0, 31.0, 31.5, 28.5, 23.5, 18.0, 13.5)


def _monthly(table: Sequence[float], local: datetime) -> float:
    """Linear interpolation between mid-month values, so there is no step on the 1st."""
    month_pos = local.month - 1 + (local.day - 1) / 30.5 - 0.5
    i = math.floor(month_pos)
    f = month_pos - i
    return table[i % 12] * (1.0 - f) + table[(i + 1) % 12] * f


def outdoor_temperature(local: datetime, seed: int = 0) -> float:
    """Outdoor air temperature: monthly mean, ±4 °C daily swing peaking at 15:00, weather noise."""
    daily = 4.0 * math.cos(2.0 * math.pi * (hour_of_day(local) - 15.0) / 24.0)
    weather = 2.0 * noise(seed, "weather", local.timestamp(), 3 * 86400.0)
    return _monthly(_OUTDOOR_C, local) + daily + weather


def indoor_free_temperature(local: datetime, seed: int = 0) -> float:
    """Air temperature of an unconditioned office (summer ~30-32 °C, winter ~12 °C)."""
    daily = 1.0 * math.cos(2.0 * math.pi * (hour_of_day(local) - 16.0) / 24.0)
    weather = 0.8 * noise(seed, "weather", local.timestamp(), 3 * 86400.0)
    return _monthly(_INDOOR_FREE_C, local) + daily + weather


# --- integration of rates over simulated time ---------------------------------------------------


class Integrator:
    """Running integrals of a vector of non-negative rates on a fixed grid of simulated time.

    Left Riemann sums on a grid anchored at ``t0`` make the integral a function of time alone,
    not of how often it is read; between grid points the current rate is extrapolated linearly,
    so a counter still moves between two reads a second apart. A read earlier than the last
    one returns the last value: counters never run backwards.
    """

    MAX_STEPS = 2000  # per read; a longer jump (clock.advance by a month) uses coarser steps

    def __init__(
        self,
        rate: Callable[[float], Sequence[float]],
        t0: float,
        initial: Sequence[float],
        step: float = 60.0,
        on_step: Callable[[float, Sequence[float], Sequence[float]], None] | None = None,
    ) -> None:
        self._rate = rate
        self._step = step
        self._on_step = on_step
        self._grid = t0
        self._acc = [float(x) for x in initial]
        self._r = list(rate(t0))
        self._last_ts = t0
        self._last = list(self._acc)

    def at(self, ts: float) -> list[float]:
        if ts <= self._last_ts:
            return list(self._last)
        gap = ts - self._grid
        step = self._step if gap <= self.MAX_STEPS * self._step else gap / self.MAX_STEPS
        while self._grid + step <= ts:
            for i, r in enumerate(self._r):
                self._acc[i] += r * step
            self._grid += step
            self._r = list(self._rate(self._grid))
            if self._on_step is not None:
                self._on_step(self._grid, self._acc, self._r)
        part = ts - self._grid
        out = [
            max(a + r * part, last)
            for a, r, last in zip(self._acc, self._r, self._last, strict=True)
        ]
        self._last_ts, self._last = ts, out
        return list(out)


def start_of_day(clock: SimClock) -> datetime:
    now = clock.now()
    return datetime.combine(now.date(), time(0), tzinfo=clock.tz)


# --- the models ---------------------------------------------------------------------------------


class DeviceModel:
    """Base of the models: filters to the profile's point names and records writes."""

    def __init__(self, profile: Profile | Dlt645Profile, clock: SimClock, *, seed: int = 0) -> None:
        # A DL/T 645 meter's profile names its points as the Modbus meters' do: the meter
        # models serve both (models only read the point names of a profile).
        self.profile = profile
        self.clock = clock
        self.seed = seed
        self.names = frozenset(p.name for p in profile.points)
        # Every write the device accepted: (simulated time, point, engineering value).
        self.writes: list[tuple[datetime, str, Value]] = []

    def values(self, t: datetime | None = None) -> dict[str, Value]:
        """Engineering values of the profile's points at simulated time ``t`` (default: now)."""
        local = (self.clock.now() if t is None else t).astimezone(self.clock.tz)
        full = self._compute(local)
        return {k: v for k, v in full.items() if k in self.names}

    def _compute(self, local: datetime) -> dict[str, Value]:
        return {}

    def on_write(self, point: str, value: Value) -> None:
        """A Modbus write to a writable point, decoded to its engineering value."""
        self.writes.append((self.clock.now(), point, value))


class StaticModel(DeviceModel):
    """Fixed values (default: none, so every register reads zero); for unknown device kinds."""

    def __init__(
        self,
        profile: Profile,
        clock: SimClock,
        *,
        seed: int = 0,
        fixed: dict[str, Value] | None = None,
    ) -> None:
        super().__init__(profile, clock, seed=seed)
        self.fixed = dict(fixed or {})

    def _compute(self, local: datetime) -> dict[str, Value]:
        return dict(self.fixed)

    def on_write(self, point: str, value: Value) -> None:
        super().on_write(point, value)
        self.fixed[point] = value
