"""Decode tests of the model library's HVAC gateways: Intesis INMBS single-unit interfaces, the
Intesis INMBSMID multi-unit interface for Midea VRF, and the Daikin DTA116A51 DIII interface.

Each decode test builds a register image from a public source's own example (a manual's example
value, a driver's request frames, a design guide's bit table; named in a comment), decodes it
through the real codec with the shipped profile and checks the engineering values. The last
tests write modes and setpoints through the real driver (masked read-modify-write on the packed
Daikin registers) to the virtual building's AC model and read them back.
"""

from __future__ import annotations

import asyncio
import re
import textwrap
from pathlib import Path

import pytest

from core.types import Command
from drivers.modbus.codec import decode_all, resolve
from drivers.modbus.config import TcpConnection
from drivers.modbus.driver import ModbusDevice, ModbusDriver
from drivers.modbus.profile import Function, Profile
from gateway.config_load import load_site
from gateway.service import Gateway
from simulator.clock import SimClock
from simulator.models.hvac import MODE_AUTO, MODE_COOL, MODE_FAN, MODE_HEAT, AcUnit
from simulator.server import SimulatedDevice, serve
from tests.test_profiles import Image, decode_image, profile_named, spec_of


def holding(blocks: dict[int, list[int]]) -> Image:
    return {
        (Function.HOLDING, start + i): word
        for start, words in blocks.items()
        for i, word in enumerate(words)
    }


# --- Intesis INMBS single unit ------------------------------------------------------------------


def test_intesis_single_unit_in_deci_celsius() -> None:
    # INMBSDAI001R000 User's Manual r3.8 p.13: in the deci-Celsius format 220 reads 22.0 °C.
    # INMBSDAI001I000 r2.3 p.9: -32768 is the value before the AC unit has given one. Codes:
    # on 1; mode 4 Cool and fan 2 (my-gekko's Intesis profile and INMBSMID r1.3 p.13); vane 10
    # swing; error code 65535 = -1, no communication with the unit (INMBSDAI001I000 p.9).
    specs = resolve(profile_named("intesis_inmbs_ac"))
    image = holding(
        {
            0: [1, 4, 2, 10, 220, 0x8000, 0, 0, 0, 1234, 1, 0xFFFF],
            22: [0x8000, 220, 320, 160, 10],
            49: [0x0701],
        }
    )
    decoded = decode_all(specs, decode_image(specs, image))
    assert decoded.bad == {
        "room_temperature_degc": "not_available",
        "external_temperature_degc": "not_available",
    }
    assert decoded.values == {
        "on_off": 1,
        "mode": 4,
        "fan_speed": 2,
        "swing": 10,
        "setpoint_degc": 22.0,
        "window_contact": 0,
        "interface_disabled": 0,
        "remote_lock": 0,
        "operation_time_h": 1234.0,
        "alarm": 1,
        "malfunction_code": 65535.0,
        "setpoint_actual_degc": 22.0,
        "setpoint_max_degc": 32.0,
        "setpoint_min_degc": 16.0,
        "swing_horizontal": 10,
        "device_id": 0x0701,
    }


def test_intesis_mode_labels_are_the_manuals() -> None:
    # INMBSMID---I000 r1.3 p.13 and my-gekko: 0 auto, 1 heat, 2 dry, 3 fan, 4 cool.
    mode = spec_of(resolve(profile_named("intesis_inmbs_ac")), "mode")
    assert mode.enum == {0: "Auto", 1: "Heat", 2: "Dry", 3: "Fan", 4: "Cool"}
    assert (mode.function, mode.address) == (Function.HOLDING, 1)


