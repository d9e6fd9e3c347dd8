"""Modbus device profiles: a device model's register map as data (config/profiles/*.yaml)."""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StrictInt,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from core.config_types import Range
from core.field_types import FieldType, modbus_field_type
from drivers.modbus.derived import Derived


class Function(enum.StrEnum):
    """The Modbus data table a point lives in."""

    COIL = "coil"  # FC01 read, FC05/FC15 write
    DISCRETE = "discrete"  # FC02
    HOLDING = "holding"  # FC03 read, FC06/FC16 write
    INPUT = "input"  # FC04

    @property
    def is_bit(self) -> bool:
        return self in (Function.COIL, Function.DISCRETE)


class DataType(enum.StrEnum):
    INT16 = "int16"
    UINT16 = "uint16"
    INT32 = "int32"
    UINT32 = "uint32"
    INT64 = "int64"
    UINT64 = "uint64"
    FLOAT32 = "float32"
    FLOAT64 = "float64"
    STRING = "string"
    BOOL = "bool"  # a coil or discrete input, or one bit of a register (with ``bit``)
    SUNSSF = "sunssf"  # SunSpec scale-factor exponent: int16, value = raw * 10**sf
    DATETIME = "datetime"  # a date and time packed into registers as its `layout` says


class DatetimeLayout(enum.StrEnum):
    """How a device packs a date and time into registers (`type: datetime`)."""

    # Three registers of two bytes each, high byte first: YY MM, DD hh, mm ss; the year is
    # 2000 + YY. BCD (0x26 is 26) or binary (26 is 26).
    YYMMDDHHMMSS_BCD = "yymmddhhmmss_bcd"
    YYMMDDHHMMSS_BINARY = "yymmddhhmmss_binary"
    # Six registers, one number each: year (2026, or 26 for 2026), month, day, hour, minute,
    # second.
    REGISTERS_YMDHMS = "registers_ymdhms"
    # Seconds since 1970-01-01 UTC as an unsigned 32-bit number (two registers; `word_order`
    # applies).
    UNIX_SECONDS = "unix_seconds"


LAYOUT_REGISTERS: dict[DatetimeLayout, int] = {
    DatetimeLayout.YYMMDDHHMMSS_BCD: 3,
    DatetimeLayout.YYMMDDHHMMSS_BINARY: 3,
    DatetimeLayout.REGISTERS_YMDHMS: 6,
    DatetimeLayout.UNIX_SECONDS: 2,
}


class Decode(enum.StrEnum):
    """Named piecewise decodes, applied to the engineering value (after scale and offset)."""

    # Schneider PowerLogic PM5xxx / iEM3xxx four-quadrant PF register: -2..2 carries the
    # quadrant; PF = v for -1..1, 2 - v above 1, -2 - v below -1 (sign: IEC, the direction
    # of active power).
    PF_FOUR_QUADRANT = "pf_four_quadrant"


REGISTERS_PER_TYPE: dict[DataType, int] = {
    DataType.INT16: 1,
    DataType.UINT16: 1,
    DataType.SUNSSF: 1,
    DataType.BOOL: 1,
    DataType.INT32: 2,
    DataType.UINT32: 2,
    DataType.FLOAT32: 2,
    DataType.INT64: 4,
    DataType.UINT64: 4,
    DataType.FLOAT64: 4,
}

Order = Literal["big", "little"]

# A "not available" sentinel as the datasheet writes it (see `sentinel_words`).
Sentinel = StrictInt | str | list[StrictInt]
Loc = tuple[str | int, ...]
# The highest register number a profile may write: 465536 is holding register 65535 in
# six-digit Modicon notation. Unrolled profiles hold 0-based addresses up to 65535 (blocks.py).
MAX_WRITTEN_ADDRESS = 465536


