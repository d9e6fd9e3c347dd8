"""Turning registers into engineering values and back, as a profile's points describe them."""

from __future__ import annotations

import dataclasses
import datetime
import math
import struct
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from core.config_types import Range
from core.types import Value
from drivers.contract import coded_label
from drivers.modbus.derived import needed
from drivers.modbus.profile import (
    DataType,
    DatetimeLayout,
    Decode,
    Function,
    Order,
    Profile,
    resolved_sentinels,
)

_STRUCT: dict[DataType, str] = {
    DataType.INT16: "h",
    DataType.UINT16: "H",
    DataType.SUNSSF: "h",
    DataType.INT32: "i",
    DataType.UINT32: "I",
    DataType.INT64: "q",
    DataType.UINT64: "Q",
    DataType.FLOAT32: "f",
    DataType.FLOAT64: "d",
}


# Raw ranges of the integer types: what a register can hold.
INT_RANGES: dict[DataType, tuple[int, int]] = {
    DataType.INT16: (-(2**15), 2**15 - 1),
    DataType.SUNSSF: (-(2**15), 2**15 - 1),
    DataType.UINT16: (0, 2**16 - 1),
    DataType.INT32: (-(2**31), 2**31 - 1),
    DataType.UINT32: (0, 2**32 - 1),
    DataType.INT64: (-(2**63), 2**63 - 1),
    DataType.UINT64: (0, 2**64 - 1),
}


@dataclass(frozen=True, slots=True)
class PointSpec:
    """A profile point resolved against its defaults and the device's base address."""

    name: str
    function: Function
    address: int
    count: int  # registers (or bits) it occupies
    dtype: DataType
    word_order: Order
    byte_order: Order
    scale: float
    offset: float
    scale_factor: str | None
    bit: int | None
    unit: str
    enum: Mapping[int, str] | None
    bits: Mapping[int, str] | None
    valid: Range | None
    # The profile's "not available" sentinels decoded (what a device simulator sends) and as
    # their registers' bytes. Polls match the bytes before decoding; an integer's value maps one
    # to one to its words, so its unpacker may compare the decoded value instead (cheaper).
    invalid: frozenset[int | float | bool | str]
    writable: Range | None
    invalid_words: frozenset[bytes]
    # A bit field of the raw value (`field` in the profile): its lowest bit and its width in
    # bits; width 0 is the whole value. See field_value and masked_words.
    field_shift: int = 0
    field_width: int = 0
    layout: DatetimeLayout | None = None  # of a `type: datetime` point
    decode: Decode | None = None  # a named piecewise decode (DECODES)
    # Points whose decoded values multiply this one (PT and CT ratios); resolve() puts them
    # before it, so decode_all has their values when it gets to it.
    scale_by: tuple[str, ...] = ()

    @property
    def end(self) -> int:
        return self.address + self.count - 1

    @property
    def scaled(self) -> bool:
        return (
            self.scale != 1.0
            or self.offset != 0.0
            or self.scale_factor is not None
            or bool(self.scale_by)
        )

    # Derived once: decode_all reads them for every point of every poll.
    is_float: bool = field(init=False)
    is_number: bool = field(init=False)
    is_plain: bool = field(init=False)  # no scale, offset, scale factor or decode
    # Scaled by its own constants only (no scale factor or ratio registers): decode_all's
    # common case, told by one flag so that ratios cost the other points nothing.
    is_linear: bool = field(init=False)
    transform: Callable[[float], float] | None = field(init=False)  # DECODES[decode][0]

    def __post_init__(self) -> None:
        object.__setattr__(self, "is_float", self.dtype in (DataType.FLOAT32, DataType.FLOAT64))
        object.__setattr__(self, "is_number", self.dtype not in _NOT_NUMBERS)
        object.__setattr__(self, "is_plain", not self.scaled and self.decode is None)
        object.__setattr__(self, "is_linear", self.scale_factor is None and not self.scale_by)
        transform = DECODES[self.decode][0] if self.decode is not None else None
        object.__setattr__(self, "transform", transform)

    @property
    def field_mask(self) -> int | None:
        """The bits of the raw value this point owns (a field, or a bool's bit of a register),
        or None when it owns its registers whole. A write replaces only these bits."""
        if self.field_width:
            return ((1 << self.field_width) - 1) << self.field_shift
        if self.bit is not None and not self.function.is_bit:
            return 1 << self.bit
        return None


