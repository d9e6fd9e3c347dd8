"""Results `planner` and `planner_<case>`: does the driver plan requests at least as well as
the usual fixed rules?

Everything here is the planner's own wire-time model (drivers/modbus/planner.py, WireModel.rtu
at 9600 and 19200 baud, 10 ms turnaround): the same model prices our plan and the baselines,
so the ratio compares plans, not clocks. Our plan is the driver's: `poll_plans()` of the case's
devices as a site file describes them (an RTU connection at that baud rate with a 10 ms
turnaround), the requests of every plan summed. Two cases:

* dense: one Eastron SDM630 (config/profiles/eastron_sdm630.yaml), with its holes and its
  80-register request limit;
* sparse HVAC: 8 CoolMasterNet indoor units (config/profiles/coolmaster_indoor.yaml), one
  device each at bases 16, 32, ... 128 (VA 1..8), all behind one gateway as unit 1: 9-register
  blocks 7 apart. They share the line, the unit id and the period, so the driver polls them as
  one group with one plan over all their points (drivers/modbus/driver.py, `poll_groups`);
  each device planned apart, as before, is printed too.

Baselines, each at its best: (a) one request per point; (b) Telegraf-style fixed merging: sort
by address, merge the next point while the gap is at most 50 registers and the request stays
within the limit, never across a hole. Telegraf groups the registers of one slave, so for the
8 indoor units, which are one slave, (b) merges across units where the gap allows (the
CoolMasterNet answers reads across units: 0xFFFF for the reserved registers); (b) per device
is printed too. `planner_<case>` = our time / the best baseline's time; `planner` = the worst
case. Above 1.0 a fixed rule beats the driver somewhere.

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
from drivers.modbus.config import RtuConnection
from drivers.modbus.driver import ModbusDevice, device_plan, poll_plans
from drivers.modbus.planner import ReadRequest, WireModel, plan, plan_time
from drivers.modbus.profile import Function, Hole, Profile

PROFILES = ROOT / "config" / "profiles"
TURNAROUND_MS = 10.0
BAUDRATES = (9600, 19200)
MAX_GAP = 50  # Telegraf's default optimization_max_register_fill
Span = tuple[Function, int, int]  # function, start, count


@dataclass(frozen=True)
class RegisterMap:
    """What a baseline planner sees: every point it reads in one slave's address space."""

    name: str
    specs: list[PointSpec]
    max_registers: int
    holes: list[Hole]


@dataclass(frozen=True)
class Case:
    key: str  # planner_<key> in results.json
    name: str
    profile: Profile
    bases: list[int | None]  # one device per base (None: the profile's own)

    def devices(self, baudrate: int) -> list[ModbusDevice]:
        return [
            ModbusDevice(
                f"{self.key}_{i}",
                self.profile,
                RtuConnection(
                    transport="rtu",
                    port="/dev/ttyUSB0",  # never opened: only planned
                    baudrate=baudrate,
                    unit=1,
                    base=base,
                    turnaround_ms=TURNAROUND_MS,
                ),
                1.0,
            )
            for i, base in enumerate(self.bases)
        ]

    def register_maps(self) -> list[RegisterMap]:
        """Each device's points, as a baseline planning per device sees them."""
        out = []
        for base in self.bases:
            offset = self.profile.base if base is None else base
            holes = [
                h.model_copy(update={"start": h.start + offset, "end": h.end + offset})
                for h in self.profile.holes
            ]
            out.append(
                RegisterMap(
                    self.name,
                    resolve(self.profile, base),
                    self.profile.transport.max_registers_per_request,
                    holes,
                )
            )
        return out

    def whole(self) -> RegisterMap:
        """All devices' points in one map, as a baseline grouping one slave's registers sees
        them."""
        maps = self.register_maps()
        return RegisterMap(
            self.name,
            [s for m in maps for s in m.specs],
            maps[0].max_registers,
            [h for m in maps for h in m.holes],
        )


def _load(path: Path) -> Profile:
    with path.open(encoding="utf-8") as f:
        return Profile.model_validate(yaml.safe_load(f))


def sdm630() -> Case:
    return Case("sdm630", "SDM630 (dense)", _load(PROFILES / "eastron_sdm630.yaml"), [None])


