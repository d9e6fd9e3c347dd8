"""Decode tests of the second water meter of the model library: the Kaifeng Xintai Valve Co.
(开封新泰) RS-485 Modbus RTU water meter (config/profiles/xintai_water_meter.yaml).

The register map is PouCon's (tankwanghow/pou_con lib/pou_con/hardware/devices/
xintai_water_meter.ex @6aecd360 and priv/repo/device_types.json @1fd85564), which cites the
maker's "Water Meter MODBUS 485 protocol V1.pdf". No capture of the meter is public: the one
piece of wire data is the protocol document's own example as PouCon quotes it (answer bytes
1E 85 0B 3F = 0.545 m3/h). The other images are written out here from the documented encoding
(float32 with all four bytes little-endian, packed with struct independently of the codec)
with known values, and decoded through the real codec with the shipped profile.
tests/test_profiles.py validates, round-trips and plans this profile with every other one.
"""

from __future__ import annotations

import struct
from datetime import datetime

import pytest

from drivers.modbus.codec import Decoded, decode_all, label, resolve
from drivers.modbus.planner import WireModel, plan
from drivers.modbus.profile import Function
from simulator.clock import SimClock
from simulator.models import WaterMeter
from simulator.server import SimulatedDevice
from tests.test_profiles import Image, decode_image, profile_named, spec_of

HOLDING = Function.HOLDING
PROFILE = "xintai_water_meter"


def dcba(value: float) -> list[int]:
    """A float32 as the meter sends it: the IEEE bytes least significant first, two per
    register in address order (each register's word as Modbus carries it, high byte first)."""
    return list(struct.unpack(">2H", struct.pack("<f", value)))


def image_from(start: int, words: list[int]) -> Image:
    return {(HOLDING, start + i): word for i, word in enumerate(words)}


def decode(image: Image) -> Decoded:
    specs = resolve(profile_named(PROFILE))
    return decode_all(specs, decode_image(specs, image))


def test_the_protocol_documents_example_answer() -> None:
    # PouCon xintai_water_meter.ex, "Example from protocol doc: Response bytes: 1E 85 0B 3F =
    # 0.545 m3/h" (the instantaneous flow): registers 0x1E85, 0x0B3F
    want = struct.unpack("<f", bytes.fromhex("1E850B3F"))[0]
    assert want == pytest.approx(0.545, abs=1e-6)
    assert dcba(want) == [0x1E85, 0x0B3F]
    decoded = decode(image_from(0x0005, [0x1E85, 0x0B3F]))
    assert decoded.bad == {}
    assert decoded.values == {"flow_m3h": want}


def test_addresses_are_the_documents_numbers_on_the_wire() -> None:
    # PouCon reads 28 registers from PDU address 0x0001 (Modbux, no offset) and decodes the
    # first two as the positive cumulative flow; its template lists the same numbers.
    documented = {
        "volume_total_m3": 0x0001, "volume_reverse_m3": 0x0003, "flow_m3h": 0x0005,
        "pipe_status": 0x0007, "volume_remaining_m3": 0x0008, "pressure_mpa": 0x000A,
        "temperature_degc": 0x000C, "battery_voltage_v": 0x001A, "valve_status": 0x001C,
    }  # fmt: skip
    specs = resolve(profile_named(PROFILE))
    assert {s.name: s.address for s in specs} == documented
    assert all(s.function is HOLDING for s in specs)
    # one request covers them all, the one PouCon sends: FC03 from 1, 28 registers
    requests = plan(specs, WireModel.rtu(9600, turnaround_ms=50))
    assert [(r.function, r.start, r.count) for r in requests] == [(HOLDING, 1, 28)]


def test_a_full_read_from_register_1() -> None:
    # The answer to PouCon's read (FC03, start 0x0001, 28 registers), written out with known
    # values: 0x000E..0x0019 (address, line settings, meter number, clock) and 0x001D
    # are read along but not decoded (their encodings are not documented).
    words = [
        *dcba(12345.5),  # 0x0001 positive cumulative flow, m3
        *dcba(2.25),  # 0x0003 negative cumulative flow, m3
        *dcba(3.75),  # 0x0005 instantaneous flow, m3/h
        0x00AA,  # 0x0007 pipe full
        *dcba(87.5),  # 0x0008 remaining flow, m3
        *dcba(0.3125),  # 0x000A pressure, MPa
        *dcba(14.5),  # 0x000C temperature, degC
        *[0x1234] * 12,  # 0x000E..0x0019 not decoded
        *dcba(3.625),  # 0x001A battery, V
        0x0009,  # 0x001C valve open, battery low
    ]
    assert len(words) == 28
    specs = resolve(profile_named(PROFILE))
    decoded = decode_all(specs, decode_image(specs, image_from(0x0001, words)))
    assert decoded.bad == {}
    v = decoded.values
    assert v["volume_total_m3"] == 12345.5  # exact in float32
    assert v["volume_reverse_m3"] == 2.25
    assert v["flow_m3h"] == 3.75
    assert v["volume_remaining_m3"] == 87.5
    assert v["pressure_mpa"] == 0.3125
    assert v["temperature_degc"] == 14.5
    assert v["battery_voltage_v"] == 3.625
    assert v["pipe_status"] == 0xAA
    assert label(spec_of(specs, "pipe_status"), v["pipe_status"]) == "full"
    assert v["valve_status"] == 9
    assert label(spec_of(specs, "valve_status"), v["valve_status"]) == "valve open, battery low"


def test_pipe_empty_and_a_closed_valve() -> None:
    specs = resolve(profile_named(PROFILE))
    image = {**image_from(0x0007, [0x0055]), **image_from(0x001C, [0x0002])}
    decoded = decode_all(specs, decode_image(specs, image))
    assert decoded.bad == {}
    assert label(spec_of(specs, "pipe_status"), decoded.values["pipe_status"]) == "empty"
    assert label(spec_of(specs, "valve_status"), decoded.values["valve_status"]) == "valve closed"


def test_big_endian_words_would_not_read_as_the_value() -> None:
    # The byte order matters: the same 3.75 m3/h sent high word first (ABCD, what most meters
    # do) decodes to something else through this profile.
    abcd = list(struct.unpack(">2H", struct.pack(">f", 3.75)))
    decoded = decode(image_from(0x0005, abcd))
    assert decoded.values.get("flow_m3h") != pytest.approx(3.75)


def test_the_virtual_building_serves_the_meter() -> None:
    # The simulator's water model gives the new points values; the served registers decode
    # back through the profile to what the model says.
    profile = profile_named(PROFILE)
    clock = SimClock(speed=0.0, start=datetime(2025, 7, 15, 11, 30))
    model = WaterMeter(profile, clock, peak_m3h=6.0, seed=5)
    device = SimulatedDevice(profile, model)
    image = {(HOLDING, a): w for a, w in device.image(HOLDING).items()}
    specs = resolve(profile)
    decoded = decode_all(specs, decode_image(specs, image))
    assert decoded.bad == {}
    want = model.values()
    assert set(decoded.values) == {s.name for s in specs} == set(want)
    for name in ("volume_total_m3", "flow_m3h", "volume_remaining_m3", "pressure_mpa"):
        assert decoded.values[name] == pytest.approx(float(want[name]), rel=1e-6), name
    assert 1.0 < float(decoded.values["flow_m3h"]) < 8.0  # lunchtime on a Tuesday
    assert label(spec_of(specs, "pipe_status"), decoded.values["pipe_status"]) == "full"
    assert label(spec_of(specs, "valve_status"), decoded.values["valve_status"]) == "valve open"