def sentinel_words(sentinel: Sentinel, registers: int) -> tuple[int, ...]:
    """The register words a sentinel names, in address order (register `address` first).

    Words are compared as the device sends them, before any word or byte swapping: what a
    register dump or a Modbus poll tool shows. A sentinel is one number for all the point's
    registers, high word first (`0xFFFF`, `0x7FFFFFFF` = `0x7FFF 0xFFFF`), or its words one by
    one (`"0x8000 0x0000"` or `[0x8000, 0]`). Raises ValueError saying why it can never match.
    """
    if isinstance(sentinel, str):
        tokens = sentinel.replace(",", " ").split()
        try:
            numbers = [int(token, 0) for token in tokens]
        except ValueError:
            raise ValueError(
                f"{sentinel!r} is not a list of register words; write them in hex, e.g. "
                f"'{' '.join(['0xFFFF'] * registers)}'"
            ) from None
        if len(numbers) == 1:
            return sentinel_words(numbers[0], registers)
        words = numbers
    elif isinstance(sentinel, int):
        width = 16 * registers
        if sentinel < 0:
            raise ValueError(
                f"{sentinel} is negative, and a register holds no sign: write the register "
                f"words the device sends ({sentinel} is {sentinel & ((1 << width) - 1):#x} "
                f"in {registers} register{'s' if registers > 1 else ''})"
            )
        if sentinel >> width:
            raise ValueError(
                f"{sentinel:#x} does not fit in {registers} register{'s' if registers > 1 else ''}"
                f" ({width} bits)"
            )
        return tuple(sentinel >> (16 * (registers - 1 - i)) & 0xFFFF for i in range(registers))
    else:
        words = list(sentinel)
    if len(words) != registers:
        raise ValueError(
            f"{len(words)} register word{'s' if len(words) != 1 else ''} given, the point has "
            f"{registers}; write one word per register, e.g. '{' '.join(['0xFFFF'] * registers)}'"
        )
    for word in words:
        if not 0 <= word <= 0xFFFF:
            raise ValueError(f"{word} is not a register word (0 .. 0xFFFF)")
    return tuple(words)


_WHOLE_TYPES = frozenset(
    {
        DataType.INT16,
        DataType.UINT16,
        DataType.INT32,
        DataType.UINT32,
        DataType.INT64,
        DataType.UINT64,
        DataType.SUNSSF,
    }
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_enum_values=False)