def coolmaster(units: int = 8) -> Case:
    return Case(
        "hvac",
        f"{units} CoolMaster units (sparse HVAC)",
        _load(PROFILES / "coolmaster_indoor.yaml"),
        [16 * n for n in range(1, units + 1)],
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


def _spans(requests: Sequence[ReadRequest]) -> str:
    return ", ".join(f"{r.start}+{r.count}" for r in requests)


def _case(case: Case, baudrate: int) -> float:
    wire = WireModel.rtu(baudrate, TURNAROUND_MS)
    devices = case.devices(baudrate)
    plans = poll_plans(devices)
    ours = [r for p in plans for r in p.requests]
    ours_t = plan_time(ours, wire)
    apart = [r for device in devices for r in device_plan(device).requests]
    maps = case.register_maps()
    single = [span for m in maps for span in one_per_point(m.specs)]
    per_device = [span for m in maps for span in gap_merge(m.specs, m.max_registers, m.holes)]
    whole = case.whole()
    merged = gap_merge(whole.specs, whole.max_registers, whole.holes)
    times = {
        "(a) one per point": spans_time(single, wire),
        f"(b) gap<={MAX_GAP}": spans_time(merged, wire),
        f"(b) gap<={MAX_GAP} per device": spans_time(per_device, wire),
    }
    best = min(times, key=lambda k: times[k])
    ratio = ours_t / times[best]
    registers = sum(r.count for r in ours)
    print(
        f"  {case.name}, rtu {baudrate}: ours ({len(devices)} device{'s' * (len(devices) > 1)}, "
        f"{len(plans)} poll plan{'s' * (len(plans) > 1)}) {len(ours)} requests / {registers} "
        f"registers {ms(ours_t)}"
    )
    if len(plans) < len(devices):
        print(
            f"      ours, each device planned apart: {len(apart)} requests / "
            f"{sum(r.count for r in apart)} registers {ms(plan_time(apart, wire))}"
        )
    for name, spans in (
        ("(a) one per point", single),
        (f"(b) gap<={MAX_GAP}", merged),
        (f"(b) gap<={MAX_GAP} per device", per_device),
    ):
        print(
            f"      {name}: {len(spans)} requests / {sum(c for *_, c in spans)} registers "
            f"{ms(times[name])}"
        )
    print(f"      -> ours / best ({best}) = {ratio:.3f}")
    print(f"      ours: {_spans(ours)}")
    print(f"      (b):  {', '.join(f'{start}+{count}' for _f, start, count in merged)}")
    return ratio


def _informational(register_map: RegisterMap, baudrate: int) -> None:
    wire = WireModel.rtu(baudrate, TURNAROUND_MS)
    ours = plan(
        register_map.specs, wire, max_registers=register_map.max_registers, holes=register_map.holes
    )
    ours_t = plan_time(ours, wire)
    single = one_per_point(register_map.specs)
    merged = gap_merge(register_map.specs, register_map.max_registers, register_map.holes)
    single_t, merged_t = spans_time(single, wire), spans_time(merged, wire)
    print(
        f"  {register_map.name}, rtu {baudrate}: ours {len(ours)} requests / "
        f"{sum(r.count for r in ours)} registers {ms(ours_t)}; (a) one per point "
        f"{len(single)} requests {ms(single_t)}; (b) gap<={MAX_GAP} {len(merged)} requests / "
        f"{sum(c for *_, c in merged)} registers {ms(merged_t)} -> "
        f"{ours_t / min(single_t, merged_t):.3f}"
    )


def run() -> dict[str, Result]:
    print(f"planner: modelled wire time per poll (turnaround {TURNAROUND_MS:g} ms)")
    ratios = {
        f"planner_{case.key}_{baudrate}": _case(case, baudrate)
        for case in (sdm630(), coolmaster())
        for baudrate in BAUDRATES
    }
    print("  informational, not in the result:")
    for baudrate in BAUDRATES:
        _informational(hand_built_sparse(), baudrate)
    worst = max(ratios, key=lambda k: ratios[k])
    value = ratios[worst]
    for key, ratio in ratios.items():
        print(f"  {key} = {ratio:.3f}")
    print(f"  planner = the worst case ({worst}) = {value:.3f} (target <= 1.0)")
    out = {
        key: result(ratio, "informational: one case of planner") for key, ratio in ratios.items()
    }
    out["planner"] = result(value, "<= 1.0")
    return out


if __name__ == "__main__":
    run()
