"""The accounts in the real gateway into a real InfluxDB 1.6: a site with `accounts:`, one meter
polled from a pymodbus server and one whose readings of two days ago are published on the bus
(its own connection is down); the `energy` points are queried back, and a late replay of a gap
rewrites its hours and its day in place."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from core.types import Sample
from gateway.config_load import load_site
from gateway.service import Gateway
from tests.modbus_devices import meter_image, modbus_server
from tests.servers import InfluxDB1Server, free_port
from tests.sites import meter_site

pytestmark = pytest.mark.servers
DB = "building"
TZ = ZoneInfo("Asia/Shanghai")
RATE = 12.0  # kWh an hour


def readings(device: str, origin: float, start: float, end: float) -> list[Sample]:
    """A counter at RATE from 500 kWh at `origin`, read every 30 s in [start, end)."""
    out = []
    t = start
    while t < end:
        value = 500.0 + (t - origin) * RATE / 3600
        out.append(Sample(device, int(t * 1e9), {"energy_kwh": value}))
        t += 30.0
    return out


def energy(influx: InfluxDB1Server, where: str) -> dict[int, dict[str, object]]:
    """Rows by their time (ns since the epoch)."""
    result = influx.query(
        f"SELECT amount, coverage, kgce, co2_kg, factor_set, building, floor, use, carrier, flow "
        f"FROM energy WHERE {where}",
        db=DB,
    )
    series = result["results"][0].get("series", [])
    out: dict[int, dict[str, object]] = {}
    for s in series:
        for row in s["values"]:
            out[row[0]] = dict(zip(s["columns"], row, strict=True))
    return out


async def test_energy_points_reach_influxdb_and_late_data_rewrites_them(
    tmp_path: Path, influx1: InfluxDB1Server
) -> None:
    day = datetime.now(TZ).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=2)
    t0 = day.timestamp()
    async with modbus_server({1: meter_image()}) as port:
        site = meter_site(
            tmp_path,
            [port, free_port()],
            f"influxdb: {{api: v1, url: '{influx1.url}', database: {DB}}}",
            interval=0.2,
        )
        site.write_text(
            site.read_text(encoding="utf-8") + "accounts:\n"
            "  counters: {energy_kwh: {carrier: electricity, flow: import, unit: kWh}}\n",
            encoding="utf-8",
        )
        gateway = Gateway(load_site(site), health_interval=3600)
        assert gateway.accounts is not None
        # Two days ago, from 00:00 into the next day, with 08:00 to 12:00 missing.
        for sample in readings("m1", t0, t0, t0 + 86400 + 600):
            if not t0 + 8 * 3600 <= sample.ts / 1e9 < t0 + 12 * 3600:
                gateway.bus.publish(sample)
        await gateway.start()
        try:
            await asyncio.sleep(1.5)  # the accounts' inbox is taken once a second
            gateway.accounts.settle(time.time())
            for sample in readings("m1", t0, t0 + 8 * 3600, t0 + 12 * 3600):
                gateway.bus.publish(sample)  # the gap, replayed late
            await asyncio.sleep(1.5)
            gateway.accounts.settle(time.time())
            assert gateway.health()["accounts_recomputed"] >= 6
            assert gateway.health()["accounts_late_readings"] == 4 * 120
        finally:
            await gateway.stop()

    hours = energy(influx1, "device = 'm1' AND period = 'hour'")
    assert len(hours) == 25  # the day's 24 and the next day's first (its reading at 00:09:30)
    nine = hours[int(t0 + 9 * 3600) * 1_000_000_000]
    assert nine["amount"] == pytest.approx(RATE)
    assert nine["coverage"] == pytest.approx(1.0)
    assert nine["kgce"] == pytest.approx(RATE * 0.1229)
    assert nine["factor_set"] == "cn-2023/national"
    assert (nine["building"], nine["floor"], nine["use"]) == ("main", "1", "lighting_sockets")
    assert (nine["carrier"], nine["flow"]) == ("electricity", "import")
    days = energy(influx1, "device = 'm1' AND period = 'day'")
    whole = days[int(t0) * 1_000_000_000]
    assert whole["amount"] == pytest.approx(RATE * 24)
    assert whole["coverage"] == pytest.approx(1.0)  # the rewrite replaced the gap's figure
    # Yesterday ended too: its ten minutes read, the rest unknown.
    assert sorted(days) == [int(t0) * 1_000_000_000, int(t0 + 86400) * 1_000_000_000]
    assert days[int(t0 + 86400) * 1_000_000_000]["coverage"] == pytest.approx(570 / 86400)
    # The polled meter's readings are counted too; none of its hours has ended here.
    assert gateway.health()["accounts_readings"] > (86400 + 600) / 30