def test_intesis_midea_multi_unit_addresses() -> None:
    # INMBSMID---I000 r1.3 p.13: indoor unit n at 1000 + 20 n + k; unit 3's setpoint (k 4) is
    # protocol address 1064 (PLC 1065). The site gives unit 3 `base: 60`.
    profile = profile_named("intesis_inmbsmid_multi")
    specs = resolve(profile, base=60)
    assert spec_of(specs, "setpoint_degc").address == 1064
    assert {s.name: s.address - 1060 for s in specs} == {
        "on_off": 0,
        "mode": 1,
        "fan_speed": 2,
        "swing": 3,
        "setpoint_degc": 4,
        "room_temperature_degc": 5,
        "alarm": 6,
        "malfunction_code": 7,
        "remote_lock": 8,
    }
    # Unit 3 on, heat, fan SP2, swing (10), 24.5 °C set, 23.0 °C reference, no alarm.
    image = holding({1060: [1, 1, 2, 10, 245, 230, 0, 0, 0]})
    decoded = decode_all(specs, decode_image(specs, image))
    assert decoded.bad == {}
    assert decoded.values == {
        "on_off": 1,
        "mode": 1,
        "fan_speed": 2,
        "swing": 10,
        "setpoint_degc": 24.5,
        "room_temperature_degc": 23.0,
        "alarm": 0,
        "malfunction_code": 0.0,
        "remote_lock": 0,
    }


# --- Daikin DTA116A51 ----------------------------------------------------------------------------

# hhorigian/hubitat_daikin_DTA116A51 @ de59564: the Modbus TCP frames it sends for ACs 1-15.
# FRAME_ON[k] writes holding register 0x07D0 + 3 (k - 1) (FC06, value 1 = on); FRAME_STATUS[k]
# reads input register 0x07D0 + 6 (k - 1) (FC04), whose bit 0 is on/off.
HUBITAT_ON_1 = "00 01 00 00 00 06 01 06 07 D0 00 01"
HUBITAT_ON_15 = "00 01 00 00 00 06 01 06 07 FA 00 01"
HUBITAT_STATUS_9 = "00 01 00 00 00 06 01 04 08 00 00 01"
HUBITAT_STATUS_15 = "00 01 00 00 00 06 01 04 08 24 00 01"


def _pdu(frame: str) -> tuple[int, int, int]:
    """Function code, register address and value/count of a Modbus TCP request frame."""
    b = bytes.fromhex(frame)
    assert b[2:4] == b"\x00\x00"
    assert int.from_bytes(b[4:6]) == len(b) - 6
    return b[7], int.from_bytes(b[8:10]), int.from_bytes(b[10:12])


@pytest.mark.parametrize(
    ("frame", "ac", "point", "function"),
    [
        (HUBITAT_ON_1, 1, "on_off", 6),
        (HUBITAT_ON_15, 15, "on_off", 6),
        (HUBITAT_STATUS_9, 9, "on_off_status", 4),
        (HUBITAT_STATUS_15, 15, "on_off_status", 4),
    ],
)
def test_daikin_unit_strides_match_a_drivers_frames(
    frame: str, ac: int, point: str, function: int
) -> None:
    code, address, _ = _pdu(frame)
    assert code == function
    spec = spec_of(resolve(profile_named("daikin_dta116a51")), f"unit{ac - 1}_{point}")
    table = Function.HOLDING if function == 6 else Function.INPUT
    assert (spec.function, spec.address, spec.field_mask) == (table, address, 0x0001)


def test_daikin_status_registers_from_the_design_guides() -> None:
    # Unit 1-02 (n = 2, input 32013..32018). 32001 bits (DTA116A51 design guide 4P357732-1
    # p.30): on (bit 0), fan direction 7 = swing (bits 8-10), fan speed 4 = H of 5 steps (bits
    # 12-14): 0x4701. 32002 bits (EKMBDXB7V1 guide 4P642495-1A p.26): mode setting 2 Cooling
    # (bits 0-3), filter sign off, operation status 2 Cooling (bits 8-10), cool/heat master 2
    # (bits 14-15): 0x8202. 32003 setpoint and 32005 room temperature signed x10 (26.0, 27.3);
    # 32006 bit 15: the temperature is valid.
    specs = resolve(profile_named("daikin_dta116a51"))
    image: Image = {
        (Function.INPUT, 2012 + i): w for i, w in enumerate([0x4701, 0x8202, 260, 0, 273, 0x8000])
    }
    decoded = decode_all(specs, decode_image(specs, image))
    assert decoded.bad == {}
    assert decoded.values == {
        "unit2_on_off_status": 1,
        "unit2_forced_off": 0,
        "unit2_mode_status": 2,
        "unit2_filter_sign": 0,
        "unit2_operation_status": 2,
        "unit2_cool_heat_master": 2,
        "unit2_setpoint_status_degc": 26.0,
        "unit2_malfunction_code": 0.0,
        "unit2_room_temperature_degc": 27.3,
        "unit2_sensor_flags": 0x8000,
    }


