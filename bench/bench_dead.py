"""Result `dead`: do hung devices delay the healthy ones?

The real scheduled pollers (`ModbusDriver.start()`, one `DevicePoller.run()` task per device)
run for a while against 200 fake devices answering after 20 ms; every emitted Sample is
stamped with time.monotonic(). Two runs on the same fake-device process:

* reference: all 200 devices healthy;
* measured: 20 of them (10 %) replaced by dead devices that accept the connection and never
  answer, so every request to them waits out its timeout (retries 0).

Only the 180 devices healthy in both runs are compared. value = p95 of the interval between
consecutive samples of a healthy device with dead ones present / the same p95 without. A
driver that let dead devices stall the loop, a shared lock or a shared connection would show
up as longer intervals; ~1.0 means the dead devices cost the healthy ones nothing.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import defaultdict

from bench.common import (
    ModbusFarm,
    Result,
    bench_profile,
    median,
    ms,
    percentile,
    quiet_logs,
    result,
    stop_driver,
    tcp_device,
)
from core.types import Sample
from drivers.modbus.driver import ModbusDriver

DEVICES = 200
DEAD = 20
DELAY_MS = 20.0
INTERVAL = 0.25  # s between polls of a device
TIMEOUT = 0.5  # s a dead device makes its poller wait (twice the interval)
DURATION = 8.0  # s per run


class _Run:
    def __init__(self) -> None:
        self.recancelled = 0  # poller tasks that swallowed stop()'s cancel (see stop_driver)
        self.stamps: dict[str, list[float]] = defaultdict(list)
        self.bad: dict[str, int] = defaultdict(int)

    def emit(self, sample: Sample) -> None:
        self.stamps[sample.device].append(time.monotonic())
        if sample.bad:
            self.bad[sample.device] += 1

    def intervals(self, devices: list[str]) -> list[float]:
        out: list[float] = []
        for device in devices:
            stamps = self.stamps.get(device, [])
            # The first sample includes the start-up spread and the TCP connect: skip it.
            out.extend(b - a for a, b in itertools.pairwise(stamps[1:]))
        return out


async def _scheduled(ports: list[int]) -> _Run:
    profile = bench_profile()
    devices = [
        tcp_device(f"dev{i:03d}", port, profile, interval=INTERVAL, timeout=TIMEOUT, retries=0)
        for i, port in enumerate(ports)
    ]
    record = _Run()
    driver = ModbusDriver(devices, record.emit)
    driver.start()
    try:
        await asyncio.sleep(DURATION)
    finally:
        record.recancelled = await stop_driver(driver)
    return record


async def _measure() -> tuple[_Run, _Run, list[str]]:
    with ModbusFarm(DEVICES + DEAD, dead=DEAD, delay_ms=DELAY_MS) as farm:
        healthy_ports = farm.healthy[:DEVICES]
        reference = await _scheduled(healthy_ports)
        with quiet_logs():  # the dead devices going offline is the point, not news
            measured = await _scheduled(healthy_ports[: DEVICES - DEAD] + farm.dead)
    compared = [f"dev{i:03d}" for i in range(DEVICES - DEAD)]
    return reference, measured, compared


def run() -> dict[str, Result]:
    reference, measured, compared = asyncio.run(_measure())
    ref = reference.intervals(compared)
    got = measured.intervals(compared)
    ref_p95, got_p95 = percentile(ref, 95), percentile(got, 95)
    value = got_p95 / ref_p95
    dead_ids = [f"dev{i:03d}" for i in range(DEVICES - DEAD, DEVICES)]
    dead_polls = sum(len(measured.stamps.get(d, [])) for d in dead_ids)
    print(
        f"dead: {DEVICES} devices polled every {INTERVAL:g} s for {DURATION:g} s, "
        f"{DEAD} of them dead (timeout {TIMEOUT:g} s, retries 0)"
    )
    for name, data, run_ in (("all healthy ", ref, reference), ("with dead   ", got, measured)):
        bad = sum(run_.bad[d] for d in compared)
        print(
            f"  {name}: {len(compared)} healthy devices, {len(data)} intervals, "
            f"median {ms(median(data))}, p95 {ms(percentile(data, 95))}, "
            f"p99 {ms(percentile(data, 99))}, max {ms(max(data))}; bad samples {bad}"
        )
    print(f"  dead devices' offline samples: {dead_polls} (backing off as designed)")
    print(
        "  poller tasks that ignored driver.stop()'s cancel and had to be cancelled again: "
        f"{reference.recancelled} + {measured.recancelled} (Python 3.11 wait_for, gh-86296)"
    )
    print(f"  dead = p95 with dead / p95 without = {value:.3f} (target <= 1.1)")
    return {"dead": result(value, "<= 1.1")}


if __name__ == "__main__":
    run()