class Point(_Strict):
    """One value of the device: where it lives, how it is encoded, what it means."""

    name: str = Field(
        pattern=r"^[a-z][a-z0-9_]*$",
        description="Field name in InfluxDB; lower snake case, unit in the name where it helps.",
    )
    address: int = Field(
        ge=0,
        le=MAX_WRITTEN_ADDRESS,
        description="Register address relative to the base, numbered as the profile's "
        "`addressing` says (by default 0-based protocol (PDU) addresses).",
    )
    function: Function | None = Field(
        default=None, description="Data table; defaults to the profile's `defaults.function`."
    )
    type: DataType | None = Field(
        default=None, description="Encoding; defaults to the profile's `defaults.type`."
    )
    length: int | None = Field(
        default=None, ge=1, le=125, description="Registers of a `string` point (2 chars each)."
    )
    bit: int | None = Field(
        default=None, ge=0, le=15, description="For `type: bool` on a register: the bit number."
    )
    field: tuple[Annotated[int, Field(ge=0, le=63)], Annotated[int, Field(ge=0, le=63)]] | None = (
        Field(
            default=None,
            description="[first, last]: the bits (inclusive, 0 = least significant) of the "
            "register's value that hold this point, e.g. a mode in bits 0-3 is [0, 3], the high "
            "byte [8, 15]. The value is those bits shifted down (a signed type reads them as "
            "a signed number of the field's width); writing replaces only these bits "
            "(read-modify-write).",
        )
    )
    layout: DatetimeLayout | None = Field(
        default=None,
        description="For `type: datetime`: how the registers pack the date and time.",
    )
    decode: Decode | None = Field(
        default=None,
        description="A named piecewise decode applied after scale and offset, e.g. "
        "`pf_four_quadrant` (Schneider PM5xxx power factor register, -2..2).",
    )
    word_order: Order | None = Field(
        default=None, description="`big`: high word first (ABCD); `little`: low word first."
    )
    byte_order: Order | None = Field(
        default=None, description="Byte order inside each 16-bit register."
    )
    scale: float = Field(default=1.0, description="Engineering value = raw × scale + offset.")
    offset: float = Field(default=0.0, description="Added after scaling.")
    scale_factor: str | None = Field(
        default=None,
        description="Name of a `sunssf` point whose value is a power-of-ten exponent for this one.",
    )
    scale_by: list[str] | None = Field(
        default=None,
        min_length=1,
        description="Names of other points (read in the same poll) whose values multiply "
        "this one: secondary values × PT × CT ratios, e.g. [pt_ratio, ct_ratio].",
    )
    unit: str = Field(default="", description="Unit of the engineering value (V, A, W, kWh, degC).")
    description: str = Field(default="", description="What the point means, for people.")
    enum: dict[int, str] | None = Field(
        default=None,
        description="Labels of coded values (the stored value stays the number); a float value "
        "is labelled when it is a whole number.",
    )
    bits: dict[int, str] | None = Field(
        default=None,
        description="Labels of the bits of an unscaled integer register, by bit number.",
    )
    valid: Range | None = Field(
        default=None, description="Plausible range; a value outside it is marked bad."
    )
    invalid: list[Sentinel] = Field(
        default_factory=list,
        description="'Not available' sentinels, as the register words the device sends, in "
        "address order before any swapping: one number for all the point's registers, high "
        "word first (0xFFFF, 0x7FFFFFFF), or its words one by one ('0x8000 0x0000' or "
        "[0x8000, 0]). A value that matches is marked bad (not_available).",
    )
    writable: Range | None = Field(
        default=None, description="Present if the point may be written, with the allowed range."
    )
    store: Literal["float", "integer"] | None = Field(
        default=None,
        description="InfluxDB field type of a number: `float` (the default) or `integer` for "
        "whole values on purpose (counters, codes); points with `enum` or `bits` labels are "
        "integers unless scaled. See core/field_types.py.",
    )

    def registers(self, default_type: DataType) -> int:
        dtype = self.type or default_type
        if dtype is DataType.STRING:
            return self.length or 1
        if dtype is DataType.DATETIME:  # without a layout it is refused (_field_problems)
            return LAYOUT_REGISTERS[self.layout] if self.layout is not None else 1
        return REGISTERS_PER_TYPE[dtype]

    @model_validator(mode="after")
    def _consistent(self) -> Point:
        if self.type is DataType.STRING and self.length is None:
            raise ValueError("a string point needs `length` (registers)")
        if self.length is not None and self.type is not DataType.STRING:
            raise ValueError("`length` only applies to `type: string`")
        if self.bit is not None and self.type is not DataType.BOOL:
            raise ValueError("`bit` only applies to `type: bool`")
        if self.writable is not None and self.type is DataType.STRING:
            raise ValueError("string points cannot be writable")
        return self


class Hole(_Strict):
    """Registers the device refuses to read (it answers with an exception): never request them."""

    function: Function = Field(description="Data table of the hole.")
    start: int = Field(
        ge=0,
        le=MAX_WRITTEN_ADDRESS,
        description="First register of the hole, relative to the base (numbered as the "
        "profile's `addressing` says).",
    )
    end: int = Field(
        ge=0, le=MAX_WRITTEN_ADDRESS, description="Last register of the hole (inclusive)."
    )

    @model_validator(mode="after")
    def _ordered(self) -> Hole:
        if self.start > self.end:
            raise ValueError(f"start {self.start} is after end {self.end}")
        return self


class Addressing(enum.StrEnum):
    """How the profile numbers its registers (blocks.py turns them into 0-based addresses)."""

    PDU = "pdu"  # 0-based, as on the wire
    ONE_BASED = "one_based"  # register 1 is address 0
    MODICON = "modicon"  # 40001 is holding register 0, 30001 input register 0, 400001 too


class BlockPoint(Point):
    """A point of a repeated block: its name holds `{n}`, its address is the first copy's."""

    name: str = Field(
        description="Field name with `{n}` where the copy's number goes, e.g. `pv{n}_voltage_v`."
    )

    @field_validator("name")
    @classmethod
    def _numbered(cls, name: str) -> str:
        if not re.fullmatch(r"[a-z][a-z0-9_]*\{n\}[a-z0-9_]*", name):
            raise ValueError(
                f"'{name}' is no name for a block's point: lower snake case with `{{n}}` once "
                "where the copy's number goes, e.g. pv{n}_voltage_v (quoted inside {...})"
            )
        return name


