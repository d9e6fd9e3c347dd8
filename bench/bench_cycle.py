"""Results `cycle_vs_bare` and `cycle`: polling 200 devices at once, against a bare client.

200 fake Modbus TCP devices (one process, separate from this one) each answer a 10-register
read after 20 ms. A cycle is `gather(...)` of one poll of every device, timed from the call to
the last answer.

* gateway: `DevicePoller.poll_once()` of the 200 real pollers (link lock, StreamClient, decoding
  into engineering values, a Sample each);
* bare: bench.common.BareClient on its own 200 connections to the same 200 devices (pack the
  request, unpack the registers, nothing else): the technique at its best, the floor this
  machine allows any client.

Rounds alternate which of the two goes first, so a slow patch of the machine lands on both.
`cycle_vs_bare` = p95 of the gateway's cycles / p95 of the bare client's; above 1 is what the
gateway's own work costs when 200 answers arrive together (its CPU per request times 200, as
waiting for the answers is the same for both). Target <= 1.15.

`cycle` (informational) = the gateway's p95 cycle / the median latency of one device polled
alone: near 1 if the devices really overlap, about 200 if they were polled one after another.
"""

from __future__ import annotations

import asyncio
import gc
import time

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
from drivers.modbus.poller import DevicePoller

DEVICES = 200
DELAY_MS = 20.0
ROUNDS = 300  # cycles of each client
SINGLES = 30  # polls of one device alone, for `cycle`


def _healthy(sample: Sample) -> bool:
    return bool(sample.values) and not sample.bad


class _Figures:
    def __init__(self) -> None:
        self.gateway: list[float] = []
        self.bare: list[float] = []
        self.single: list[float] = []
        self.polls = 0
        self.bad = 0


async def _gateway_cycle(pollers: list[DevicePoller], figures: _Figures) -> None:
    started = time.perf_counter()
    samples = await asyncio.gather(*(p.poll_once() for p in pollers))
    figures.gateway.append(time.perf_counter() - started)
    figures.polls += len(samples)
    figures.bad += sum(not _healthy(s) for s in samples)


async def _bare_cycle(clients: list[BareClient], figures: _Figures) -> None:
    started = time.perf_counter()
    answers = await asyncio.gather(*(c.read_holding(0, 10) for c in clients))
    figures.bare.append(time.perf_counter() - started)
    if any(len(a) != 10 for a in answers):
        raise RuntimeError("the bare client read a short answer")


async def _measure() -> _Figures:
    figures = _Figures()
    profile = bench_profile()
    with ModbusFarm(DEVICES, delay_ms=DELAY_MS) as farm:
        devices = [
            tcp_device(f"dev{i:03d}", port, profile, timeout=2.0)
            for i, port in enumerate(farm.healthy)
        ]
        driver = ModbusDriver(devices, lambda _sample: None)
        pollers = list(driver.pollers.values())
        clients = [await connect_bare(port) for port in farm.healthy]
        try:
            # Warm-up: open every connection, so no cycle includes a TCP handshake.
            for _ in range(3):
                await _gateway_cycle(pollers, _Figures())
                await _bare_cycle(clients, _Figures())
            gc.collect()
            for i in range(ROUNDS):
                if i % 2:
                    await _bare_cycle(clients, figures)
                    await _gateway_cycle(pollers, figures)
                else:
                    await _gateway_cycle(pollers, figures)
                    await _bare_cycle(clients, figures)
            for _ in range(SINGLES):
                started = time.perf_counter()
                sample = await pollers[0].poll_once()
                figures.single.append(time.perf_counter() - started)
                figures.polls += 1
                figures.bad += not _healthy(sample)
        finally:
            for client in clients:
                client.close()
            await driver.stop()
    return figures


def _describe(name: str, values: list[float]) -> str:
    return (
        f"{name}: p95 {ms(percentile(values, 95))} (median {ms(median(values))}, "
        f"min {ms(min(values))}, max {ms(max(values))}, n={len(values)})"
    )


def run() -> dict[str, Result]:
    figures = asyncio.run(_measure())
    gateway_p95 = percentile(figures.gateway, 95)
    bare_p95 = percentile(figures.bare, 95)
    vs_bare = gateway_p95 / bare_p95
    single = median(figures.single)
    cycle = gateway_p95 / single
    print(f"cycle: {DEVICES} Modbus TCP devices, each answering after {DELAY_MS:g} ms")
    print("  " + _describe(f"gateway, all {DEVICES}", figures.gateway))
    print("  " + _describe(f"bare,    all {DEVICES}", figures.bare))
    print(f"  gateway polls {figures.polls}, with bad or missing values {figures.bad}")
    print(
        f"  cycle_vs_bare = gateway p95 / bare p95 = {vs_bare:.3f} (target <= 1.15; "
        f"medians: {median(figures.gateway) / median(figures.bare):.3f})"
    )
    print(
        f"  cycle = gateway p95 / one device alone (median {ms(single)}, "
        f"n={len(figures.single)}) = {cycle:.3f} (informational; sequential would be "
        f"~{DEVICES})"
    )
    return {
        "cycle_vs_bare": result(vs_bare, "<= 1.15"),
        "cycle": result(cycle, "informational: against one device's latency"),
    }


if __name__ == "__main__":
    run()
