"""Register-level profile features: bit fields inside a register (modes, bytes, nibbles, masked
codes), packed date-times and named piecewise decodes (four-quadrant power factor).

Decoding is checked against register words written out by hand (as a datasheet or a register
dump shows them), through both the poll's unpackers and decode_raw; writes go through the real
driver to pymodbus servers and the simulator, which must keep the other bits of a register.
"""

from __future__ import annotations

import asyncio
import re
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from core.field_types import FieldType
from core.types import Command, Value
from drivers.modbus.codec import (
    NOT_AVAILABLE,
    PointSpec,
    Raw,
    decode_all,
    decode_raw,
    decode_registers,
    encode_raw,
    fused_unpacker,
    label,
    masked_words,
    resolve,
    to_raw,
    unpacker,
)
from drivers.modbus.config import TcpConnection
from drivers.modbus.driver import ModbusDevice, ModbusDriver
from drivers.modbus.profile import DataType, DatetimeLayout, Profile
from gateway.config_errors import ConfigError
from gateway.config_load import load_site
from simulator.clock import SimClock
from simulator.models.base import StaticModel
from simulator.server import SimulatedDevice, serve
from tests.modbus_devices import modbus_server


def profile_of(*points: Mapping[str, Any], **extra: Any) -> Profile:
    return Profile.model_validate({"name": "t", "kind": "hvac", "points": list(points), **extra})


def errors_of(*points: Mapping[str, Any]) -> dict[tuple[str | int, ...], str]:
    with pytest.raises(ValidationError) as info:
        profile_of(*points)
    return {tuple(e["loc"]): e["msg"] for e in info.value.errors()}


def read(specs: list[PointSpec], regs: list[int]) -> dict[str, Raw]:
    """Raw values as a poll decodes them (each point's unpacker over one response), checked
    against decode_registers on the point's own registers."""
    data = struct.pack(f">{len(regs)}H", *regs)
    out: dict[str, Raw] = {}
    for spec in specs:
        off = 2 * spec.address
        out[spec.name] = unpacker(spec)(data, off)
        assert out[spec.name] == decode_registers(spec, regs[spec.address : spec.end + 1])
    return out


# An indoor unit's control register, as VRF Modbus adapters document it: operating mode in
# bits 0-3, swing in bits 8-10, fan speed in bits 12-14.
MODE = {0: "auto", 1: "cool", 2: "dry", 3: "fan", 4: "heat"}
FAN = {0: "auto", 1: "low", 2: "medium", 3: "high"}
CONTROL_POINTS: list[dict[str, Any]] = [
    {"name": "mode", "address": 0, "field": [0, 3], "enum": MODE, "writable": {"min": 0, "max": 4}},
    {"name": "swing", "address": 0, "field": [8, 10], "writable": {"min": 0, "max": 7}},
    {"name": "fan", "address": 0, "field": [12, 14], "enum": FAN, "writable": {"min": 0, "max": 3}},
    {"name": "on", "address": 1, "type": "bool", "bit": 0, "writable": {"min": 0, "max": 1}},
    {"name": "filter_alarm", "address": 1, "type": "bool", "bit": 5},
    {"name": "setpoint_degc", "address": 2, "scale": 0.1, "writable": {"min": 16, "max": 30}},
]


# --- bit fields: decoding ----------------------------------------------------------------------


def test_three_fields_of_one_register() -> None:
    specs = resolve(profile_of(*CONTROL_POINTS))
    # mode 4 (heat), swing 5, fan 2 (medium), and bits the profile does not name set (7, 15)
    word = 4 | 5 << 8 | 2 << 12 | 1 << 7 | 1 << 15
    raws = read(specs, [word, 0x0021, 245])
    assert (raws["mode"], raws["swing"], raws["fan"]) == (4, 5, 2)
    assert raws["on"] is True
    assert raws["filter_alarm"] is True
    decoded = decode_all(specs, raws)
    assert decoded.bad == {}
    assert decoded.values["mode"] == 4
    assert label(specs[0], decoded.values["mode"]) == "heat"
    assert label(specs[2], decoded.values["fan"]) == "medium"
    assert decoded.values["setpoint_degc"] == pytest.approx(24.5)


