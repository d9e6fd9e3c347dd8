"""Decode tests of the model library's "meters A": Eastron SDM120 and SDM72D-M V2, CHINT DDSU666,
Acrel ADL400, DTSD1352 and ADW300, CHINT DTSU666-H.

Each test builds a register image from a public source's own example (a vendor document's frame,
another project's test vector or bus capture; named in a comment), decodes it through the real
codec with the shipped profile and checks the engineering values. tests/test_profiles.py already
validates, round-trips and plans every profile; these tests check the profiles against what the
devices send. The last one reads a CT-operated DTSD1352 on an RS-485 line of the virtual
building through the driver: primary values through the meter's own PT and CT registers.
"""

from __future__ import annotations

import struct

import pytest

from core.types import Value
from drivers.modbus.codec import decode_all, decode_raw, resolve
from drivers.modbus.config import RtuOverTcpConnection
from drivers.modbus.driver import ModbusDevice, ModbusDriver
from drivers.modbus.profile import Function
from simulator.clock import SimClock
from simulator.models import StaticModel
from simulator.server import SimulatedDevice, serve
from tests.test_profiles import (
    Image,
    decode_image,
    float_words,
    modbus_crc,
    profile_named,
    spec_of,
)


def fc04_or_fc03_payload(hex_frame: str, unit: int, function: int) -> list[int]:
    """The register words of an RTU read response, after checking its CRC and header."""
    frame = bytes.fromhex(hex_frame)
    assert modbus_crc(frame[:-2]) == int.from_bytes(frame[-2:], "little")
    assert (frame[0], frame[1]) == (unit, function)
    count = frame[2]
    assert len(frame) == 3 + count + 2
    return list(struct.unpack(f">{count // 2}H", frame[3 : 3 + count]))


def image_words(image: Image) -> dict[int, list[int]]:
    """A holding-register image back as one-word blocks (to change some words of it)."""
    return {address: [word] for (function, address), word in image.items()}


def holding_image(blocks: dict[int, list[int]]) -> Image:
    return {
        (Function.HOLDING, start + i): word
        for start, words in blocks.items()
        for i, word in enumerate(words)
    }


# The example in Eastron's Modbus protocol documents (SDM120/SDM72/SDM630 "modbus.pdf", p. 6), as
# quoted in Tasmota's SDM drivers (xnrg_08_sdm120.ino): the answer to reading input
# registers 0x0000-0x0001 of unit 1 is 43 66 33 34 = 230.2 V.
EASTRON_VOLTAGE_FRAME = "01 04 04 43 66 33 34 1B 38"


@pytest.mark.parametrize("name", ["eastron_sdm120", "eastron_sdm72dm_v2"])
def test_eastron_voltage_from_the_protocol_example(name: str) -> None:
    regs = fc04_or_fc03_payload(EASTRON_VOLTAGE_FRAME, unit=1, function=4)
    specs = resolve(profile_named(name))
    spec = spec_of(specs, "voltage_l1_v")
    assert (spec.function, spec.address, spec.count) == (Function.INPUT, 0, 2)
    decoded = decode_all(specs, {spec.name: decode_raw(spec, regs)})
    assert decoded.bad == {}
    assert decoded.values["voltage_l1_v"] == pytest.approx(230.2, rel=1e-7)


def test_sdm120_addresses_agree_with_mbmd() -> None:
    # volkszaehler/mbmd meters/rs485/sdm120.go (after Eastron's SDM120 manual), all FC04 float32
    mbmd = {
        "voltage_l1_v": 0x0000,
        "current_l1_a": 0x0006,
        "active_power_total_w": 0x000C,
        "apparent_power_total_va": 0x0012,
        "reactive_power_total_var": 0x0018,
        "power_factor_total": 0x001E,
        "frequency_hz": 0x0046,
        "energy_import_kwh": 0x0048,
        "energy_export_kwh": 0x004A,
        "reactive_energy_import_kvarh": 0x004C,
        "reactive_energy_export_kvarh": 0x004E,
        "energy_total_kwh": 0x0156,
        "reactive_energy_total_kvarh": 0x0158,
    }
    specs = resolve(profile_named("eastron_sdm120"))
    assert {name: spec_of(specs, name).address for name in mbmd} == mbmd
    assert {spec_of(specs, name).function for name in mbmd} == {Function.INPUT}


