"""Result `cycle`: does polling 200 devices take about as long as polling one?

200 fake Modbus TCP devices (one process, separate from this one) each answer a 10-register
read after 20 ms. Reference: the latency of one device's poll (median of single `poll_once`
calls). Measured: the p95 over cycles of `gather(poll_once() for all 200)`. If the driver
really overlaps its devices the ratio stays near 1; polling them one after another would make
it about 200. What it adds above 1 is CPU per request times 200: the gateway's, and on a small
machine the fake devices' too.

For that reason the same cycle is also run with bench.common.BareClient (pack, write, unpack,
nothing else) on the same 200 ports: its ratio is the floor this machine allows any client,
printed next to ours so the figure can be read fairly. It is not part of the result.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from bench.common import (
    BareClient,
    ModbusFarm,
    Result,
    bench_profile,
    connect_bare,
    median,
    ms,
    percentile,
    result,
    tcp_device,
)
from core.types import Sample
from drivers.modbus.driver import ModbusDriver

DEVICES = 200
DELAY_MS = 20.0
ROUNDS = 30


def _healthy(sample: Sample) -> bool:
    return bool(sample.values) and not sample.bad


async def _timed(call: Callable[[], Awaitable[object]]) -> float:
    started = time.perf_counter()
    await call()
    return time.perf_counter() - started


async def _gateway(ports: list[int]) -> tuple[list[float], list[float], int, int]:
    """(single-device latencies, 200-device cycle times, polls, bad polls) of the real pollers."""
    profile = bench_profile()
    devices = [
        tcp_device(f"dev{i:03d}", port, profile, timeout=2.0) for i, port in enumerate(ports)
    ]
    driver = ModbusDriver(devices, lambda _sample: None)
    pollers = list(driver.pollers.values())
    single = pollers[0]
    singles: list[float] = []
    cycles: list[float] = []
    polls = bad = 0
    try:
        # Warm-up: open all 200 connections, so neither figure includes a TCP handshake.
        await asyncio.gather(*(p.poll_once() for p in pollers))
        await single.poll_once()
        # Interleaved, so a slow patch of the machine hits reference and measurement alike.
        for _ in range(ROUNDS):
            started = time.perf_counter()
            sample = await single.poll_once()
            singles.append(time.perf_counter() - started)
            polls += 1
            bad += not _healthy(sample)

            started = time.perf_counter()
            samples = await asyncio.gather(*(p.poll_once() for p in pollers))
            cycles.append(time.perf_counter() - started)
            polls += len(samples)
            bad += sum(not _healthy(s) for s in samples)
    finally:
        await driver.stop()
    return singles, cycles, polls, bad


async def _bare(ports: list[int]) -> tuple[list[float], list[float]]:
    """The same single/cycle measurement with the bare reference client."""
    clients: list[BareClient] = [await connect_bare(port) for port in ports]
    singles: list[float] = []
    cycles: list[float] = []
    try:
        await asyncio.gather(*(c.read_holding(0, 10) for c in clients))
        for _ in range(ROUNDS):
            singles.append(await _timed(lambda: clients[0].read_holding(0, 10)))
            cycles.append(
                await _timed(lambda: asyncio.gather(*(c.read_holding(0, 10) for c in clients)))
            )
    finally:
        for client in clients:
            client.close()
    return singles, cycles


async def _measure() -> tuple[tuple[list[float], list[float], int, int], tuple[list[float], ...]]:
    with ModbusFarm(DEVICES, delay_ms=DELAY_MS) as farm:
        gateway = await _gateway(farm.healthy)
        bare = await _bare(farm.healthy)
    return gateway, bare


def run() -> dict[str, Result]:
    (singles, cycles, polls, bad), (bare_singles, bare_cycles) = asyncio.run(_measure())
    reference = median(singles)
    p95 = percentile(cycles, 95)
    value = p95 / reference
    bare_value = percentile(bare_cycles, 95) / median(bare_singles)
    print(f"cycle: {DEVICES} Modbus TCP devices, each answering after {DELAY_MS:g} ms")
    print(
        f"  reference, one device:  median {ms(reference)} "
        f"(min {ms(min(singles))}, max {ms(max(singles))}, n={len(singles)})"
    )
    print(
        f"  all {DEVICES} at once:       p95 {ms(p95)} (median {ms(median(cycles))}, "
        f"min {ms(min(cycles))}, max {ms(max(cycles))}, n={len(cycles)})"
    )
    print(f"  polls {polls}, with bad or missing values {bad}")
    print(
        f"  cycle = p95 / reference = {value:.3f} (target <= 1.3; sequential would be ~{DEVICES})"
    )
    print(
        f"  floor, bare asyncio client on the same ports: one {ms(median(bare_singles))}, "
        f"all {DEVICES} p95 {ms(percentile(bare_cycles, 95))} "
        f"(median {ms(median(bare_cycles))}) -> ratio {bare_value:.3f} (informational)"
    )
    return {"cycle": result(value, "<= 1.3")}


if __name__ == "__main__":
    run()
