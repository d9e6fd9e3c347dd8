"""The AC temperature policy end to end: a unit set to 22 °C while cooling in summer is written
back to 26 °C; the alarm, the audit record and the command all land in a real InfluxDB."""

from __future__ import annotations

import asyncio
import textwrap
from datetime import UTC
from pathlib import Path

import pytest

from core.types import Sample
from gateway.alarm_store import AlarmStore
from gateway.config_load import load_site
from gateway.service import Gateway
from gateway.spool import Spool
from tests.modbus_devices import coolmaster_image, modbus_server
from tests.servers import InfluxDB1Server

pytestmark = pytest.mark.servers


async def test_summer_setpoint_is_enforced_and_everything_lands(tmp_path: Path) -> None:
    with InfluxDB1Server(tmp_path / "influx") as influx:
        influx.create_database("building")
        async with modbus_server({1: coolmaster_image(22.0)}) as port:
            site = tmp_path / "site.yaml"
            site.write_text(
                textwrap.dedent(f"""\
                site: {{name: 市行政中心, id: city-hall, tags: {{building: main}}}}
                influxdb: {{api: v1, url: '{influx.url}', database: building}}
                batching: {{max_age: 0.1s}}
                spool: {{path: spool}}
                alarms: {{store: alarms.sqlite}}
                commands: {{allow: ["ac-*:setpoint_degc"]}}
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


async def test_demand_response_over_mqtt_raises_then_restores(tmp_path: Path) -> None:
    import json
    from datetime import datetime, timedelta

    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from tests.servers import MosquittoServer

    with MosquittoServer(tmp_path / "mosquitto") as broker:
        async with modbus_server({1: coolmaster_image(26.0)}) as port:
            site = tmp_path / "site.yaml"
            site.write_text(
                textwrap.dedent(f"""\
                site: {{name: 市行政中心, id: city-hall}}
                spool: {{path: spool}}
                batching: {{max_age: 0.1s}}
                alarms: {{store: alarms.sqlite}}
                mqtt:
                  brokers: [{{name: site, host: 127.0.0.1, port: {broker.port}}}]
                  control: {{demand_response: true}}
                commands: {{allow: ["ac-*:setpoint_degc"]}}
                devices:
                  - id: ac-301
                    profile: coolmaster_indoor
                    modbus: {{transport: tcp, host: 127.0.0.1, port: {port}, base: 16}}
                    poll: 0.2s
                    tags: {{zone: "301"}}
                rules:
                  - {{id: dr, kind: demand_response, offset: 1}}
                """),
                encoding="utf-8",
            )
            gateway = Gateway(load_site(site), health_interval=3600)
            setpoints: list[float] = []
            gateway.bus.subscribe(
                Sample,
                lambda s: (
                    setpoints.append(float(s.values["setpoint_degc"]))
                    if s.device == "ac-301" and "setpoint_degc" in s.values
                    else None
                ),
                name="test",
            )
            await gateway.start()
            try:
                for _ in range(50):
                    if gateway.mqtt is not None and gateway.mqtt.home.connected.is_set():
                        break
                    await asyncio.sleep(0.1)
                now = datetime.now(UTC)
                event = {
                    "id": "grid-1",
                    "start": (now - timedelta(seconds=1)).isoformat(),
                    "end": (now + timedelta(seconds=3)).isoformat(),
                    "offset": 1,
                }
                operator = mqtt.Client(CallbackAPIVersion.VERSION2)
                operator.connect("127.0.0.1", broker.port)
                operator.loop_start()
                operator.publish("guanjia/city-hall/dr/event", json.dumps(event), qos=1)
                for _ in range(100):
                    if 27.0 in setpoints and setpoints[-1] == 26.0:
                        break
                    await asyncio.sleep(0.1)
                operator.loop_stop()
                operator.disconnect()
            finally:
                await gateway.stop()
    assert 27.0 in setpoints, setpoints  # raised by the offset during the event
    assert setpoints[-1] == 26.0  # the unit's own setpoint is back after it
    with Spool(tmp_path / "spool", 1 << 30) as spool:
        chunk = spool.peek(1 << 30)
    assert chunk is not None
    audit = [x for x in chunk.body.decode().splitlines() if x.startswith("audit,")]
    assert len(audit) == 2  # the raise and the restore, both audited
    assert all('origin="rule:dr"' in line for line in audit)


async def test_alarm_topic_shelve_over_mqtt_and_ack_from_the_cli(tmp_path: Path) -> None:
    import json
    import subprocess
    import sys

    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from tests.servers import MosquittoServer

    with MosquittoServer(tmp_path / "mosquitto") as broker:
        async with modbus_server({1: coolmaster_image(22.0)}) as port:
            site = tmp_path / "site.yaml"
            site.write_text(
                textwrap.dedent(f"""\
                site: {{name: 市行政中心, id: city-hall}}
                spool: {{path: spool}}
                alarms: {{store: alarms.sqlite}}
                mqtt:
                  brokers: [{{name: site, host: 127.0.0.1, port: {broker.port}}}]
                  control: {{shelve: true}}
                devices:
                  - id: ac-301
                    profile: coolmaster_indoor
                    modbus: {{transport: tcp, host: 127.0.0.1, port: {port}, base: 16}}
                    poll: 0.2s
                rules:
                  - {{id: ac, kind: ac_policy, grace: 0s, summer: {{start: "01-01", end: "12-31"}}}}
                """),
                encoding="utf-8",
            )
            seen: dict[str, bytes] = {}
            watcher = mqtt.Client(CallbackAPIVersion.VERSION2)
            watcher.on_message = lambda _c, _u, m: seen.__setitem__(m.topic, bytes(m.payload))
            watcher.connect("127.0.0.1", broker.port)
            watcher.subscribe("guanjia/city-hall/alarm/#", qos=1)
            watcher.loop_start()
            gateway = Gateway(load_site(site), health_interval=3600)
            await gateway.start()
            try:
                topic = "guanjia/city-hall/alarm/ac.ac-301"
                for _ in range(100):
                    if topic in seen:
                        break
                    await asyncio.sleep(0.1)
                state = json.loads(seen[topic])
                assert state["kind"] == "ac_setpoint_violation"
                assert state["state"] == "active"
                watcher.publish(
                    f"{topic}/shelve", '{"for": "2h", "reason": "repair booked"}', qos=1
                )
                for _ in range(50):
                    if f"{topic}/shelve/result" in seen:
                        break
                    await asyncio.sleep(0.1)
                assert json.loads(seen[f"{topic}/shelve/result"])["result"] == "shelved"
                result = await asyncio.to_thread(
                    subprocess.run,
                    [
                        sys.executable,
                        "-m",
                        "gateway.cli",
                        "ack",
                        str(site),
                        "ac.ac-301",
                        "--by",
                        "duty-officer",
                    ],
                    capture_output=True,
                    text=True,
                    check=False,
                )
                assert result.returncode == 0, result.stderr
                assert "acked" in result.stdout
                await asyncio.sleep(0.3)
                assert json.loads(seen[topic])["acked_by"] == "duty-officer"
            finally:
                await gateway.stop()
                watcher.loop_stop()
                watcher.disconnect()
