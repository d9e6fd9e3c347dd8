"""Result `accounts_cpu`: what keeping the energy accounts costs the whole ingest path.

The gateway is the real one (gateway.service.Gateway on a site file loaded by load_site, see
bench/gateway_site.py): 200 meters with bench.common's `bench_meter` profile on the fake Modbus
farm, each polled every 10 s, written to bench.common.FakeInflux through the v2 write API. The
accounts site adds `accounts:` with the meters' `energy_kwh` as an electricity import counter,
so every poll feeds one counter: gateway/accounts_service.py's inbox, its CounterTrack, its tick
every 10 s (settle, and the marks saved in SQLite on the store's thread) all run.

As bench_rules does, the two gateways run side by side, each in a process of its own
(bench/gateway_proc.py), polling the same meters, measured over the same WINDOWS windows of
WINDOW seconds after WARMUP (which covers the accounts' first tick, when every counter's first
mark is saved): the machine's noise falls on both alike. value = CPU per reading (getrusage of
the whole process, all threads) with accounts / without, over all windows (target <= 1.05).

Printed as information: the CPU of closing an hour (settle writes 200 hour points, and on the
hour a day's and a month's when they end), measured in this process on a service fed an hour of
the same readings, spread over the hour's readings.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from bench.common import FakeInflux, ModbusFarm, Result, cpu_seconds, median, ms, result, us
from bench.gateway_site import (
    POINTS,
    gateway_logs,
    gateway_process,
    loadavg,
    write_site,
)
from core.types import Sample
from gateway.accounts_service import AccountsService
from gateway.bus import Bus
from gateway.catalog import DeviceCatalog
from gateway.config_load import load_site

DEVICES = 200
INTERVAL = 10.0  # seconds between polls of one meter
WARMUP = 15.0  # connections open, the accounts' first tick (10 s) saved every first mark
WINDOW = 20.0
WINDOWS = 6
ACCOUNTS = {"counters": {"energy_kwh": {"carrier": "electricity", "flow": "import", "unit": "kWh"}}}


def _delta(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {k: after[k] - before[k] for k in after}


def accounts_site(directory: Path, ports: list[int], influx_url: str) -> Path:
    path = write_site(directory, ports, influx_url, rules=0, interval=INTERVAL)
    site: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    site["accounts"] = ACCOUNTS
    path.write_text(yaml.safe_dump(site, sort_keys=False), encoding="utf-8")
    return path


def hour_close_cpu(site: Path) -> tuple[float, int]:
    """CPU of settling an hour of 200 counters (read every 10 s) in this process, and the
    points it wrote."""
    loaded = load_site(site)
    bus = Bus()
    service = AccountsService(loaded, DeviceCatalog.build(loaded), bus)
    service.store.start()
    try:
        start = 1_782_835_200.0  # 2026-07-01 00:00 Asia/Shanghai
        ids = list(service.counted)
        for step in range(int(3600 / INTERVAL) + 2):
            t = start + step * INTERVAL
            service.take([Sample(d, int(t * 1e9), {"energy_kwh": 100.0 + step}) for d in ids])
        service.settle(start + 3600 + 600)  # the first hour's partial records: not measured
        for step in range(int(3600 / INTERVAL), int(7200 / INTERVAL) + 2):
            t = start + step * INTERVAL
            service.take([Sample(d, int(t * 1e9), {"energy_kwh": 100.0 + step}) for d in ids])
        before = cpu_seconds()
        written = len(service.settle(start + 7200 + 600))
        cpu = cpu_seconds() - before
        if written < len(ids):
            raise RuntimeError(f"closing the hour wrote {written} of {len(ids)} hour points")
        return cpu, written
    finally:
        service.store.stop()


def measure(directory: Path) -> float:
    farm = ModbusFarm(DEVICES)
    with farm, FakeInflux() as influx:
        plain_site = write_site(
            directory / "plain", farm.healthy, influx.url, rules=0, interval=INTERVAL
        )
        accounts = accounts_site(directory / "accounts", farm.healthy, influx.url)
        with gateway_process(plain_site) as plain, gateway_process(accounts) as kept:
            time.sleep(WARMUP)
            last = plain.counters(), kept.counters()
            windows = []
            for _ in range(WINDOWS):
                time.sleep(WINDOW)
                now = plain.counters(), kept.counters()
                windows.append((_delta(now[0], last[0]), _delta(now[1], last[1])))
                last = now
        # A site of its own: the running gateway's accounts store holds today's marks, and
        # July's hours would be behind them (nothing to write, nothing measured).
        close_cpu, written = hour_close_cpu(
            accounts_site(directory / "close", farm.healthy, influx.url)
        )
    print(
        f"   {DEVICES} meters every {INTERVAL:g} s ({POINTS} values a poll, one counter); the "
        f"two gateways side by side, {WINDOWS} windows of {WINDOW:g} s after {WARMUP:g} s:"
    )
    ratios = []
    for p, a in windows:
        ratio = (a["cpu"] / a["polls"]) / (p["cpu"] / p["polls"])
        ratios.append(ratio)
        print(
            f"     without accounts {us(p['cpu'] / p['polls'])} per poll ({p['cpu']:.3f} s / "
            f"{p['polls']:,.0f}), with {us(a['cpu'] / a['polls'])} ({a['cpu']:.3f} s / "
            f"{a['polls']:,.0f}): {ratio:.3f}"
        )
        expected = DEVICES / INTERVAL * WINDOW
        for name, w in (("without", p), ("with", a)):
            if w["polls"] < 0.9 * expected or w["failed"]:
                print(f"     WARNING {name}: {w['polls']:.0f} polls, {w['failed']:.0f} failed")
    plain_r = sum(p["cpu"] for p, _ in windows) / sum(p["polls"] for p, _ in windows)
    kept_r = sum(a["cpu"] for _, a in windows) / sum(a["polls"] for _, a in windows)
    hour_readings = DEVICES * 3600 / INTERVAL
    close_r = close_cpu / hour_readings
    ratio = (kept_r + close_r) / plain_r
    print(
        f"   closing an hour: {ms(close_cpu)} CPU for {written} energy points "
        f"= {us(close_r)} per reading of the hour"
    )
    print(
        f"   per poll over all windows: without accounts {us(plain_r)}, with {us(kept_r)} "
        f"+ {us(close_r)}; ratio {ratio:.3f} (median of the windows' {median(ratios):.3f})"
    )
    return ratio


def run() -> dict[str, Result]:
    print(f"   load average before: {loadavg()}")
    with gateway_logs(), tempfile.TemporaryDirectory(prefix="bench-accounts-") as tmp:
        ratio = measure(Path(tmp))
    print(f"   accounts_cpu = {ratio:.3f} (target <= 1.05)")
    print(f"   load average after: {loadavg()}")
    return {"accounts_cpu": result(ratio, "<= 1.05")}


if __name__ == "__main__":
    for key, value in run().items():
        print(f"{key}: {value}")
