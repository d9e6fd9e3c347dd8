"""What every driver tells the gateway about its devices, so the gateway needs no driver's
internals: a device's points (name, unit, storage type, writable range, labels), from its
profile. One driver is one folder with its config model, profile model, this description and
its runtime; drivers/registry.py lists them, one line each."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from pydantic import BaseModel

from core.field_types import FieldType


@dataclass(frozen=True, slots=True)
class PointMeta:
    """One point as the storage, the rules, the commands and the views see it."""

    name: str
    field_type: FieldType
    unit: str = ""
    float_format: str = "%r"  # the digits worth storing (a float32 holds nine)
    writable: tuple[float, float] | None = None  # allowed range of a write, if writable
    labels: Mapping[int, str] = field(default_factory=dict)  # enum labels of coded values
    description: str = ""


class DriverSpec(Protocol):
    """A driver as the gateway knows it at load time."""

    name: str  # the device's key in the site file: `modbus:`, `mqtt:`
    connection_model: type[BaseModel]  # what goes under that key
    profile_model: type[BaseModel]  # a profile file of this driver

    def owns(self, profile_data: object) -> bool:
        """Whether a profile file (as parsed YAML) is one of this driver's."""
        ...

    def describe(self, profile: BaseModel, points: Sequence[str] | None) -> dict[str, PointMeta]:
        """Every point a device of this profile writes (only `points` and what they need,
        when the site names a subset)."""
        ...
