"""Results `fleet_rss_mib` and `fleet_cpu`: 20 gateways on one machine, as tests/test_fleet.py
runs them (tests/fleet.py): each `guanjia run` on its own site file (three simulated meters
polled every second, a voltage rule, accounts, MQTT to the centre's Mosquitto), odd sites
writing to a real InfluxDB 1.6 (v1 API), even ones to a real VictoriaMetrics (v2 API), the
buildings served by one process of their own.

- fleet_rss_mib: the resident memory (VmRSS) of the largest of the 20 gateway processes,
  read at the end of the window; their mean and their PSS (resident memory
  with the pages shared among the processes, the interpreter's and the libraries', divided
  among them: what each one really adds) are printed beside it. Target <= 60 MiB.
- fleet_cpu: CPU per reading in the 20-gateway run against one gateway alone. Each gateway's
  CPU is read from /proc (user + system, all its threads) at the ends of a WINDOW-second
  window; its readings in that window are counted in the database (every reading is stored
  with its acquisition time). One gateway alone is measured the same way, one InfluxDB site and
  one VictoriaMetrics site one after the other (they write through different clients); the
  fleet's CPU is compared with what its readings of each kind cost alone:
  fleet_cpu = fleet CPU / sum over kinds (fleet readings of the kind x CPU per reading alone).
  Target <= 1.1.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from bench.common import Result, result, us
from tests.fleet import (
    Buildings,
    FleetSite,
    GatewayProcess,
    proc_cpu_seconds,
    proc_rss_kib,
    running,
    write_fleet,
)
from tests.servers import InfluxDB1Server, MosquittoServer, VictoriaMetricsServer

GATEWAYS = 20
STARTUP_LIMIT = 120.0
WARMUP = 10.0  # after start-up (imports, profiles): the first polls, devices coming online
WINDOW = 30.0
SETTLE = 3.0  # after the window, before counting: the last batches reach the databases
DB = "building"


def readings(
    site: FleetSite, influx: InfluxDB1Server, vm: VictoriaMetricsServer, t0: float, t1: float
) -> int:
    """The site's meter readings acquired in [t0, t1), as the database holds them."""
    if site.database == "influxdb":
        query = (
            f'SELECT count("voltage_l1_v") FROM "meter" WHERE "site" = \'{site.id}\' '
            f"AND time >= {int(t0 * 1e9)} AND time < {int(t1 * 1e9)}"
        )
        series = influx.query(query, db=DB)["results"][0].get("series", [])
        return int(series[0]["values"][0][1]) if series else 0
    vm.flush()
    exported = vm.export(f'meter_voltage_l1_v{{site="{site.id}"}}')
    return sum(1 for s in exported for ts in s["timestamps"] if t0 * 1000 <= ts < t1 * 1000)


def measure(
    gateways: list[GatewayProcess], influx: InfluxDB1Server, vm: VictoriaMetricsServer
) -> tuple[dict[str, float], dict[str, int], dict[str, tuple[int, int]]]:
    """(CPU seconds, readings, (RSS, PSS) KiB at the window's end) per site over one window,
    once every gateway has started and WARMUP seconds more have passed."""
    deadline = time.monotonic() + STARTUP_LIMIT
    while not all("started:" in g.log.read_text(encoding="utf-8") for g in gateways):
        assert time.monotonic() < deadline, "the gateways did not start"
        assert all(g.process.poll() is None for g in gateways), "a gateway exited"
        time.sleep(0.5)
    time.sleep(WARMUP)
    dead = [g.site.id for g in gateways if g.process.poll() is not None]
    assert not dead, f"gateways exited: {dead}"
    t0 = time.time()
    cpu0 = {g.site.id: proc_cpu_seconds(g.pid) for g in gateways}
    time.sleep(WINDOW)
    t1 = time.time()
    cpu = {g.site.id: proc_cpu_seconds(g.pid) - cpu0[g.site.id] for g in gateways}
    memory = {g.site.id: proc_rss_kib(g.pid) for g in gateways}
    time.sleep(SETTLE)
    counted = {g.site.id: readings(g.site, influx, vm, t0, t1) for g in gateways}
    return cpu, counted, memory


def run() -> dict[str, Result]:
    with (
        tempfile.TemporaryDirectory(prefix="bench-fleet-") as tmp,
        MosquittoServer(Path(tmp) / "mosquitto") as broker,
        InfluxDB1Server(Path(tmp) / "influx") as influx,
        VictoriaMetricsServer(Path(tmp) / "vm") as vm,
    ):
        influx.create_database(DB)
        sites = write_fleet(
            Path(tmp) / "sites",
            GATEWAYS,
            broker_port=broker.port,
            influx_url=influx.url,
            vm_url=vm.url,
        )
        buildings = Buildings(sites, Path(tmp) / "buildings.log")
        try:
            alone: dict[str, float] = {}  # CPU per reading of one gateway alone, by database
            for site in sites[:2]:
                gateway = GatewayProcess(site, Path(tmp) / f"alone-{site.id}.log")
                with running([gateway]):
                    cpu, counted, memory = measure([gateway], influx, vm)
                alone[site.database] = cpu[site.id] / counted[site.id]
                alone_rss, alone_pss = memory[site.id]
                print(
                    f"   alone, {site.id} ({site.database}): {cpu[site.id]:.3f} s CPU for "
                    f"{counted[site.id]} readings in {WINDOW:g} s = "
                    f"{us(alone[site.database])}/reading; RSS {alone_rss / 1024:.1f} MiB, "
                    f"PSS {alone_pss / 1024:.1f} MiB"
                )
            fleet = [GatewayProcess(s, s.path.parent / "gateway.log") for s in sites]
            with running(fleet):
                cpu, counted, memory = measure(fleet, influx, vm)
        finally:
            buildings.stop()
    by_kind: dict[str, tuple[float, int]] = {}
    for site in sites:
        spent, read = by_kind.get(site.database, (0.0, 0))
        by_kind[site.database] = (spent + cpu[site.id], read + counted[site.id])
    for kind, (spent, read) in sorted(by_kind.items()):
        print(
            f"   fleet, {kind} sites: {spent:.3f} s CPU for {read} readings = "
            f"{us(spent / read)}/reading (alone {us(alone[kind])}): "
            f"{spent / read / alone[kind]:.3f}"
        )
    total_cpu = sum(cpu.values())
    expected_cpu = sum(read * alone[kind] for kind, (_spent, read) in by_kind.items())
    fleet_cpu = total_cpu / expected_cpu
    rss = [m[0] / 1024 for m in memory.values()]
    pss = [m[1] / 1024 for m in memory.values()]
    largest = max(memory, key=lambda s: memory[s][0])
    print(
        f"   {GATEWAYS} gateways together: {total_cpu:.2f} s CPU in {WINDOW:g} s "
        f"({total_cpu / WINDOW:.2f} core), {sum(counted.values())} readings"
    )
    print(
        f"   RSS per gateway: max {max(rss):.1f} MiB ({largest}), mean {statistics.mean(rss):.1f}"
        f", min {min(rss):.1f}; PSS mean {statistics.mean(pss):.1f} MiB, "
        f"together {sum(pss):.0f} MiB"
    )
    print(f"   fleet_cpu = {total_cpu:.3f} s / {expected_cpu:.3f} s = {fleet_cpu:.3f} (<= 1.1)")
    print(f"   fleet_rss_mib = {max(rss):.1f} (<= 60)")
    return {
        "fleet_rss_mib": result(max(rss), "<= 60", unit="MiB"),
        "fleet_cpu": result(fleet_cpu, "<= 1.1"),
    }


if __name__ == "__main__":
    run()
