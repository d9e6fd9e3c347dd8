"""Alarm texts: one place that turns an Alarm into its Chinese and English lines.

The gateway (log, InfluxDB `alarm` measurement, retained MQTT state, live view) and
`guanjia alarms` both render through AlarmTexts, so a text reads the same wherever it is shown.

What a text says comes from the alarm as the book holds it: its value and limit as of its last
raised or updated transition, and the details the rule reported then. The catalog's templates
name common fields (place, device, value, limit, unit) and each kind's own; most of a kind's own
fields are in the details, the rest are derived here from the value and limit (minutes from
seconds, a direction from value against limit). A field that cannot be known is left out, so the
catalog uses the kind's fallback text instead of printing "?".
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from core.types import Value
from rules.alarms import Alarm
from rules.catalog import Catalog
from rules.model import DeviceInfo
from rules.numbers import as_float

UNITS: dict[str, str] = {"degC": "°C", "deg": "°"}
"""Profile units as people read them."""

# Units of kinds whose value is no point of the device.
_KIND_UNITS: dict[str, str] = {
    "quota_pace_warning": "kWh",
    "quota_exceeded": "kWh",
    "recorder_disk_full": "%",
}

# {direction_zh}, {direction_en} of a limit check, when the rule gave only "above" or "below".
_DIRECTIONS: dict[str, tuple[str, str]] = {
    "above": ("高于上限", "above the limit"),
    "below": ("低于下限", "below the limit"),
}


def _minutes(seconds: object) -> float | None:
    s = as_float(seconds)
    return None if s is None else round(s / 60.0, 1)


def _direction(alarm: Alarm, out: dict[str, Value | None]) -> None:
    d = alarm.details
    if "direction_zh" in d and "direction_en" in d:
        return
    direction = d.get("direction")
    value, limit = as_float(alarm.value), as_float(alarm.limit)
    if direction is None and value is not None and limit is not None:
        direction = "above" if value > limit else "below"
    if direction in _DIRECTIONS:
        out["direction_zh"], out["direction_en"] = _DIRECTIONS[str(direction)]


def _offline(alarm: Alarm, out: dict[str, Value | None]) -> None:
    out["minutes"] = _minutes(alarm.value)


def _held_open(alarm: Alarm, out: dict[str, Value | None]) -> None:
    seconds = as_float(alarm.details.get("seconds", alarm.value))
    out["seconds"] = None if seconds is None else round(seconds)


def _stuck(alarm: Alarm, out: dict[str, Value | None]) -> None:
    seconds = as_float(alarm.details.get("stuck_s", alarm.limit))
    out["hours"] = None if seconds is None else round(seconds / 3600.0, 1)


def _invalid_cards(alarm: Alarm, out: dict[str, Value | None]) -> None:
    out["count"] = alarm.details.get("count", alarm.value)
    out["minutes"] = _minutes(alarm.details.get("window_s"))


def _quota(alarm: Alarm, out: dict[str, Value | None]) -> None:
    period = alarm.details.get("period", "")
    out["quota"] = f"{alarm.rule} {period}".strip()
    out["used"] = alarm.details.get("so_far_kwh")


def _access(alarm: Alarm, out: dict[str, Value | None]) -> None:
    d = alarm.details
    out["person"] = d.get("person") or d.get("employee_no") or d.get("card_no") or None


def _fault(alarm: Alarm, out: dict[str, Value | None]) -> None:
    out["code"] = alarm.details.get("code", alarm.value)


_DERIVED: dict[str, Callable[[Alarm, dict[str, Value | None]], None]] = {
    "ac_setpoint_violation": _direction,
    "threshold": _direction,
    "meter_offline": _offline,
    "camera_offline": _offline,
    "device_offline": _offline,
    "door_held_open": _held_open,
    "meter_stuck": _stuck,
    "invalid_cards_repeated": _invalid_cards,
    "quota_pace_warning": _quota,
    "quota_exceeded": _quota,
    "after_hours_access": _access,
    "inverter_fault": _fault,
}


def device_of(alarm: Alarm) -> str:
    """The device an alarm is about: its details say, else the subject's device part."""
    return str(alarm.details.get("device") or alarm.subject.split(":", 1)[0])


class AlarmTexts:
    """Renders alarms with the site's catalog and what it knows of its devices."""

    def __init__(self, catalog: Catalog, devices: Mapping[str, DeviceInfo]) -> None:
        self.catalog = catalog
        self.devices = devices

    def params(self, alarm: Alarm) -> dict[str, Value | None]:
        """Every template field this alarm can fill; None for what is not known."""
        device_id = device_of(alarm)
        info = self.devices.get(device_id)
        out: dict[str, Value | None] = dict(alarm.details)
        place = alarm.details.get("place") or (info.place() if info is not None else "")
        out["place"] = place or device_id
        out["device"] = device_id
        # A boolean is a state, never a quantity a text can print ("True %").
        out["value"] = None if isinstance(alarm.value, bool) else alarm.value
        out["limit"] = None if isinstance(alarm.limit, bool) else alarm.limit
        out["unit"] = self.unit(alarm, info)
        derive = _DERIVED.get(alarm.kind)
        if derive is not None:
            derive(alarm, out)
        return out

    def unit(self, alarm: Alarm, info: DeviceInfo | None) -> str:
        if alarm.kind in _KIND_UNITS:
            return _KIND_UNITS[alarm.kind]
        point = alarm.details.get("point")
        unit = ""
        if info is not None and isinstance(point, str) and point in info.points:
            unit = info.points[point].unit
        if not unit and alarm.kind.startswith("ac_"):
            unit = "degC"  # AC setpoints: the CoolMasterNet profile says degC
        return UNITS.get(unit, unit)

    def render(self, alarm: Alarm) -> tuple[str, str]:
        """(Chinese, English)."""
        params = self.params(alarm)
        return (
            self.catalog.text(alarm.kind, "zh", **params),
            self.catalog.text(alarm.kind, "en", **params),
        )