def test_daikin_auto_mode_and_negative_temperatures() -> None:
    # The Hubitat driver reads 32002's low byte as the mode and treats 3 as Auto; an
    # unoccupied room in winter at -2.5 °C reads 0xFFE7 (signed x10), a 1-step unit in heating.
    specs = resolve(profile_named("daikin_dta116a51"))
    image: Image = {
        (Function.INPUT, 2000 + i): w
        for i, w in enumerate([0x0000, 0x0103, 200, 0, 0xFFE7, 0x8000])
    }
    decoded = decode_all(specs, decode_image(specs, image))
    assert decoded.values["unit0_mode_status"] == 3
    assert decoded.values["unit0_operation_status"] == 1
    assert decoded.values["unit0_on_off_status"] == 0
    assert decoded.values["unit0_room_temperature_degc"] == pytest.approx(-2.5)


def test_daikin_command_registers() -> None:
    # Holding 42001 + 3 n: on (bit 0), the 0x60 the public rmodbus driver always sets in bits
    # 4-7, direction P2 (bits 8-10), speed 3 = M (bits 12-14): 0x3261; 42002 mode 1 Heat;
    # 42003 setpoint 20.0 (x10), the Hubitat driver's setAcTemp encoding. Unit 1-15 (n = 15).
    specs = resolve(profile_named("daikin_dta116a51"))
    image = holding({2045: [0x3261, 0x0001, 200]})
    decoded = decode_all(specs, decode_image(specs, image))
    assert decoded.bad == {}
    assert decoded.values == {
        "unit15_on_off": 1,
        "unit15_swing": 2,
        "unit15_fan_speed": 3,
        "unit15_mode": 1,
        "unit15_setpoint_degc": 20.0,
    }


def test_daikin_adapter_registers() -> None:
    specs = resolve(profile_named("daikin_dta116a51"))
    image: Image = {(Function.INPUT, a): w for a, w in {0: 1, 1: 0b101, 5: 0b100}.items()}
    decoded = decode_all(specs, decode_image(specs, image))
    assert decoded.values == {
        "adapter_ready": 1,
        "units_connected_1": 0b101,
        "units_comm_error_1": 0b100,
    }


# --- Hitachi HC-A(8/16/64)MB ------------------------------------------------------------------


def test_hitachi_unit_address_and_signed_temperatures() -> None:
    # PMML0351A rev.4 p.10: register = 2000 + 32 x unit address + offset; note (2): the
    # temperature readings are signed 16-bit, two's complement. Unit address 5 (base 2160):
    # settings on, Heat (3), Auto fan (4), 24 °C, louver Auto (7), nothing central; status the
    # same; air inlet 21 °C, outlet 38 °C, gas pipe -5 °C (0xFFFB), alarm code 0, Thermo ON (2).
    specs = resolve(profile_named("hitachi_hc_a_mb"), base=2000 + 32 * 5)
    assert spec_of(specs, "setpoint_degc").address == 2166
    words = [1, 5, 7, 1, 3, 4, 24, 7, 0, 1, 3, 4, 24, 7, 0, 21, 38, 0xFFFB, 30, 0, 0, 55, 2]
    image = holding({2160: words, 2184: [0xFFFE, 22], 2191: [23]})
    decoded = decode_all(specs, decode_image(specs, image))
    assert decoded.bad == {}
    assert decoded.values == {
        "present": 1,
        "on_off": 1,
        "mode": 3,
        "fan_speed": 4,
        "setpoint_degc": 24.0,
        "swing": 7,
        "central_lock_bits": 0,
        "on_off_status": 1,
        "mode_status": 3,
        "fan_speed_status": 4,
        "setpoint_status_degc": 24.0,
        "swing_status": 7,
        "room_temperature_degc": 21.0,
        "outlet_temperature_degc": 38.0,
        "gas_pipe_temperature_degc": -5.0,
        "liquid_pipe_temperature_degc": 30.0,
        "malfunction_code": 0.0,
        "compressor_stop_cause": 0,
        "expansion_valve_pct": 55.0,
        "operation_condition": 2,
        "ambient_temperature_degc": -2.0,
        "remote_controller_temperature_degc": 22.0,
        "remote_sensor_temperature_degc": 23.0,
    }


