"""Which InfluxDB field types a site writes, and where two definitions disagree.

The rule that picks a point's type is core/field_types.py; this module applies it to the
devices of a site (each device writes its profile's points into the measurement of its kind)
and reports every (measurement, field) that would get two types, so `guanjia check` says so
before anything connects instead of the database refusing every line of one device.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from core.field_types import FieldType
from drivers.contract import PointMeta, ProfileLike
from drivers.registry import driver_of
from gateway.config_errors import LineMap, Problem, load_yaml

# Measurements the gateway writes itself; a device kind of the same name would mix a device's
# fields into them.
GATEWAY_MEASUREMENTS = frozenset({"gateway", "alarm", "audit", "energy"})


def profile_field_types(
    profile: ProfileLike, points: Sequence[str] | None = None
) -> dict[str, FieldType]:
    """The fields a device of this profile writes, with their types (a subset if `points`)."""
    out: dict[str, FieldType] = {}
    for name, ftype in _fields(profile, points):
        out.setdefault(name, ftype)
    return out


def _fields(profile: ProfileLike, points: Sequence[str] | None) -> Iterable[tuple[str, FieldType]]:
    """Every definition of a field, repeated where an MQTT profile maps one name twice."""
    metas: Iterable[PointMeta] = driver_of(profile).definitions(profile, points)
    return ((m.name, m.field_type) for m in metas)


@dataclass(frozen=True, slots=True)
class _Definition:
    type: FieldType
    profile: str
    where: str  # file:line of the point, or the device entry


def _point_lines(path: Path) -> Mapping[str, int]:
    """Line of each point name in a profile file (for error messages only)."""
    try:
        data, lines = load_yaml(path)
    except Exception:  # the profile loaded once already; a line number is only a nicety
        return {}
    return _names_at(data, lines)


def _names_at(data: object, lines: LineMap) -> dict[str, int]:
    found: dict[str, int] = {}
    if not isinstance(data, dict):
        return found
    if isinstance(data.get("points"), list):
        for i, p in enumerate(data["points"]):
            line = lines.line(("points", i, "name"))
            if isinstance(p, dict) and isinstance(p.get("name"), str) and line:
                found.setdefault(p["name"], line)
    for m, message in enumerate(data.get("messages") or []):
        if not isinstance(message, dict):
            continue
        for i, p in enumerate(message.get("points") or []):
            line = lines.line(("messages", m, "points", i, "name"))
            if isinstance(p, dict) and isinstance(p.get("name"), str) and line:
                found.setdefault(p["name"], line)
    return found


@dataclass(frozen=True, slots=True)
class DeviceFields:
    """One enabled device as the storage sees it."""

    index: int  # in the site file's devices list
    kind: str
    profile: ProfileLike
    profile_path: Path
    points: Sequence[str] | None


def type_conflicts(
    site_file: str, lines: LineMap, devices: Iterable[DeviceFields]
) -> list[Problem]:
    """One problem per (measurement, field) written with two types, and per device kind that
    is one of the gateway's own measurements."""
    problems: list[Problem] = []
    seen: dict[tuple[str, str], _Definition] = {}
    reported: set[tuple[str, str]] = set()
    point_lines: dict[Path, Mapping[str, int]] = {}
    for dev in devices:
        loc = ("devices", dev.index)
        if dev.kind in GATEWAY_MEASUREMENTS:
            problems.append(
                Problem(
                    site_file,
                    lines.line((*loc, "kind")) or lines.line(loc),
                    f"devices[{dev.index}].kind",
                    f"'{dev.kind}' is a measurement the gateway writes itself; give the device "
                    "another `kind:` (meter, pv_inverter, hvac, sensor, ...)",
                )
            )
            continue
        if dev.profile_path not in point_lines:
            point_lines[dev.profile_path] = _point_lines(dev.profile_path)
        at = point_lines[dev.profile_path]
        for name, ftype in _fields(dev.profile, dev.points):
            where = f"{dev.profile_path.name}:{at[name]}" if name in at else dev.profile.name
            key = (dev.kind, name)
            first = seen.setdefault(key, _Definition(ftype, dev.profile.name, where))
            if first.type is ftype or key in reported:
                continue
            reported.add(key)
            problems.append(
                Problem(
                    str(dev.profile_path),
                    at.get(name),
                    f"points.{name}",
                    f"measurement '{dev.kind}' field '{name}' would be {ftype.value} here but "
                    f"{first.type.value} in {first.profile} ({first.where}); InfluxDB refuses "
                    "one of them. Give both the same type (Modbus `store: float|integer`, "
                    "MQTT `type:`), or give one device another `kind:`",
                )
            )
    return problems