class Block(_Strict):
    """Points repeated `count` times at a fixed stride: the strings of an inverter, the indoor
    units behind a gateway. Unrolled at load time into plain points."""

    count: int = Field(ge=1, le=4096, description="How many copies (strings, units, channels).")
    first: int = Field(
        default=1,
        ge=0,
        description="The number `{n}` of the first copy: 1 for PV strings 1..8, 0 for indoor "
        "units 0..63.",
    )
    stride: Annotated[int, Field(ge=1)] | dict[Function, Annotated[int, Field(ge=1)]] = Field(
        description="Registers from one copy to the next: one number for every table, or one "
        "per table (`{input: 6, holding: 3}`) where a unit's input and holding registers "
        "repeat at different strides.",
    )
    base: Annotated[int, Field(ge=0)] | dict[Function, Annotated[int, Field(ge=0)]] = Field(
        default=0,
        description="Added to the first copy's addresses: one number, or one per table "
        "(a datasheet that lists a unit's registers from 0 within its table's block).",
    )
    description: str = Field(default="", description="What repeats, for people.")
    points: list[BlockPoint] = Field(
        min_length=1, description="The first copy's points; `{n}` in names and descriptions."
    )


class Defaults(_Strict):
    """Values a point takes when it doesn't say."""

    function: Function = Field(default=Function.HOLDING, description="Default data table.")
    type: DataType = Field(default=DataType.UINT16, description="Default encoding.")
    word_order: Order = Field(default="big", description="Default word order.")
    byte_order: Order = Field(default="big", description="Default byte order.")


class Transport(_Strict):
    """What the device needs from the line; the site file may tighten it."""

    max_registers_per_request: Annotated[int, Field(ge=1, le=125)] = Field(
        default=125, description="Largest register count one request may ask for."
    )
    max_bits_per_request: Annotated[int, Field(ge=1, le=2000)] = Field(
        default=2000, description="Largest coil/discrete count one request may ask for."
    )
    turnaround_ms: float = Field(
        default=10.0, ge=0, description="Time the device takes to start answering a request."
    )


class Identity(_Strict):
    """What a device answers to Read Device Identification (FC 43 / MEI type 14), the ASCII
    objects of the Modbus application protocol spec (6.21): the basic ones every device that
    answers must give, and the regular ones it may."""

    vendor_name: str = Field(min_length=1, description="VendorName (object 0).")
    product_code: str = Field(min_length=1, description="ProductCode (object 1).")
    revision: str = Field(default="", description="MajorMinorRevision (object 2).")
    vendor_url: str = Field(default="", description="VendorUrl (object 3), regular.")
    product_name: str = Field(default="", description="ProductName (object 4), regular.")
    model_name: str = Field(default="", description="ModelName (object 5), regular.")

    def objects(self) -> dict[int, str]:
        """The objects by id, the empty ones left out (a device sends only what it has)."""
        values = (
            self.vendor_name,
            self.product_code,
            self.revision,
            self.vendor_url,
            self.product_name,
            self.model_name,
        )
        return {i: v for i, v in enumerate(values) if v}