def test_sdm72dm_v2_power_and_energy_in_modicon_numbers() -> None:
    # EVerest GenericPowermeter models/Eastron_SDM72DM.yaml gives 30053 (power), 30073 (import)
    # and 30075 (export) with function code 4: Modicon input-register numbers, 30001 = address 0.
    specs = resolve(profile_named("eastron_sdm72dm_v2"))
    for name, number in (
        ("active_power_total_w", 30053),
        ("energy_import_kwh", 30073),
        ("energy_export_kwh", 30075),
    ):
        spec = spec_of(specs, name)
        assert (spec.function, spec.address) == (Function.INPUT, number - 30001)


# yaacov/node-modbus-serial issue #509: a user's Eastron SDM72DM read with readInputRegisters(1,
# 100), i.e. the words of input registers 1..100 (so the list starts at the low word of the L1
# voltage). A real meter exporting: the three phase powers add up to the total.
SDM72DM_DUMP_FROM_1 = [
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    50108, 52674, 50059, 1730, 17030, 23989, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 50195, 7819, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 17903, 45703, 17826, 26757, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0,
]  # fmt: skip


def test_sdm72dm_register_dump_from_a_real_meter() -> None:
    assert len(SDM72DM_DUMP_FROM_1) == 100
    image: Image = {(Function.INPUT, 1 + i): word for i, word in enumerate(SDM72DM_DUMP_FROM_1)}
    specs = resolve(profile_named("eastron_sdm72dm_v2"))
    decoded = decode_all(specs, decode_image(specs, image))
    v = decoded.values
    assert v["active_power_l1_w"] == pytest.approx(-377.6075, abs=1e-4)
    assert v["active_power_l2_w"] == pytest.approx(-278.0528, abs=1e-4)
    assert v["active_power_l3_w"] == pytest.approx(67.1830, abs=1e-4)
    assert v["active_power_total_w"] == pytest.approx(-588.4772, abs=1e-4)
    assert v["active_power_total_w"] == pytest.approx(
        v["active_power_l1_w"] + v["active_power_l2_w"] + v["active_power_l3_w"], abs=1e-3
    )
    assert v["energy_import_kwh"] == pytest.approx(7670.3159, abs=1e-4)
    assert v["energy_export_kwh"] == pytest.approx(5197.0649, abs=1e-4)
    # This meter (version not stated) answered zero for voltages, currents and frequency: a
    # frequency of 0 Hz is no reading, and the profile's valid range says so.
    assert decoded.bad == {"frequency_hz": "out_of_range"}
    assert "voltage_l1_v" not in v  # its high word (address 0) was not read


def test_sdm72_words_read_one_register_at_a_time() -> None:
    # nmakel/sdm_modbus pull request #11 (SDM72 register map fix): a user's SDM72 read register
    # by register with uModbus, words and the values printed beside them (a single-phase load
    # on L1).
    image: Image = {
        (Function.INPUT, address + i): word
        for address, words in (
            (0x00, [17258, 44790]),
            (0x06, [15773, 52700]),
            (0x0C, [16688, 23770]),
        )
        for i, word in enumerate(words)
    }
    specs = resolve(profile_named("eastron_sdm72dm_v2"))
    decoded = decode_all(specs, decode_image(specs, image))
    assert decoded.bad == {}
    assert round(float(decoded.values["voltage_l1_v"]), 2) == 234.68
    assert round(float(decoded.values["current_l1_a"]), 2) == 0.08
    assert round(float(decoded.values["active_power_l1_w"]), 2) == 11.02


