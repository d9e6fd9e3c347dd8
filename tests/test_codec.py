"""Codec properties: every type in every word and byte order decodes what it encodes."""

from __future__ import annotations

import math
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.modbus.codec import (
    NOT_AVAILABLE,
    PointSpec,
    decode_all,
    decode_raw,
    decode_registers,
    encode_raw,
    label,
    resolve,
    unpacker,
)
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


# ---------------------------------------------------------------------------------------------
# "Not available" sentinels: the register words as the device sends them, for every type


def _poll_path(spec: PointSpec, words: list[int]) -> object:
    """What a poll makes of the words: the unpacker reads the response's bytes at an offset."""
    data = b"\x12\x34" + struct.pack(f">{len(words)}H", *words)
    return unpacker(spec)(data, 2)


SENTINELS = [
    # (type, extra point keys, sentinel as written, the words it names, words one bit off)
    ("int16", {}, 0x8000, [0x8000], [0x8001]),  # the old schema's own example, now matching
    ("int16", {}, 0xFFFF, [0xFFFF], [0xFFFE]),
    ("sunssf", {}, 0x8000, [0x8000], [0x7FFF]),
    ("uint16", {}, 65535, [0xFFFF], [0xFFFE]),
    ("int32", {}, 0x7FFFFFFF, [0x7FFF, 0xFFFF], [0x7FFF, 0xFFFE]),
    ("int32", {}, "0x7FFF 0xFFFF", [0x7FFF, 0xFFFF], [0xFFFF, 0x7FFF]),
    ("uint32", {}, [0xFFFF, 0xFFFF], [0xFFFF, 0xFFFF], [0xFFFF, 0xFFF0]),
    ("float32", {}, "0x8000 0x8000", [0x8000, 0x8000], [0x8000, 0x8001]),
    ("float32", {"scale": 0.1}, "0xFFFF 0xFFFF", [0xFFFF, 0xFFFF], [0x4366, 0x3334]),
    ("float64", {}, "0x7FF0 0 0 1", [0x7FF0, 0, 0, 1], [0x7FF0, 0, 0, 2]),
    ("int64", {}, 0x8000000000000000, [0x8000, 0, 0, 0], [0x8000, 0, 0, 1]),
    ("uint64", {}, "0xFFFF,0xFFFF,0xFFFF,0xFFFF", [0xFFFF] * 4, [0xFFFF, 0xFFFF, 0xFFFF, 0]),
    ("string", {"length": 2}, "0xFFFF 0xFFFF", [0xFFFF, 0xFFFF], [0x4142, 0x4344]),
    ("bool", {"bit": 3}, 0xFFFF, [0xFFFF], [0xFFF7]),
    # Wire order, whatever the word order: a CDAB int32 whose "no value" is 0x7FFFFFFF sends
    # its low word first.
    ("int32", {"word_order": "little"}, "0xFFFF 0x7FFF", [0xFFFF, 0x7FFF], [0x7FFF, 0xFFFF]),
    ("uint16", {"byte_order": "little"}, 0xFF00, [0xFF00], [0x00FF]),
]


@pytest.mark.parametrize(("dtype", "extra", "sentinel", "sent", "other"), SENTINELS)
def test_a_sentinel_matches_its_register_words_before_decoding(
    dtype: str, extra: dict[str, object], sentinel: object, sent: list[int], other: list[int]
) -> None:
    spec = _spec(dtype, **extra, invalid=[sentinel])
    assert spec.invalid_words == {struct.pack(f">{len(sent)}H", *sent)}
    for raw in (decode_registers(spec, sent), _poll_path(spec, sent)):
        assert raw is NOT_AVAILABLE
        assert decode_all([spec], {"p": raw}).bad == {"p": "not_available"}
    for raw in (decode_registers(spec, other), _poll_path(spec, other)):
        assert raw is not NOT_AVAILABLE
        assert raw == decode_raw(spec, other) or raw != raw  # the value itself (NaN is NaN)


def test_a_float_sentinel_is_matched_by_its_bits_not_its_value() -> None:
    # -0.0 == 0.0 as floats: a sentinel compared after decoding would hide every real zero.
    spec = _spec("float32", invalid=["0x8000 0x0000"])
    assert decode_registers(spec, [0x8000, 0]) is NOT_AVAILABLE
    assert decode_all([spec], {"p": decode_registers(spec, [0, 0])}).values == {"p": 0.0}


def test_points_without_sentinels_decode_as_before() -> None:
    spec = _spec("uint16")
    assert spec.invalid_words == frozenset()
    assert _poll_path(spec, [0xFFFF]) == 0xFFFF
    assert decode_all([spec], {"p": 0xFFFF}).values == {"p": 0xFFFF}


def test_the_simulator_can_still_send_a_sentinel() -> None:
    # The virtual building (simulator/) sends encode_raw(spec, min(spec.invalid)) for
    # "not available".
    spec = _spec("int32", invalid=[0x7FFFFFFF])
    assert decode_registers(spec, encode_raw(spec, min(spec.invalid))) is NOT_AVAILABLE  # type: ignore[type-var]


# ---------------------------------------------------------------------------------------------
# Enum labels on float-coded points are applied when the value is whole


def test_enum_labels_apply_to_whole_float_values() -> None:
    modes = {0: "Cool", 1: "Heat", 3: "Fan"}
    spec = _spec("float32", enum=modes)
    decoded = decode_all([spec], {"p": decode_raw(spec, list(struct.unpack(">2H", b"@@\0\0")))})
    assert decoded.values == {"p": 3.0}
    assert label(spec, decoded.values["p"]) == "Fan"
    assert label(spec, 2.5) == "unknown (2.5)"
    assert label(spec, 7.0) == "unknown (7)"


def test_enum_labels_name_the_scaled_value() -> None:
    spec = _spec("uint16", scale=0.1, enum={1: "on", 0: "off"})
    decoded = decode_all([spec], {"p": 10})
    assert label(spec, decoded.values["p"]) == "on"
    assert label(_spec("uint16", enum={1: "on"}), 1) == "on"
