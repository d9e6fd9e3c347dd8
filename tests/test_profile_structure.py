"""Profiles shaped like real datasheets (issue 10): repeated blocks, 1-based and Modicon register
numbers, values scaled by PT and CT ratio registers, derived points, a site's function-code
overrides, and YAML keys given twice refused everywhere profiles and site files are read.

The PT×CT, derived and override cases are polled by the real driver from the virtual
building's device, which encodes the model's values with the same profile.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from core.types import Sample
from core.yaml_load import DuplicateKeyError, load_yaml_file, load_yaml_text
from drivers.modbus.codec import NOT_AVAILABLE, decode_all, explain, resolve
from drivers.modbus.config import TcpConnection
from drivers.modbus.derived import DerivedSpec, Operation, compute
from drivers.modbus.describe import describe
from drivers.modbus.driver import ModbusDevice, ModbusDriver, device_plan
from drivers.modbus.overrides import apply_overrides
from drivers.modbus.profile import Function, Profile
from gateway.config_errors import ConfigError
from gateway.config_load import BUILTIN_PROFILES, load_profile, load_site
from rules.calendar import load_year_file
from rules.catalog import Catalog
from simulator.clock import SimClock
from simulator.models import StaticModel
from simulator.server import SimulatedDevice, serve
from simulator.site import read_profile, read_site

# A medium-voltage feeder meter as Acrel and CHINT document theirs: measurements in input
# registers as secondary values, the transformer ratios in holding registers, per-phase blocks.
HV_METER = """\
name: hv_meter
kind: meter
addressing: modicon
points:
  - {name: ct_ratio, address: 40007, description: current transformer ratio}
  - {name: pt_ratio, address: 40008, invalid: [0xFFFF], description: voltage transformer ratio}
  - {name: import_power_w, address: 30101, type: int32, unit: W, scale_by: [pt_ratio, ct_ratio]}
  - {name: export_power_w, address: 30103, type: int32, unit: W, scale_by: [pt_ratio, ct_ratio]}
blocks:
  - count: 3
    stride: {input: 4}
    points:
      - {name: "voltage_l{n}_v", address: 30001, scale: 0.1, unit: V, scale_by: [pt_ratio],
         description: "phase {n} voltage"}
      - {name: "current_l{n}_a", address: 30002, scale: 0.001, unit: A, scale_by: [ct_ratio]}
      - {name: "power_l{n}_w", address: 30003, type: int32, unit: W,
         scale_by: [pt_ratio, ct_ratio]}
derived:
  - {name: power_total_w, unit: W, sum: [power_l1_w, power_l2_w, power_l3_w]}
  - {name: grid_power_w, unit: W, difference: [import_power_w, export_power_w]}
  - {name: apparent_l1_va, unit: VA, product: [voltage_l1_v, current_l1_a]}
  - {name: power_factor_l1, ratio: [power_l1_w, apparent_l1_va]}