def test_ddsu666_openems_register_image() -> None:
    # OpenEMS io.openems.edge.meter.chint MeterChintDdsu666ImplTest.java @755a71df: the dummy
    # bridge's holding registers and the channel values OpenEMS expects from them (in its mV,
    # mA, W, mHz, Wh): 122000 mV, 5000 mA, 1250 W, 50000 mHz, import 1000000 Wh.
    image = holding_image(
        {
            0x2000: [0x42F4, 0x0000, 0x40A0, 0x0000, 0x3FA0, 0x0000, 0, 0, 0, 0],
            0x200A: [0, 0, 0, 0, 0x4248, 0x0000, 0, 0],
            0x4000: [0x447A, 0x0000, 0, 0],
        }
    )
    specs = resolve(profile_named("chint_ddsu666"))
    decoded = decode_all(specs, decode_image(specs, image))
    assert decoded.bad == {}
    assert decoded.values == {
        "voltage_l1_v": 122.0,
        "current_l1_a": 5.0,
        "active_power_total_w": 1250.0,  # 1.25 kW on the wire
        "reactive_power_total_var": 0.0,
        "power_factor_total": 0.0,
        "frequency_hz": 50.0,
        "energy_import_kwh": 1000.0,
    }


def test_ddsu666_exported_power_is_negative() -> None:
    # OpenEMS's inverted test: the same 1.25 kW read the other way round is -1250 W; on the wire
    # a meter exporting 1.25 kW sends the float -1.25 (0xBFA0 0x0000).
    specs = resolve(profile_named("chint_ddsu666"))
    spec = spec_of(specs, "active_power_total_w")
    decoded = decode_all(specs, {spec.name: decode_raw(spec, [0xBFA0, 0x0000])})
    assert decoded.values == {"active_power_total_w": -1250.0}


# SmartEVSE-3 fork, tests for its Acrel ADL400-D meter profiles (meter_profiles acrel_ev_l2 and
# acrel_mains, EMConfig[20] / [21], FC03, big-endian words): test vector "nominal_16A" is phase
# B current raw 1600 at 0x65 (16.00 A), phase B power int32 3680 at 0x166 (3680 W), phase B
# energy int32 56789 at 0x89 (567.89 kWh); "unbalanced" currents 2500, 1000, 500 at 0x64-0x66
# (25, 10, 5 A); "standby_zero" energy 10000 at 0x0000 (100.00 kWh). SmartEVSE applies no ratio:
# a direct-connect ADL400-D, whose PT and CT registers (0x008D, 0x008E) read 1.
ACREL_NOMINAL_16A = {
    0x0000: [0, 10000],
    0x0064: [2500, 1600, 500],
    0x0089: [0, 56789],
    0x0166: [0, 3680],
}
DIRECT_CONNECT_RATIOS = {0x008D: [1, 1]}


def test_adl400_smartevse_vectors() -> None:
    specs = resolve(profile_named("acrel_adl400"))
    image = holding_image({**ACREL_NOMINAL_16A, **DIRECT_CONNECT_RATIOS})
    decoded = decode_all(specs, decode_image(specs, image))
    assert decoded.bad == {}
    v = decoded.values
    assert v["current_l1_a"] == pytest.approx(25.0, abs=1e-9)
    assert v["current_l2_a"] == pytest.approx(16.0, abs=1e-9)
    assert v["current_l3_a"] == pytest.approx(5.0, abs=1e-9)
    assert v["active_power_l2_w"] == 3680
    assert v["energy_import_l2_kwh"] == pytest.approx(567.89, abs=1e-9)
    assert v["energy_total_kwh"] == pytest.approx(100.0, abs=1e-9)
    assert set(v) == {
        "current_l1_a",
        "current_l2_a",
        "current_l3_a",
        "active_power_l2_w",
        "energy_import_l2_kwh",
        "energy_total_kwh",
        "pt_ratio",
        "ct_ratio",
    }


