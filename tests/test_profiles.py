"""Tests of the Modbus device profiles in config/profiles/.

Every profile is validated, round-tripped point by point through the codec, and planned. Golden
tests decode register values taken from real devices (as recorded in the device facts), which our
own encoder cannot produce, so they check the profiles against the devices themselves.
"""

from __future__ import annotations

import math
import re
import struct
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from core.yaml_load import load_yaml_file
from drivers.modbus.codec import (
    INT_RANGES,
    PointSpec,
    Raw,
    decode_all,
    decode_raw,
    decode_registers,
    encode_raw,
    field_range,
    label,
    masked_words,
    resolve,
    to_engineering,
    to_raw,
)
from drivers.modbus.planner import WireModel, plan
from drivers.modbus.profile import DataType, DatetimeLayout, Function, Profile

PROFILE_DIR = Path(__file__).resolve().parent.parent / "config" / "profiles"
# Modbus register maps (no `protocol:`); the other drivers' profiles have their own tests
# (tests/test_mqtt_profiles.py, tests/test_dlt645_*.py).
PROFILE_FILES = sorted(
    p
    for p in PROFILE_DIR.glob("*.yaml")
    if not re.search(r"^protocol:", p.read_text(encoding="utf-8"), re.M)
)

Image = dict[tuple[Function, int], int]

RAW_LIMITS: dict[DataType, tuple[float, float]] = {
    **INT_RANGES,
    DataType.FLOAT32: (-3.0e38, 3.0e38),
    DataType.FLOAT64: (-1.0e300, 1.0e300),
}
FLOATS = (DataType.FLOAT32, DataType.FLOAT64)
SIGNED = (DataType.INT16, DataType.INT32, DataType.INT64)


def load_raw(path: Path) -> dict[str, Any]:
    data = load_yaml_file(path)  # refuses a key given twice, as the gateway does
    assert isinstance(data, dict), f"{path.name}: not a mapping"
    return data


def load(path: Path) -> Profile:
    return Profile.model_validate(load_raw(path))


def profile_named(name: str) -> Profile:
    return load(PROFILE_DIR / f"{name}.yaml")


def spec_of(specs: Sequence[PointSpec], name: str) -> PointSpec:
    for spec in specs:
        if spec.name == name:
            return spec
    raise KeyError(name)


def words(spec: PointSpec, image: Mapping[tuple[Function, int], int]) -> list[int]:
    return [image[(spec.function, spec.address + i)] for i in range(spec.count)]


def decode_image(
    specs: Sequence[PointSpec], image: Mapping[tuple[Function, int], int]
) -> dict[str, Raw]:
    """Raw values of the points whose registers are all in the image."""
    raws: dict[str, Raw] = {}
    for spec in specs:
        keys = [(spec.function, spec.address + i) for i in range(spec.count)]
        if all(k in image for k in keys):
            raws[spec.name] = decode_registers(spec, words(spec, image))
    return raws


def modbus_crc(frame: bytes) -> int:
    crc = 0xFFFF
    for byte in frame:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def float_words(value: float) -> list[int]:
    """A float32 as two big-endian registers, high word first (independent of the codec)."""
    return list(struct.unpack(">2H", struct.pack(">f", value)))


# ---------------------------------------------------------------------------------------------
# Example values, generated deterministically from each point


def _factor(spec: PointSpec, sf: int | None) -> float:
    return spec.scale * (10.0**sf if sf is not None else 1.0)


def _fraction(spec: PointSpec) -> float:
    """A position inside a range that differs between points; never an end nor the middle (the
    middle of a symmetric range is 0, which decodes the same in any byte or word order)."""
    return 0.2 + (spec.address % 7) * 0.09