def test_hitachi_mode_codes_are_the_manuals() -> None:
    # PMML0175A p.12 and PMML0351A: 0 Cool, 1 Dry, 2 Fan, 3 Heat, 4 Auto, for setting and status.
    specs = resolve(profile_named("hitachi_hc_a_mb"))
    labels = {0: "Cool", 1: "Dry", 2: "Fan", 3: "Heat", 4: "Auto"}
    assert spec_of(specs, "mode").enum == spec_of(specs, "mode_status").enum == labels


# --- LG PDRYCB500 --------------------------------------------------------------------------------


def test_lg_registers_are_the_manuals_wire_addresses() -> None:
    # PDRYCB500 installation manual p.9 lists each register's Modicon number and its wire address:
    # 00001 = coil 0x0000, 30001-30003 = input 0x0000-0x0002, 30100 = input 0x0063, 40001 and
    # 40002 = holding 0x0000 and 0x0001, 40015 = holding 0x000E.
    specs = resolve(profile_named("lg_pdrycb500"))
    assert {s.name: (s.function, s.address) for s in specs} == {
        "running": (Function.COIL, 0x0000),
        "pipe_in_temperature_degc": (Function.INPUT, 0x0000),
        "pipe_out_temperature_degc": (Function.INPUT, 0x0001),
        "room_temperature_degc": (Function.INPUT, 0x0002),
        "malfunction_code": (Function.INPUT, 0x0063),
        "mode": (Function.HOLDING, 0x0000),
        "setpoint_degc": (Function.HOLDING, 0x0001),
        "fan_speed": (Function.HOLDING, 0x000E),
    }


def test_lg_values_in_the_manuals_encodings() -> None:
    # The manual's encodings: temperatures x10 (pipe -30..112 °C, so signed: -4.0 °C is 0xFFD8),
    # set temperature 180..300 = 18.0..30.0 °C, mode 4 Heat, fan 4 Auto, error 0 none.
    specs = resolve(profile_named("lg_pdrycb500"))
    image: Image = {
        (Function.COIL, 0): 1,
        (Function.INPUT, 0): 0xFFD8,
        (Function.INPUT, 1): 412,
        (Function.INPUT, 2): 215,
        (Function.INPUT, 0x63): 0,
        (Function.HOLDING, 0): 4,
        (Function.HOLDING, 1): 240,
        (Function.HOLDING, 0x0E): 4,
    }
    decoded = decode_all(specs, decode_image(specs, image))
    assert decoded.bad == {}
    assert decoded.values == {
        "running": True,
        "pipe_in_temperature_degc": pytest.approx(-4.0),
        "pipe_out_temperature_degc": pytest.approx(41.2),
        "room_temperature_degc": pytest.approx(21.5),
        "malfunction_code": 0.0,
        "mode": 4,
        "setpoint_degc": pytest.approx(24.0),
        "fan_speed": 4,
    }


# --- writes through the driver to the virtual building -----------------------------------------


def _driver(port: int, device_id: str, profile: Profile, unit: int, base: int = 0) -> ModbusDriver:
    conn = TcpConnection(
        transport="tcp", host="127.0.0.1", port=port, unit=unit, timeout=1.0, base=base
    )
    return ModbusDriver([ModbusDevice(device_id, profile, conn, 1.0)], lambda _: None)