def test_adl400_listener_block_layout() -> None:
    # The passive listener's table (an ESP32 on a live ADL400 line): one block 0x61..0x77 of
    # 16-bit values, then PT at 0x8D and CT at 0x8E; scales 0.1 V, 0.01 A, 0.001 PF, 0.01 Hz.
    specs = resolve(profile_named("acrel_adl400"))
    layout = {
        "voltage_l1_v": (0x61, 0.1),
        "current_l1_a": (0x64, 0.01),
        "reactive_power_total_var": (0x6E, 1.0),
        "apparent_power_total_va": (0x72, 1.0),
        "power_factor_total": (0x76, 0.001),
        "frequency_hz": (0x77, 0.01),
        "pt_ratio": (0x8D, 1.0),
        "ct_ratio": (0x8E, 1.0),
    }
    for name, (address, scale) in layout.items():
        spec = spec_of(specs, name)
        assert (spec.function, spec.address, spec.count, spec.scale) == (
            Function.HOLDING,
            address,
            1,
            scale,
        ), name
    # A 230.0 V, 50.00 Hz, PF 0.985 reading of that block, as the listener decodes it.
    image = holding_image({0x61: [2300], 0x76: [985, 5000], 0x8D: [1, 1]})
    decoded = decode_all(specs, decode_image(specs, image))
    assert decoded.bad == {}
    assert decoded.values["voltage_l1_v"] == pytest.approx(230.0, abs=1e-9)
    assert decoded.values["power_factor_total"] == pytest.approx(0.985, abs=1e-9)
    assert decoded.values["frequency_hz"] == pytest.approx(50.0, abs=1e-9)
    assert (decoded.values["pt_ratio"], decoded.values["ct_ratio"]) == (1, 1)


def test_dtsd1352_acrel_layout_vectors() -> None:
    # The DTSD1352 shares the ADL400's layout (Modbus-proxy AcrelMeter and the ACREL_DTSD1352
    # Arduino library list the same addresses); no DTSD1352 capture is public, so the
    # SmartEVSE "acrel_mains" vectors above are decoded with this profile, behind the CTs of the
    # Modbus-proxy's meter (PT = 1, CT = 40: its VOLTAGE_MULTIPLIER 0.1 x PT, CURRENT_MULTIPLIER
    # 0.01 x CT, POWER 0.001 x PT x CT kW, ENERGY 0.01 x PT x CT kWh): primary values.
    specs = resolve(profile_named("acrel_dtsd1352"))
    ratios = {0x008D: [1, 40]}
    image = holding_image({**ACREL_NOMINAL_16A, **ratios, 0x016A: [0, 3680], 0x0061: [2301]})
    decoded = decode_all(specs, decode_image(specs, image))
    assert decoded.bad == {}
    v = decoded.values
    assert v["voltage_l1_v"] == pytest.approx(230.1, abs=1e-9)  # x PT = 1
    assert v["current_l1_a"] == pytest.approx(25.0 * 40, abs=1e-9)
    assert v["current_l2_a"] == pytest.approx(16.0 * 40, abs=1e-9)
    assert v["current_l3_a"] == pytest.approx(5.0 * 40, abs=1e-9)
    assert v["active_power_l2_w"] == pytest.approx(3680 * 40, abs=1e-9)
    assert v["active_power_total_w"] == pytest.approx(3680 * 40, abs=1e-9)
    assert v["energy_total_kwh"] == pytest.approx(100.0 * 40, abs=1e-9)
    assert (v["pt_ratio"], v["ct_ratio"]) == (1, 40)
    # A CT register that reads 0 (out of its valid range) or is not read makes every point
    # scaled by it bad: never a secondary value passed off as a primary one.
    zero_ct = decode_all(
        specs, decode_image(specs, holding_image({**image_words(image), 0x008E: [0]}))
    )
    assert zero_ct.bad["ct_ratio"] == "out_of_range"
    assert zero_ct.bad["current_l1_a"] == "scale_by"
    assert zero_ct.bad["energy_total_kwh"] == "scale_by"
    assert zero_ct.values["voltage_l1_v"] == pytest.approx(230.1, abs=1e-9)  # PT only
    # Power factors are the 0x017C.. block here (the proxy reads PF total at 0x017F).
    assert spec_of(specs, "power_factor_total").address == 0x017F