_NOT_NUMBERS = (DataType.BOOL, DataType.STRING, DataType.DATETIME)


def _pf_four_quadrant(v: float) -> float:
    """Schneider PM5xxx / iEM3xxx PF register (-2..2, the quadrant in the range) to the power
    factor (-1..1, negative when active power flows back); NaN outside -2..2. Source: PM5300
    and PM5500 user manuals, "Power factor register format"."""
    if v > 1.0:
        return 2.0 - v if v <= 2.0 else math.nan
    if v < -1.0:
        return -2.0 - v if v >= -2.0 else math.nan
    return v


def _pf_register(pf: float) -> float:
    """A register value that decodes to ``pf``: the meter's own for quadrants where the PF
    register holds the PF itself (-1..1); the quadrant behind it is not recoverable from the
    PF alone."""
    if not -1.0 <= pf <= 1.0:
        raise ValueError(f"a power factor is within -1..1, not {pf}")
    return pf


# Each named decode (profile `decode:`) with its inverse, for the simulator and the tests.
DECODES: dict[Decode, tuple[Callable[[float], float], Callable[[float], float]]] = {
    Decode.PF_FOUR_QUADRANT: (_pf_four_quadrant, _pf_register),
}


class NotAvailable:
    """The raw value of a point whose registers hold one of its "not available" sentinels."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "NOT_AVAILABLE"


NOT_AVAILABLE = NotAvailable()

Raw = int | float | bool | str | NotAvailable
Unpack = Callable[[bytes, int], Raw]


def unpacker(spec: PointSpec) -> Unpack:
    """A function decoding the point's raw value from a response's data bytes at an offset.

    The hot path of every poll: common layouts get one precompiled struct call; the rest go
    through decode_raw. A point with sentinels gives NOT_AVAILABLE when its registers hold
    one; the others pay nothing for that.
    """
    if spec.field_width:
        return _field_unpacker(spec)
    code = _STRUCT.get(spec.dtype)
    plain = spec.byte_order == "big" and (spec.count == 1 or spec.word_order == "big")
    if spec.dtype is DataType.BOOL and not spec.invalid_words:
        mask = 1 << (spec.bit or 0)
        if spec.bit is None:
            return lambda buf, off: buf[off] != 0 or buf[off + 1] != 0
        return lambda buf, off: bool((buf[off] << 8 | buf[off + 1]) & mask)
    if code is None or not plain:
        words = struct.Struct(f">{spec.count}H").unpack_from
        return lambda buf, off: decode_registers(spec, words(buf, off))
    unpack_from = struct.Struct(">" + code).unpack_from
    if not spec.invalid_words:

        def fast(buf: bytes, off: int) -> Raw:
            value: int | float = unpack_from(buf, off)[0]
            return value

        return fast
    if not spec.is_float:
        # An integer decodes one to one from its words: compare the value, no slice needed.
        values = spec.invalid

        def integer(buf: bytes, off: int) -> Raw:
            value: int = unpack_from(buf, off)[0]
            return NOT_AVAILABLE if value in values else value

        return integer
    # A float by its bits: as values, -0.0 would equal 0.0 and NaN nothing.
    size, sentinels = 2 * spec.count, spec.invalid_words

    def floating(buf: bytes, off: int) -> Raw:
        if buf[off : off + size] in sentinels:
            return NOT_AVAILABLE
        value: float = unpack_from(buf, off)[0]
        return value

    return floating


def _field_unpacker(spec: PointSpec) -> Unpack:
    """A bit field's decoder: one register (the usual case) by shifts, the rest by
    decode_registers (which also matches sentinels, against the whole registers' words)."""
    if spec.count == 1 and spec.byte_order == "big" and not spec.invalid_words:
        shift, mask = spec.field_shift, (1 << spec.field_width) - 1
        if spec.dtype not in _SIGNED:
            return lambda buf, off: (buf[off] << 8 | buf[off + 1]) >> shift & mask
        sign, wrap = 1 << (spec.field_width - 1), 1 << spec.field_width

        def signed(buf: bytes, off: int) -> Raw:
            value = (buf[off] << 8 | buf[off + 1]) >> shift & mask
            return value - wrap if value & sign else value

        return signed
    words = struct.Struct(f">{spec.count}H").unpack_from
    return lambda buf, off: decode_registers(spec, words(buf, off))


def _plain_code(spec: PointSpec) -> str | None:
    """The struct code that alone decodes the point's registers (unpacker's `fast`, `integer`
    and `floating` cases, before the sentinels), else None."""
    if spec.field_width:
        return None
    code = _STRUCT.get(spec.dtype)
    plain = spec.byte_order == "big" and (spec.count == 1 or spec.word_order == "big")
    return code if code is not None and plain else None


def fused_unpacker(
    points: Sequence[tuple[PointSpec, int]],
) -> tuple[tuple[str, ...], Callable[[bytes], Sequence[Any]]] | None:
    """One struct call for all of a response's points: their names in order and the call.

    Only when unpacker() reads every point with one plain struct code, each at its own byte
    offset (``points``: spec and offset), none overlapping another; else None. Gives the raw
    values the points' unpackers give, NOT_AVAILABLE where a sentinel matches (integers by
    value, floats by their bytes, as there), with one struct call instead of one per point.
    """
    fmt = [">"]
    names: list[str] = []
    integers: list[tuple[int, frozenset[Any]]] = []  # index, sentinel values
    floats: list[tuple[int, int, int, frozenset[bytes]]] = []  # index, offset, size, words
    position = 0
    for spec, off in sorted(points, key=lambda p: p[1]):
        code = _plain_code(spec)
        size = 2 * spec.count
        if code is None or off < position or struct.calcsize(">" + code) != size:
            return None
        if off > position:
            fmt.append(f"{off - position}x")
        if spec.invalid_words:
            if spec.is_float:
                floats.append((len(names), off, size, spec.invalid_words))
            else:
                integers.append((len(names), spec.invalid))
        fmt.append(code)
        names.append(spec.name)
        position = off + size
    if not names:
        return None
    unpack_from = struct.Struct("".join(fmt)).unpack_from
    if not integers and not floats:
        return tuple(names), unpack_from
    not_available = NOT_AVAILABLE

    def with_sentinels(buf: bytes) -> list[Any]:
        values = list(unpack_from(buf))
        for index, sentinels in integers:
            if values[index] in sentinels:
                values[index] = not_available
        for index, off, size, words in floats:
            if buf[off : off + size] in words:
                values[index] = not_available
        return values

    return tuple(names), with_sentinels


def resolve(
    profile: Profile, base: int | None = None, include: Iterable[str] | None = None
) -> list[PointSpec]:
    """Resolve a profile's points; ``include`` keeps a subset (plus the scale factors, ratios
    and derived points' inputs it needs)."""
    offset = profile.base if base is None else base
    d = profile.defaults
    wanted = set(include) if include is not None else None
    if wanted is not None:
        wanted = needed(profile.derived, wanted)
        wanted |= {p.scale_factor for p in profile.points if p.name in wanted and p.scale_factor}
        wanted.update(r for p in profile.points if p.name in wanted for r in p.scale_by or ())
    specs = []
    for p in profile.points:
        if wanted is not None and p.name not in wanted:
            continue
        dtype = p.type or d.type
        func = p.function or d.function
        specs.append(
            PointSpec(
                name=p.name,
                function=func,
                address=p.address + offset,
                count=1 if func.is_bit else p.registers(d.type),
                dtype=dtype,
                word_order=p.word_order or d.word_order,
                byte_order=p.byte_order or d.byte_order,
                scale=p.scale,
                offset=p.offset,
                scale_factor=p.scale_factor,
                bit=p.bit,
                unit=p.unit,
                enum=p.enum,
                bits=p.bits,
                valid=p.valid,
                invalid=frozenset(),
                writable=p.writable,
                invalid_words=frozenset(),
                field_shift=p.field[0] if p.field is not None else 0,
                field_width=p.field[1] - p.field[0] + 1 if p.field is not None else 0,
                layout=p.layout,
                decode=p.decode,
                scale_by=tuple(p.scale_by or ()),
            )
        )
        if p.invalid:
            words = resolved_sentinels(p, specs[-1].count)
            specs[-1] = dataclasses.replace(
                specs[-1],
                invalid=frozenset(_sentinel_values(specs[-1], words)),
                invalid_words=frozenset(struct.pack(f">{len(w)}H", *w) for w in words),
            )
    ratios = {r for s in specs for r in s.scale_by}
    if ratios:  # decoded first: the points they scale read their values (decode_all)
        specs.sort(key=lambda s: s.name not in ratios)
    return specs


def _sentinel_values(
    spec: PointSpec, words: Iterable[Sequence[int]]
) -> list[int | float | bool | str]:
    """Sentinels decoded; a datetime's (all zeros, say) may be no date at all: left out."""
    out = []
    for w in words:
        try:
            out.append(decode_raw(spec, w))
        except ValueError:
            continue
    return out


def _to_bytes(spec: PointSpec, regs: Sequence[int]) -> bytes:
    if spec.word_order == "little":
        regs = regs[::-1]
    fmt = ">%dH" if spec.byte_order == "big" else "<%dH"
    return struct.pack(fmt % len(regs), *regs)


def _from_bytes(spec: PointSpec, data: bytes) -> list[int]:
    fmt = ">%dH" if spec.byte_order == "big" else "<%dH"
    regs = list(struct.unpack(fmt % (len(data) // 2), data))
    if spec.word_order == "little":
        regs.reverse()
    return regs


def decode_raw(spec: PointSpec, regs: Sequence[int]) -> int | float | bool | str:
    """Decode the raw value of a point from exactly its registers (or its one bit).

    Raises ValueError for a datetime that is no date (month 13, a BCD digit above 9)."""
    if spec.dtype is DataType.BOOL:
        word = int(regs[0])
        return bool(word >> spec.bit & 1) if spec.bit is not None else bool(word)
    if spec.dtype is DataType.STRING:
        text = _to_bytes(spec, regs).split(b"\x00", 1)[0]
        return text.decode("utf-8", errors="replace").strip()
    if spec.dtype is DataType.DATETIME:
        return decode_datetime(spec, regs)
    if spec.field_width:
        return field_value(spec, _whole(spec, regs))
    value: int | float = struct.unpack(">" + _STRUCT[spec.dtype], _to_bytes(spec, regs))[0]
    return value


def decode_registers(spec: PointSpec, regs: Sequence[int]) -> Raw:
    """decode_raw, but registers holding a "not available" sentinel give NOT_AVAILABLE."""
    if spec.invalid_words and struct.pack(f">{len(regs)}H", *regs) in spec.invalid_words:
        return NOT_AVAILABLE
    return decode_raw(spec, regs)


def encode_raw(spec: PointSpec, raw: int | float | bool | str) -> list[int]:
    """Encode a raw value into the point's registers (the inverse of decode_raw).

    A bit field (or a bool's bit) comes back in place with every other bit zero: merge it
    into the registers' current words with masked_words. Raises OverflowError for a value
    its bits cannot hold, ValueError for a datetime they cannot hold."""
    if spec.dtype is DataType.BOOL:
        return [(1 << (spec.bit or 0)) if raw else 0]
    if spec.dtype is DataType.STRING:
        data = str(raw).encode("utf-8")[: spec.count * 2].ljust(spec.count * 2, b"\x00")
        return _from_bytes(spec, data)
    if spec.dtype is DataType.DATETIME:
        return encode_datetime(spec, raw)
    if spec.field_width:
        low, high = field_range(spec)
        if isinstance(raw, str) or not low <= raw <= high or raw != int(raw):
            raise OverflowError(
                f"{raw!r} does not fit in bits {spec.field_shift}.."
                f"{spec.field_shift + spec.field_width - 1} ({low}..{high})"
            )
        whole = (int(raw) & (1 << spec.field_width) - 1) << spec.field_shift
        return _from_bytes(spec, struct.pack(">" + _UNSIGNED[spec.dtype], whole))
    code = _STRUCT[spec.dtype]
    value: int | float = float(raw) if code in "fd" else int(raw)
    return _from_bytes(spec, struct.pack(">" + code, value))


def to_engineering(
    spec: PointSpec, raw: int | float, sf: int | None = None, ratio: float = 1.0
) -> float | int:
    """``ratio``: the product of the point's `scale_by` values."""
    if spec.transform is not None:
        factor = spec.scale * ratio * (10.0**sf if sf is not None else 1.0)
        return spec.transform(raw * factor + spec.offset)
    if not spec.scaled:
        return raw
    factor = spec.scale * ratio * (10.0**sf if sf is not None else 1.0)
    return raw * factor + spec.offset


def to_raw(spec: PointSpec, value: float, sf: int | None = None, ratio: float = 1.0) -> int | float:
    """The raw value that decodes to ``value`` (rounded to the register's resolution);
    ``ratio``: the product of the point's `scale_by` values."""
    if spec.decode is not None:
        value = DECODES[spec.decode][1](value)
    factor = spec.scale * ratio * (10.0**sf if sf is not None else 1.0)
    raw = (value - spec.offset) / factor
    if spec.dtype in (DataType.FLOAT32, DataType.FLOAT64):
        return raw
    return round(raw)


def check(raw: Raw) -> str | None:
    """Why a raw value (from decode_registers or an unpacker) cannot be trusted, or None."""
    if raw is NOT_AVAILABLE:
        return "not_available"
    if isinstance(raw, float) and not math.isfinite(raw):
        return "nan"
    return None


def check_range(spec: PointSpec, value: Value) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or spec.valid is None:
        return None
    return None if spec.valid.contains(value) else "out_of_range"


class Decoded:
    """The result of decoding one device's registers: good values and bad points with reasons."""

    __slots__ = ("bad", "values")

    def __init__(self) -> None:
        self.values: dict[str, Value] = {}
        self.bad: dict[str, str] = {}


_MISSING = object()


def decode_all(specs: Sequence[PointSpec], raws: Mapping[str, Raw]) -> Decoded:
    """Apply scaling, scale factors and plausibility checks to raw values of many points.

    ``raws`` holds the raw value of every point that was read (from an unpacker or
    decode_registers: NOT_AVAILABLE where a sentinel matched); points missing from it are not
    reported. Scale-factor points are applied to the points that name them and are also kept as
    values themselves (they help when a reading looks wrong). Types are known from the specs,
    so no value is inspected for its type: this runs for every point of every poll.
    """
    out = Decoded()
    values, bad = out.values, out.bad
    get = raws.get
    missing, not_available, infinities = _MISSING, NOT_AVAILABLE, _INFINITIES
    for spec in specs:
        name = spec.name
        raw: Any = get(name, missing)
        if raw is missing:
            continue
        if raw is not_available:
            bad[name] = "not_available"
            continue
        if not spec.is_number:
            values[name] = raw
            continue
        if spec.is_float and (raw != raw or raw in infinities):
            bad[name] = "nan"
            continue
        if spec.is_plain:
            if raw > _INT64_MAX:  # a uint64 InfluxDB cannot store as an integer field
                bad[name] = "out_of_range"
                continue
            value = raw
        else:
            if spec.is_linear:
                value = raw * spec.scale + spec.offset
            elif spec.scale_factor is not None:
                sf = get(spec.scale_factor)
                # -32768 is SunSpec's "not implemented"; real exponents are small.
                if not isinstance(sf, int) or isinstance(sf, bool) or not -10 <= sf <= 10:
                    bad[name] = "scale_factor"
                    continue
                value = raw * (spec.scale * 10.0**sf) + spec.offset
            else:  # scale_by (never with a scale factor: references.py)
                ratio = _ratio(spec.scale_by, values)
                if ratio is None:
                    bad[name] = "scale_by"
                    continue
                value = raw * spec.scale * ratio + spec.offset
            if spec.is_float and (value != value or value in infinities):  # overflowed scaling
                bad[name] = "nan"
                continue
            if spec.transform is not None:
                value = spec.transform(value)
                if value != value:  # outside the decode's domain (a PF register of 3)
                    bad[name] = "decode"
                    continue
        valid = spec.valid
        if valid is not None and not valid.min <= value <= valid.max:
            bad[name] = "out_of_range"
            continue
        values[name] = value
    return out


def _ratio(names: Sequence[str], values: Mapping[str, Value]) -> float | None:
    """The product of the decoded values of a point's `scale_by` points (decoded before it:
    resolve orders them first), or None when one is bad or was not read."""
    ratio = 1.0
    for name in names:
        factor = values.get(name)
        if factor is None or isinstance(factor, str):
            return None
        ratio *= factor
    return ratio


_INFINITIES = (math.inf, -math.inf)
_INT64_MAX = 2**63 - 1


_SIGNED = (DataType.INT16, DataType.INT32, DataType.INT64)
# The unsigned struct code of each integer type: a field's bits are taken from the raw words.
_UNSIGNED: dict[DataType, str] = {
    DataType.INT16: "H",
    DataType.UINT16: "H",
    DataType.INT32: "I",
    DataType.UINT32: "I",
    DataType.INT64: "Q",
    DataType.UINT64: "Q",
}


def _whole(spec: PointSpec, regs: Sequence[int]) -> int:
    """The registers of a field's point as one unsigned number, word and byte order applied."""
    value: int = struct.unpack(">" + _UNSIGNED[spec.dtype], _to_bytes(spec, regs))[0]
    return value


def field_value(spec: PointSpec, whole: int) -> int:
    """A field's value from its registers' unsigned number: its bits shifted down, read as a
    signed number of the field's width when the point's type is signed."""
    value = whole >> spec.field_shift & ((1 << spec.field_width) - 1)
    if spec.dtype in _SIGNED and value >> (spec.field_width - 1):
        value -= 1 << spec.field_width
    return value


def field_range(spec: PointSpec) -> tuple[int, int]:
    """The values a field's bits can hold."""
    if spec.dtype in _SIGNED:
        return -(1 << (spec.field_width - 1)), (1 << (spec.field_width - 1)) - 1
    return 0, (1 << spec.field_width) - 1


def masked_words(spec: PointSpec, current: Sequence[int], new: Sequence[int]) -> list[int]:
    """The registers of a field's (or a bit's) point with only its bits taken from ``new``
    (what encode_raw gave) and every other bit as ``current`` has it: what a read-modify-write
    writes back, and how the simulator merges the points that share a register."""
    if not spec.field_width:  # a bool's bit of one register
        mask = 1 << (spec.bit or 0)
        return [(int(current[0]) & ~mask) | (int(new[0]) & mask)]
    mask = ((1 << spec.field_width) - 1) << spec.field_shift
    whole = (_whole(spec, current) & ~mask) | (_whole(spec, new) & mask)
    return _from_bytes(spec, struct.pack(">" + _UNSIGNED[spec.dtype], whole))


_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)


def decode_datetime(spec: PointSpec, regs: Sequence[int]) -> str:
    """A packed date and time as ISO-8601 text: the device's wall clock without a zone for the
    calendar layouts (devices keep local time and say nothing of the zone), UTC with `Z` for
    Unix seconds. Raises ValueError when the registers hold no valid date."""
    layout = spec.layout
    if layout is DatetimeLayout.UNIX_SECONDS:
        (seconds,) = struct.unpack(">I", _to_bytes(spec, regs))
        moment = _EPOCH + datetime.timedelta(seconds=seconds)
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    if layout is DatetimeLayout.REGISTERS_YMDHMS:
        year, month, day, hour, minute, second = (int(r) for r in regs)
        year += 2000 if year < 100 else 0
    else:
        data = _to_bytes(spec, regs)
        if layout is DatetimeLayout.YYMMDDHHMMSS_BCD:
            for byte in data:
                if byte >> 4 > 9 or byte & 0xF > 9:
                    raise ValueError(f"{byte:#04x} is not a BCD number (00..99)")
            data = bytes(10 * (b >> 4) + (b & 0xF) for b in data)
        yy, month, day, hour, minute, second = data
        year = 2000 + yy
    moment_ = datetime.datetime(year, month, day, hour, minute, second)  # checks each part
    return moment_.isoformat()


def encode_datetime(spec: PointSpec, raw: int | float | bool | str) -> list[int]:
    """The registers of a datetime point: ``raw`` as ISO-8601 text (a zone is converted for
    Unix seconds, else the wall clock is written) or as Unix seconds (UTC)."""
    if isinstance(raw, str):
        moment = datetime.datetime.fromisoformat(raw.replace("Z", "+00:00"))
    else:
        moment = _EPOCH + datetime.timedelta(seconds=int(raw))
    layout = spec.layout
    if layout is DatetimeLayout.UNIX_SECONDS:
        aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=datetime.UTC)
        seconds = int((aware - _EPOCH).total_seconds())
        if not 0 <= seconds < 2**32:
            raise ValueError(f"{raw!r} is outside what 32-bit Unix seconds hold")
        return _from_bytes(spec, struct.pack(">I", seconds))
    parts = [moment.month, moment.day, moment.hour, moment.minute, moment.second]
    if layout is DatetimeLayout.REGISTERS_YMDHMS:
        return [moment.year, *parts]
    if not 2000 <= moment.year <= 2099:
        raise ValueError(f"{raw!r}: a two-digit year holds 2000..2099")
    numbers = [moment.year - 2000, *parts]
    if layout is DatetimeLayout.YYMMDDHHMMSS_BCD:
        numbers = [(n // 10) << 4 | n % 10 for n in numbers]
    return _from_bytes(spec, bytes(numbers))


def label(spec: PointSpec, value: Value) -> str:
    """A human label for coded values: the enum name or the set bits' names."""
    return coded_label(spec.enum, spec.bits, value)


def explain(spec: PointSpec, reason: str) -> str:
    """A bad point's reason (Sample.bad) as a sentence for people."""
    if reason == "not_available":
        return "not available: the device sent its 'no value' marker (`invalid` in the profile)"
    if reason == "nan":
        return "not a number: the device sent NaN or infinity"
    if reason == "out_of_range" and spec.valid is not None:
        return f"out of range: outside {spec.valid.min:g}..{spec.valid.max:g} {spec.unit}".rstrip()
    if reason == "out_of_range":
        return "out of range: too large to store"
    if reason == "scale_factor":
        return f"its scale factor {spec.scale_factor} is missing or not implemented"
    if reason == "scale_by":
        return f"a ratio it is scaled by ({', '.join(spec.scale_by)}) is bad or was not read"
    if reason == "decode":
        return "cannot be decoded from the device's answer"
    return reason
