"""End to end with real databases: nothing polled is lost while the database is away,
across SIGTERM, and across SIGKILL and a restart.

VictoriaMetrics answers the InfluxDB v2 write API; Debian's InfluxDB 1.6 the v1 API.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.config_load import load_site
from gateway.service import Gateway
from gateway.spool import Spool
from tests.modbus_devices import meter_image, modbus_server
from tests.servers import InfluxDB1Server, VictoriaMetricsServer
from tests.sites import meter_site

pytestmark = pytest.mark.servers
DB = "building"


async def _run_with_outage(site: Path, stop_db: object, start_db: object) -> Gateway:
    gateway = Gateway(load_site(site), health_interval=3600)
    await gateway.start()
    await asyncio.sleep(1.5)
    await asyncio.to_thread(stop_db)  # type: ignore[arg-type]
    await asyncio.sleep(2.0)
    assert gateway.writer.stats.database_up is False
    assert len(gateway.spool) > 0
    await asyncio.to_thread(start_db)  # type: ignore[arg-type]
    await asyncio.sleep(2.5)
    await gateway.stop()
    return gateway


async def test_v2_database_outage_under_load_loses_nothing(
    tmp_path: Path, vm: VictoriaMetricsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GJ_TEST_TOKEN", "test-token")
    async with modbus_server({1: meter_image()}) as p1, modbus_server({1: meter_image()}) as p2:
        db = (
            f"influxdb: {{api: v2, url: '{vm.url}', org: ops, bucket: {DB}, "
            "token: '${GJ_TEST_TOKEN}'}"
        )
        site = meter_site(tmp_path, [p1, p2], db)
        gateway = await _run_with_outage(site, vm.stop, vm.start)
    polled = gateway.sink.lines_encoded
    stats = gateway.writer.stats
    assert polled > 50
    assert stats.points_spooled > 0
    assert stats.points_replayed == stats.points_spooled
    assert len(gateway.spool) == 0
    stored = vm.wait_for_samples('{__name__="meter_voltage_v"}', polled, timeout=20)
    assert stored == polled


async def test_v1_database_outage_under_load_loses_nothing(
    tmp_path: Path, influx1: InfluxDB1Server
) -> None:
    async with modbus_server({1: meter_image()}) as p1, modbus_server({1: meter_image()}) as p2:
        db = f"influxdb: {{api: v1, url: '{influx1.url}', database: {DB}}}"
        site = meter_site(tmp_path, [p1, p2], db)
        gateway = await _run_with_outage(site, influx1.stop, influx1.start)
    polled = gateway.sink.lines_encoded
    assert polled > 50
    assert gateway.writer.stats.points_spooled > 0
    assert influx1.count_points(DB, "meter", field="voltage_v") == polled
    tags = influx1.query('SHOW TAG KEYS FROM "meter"', db=DB)
    keys = {v[0] for v in tags["results"][0]["series"][0]["values"]}
    assert keys == {"building", "device", "floor", "kind", "site", "use"}


async def test_database_refusing_writes_spools_then_replays(
    tmp_path: Path, influx1: InfluxDB1Server
) -> None:
    # The database is up but the database name is missing (404): refused, not lost.
    async with modbus_server({1: meter_image()}) as p1:
        db = f"influxdb: {{api: v1, url: '{influx1.url}', database: later}}"
        gateway = Gateway(load_site(meter_site(tmp_path, [p1], db)), health_interval=3600)
        await gateway.start()
        await asyncio.sleep(1.0)
        assert gateway.writer.stats.database_up is False
        influx1.create_database("later")
        await asyncio.sleep(2.0)
        await gateway.stop()
    assert gateway.writer.stats.points_spooled > 0
    assert influx1.count_points("later", "meter", field="voltage_v") == gateway.sink.lines_encoded


def _start_gateway(site: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "run", str(site), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def _summary(stderr: str) -> dict[str, object]:
    match = re.search(r"gateway stopped: (\{.*\})", stderr)
    assert match, stderr[-2000:]
    result: dict[str, object] = json.loads(match.group(1))
    return result


async def test_sigterm_flushes_and_sigkill_loses_only_memory(
    tmp_path: Path, influx1: InfluxDB1Server
) -> None:
    async with modbus_server({1: meter_image()}) as p1:
        db = f"influxdb: {{api: v1, url: '{influx1.url}', database: {DB}}}"
        site = meter_site(tmp_path, [p1], db, interval=0.05)
        influx1.stop()

        # SIGTERM while the database is down: everything in memory ends up in the spool.
        proc = _start_gateway(site)
        await asyncio.sleep(2.5)
        proc.send_signal(signal.SIGTERM)
        _out, err = await asyncio.to_thread(proc.communicate, timeout=20)
        assert proc.returncode == 0, err[-2000:]
        summary = _summary(err)
        with Spool(tmp_path / "spool", 1 << 30) as spool:
            assert len(spool) == summary["lines_encoded"] > 10

        # SIGKILL while the database is down: what was spooled survives.
        proc = _start_gateway(site)
        await asyncio.sleep(2.5)
        proc.kill()
        await asyncio.to_thread(proc.wait, 20)
        with Spool(tmp_path / "spool", 1 << 30) as spool:
            spooled = len(spool)
            chunk = spool.peek(1 << 30)
        assert spooled > summary["lines_encoded"]  # type: ignore[operator]
        assert chunk is not None
        last_spooled_ts = max(int(line.rsplit(b" ", 1)[1]) for line in chunk.body.splitlines())

        # Restart with the database back: the spool is replayed.
        influx1.start()
        proc = _start_gateway(site, "--duration", "3")
        _out, err = await asyncio.to_thread(proc.communicate, timeout=30)
        assert proc.returncode == 0, err[-2000:]
    with Spool(tmp_path / "spool", 1 << 30) as spool:
        assert len(spool) == 0
    result = influx1.query(
        f'SELECT count("voltage_v") FROM "meter" WHERE time <= {last_spooled_ts}', db=DB
    )
    assert result["results"][0]["series"][0]["values"][0][1] == spooled
    total = influx1.count_points(DB, "meter", field="voltage_v")
    assert total == spooled + _summary(err)["lines_encoded"]  # type: ignore[operator]


def test_a_refused_line_costs_only_itself(tmp_path: Path, influx1: InfluxDB1Server) -> None:
    from gateway.influx_writer import Batch, V1Transport, Writer

    influx1.write("meter,device=a v=1.5 1", DB)  # v is a float field from now on
    lines = [f"meter,device=a v={i}.5 {i + 10}" for i in range(9)]
    lines.insert(4, 'meter,device=a v="text" 99')  # a field type conflict: refused
    with Spool(tmp_path / "spool", 1 << 30) as spool:
        writer = Writer(V1Transport(influx1.url, DB, None, None, None, 5.0), spool)
        writer.start()
        writer.submit(Batch(("\n".join(lines) + "\n").encode(), len(lines)))
        writer.stop()
        assert writer.stats.points_rejected == 1
        assert writer.stats.points_written == 9
        assert len(spool) == 0
    assert influx1.count_points(DB, "meter", field="v") == 10
