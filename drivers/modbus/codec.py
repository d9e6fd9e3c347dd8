"""Turning registers into engineering values and back, as a profile's points describe them."""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from core.types import Value
from drivers.modbus.profile import DataType, Function, Order, Profile, Range

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
    invalid: frozenset[int]
    writable: Range | None

    @property
    def end(self) -> int:
        return self.address + self.count - 1

    @property
    def scaled(self) -> bool:
        return self.scale != 1.0 or self.offset != 0.0 or self.scale_factor is not None

    # Derived once: decode_all reads them for every point of every poll.
    is_float: bool = field(init=False)
    is_number: bool = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "is_float", self.dtype in (DataType.FLOAT32, DataType.FLOAT64))
        object.__setattr__(self, "is_number", self.dtype not in (DataType.BOOL, DataType.STRING))


Unpack = Callable[[bytes, int], int | float | bool | str]


def unpacker(spec: PointSpec) -> Unpack:
    """A function decoding the point's raw value from a response's data bytes at an offset.

    The hot path of every poll: common layouts get one precompiled struct call; the rest go
    through decode_raw.
    """
    if spec.dtype is DataType.BOOL:
        mask = 1 << (spec.bit or 0)
        if spec.bit is None:
            return lambda buf, off: buf[off] != 0 or buf[off + 1] != 0
        return lambda buf, off: bool((buf[off] << 8 | buf[off + 1]) & mask)
    code = _STRUCT.get(spec.dtype)
    plain = spec.byte_order == "big" and (spec.count == 1 or spec.word_order == "big")
    if code is not None and plain:
        unpack_from = struct.Struct(">" + code).unpack_from

        def fast(buf: bytes, off: int) -> int | float:
            value: int | float = unpack_from(buf, off)[0]
            return value

        return fast
    words = struct.Struct(f">{spec.count}H").unpack_from
    return lambda buf, off: decode_raw(spec, words(buf, off))


def resolve(
    profile: Profile, base: int | None = None, include: Iterable[str] | None = None
) -> list[PointSpec]:
    """Resolve a profile's points; ``include`` keeps a subset (plus the scale factors it needs)."""
    offset = profile.base if base is None else base
    d = profile.defaults
    wanted = set(include) if include is not None else None
    if wanted is not None:
        wanted |= {p.scale_factor for p in profile.points if p.name in wanted and p.scale_factor}
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
                invalid=frozenset(p.invalid),
                writable=p.writable,
            )
        )
    return specs


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
    """Decode the raw value of a point from exactly its registers (or its one bit)."""
    if spec.dtype is DataType.BOOL:
        word = int(regs[0])
        return bool(word >> spec.bit & 1) if spec.bit is not None else bool(word)
    if spec.dtype is DataType.STRING:
        text = _to_bytes(spec, regs).split(b"\x00", 1)[0]
        return text.decode("utf-8", errors="replace").strip()
    value: int | float = struct.unpack(">" + _STRUCT[spec.dtype], _to_bytes(spec, regs))[0]
    return value


def encode_raw(spec: PointSpec, raw: int | float | bool | str) -> list[int]:
    """Encode a raw value into the point's registers (the inverse of decode_raw)."""
    if spec.dtype is DataType.BOOL:
        return [(1 << (spec.bit or 0)) if raw else 0]
    if spec.dtype is DataType.STRING:
        data = str(raw).encode("utf-8")[: spec.count * 2].ljust(spec.count * 2, b"\x00")
        return _from_bytes(spec, data)
    code = _STRUCT[spec.dtype]
    value: int | float = float(raw) if code in "fd" else int(raw)
    return _from_bytes(spec, struct.pack(">" + code, value))


def to_engineering(spec: PointSpec, raw: int | float, sf: int | None = None) -> float | int:
    if not spec.scaled:
        return raw
    factor = spec.scale * (10.0**sf if sf is not None else 1.0)
    return raw * factor + spec.offset


def to_raw(spec: PointSpec, value: float, sf: int | None = None) -> int | float:
    """The raw value that decodes to ``value`` (rounded to the register's resolution)."""
    factor = spec.scale * (10.0**sf if sf is not None else 1.0)
    raw = (value - spec.offset) / factor
    if spec.dtype in (DataType.FLOAT32, DataType.FLOAT64):
        return raw
    return round(raw)


def check(spec: PointSpec, raw: int | float | bool | str) -> str | None:
    """Why a raw value cannot be trusted, or None if it can."""
    if isinstance(raw, float) and not math.isfinite(raw):
        return "nan"
    if isinstance(raw, int) and not isinstance(raw, bool) and raw in spec.invalid:
        return "not_available"
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


def decode_all(specs: Sequence[PointSpec], raws: Mapping[str, int | float | bool | str]) -> Decoded:
    """Apply scaling, scale factors and plausibility checks to raw values of many points.

    ``raws`` holds the raw value of every point that was read; points missing from it are not
    reported. Scale-factor points are applied to the points that name them and are also kept as
    values themselves (they help when a reading looks wrong). Types are known from the specs,
    so no value is inspected for its type: this runs for every point of every poll.
    """
    out = Decoded()
    values, bad = out.values, out.bad
    for spec in specs:
        raw: Any = raws.get(spec.name, _MISSING)
        if raw is _MISSING:
            continue
        if not spec.is_number:
            values[spec.name] = raw
            continue
        if spec.is_float:
            if raw != raw or raw in _INFINITIES:
                bad[spec.name] = "nan"
                continue
        elif spec.invalid and raw in spec.invalid:
            bad[spec.name] = "not_available"
            continue
        value = raw
        if spec.scale_factor is not None:
            sf = raws.get(spec.scale_factor)
            # -32768 is SunSpec's "not implemented"; real exponents are small.
            if not isinstance(sf, int) or isinstance(sf, bool) or not -10 <= sf <= 10:
                bad[spec.name] = "scale_factor"
                continue
            value = raw * (spec.scale * 10.0**sf) + spec.offset
        elif spec.scale != 1.0 or spec.offset != 0.0:
            value = raw * spec.scale + spec.offset
        elif raw > _INT64_MAX:  # a uint64 InfluxDB cannot store as an integer field
            bad[spec.name] = "out_of_range"
            continue
        if spec.is_float and (value != value or value in _INFINITIES):  # overflowed scaling
            bad[spec.name] = "nan"
            continue
        valid = spec.valid
        if valid is not None and not valid.min <= value <= valid.max:
            bad[spec.name] = "out_of_range"
            continue
        values[spec.name] = value
    return out


_INFINITIES = (math.inf, -math.inf)
_INT64_MAX = 2**63 - 1


def label(spec: PointSpec, value: Value) -> str:
    """A human label for coded values: the enum name or the set bits' names."""
    if spec.enum is not None and isinstance(value, int) and not isinstance(value, bool):
        return spec.enum.get(value, f"unknown ({value})")
    if spec.bits is not None and isinstance(value, int) and not isinstance(value, bool):
        names = [name for bit, name in sorted(spec.bits.items()) if value >> bit & 1]
        return ", ".join(names) if names else "none"
    return ""