class Profile(_Strict):
    """A device model's register map."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$", description="Must match the file name.")
    description: str = Field(default="", description="Vendor, models, category.")
    kind: str = Field(
        pattern=r"^[a-z][a-z0-9_]*$",
        description="Device kind, the InfluxDB measurement: meter, pv_inverter, hvac, ...",
    )
    sources: list[str] = Field(
        default_factory=list, description="Where the register map comes from."
    )
    base: int = Field(
        default=0, ge=0, le=65535, description="Added to every point address (site may override)."
    )
    defaults: Defaults = Field(default_factory=Defaults, description="Defaults for points.")
    transport: Transport = Field(default_factory=Transport, description="Line requirements.")
    holes: list[Hole] = Field(default_factory=list, description="Registers never to read.")
    addressing: Addressing = Field(
        default=Addressing.PDU,
        description="How addresses are numbered: `pdu` (0-based, as on the wire), `one_based` "
        "(register 1 is address 0) or `modicon` (40001 = holding 0, 30001 = input 0, six "
        "digits too; the number implies the table). Loaded profiles hold 0-based addresses.",
    )
    points: list[Point] = Field(
        default_factory=list, description="The device's values (and `blocks:` copies)."
    )
    blocks: list[Block] = Field(
        default_factory=list,
        description="Points repeated at a stride, unrolled into `points` at load time.",
    )
    derived: list[Derived] = Field(
        default_factory=list,
        description="Values computed from other points after each poll (sum, difference, "
        "product, ratio), stored as floats.",
    )
    identity: Identity | None = Field(
        default=None,
        description="For a device that answers Read Device Identification (FC 43): what it "
        "answers. `guanjia scan` matches it and the simulator serves it; leave it out for "
        "devices that refuse FC 43 (most meters).",
    )

    # Where each point of `points` is written in the file (a block's copies: its template).
    _origins: list[Loc] = PrivateAttr(default_factory=list)

    @model_validator(mode="after")
    def _unroll(self) -> Profile:
        """Blocks and 1-based or Modicon numbers become plain 0-based points before any other
        check, so that the checks, the planner, the codec and the simulator see one shape."""
        from drivers.modbus.blocks import located_error, unroll  # it builds on this module

        done = unroll(self)
        if done.problems:
            raise located_error(type(self).__name__, done.problems)
        # The model is frozen for its users; this is its construction.
        object.__setattr__(self, "points", done.points)
        object.__setattr__(self, "holes", done.holes)
        object.__setattr__(self, "blocks", [])
        object.__setattr__(self, "addressing", Addressing.PDU)
        self._origins = done.origins
        return self

    def origin(self, index: int) -> Loc:
        """The key path in the profile file of `points[index]` (for error messages)."""
        return self._origins[index] if index < len(self._origins) else ("points", index)

    @model_validator(mode="after")
    def _check_points(self) -> Profile:
        """Checks that need the defaults; each problem is reported at its point's key."""
        problems: list[tuple[Loc, str]] = []
        names: set[str] = set()
        sunssf = {p.name for p in self.points if (p.type or self.defaults.type) is DataType.SUNSSF}
        for i, p in enumerate(self.points):
            at: Loc = self.origin(i)
            if p.name in names:
                problems.append(((*at, "name"), f"point name {p.name!r} appears twice"))
            names.add(p.name)
            if p.scale_factor is not None and p.scale_factor not in sunssf:
                problems.append(
                    (
                        (*at, "scale_factor"),
                        f"point {p.name!r}: scale_factor {p.scale_factor!r} is not a sunssf point",
                    )
                )
            dtype = p.type or self.defaults.type
            func = p.function or self.defaults.function
            if func.is_bit and dtype is not DataType.BOOL:
                problems.append(
                    ((*at, "type"), f"point {p.name!r}: {func.value} points must be `type: bool`")
                )
            if p.writable is not None and func in (Function.INPUT, Function.DISCRETE):
                problems.append(
                    ((*at, "writable"), f"point {p.name!r}: {func.value} points are read-only")
                )
            scaled = (
                p.scale != 1.0 or p.offset != 0.0 or p.scale_factor is not None or bool(p.scale_by)
            )
            if p.store == "integer" and (dtype not in _WHOLE_TYPES or scaled):
                problems.append(
                    (
                        (*at, "store"),
                        f"point {p.name!r}: `store: integer` needs an unscaled integer type "
                        f"(this one is {dtype.value}{', scaled' if scaled else ''}); "
                        "remove `store`",
                    )
                )
            end = p.address + p.registers(self.defaults.type) - 1
            for hole in self.holes:
                if hole.function is func and p.address <= hole.end and end >= hole.start:
                    problems.append(
                        (
                            (*at, "address"),
                            f"point {p.name!r} ({p.address}..{end}) lies in a hole "
                            f"({hole.start}..{hole.end})",
                        )
                    )
            problems += _label_problems(p, dtype, scaled, at)
            problems += _field_problems(p, dtype, func, p.registers(self.defaults.type), at)
            problems += _sentinel_problems(p, dtype, func, p.registers(self.defaults.type), at)
        if problems:
            # Raised as a ValidationError so that each problem keeps its own key path (and so
            # its line in the file), where a ValueError here would point at the profile's top.
            raise ValidationError.from_exception_data(
                type(self).__name__,
                [
                    InitErrorDetails(
                        type=PydanticCustomError("value_error", "{message}", {"message": text}),
                        loc=loc,
                        input=None,
                    )
                    for loc, text in problems
                ],
            )
        return self

    @model_validator(mode="after")
    def _check_references(self) -> Profile:
        """Points named by `scale_by` and by derived points exist and are numbers."""
        from drivers.modbus.blocks import located_error
        from drivers.modbus.references import reference_problems

        problems = reference_problems(self)
        if problems:
            raise located_error(type(self).__name__, problems)
        return self

    def point(self, name: str) -> Point:
        for p in self.points:
            if p.name == name:
                return p
        raise KeyError(name)

    def field_types(self) -> dict[str, FieldType]:
        """The InfluxDB field type of every point, by the rule in core/field_types.py."""
        types = {}
        for p in self.points:
            scaled = (
                p.scale != 1.0 or p.offset != 0.0 or p.scale_factor is not None or bool(p.scale_by)
            )
            coded = p.enum is not None or p.bits is not None
            dtype = (p.type or self.defaults.type).value
            types[p.name] = modbus_field_type(dtype, scaled=scaled, coded=coded, store=p.store)
        types.update((d.name, FieldType.FLOAT) for d in self.derived)  # derived.py: floats
        return types