async def test_daikin_setpoint_and_mode_written_into_packed_registers() -> None:
    """A rule's setpoint and a mode change go through the driver's read-modify-write of the
    unit's holding registers; the simulated unit takes them (in its own codes), its input
    registers show them, and the other fields of the register (fan speed, swing) are kept."""
    profile = profile_named("daikin_dta116a51")
    clock = SimClock(speed=0.0)
    model = AcUnit(profile, clock, on=True, mode=MODE_HEAT, setpoint=22.0, fan_speed=3)
    unit = model.units["unit2_"]
    async with await serve([SimulatedDevice(profile, model, unit=3)]) as server:
        driver = _driver(server.port, "vrv", profile, unit=3)
        before = await driver.read_once("vrv")
        mode = await driver.write(Command("vrv", "unit2_mode", 2, "test"))
        setpoint = await driver.write(Command("vrv", "unit2_setpoint_degc", 26.5, "test"))
        swing = await driver.write(Command("vrv", "unit2_swing", 7, "test"))
        after = await driver.read_once("vrv")
        await driver.stop()
    assert mode.ok, mode.reason
    assert setpoint.ok, setpoint.reason
    assert swing.ok, swing.reason
    assert (mode.old_value, setpoint.old_value) == (1, 22.0)
    assert before.values["unit2_mode"] == 1  # Heat in Daikin's codes
    v = after.values
    assert (v["unit2_mode"], v["unit2_mode_status"], v["unit2_operation_status"]) == (2, 2, 2)
    assert v["unit2_setpoint_degc"] == v["unit2_setpoint_status_degc"] == 26.5
    assert (v["unit2_fan_speed"], v["unit2_swing"], v["unit2_on_off"]) == (3, 7, 1)
    assert (unit.mode, unit.setpoint, unit.swing) == (MODE_COOL, 26.5, 7)
    # The other indoor units were not touched.
    assert v["unit1_mode"] == v["unit3_mode"] == 1
    assert model.units["unit3_"].setpoint == 22.0


async def test_daikin_ventilation_mode_has_no_coolmaster_twin_and_reads_back() -> None:
    profile = profile_named("daikin_dta116a51")
    model = AcUnit(profile, SimClock(speed=0.0), on=True, mode=MODE_COOL)
    async with await serve([SimulatedDevice(profile, model, unit=1)]) as server:
        driver = _driver(server.port, "vrv", profile, unit=1)
        result = await driver.write(Command("vrv", "unit0_mode", 4, "test"))
        after = await driver.read_once("vrv")
        await driver.stop()
    assert result.ok, result.reason
    assert after.values["unit0_mode"] == 4
    assert after.values["unit0_operation_status"] == 0  # fan: no heat moved
    assert model.mode == MODE_FAN


async def test_intesis_midea_units_behind_one_unit_id_take_their_own_writes() -> None:
    """Two Midea indoor units at base 0 and 20 of one Intesis interface: a mode written to the
    second in Intesis codes (4 Cool) reaches its model as cooling and reads back as 4."""
    profile = profile_named("intesis_inmbsmid_multi")
    clock = SimClock(speed=0.0)
    first = AcUnit(profile, clock, on=True, mode=MODE_HEAT, setpoint=20.0)
    second = AcUnit(profile, clock, on=True, mode=MODE_HEAT, setpoint=21.0)
    devices = [
        SimulatedDevice(profile, first, unit=2, base=0),
        SimulatedDevice(profile, second, unit=2, base=20),
    ]
    async with await serve(devices) as server:
        driver = _driver(server.port, "ac-503", profile, unit=2, base=20)
        before = await driver.read_once("ac-503")
        mode = await driver.write(Command("ac-503", "mode", 4, "test"))
        setpoint = await driver.write(Command("ac-503", "setpoint_degc", 26.0, "test"))
        after = await driver.read_once("ac-503")
        await driver.stop()
    assert (before.values["mode"], before.values["setpoint_degc"]) == (1, 21.0)
    assert mode.ok, mode.reason
    assert setpoint.ok, setpoint.reason
    assert (after.values["mode"], after.values["setpoint_degc"]) == (4, 26.0)
    assert (second.mode, second.setpoint) == (MODE_COOL, 26.0)
    assert (first.mode, first.setpoint) == (MODE_HEAT, 20.0)


