"""Grouping a device's points into the fewest, cheapest Modbus read requests.

Merging two groups of registers into one request saves a request's fixed cost (framing, the
device's turnaround, the silent intervals on RTU) but pays for every unused register in between.
On RTU at 9600 baud a register costs about 2 ms, a request about 30 ms, so merging pays only
across gaps below about 15 registers; on TCP a register costs nanoseconds, so merging nearly
always pays. The planner minimises the modelled wire time exactly (dynamic programming over the
sorted points), never spans a hole, and never exceeds the device's request size.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from drivers.modbus.codec import PointSpec
from drivers.modbus.profile import Function, Hole

# Read request frame sizes in bytes, without the data.
_RTU_REQUEST = 8  # unit, fc, address(2), count(2), crc(2)
_RTU_RESPONSE = 5  # unit, fc, byte count, crc(2)
_RTU_SILENCE_CHARS = 7.0  # 3.5 character times before each of the two frames
_TCP_REQUEST = 12  # MBAP(7) + fc + address(2) + count(2)
_TCP_RESPONSE = 9  # MBAP(7) + fc + byte count


@dataclass(frozen=True, slots=True)
class WireModel:
    """Time one read request takes on the wire: fixed overhead plus a cost per data byte."""

    overhead_s: float
    per_byte_s: float

    @classmethod
    def rtu(
        cls, baudrate: int, turnaround_ms: float, bits_per_char: int = 10, rtt_ms: float = 0.0
    ) -> WireModel:
        """RTU on a serial line (``rtt_ms`` > 0 when it is reached through a TCP gateway)."""
        char = bits_per_char / baudrate
        framing = (_RTU_REQUEST + _RTU_RESPONSE + _RTU_SILENCE_CHARS) * char
        return cls(framing + (turnaround_ms + rtt_ms) / 1000.0, char)

    @classmethod
    def tcp(cls, turnaround_ms: float, rtt_ms: float = 0.5, bitrate: float = 100e6) -> WireModel:
        per_byte = 8.0 / bitrate
        overhead = (turnaround_ms + rtt_ms) / 1000.0 + (_TCP_REQUEST + _TCP_RESPONSE) * per_byte
        return cls(overhead, per_byte)

    def request_time(self, function: Function, count: int) -> float:
        data_bytes = (count + 7) // 8 if function.is_bit else 2 * count
        return self.overhead_s + data_bytes * self.per_byte_s


@dataclass(frozen=True, slots=True)
class ReadRequest:
    """One read: a data table, a register span and the points it serves."""

    function: Function
    start: int
    count: int
    points: tuple[PointSpec, ...]


def clusters(specs: Sequence[PointSpec]) -> list[list[PointSpec]]:
    """Points that overlap (several bits of one register, say) must share a request."""
    ordered = sorted(specs, key=lambda s: (s.address, s.end))
    groups: list[list[PointSpec]] = []
    end = -1
    for spec in ordered:
        if groups and spec.address <= end:
            groups[-1].append(spec)
            end = max(end, spec.end)
        else:
            groups.append([spec])
            end = spec.end
    return groups


def _crosses_hole(start: int, end: int, holes: Sequence[Hole]) -> bool:
    return any(h.start <= end and h.end >= start for h in holes)


def plan(
    specs: Sequence[PointSpec],
    wire: WireModel,
    *,
    max_registers: int = 125,
    max_bits: int = 2000,
    holes: Sequence[Hole] = (),
) -> list[ReadRequest]:
    """The cheapest set of requests that reads every point once, in address order."""
    for spec in specs:
        if spec.end > 65535:
            raise ValueError(
                f"point {spec.name!r} ends at register {spec.end}, past 65535; check `base`"
            )
    requests: list[ReadRequest] = []
    for function in Function:
        mine = [s for s in specs if s.function is function]
        if not mine:
            continue
        limit = max_bits if function.is_bit else max_registers
        table_holes = [h for h in holes if h.function is function]
        groups = clusters(mine)
        starts = [c[0].address for c in groups]
        ends = [max(s.end for s in c) for c in groups]
        n = len(groups)
        # best[j] = (time, requests, split) for the first j clusters; split = start of last request
        best: list[tuple[float, int, int]] = [(0.0, 0, 0)] + [(float("inf"), 0, 0)] * n
        for j in range(1, n + 1):
            end = ends[j - 1]
            for i in range(j, 0, -1):
                start = starts[i - 1]
                span = end - start + 1
                if span > limit:
                    if i == j:
                        raise ValueError(
                            f"point {groups[i - 1][0].name!r} needs {span} registers, "
                            f"more than the device's {limit} per request"
                        )
                    break
                if i < j and _crosses_hole(start, end, table_holes):
                    break
                prev_t, prev_n, _ = best[i - 1]
                cand = (prev_t + wire.request_time(function, span), prev_n + 1, i - 1)
                if cand[:2] < best[j][:2]:
                    best[j] = cand
        chosen: list[ReadRequest] = []
        j = n
        while j > 0:
            i = best[j][2]
            members = tuple(s for c in groups[i:j] for s in c)
            start, end = starts[i], ends[j - 1]
            chosen.append(ReadRequest(function, start, end - start + 1, members))
            j = i
        requests.extend(reversed(chosen))
    return requests


def plan_time(requests: Sequence[ReadRequest], wire: WireModel) -> float:
    """Modelled wire time of a whole poll."""
    return sum(wire.request_time(r.function, r.count) for r in requests)