_FLOATS = (DataType.FLOAT32, DataType.FLOAT64)


def _label_problems(p: Point, dtype: DataType, scaled: bool, at: Loc) -> list[tuple[Loc, str]]:
    """Labels that could never be shown (enum labels on floats are: see codec.label)."""
    problems: list[tuple[Loc, str]] = []
    if p.enum is not None and dtype is DataType.STRING:
        problems.append(
            ((*at, "enum"), f"point {p.name!r} is a string, which has no codes; remove `enum`")
        )
    if p.bits is not None and (dtype in (*_FLOATS, DataType.STRING, DataType.BOOL) or scaled):
        what = "scaled" if scaled and dtype not in _FLOATS else dtype.value
        problems.append(
            (
                (*at, "bits"),
                f"point {p.name!r} is {what}: bit labels need an unscaled integer register "
                "(type uint16, uint32 ...); remove `bits` or the scaling",
            )
        )
    return problems


_FIELD_TYPES = _WHOLE_TYPES - {DataType.SUNSSF}


def _field_problems(
    p: Point, dtype: DataType, func: Function, registers: int, at: Loc
) -> list[tuple[Loc, str]]:
    """Bit fields, packed date-times and named decodes that could never be read or written."""
    problems: list[tuple[Loc, str]] = []
    if p.field is not None:
        first, last = p.field
        width = 16 * registers
        if func.is_bit or dtype not in _FIELD_TYPES:
            what = func.value if func.is_bit else dtype.value
            problems.append(
                (
                    (*at, "field"),
                    f"point {p.name!r} is {what}: a bit field needs an integer register "
                    "(type uint16, int16, uint32 ...); a single bit is `type: bool` with `bit`",
                )
            )
        elif first > last:
            problems.append(
                (
                    (*at, "field"),
                    f"point {p.name!r}: field [{first}, {last}] starts after it ends; write "
                    f"[{last}, {first}] (first bit, last bit)",
                )
            )
        elif last >= width:
            problems.append(
                (
                    (*at, "field", 1),
                    f"point {p.name!r}: bit {last} is outside its {dtype.value} ({width} bits, "
                    f"0..{width - 1})",
                )
            )
        else:
            problems += _field_value_problems(p, dtype, at)
    if dtype is DataType.DATETIME:
        if p.layout is None:
            choices = ", ".join(layout.value for layout in DatetimeLayout)
            problems.append(
                ((*at, "layout"), f"point {p.name!r} is a datetime: give its `layout` ({choices})")
            )
        if func.is_bit:
            problems.append(
                ((*at, "type"), f"point {p.name!r}: a {func.value} cannot hold a datetime")
            )
        if p.writable is not None:
            problems.append(
                ((*at, "writable"), f"point {p.name!r}: datetime points cannot be writable")
            )
        for key in ("scale", "offset", "scale_factor", "enum", "bits", "valid", "store"):
            if key in p.model_fields_set:
                problems.append(
                    ((*at, key), f"point {p.name!r}: a datetime has no `{key}`; remove it")
                )
    elif p.layout is not None:
        problems.append(
            (
                (*at, "layout"),
                f"point {p.name!r}: `layout` only applies to `type: datetime` (this one is "
                f"{dtype.value})",
            )
        )
    if p.decode is not None:
        if dtype not in (*_WHOLE_TYPES, *_FLOATS) or dtype is DataType.SUNSSF or func.is_bit:
            problems.append(
                (
                    (*at, "decode"),
                    f"point {p.name!r} is {dtype.value}: `decode: {p.decode.value}` needs a "
                    "number register (float32, int16 ...)",
                )
            )
        if p.writable is not None:
            problems.append(
                (
                    (*at, "writable"),
                    f"point {p.name!r}: a point with `decode: {p.decode.value}` cannot be "
                    "written (the decode does not say which register value to write)",
                )
            )
    return problems