def test_bytes_nibbles_and_signed_fields() -> None:
    specs = resolve(
        profile_of(
            {"name": "high_byte", "address": 0, "field": [8, 15]},
            {"name": "low_byte", "address": 0, "field": [0, 7]},
            {"name": "nibble_1", "address": 1, "field": [4, 7]},
            {"name": "nibble_3", "address": 1, "field": [12, 15]},
            # a signed byte: an offset of -3 K in the high byte, +7 in the low one
            {"name": "offset_high_k", "address": 2, "type": "int16", "field": [8, 15]},
            {"name": "offset_low_k", "address": 2, "type": "int16", "field": [0, 7]},
        )
    )
    raws = read(specs, [0x12F0, 0xA5C3, 0xFD07])
    assert raws == {
        "high_byte": 0x12,
        "low_byte": 0xF0,
        "nibble_1": 0xC,
        "nibble_3": 0xA,
        "offset_high_k": -3,
        "offset_low_k": 7,
    }


def test_masked_code_beside_flags() -> None:
    """A status register whose code lives in bits 0-11 and whose flags are bits 12-15: the code
    is read without the flags, and labelled."""
    specs = resolve(
        profile_of(
            {
                "name": "fault_code",
                "address": 0,
                "field": [0, 11],
                "enum": {0: "none", 0x123: "E3"},
            },
            {"name": "flags", "address": 0, "field": [12, 15], "bits": {0: "comm", 3: "stop"}},
        )
    )
    raws = read(specs, [0x9123])
    values = decode_all(specs, raws).values
    assert values == {"fault_code": 0x123, "flags": 0b1001}
    assert label(specs[0], values["fault_code"]) == "E3"
    assert label(specs[1], values["flags"]) == "comm, stop"


def test_a_field_across_two_words_with_word_order() -> None:
    """A uint32 counter's top byte as a field, the low word first on the wire."""
    (spec,) = resolve(
        profile_of(
            {
                "name": "top",
                "address": 0,
                "type": "uint32",
                "word_order": "little",
                "field": [24, 31],
            }
        )
    )
    assert decode_raw(spec, [0x5678, 0xAB34]) == 0xAB
    assert unpacker(spec)(struct.pack(">2H", 0x5678, 0xAB34), 0) == 0xAB
    assert encode_raw(spec, 0xCD) == [0x0000, 0xCD00]
    assert masked_words(spec, [0x5678, 0xAB34], encode_raw(spec, 0xCD)) == [0x5678, 0xCD34]


def test_fields_are_not_fused_and_plain_points_still_are() -> None:
    """Fields share registers, so a request holding them decodes point by point; a request of
    plain points keeps its one struct call."""
    specs = resolve(profile_of(*CONTROL_POINTS))
    assert fused_unpacker([(s, 2 * s.address) for s in specs]) is None
    plain = resolve(profile_of({"name": "a", "address": 0}, {"name": "b", "address": 1}))
    assert fused_unpacker([(s, 2 * s.address) for s in plain]) is not None


def test_sentinel_words_of_a_fields_register() -> None:
    """`invalid` names the register's words: all of its fields are not available."""
    (spec,) = resolve(
        profile_of({"name": "mode", "address": 0, "field": [0, 3], "invalid": [0xFFFF]})
    )
    assert unpacker(spec)(b"\xff\xff", 0) is NOT_AVAILABLE
    assert unpacker(spec)(b"\xff\xf3", 0) == 3


# --- bit fields: encoding ----------------------------------------------------------------------


