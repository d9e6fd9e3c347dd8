"""DL/T 645 meter profiles: which data identifiers a meter model answers, and how to read them.

A point names its data identifier (``di``, the standard's DI3 DI2 DI1 DI0 in hex, e.g.
``"00010000"`` forward active energy, total), its format as the standard's tables write it
(``XXXXXX.XX``), whether the top bit of its highest byte is a sign, and its unit. A block
identifier (FF in place of the phase or tariff, e.g. ``0201FF00``: the voltages of phases A, B
and C) answers several items of one format in one read; each point of it says which ``item`` it
is (0 the first). The driver reads each identifier once per poll, so the points of a block cost
one request.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from core.config_types import Range
from drivers.dlt645.codec import MAX_DATA, Format, parse_format

_DI = re.compile(r"^[0-9A-F]{8}$")


def _di(value: Any) -> Any:
    if isinstance(value, int | float):  # bool too
        raise ValueError(
            'write the data identifier in quotes, e.g. di: "00010000": unquoted, YAML '
            "reads it as a number and drops its leading zeros"
        )
    if isinstance(value, str):
        if not _DI.match(value.upper()):
            raise ValueError(
                f"'{value}' is not a data identifier: 8 hex digits, DI3 first, as the "
                'standard\'s tables write it (e.g. "0201FF00")'
            )
        return value.upper()
    return value


DataIdentifier = Annotated[
    str,
    BeforeValidator(_di),
    Field(pattern=r"^[0-9A-Fa-f]{8}$", description='Data identifier DI3..DI0, e.g. "00010000".'),
]


def _format(value: Any) -> Any:
    if isinstance(value, str):
        parse_format(value)  # raises with the fix
    return value


FormatText = Annotated[
    str,
    BeforeValidator(_format),
    Field(
        pattern=r"^X+(\.X+)?$",
        description="Data format as the standard's tables write it: XXXXXX.XX, XXX.X, X.XXX.",
    ),
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Dlt645Point(_Strict):
    """One value a meter answers."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$", description="Field name in InfluxDB.")
    di: DataIdentifier
    item: int = Field(
        default=0,
        ge=0,
        le=63,
        description="Which item of the identifier's answer (0 the first): a block such as "
        "0201FF00 answers phases A, B, C as items 0, 1, 2.",
    )
    format: FormatText
    signed: bool = Field(
        default=False,
        description="The top bit of the highest byte is the sign (current, power, power "
        "factor, combined energy).",
    )
    scale: float = Field(
        default=1.0,
        description="Multiplies the value: 1000 stores a kW item in W, as the other meter "
        "profiles do.",
    )
    unit: str = Field(default="", description="Unit after scaling.")
    description: str = Field(default="", description="What it means.")
    valid: Range | None = Field(default=None, description="Plausible range; outside is bad.")

    @property
    def data_format(self) -> Format:
        return parse_format(self.format)

    @property
    def identifier(self) -> int:
        return int(self.di, 16)


class Dlt645Profile(_Strict):
    """A meter model that speaks DL/T 645-2007."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$", description="Must match the file name.")
    protocol: Literal["dlt645"] = Field(description="`dlt645`")
    description: str = Field(default="", description="Vendor, models.")
    kind: str = Field(default="meter", pattern=r"^[a-z][a-z0-9_]*$", description="Measurement.")
    sources: list[str] = Field(default_factory=list, description="Where the identifiers come from.")
    points: list[Dlt645Point] = Field(min_length=1, description="The values read.")

    @model_validator(mode="after")
    def _consistent(self) -> Dlt645Profile:
        """Errors name the later point's key, where the fix goes."""
        names: set[str] = set()
        items: dict[tuple[str, int], str] = {}
        widths: dict[str, tuple[int, str]] = {}
        for j, p in enumerate(self.points):
            if p.name in names:
                _fail(
                    ("points", j, "name"), f"point '{p.name}' is defined twice; rename one", p.name
                )
            names.add(p.name)
            other = items.setdefault((p.di, p.item), p.name)
            if other != p.name:
                _fail(
                    ("points", j, "item"),
                    f"'{other}' is already item {p.item} of DI {p.di}; give another item",
                    p.item,
                )
            size = p.data_format.size
            width, first = widths.setdefault(p.di, (size, p.name))
            if width != size:
                _fail(
                    ("points", j, "format"),
                    f"'{first}' reads DI {p.di} as {width} bytes, this point as {size}: the "
                    "items of one identifier share their format",
                    p.format,
                )
            if 4 + (p.item + 1) * size > MAX_DATA:
                _fail(
                    ("points", j, "item"),
                    f"item {p.item} of {size} bytes ends past the {MAX_DATA} data bytes an "
                    "answer may carry",
                    p.item,
                )
        return self


def _fail(loc: tuple[str | int, ...], message: str, value: Any) -> None:
    error = PydanticCustomError("value_error", message)
    raise ValidationError.from_exception_data(
        Dlt645Profile.__name__, [InitErrorDetails(type=error, loc=loc, input=value)]
    )
