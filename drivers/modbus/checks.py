"""The Modbus driver's checks of a site's devices, before anything connects: points the
profile has, units and bases not polled twice on one path, one set of serial settings per
line, one write rate per path, points that fit the device's request size."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from core.text import suggest
from drivers.modbus.config import RtuConnection
from drivers.modbus.driver import ModbusDevice, device_plan
from drivers.modbus.link import LinkKey, link_key
from drivers.modbus.overrides import override_problems
from drivers.modbus.profile import Profile

Loc = tuple[str | int, ...]
Report = Callable[[Loc, str], None]


class ModbusChecks:
    """One per site file: what the devices checked so far use, to find clashes."""

    def __init__(self) -> None:
        # One unit id may front several devices at different bases (a CoolMasterNet's indoor
        # units); the same unit and base twice is the same registers polled twice.
        self._units: dict[tuple[LinkKey, int, int], int] = {}
        self._serial: dict[str, tuple[int, int, str, int]] = {}
        # Each path's max_writes_per_s, with the first device that gave it: one owner paces
        # the path's writes, so its devices must agree (no value is a value: unlimited).
        self._write_rates: dict[LinkKey, tuple[float | None, int]] = {}

    def check(
        self,
        device_id: str,
        conn: Any,
        profile: Profile,
        points: Sequence[str] | None,
        poll: float,
        loc: Loc,
        report: Report,
        _site: Any,
    ) -> None:
        names = {p.name for p in profile.points} | {d.name for d in profile.derived}
        for j, point in enumerate(points or []):
            if point not in names:
                report(
                    (*loc, "points", j),
                    f"profile {profile.name} has no point '{point}'" + suggest(point, names),
                )
        key = link_key(conn)
        base = conn.base if conn.base is not None else profile.base
        index = int(loc[-1])
        owner = self._units.setdefault((key, conn.unit, base), index)
        if owner != index:
            report(
                (*loc, "modbus", "unit"),
                f"unit {conn.unit} at base {base} on {key[1]} is already used by "
                f"devices[{owner}]; give a different unit or base",
            )
        rate, first_at = self._write_rates.setdefault(key, (conn.max_writes_per_s, index))
        if rate != conn.max_writes_per_s:
            report(
                (*loc, "modbus", "max_writes_per_s"),
                f"{key[1]} is paced at {_rate(rate)} by devices[{first_at}], not "
                f"{_rate(conn.max_writes_per_s)}: one owner paces a path's writes; give every "
                "device on it the same max_writes_per_s",
            )
        if isinstance(conn, RtuConnection):
            settings = (conn.baudrate, conn.bytesize, conn.parity, conn.stopbits)
            first = self._serial.setdefault(conn.port, settings)
            if first != settings:
                report(
                    (*loc, "modbus"),
                    f"{conn.port} is already opened with baudrate/bytesize/parity/"
                    f"stopbits {first}; all devices on one line must match",
                )
        for where, message in override_problems(profile, conn.function_overrides):
            report((*loc, "modbus", "function_overrides", *where), message)
        try:  # a point larger than the device's request size cannot be read at all
            device_plan(ModbusDevice(device_id, profile, conn, poll, points))
        except ValueError as exc:
            report((*loc, "modbus"), str(exc))


def _rate(rate: float | None) -> str:
    return "unlimited" if rate is None else f"{rate:g} writes/s"
