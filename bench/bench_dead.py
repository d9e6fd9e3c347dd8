"""Result `dead`: do hung devices delay the healthy ones, on their own paths and on a shared line?

The real scheduled pollers (`ModbusDriver.start()`, one `DevicePoller.run()` task per device)
run against two kinds of fake device, each in its own process (bench/fake_modbus.py); every
emitted Sample is stamped with time.monotonic().

* 200 Modbus TCP devices answering after 20 ms, each on its own connection;
* one RS-485 line behind a transparent serial gateway (RTU over TCP, one port): 8 units, one
  conversation at a time, each answer taking the line for 20 ms. All 8 share one link.

Two runs on the same fake devices:

* reference: everything healthy (200 TCP devices, line units 1..8);
* measured: 20 of the TCP devices (10 %) replaced by dead ones that accept the connection and
  never answer, and line unit 8 replaced by unit 9, which is dead (its requests go out on the
  line and nothing comes back). A dead device's every request waits out its timeout.

The line's units use the default `retries: 1`. Its healthy units lose the line for one timeout
each time the dead unit is probed: the driver promises that this happens at most once per
backoff period (the probe of a device known to be offline is one request, never retried), not
once per cycle. The backoff doubles from the poll interval, so the first seconds, where it is
still short, are skipped: only intervals between samples stamped inside the window
[WARMUP, WARMUP + WINDOW] count, in both runs.

Compared: the 180 TCP devices and the 7 line units healthy in both runs, each group on its own
(the 7 would be lost among the 180 in one percentile). Per group, the cycle is the p95 of the
interval between a device's consecutive samples; `dead` = the worse group's p95 with dead
devices / the same p95 without. A driver that let dead devices stall the loop, a shared lock, a
shared connection, or the line once per cycle, shows up as longer intervals; ~1.0 means the
dead devices cost the healthy ones nothing beyond the occasional probe.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import defaultdict

from bench.common import (
    HOST,
    ModbusFarm,
    Result,
    _Child,
    _Helper,
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
from drivers.modbus.config import RtuOverTcpConnection
from drivers.modbus.driver import ModbusDevice, ModbusDriver
from drivers.modbus.profile import Profile

DEVICES = 200
DEAD = 20
DELAY_MS = 20.0
LINE_UNITS = 8  # healthy units on the line in the reference run
LINE_DEAD = 1  # dead units on the line in the measured run, in place of the last healthy ones
LINE_DELAY_MS = 20.0  # line time per request (a 10-register read at about 38400 baud)
INTERVAL = 0.25  # s between polls of a device
TIMEOUT = 0.5  # s a dead device makes its poller wait (twice the interval)
LINE_RETRIES = 1  # the default: spent only while a unit is not yet known to be offline
WARMUP = 6.0  # s before the window: the dead devices are found and their backoff grows
WINDOW = 12.0  # s of samples compared per run


class RtuLine(_Helper):
    """One RS-485 line behind a transparent serial gateway, in its own process (fake_modbus.py)."""

    def __init__(self, units: int, *, dead: int = 0, delay_ms: float = 0.0) -> None:
        self._child = _Child(
            "fake_modbus.py",
            ["--rtu-units", str(units), "--rtu-dead", str(dead), "--delay-ms", str(delay_ms)],
        )
        self.port: int = int(self._child.hello["line"])
        self.healthy: list[int] = list(self._child.hello["healthy"])
        self.dead: list[int] = list(self._child.hello["dead"])


def line_device(unit: int, port: int, profile: Profile) -> ModbusDevice:
    connection = RtuOverTcpConnection(
        transport="rtu_over_tcp",
        host=HOST,
        port=port,
        unit=unit,
        timeout=TIMEOUT,
        retries=LINE_RETRIES,
    )
    return ModbusDevice(f"line{unit}", profile, connection, INTERVAL)


class _Run:
    def __init__(self) -> None:
        self.recancelled = 0  # poller tasks that swallowed stop()'s cancel (see stop_driver)
        self.started = 0.0
        self.stamps: dict[str, list[float]] = defaultdict(list)
        self.bad: dict[str, int] = defaultdict(int)
        self.requests: dict[str, int] = {}
        self.polls: dict[str, int] = {}

    def emit(self, sample: Sample) -> None:
        self.stamps[sample.device].append(time.monotonic())
        if sample.bad:
            self.bad[sample.device] += 1

    def window(self, device: str) -> list[float]:
        low = self.started + WARMUP
        return [t for t in self.stamps.get(device, []) if low <= t <= low + WINDOW]

    def intervals(self, devices: list[str]) -> list[float]:
        out: list[float] = []
        for device in devices:
            out.extend(b - a for a, b in itertools.pairwise(self.window(device)))
        return out

    def bad_in(self, devices: list[str]) -> int:
        return sum(self.bad[d] for d in devices)


async def _scheduled(devices: list[ModbusDevice]) -> _Run:
    record = _Run()
    driver = ModbusDriver(devices, record.emit)
    record.started = time.monotonic()
    driver.start()
    try:
        await asyncio.sleep(WARMUP + WINDOW + 0.5)
    finally:
        record.recancelled = await stop_driver(driver)
    for device, poller in driver.pollers.items():
        record.requests[device] = poller.stats.requests
        record.polls[device] = poller.stats.polls
    return record


async def _measure() -> tuple[_Run, _Run, list[int]]:
    profile = bench_profile()
    with (
        ModbusFarm(DEVICES + DEAD, dead=DEAD, delay_ms=DELAY_MS) as farm,
        RtuLine(LINE_UNITS + LINE_DEAD, dead=LINE_DEAD, delay_ms=LINE_DELAY_MS) as line,
    ):
        healthy_ports = farm.healthy[:DEVICES]

        def tcp(ports: list[int]) -> list[ModbusDevice]:
            return [
                tcp_device(f"dev{i:03d}", port, profile, interval=INTERVAL, timeout=TIMEOUT)
                for i, port in enumerate(ports)
            ]

        def on_line(units: list[int]) -> list[ModbusDevice]:
            return [line_device(unit, line.port, profile) for unit in units]

        line_units = line.healthy[:LINE_UNITS]
        reference = await _scheduled(tcp(healthy_ports) + on_line(line_units))
        with quiet_logs():  # the dead devices going offline is the point, not news
            measured = await _scheduled(
                tcp(healthy_ports[: DEVICES - DEAD] + farm.dead)
                + on_line(line_units[: LINE_UNITS - LINE_DEAD] + line.dead)
            )
    return reference, measured, line.dead


def _group(name: str, devices: list[str], reference: _Run, measured: _Run) -> float:
    ref, got = reference.intervals(devices), measured.intervals(devices)
    ref_p95, got_p95 = percentile(ref, 95), percentile(got, 95)
    print(f"  {name}: {len(devices)} devices healthy in both runs")
    for label, data, run_ in (("all healthy", ref, reference), ("with dead  ", got, measured)):
        print(
            f"    {label}: {len(data)} intervals, median {ms(median(data))}, "
            f"p95 {ms(percentile(data, 95))}, p99 {ms(percentile(data, 99))}, "
            f"max {ms(max(data))}; mean {ms(sum(data) / len(data))}; "
            f"bad samples {run_.bad_in(devices)}"
        )
    value = got_p95 / ref_p95
    mean_ratio = (sum(got) / len(got)) / (sum(ref) / len(ref))
    print(f"    p95 with dead / without = {value:.3f} (mean interval: {mean_ratio:.3f})")
    return value


def run() -> dict[str, Result]:
    reference, measured, dead_units = asyncio.run(_measure())
    tcp_ids = [f"dev{i:03d}" for i in range(DEVICES - DEAD)]
    line_ids = [f"line{u}" for u in range(1, LINE_UNITS - LINE_DEAD + 1)]
    print(
        f"dead: {DEVICES} TCP devices and {LINE_UNITS} units on one RTU line, polled every "
        f"{INTERVAL:g} s; measured: {DEAD} TCP devices and {LINE_DEAD} line unit(s) dead "
        f"(timeout {TIMEOUT:g} s; retries 0 on TCP, {LINE_RETRIES} on the line); "
        f"window {WARMUP:g}..{WARMUP + WINDOW:g} s of each run"
    )
    tcp_value = _group("TCP devices", tcp_ids, reference, measured)
    line_value = _group("units on the shared line", line_ids, reference, measured)
    dead_tcp = [f"dev{i:03d}" for i in range(DEVICES - DEAD, DEVICES)]
    print(
        f"  dead TCP devices: {sum(measured.polls[d] for d in dead_tcp)} polls, "
        f"{sum(measured.requests[d] for d in dead_tcp)} requests in the whole run"
    )
    for unit in dead_units:
        device = f"line{unit}"
        probes = len(measured.window(device))
        print(
            f"  dead line unit {unit}: {measured.polls[device]} polls, "
            f"{measured.requests[device]} requests (each one a timeout on the line) in the "
            f"whole run; {probes} of the polls in the window"
        )
    print(
        "  poller tasks that ignored driver.stop()'s cancel and had to be cancelled again: "
        f"{reference.recancelled} + {measured.recancelled} (Python 3.11 wait_for, gh-86296)"
    )
    value = max(tcp_value, line_value)
    print(f"  dead = max(TCP {tcp_value:.3f}, line {line_value:.3f}) = {value:.3f} (target <= 1.1)")
    return {
        "dead": result(value, "<= 1.1"),
        "dead_tcp": result(tcp_value, "informational"),
        "dead_line": result(line_value, "informational"),
    }


if __name__ == "__main__":
    run()