def test_encode_in_place_and_merge_keeps_the_other_bits() -> None:
    specs = {s.name: s for s in resolve(profile_of(*CONTROL_POINTS))}
    word = 4 | 5 << 8 | 2 << 12 | 1 << 15
    assert encode_raw(specs["swing"], 3) == [3 << 8]
    merged = masked_words(specs["swing"], [word], encode_raw(specs["swing"], 3))
    assert merged == [4 | 3 << 8 | 2 << 12 | 1 << 15]
    on = masked_words(specs["on"], [0x0020], encode_raw(specs["on"], True))
    assert on == [0x0021]
    assert masked_words(specs["on"], on, encode_raw(specs["on"], False)) == [0x0020]


def test_a_value_the_bits_cannot_hold_is_refused() -> None:
    specs = {s.name: s for s in resolve(profile_of(*CONTROL_POINTS))}
    with pytest.raises(OverflowError, match=r"bits 8\.\.10 \(0\.\.7\)"):
        encode_raw(specs["swing"], 8)
    (signed,) = resolve(profile_of({"name": "s", "address": 0, "type": "int16", "field": [0, 3]}))
    assert encode_raw(signed, -8) == [0x8]
    with pytest.raises(OverflowError):
        encode_raw(signed, 8)


# --- validation --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("point", "loc", "words"),
    [
        ({"field": [3, 1]}, ("points", 0, "field"), "write [1, 3]"),
        ({"field": [8, 16]}, ("points", 0, "field", 1), "bit 16 is outside its uint16"),
        ({"type": "float32", "field": [0, 3]}, ("points", 0, "field"), "integer register"),
        ({"function": "coil", "type": "bool", "field": [0, 0]}, ("points", 0, "field"), "coil"),
        ({"field": [0, 3], "bits": {4: "x"}}, ("points", 0, "bits"), "0..3 for field [0, 3]"),
        (
            {"field": [8, 10], "writable": {"min": 0, "max": 9}},
            ("points", 0, "writable"),
            "bits 8..10 hold 0..7",
        ),
        (
            {"type": "int16", "field": [0, 3], "writable": {"min": -9, "max": 0}},
            ("points", 0, "writable"),
            "hold -8..7",
        ),
        (
            {"field": [0, 1], "enum": {0: "a", 5: "b"}},
            ("points", 0, "enum"),
            "labels [5] can never",
        ),
        ({"type": "datetime"}, ("points", 0, "layout"), "unix_seconds"),
        ({"layout": "unix_seconds"}, ("points", 0, "layout"), "only applies to `type: datetime`"),
        (
            {"type": "datetime", "layout": "unix_seconds", "writable": {"min": 0, "max": 1}},
            ("points", 0, "writable"),
            "cannot be writable",
        ),
        (
            {"type": "datetime", "layout": "unix_seconds", "scale": 0.1},
            ("points", 0, "scale"),
            "no `scale`",
        ),
        (
            {"type": "string", "length": 2, "decode": "pf_four_quadrant"},
            ("points", 0, "decode"),
            "number",
        ),
        (
            {"type": "float32", "decode": "pf_four_quadrant", "writable": {"min": -1, "max": 1}},
            ("points", 0, "writable"),
            "cannot be written",
        ),
    ],
)
def test_mistakes_are_reported_at_their_key(
    point: dict[str, Any], loc: tuple[str | int, ...], words: str
) -> None:
    errors = errors_of({"name": "p", "address": 0, **point})
    assert loc in errors, errors
    assert words in errors[loc]


def test_unknown_layout_and_decode_name_the_choices() -> None:
    errors = errors_of({"name": "p", "address": 0, "type": "datetime", "layout": "bcd"})
    assert "yymmddhhmmss_bcd" in errors[("points", 0, "layout")]
    errors = errors_of({"name": "p", "address": 0, "type": "float32", "decode": "pf"})
    assert "pf_four_quadrant" in errors[("points", 0, "decode")]


