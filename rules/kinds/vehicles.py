"""Vehicle rules: a speeding vehicle, and an unknown plate after office hours.

Point names are those of the vehicle profiles (hikvision_isapi_anpr_camera,
dahua_traffic_camera): one Sample per vehicle with `vehicle` true, `plate`, `speed_kmh`,
`lane`, `direction`. A camera's other Samples (video loss, keep-alives' `available`) are passed
over at the cost of one lookup.

Subjects: one alarm per camera and plate (`<device>:<plate>`), so two speeding cars are two
alarms and the same car passing again keeps its alarm raised; a vehicle whose plate was not
read is `<device>:unread`. The alarms are raised by events, which never end: each clears
`clear_after` after its vehicle was last seen. Plates are compared as normalize_plate()
writes them, so "京A·12345" in the allow list is the "京A12345" a camera reads.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

from pydantic import Field, field_validator

from core.config_types import Duration
from core.types import Sample, Value
from rules.blocks import OfficeHours
from rules.kinds.base import DeviceRule
from rules.model import Context, Effect, RuleParams, Scope

UNREAD = "unread"
# What cameras write when they read no plate (Hikvision 无车牌, "unknown"; Dahua an empty one).
_NO_PLATE = frozenset({"", "无车牌", "UNKNOWN", "NOPLATE", "NONE", "车牌", "-"})
_SEPARATORS = re.compile(r"[\s·•・.\-_]+")


def normalize_plate(raw: Value | None) -> str:
    """A plate as the rules compare it: upper case, without spaces, dots or dashes; `unread`
    when the camera read none."""
    if raw is None or isinstance(raw, bool):
        return UNREAD
    text = _SEPARATORS.sub("", str(raw)).upper()
    return UNREAD if text in _NO_PLATE else text


def _camera_scope() -> Scope:
    return Scope(kinds=["camera"])


class _VehicleParams(RuleParams):
    scope: Scope = Field(
        default_factory=_camera_scope, description="Cameras (ANPR and traffic cameras)."
    )
    plate_point: str = Field(default="plate", description="Point carrying the plate.")
    clear_after: Duration = Field(
        default=600.0,
        gt=0,
        description="An alarm clears this long after its vehicle was last seen (vehicles send "
        "no all-clear).",
    )


VP = TypeVar("VP", bound=_VehicleParams, covariant=True)


class _VehicleRule(DeviceRule[VP]):
    """The alarms of vehicle events: one per camera and plate, cleared by age."""

    def subject(self, sample: Sample) -> tuple[str, str]:
        plate = normalize_plate(sample.values.get(self.params.plate_point))
        return f"{sample.device}:{plate}", plate

    def on_tick(self, ctx: Context) -> Iterable[Effect]:
        return self.expire(ctx, self.params.clear_after)

    def snapshot(self) -> dict[str, Any]:
        return {**self.alarms.snapshot(), "last": dict(self.last)}

    def restore(self, state: Mapping[str, Any]) -> None:
        self.alarms.restore(state)
        self.last = {str(k): float(v) for k, v in state.get("last", {}).items()}


class SpeedingParams(_VehicleParams):
    limit_kmh: float = Field(
        gt=0, le=400, description="Speed limit in km/h: a vehicle above it raises the alarm."
    )
    speed_point: str = Field(default="speed_kmh", description="Point carrying the speed (km/h).")
    per_lane: dict[int, float] = Field(
        default_factory=dict,
        description="Limits of single lanes, by the lane number the camera sends, e.g. "
        "{2: 20} for a lane past the entrance.",
    )

    @field_validator("per_lane")
    @classmethod
    def _limits(cls, value: dict[int, float]) -> dict[int, float]:
        for lane, limit in value.items():
            if not 0 < limit <= 400:
                raise ValueError(f"lane {lane}: limit {limit:g} km/h, expected above 0 up to 400")
        return value


class SpeedingRule(_VehicleRule[SpeedingParams]):
    """A vehicle faster than the limit. A speed of 0 is a camera that measured none."""

    kind = "vehicle_speeding"

    def on_sample(self, sample: Sample, ctx: Context) -> Iterable[Effect]:
        values = sample.values
        speed = values.get(self.params.speed_point)
        if not isinstance(speed, int | float) or isinstance(speed, bool) or speed <= 0:
            return ()
        lane = values.get("lane")
        limit = self.params.limit_kmh
        if isinstance(lane, int) and not isinstance(lane, bool):
            limit = self.params.per_lane.get(lane, limit)
        if speed <= limit:
            return ()
        subject, plate = self.subject(sample)
        self.last[subject] = sample.ts / 1e9
        details = self.details(sample.device, ctx, plate=plate)
        for key in ("lane", "direction"):
            value = values.get(key)
            if value is not None:
                details[key] = value
        # Again for every pass: a faster pass of the same car updates the alarm's speed.
        return self.alarms.raise_alarm(
            subject,
            "vehicle_speeding",
            value=round(float(speed), 1),
            limit=limit,
            grade=self.params.grade,
            details=details,
            again=True,
        )

    def describe(self) -> str:
        p = self.params
        lanes = f", {len(p.per_lane)} lane limits" if p.per_lane else ""
        return f"{p.speed_point} above {p.limit_kmh:g} km/h{lanes} -> vehicle_speeding"


class UnknownPlateParams(_VehicleParams):
    allowed_plates: list[str] = Field(
        default_factory=list,
        description="Plates that may come and go at any hour (staff, duty cars), as written on "
        "the plate, e.g. 京A12345; spaces, dots and dashes do not matter.",
    )
    event_point: str = Field(
        default="vehicle", description="Point whose true value is one vehicle passing."
    )
    unread_plates: bool = Field(
        default=True,
        description="A vehicle whose plate the camera could not read counts as unknown.",
    )
    breaks_up_to: Duration = Field(
        default=7200.0,
        description="Gaps in office hours up to this long with office hours on both sides "
        "(a lunch break in the calendar) count as office hours.",
    )

    @field_validator("allowed_plates")
    @classmethod
    def _plates(cls, value: list[str]) -> list[str]:
        for plate in value:
            if normalize_plate(plate) == UNREAD:
                raise ValueError(f"{plate!r} is no plate; write it as on the car, e.g. 京A12345")
        return value


class UnknownPlateRule(_VehicleRule[UnknownPlateParams]):
    """A vehicle not in the allow list, outside office hours by the site calendar."""

    kind = "unknown_vehicle"

    def __init__(self, rule_id: str, params: UnknownPlateParams) -> None:
        super().__init__(rule_id, params)
        self.hours = OfficeHours(params.breaks_up_to)
        self.allowed = frozenset(normalize_plate(p) for p in params.allowed_plates)

    def on_sample(self, sample: Sample, ctx: Context) -> Iterable[Effect]:
        values = sample.values
        if values.get(self.params.event_point) is not True:
            return ()
        subject, plate = self.subject(sample)
        if plate in self.allowed or (plate == UNREAD and not self.params.unread_plates):
            return ()
        t = sample.ts / 1e9
        if not self.hours.after_hours(ctx.calendar, t, ctx.now.tzinfo):
            return ()
        self.last[subject] = t
        if subject in self.alarms:
            return ()
        details = self.details(sample.device, ctx, plate=plate)
        for key in ("lane", "direction"):
            value = values.get(key)
            if value is not None:
                details[key] = value
        return self.alarms.raise_alarm(
            subject, "unknown_plate_after_hours", grade=self.params.grade, details=details
        )

    def describe(self) -> str:
        p = self.params
        unread = ", unread plates too" if p.unread_plates else ""
        return (
            f"{p.event_point} after office hours with a plate outside "
            f"{len(p.allowed_plates)} allowed{unread} -> unknown_plate_after_hours"
        )