"""

# 10 kV / 100 V and 200 A / 5 A: the meter's terminals see 1/100 of the voltage, 1/40 of the
# current, 1/4000 of the power.
PRIMARY: dict[str, Any] = {
    "pt_ratio": 100,
    "ct_ratio": 40,
    "import_power_w": 3_000_000.0,
    "export_power_w": 400_000.0,
    **{f"voltage_l{n}_v": 10_000.0 + 100 * n for n in (1, 2, 3)},
    **{f"current_l{n}_a": 100.0 * n for n in (1, 2, 3)},
    **{f"power_l{n}_w": 1_000_000.0 * n for n in (1, 2, 3)},
}


def _profile(text: str, **changes: Any) -> Profile:
    data = yaml.safe_load(text)
    data.update(changes)
    return Profile.model_validate(data)


def _hv_meter() -> Profile:
    return _profile(HV_METER)


def _errors(text: str, **changes: Any) -> list[tuple[str, str]]:
    """Each validation problem as (key path, message)."""
    with pytest.raises(ValidationError) as info:
        _profile(text, **changes)
    return [
        (".".join(str(p) for p in e["loc"]), e["msg"].removeprefix("Value error, "))
        for e in info.value.errors()
    ]


def _tcp(port: int, unit: int, **extra: Any) -> TcpConnection:
    return TcpConnection(
        transport="tcp", host="127.0.0.1", port=port, unit=unit, timeout=1.0, retries=0, **extra
    )


async def _read(device: ModbusDevice, served: SimulatedDevice) -> Sample:
    async with await serve([served]) as server:
        conn = device.connection.model_copy(update={"port": server.port})
        driver = ModbusDriver(
            [ModbusDevice(device.id, device.profile, conn, device.interval, device.points)],
            lambda _s: None,
        )
        try:
            return await driver.read_once(device.id)
        finally:
            await driver.stop()


# --- blocks and register numbering ---------------------------------------------------------


def test_blocks_unroll_into_plain_points_with_modicon_numbers_made_0_based() -> None:
    profile = _hv_meter()
    where = {p.name: (p.function, p.address) for p in profile.points}
    assert where["ct_ratio"] == (Function.HOLDING, 6)
    assert where["import_power_w"] == (Function.INPUT, 100)
    assert [where[f"voltage_l{n}_v"] for n in (1, 2, 3)] == [
        (Function.INPUT, 0),
        (Function.INPUT, 4),
        (Function.INPUT, 8),
    ]
    assert where["power_l3_w"] == (Function.INPUT, 10)
    assert profile.point("voltage_l2_v").description == "phase 2 voltage"
    assert profile.blocks == []
    assert profile.addressing.value == "pdu"
    # What a loaded profile dumps is plain and loads back to the same points.
    again = Profile.model_validate(profile.model_dump(mode="json", exclude_defaults=True))
    assert again.model_dump() == profile.model_dump()


def test_a_block_has_a_stride_per_table_a_base_and_a_first_number() -> None:
    """Indoor units 0..63 of an A/C gateway: each unit's holding registers 3 apart from 2000,
    its input registers 6 apart from 2000 (a Daikin DIII-style layout)."""
    profile = _profile("""\
        name: ac_gateway
        kind: hvac
        blocks:
          - count: 64
            first: 0
            base: {holding: 2000, input: 2000}
            stride: {holding: 3, input: 6}
            points:
              - {name: "unit{n}_on", address: 0, writable: {min: 0, max: 1}}
              - {name: "unit{n}_setpoint_degc", address: 2, scale: 0.1,
                 writable: {min: 16, max: 32}}
              - {name: "unit{n}_room_degc", address: 4, function: input, type: int16, scale: 0.1}
        """)
    where = {p.name: (p.function, p.address) for p in profile.points}
    assert len(where) == 64 * 3
    assert where["unit0_on"] == (Function.HOLDING, 2000)
    assert where["unit63_setpoint_degc"] == (Function.HOLDING, 2000 + 2 + 63 * 3)
    assert where["unit1_room_degc"] == (Function.INPUT, 2004 + 6)
    assert "unit64_on" not in where


def test_one_based_numbers_and_holes() -> None:
    profile = _profile("""\
        name: one_based
        kind: meter
        addressing: one_based
        holes: [{function: holding, start: 3, end: 4}]
        points:
          - {name: a, address: 1}
          - {name: b, address: 5, type: uint32}
        """)
    assert [(p.name, p.address) for p in profile.points] == [("a", 0), ("b", 4)]
    assert (profile.holes[0].start, profile.holes[0].end) == (2, 3)


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        (1, (Function.COIL, 0)),
        (10001, (Function.DISCRETE, 0)),
        (30001, (Function.INPUT, 0)),
        (39999, (Function.INPUT, 9998)),
        (40001, (Function.HOLDING, 0)),
        (300001, (Function.INPUT, 0)),
        (465536, (Function.HOLDING, 65535)),
    ],
)
def test_modicon_numbers_imply_the_table(address: int, expected: tuple[Function, int]) -> None:
    dtype = "bool" if expected[0].is_bit else "uint16"
    text = f"name: m\nkind: meter\naddressing: modicon\npoints: [{{name: p, address: {address}}}]"
    profile = _profile(text, defaults={"type": dtype})
    point = profile.points[0]
    assert (point.function, point.address) == expected


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        (
            {"points": [{"name": "p", "address": 40001, "function": "input"}]},
            [
                (
                    "points.0.function",
                    "point 'p': address 40001 is a holding register in Modicon notation but "
                    "`function: input` says otherwise; correct the address or remove `function`",
                )
            ],
        ),
        (
            {"points": [{"name": "p", "address": 20001}]},
            [("points.0.address", "point 'p': 20001 is no Modicon register number")],
        ),
        (
            {"points": [{"name": "p", "address": 40000}]},
            [("points.0.address", "point 'p': 40000 is no Modicon register number")],
        ),
        (
            {"addressing": "pdu", "points": [{"name": "p", "address": 40001 + 30000}]},
            [("points.0.address", "point 'p': 70001 is past 65535; Modicon numbers")],
        ),
        (
            {"addressing": "one_based", "points": [{"name": "p", "address": 0}]},
            [("points.0.address", "point 'p': 0 is no register number with `addressing: one")],
        ),
        (
            {
                "holes": [{"function": "input", "start": 40010, "end": 40011}],
                "points": [{"name": "p", "address": 40001}],
            },
            [
                ("holes.0.start", "hole: 40010 is a holding register in Modicon notation, the"),
                ("holes.0.end", "hole: 40011 is a holding register in Modicon notation, the"),
            ],
        ),
    ],
)
def test_register_numbers_that_cannot_be_are_refused_at_their_key(
    changes: dict[str, Any], expected: list[tuple[str, str]]
) -> None:
    got = _errors("name: m\nkind: meter\naddressing: modicon", **changes)
    assert len(got) == len(expected), got
    pairs = zip(got, expected, strict=True)
    assert [(loc, msg[: len(text)]) for (loc, msg), (_, text) in pairs] == expected


BLOCK = {"count": 8, "stride": {"input": 2}, "points": [{"name": "pv{n}_voltage_v", "address": 0}]}


@pytest.mark.parametrize(
    ("block", "points", "expected"),
    [
        (
            {
                **BLOCK,
                "stride": {"holding": 2},
                "points": [{"name": "pv{n}_v", "address": 0, "function": "input"}],
            },
            [],
            (
                "blocks.0.stride",
                "the block's point 'pv{n}_v' is in input registers and `stride` gives only "
                "holding; add `input: <registers>`",
            ),
        ),
        (
            {
                **BLOCK,
                "points": [
                    {"name": "pv{n}_voltage_v", "address": 0, "function": "input"},
                    {"name": "pv{n}_power_w", "address": 1, "function": "input", "type": "int32"},
                ],
            },
            [],
            ("blocks.0.stride", "the block's input registers span 3 (0..2 for the first copy)"),
        ),
        (
            {**BLOCK, "stride": 10_000, "points": [{"name": "pv{n}_v", "address": 0}]},
            [],
            ("blocks.0.count", "copy 8 of point 'pv{n}_v' would end at register 70000"),
        ),
        (
            {**BLOCK, "points": [{"name": "pv_voltage_v", "address": 0}]},
            [],
            (
                "blocks.0.points.0.name",
                "'pv_voltage_v' is no name for a block's point: lower snake case with `{n}` "
                "once where the copy's number goes, e.g. pv{n}_voltage_v (quoted inside {...})",
            ),
        ),
        (
            {**BLOCK, "stride": 2, "points": [{"name": "pv{n}_voltage_v", "address": 0}]},
            [{"name": "pv3_voltage_v", "address": 100}],
            ("blocks.0.points.0.name", "point name 'pv3_voltage_v' appears twice"),
        ),
        (
            {**BLOCK, "stride": 2, "points": [{"name": "pv{n}_v", "address": 0, "type": "string"}]},
            [],
            ("blocks.0.points.0", "a string point needs `length`"),
        ),
    ],
)
def test_block_mistakes_are_reported_at_the_block(
    block: dict[str, Any], points: list[dict[str, Any]], expected: tuple[str, str]
) -> None:
    got = _errors("name: m\nkind: meter", blocks=[block], points=points)
    assert len(got) == 1, got
    assert got[0][0] == expected[0]
    assert got[0][1].startswith(expected[1])


def test_a_profile_file_error_in_a_block_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "inverter.yaml"
    path.write_text(
        textwrap.dedent("""\
            name: inverter
            kind: pv_inverter
            addressing: modicon
            blocks:
              - count: 8
                stride: {holding: 2}
                points:
                  - {name: "pv{n}_voltage_v", address: 32017, scale: 0.1}
            """),
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as info:
        load_profile(path)
    assert [str(p) for p in info.value.problems] == [
        f"{path}:6: blocks[0].stride: the block's point 'pv{{n}}_voltage_v' is in input "
        "registers and `stride` gives only holding; add `input: <registers>`"
    ]


# --- values scaled by other registers: PT × CT --------------------------------------------


def test_scale_by_multiplies_by_the_decoded_ratios_and_is_bad_without_them() -> None:
    profile = _hv_meter()
    specs = resolve(profile)
    # The ratios are decoded first, wherever they are in the file.
    assert [s.name for s in specs[:2]] == ["ct_ratio", "pt_ratio"]
    raws: dict[str, Any] = {"pt_ratio": 100, "ct_ratio": 40, "voltage_l1_v": 1001}
    raws |= {"current_l1_a": 2500, "power_l1_w": 250}
    decoded = decode_all(specs, raws)
    assert decoded.values["voltage_l1_v"] == pytest.approx(10_010.0)
    assert decoded.values["current_l1_a"] == pytest.approx(100.0)
    assert decoded.values["power_l1_w"] == pytest.approx(1_000_000.0)
    decoded = decode_all(specs, {**raws, "pt_ratio": NOT_AVAILABLE})
    assert decoded.bad == {
        "pt_ratio": "not_available",
        "voltage_l1_v": "scale_by",
        "power_l1_w": "scale_by",
    }
    assert decoded.values["current_l1_a"] == pytest.approx(100.0)
    spec = next(s for s in specs if s.name == "power_l1_w")
    assert explain(spec, "scale_by") == (
        "a ratio it is scaled by (pt_ratio, ct_ratio) is bad or was not read"
    )


def test_a_site_subset_reads_the_ratios_and_inputs_it_needs() -> None:
    profile = _hv_meter()
    names = {s.name for s in resolve(profile, include=["voltage_l2_v", "grid_power_w"])}
    assert names == {"voltage_l2_v", "pt_ratio", "ct_ratio", "import_power_w", "export_power_w"}
    assert set(describe(profile, ["grid_power_w"])) == {
        "grid_power_w",
        "import_power_w",
        "export_power_w",
        "pt_ratio",
        "ct_ratio",
    }


@pytest.mark.parametrize(
    ("point", "expected"),
    [
        (
            {"name": "v", "address": 40001, "scale_by": ["pt_ration"]},
            (
                "points.3.scale_by.0",
                "point 'v': scale_by names no point 'pt_ration'; did you mean 'pt_ratio'?",
            ),
        ),
        (
            {"name": "v", "address": 40001, "scale_by": ["v"]},
            ("points.3.scale_by.0", "point 'v' cannot scale itself"),
        ),
        (
            {"name": "v", "address": 40001, "scale_by": ["label"]},
            ("points.3.scale_by.0", "point 'v': 'label' is string, not a number"),
        ),
        (
            {
                "name": "v",
                "address": 40001,
                "scale_by": ["pt_ratio"],
                "writable": {"min": 0, "max": 9},
            },
            ("points.3.scale_by", "point 'v' is scaled by other registers and cannot be writable"),
        ),
        (
            {"name": "v", "address": 40001, "scale_by": ["pt_ratio"], "scale_factor": "sf"},
            ("points.3.scale_by", "point 'v' has a scale_factor too; keep one of them"),
        ),
    ],
)
def test_scale_by_names_numbers_of_the_profile(
    point: dict[str, Any], expected: tuple[str, str]
) -> None:
    points = [
        {"name": "pt_ratio", "address": 40008},
        {"name": "sf", "address": 40009, "type": "sunssf"},
        {"name": "label", "address": 40100, "type": "string", "length": 4},
        point,
    ]
    got = _errors("name: m\nkind: meter\naddressing: modicon", points=points)
    assert len(got) == 1, got
    assert got[0][0] == expected[0]
    assert got[0][1].startswith(expected[1])


# --- derived points ------------------------------------------------------------------------


def test_derived_points_compute_in_order_and_take_the_worst_quality() -> None:
    specs = [
        DerivedSpec("total_w", Operation.SUM, ("a_w", "b_w", "c_w")),
        DerivedSpec("grid_w", Operation.DIFFERENCE, ("total_w", "export_w")),
        DerivedSpec("share", Operation.RATIO, ("a_w", "zero")),
        DerivedSpec("double_w", Operation.PRODUCT, ("a_w", "two")),
    ]
    values: dict[str, Any] = {"a_w": 1.5, "b_w": 2, "c_w": 3, "export_w": 0.5, "zero": 0, "two": 2}
    bad: dict[str, str] = {}
    compute(specs, values, bad)
    assert (values["total_w"], values["grid_w"], values["double_w"]) == (6.5, 6.0, 3.0)
    assert bad == {"share": "division_by_zero"}
    values = {"a_w": 1.5, "c_w": 3, "export_w": 0.5, "zero": 0, "two": 2}
    bad = {"b_w": "out_of_range"}
    compute(specs, values, bad)
    # One bad input makes the total bad, and so what is computed from the total.
    assert bad == {
        "b_w": "out_of_range",
        "total_w": "input_bad",
        "grid_w": "input_bad",
        "share": "division_by_zero",
    }
    values, bad = {"a_w": 1.0}, {}
    compute(specs[:1], values, bad)  # inputs not read in this poll: not reported
    assert (values, bad) == ({"a_w": 1.0}, {})


@pytest.mark.parametrize(
    ("derived", "expected"),
    [
        (
            [{"name": "t", "sum": ["a", "bb"]}],
            ("derived.0.sum.1", "no point 'bb' to compute from; did you mean 'b'?"),
        ),
        (
            [{"name": "t", "sum": ["a", "u"]}, {"name": "u", "sum": ["a", "b"]}],
            ("derived.0.sum.1", "'u' is derived further down; list it before 't'"),
        ),
        ([{"name": "a", "sum": ["a", "b"]}], ("derived.0.name", "'a' is already a point's name")),
        ([{"name": "t", "sum": ["a", "s"]}], ("derived.0.sum.1", "'s' is string, not a number")),
        (
            [{"name": "t", "sum": ["a", "b"], "ratio": ["a", "b"]}],
            ("derived.0", "give exactly one operation"),
        ),
        (
            [{"name": "t", "difference": ["a", "b", "a"]}],
            ("derived.0.difference", "List should have at most 2"),
        ),
        (
            [{"name": "t", "eval": "__import__('os')"}],
            ("derived.0.eval", "Extra inputs are not permitted"),
        ),
    ],
)
def test_derived_points_are_checked_at_their_key(
    derived: list[dict[str, Any]], expected: tuple[str, str]
) -> None:
    points = [
        {"name": "a", "address": 0},
        {"name": "b", "address": 1},
        {"name": "s", "address": 2, "type": "string", "length": 2},
    ]
    got = _errors("name: m\nkind: meter", points=points, derived=derived)
    assert got[0][0] == expected[0], got
    assert got[0][1].startswith(expected[1]), got


def test_derived_points_are_float_fields_and_cost_nothing_without_them() -> None:
    profile = _hv_meter()
    assert profile.field_types()["grid_power_w"].value == "float"
    meta = describe(profile)["power_total_w"]
    assert (meta.unit, meta.description) == ("W", "sum of power_l1_w, power_l2_w, power_l3_w")
    plain = load_profile(BUILTIN_PROFILES / "eastron_sdm630.yaml")
    conn = _tcp(1502, 1)
    assert device_plan(ModbusDevice("m", plain, conn, 1.0)).derived == ()
    plan = device_plan(ModbusDevice("m", profile, conn, 1.0, ["grid_power_w"]))
    assert [d.name for d in plan.derived] == ["grid_power_w"]


async def test_pt_ct_and_derived_points_polled_from_the_virtual_building() -> None:
    """The building encodes primary values as the meter's secondary registers; the driver
    reads them back as primary values and computes the totals."""
    profile = _hv_meter()
    served = SimulatedDevice(profile, StaticModel(profile, SimClock(), fixed=PRIMARY), unit=3)
    # What the meter's terminals see: secondary values.
    assert served.image(Function.INPUT)[0] == 1010  # 10 100 V / 100 = 101 V, in 0.1 V
    assert served.image(Function.INPUT)[1] == 2500  # 100 A / 40, in mA
    assert served.image(Function.HOLDING)[7] == 100  # the PT ratio, holding register 40008
    sample = await _read(ModbusDevice("feeder", profile, _tcp(1, 3), 1.0), served)
    assert sample.bad == {}
    for name, value in PRIMARY.items():
        assert sample.values[name] == pytest.approx(value), name
    assert sample.values["power_total_w"] == pytest.approx(6_000_000.0)
    assert sample.values["grid_power_w"] == pytest.approx(2_600_000.0)
    assert sample.values["apparent_l1_va"] == pytest.approx(1_010_000.0)
    assert sample.values["power_factor_l1"] == pytest.approx(1 / 1.01)

    # The PT ratio reads "not available": what it scales is bad, and so is their total.
    served.set_bad_value("pt_ratio")
    sample = await _read(ModbusDevice("feeder", profile, _tcp(1, 3), 1.0), served)
    assert sample.bad["pt_ratio"] == "not_available"
    assert sample.bad["voltage_l1_v"] == "scale_by"
    assert sample.bad["power_total_w"] == "input_bad"
    assert sample.bad["grid_power_w"] == "input_bad"
    assert sample.values["current_l2_a"] == pytest.approx(200.0)


def _rows(stdout: str) -> dict[str, list[str]]:
    """`guanjia read`'s table: point -> [value, unit] or ["BAD", why]."""
    rows = (line.split(None, 2) for line in stdout.splitlines()[1:])
    return {name: [part.strip() for part in rest] for name, *rest in rows}