def test_field_types_one_type_per_field() -> None:
    profile = profile_of(
        *CONTROL_POINTS,
        {"name": "clock", "address": 3, "type": "datetime", "layout": "yymmddhhmmss_bcd"},
        {"name": "pf", "address": 6, "type": "float32", "decode": "pf_four_quadrant"},
        {"name": "level", "address": 8, "field": [0, 3], "store": "integer"},
    )
    types = profile.field_types()
    assert types["mode"] is FieldType.INTEGER  # labelled codes are integers
    assert types["swing"] is FieldType.FLOAT  # a number without labels, as any register
    assert types["level"] is FieldType.INTEGER
    assert types["clock"] is FieldType.STRING
    assert types["pf"] is FieldType.FLOAT


# --- packed date-times -------------------------------------------------------------------------


def _datetime_spec(layout: str, **extra: Any) -> PointSpec:
    (spec,) = resolve(
        profile_of({"name": "clock", "address": 0, "type": "datetime", "layout": layout, **extra})
    )
    return spec


@pytest.mark.parametrize(
    ("layout", "regs", "text"),
    [
        ("yymmddhhmmss_bcd", [0x2612, 0x0111, 0x0203], "2026-12-01T11:02:03"),
        ("yymmddhhmmss_binary", [0x1A0C, 0x010B, 0x0203], "2026-12-01T11:02:03"),
        ("registers_ymdhms", [2026, 12, 1, 11, 2, 3], "2026-12-01T11:02:03"),
        ("registers_ymdhms", [26, 12, 1, 11, 2, 3], "2026-12-01T11:02:03"),
        # 1764586923 s = 2025-12-01 11:02:03 UTC
        ("unix_seconds", [0x692D, 0x75AB], "2025-12-01T11:02:03Z"),
    ],
)
def test_datetime_layouts_decode(layout: str, regs: list[int], text: str) -> None:
    spec = _datetime_spec(layout)
    assert spec.count == len(regs)
    data = struct.pack(f">{len(regs)}H", *regs)
    assert unpacker(spec)(data, 0) == text
    assert decode_all([spec], {"clock": text}).values == {"clock": text}
    back = encode_raw(spec, text)
    assert decode_raw(spec, back) == text
    if layout != "registers_ymdhms":  # two-digit years are written back in full
        assert back == regs


def test_unix_seconds_low_word_first() -> None:
    spec = _datetime_spec("unix_seconds", word_order="little")
    assert decode_raw(spec, [0x75AB, 0x692D]) == "2025-12-01T11:02:03Z"
    assert encode_raw(spec, "2025-12-01T19:02:03+08:00") == [0x75AB, 0x692D]


@pytest.mark.parametrize(
    ("orders", "regs"),
    [
        ({"byte_order": "little"}, [0x1226, 0x1101, 0x0302]),  # MM YY, hh DD, ss mm
        ({"byte_order": "little", "word_order": "little"}, [0x0302, 0x1101, 0x1226]),  # ss first
        ({"word_order": "little"}, [0x0203, 0x0111, 0x2612]),
    ],
)
def test_calendar_layouts_in_other_byte_and_word_orders(
    orders: dict[str, str], regs: list[int]
) -> None:
    spec = _datetime_spec("yymmddhhmmss_bcd", **orders)
    assert decode_raw(spec, regs) == "2026-12-01T11:02:03"
    assert encode_raw(spec, "2026-12-01T11:02:03") == regs


@pytest.mark.parametrize(
    ("layout", "regs"),
    [
        ("yymmddhhmmss_bcd", [0x261A, 0x0111, 0x0203]),  # 0x1A is no BCD digit pair
        ("yymmddhhmmss_bcd", [0x2613, 0x0111, 0x0203]),  # month 13
        ("yymmddhhmmss_binary", [0x1A02, 0x1E0B, 0x0203]),  # 30 February
        ("registers_ymdhms", [2026, 12, 1, 24, 0, 0]),  # hour 24
    ],
)
def test_a_register_image_that_is_no_date_cannot_be_decoded(layout: str, regs: list[int]) -> None:
    with pytest.raises(ValueError, match=r"BCD|month|day|hour"):
        decode_raw(_datetime_spec(layout), regs)


