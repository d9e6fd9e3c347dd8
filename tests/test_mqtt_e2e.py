"""MQTT end to end with a real Mosquitto: ingest, availability, retained status and state,
persistent sessions across gateway and broker restarts, commands with their audit trail,
password and TLS."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from gateway.config_load import load_site
from gateway.service import Gateway
from gateway.spool import Spool
from tests.modbus_devices import meter_image, modbus_server
from tests.mqtt_helpers import Client, broker_yaml, mqtt_site, samples_of, until
from tests.servers import MosquittoServer, create_mosquitto_password_file, generate_tls_files

pytestmark = pytest.mark.servers


async def test_ingest_status_state_and_availability(
    tmp_path: Path, broker: MosquittoServer
) -> None:
    gateway = Gateway(load_site(mqtt_site(tmp_path, broker_yaml(broker))), health_interval=3600)
    seen = samples_of(gateway)
    watcher = Client(broker.port)
    watcher.subscribe("guanjia/t1/#")
    device = Client(broker.port)
    await gateway.start()
    try:
        await until(lambda: gateway.mqtt is not None and gateway.mqtt.home.connected.is_set())
        assert await watcher.wait("guanjia/t1/status") == [b"online"]
        device.publish("sensors/r0/availability", '{"state": "online"}')
        for i in range(5):
            device.publish("sensors/r0", json.dumps({"temperature": 20.5 + i, "seq": i}))
        device.publish("sensors/r0", "not json")
        device.publish("sensors/r0", '{"temperature": "warm", "seq": 9}')
        device.publish("elsewhere/nobody", "{}")
        await until(lambda: len([s for s in seen if s.device == "room-0"]) >= 7)
        state = json.loads((await watcher.wait("guanjia/t1/room-0/state", count=1))[-1])
        assert state["available"] is True
    finally:
        await gateway.stop()
    readings = [s for s in seen if s.device == "room-0" and "seq" in s.values]
    assert [s.values["seq"] for s in readings] == [0, 1, 2, 3, 4, 9]
    assert readings[-1].bad == {"temperature_degc": "type"}
    assert readings[0].values["temperature_degc"] == 20.5
    stats = gateway.drivers["mqtt"].ingest["site"].stats if gateway.mqtt else None
    assert stats is not None
    assert stats.rejected == 1  # the non-JSON payload
    assert (await watcher.wait("guanjia/t1/status", count=2))[-1] == b"offline"
    # What was ingested is in the spool (no database here), as line protocol.
    with Spool(tmp_path / "spool", 1 << 30) as spool:
        chunk = spool.peek(1 << 30)
    assert chunk is not None
    assert chunk.body.count(b"sensor,device=room-0,kind=sensor,site=t1,zone=300") >= 6
    watcher.close()
    device.close()


async def test_backlog_published_while_the_gateway_is_down_is_delivered(
    tmp_path: Path, broker: MosquittoServer
) -> None:
    site = load_site(mqtt_site(tmp_path, broker_yaml(broker)))
    device = Client(broker.port)
    gateway = Gateway(site, health_interval=3600)
    await gateway.start()
    await until(lambda: gateway.mqtt is not None and gateway.mqtt.home.connected.is_set())
    await gateway.stop()  # the broker keeps the session: subscriptions and a queue
    for i in range(50):
        device.publish("sensors/r0", json.dumps({"temperature": 21.0, "seq": i}))
    gateway = Gateway(site, health_interval=3600)
    seen = samples_of(gateway)
    await gateway.start()
    try:
        await until(lambda: len({s.values.get("seq") for s in seen}) >= 50, timeout=10)
    finally:
        await gateway.stop()
    assert {s.values["seq"] for s in seen if "seq" in s.values} == set(range(50))
    device.close()


async def test_broker_restart_while_qos1_messages_flow_loses_nothing(
    tmp_path: Path, broker: MosquittoServer
) -> None:
    gateway = Gateway(load_site(mqtt_site(tmp_path, broker_yaml(broker))), health_interval=3600)
    seen = samples_of(gateway)
    await gateway.start()
    await until(lambda: gateway.mqtt is not None and gateway.mqtt.home.connected.is_set())
    # The device keeps a session too, so its unacknowledged messages are resent.
    device = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="sensor-r0", clean_session=False)
    device.reconnect_delay_set(1, 1)
    device.connect("127.0.0.1", broker.port)
    device.loop_start()
    total = 300
    try:
        for i in range(total):
            device.publish("sensors/r0", json.dumps({"temperature": 22.0, "seq": i}), qos=1)
            if i == 100:
                await asyncio.to_thread(broker.stop)
                await asyncio.sleep(0.5)
                await asyncio.to_thread(broker.start)
            await asyncio.sleep(0.005)
        await until(lambda: len({s.values.get("seq") for s in seen}) >= total, timeout=30)
    finally:
        device.disconnect()
        device.loop_stop()
        await gateway.stop()
    received = {s.values["seq"] for s in seen if "seq" in s.values}
    assert received == set(range(total))
    assert gateway.mqtt is not None
    assert gateway.mqtt.home.connects >= 2  # it really reconnected


async def test_commands_accepted_refused_and_audited(
    tmp_path: Path, broker: MosquittoServer
) -> None:
    async with modbus_server({1: meter_image()}) as port:
        site = mqtt_site(
            tmp_path,
            broker_yaml(broker),
            modbus_port=port,
            allow="['ac-*:setpoint_degc', 'ac-*:temp_degc']",
            control="{commands: true}",
        )
        gateway = Gateway(load_site(site), health_interval=3600)
        operator = Client(broker.port)
        operator.subscribe("guanjia/t1/ac-1/#")
        await gateway.start()
        try:
            await until(lambda: gateway.mqtt is not None and gateway.mqtt.home.connected.is_set())
            base = "guanjia/t1/ac-1"
            operator.publish(f"{base}/setpoint_degc/set", '{"value": 26, "by": "alice"}')
            ok = json.loads((await operator.wait(f"{base}/setpoint_degc/set/result"))[-1])
            operator.publish(f"{base}/setpoint_degc/set", "12")
            operator.publish(f"{base}/temp_degc/set", "20")
            operator.publish(f"{base}/status/set", "1")
            operator.publish(f"{base}/setpoint_degc/set", '{"value": [1]}')
            replies = [
                json.loads(p)
                for p in await operator.wait(f"{base}/setpoint_degc/set/result", count=3)
            ]
            others = [
                json.loads(p)
                for t in ("temp_degc", "status")
                for p in await operator.wait(f"{base}/{t}/set/result")
            ]
            await until(
                lambda: (
                    gateway.latest.get("ac-1") is not None
                    and gateway.latest["ac-1"].values.get("setpoint_degc") == 26.0
                )
            )
        finally:
            await gateway.stop()
            operator.close()
    assert ok["ok"] is True
    assert ok["old"] == pytest.approx(24.5)
    assert ok["by"] == "mqtt:alice"
    assert replies[1]["ok"] is False
    assert "outside" in replies[1]["reason"]
    assert replies[2]["ok"] is False
    assert "bad command payload" in replies[2]["reason"]
    assert others[0]["ok"] is False
    assert "not writable" in others[0]["reason"]
    assert others[1]["ok"] is False
    assert "allowlist" in others[1]["reason"]
    with Spool(tmp_path / "spool", 1 << 30) as spool:
        chunk = spool.peek(1 << 30)
    assert chunk is not None
    audit = [line for line in chunk.body.decode().splitlines() if line.startswith("audit,")]
    assert len(audit) == 5
    assert sum("outcome=accepted" in line for line in audit) == 1
    assert sum("outcome=refused" in line for line in audit) == 4
    accepted = next(line for line in audit if "outcome=accepted" in line)
    assert 'origin="mqtt:alice"' in accepted
    assert "requested=26.0" in accepted
    assert "old=24.5" in accepted


async def test_password_and_tls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    passwords = create_mosquitto_password_file(tmp_path / "passwd", {"gw": "s3cret"})
    tls = generate_tls_files(tmp_path / "tls")
    with MosquittoServer(tmp_path / "m", password_file=passwords, tls=tls) as server:
        monkeypatch.setenv("GJ_MQTT_PASSWORD", "s3cret")
        broker = (
            f"brokers: [{{name: site, host: 127.0.0.1, port: {server.tls_port}, username: gw, "
            f"password: '${{GJ_MQTT_PASSWORD}}', tls: {{ca_file: '{tls.cafile}'}}}}]"
        )
        gateway = Gateway(load_site(mqtt_site(tmp_path, broker)), health_interval=3600)
        seen = samples_of(gateway)
        await gateway.start()
        try:
            await until(lambda: gateway.mqtt is not None and gateway.mqtt.home.connected.is_set())
            device = mqtt.Client(CallbackAPIVersion.VERSION2)
            device.username_pw_set("gw", "s3cret")
            device.tls_set(ca_certs=str(tls.cafile))
            device.connect("127.0.0.1", server.tls_port)
            device.loop_start()
            device.publish("sensors/r0", '{"temperature": 19.5, "seq": 1}', qos=1).wait_for_publish(
                5
            )
            await until(lambda: any(s.values.get("seq") == 1 for s in seen))
            device.disconnect()
            device.loop_stop()
        finally:
            await gateway.stop()

        monkeypatch.setenv("GJ_MQTT_PASSWORD", "wrong")
        refused = Gateway(load_site(mqtt_site(tmp_path, broker)), health_interval=3600)
        await refused.start()
        await asyncio.sleep(1.5)
        assert refused.mqtt is not None
        assert not refused.mqtt.home.connected.is_set()
        assert refused.health()["mqtt_connected"] == 0
        await refused.stop()


async def test_a_retained_event_is_not_raised_again_but_retained_state_is_taken(
    tmp_path: Path, broker: MosquittoServer
) -> None:
    """The dahua2mqtt bridge with `retain` on: the broker replays its last tripwire Start and
    its last VideoLoss Stop to the gateway's subscription. The Stop is the camera's state; the
    Start is an old event, dropped and counted; a live Start afterwards is taken."""
    site = tmp_path / "site.yaml"
    site.write_text(
        "site: {name: 测试楼, id: t1}\n"
        "spool: {path: spool}\n"
        "batching: {max_age: 0.1s}\n"
        f"mqtt:\n  {broker_yaml(broker)}\n"
        "devices:\n"
        "  - {id: cam-garage, profile: dahua_mqtt_camera, mqtt: {vars: {topic: cameras/1}}}\n",
        encoding="utf-8",
    )
    bridge = Client(broker.port)
    bridge.publish("cameras/1/CrossLineDetection", "Start", retain=True)
    bridge.publish("cameras/1/VideoLoss", "Stop", retain=True)
    gateway = Gateway(load_site(site), health_interval=3600)
    seen = samples_of(gateway)
    await gateway.start()
    try:
        await until(lambda: any("video_loss" in s.values for s in seen))
        await until(lambda: gateway.drivers["mqtt"].health()["mqtt_retained_events_dropped"] == 1)
        bridge.publish("cameras/1/CrossLineDetection", "Start")
        await until(lambda: any("intrusion" in s.values for s in seen))
    finally:
        await gateway.stop()
    assert [s.values["video_loss"] for s in seen if "video_loss" in s.values] == [False]
    assert [s.values["intrusion"] for s in seen if "intrusion" in s.values] == [True]
    assert gateway.drivers["mqtt"].health()["mqtt_retained_events_dropped"] == 1
    bridge.close()