async def test_guanjia_read_prints_derived_points_and_says_why_one_is_bad(tmp_path: Path) -> None:
    profile = _hv_meter()
    served = SimulatedDevice(profile, StaticModel(profile, SimClock(), fixed=PRIMARY), unit=3)

    def guanjia_read(site: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "gateway.cli", "read", str(site), "feeder"],
            capture_output=True,
            text=True,
            check=False,
            cwd=Path(__file__).resolve().parent.parent,
            timeout=60,
        )

    async with await serve([served]) as server:
        site = _site(tmp_path, "{}")
        text = site.read_text(encoding="utf-8")
        site.write_text(text.replace("1502", f"{server.port}\n      unit: 3"), encoding="utf-8")
        good = await asyncio.to_thread(guanjia_read, site)
        served.set_bad_value("pt_ratio")
        bad = await asyncio.to_thread(guanjia_read, site)
    assert good.returncode == 0, good.stderr
    rows = _rows(good.stdout)
    assert rows["voltage_l1_v"] == ["10100", "V"]
    assert rows["power_total_w"] == ["6e+06", "W"]
    assert rows["grid_power_w"] == ["2.6e+06", "W"]
    assert bad.returncode == 3
    rows = _rows(bad.stdout)
    assert rows["power_total_w"] == ["BAD", "one of the points it is computed from is bad"]
    assert rows["voltage_l1_v"] == [
        "BAD",
        "a ratio it is scaled by (pt_ratio) is bad or was not read",
    ]
    assert rows["current_l1_a"] == ["100", "A"]