def test_a_clock_never_set_is_not_available_when_declared() -> None:
    spec = _datetime_spec("yymmddhhmmss_bcd", invalid=["0 0 0"])
    assert decode_registers(spec, [0, 0, 0]) is NOT_AVAILABLE
    assert decode_all([spec], {"clock": NOT_AVAILABLE}).bad == {"clock": "not_available"}


def test_a_two_digit_year_holds_this_century_only() -> None:
    with pytest.raises(ValueError, match=r"2000\.\.2099"):
        encode_raw(_datetime_spec("yymmddhhmmss_bcd"), "2100-01-01T00:00:00")


# --- named decodes: four-quadrant power factor -------------------------------------------------


@pytest.mark.parametrize(
    ("register", "pf"),
    [
        (0.8, 0.8),  # quadrant 1: the register is the PF
        (1.0, 1.0),
        (1.2, 0.8),  # +1..+2: PF = 2 - v
        (2.0, 0.0),
        (-0.6, -0.6),  # -1..0: PF = v
        (-1.3, -0.7),  # -2..-1: PF = -2 - v
        (-2.0, 0.0),
    ],
)
def test_pf_four_quadrant(register: float, pf: float) -> None:
    (spec,) = resolve(
        profile_of({"name": "pf", "address": 0, "type": "float64", "decode": "pf_four_quadrant"})
    )
    assert not spec.is_plain
    decoded = decode_all([spec], {"pf": register})
    assert decoded.values["pf"] == pytest.approx(pf)
    assert decode_all([spec], {"pf": to_raw(spec, pf)}).values["pf"] == pytest.approx(pf)


def test_pf_four_quadrant_after_scale_and_outside_its_domain() -> None:
    (spec,) = resolve(
        profile_of(
            {
                "name": "pf",
                "address": 0,
                "type": "int16",
                "scale": 0.001,
                "decode": "pf_four_quadrant",
            }
        )
    )
    assert decode_all([spec], {"pf": 1250}).values["pf"] == pytest.approx(0.75)
    assert decode_all([spec], {"pf": -1900}).values["pf"] == pytest.approx(-0.1)
    assert decode_all([spec], {"pf": 2500}).bad == {"pf": "decode"}
    assert to_raw(spec, -0.5) == -500


# --- the README's samples ----------------------------------------------------------------------


def _sample_value(spec: PointSpec) -> Any:
    if spec.dtype is DataType.DATETIME:
        zone = "Z" if spec.layout is DatetimeLayout.UNIX_SECONDS else ""
        return "2026-12-01T11:02:03" + zone
    if spec.decode is not None:
        return -0.5
    return max(spec.enum) if spec.enum else 1


def test_readme_samples_are_whole_valid_profiles() -> None:
    """The README's point lists for these features pass the profile's own checks (the README
    test validates points one by one), and decode what they encode."""
    readme = (Path(__file__).resolve().parent.parent / "drivers/modbus/README.md").read_text()
    blocks = [
        yaml.safe_load(block)
        for block in re.findall(r"```yaml\n(.*?)```", readme, re.S)
        if re.search(r"field: \[|type: datetime|decode: ", block)
    ]
    assert len(blocks) == 3
    for points in blocks:
        specs = resolve(profile_of(*points))
        image: dict[int, int] = {}
        for spec in specs:
            value = _sample_value(spec)
            words = encode_raw(spec, to_raw(spec, value) if spec.decode is not None else value)
            addresses = range(spec.address, spec.end + 1)
            if spec.field_mask is not None:
                words = masked_words(spec, [image.get(a, 0) for a in addresses], words)
            image.update(zip(addresses, words, strict=True))
        low = min(image)
        regs = [image.get(a, 0) for a in range(low, max(image) + 1)]
        data = struct.pack(f">{len(regs)}H", *regs)
        decoded = decode_all(
            specs, {s.name: unpacker(s)(data, 2 * (s.address - low)) for s in specs}
        )
        assert decoded.bad == {}
        assert decoded.values == pytest.approx({s.name: _sample_value(s) for s in specs})


