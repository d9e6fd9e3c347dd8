"""The AC temperature policy end to end: a unit set to 22 °C while cooling in summer is written
back to 26 °C; the alarm, the audit record and the command all land in a real InfluxDB."""

from __future__ import annotations

import asyncio
import textwrap
from pathlib import Path

import pytest

from gateway.alarm_store import AlarmStore
from gateway.config_load import load_site
from gateway.service import Gateway
from tests.modbus_devices import modbus_server
from tests.servers import InfluxDB1Server

pytestmark = pytest.mark.servers


def _coolmaster(setpoint_c: float, mode: int = 0, on: int = 1) -> dict[str, dict[int, int]]:
    """A CoolMasterNet indoor unit at VA 1 (base 16): mode, fan, setpoint ×10, on/off..."""
    base = 16
    words = [mode, 1, round(setpoint_c * 10) & 0xFFFF, on, 0, 0, 250, 0, 0, 0, 0]
    return {"holding": {base + i: w for i, w in enumerate(words)}}


async def test_summer_setpoint_is_enforced_and_everything_lands(tmp_path: Path) -> None:
    with InfluxDB1Server(tmp_path / "influx") as influx:
        influx.create_database("building")
        async with modbus_server({1: _coolmaster(22.0)}) as port:
            site = tmp_path / "site.yaml"
            site.write_text(
                textwrap.dedent(f"""\
                site: {{name: 市行政中心, id: city-hall, tags: {{building: main}}}}
                influxdb: {{api: v1, url: '{influx.url}', database: building}}
                batching: {{max_age: 0.1s}}
                spool: {{path: spool}}
                alarms: {{store: alarms.sqlite}}
                devices:
                  - id: ac-301
                    profile: coolmaster_indoor
                    modbus: {{transport: tcp, host: 127.0.0.1, port: {port}, base: 16}}
                    poll: 0.2s
                    tags: {{floor: "3", zone: "301"}}
                rules:
                  - id: ac-policy
                    kind: ac_policy
                    enforce: true
                    grace: 0s
                    summer: {{start: "01-01", end: "12-31"}}   # July, whatever today is
                """),
                encoding="utf-8",
            )
            gateway = Gateway(load_site(site), health_interval=3600)
            await gateway.start()
            try:

                async def enforced() -> bool:
                    sample = gateway.latest.get("ac-301")
                    return sample is not None and sample.values.get("setpoint_degc") == 26.0

                for _ in range(100):
                    if await enforced():
                        break
                    await asyncio.sleep(0.1)
                assert await enforced(), gateway.latest.get("ac-301")
                await asyncio.sleep(0.5)  # the clear after the write-back, then a batch
            finally:
                await gateway.stop()

        alarms = influx.query(
            'SELECT "transition", "state", "value", "text_zh", "text_en" FROM "alarm"',
            db="building",
        )["results"][0]["series"][0]["values"]
        transitions = [row[1] for row in alarms]
        assert transitions[:2] == ["raised", "cleared"]
        raised = alarms[0]
        assert raised[3] == pytest.approx(22.0)
        assert "ac-301" in raised[4]  # the Chinese text names the unit and the limit
        assert "26" in raised[4]
        assert "ac-301" in raised[5]
        audit = influx.query(
            'SELECT "origin", "requested", "old", "outcome" FROM "audit"', db="building"
        )["results"][0]["series"][0]
        columns = audit["columns"]
        row = dict(zip(columns, audit["values"][0], strict=True))
        assert row["origin"] == "rule:ac-policy"
        assert row["requested"] == 26.0
        assert row["old"] == pytest.approx(22.0)
        assert row["outcome"] == "accepted"

    store = AlarmStore(tmp_path / "alarms.sqlite")
    try:
        open_alarms = store.open_alarms()
        history = [h.what for h in store.history()]
    finally:
        store.close()
    assert [a.kind for a in open_alarms] == ["ac_setpoint_violation"]  # cleared, not yet acked
    assert open_alarms[0].state == "cleared"
    assert history[:2] == ["raised", "cleared"]
