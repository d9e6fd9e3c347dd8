"""What every driver tells the gateway about its devices' points (name, unit, storage type,
writable range, labels), from their profile, so the gateway needs no driver's internals. One
driver is one folder with its config model, profile model, checks, this description and its
runtime; drivers/registry.py lists them, one entry each."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

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
