"""A rule's Record (a patrol round) reaches the database through the bus and the one sink:
sent again as the round goes on, the last write is the round as known."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from gateway.config_load import load_site
from gateway.lineproto import record_line
from gateway.service import Gateway
from rules.model import Record
from tests.modbus_devices import meter_image, modbus_server
from tests.servers import InfluxDB1Server
from tests.sites import meter_site

DB = "building"


def test_a_record_is_one_line_with_the_site_tag_and_its_own_types() -> None:
    record = Record("patrol", {"route": "night 1"}, {"result": "late", "late": 1, "at": 2.5}, 7)
    assert record_line("t1", record) == (
        'patrol,route=night\\ 1,site=t1 result="late",late=1i,at=2.5 7'
    )
    assert record_line("t1", Record("patrol", {}, {}, 7)) is None


@pytest.mark.asyncio
async def test_records_land_in_influxdb_and_the_last_one_wins(
    tmp_path: Path, influx1: InfluxDB1Server
) -> None:
    async with modbus_server({1: meter_image()}) as port:
        db = f"influxdb: {{api: v1, url: '{influx1.url}', database: {DB}}}"
        gateway = Gateway(load_site(meter_site(tmp_path, [port], db)))
        await gateway.start()
        ts = time.time_ns() // 1_000_000_000 * 1_000_000_000
        tags = {"rule": "patrol", "route": "night"}
        gateway.bus.publish(Record("patrol", tags, {"state": "open", "missed": 0}, ts))
        gateway.bus.publish(Record("patrol", tags, {"state": "closed", "missed": 1}, ts))
        await gateway.stop()
    rows = influx1.query('SELECT "state", "missed", "site" FROM "patrol"', db=DB)
    values = rows["results"][0]["series"][0]["values"]
    assert [row[1:] for row in values] == [["closed", 1, "test-site"]]