# --- writes: read-modify-write through the driver ----------------------------------------------


def _driver(port: int, profile: Profile | None = None) -> ModbusDriver:
    conn = TcpConnection(transport="tcp", host="127.0.0.1", port=port, unit=1, timeout=1.0)
    device = ModbusDevice("ac", profile or profile_of(*CONTROL_POINTS), conn, 1.0)
    return ModbusDriver([device], lambda _: None)


CONTROL_IMAGE = {"holding": {0: 1 | 2 << 8 | 3 << 12 | 1 << 15, 1: 0x0020, 2: 240}}


async def test_two_fields_of_one_register_written_one_after_the_other() -> None:
    async with modbus_server({1: CONTROL_IMAGE}) as port:
        driver = _driver(port)
        mode = await driver.write(Command("ac", "mode", 4, "test"))
        fan = await driver.write(Command("ac", "fan", 1, "test"))
        sample = await driver.read_once("ac")
        raw_word = (await driver.links[("tcp", f"127.0.0.1:{port}")].read(1, 3, 0, 1, 1.0))[0]
        await driver.stop()
    assert mode.ok, mode.reason
    assert fan.ok, fan.reason
    assert (mode.old_value, fan.old_value) == (1, 3)
    assert sample.values["mode"] == 4
    assert sample.values["fan"] == 1
    assert sample.values["swing"] == 2  # untouched
    assert raw_word == 4 | 2 << 8 | 1 << 12 | 1 << 15  # bit 15, named by no point, kept


async def test_concurrent_writes_to_one_register_do_not_undo_each_other() -> None:
    """Two commands at once (MQTT and a rule, say): each one's read-modify-write completes
    before the other's read, so neither writes back the other's old bits."""
    async with modbus_server({1: CONTROL_IMAGE}) as port:
        driver = _driver(port)
        results = await asyncio.gather(
            driver.write(Command("ac", "mode", 2, "test")),
            driver.write(Command("ac", "swing", 7, "test")),
            driver.write(Command("ac", "fan", 0, "test")),
            driver.write(Command("ac", "on", True, "test")),
        )
        sample = await driver.read_once("ac")
        await driver.stop()
    assert all(r.ok for r in results), [r.reason for r in results]
    assert {k: sample.values[k] for k in ("mode", "swing", "fan", "on", "filter_alarm")} == {
        "mode": 2,
        "swing": 7,
        "fan": 0,
        "on": True,
        "filter_alarm": True,  # bit 5 of the same register as `on`, kept
    }


async def test_a_write_outside_the_field_is_refused_before_the_wire() -> None:
    async with modbus_server({1: CONTROL_IMAGE}) as port:
        driver = _driver(port)
        result = await driver.write(Command("ac", "swing", 9, "test"))
        sample = await driver.read_once("ac")
        await driver.stop()
    assert not result.ok
    assert "outside" in result.reason
    assert sample.values["swing"] == 2


class _StubbornModel(StaticModel):
    """A unit that acknowledges every write and keeps its settings (a locked remote)."""

    def on_write(self, point: str, value: Value) -> None:
        self.writes.append((self.clock.now(), point, value))


async def test_simulator_round_trip_of_field_writes() -> None:
    """The simulator encodes the fields from its model and hands each write back decoded: the
    model sees the new mode and the unchanged fan, and serves both after."""
    profile = profile_of(*CONTROL_POINTS)
    clock = SimClock(speed=0.0)
    fixed: dict[str, Value] = {"mode": 1, "swing": 2, "fan": 3, "on": False, "filter_alarm": True}
    model = StaticModel(profile, clock, fixed={**fixed, "setpoint_degc": 24.0})
    async with await serve([SimulatedDevice(profile, model, unit=1)]) as server:
        driver = _driver(server.port)
        before = await driver.read_once("ac")
        mode = await driver.write(Command("ac", "mode", 4, "test"))
        on = await driver.write(Command("ac", "on", True, "test"))
        after = await driver.read_once("ac")
        await driver.stop()
    assert {k: before.values[k] for k in fixed} == fixed
    assert mode.ok, mode.reason
    assert on.ok, on.reason
    assert {k: after.values[k] for k in fixed} == {**fixed, "mode": 4, "on": True}
    written = [(point, value) for _t, point, value in model.writes]
    assert ("mode", 4) in written
    assert ("fan", 3) in written  # the write carried the fan's bits unchanged