def example_value(spec: PointSpec, sf: int | None) -> int | float | bool | str:
    """An engineering value for the point: inside `valid` and `writable`, representable."""
    if spec.dtype is DataType.STRING:
        return spec.name.upper().replace("_", "-")[: spec.count * 2]
    if spec.dtype is DataType.BOOL:
        return True
    if spec.dtype is DataType.DATETIME:  # decoded as ISO-8601: the wall clock, Z for Unix time
        zone = "Z" if spec.layout is DatetimeLayout.UNIX_SECONDS else ""
        return f"2026-05-{10 + spec.address % 19:02d}T08:30:45{zone}"
    if spec.decode is not None and spec.valid is None:  # a power factor: -1..1
        return round(-0.9 + 1.8 * _fraction(spec), 3)
    if spec.dtype is DataType.SUNSSF:
        return -1 if spec.address % 2 == 0 else -2
    if spec.enum:
        keys = sorted(
            k for k in spec.enum if spec.writable is None or spec.writable.contains(k)
        ) or sorted(spec.enum)
        return keys[len(keys) // 2]
    if spec.bits:
        # every other labelled bit: all bits set would be 0xFFFF, the usual "not available"
        return sum(1 << bit for bit in sorted(spec.bits)[::2])

    factor = _factor(spec, sf)
    raw_lo, raw_hi = field_range(spec) if spec.field_width else RAW_LIMITS[spec.dtype]
    ends = sorted((raw_lo * factor + spec.offset, raw_hi * factor + spec.offset))
    lo, hi = ends
    for rng in (spec.valid, spec.writable):
        if rng is not None:
            lo, hi = max(lo, rng.min), min(hi, rng.max)
    assert lo <= hi, f"{spec.name}: no representable value in its valid/writable range"
    if spec.valid is None and spec.writable is None and spec.field_width:
        return to_engineering(spec, round(raw_lo + (raw_hi - raw_lo) * _fraction(spec)), sf)
    if spec.valid is None and spec.writable is None:
        raw: int | float = spec.address % 997 + 1
        if spec.dtype in FLOATS:
            raw += 0.25
        elif spec.dtype in SIGNED and spec.address % 2:
            raw = -raw
        return to_engineering(spec, raw, sf)
    value = lo + (hi - lo) * _fraction(spec)
    if spec.dtype not in FLOATS and not spec.scaled:
        value = round(value)
    return value


def encode_point(spec: PointSpec, value: int | float | bool | str, sf: int | None) -> list[int]:
    if isinstance(value, bool | str) or not spec.scaled:
        return encode_raw(spec, value)
    return encode_raw(spec, to_raw(spec, value, sf))


def ratio_of(spec: PointSpec, examples: Mapping[str, int | float | bool | str]) -> float:
    """The product of the example values of the points a point is scaled by (`scale_by`)."""
    return math.prod(float(examples[name]) for name in spec.scale_by)


def build_image(
    specs: Sequence[PointSpec],
) -> tuple[Image, dict[str, int | float | bool | str], dict[str, int | None]]:
    """Register image of every point's example value, scale factors first."""
    examples: dict[str, int | float | bool | str] = {}
    for spec in specs:
        if spec.dtype is DataType.SUNSSF:
            examples[spec.name] = example_value(spec, None)
    sfs: dict[str, int | None] = {}
    for spec in specs:
        sf = examples.get(spec.scale_factor) if spec.scale_factor else None
        assert sf is None or isinstance(sf, int)
        sfs[spec.name] = sf
        if spec.name not in examples:
            examples[spec.name] = example_value(spec, sf)

    image: Image = {}
    for spec in specs:
        # A point scaled by other points (PT x CT) holds its value divided by their product.
        value = examples[spec.name]
        if spec.scale_by:
            assert isinstance(value, int | float)
            value = value / ratio_of(spec, examples)
        regs = encode_point(spec, value, sfs[spec.name])
        assert len(regs) == spec.count, f"{spec.name}: encoded {len(regs)} registers"
        keys = [(spec.function, spec.address + i) for i in range(spec.count)]
        if spec.field_mask is not None:
            # Bits and fields share registers: each sets only its own bits.
            regs = masked_words(spec, [image.get(key, 0) for key in keys], regs)
        for key, word in zip(keys, regs, strict=True):
            assert spec.field_mask is not None or key not in image, (
                f"{spec.name}: register {key[1]} overlaps another point"
            )
            image[key] = word
    return image, examples, sfs


# ---------------------------------------------------------------------------------------------
# Every profile


def test_profiles_exist() -> None:
    names = {p.stem for p in PROFILE_FILES}
    assert {
        "eastron_sdm630",
        "chint_dtsu666",
        "sunspec_inverter",
        "huawei_sun2000",
        "coolmaster_indoor",
    } <= names


@pytest.mark.parametrize("path", PROFILE_FILES, ids=lambda p: p.stem)
def test_profile_is_valid_and_documented(path: Path) -> None:
    raw = load_raw(path)
    profile = Profile.model_validate(raw)
    assert profile.name == path.stem, "file name must be the profile's name"
    assert profile.description.strip()
    assert profile.sources, "say where the register map comes from"
    for point in raw["points"]:
        assert "unit" in point, f"{point['name']}: give a unit ('' if dimensionless)"
        assert str(point.get("description", "")).strip(), f"{point['name']}: describe it"
    for p in profile.points:
        if p.valid is not None and p.writable is not None:
            assert p.valid.min <= p.writable.min, f"{p.name}: writable below valid"
            assert p.writable.max <= p.valid.max, f"{p.name}: writable above valid"
        if p.writable is not None and p.enum:
            lo, hi = int(p.writable.min), int(p.writable.max)
            missing = [v for v in range(lo, hi + 1) if v not in p.enum]
            assert not missing, f"{p.name}: writable values without a label: {missing}"
        if p.bits:
            width = 16 * p.registers(profile.defaults.type)
            assert all(0 <= b < width for b in p.bits), f"{p.name}: bit outside the register"


@pytest.mark.parametrize("path", PROFILE_FILES, ids=lambda p: p.stem)
def test_holes_move_with_the_base(path: Path) -> None:
    """Holes are relative to the base, like points: a site's base override moves both."""
    from drivers.modbus.config import TcpConnection
    from drivers.modbus.driver import ModbusDevice, device_plan

    profile = load(path)
    for base in (profile.base, profile.base + 1000):
        conn = TcpConnection(transport="tcp", host="127.0.0.1", base=base)
        plan_ = device_plan(ModbusDevice("d", profile, conn, 1.0))
        assert {s.address for s in plan_.specs} == {p.address + base for p in profile.points}
        for hole in profile.holes:
            for req in plan_.requests:
                if req.function is hole.function:
                    assert req.start + req.count - 1 < hole.start + base or (
                        req.start > hole.end + base
                    ), (req, hole)


@pytest.mark.parametrize("path", PROFILE_FILES, ids=lambda p: p.stem)
def test_every_point_round_trips(path: Path) -> None:
    profile = load(path)
    specs = resolve(profile)
    image, examples, sfs = build_image(specs)

    raws = decode_image(specs, image)
    assert set(raws) == {s.name for s in specs}
    decoded = decode_all(specs, raws)
    assert decoded.bad == {}, "example values must decode as good"

    for spec in specs:
        want, got = examples[spec.name], decoded.values[spec.name]
        if isinstance(want, str) or spec.dtype is DataType.BOOL:
            assert got == want, spec.name
        elif spec.enum or spec.bits:
            assert got == want, spec.name
            assert isinstance(got, int)
            text = label(spec, got)
            if spec.enum:
                assert text == spec.enum[got], spec.name
            else:
                assert spec.bits is not None
                names = [n for b, n in sorted(spec.bits.items()) if got >> b & 1]
                assert names, spec.name
                assert text == ", ".join(names), spec.name
        else:
            assert isinstance(want, int | float), spec.name
            assert isinstance(got, int | float), spec.name
            factor = abs(_factor(spec, sfs[spec.name])) * ratio_of(spec, examples)
            if spec.dtype in FLOATS:
                assert math.isclose(got, want, rel_tol=1e-6, abs_tol=1e-9), spec.name
            else:
                # integer registers: within half a step of the register's resolution
                assert abs(got - want) <= factor / 2 + 1e-9 * max(1.0, abs(want)), spec.name


@pytest.mark.parametrize("path", PROFILE_FILES, ids=lambda p: p.stem)
def test_every_point_can_be_planned(path: Path) -> None:
    profile = load(path)
    specs = resolve(profile)
    limit = profile.transport.max_registers_per_request
    requests = plan(specs, WireModel.tcp(10), max_registers=limit, holes=profile.holes)

    seen: dict[str, int] = {}
    for req in requests:
        assert req.count <= limit
        end = req.start + req.count - 1
        for hole in profile.holes:
            if hole.function is req.function:
                assert end < hole.start or req.start > hole.end, (
                    f"request {req.start}..{end} covers hole {hole.start}..{hole.end}"
                )
        for spec in req.points:
            assert spec.function is req.function
            assert req.start <= spec.address, spec.name
            assert spec.end <= end, spec.name
            seen[spec.name] = seen.get(spec.name, 0) + 1
    assert seen == {s.name: 1 for s in specs}, "every point in exactly one request"


def test_bool_bit_point_round_trip() -> None:
    point = {"name": "b", "address": 0, "type": "bool", "bit": 3}
    profile = Profile.model_validate({"name": "t", "kind": "t", "points": [point]})
    spec = resolve(profile)[0]
    assert decode_raw(spec, encode_raw(spec, True)) is True


# ---------------------------------------------------------------------------------------------
# Golden tests: values recorded from real devices (device facts, `examples`)


def test_sdm630_voltage_from_a_real_rtu_frame() -> None:
    # Tasmota xnrg_10_sdm630.ino: FC04 response to reading 2 registers at 0x0000 (voltage L1)
    frame = bytes.fromhex("01 04 04 43 66 33 34 1B 38")
    assert modbus_crc(frame[:-2]) == int.from_bytes(frame[-2:], "little")
    slave, function, count = frame[0], frame[1], frame[2]
    assert (slave, function, count) == (1, 4, 4)
    regs = list(struct.unpack(">2H", frame[3 : 3 + count]))

    specs = resolve(profile_named("eastron_sdm630"))
    spec = spec_of(specs, "voltage_l1_v")
    assert (spec.function, spec.address, spec.count) == (Function.INPUT, 0, 2)
    decoded = decode_all(specs, {spec.name: decode_raw(spec, regs)})
    assert decoded.bad == {}
    assert decoded.values["voltage_l1_v"] == pytest.approx(230.2, abs=1e-4)


def test_sdm630_tasmota_read_blocks_fit_the_device_limit() -> None:
    profile = profile_named("eastron_sdm630")
    specs = resolve(profile)
    # Tasmota's read plan (start, count), all FC04 — the facts' "read blocks seen in the wild"
    for start, count in ((0, 36), (70, 2), (342, 16)):
        assert count <= profile.transport.max_registers_per_request
        end = start + count - 1
        assert all(h.end < start or h.start > end for h in profile.holes)
        assert any(s.address == start for s in specs)


def test_dtsu666_scaled_floats() -> None:
    specs = resolve(profile_named("chint_dtsu666"))
    voltage = spec_of(specs, "voltage_l1_v")
    frequency = spec_of(specs, "frequency_hz")
    assert (voltage.function, voltage.address) == (Function.HOLDING, 0x2006)
    assert (frequency.function, frequency.address) == (Function.HOLDING, 0x2044)
    raws = {
        # 230.2 V is sent as raw float 2302.0 = words 0x450F 0xE000
        "voltage_l1_v": decode_raw(voltage, [0x450F, 0xE000]),
        # emulator register table default: raw float 4999 -> 49.99 Hz
        "frequency_hz": decode_raw(frequency, float_words(4999.0)),
    }
    assert raws["voltage_l1_v"] == 2302.0
    decoded = decode_all(specs, raws)
    assert decoded.bad == {}
    assert decoded.values["voltage_l1_v"] == pytest.approx(230.2, abs=1e-9)
    assert decoded.values["frequency_hz"] == pytest.approx(49.99, abs=1e-9)


def test_dtsu666_energy_is_already_kwh() -> None:
    specs = resolve(profile_named("chint_dtsu666"))
    spec = spec_of(specs, "energy_import_kwh")
    assert spec.address == 0x101E
    assert not spec.scaled
    assert spec_of(specs, "energy_export_kwh").address == 0x1028


# huawei-solar-lib tests/conftest.py MOCK_REGISTERS: a SUN2000-3KTL-L1 at night (standby)
HUAWEI_NIGHT_DUMP: dict[int, list[int]] = {
    30000: [21333, 20018, 12336, 12333, 13131, 21580, 11596, 12544, 0, 0, 0, 0, 0, 0, 0],
    30015: [18518, 13104, 12849, 13874, 12592, 14389, 0, 0, 0, 0],
    30070: [348],
    30071: [2],
    30072: [2],
    30073: [0, 3000],
    30075: [0, 3300],
    30077: [0, 3300],
    30079: [0, 1980],
    30081: [65535, 63556],
    32000: [1],
    32008: [257],
    32078: [0, 225],
    32080: [0, 0],
    32088: [3000],
    32089: [40960],
    32091: [25069, 6645],
    32093: [25069, 35661],
    32106: [0, 20734],
    32114: [0, 65],
    40000: [25069, 53611],
    43006: [60],
}


def test_huawei_sun2000_night_dump() -> None:
    specs = resolve(profile_named("huawei_sun2000"))
    image: Image = {
        (Function.HOLDING, start + i): word
        for start, block in HUAWEI_NIGHT_DUMP.items()
        for i, word in enumerate(block)
    }
    raws = decode_image(specs, image)
    decoded = decode_all(specs, raws)
    assert decoded.bad == {}
    v = decoded.values

    assert v["model_name"] == "SUN2000-3KTL-L1"
    assert v["serial_number"] == "HV3021621085"
    assert v["model_id"] == 348
    assert v["nb_pv_strings"] == 2
    assert v["nb_mpp_trackers"] == 2
    assert v["rated_power_w"] == 3000
    assert v["p_max_w"] == 3300
    assert v["s_max_va"] == 3300
    assert v["q_max_out_var"] == 1980
    assert v["q_max_in_var"] == -1980
    assert v["day_active_power_peak_w"] == 225
    assert v["active_power_w"] == 0
    assert v["insulation_resistance_mohm"] == pytest.approx(3.0)
    assert v["startup_time_s"] == 1642928629
    assert v["accumulated_yield_energy_kwh"] == pytest.approx(207.34)
    assert v["daily_yield_energy_kwh"] == pytest.approx(0.65)

    assert label(spec_of(specs, "state_1"), v["state_1"]) == "Standby"
    assert label(spec_of(specs, "alarm_1"), v["alarm_1"]) == (
        "High String Input Voltage (2001), Grid Undervoltage (2033)"
    )
    assert v["device_status"] == 0xA000
    assert label(spec_of(specs, "device_status"), v["device_status"]) == "Standby: no irradiation"


def test_huawei_sun2000_not_available_values_are_bad() -> None:
    specs = resolve(profile_named("huawei_sun2000"))
    names = ("power_factor", "active_power_w", "grid_frequency_hz", "daily_yield_energy_kwh")
    # The register words huawei-solar-lib reads as "no value", by register type.
    sentinels = {
        "int16": [0x7FFF],
        "int32": [0x7FFF, 0xFFFF],
        "uint16": [0xFFFF],
        "uint32": [0xFFFF, 0xFFFF],
    }
    raws: dict[str, Raw] = {}
    for name in names:
        spec = spec_of(specs, name)
        raws[name] = decode_registers(spec, sentinels[spec.dtype.value])
    decoded = decode_all(specs, raws)
    assert decoded.bad == dict.fromkeys(names, "not_available")
    # One bit less is a value (valid or not), never "not available".
    near = {name: decode_registers(spec_of(specs, name), [0, 1]) for name in names[1:2]}
    assert decode_all(specs, near).values == {"active_power_w": 1}


def test_sunspec_layout_and_discovery_words() -> None:
    profile = profile_named("sunspec_inverter")
    specs = resolve(profile)
    absolute = {s.name: s.address for s in specs}
    assert absolute["sunspec_marker"] == 40000
    assert absolute["common_model_id"] == 40002
    assert absolute["inverter_model_id"] == 40002 + 2 + 66
    assert absolute["mppt_model_id"] == 40070 + 2 + 50
    assert absolute["end_model_id"] == 40122 + 2 + 8 + 2 * 20
    # pysunspec2 scan of base 40000: "SunS", model id 1, L = 0x0042
    image: Image = {
        (Function.HOLDING, 40000): 0x5375,
        (Function.HOLDING, 40001): 0x6E53,
        (Function.HOLDING, 40002): 0x0001,
        (Function.HOLDING, 40003): 0x0042,
    }
    decoded = decode_all(specs, decode_image(specs, image))
    assert decoded.bad == {}
    assert decoded.values == {
        "sunspec_marker": "SunS",
        "common_model_id": 1,
        "common_model_length": 66,
    }


def test_sunspec_scale_factors() -> None:
    specs = resolve(profile_named("sunspec_inverter"))
    w, wh = spec_of(specs, "active_power_w"), spec_of(specs, "energy_total_wh")
    assert (w.scale_factor, wh.scale_factor) == ("w_sf", "wh_sf")
    assert wh.unit == "Wh"
    raws: dict[str, Raw] = {
        "active_power_w": decode_raw(w, [2345]),
        "w_sf": decode_raw(spec_of(specs, "w_sf"), [0xFFFF]),  # -1
        "energy_total_wh": decode_raw(wh, [0x0001, 0x86A0]),
        "wh_sf": decode_raw(spec_of(specs, "wh_sf"), [0]),
        "current_total_a": decode_raw(spec_of(specs, "current_total_a"), [411]),
        "a_sf": decode_registers(spec_of(specs, "a_sf"), [0x8000]),  # not implemented
        "operating_state": 4,
    }
    decoded = decode_all(specs, raws)
    assert decoded.values["active_power_w"] == pytest.approx(234.5)
    assert decoded.values["energy_total_wh"] == 100000
    assert label(spec_of(specs, "operating_state"), decoded.values["operating_state"]) == "MPPT"
    assert decoded.bad == {"current_total_a": "scale_factor", "a_sf": "not_available"}


def test_sunspec_energy_zero_is_a_real_value() -> None:
    specs = resolve(profile_named("sunspec_inverter"))
    decoded = decode_all(specs, {"energy_total_wh": 0, "wh_sf": 0})
    assert decoded.values["energy_total_wh"] == 0
    assert decoded.bad == {}


def test_coolmaster_setpoint() -> None:
    profile = profile_named("coolmaster_indoor")
    specs = resolve(profile)
    setpoint = spec_of(specs, "setpoint_degc")
    # VA 1: table BaseAddress 17, setpoint at table 19 = wire address 18
    assert setpoint.address == 18
    assert (setpoint.function, setpoint.dtype) == (Function.HOLDING, DataType.INT16)
    decoded = decode_all(specs, {"setpoint_degc": decode_raw(setpoint, [245])})
    assert decoded.values["setpoint_degc"] == pytest.approx(24.5)
    raw = to_raw(setpoint, 24.5)
    assert raw == 245
    assert encode_raw(setpoint, raw) == [245]
    assert to_raw(setpoint, 26.0) == 260


def test_coolmaster_base_per_virtual_address() -> None:
    profile = profile_named("coolmaster_indoor")
    # VA 2 (unit L1.102 in the wiki example): BaseAddress 33 (table) = wire 32 = 16 * 2
    specs = resolve(profile, base=16 * 2)
    assert spec_of(specs, "mode").address == 32
    assert spec_of(specs, "setpoint_degc").address == 34
    assert max(s.end for s in specs) < 32 + 16, "a unit owns 16 registers"
    mode = spec_of(specs, "mode")
    assert label(mode, 0) == "Cool"
    assert label(mode, 5) == "Fan"


# ---------------------------------------------------------------------------------------------
# Validation refuses what could never work, at the point's own key


def _problems(point: dict[str, Any], **profile: Any) -> list[tuple[tuple[str | int, ...], str]]:
    from pydantic import ValidationError

    data = {"name": "t", "kind": "meter", "points": [point], **profile}
    with pytest.raises(ValidationError) as caught:
        Profile.model_validate(data)
    return [(tuple(e["loc"]), e["msg"]) for e in caught.value.errors()]


@pytest.mark.parametrize(
    ("point", "loc", "says"),
    [
        ({"type": "int16", "invalid": [0x18000]}, ("invalid", 0), "does not fit in 1 register"),
        ({"type": "int16", "invalid": [-32768]}, ("invalid", 0), "0x8000"),
        ({"type": "int32", "invalid": [-1]}, ("invalid", 0), "0xffffffff"),
        ({"type": "float32", "invalid": [[0x8000]]}, ("invalid", 0), "1 register word given"),
        ({"type": "float32", "invalid": ["0x8000 0x8000 0"]}, ("invalid", 0), "has 2"),
        ({"type": "uint32", "invalid": [[0x10000, 0]]}, ("invalid", 0), "not a register word"),
        ({"type": "uint16", "invalid": [0, "n/a"]}, ("invalid", 1), "not a list of register"),
        ({"function": "coil", "type": "bool", "invalid": [1]}, ("invalid",), "one bit"),
        ({"type": "string", "length": 2, "enum": {1: "a"}}, ("enum",), "no codes"),
        ({"type": "float32", "bits": {0: "alarm"}}, ("bits",), "unscaled integer"),
        ({"type": "uint16", "scale": 0.1, "bits": {0: "alarm"}}, ("bits",), "scaled"),
    ],
)
def test_validation_refuses_what_could_never_match(
    point: dict[str, Any], loc: tuple[str | int, ...], says: str
) -> None:
    problems = _problems({"name": "flow_m3", "address": 0, **point})
    assert len(problems) == 1, problems
    where, message = problems[0]
    assert where == ("points", 0, *loc)
    assert "'flow_m3'" in message
    assert says in message


def test_a_boolean_is_no_sentinel() -> None:
    problems = _problems({"name": "p", "address": 0, "invalid": [True]})
    assert problems
    assert all(loc[:4] == ("points", 0, "invalid", 0) for loc, _ in problems)


def test_sentinel_word_count_follows_the_default_type() -> None:
    problems = _problems(
        {"name": "p", "address": 0, "invalid": [[0xFFFF]]}, defaults={"type": "float32"}
    )
    assert problems == [
        (
            ("points", 0, "invalid", 0),
            "point 'p' (float32, 2 registers): 1 register word given, the point has 2; "
            "write one word per register, e.g. '0xFFFF 0xFFFF'",
        )
    ]


def test_every_problem_of_a_profile_is_reported_at_once() -> None:
    from pydantic import ValidationError

    data = {
        "name": "t",
        "kind": "meter",
        "points": [
            {"name": "a", "address": 0, "type": "int16", "invalid": [-1]},
            {"name": "a", "address": 1, "type": "float32", "bits": {0: "x"}},
        ],
    }
    with pytest.raises(ValidationError) as caught:
        Profile.model_validate(data)
    locs = [tuple(e["loc"]) for e in caught.value.errors()]
    assert locs == [("points", 0, "invalid", 0), ("points", 1, "name"), ("points", 1, "bits")]


def test_check_names_the_file_line_and_point_of_a_sentinel_that_cannot_match(
    tmp_path: Path,
) -> None:
    import subprocess
    import sys
    import textwrap

    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "my_meter.yaml").write_text(
        textwrap.dedent("""\
            name: my_meter
            kind: meter
            defaults: {function: holding, type: float32}
            points:
              - {name: voltage_v, address: 0, unit: V, invalid: ["0x8000 0x8000"]}
              - {name: power_w, address: 2, unit: W, invalid: [[0x8000]]}
              - {name: temp_degc, address: 4, type: int16, unit: degC, invalid: [-32768]}
        """),
        encoding="utf-8",
    )
    site = tmp_path / "site.yaml"
    site.write_text(
        "site: {name: t, id: t}\nprofile_dirs: [profiles]\ndevices:\n"
        "  - {id: m0, profile: my_meter, modbus: {transport: tcp, host: 127.0.0.1}}\n",
        encoding="utf-8",
    )
    result = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "check", str(site)],
        capture_output=True,
        text=True,
        check=False,
        cwd=PROFILE_DIR.parent.parent,
        timeout=60,
    )
    assert result.returncode == 1
    profile = tmp_path / "profiles" / "my_meter.yaml"
    assert result.stderr.splitlines() == [
        f"{profile}:6: points[1].invalid[0]: point 'power_w' (float32, 2 registers): 1 register "
        "word given, the point has 2; write one word per register, e.g. '0xFFFF 0xFFFF'",
        f"{profile}:7: points[2].invalid[0]: point 'temp_degc' (int16, 1 register): -32768 is "
        "negative, and a register holds no sign: write the register words the device sends "
        "(-32768 is 0x8000 in 1 register)",
    ]
