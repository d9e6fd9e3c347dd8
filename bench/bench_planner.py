"""Result `planner`: is the request planner at least as good as the usual fixed rules?

Everything here is the planner's own wire-time model (drivers/modbus/planner.py, WireModel.rtu
at 9600 and 19200 baud, 10 ms turnaround): the same model prices our plan and both baselines,
so the ratio compares plans, not clocks. Two register maps:

* dense: the Eastron SDM630 profile (config/profiles/eastron_sdm630.yaml), with its holes and
  its 80-register request limit;
* sparse HVAC: 8 CoolMasterNet indoor units (config/profiles/coolmaster_indoor.yaml) at bases
  16, 32, ... 128, as one site polls them through one gateway: 9-register blocks 7 apart.

Baselines: (a) one request per point; (b) Telegraf-style fixed merging: sort by address, merge
the next point while the gap is at most 50 registers and the request stays within the limit,
never across a hole. value = max over the 4 cases of our time / the better baseline's time;
above 1.0 a fixed rule would beat the planner somewhere.

A hand-built sparse map (groups of 1-4 registers 10-60 apart) is printed too, as information:
it is where the gap-50 rule reads the most dead registers.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from bench.common import ROOT, Result, ms, result
from drivers.modbus.codec import PointSpec, resolve
from drivers.modbus.planner import WireModel, plan, plan_time
from drivers.modbus.profile import Function, Hole, Profile

PROFILES = ROOT / "config" / "profiles"
TURNAROUND_MS = 10.0
WIRES = {
    "rtu 9600": WireModel.rtu(9600, TURNAROUND_MS),
    "rtu 19200": WireModel.rtu(19200, TURNAROUND_MS),
}
MAX_GAP = 50  # Telegraf's default optimization_max_register_fill
Span = tuple[Function, int, int]  # function, start, count


@dataclass(frozen=True)
class RegisterMap:
    name: str
    specs: list[PointSpec]
    max_registers: int
    holes: list[Hole]


def _load(path: Path) -> Profile:
    with path.open(encoding="utf-8") as f:
        return Profile.model_validate(yaml.safe_load(f))


def sdm630() -> RegisterMap:
    profile = _load(PROFILES / "eastron_sdm630.yaml")
    return RegisterMap(
        "SDM630 (dense)",
        resolve(profile),
        profile.transport.max_registers_per_request,
        list(profile.holes),
    )


def coolmaster(units: int = 8) -> RegisterMap:
    profile = _load(PROFILES / "coolmaster_indoor.yaml")
    specs = [s for n in range(1, units + 1) for s in resolve(profile, base=16 * n)]
    return RegisterMap(
        f"{units} CoolMaster units (sparse HVAC)",
        specs,
        profile.transport.max_registers_per_request,
        list(profile.holes),
    )


def hand_built_sparse(groups: int = 30, seed: int = 7) -> RegisterMap:
    """Groups of 1-4 uint16 registers, 10-60 registers apart (deterministic)."""
    rng = random.Random(seed)
    points = []
    address = 0
    for g in range(groups):
        for i in range(rng.randint(1, 4)):
            points.append({"name": f"g{g}_p{i}", "address": address + i})
        address += rng.randint(10, 60)
    profile = Profile.model_validate(
        {"name": "sparse", "kind": "hvac", "defaults": {"function": "holding"}, "points": points}
    )
    return RegisterMap("hand-built sparse", resolve(profile), 125, [])


def one_per_point(specs: Sequence[PointSpec]) -> list[Span]:
    """Baseline (a): every point read alone."""
    return [(s.function, s.address, s.count) for s in specs]


def _crosses(function: Function, start: int, end: int, holes: Sequence[Hole]) -> bool:
    return any(h.function is function and h.start <= end and h.end >= start for h in holes)


def gap_merge(
    specs: Sequence[PointSpec], max_registers: int, holes: Sequence[Hole], max_gap: int = MAX_GAP
) -> list[Span]:
    """Baseline (b): merge along the address order while the gap is at most ``max_gap``."""
    spans: list[Span] = []
    current: tuple[Function, int, int] | None = None  # function, start, end (inclusive)
    for spec in sorted(specs, key=lambda s: (s.function.value, s.address, s.end)):
        if current is not None:
            function, start, end = current
            new_end = max(end, spec.end)
            if (
                spec.function is function
                and spec.address - end - 1 <= max_gap
                and new_end - start + 1 <= max_registers
                and not _crosses(function, start, new_end, holes)
            ):
                current = (function, start, new_end)
                continue
            spans.append((function, start, end - start + 1))
        current = (spec.function, spec.address, spec.end)
    if current is not None:
        spans.append((current[0], current[1], current[2] - current[1] + 1))
    return spans


def spans_time(spans: Sequence[Span], wire: WireModel) -> float:
    return sum(wire.request_time(function, count) for function, _start, count in spans)


def _case(register_map: RegisterMap, wire_name: str, wire: WireModel) -> float:
    ours = plan(
        register_map.specs, wire, max_registers=register_map.max_registers, holes=register_map.holes
    )
    ours_t = plan_time(ours, wire)
    single = one_per_point(register_map.specs)
    merged = gap_merge(register_map.specs, register_map.max_registers, register_map.holes)
    single_t, merged_t = spans_time(single, wire), spans_time(merged, wire)
    ratio = ours_t / min(single_t, merged_t)
    registers = sum(r.count for r in ours)
    print(
        f"  {register_map.name}, {wire_name}: ours {len(ours)} requests / {registers} registers "
        f"{ms(ours_t)}; (a) one per point {len(single)} requests {ms(single_t)}; "
        f"(b) gap<={MAX_GAP} {len(merged)} requests / {sum(c for *_, c in merged)} registers "
        f"{ms(merged_t)} -> {ratio:.3f}"
    )
    print(f"      ours: {', '.join(f'{r.start}+{r.count}' for r in ours)}")
    print(f"      (b):  {', '.join(f'{start}+{count}' for _f, start, count in merged)}")
    return ratio


def run() -> dict[str, Result]:
    print(f"planner: modelled wire time per poll (turnaround {TURNAROUND_MS:g} ms)")
    ratios = [
        _case(register_map, wire_name, wire)
        for register_map in (sdm630(), coolmaster())
        for wire_name, wire in WIRES.items()
    ]
    print("  informational, not in the result:")
    for wire_name, wire in WIRES.items():
        _case(hand_built_sparse(), wire_name, wire)
    value = max(ratios)
    print(f"  planner = max over the 4 cases of ours / best baseline = {value:.3f} (target <= 1.0)")
    return {"planner": result(value, "<= 1.0")}


if __name__ == "__main__":
    run()
