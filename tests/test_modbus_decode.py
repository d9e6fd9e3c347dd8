"""The poller's one-call decoding of a response gives exactly what the per-point unpackers give,
for every request the driver plans for every shipped Modbus profile, over TCP and RTU."""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest
import yaml

from drivers.modbus.codec import NOT_AVAILABLE, PointSpec, fused_unpacker, resolve, unpacker
from drivers.modbus.config import RtuConnection, TcpConnection
from drivers.modbus.driver import ModbusDevice, device_plan
from drivers.modbus.profile import DataType, Function, Profile

PROFILES = sorted((Path(__file__).resolve().parent.parent / "config" / "profiles").glob("*.yaml"))


def _modbus_profiles() -> list[Profile]:
    out = []
    for path in PROFILES:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        if "points" in data and "topics" not in data:
            try:
                out.append(Profile.model_validate(data))
            except ValueError:
                continue  # not a Modbus profile
    return out


def _same(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return math.isnan(b)
    return a == b and type(a) is type(b)


@pytest.mark.parametrize("profile", _modbus_profiles(), ids=lambda p: p.name)
def test_fused_decoding_matches_the_unpackers(profile: Profile) -> None:
    rng = random.Random(profile.name)
    connections = [
        TcpConnection(transport="tcp", host="127.0.0.1"),
        RtuConnection(transport="rtu", port="/dev/ttyUSB0", baudrate=9600),
    ]
    fused_seen = 0
    for conn in connections:
        for req in device_plan(ModbusDevice("d", profile, conn, 1.0)).requests:
            if req.function.is_bit:
                continue
            points = [(s, 2 * (s.address - req.start)) for s in req.points]
            fused = fused_unpacker(points)
            if fused is None:
                continue
            fused_seen += 1
            names, call = fused
            images = [rng.randbytes(2 * req.count) for _ in range(50)]
            for spec, off in points:  # and each sentinel in place
                for words in spec.invalid_words:
                    data = bytearray(rng.randbytes(2 * req.count))
                    data[off : off + len(words)] = words
                    images.append(bytes(data))
            for data in images:
                expected = {s.name: unpacker(s)(data, off) for s, off in points}
                got = dict(zip(names, call(data), strict=True))
                assert got.keys() == expected.keys()
                assert all(_same(got[n], expected[n]) for n in names), (req, got, expected)
    # Not vacuous: a request was compared, unless the profile sends words low word first (as
    # Carlo Gavazzi meters do) or packs several points into one register (bit fields and bits,
    # as the ABB Terra AC's state byte and flag): requests holding such a point are decoded
    # point by point.
    specs = resolve(profile)
    swapped = any(s.count > 1 and s.word_order == "little" for s in specs)
    packed = any(s.field_width or (s.dtype is DataType.BOOL and s.bit is not None) for s in specs)
    assert fused_seen or swapped or packed


def _spec(name: str, address: int, dtype: DataType, **extra: object) -> PointSpec:
    profile = Profile.model_validate(
        {
            "name": "p",
            "kind": "meter",
            "defaults": {"function": "holding"},
            "points": [{"name": name, "address": address, "type": dtype.value, **extra}],
        }
    )
    (spec,) = resolve(profile)
    assert spec.function is Function.HOLDING
    return spec


def test_fused_decoding_skips_gaps_and_refuses_what_it_cannot_do() -> None:
    a = _spec("a", 0, DataType.UINT16)
    b = _spec("b", 3, DataType.FLOAT32)
    fused = fused_unpacker([(b, 6), (a, 0)])
    assert fused is not None
    names, call = fused
    data = bytes([0, 7, 0xFF, 0xFF, 0xFF, 0xFF]) + bytes.fromhex("41200000")
    assert names == ("a", "b")
    assert call(data) == (7, 10.0)
    # Sentinels: integers by value, floats by their bytes.
    n = _spec("n", 0, DataType.UINT16, invalid=[0xFFFF])
    f = _spec("f", 1, DataType.FLOAT32, invalid=["0x8000 0x0000"])
    fused = fused_unpacker([(n, 0), (f, 2)])
    assert fused is not None
    assert list(fused[1](bytes.fromhex("ffff80000000"))) == [NOT_AVAILABLE, NOT_AVAILABLE]
    assert list(fused[1](bytes.fromhex("000141200000"))) == [1, 10.0]
    # Overlapping points (bits of one register) and swapped words go point by point.
    assert fused_unpacker([(a, 0), (a, 0)]) is None
    swapped = _spec("s", 0, DataType.FLOAT32, word_order="little")
    assert fused_unpacker([(swapped, 0)]) is None
