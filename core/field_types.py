"""The storage type of every InfluxDB field, decided in one place.

InfluxDB keeps one type per (measurement, field) and refuses a line whose field has another
type (`field type conflict`); two profiles of one kind that disagree would lose every line of
one of them. So the type is a property of the point's definition, never of the value at hand:

- numbers are stored as floats, whatever register or JSON type carried them;
- integers only where a profile says so on purpose: a Modbus point with `store: integer`, or
  one that declares `enum` or `bits` labels (codes and bit fields), or a SunSpec scale factor;
  an MQTT point with `type: int`;
- booleans and strings as themselves.

A float64 holds every integer up to 2**53 exactly, so storing counters as floats loses nothing
a meter can count. `guanjia check` compares the types of every (measurement, field) the site's
profiles and the gateway's own measurements write, before anything connects.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError


class FieldType(enum.StrEnum):
    FLOAT = "float"
    INTEGER = "integer"
    BOOLEAN = "boolean"
    STRING = "string"


def modbus_field_type(
    dtype: str, *, scaled: bool, coded: bool, store: str | None = None
) -> FieldType:
    """A Modbus point: `dtype` is its register type, `scaled` whether scale, offset or a
    scale factor apply, `coded` whether it declares enum or bit labels, `store` what the
    profile asks for (validated by the profile model: integer only where values are whole)."""
    if dtype == "bool":
        return FieldType.BOOLEAN
    if dtype in ("string", "datetime"):  # a datetime is stored as ISO-8601 text
        return FieldType.STRING
    if store is not None:
        return FieldType(store)
    whole = dtype in _INTEGER_REGISTERS and not scaled
    if whole and (coded or dtype == "sunssf"):
        return FieldType.INTEGER
    return FieldType.FLOAT


def json_field_type(declared: str) -> FieldType:
    """An MQTT (JSON) point: its `type` says what it stores."""
    return _JSON_TYPES[declared]


_INTEGER_REGISTERS = frozenset({"int16", "uint16", "int32", "uint32", "int64", "uint64", "sunssf"})
_JSON_TYPES: Mapping[str, FieldType] = {
    "float": FieldType.FLOAT,
    "int": FieldType.INTEGER,
    "bool": FieldType.BOOLEAN,
    "str": FieldType.STRING,
}


def float_format(dtype: str, scaled: bool) -> str:
    """Digits worth storing for a value decoded from this register type.

    A float32 holds at most 9 significant digits and a 16-bit register times a scale fewer;
    printing them with repr() stores float noise (230.20000000000002) and costs twice the CPU.
    Wider types keep every digit.
    """
    if dtype == "float32" or (dtype in ("int16", "uint16", "sunssf") and scaled):
        return "%.9g"
    if dtype in ("int32", "uint32") and scaled:
        return "%.12g"
    return "%r"


def check_one_type_per_point(model: str, key: str, groups: Sequence[Any]) -> None:
    """Refuse a profile whose point (by name) has two types across its groups (`messages`,
    `events`): InfluxDB keeps one type per field. The error names the later declaration,
    `<key>[i].points[j].type`, where the fix goes."""
    first: dict[str, tuple[int, str]] = {}
    for i, group in enumerate(groups):
        for j, p in enumerate(group.points):
            seen = first.setdefault(p.name, (i, p.type))
            if seen[1] != p.type:
                message = (
                    f"point {p.name!r} is {p.type} here and {seen[1]} in {key}[{seen[0]}]; "
                    "InfluxDB keeps one type per field: give both the same type, or rename "
                    "one of them"
                )
                error = PydanticCustomError("value_error", message)
                loc = (key, i, "points", j, "type")
                detail = InitErrorDetails(type=error, loc=loc, input=p.type)
                raise ValidationError.from_exception_data(model, [detail])
