"""Simulated local time that may run faster than the wall clock, so the demo can fast-forward."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo


class SimClock:
    """Local time at the site, running ``speed`` times faster than the wall clock from ``start``.

    A naive ``start`` is taken as local time in ``tz``. The monotonic clock drives it, so a
    wall-clock step (NTP, a suspended laptop) never makes simulated time, and with it the
    simulated energy counters, run backwards.
    """

    def __init__(
        self, speed: float = 1.0, start: datetime | None = None, tz: str = "Asia/Shanghai"
    ) -> None:
        if speed < 0:
            raise ValueError(f"speed must be >= 0, not {speed}")
        self.tz = ZoneInfo(tz)
        self._speed = float(speed)
        if start is None:
            start = datetime.now(self.tz)
        elif start.tzinfo is None:
            start = start.replace(tzinfo=self.tz)
        # Kept in UTC: aware-datetime arithmetic in a local zone is wall-clock arithmetic and
        # would be off by an hour across a DST change in zones that have one.
        self._origin = start.astimezone(UTC)
        self._mono0 = time.monotonic()

    @property
    def speed(self) -> float:
        return self._speed

    @speed.setter
    def speed(self, speed: float) -> None:
        """Change the speed from now on, without a jump in simulated time."""
        if speed < 0:
            raise ValueError(f"speed must be >= 0, not {speed}")
        self._origin = self.now().astimezone(UTC)
        self._mono0 = time.monotonic()
        self._speed = float(speed)

    def now(self) -> datetime:
        """Simulated local time, time-zone aware."""
        elapsed = (time.monotonic() - self._mono0) * self._speed
        return (self._origin + timedelta(seconds=elapsed)).astimezone(self.tz)

    def advance(self, seconds: float) -> None:
        """Jump simulated time forward (tests, the demo's "skip to tomorrow")."""
        if seconds < 0:
            raise ValueError("simulated time only runs forward")
        self._origin += timedelta(seconds=seconds)

    def __repr__(self) -> str:
        return f"SimClock(speed={self._speed:g}, now={self.now().isoformat(timespec='seconds')})"