def test_dtsd1352_export_power_is_a_signed_int32() -> None:
    # Constructed, not captured: -3680 W (export) as the two's-complement int32 the proxy
    # decodes with INT32: 0xFFFF 0xF1A0.
    specs = resolve(profile_named("acrel_dtsd1352"))
    spec = spec_of(specs, "active_power_total_w")
    assert decode_raw(spec, [0xFFFF, 0xF1A0]) == -3680
    raws = {"pt_ratio": 1, "ct_ratio": 1, spec.name: decode_raw(spec, [0xFFFF, 0xF1A0])}
    assert decode_all(specs, raws).values["active_power_total_w"] == -3680


def test_adw300_evcc_register_types_and_scales() -> None:
    # evcc templates/definition/meter/acrel-adw300.yaml @0316f24a: holding 20-22 uint16 x 0.1 V,
    # 26-28 uint16 x 0.01 A, 30/32/34 and 36 int32 W, 62 and 64 int32 x 0.01 kWh. No public
    # capture or datasheet example of an ADW300 register image was found: this image is
    # constructed from those types and scales (230.1 V, 12.34 A, -1500 W on phase C, 1234.56
    # kWh), and checks each encoding of the template, a negative int32 included.
    image = holding_image(
        {
            20: [2301, 2302, 2303],
            26: [1234, 0, 1],
            30: [0, 2000, 0, 0, 0xFFFF, 0xFA24, 0, 500],
            62: [0x0001, 0xE240, 0, 0],
        }
    )
    specs = resolve(profile_named("acrel_adw300"))
    decoded = decode_all(specs, decode_image(specs, image))
    assert decoded.bad == {}
    v = decoded.values
    assert v["voltage_l1_v"] == pytest.approx(230.1, abs=1e-9)
    assert v["voltage_l3_v"] == pytest.approx(230.3, abs=1e-9)
    assert v["current_l1_a"] == pytest.approx(12.34, abs=1e-9)
    assert v["current_l3_a"] == pytest.approx(0.01, abs=1e-9)
    assert (v["active_power_l1_w"], v["active_power_l2_w"]) == (2000, 0)
    assert v["active_power_l3_w"] == -1500
    assert v["active_power_total_w"] == 500
    assert v["energy_import_kwh"] == pytest.approx(1234.56, abs=1e-9)
    assert v["energy_export_kwh"] == 0


def test_acrel_secondary_values_are_scaled_by_the_meters_own_ratios() -> None:
    # Acrel: U = data x PT, I = data x CT, P and E = data x PT x CT (ADL3000-E ADDR list; the
    # Modbus-proxy's multipliers). Every such point of the CT-capable meters says so.
    expected = {"voltage": ("pt_ratio",), "current": ("ct_ratio",)}
    for name in ("acrel_adl400", "acrel_dtsd1352"):
        for spec in resolve(profile_named(name)):
            quantity = spec.name.split("_")[0]
            if spec.name.endswith(("_w", "_var", "_va", "_kwh", "_kvarh")):
                assert spec.scale_by == ("pt_ratio", "ct_ratio"), (name, spec.name)
            elif quantity in expected:
                assert spec.scale_by == expected[quantity], (name, spec.name)
            else:
                assert spec.scale_by == (), (name, spec.name)


