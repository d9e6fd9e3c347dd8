"""Codec properties: every type in every word and byte order decodes what it encodes."""

from __future__ import annotations

import math
import struct

from hypothesis import given
from hypothesis import strategies as st

from drivers.modbus.codec import decode_all, decode_raw, encode_raw, resolve
from drivers.modbus.profile import Profile

RANGES = {
    "int16": (-(2**15), 2**15 - 1),
    "uint16": (0, 2**16 - 1),
    "int32": (-(2**31), 2**31 - 1),
    "uint32": (0, 2**32 - 1),
    "int64": (-(2**63), 2**63 - 1),
    "uint64": (0, 2**64 - 1),
}


def _spec(dtype: str, word: str = "big", byte: str = "big", **extra: object):  # type: ignore[no-untyped-def]
    point = {"name": "p", "address": 0, "type": dtype, "word_order": word, "byte_order": byte}
    point.update(extra)
    return resolve(Profile.model_validate({"name": "t", "kind": "meter", "points": [point]}))[0]


orders = st.sampled_from(["big", "little"])


@given(st.sampled_from(sorted(RANGES)), orders, orders, st.data())
def test_integers_round_trip(dtype: str, word: str, byte: str, data: st.DataObject) -> None:
    lo, hi = RANGES[dtype]
    value = data.draw(st.integers(lo, hi))
    spec = _spec(dtype, word, byte)
    regs = encode_raw(spec, value)
    assert len(regs) == spec.count
    assert all(0 <= r <= 0xFFFF for r in regs)
    assert decode_raw(spec, regs) == value


@given(st.floats(width=32, allow_nan=False), orders, orders)
def test_float32_round_trips(value: float, word: str, byte: str) -> None:
    spec = _spec("float32", word, byte)
    assert decode_raw(spec, encode_raw(spec, value)) == value


@given(st.floats(allow_nan=False), orders, orders)
def test_float64_round_trips(value: float, word: str, byte: str) -> None:
    spec = _spec("float64", word, byte)
    assert decode_raw(spec, encode_raw(spec, value)) == value


def test_word_and_byte_order_match_the_vendor_conventions() -> None:
    # 230.2 as float32 is 0x43663334: ABCD big/big, CDAB little-word, BADC little-byte.
    assert decode_raw(_spec("float32"), [0x4366, 0x3334]) == struct.unpack(">f", b"Cf34")[0]
    assert decode_raw(_spec("float32", "little"), [0x3334, 0x4366]) == decode_raw(
        _spec("float32"), [0x4366, 0x3334]
    )
    assert decode_raw(_spec("float32", "big", "little"), [0x6643, 0x3433]) == decode_raw(
        _spec("float32"), [0x4366, 0x3334]
    )


@given(st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=20))
def test_strings_round_trip_stripped(text: str) -> None:
    spec = _spec("string", length=10)
    assert decode_raw(spec, encode_raw(spec, text)) == text.strip()


@given(st.integers(0, 15), st.booleans())
def test_bits(bit: int, value: bool) -> None:
    spec = _spec("bool", bit=bit)
    assert decode_raw(spec, encode_raw(spec, value)) is value
    assert decode_raw(spec, [0xFFFF ^ (1 << bit)]) is False


@given(st.integers(-32767, 32767), st.integers(-4, 4))
def test_sunspec_scale_factor(raw: int, sf: int) -> None:
    profile = Profile.model_validate(
        {
            "name": "t",
            "kind": "pv_inverter",
            "points": [
                {"name": "w", "address": 0, "type": "int16", "scale_factor": "w_sf"},
                {"name": "w_sf", "address": 1, "type": "sunssf"},
            ],
        }
    )
    out = decode_all(resolve(profile), {"w": raw, "w_sf": sf})
    assert math.isclose(float(out.values["w"]), raw * 10.0**sf, rel_tol=1e-12)
    # "not implemented" scale factor: the point is bad, not scaled by 10**-32768.
    assert decode_all(resolve(profile), {"w": raw, "w_sf": -32768}).bad == {"w": "scale_factor"}