# --- the site's function-code overrides ----------------------------------------------------


MOVED_RATIOS = HV_METER.replace("40007", "40201").replace("40008", "40202")


async def test_a_site_reads_a_table_from_another_and_the_building_serves_it_there() -> None:
    """A later firmware answers the measurements as holding registers: the site says
    `function_overrides: {input: holding}` and both the driver and the building follow it
    (this model keeps its ratios clear of the measurements' addresses)."""
    profile = _profile(MOVED_RATIOS)
    overrides = {"input": Function.HOLDING}
    moved = apply_overrides(profile, overrides)
    assert {p.function for p in moved.points} == {Function.HOLDING}
    served = SimulatedDevice(moved, StaticModel(moved, SimClock(), fixed=PRIMARY), unit=1)
    assert served.image(Function.INPUT) == {}
    conn = _tcp(1, 1, function_overrides=overrides)
    plan = device_plan(ModbusDevice("feeder", profile, conn, 1.0))
    assert {r.function for r in plan.requests} == {Function.HOLDING}
    sample = await _read(ModbusDevice("feeder", profile, conn, 1.0), served)
    assert sample.bad == {}
    assert sample.values["voltage_l3_v"] == pytest.approx(10_300.0)
    # One point alone: the rest stays where the profile has it.
    one = apply_overrides(profile, {"current_l1_a": Function.HOLDING})
    assert one.point("current_l1_a").function is Function.HOLDING
    assert one.point("current_l2_a").function is Function.INPUT


