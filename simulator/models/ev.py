"""EV chargers in an office car park: one car a working day, plugged in on arrival, charged until
full and unplugged when its driver leaves."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from core.types import Value
from drivers.modbus.profile import Profile
from simulator.clock import SimClock
from simulator.models.base import DeviceModel, Integrator, noise, start_of_day, unit_hash

# IEC 61851 states numbered as the ABB Terra AC numbers them (0 A, 1 B1, 2 B2, 3 C1, 4 C2, 5
# other), and its socket codes: the only charger profile so far.
STATE_IDLE = 0  # A
STATE_READY = 2  # B2: plugged in, EVSE ready, the car draws nothing (full)
STATE_CHARGING = 4  # C2
SOCKET_EMPTY = 0x0000
SOCKET_PLUGGED_LOCKED = 0x0111  # cable in the station and the car, locked


@dataclass(frozen=True, slots=True)
class Session:
    """One day's charging session, in local hours of that day."""

    arrive_h: float
    leave_h: float
    energy_kwh: float

    def charging_until(self, power_kw: float) -> float:
        return min(self.arrive_h + self.energy_kwh / power_kw, self.leave_h)


class EvCharger(DeviceModel):
    """A three-phase AC wallbox (11 kW at 16 A by default) and the car of one member of staff.

    On working days the car arrives between 08:00 and 09:15, needs 8-30 kWh and leaves between
    17:30 and 19:00; weekends the bay stays empty. Values by the project's names: ``state`` and
    ``socket_lock_state`` (ABB coding, above), ``active_power_w``, per-phase currents and
    voltages, ``energy_session_kwh`` (kept after unplugging until the next session, as wallboxes
    show it), ``energy_total_kwh``.
    """

    def __init__(
        self,
        profile: Profile,
        clock: SimClock,
        *,
        current_limit_a: float = 16.0,
        rated_current_a: float = 32.0,
        seed: int = 0,
    ) -> None:
        super().__init__(profile, clock, seed=seed)
        self.current_limit_a = current_limit_a
        self.rated_current_a = rated_current_a
        self.power_kw = 3.0 * 230.0 * current_limit_a / 1000.0
        midnight = start_of_day(clock)
        e0_kwh = 2000.0 + 4000.0 * unit_hash(seed, "age", 0)
        self._energy = Integrator(self._rates, midnight.timestamp(), [e0_kwh * 3.6e6])

    def session(self, day: date) -> Session | None:
        if day.weekday() >= 5:
            return None
        n = day.toordinal()
        return Session(
            arrive_h=8.0 + 1.25 * unit_hash(self.seed, "arrive", n),
            leave_h=17.5 + 1.5 * unit_hash(self.seed, "leave", n),
            energy_kwh=8.0 + 22.0 * unit_hash(self.seed, "need", n),
        )

    def _hour(self, ts: float) -> tuple[date, float]:
        local = datetime.fromtimestamp(ts, self.clock.tz)
        midnight = datetime.combine(local.date(), time(0), tzinfo=self.clock.tz)
        return local.date(), (local - midnight) / timedelta(hours=1)

    def power_w(self, ts: float) -> float:
        day, h = self._hour(ts)
        s = self.session(day)
        if s is None or not s.arrive_h <= h < s.charging_until(self.power_kw):
            return 0.0
        return self.power_kw * 1000.0

    def _rates(self, ts: float) -> Sequence[float]:
        return [self.power_w(ts)]

    def energy_total_kwh(self, ts: float) -> float:
        """Lifetime energy delivered (kWh); a counter, never running backwards."""
        return self._energy.at(ts)[0] / 3.6e6

    def _compute(self, local: datetime) -> dict[str, Value]:
        ts = local.timestamp()
        day, h = self._hour(ts)
        s = self.session(day)
        plugged = s is not None and s.arrive_h <= h < s.leave_h
        power = self.power_w(ts)
        charging = power > 0.0
        if charging:
            power *= 1.0 + 0.01 * noise(self.seed, "p", ts, 30.0)
        # The session's energy: today's if a car came today, else the last working day's.
        last = s if s is not None and h >= s.arrive_h else self._previous_session(day)
        if last is None:
            session_kwh = 0.0
        elif last is s:
            session_kwh = self.power_kw * (min(h, s.charging_until(self.power_kw)) - s.arrive_h)
        else:
            session_kwh = self.power_kw * (last.charging_until(self.power_kw) - last.arrive_h)
        volts = [230.0 * (1.0 + 0.01 * noise(self.seed, f"v{i}", ts, 900.0)) for i in range(3)]
        out: dict[str, Value] = {
            "state": STATE_CHARGING if charging else (STATE_READY if plugged else STATE_IDLE),
            "socket_lock_state": SOCKET_PLUGGED_LOCKED if plugged else SOCKET_EMPTY,
            "below_rated_current": False,
            "error_code": 0,
            "max_rated_current_a": self.rated_current_a,
            "current_limit_a": self.current_limit_a,
            "active_power_w": power,
            "energy_session_kwh": max(session_kwh, 0.0),
            "energy_total_kwh": self.energy_total_kwh(ts),
            "comm_timeout_s": 600,
        }
        for i, v in enumerate(volts):
            out[f"voltage_l{i + 1}_v"] = v
            out[f"current_l{i + 1}_a"] = power / 3.0 / v if charging else 0.0
        return out

    def _previous_session(self, day: date) -> Session | None:
        for back in range(1, 8):
            s = self.session(day - timedelta(days=back))
            if s is not None:
                return s
        return None