async def test_hitachi_heat_written_in_its_own_code() -> None:
    """Heat is 3 on H-LINK (1 on CoolMasterNet): written through the driver at unit address 1,
    the simulated unit heats, and its status registers report it."""
    profile = profile_named("hitachi_hc_a_mb")
    model = AcUnit(profile, SimClock(speed=0.0), on=True, mode=MODE_COOL, setpoint=26.0)
    async with await serve([SimulatedDevice(profile, model, unit=4, base=2032)]) as server:
        driver = _driver(server.port, "ac-702", profile, unit=4, base=2032)
        before = await driver.read_once("ac-702")
        mode = await driver.write(Command("ac-702", "mode", 3, "test"))
        setpoint = await driver.write(Command("ac-702", "setpoint_degc", 20, "test"))
        after = await driver.read_once("ac-702")
        await driver.stop()
    assert before.values["mode"] == 0
    assert mode.ok, mode.reason
    assert setpoint.ok, setpoint.reason
    assert (model.mode, model.setpoint) == (MODE_HEAT, 20.0)
    v = after.values
    assert (v["mode"], v["mode_status"], v["setpoint_status_degc"]) == (3, 3, 20.0)
    assert v["outlet_temperature_degc"] == 40.0  # warm air out


async def test_lg_coil_and_setpoint_written_through_the_driver() -> None:
    profile = profile_named("lg_pdrycb500")
    model = AcUnit(profile, SimClock(speed=0.0), on=True, mode=MODE_HEAT, setpoint=22.0)
    async with await serve([SimulatedDevice(profile, model, unit=5)]) as server:
        driver = _driver(server.port, "ac-703", profile, unit=5)
        before = await driver.read_once("ac-703")
        off = await driver.write(Command("ac-703", "running", False, "test"))
        setpoint = await driver.write(Command("ac-703", "setpoint_degc", 20.0, "test"))
        after = await driver.read_once("ac-703")
        await driver.stop()
    assert (before.values["running"], before.values["mode"]) == (True, 4)  # Heat is 4 on LG
    assert off.ok, off.reason
    assert setpoint.ok, setpoint.reason
    assert (after.values["running"], after.values["setpoint_degc"]) == (False, 20.0)
    assert (model.on, model.setpoint) == (False, 20.0)


# --- the AC policy governs the gateways -------------------------------------------------------


