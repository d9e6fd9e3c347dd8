"""The request planner on adjacent, sparse and hole-containing register maps, and on the
points of several devices behind one unit id."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from drivers.modbus.codec import PointSpec, resolve
from drivers.modbus.config import RtuConnection
from drivers.modbus.driver import ModbusDevice, device_plan, group_plan
from drivers.modbus.planner import ReadRequest, WireModel, plan, plan_time
from drivers.modbus.profile import Function, Hole, Profile


def _profile(
    addresses: list[int], *, dtype: str = "uint16", holes: list[dict] | None = None
) -> Profile:
    return Profile.model_validate(
        {
            "name": "t",
            "kind": "meter",
            "defaults": {"function": "holding", "type": dtype},
            "holes": holes or [],
            "points": [{"name": f"p{a}", "address": a} for a in addresses],
        }
    )


def _specs(profile: Profile) -> list[PointSpec]:
    return resolve(profile)


def _covered(requests: list[ReadRequest]) -> set[int]:
    return {a for r in requests for a in range(r.start, r.start + r.count)}


RTU_9600 = WireModel.rtu(9600, turnaround_ms=10)
TCP = WireModel.tcp(turnaround_ms=10)


def test_adjacent_points_make_one_request() -> None:
    specs = _specs(_profile(list(range(0, 40, 2)), dtype="float32"))
    requests = plan(specs, RTU_9600)
    assert [(r.start, r.count) for r in requests] == [(0, 40)]
    assert {s.name for s in requests[0].points} == {s.name for s in specs}


def test_request_size_limit_splits() -> None:
    specs = _specs(_profile(list(range(0, 200, 2)), dtype="float32"))
    requests = plan(specs, TCP, max_registers=80)
    assert all(r.count <= 80 for r in requests)
    assert len(requests) == 3  # 200 registers need at least three 80-register reads
    assert sum(len(r.points) for r in requests) == len(specs)


def test_rtu_does_not_merge_across_a_wide_gap_but_tcp_does() -> None:
    # Two groups 40 registers apart: at 9600 baud the gap costs ~83 ms, a request ~31 ms.
    specs = _specs(_profile([0, 1, 2, 43, 44, 45]))
    assert len(plan(specs, RTU_9600)) == 2
    assert len(plan(specs, TCP)) == 1


def test_rtu_merges_across_a_narrow_gap() -> None:
    specs = _specs(_profile([0, 1, 2, 10, 11]))  # 7 unused registers: cheaper than a request
    assert [(r.start, r.count) for r in plan(specs, RTU_9600)] == [(0, 12)]


def test_break_even_depends_on_baud_rate() -> None:
    # A 20-register gap: not worth merging at 9600 baud, worth it at 115200.
    specs = _specs(_profile([0, 21]))
    assert len(plan(specs, WireModel.rtu(9600, 10))) == 2
    assert len(plan(specs, WireModel.rtu(115200, 10))) == 1


def test_never_reads_a_hole_even_on_tcp() -> None:
    profile = _profile([0, 1, 30, 31], holes=[{"function": "holding", "start": 10, "end": 19}])
    requests = plan(_specs(profile), TCP, holes=profile.holes)
    assert len(requests) == 2
    assert not _covered(requests) & set(range(10, 20))


def test_holes_only_apply_to_their_own_table() -> None:
    specs = _specs(_profile([0, 30]))
    holes = [Hole(function=Function.INPUT, start=5, end=25)]
    assert len(plan(specs, TCP, holes=holes)) == 1


def test_sparse_hvac_map_is_never_slower_than_baselines() -> None:
    addresses = [0, 1, 2, 3, 6, 7, 8, 40, 41, 100, 160, 161, 162, 300]
    specs = _specs(_profile(addresses))
    ours = plan_time(plan(specs, RTU_9600), RTU_9600)
    one_each = sum(RTU_9600.request_time(Function.HOLDING, 1) for _ in addresses)
    assert ours <= one_each
    assert len(plan(specs, RTU_9600)) < len(addresses)


def test_functions_are_planned_separately_and_bits_pack() -> None:
    profile = Profile.model_validate(
        {
            "name": "t",
            "kind": "hvac",
            "points": [
                {"name": "on", "address": 0, "function": "coil", "type": "bool"},
                {"name": "filter", "address": 1, "function": "coil", "type": "bool"},
                {"name": "temp", "address": 0, "function": "input", "type": "int16"},
                {"name": "mode", "address": 0, "function": "holding"},
                {"name": "alarm_a", "address": 5, "type": "bool", "bit": 0},
                {"name": "alarm_b", "address": 5, "type": "bool", "bit": 3},
            ],
        }
    )
    requests = plan(resolve(profile), RTU_9600)
    by_function = {r.function: r for r in requests}
    assert set(by_function) == {Function.COIL, Function.INPUT, Function.HOLDING}
    assert by_function[Function.COIL].count == 2
    holding = by_function[Function.HOLDING]
    assert (holding.start, holding.count) == (0, 6)
    assert {p.name for p in holding.points} == {"mode", "alarm_a", "alarm_b"}


def test_a_point_larger_than_the_request_limit_is_an_error() -> None:
    profile = Profile.model_validate(
        {
            "name": "t",
            "kind": "meter",
            "points": [{"name": "s", "address": 0, "type": "string", "length": 20}],
        }
    )
    with pytest.raises(ValueError, match="needs 20 registers"):
        plan(resolve(profile), TCP, max_registers=10)


def _indoor_units(spacing: int, max_registers: int | None = None) -> list[ModbusDevice]:
    """Eight CoolMasterNet indoor units behind unit 1 on an RTU line at 9600 baud, one device
    each, ``spacing`` registers apart."""
    profile_file = Path(__file__).resolve().parent.parent / "config/profiles/coolmaster_indoor.yaml"
    profile = Profile.model_validate(yaml.safe_load(profile_file.read_text(encoding="utf-8")))
    return [
        ModbusDevice(
            f"ac-{va}",
            profile,
            RtuConnection(
                transport="rtu",
                port="/dev/ttyUSB0",  # never opened: planning only
                baudrate=9600,
                unit=1,
                base=spacing * va,
                turnaround_ms=10,
                max_registers=max_registers,
            ),
            10.0,
        )
        for va in range(1, 9)
    ]


def test_devices_behind_one_unit_merge_where_the_gap_pays_and_within_the_limit() -> None:
    # 9 registers each: 7 unused registers between units cost less than a request at 9600 baud,
    # 55 cost more.
    assert [(r.start, r.count) for r in group_plan(_indoor_units(16)).requests] == [(16, 121)]
    assert [(r.start, r.count) for r in group_plan(_indoor_units(64)).requests] == [
        (64 * va, 9) for va in range(1, 9)
    ]
    limited = group_plan(_indoor_units(16, max_registers=60)).requests
    assert [(r.start, r.count) for r in limited] == [(16, 57), (80, 57)]
    ours = plan_time(limited, RTU_9600)
    apart = sum(plan_time(device_plan(d).requests, RTU_9600) for d in _indoor_units(16))
    assert ours < apart