SITE = """\
site: {name: 测试楼, id: test-site}
profile_dirs: [profiles]
devices:
  - id: feeder
    profile: hv_meter
    modbus:
      transport: tcp
      host: 127.0.0.1
      port: 1502
      function_overrides: {OVERRIDES}
    poll: 5s
"""


def _site(tmp_path: Path, overrides: str, profile: str = HV_METER) -> Path:
    (tmp_path / "profiles").mkdir(exist_ok=True)
    (tmp_path / "profiles" / "hv_meter.yaml").write_text(profile, encoding="utf-8")
    path = tmp_path / "site.yaml"
    path.write_text(SITE.replace("{OVERRIDES}", overrides), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (
            "{inputs: holding}",
            "devices[0].modbus.function_overrides.inputs: 'inputs' is neither a table "
            "(coil, discrete, holding, input) nor a point of profile hv_meter",
        ),
        (
            "{input: coil}",
            "devices[0].modbus.function_overrides.input: input and coil hold different things "
            "(bits and registers); override registers with registers, bits with bits",
        ),
        (
            "{holding: input}",
            "devices[0].modbus.function_overrides.holding: point 'ct_ratio' is writable, and "
            "input registers are read-only; override the read-only points one by one "
            "({point: input}) instead\n"
            "devices[0].modbus.function_overrides.holding: point 'ct_ratio' read from input "
            "registers 6..6 would share them with 'power_l2_w'; override single points instead",
        ),
        (
            "{input: holding}",
            "devices[0].modbus.function_overrides.input: point 'power_l2_w' read from holding "
            "registers 6..7 would share them with 'ct_ratio'; override single points instead",
        ),
        (
            "{input: holdng}",
            "devices[0].modbus.function_overrides.input: Input should be 'coil', 'discrete', "
            "'holding' or 'input'",
        ),
    ],
)
def test_wrong_overrides_are_one_line_each_before_anything_connects(
    tmp_path: Path, overrides: str, expected: str
) -> None:
    profile = HV_METER.replace(
        "description: current transformer ratio}",
        "description: current transformer ratio, writable: {min: 1, max: 9999}}",
    )
    with pytest.raises(ConfigError) as info:
        load_site(_site(tmp_path, overrides, profile))
    site = tmp_path / "site.yaml"
    assert [str(p) for p in info.value.problems] == [
        f"{site}:10: {line}" for line in expected.split("\n")
    ]