async def test_ac_policy_governs_intesis_and_daikin_units_in_their_own_codes(
    tmp_path: Path,
) -> None:
    """The real gateway with ac_policy rules given each gateway's cooling code (Intesis 4,
    Daikin 2): units cooling at 22 °C in summer are written back to 26 °C, the Daikin one
    through its unit's packed holding registers; a unit in Intesis' Auto (code 0, CoolMasterNet's
    Cool) is left alone."""
    clock = SimClock(speed=0.0)
    intesis = profile_named("intesis_inmbs_ac")
    daikin = profile_named("daikin_dta116a51")
    cooling = AcUnit(intesis, clock, on=True, mode=MODE_COOL, setpoint=22.0)
    auto = AcUnit(intesis, clock, on=True, mode=MODE_AUTO, setpoint=22.0)
    vrv = AcUnit(daikin, clock, on=True, mode=MODE_COOL, setpoint=22.0)
    devices = [
        SimulatedDevice(intesis, cooling, unit=1),
        SimulatedDevice(intesis, auto, unit=2),
        SimulatedDevice(daikin, vrv, unit=3),
    ]
    async with await serve(devices) as server:
        site = tmp_path / "site.yaml"
        site.write_text(
            textwrap.dedent(f"""\
            site: {{name: 市行政中心, id: city-hall}}
            alarms: {{store: alarms.sqlite}}
            commands: {{allow: ["ac-*:setpoint_degc", "vrv-*:unit*_setpoint_degc"]}}
            devices:
              - id: ac-501
                profile: intesis_inmbs_ac
                modbus: {{transport: tcp, host: 127.0.0.1, port: {server.port}, unit: 1}}
                poll: 0.2s
                tags: {{zone: "501"}}
              - id: ac-502
                profile: intesis_inmbs_ac
                modbus: {{transport: tcp, host: 127.0.0.1, port: {server.port}, unit: 2}}
                poll: 0.2s
                tags: {{zone: "502"}}
              - id: vrv-6f
                profile: daikin_dta116a51
                modbus: {{transport: tcp, host: 127.0.0.1, port: {server.port}, unit: 3}}
                poll: 0.2s
                tags: {{zone: "6f"}}
            rules:
              - id: ac-policy-intesis
                kind: ac_policy
                enforce: true
                grace: 0s
                summer: {{start: "01-01", end: "12-31"}}
                scope: {{devices: ["ac-*"]}}
                cool_modes: [4]
                heat_modes: [1]
              - id: ac-policy-vrv-1-00
                kind: ac_policy
                enforce: true
                grace: 0s
                summer: {{start: "01-01", end: "12-31"}}
                scope: {{devices: [vrv-6f]}}
                setpoint_point: unit0_setpoint_degc
                mode_point: unit0_mode
                power_point: unit0_on_off
                cool_modes: [2]
                heat_modes: [1]
            """),
            encoding="utf-8",
        )
        gateway = Gateway(load_site(site), health_interval=3600)
        await gateway.start()
        try:
            for _ in range(100):
                if cooling.setpoint == auto.setpoint == vrv.setpoint == 26.0:
                    break
                await asyncio.sleep(0.1)
            await asyncio.sleep(0.5)  # more polls: nothing else is written
        finally:
            await gateway.stop()
    assert (cooling.setpoint, vrv.setpoint) == (26.0, 26.0)
    # A unit in Auto cools in summer: judged (and enforced) as cooling, its code 0 told
    # from the profile's labels (Intesis: 0 Auto), the site's rule naming no auto_modes.
    assert auto.setpoint == 26.0
    assert vrv.units["unit1_"].setpoint == 22.0  # no rule names unit 1-01's points
    # The write went to the holding register of unit 1-00 and kept its fan speed.
    assert ("unit0_setpoint_degc", 26.0) in [(p, v) for _t, p, v in vrv.writes]
    assert vrv.fan_speed == 3


def test_the_mode_code_table_matches_the_profiles() -> None:
    """drivers/POINT_NAMES.md tells a site which codes to give its AC rules for each gateway:
    every code it lists is the profile's, with the label it says."""
    text = (Path(__file__).parents[1] / "drivers" / "POINT_NAMES.md").read_text("utf-8")
    table = text.split("## HVAC mode codes by profile", 1)[1]
    rows = [r for r in table.splitlines() if r.startswith("| `")]
    assert len(rows) == 5
    for row in rows:
        names, cool, heat, other = (c.strip() for c in row.strip("|").split("|"))
        for name in re.findall(r"`([a-z0-9_]+)`", names.split("(")[0]):
            specs = resolve(profile_named(name))
            mode = next(s for s in specs if s.name in ("mode", "unit0_mode"))
            assert mode.enum is not None
            labels = {code: label.lower() for code, label in mode.enum.items()}
            assert labels[int(cool)].startswith("cool"), (name, cool)
            for code in re.findall(r"\d+", re.sub(r"\(.*?\)", "", heat)):
                assert labels[int(code)].startswith(("heat", "haux", "hh")), (name, code)
            for code, label in re.findall(r"(\d+) (\w+)", other):
                assert labels[int(code)].startswith(label.lower()), (name, code, label)