async def test_a_device_that_does_not_keep_the_value_fails_the_write() -> None:
    profile = profile_of(*CONTROL_POINTS)
    model = _StubbornModel(profile, SimClock(speed=0.0), fixed={"mode": 1, "fan": 3})
    async with await serve([SimulatedDevice(profile, model, unit=1)]) as server:
        driver = _driver(server.port)
        result = await driver.write(Command("ac", "mode", 4, "test"))
        await driver.stop()
    assert not result.ok
    assert result.failed
    assert result.old_value == 1
    assert "reads mode = 1 back after writing 4" in result.reason


def test_the_site_loader_names_each_mistake_with_its_file_line_and_key(tmp_path: Path) -> None:
    """Before anything connects: one line per mistake, at the key to fix."""
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    (profiles / "my_vrf.yaml").write_text(
        "name: my_vrf\n"
        "kind: hvac\n"
        "points:\n"
        "  - {name: mode, address: 0, field: [0, 3], writable: {min: 0, max: 4}}\n"
        "  - {name: swing, address: 0, field: [8, 16]}\n"
        "  - {name: fan, address: 0, field: [12, 14], writable: {min: 0, max: 9}}\n"
        "  - {name: clock, address: 1, type: datetime}\n",
        encoding="utf-8",
    )
    site = tmp_path / "site.yaml"
    site.write_text(
        "profile_dirs: [profiles]\n"
        "site: {name: 样例, id: sample}\n"
        "devices:\n"
        "  - id: ac-1\n"
        "    profile: my_vrf\n"
        "    modbus: {transport: tcp, host: 127.0.0.1, port: 1502, unit: 1}\n"
        "    poll: 5s\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as info:
        load_site(site)
    problems = sorted(str(p) for p in info.value.problems)
    where = profiles / "my_vrf.yaml"
    assert len(problems) == 3, problems
    assert problems[0].startswith(f"{where}:5: points[1].field[1]: "), problems
    assert "bit 16 is outside its uint16" in problems[0]
    assert problems[1].startswith(f"{where}:6: points[2].writable: "), problems
    assert "bits 12..14 hold 0..7" in problems[1]
    assert problems[2].startswith(f"{where}:7: points[3].layout: "), problems


async def test_simulated_bad_values_of_fields_and_clocks() -> None:
    """The simulator's bad-value fault on the new kinds of points: a field saturates (its bits
    all set, the other fields of the register untouched), a clock serves words that are no
    date, which the gateway reads as a BAD point, not a failed poll."""
    profile = profile_of(
        *CONTROL_POINTS,
        {"name": "clock", "address": 3, "type": "datetime", "layout": "yymmddhhmmss_bcd"},
    )
    fixed: dict[str, Value] = {"mode": 1, "swing": 2, "fan": 3, "clock": "2026-12-01T11:02:03"}
    device = SimulatedDevice(profile, StaticModel(profile, SimClock(speed=0.0), fixed=fixed))
    async with await serve([device]) as server:
        driver = _driver(server.port, profile)
        good = await driver.read_once("ac")
        device.set_bad_value("swing")
        device.set_bad_value("clock")
        bad = await driver.read_once("ac")
        await driver.stop()
    assert good.values["clock"] == "2026-12-01T11:02:03"
    assert good.bad == {}
    assert (bad.values["mode"], bad.values["swing"], bad.values["fan"]) == (1, 7, 3)
    assert bad.bad == {"clock": "decode"}