def test_a_site_may_read_only_a_derived_point_and_what_it_needs(tmp_path: Path) -> None:
    path = _site(tmp_path, "{}")
    text = path.read_text(encoding="utf-8")
    path.write_text(text + "    points: [grid_power_w]\n", encoding="utf-8")
    loaded = load_site(path)
    device = ModbusDevice(
        "feeder", loaded.profiles["hv_meter"], _tcp(1502, 1), 5.0, ["grid_power_w"]
    )
    plan = device_plan(device)
    assert {s.name for s in plan.specs} == {
        "import_power_w",
        "export_power_w",
        "pt_ratio",
        "ct_ratio",
    }
    assert [d.name for d in plan.derived] == ["grid_power_w"]
    path.write_text(text + "    points: [grid_power]\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="has no point 'grid_power'; did you mean 'grid_power_w'"):
        load_site(path)


def test_the_building_reads_the_overrides_from_the_site_file(tmp_path: Path) -> None:
    path = _site(tmp_path, "{input: holding, ct_ratio: holding}", MOVED_RATIOS)
    load_site(path)  # valid for the gateway
    device = read_site(path).devices[0]
    assert device.modbus is not None
    assert device.modbus.function_overrides == {
        "input": Function.HOLDING,
        "ct_ratio": Function.HOLDING,
    }


# --- keys given twice ----------------------------------------------------------------------


def test_a_key_given_twice_is_refused_naming_file_line_and_key(tmp_path: Path) -> None:
    text = "points:\n  - name: mode\n    enum: {0: cool, 1: heat, 0x01: fan}\n"
    with pytest.raises(ValueError, match="given twice") as info:
        load_yaml_text(text, "p.yaml")
    assert str(info.value) == (
        "p.yaml:3: points[0].enum.0x01: '0x01' is given twice (first at line 3) and YAML "
        "would silently keep only this one; remove one of them"
    )
    # A number and a text are two keys, as in Python; YAML merge keys may repeat.
    assert load_yaml_text("{3: a, '3': b}", "f") == {3: "a", "3": "b"}
    assert load_yaml_text("a: 1\n<<: {b: 2}\n<<: {c: 3}\n", "f") == {"a": 1, "b": 2, "c": 3}
    path = tmp_path / "x.yaml"
    path.write_text("site: {name: a}\nsite: {name: b}\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"x\.yaml:2: site: 'site' is given twice \(first at"):
        load_yaml_file(path)


def test_the_building_and_the_gateway_refuse_a_profile_with_a_code_given_twice(
    tmp_path: Path,
) -> None:
    profile = HV_METER.replace(
        "description: current transformer ratio}",
        "description: current transformer ratio, enum: {1: direct, 1: wired}}",
    )
    path = _site(tmp_path, "{}", profile)
    profile_file = tmp_path / "profiles" / "hv_meter.yaml"
    with pytest.raises(ValueError, match="given twice") as info:
        read_profile(profile_file)
    assert str(info.value).startswith(f"{profile_file}:5: points[0].enum.1: '1' is given twice")
    with pytest.raises(ValueError, match=r"hv_meter\.yaml:5: points\[0\]\.enum\.1: '1' is given"):
        read_site(path)
    with pytest.raises(ConfigError) as gateway:
        load_site(path)
    assert [str(p) for p in gateway.value.problems] == [
        f"{profile_file}:5: points[0].enum.1: '1' is given twice (first at line 5) and YAML "
        "would silently keep only this one; remove one of them"
    ]


def test_the_alarm_catalog_and_calendar_year_files_refuse_a_key_given_twice(
    tmp_path: Path,
) -> None:
    catalog = tmp_path / "alarm_kinds.yaml"
    catalog.write_text("kinds:\n  door_forced_open: {}\n  door_forced_open: {}\n", "utf-8")
    with pytest.raises(DuplicateKeyError) as info:
        Catalog.load(catalog)
    assert (info.value.line, info.value.loc) == (3, ("kinds", "door_forced_open"))
    year = tmp_path / "2027.yaml"
    spans = "  元旦: [2027-01-01, 2027-01-01]\n"
    year.write_text(f"year: 2027\nholidays:\n{spans}{spans}", "utf-8")
    with pytest.raises(DuplicateKeyError, match=r"line 4: holidays\.元旦: '元旦' is given twice"):
        load_year_file(year)