def _field_value_problems(p: Point, dtype: DataType, at: Loc) -> list[tuple[Loc, str]]:
    """Labels and writable values a field's bits can never hold (a write would fail)."""
    assert p.field is not None
    first, last = p.field
    width = last - first + 1
    problems: list[tuple[Loc, str]] = []
    if p.bits is not None and any(not 0 <= b < width for b in p.bits):
        problems.append(
            (
                (*at, "bits"),
                f"point {p.name!r}: bit labels count from the field's first bit: "
                f"0..{width - 1} for field [{first}, {last}]",
            )
        )
    if p.scale != 1.0 or p.offset != 0.0 or p.scale_factor is not None or p.scale_by:
        return problems  # the raw range is the engineering range only unscaled
    signed = dtype in (DataType.INT16, DataType.INT32, DataType.INT64)
    low, high = (-(1 << (width - 1)), (1 << (width - 1)) - 1) if signed else (0, (1 << width) - 1)
    bits = f"bits {first}..{last} hold {low}..{high}"
    if p.enum is not None and any(not low <= k <= high for k in p.enum):
        outside = sorted(k for k in p.enum if not low <= k <= high)
        problems.append(
            ((*at, "enum"), f"point {p.name!r}: {bits}; labels {outside} can never show")
        )
    if p.writable is not None and not (low <= p.writable.min and p.writable.max <= high):
        problems.append(
            (
                (*at, "writable"),
                f"point {p.name!r}: {bits}; write the writable range within it",
            )
        )
    return problems


def _sentinel_problems(
    p: Point,
    dtype: DataType,
    func: Function,
    registers: int,
    at: Loc,
) -> list[tuple[Loc, str]]:
    """Sentinels that could never match the point's registers."""
    if not p.invalid:
        return []
    if func.is_bit:
        return [
            (
                (*at, "invalid"),
                f"point {p.name!r}: a {func.value} is one bit and has no 'not available' "
                "value; remove `invalid`",
            )
        ]
    problems: list[tuple[Loc, str]] = []
    what = f"{dtype.value}, {registers} register{'s' if registers > 1 else ''}"
    for j, sentinel in enumerate(p.invalid):
        try:
            sentinel_words(sentinel, registers)
        except ValueError as exc:
            problems.append(((*at, "invalid", j), f"point {p.name!r} ({what}): {exc}"))
    return problems


def resolved_sentinels(p: Point, registers: int) -> Sequence[tuple[int, ...]]:
    """The point's sentinels as register words (the profile was validated: they all parse)."""
    return [sentinel_words(s, registers) for s in p.invalid]