def test_dtsu666_h_reads_the_dtsu666_words_at_huaweis_addresses() -> None:
    # No DTSU666-H capture is public. The DTSU666-to-Huawei translator (salakrzy, main/
    # DTSU666H_translator.cpp @22472ccd) answers the SUN2000 with the DTSU666's own words, and
    # mbmd's dtsu666h.go scales them as the DTSU666's: so the DTSU666 examples of the device
    # facts (shared/facts/devices/chint_dtsu666.yaml: 230.2 V sent as raw 2302.0 = 0x450F
    # 0xE000; the emulator's frequency default raw 4999.0) must decode the same at the
    # DTSU666-H's addresses (2110 voltage L1, 2124 frequency) as at the DTSU666's.
    voltage_words = [0x450F, 0xE000]
    frequency_words = float_words(4999.0)
    dtsu666 = resolve(profile_named("chint_dtsu666"))
    dtsu666_h = resolve(profile_named("chint_dtsu666_h"))
    plain = decode_all(
        dtsu666,
        decode_image(dtsu666, holding_image({0x2006: voltage_words, 0x2044: frequency_words})),
    )
    huawei = decode_all(
        dtsu666_h,
        decode_image(dtsu666_h, holding_image({2110: voltage_words, 2124: frequency_words})),
    )
    assert huawei.bad == {}
    assert plain.bad == {}
    assert huawei.values == plain.values
    assert huawei.values["voltage_l1_v"] == pytest.approx(230.2, abs=1e-9)
    assert huawei.values["frequency_hz"] == pytest.approx(49.99, abs=1e-9)


def test_dtsu666_h_positions_agree_with_mbmd_and_the_emulator() -> None:
    # Float positions counted from 2102 (mbmd's "Pos" comments; the emulator's addresses).
    positions = {
        "current_l1_a": 0,
        "voltage_l1_v": 4,
        "frequency_hz": 11,
        "active_power_total_w": 12,
        "reactive_power_total_var": 16,
        "energy_import_kwh": 32,
    }
    specs = resolve(profile_named("chint_dtsu666_h"))
    for name, position in positions.items():
        assert spec_of(specs, name).address == 2102 + 2 * position, name


# --- a CT-operated Acrel meter on an RS-485 line, read by the driver ---------------------------

# A DTSD1352 behind 200/5 A current transformers (CT = 40) on a low-voltage feeder (PT = 1): the
# primary values the virtual building's meter measures.
FEEDER_PRIMARY: dict[str, Value] = {
    "pt_ratio": 1,
    "ct_ratio": 40,
    "voltage_l1_v": 230.0,
    "current_l1_a": 160.0,
    "active_power_l1_w": 35_200.0,
    "active_power_total_w": 110_000.0,
    "energy_import_kwh": 123_456.78,
    "power_factor_total": 0.95,
    "frequency_hz": 50.0,
}


async def test_dtsd1352_behind_cts_reads_primary_values_through_the_driver() -> None:
    profile = profile_named("acrel_dtsd1352")
    served = SimulatedDevice(
        profile, StaticModel(profile, SimClock(), fixed=FEEDER_PRIMARY), unit=5
    )
    # The meter's registers hold the secondary side: 160 A / 40 = 4.00 A, 110 kW / 40.
    holding = served.image(Function.HOLDING)
    assert holding[0x0064] == 400
    assert (holding[0x016A] << 16 | holding[0x016B]) == 2750
    assert (holding[0x008D], holding[0x008E]) == (1, 40)
    async with await serve([served], framer="rtu") as server:
        connection = RtuOverTcpConnection(
            transport="rtu_over_tcp", host="127.0.0.1", port=server.port, unit=5, timeout=1.0
        )
        driver = ModbusDriver(
            [ModbusDevice("meter-b1-kitchen", profile, connection, 5.0)], lambda _s: None
        )
        try:
            sample = await driver.read_once("meter-b1-kitchen")
        finally:
            await driver.stop()
    assert sample.bad == {}
    v = sample.values
    assert v["current_l1_a"] == pytest.approx(160.0)
    assert v["active_power_total_w"] == pytest.approx(110_000.0)
    assert v["active_power_l1_w"] == pytest.approx(35_200.0)
    assert v["voltage_l1_v"] == pytest.approx(230.0)
    # 0.01 kWh on the secondary side is 0.4 kWh on the primary: the counter's resolution.
    assert v["energy_import_kwh"] == pytest.approx(123_456.78, abs=0.2)
    assert v["power_factor_total"] == pytest.approx(0.95)
