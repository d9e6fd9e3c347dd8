"""The gateway's control topics and its broker connection, end to end with a real Mosquitto:
commands queued while the gateway was down, control topics off until enabled, every write
through the allowlist (rules too), bounded payloads and replies, the shipped broker ACL, an
unreachable or refusing broker, and health for devices that never say whether they are up.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import textwrap
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import paho.mqtt.client as mqtt
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from core.types import Sample
from gateway.config_load import load_site
from gateway.service import Gateway
from gateway.spool import Spool
from tests.modbus_devices import coolmaster_image, meter_image, modbus_server
from tests.mqtt_helpers import Client, broker_yaml, mqtt_site, samples_of, until
from tests.servers import MosquittoServer, create_mosquitto_password_file, free_port

pytestmark = pytest.mark.servers
ROOT = Path(__file__).resolve().parent.parent
BASE = "guanjia/t1/ac-1"
SET = f"{BASE}/setpoint_degc/set"
RESULT = f"{SET}/result"


def publish5(
    port: int,
    topic: str,
    payload: str | bytes,
    *,
    expiry: int | None = None,
    response_topic: str | None = None,
    correlation: bytes | None = None,
) -> None:
    """One QoS 1 message from an MQTT 5 client, with the properties given."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv5)
    client.connect("127.0.0.1", port)
    client.loop_start()
    props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    if expiry is not None:
        props.MessageExpiryInterval = expiry
    if response_topic is not None:
        props.ResponseTopic = response_topic
    if correlation is not None:
        props.CorrelationData = correlation
    client.publish(topic, payload, qos=1, properties=props).wait_for_publish(5)
    client.disconnect()
    client.loop_stop()


def _audit(tmp_path: Path) -> list[str]:
    with Spool(tmp_path / "spool", 1 << 30) as spool:
        chunk = spool.peek(1 << 30)
    body = chunk.body.decode() if chunk is not None else ""
    return [line for line in body.splitlines() if line.startswith("audit,")]


def _replied(client: Client) -> set[Any]:
    """The values of the commands answered so far."""
    with client.arrived:
        return {json.loads(p)["value"] for t, p, _ in client.messages if t == RESULT}


def _connected(gateway: Gateway) -> bool:
    return gateway.mqtt is not None and gateway.mqtt.home.connected.is_set()


async def _session(gateway: Gateway) -> None:
    """Run the gateway until it is connected and subscribed, then stop it: the broker keeps
    its session and queues what is published for it."""
    await gateway.start()
    try:
        await until(lambda: _connected(gateway))
        assert gateway.mqtt is not None
        await until(lambda: not gateway.mqtt._backlog)  # type: ignore[union-attr]
    finally:
        await gateway.stop()


# ---------------------------------------------------------------------------------------------
# Item: commands carry an age limit


async def test_commands_queued_while_the_gateway_was_down_run_only_when_fresh(
    tmp_path: Path, broker: MosquittoServer
) -> None:
    async with modbus_server({1: meter_image()}) as port:
        site = load_site(
            mqtt_site(
                tmp_path,
                f"brokers: [{{name: site, host: 127.0.0.1, port: {broker.port}, protocol: '5'}}]",
                modbus_port=port,
                allow="['ac-*:setpoint_degc']",
                control="{commands: true}",
            )
        )
        await _session(Gateway(site, health_interval=3600))
        operator = Client(broker.port)
        operator.subscribe(f"{BASE}/#")
        # Published while the gateway is down, in this order.
        operator.publish(SET, '{"value": 20, "by": "night-shift"}')  # no ts: age unknown
        operator.publish(SET, json.dumps({"value": 21, "ts": time.time() - 120}))  # stale
        operator.publish(SET, json.dumps({"value": 27, "ts": time.time() + 3600}))  # bad clock
        publish5(broker.port, SET, '{"value": 22}', expiry=1)  # expires in the queue
        publish5(broker.port, SET, '{"value": 23, "by": "planner"}', expiry=600)  # its own limit
        operator.publish(SET, json.dumps({"value": 25, "ts": time.time()}))  # fresh
        # Mosquitto counts expiry in whole seconds: past 2 s the 1 s expiry has surely run out.
        await asyncio.sleep(2.5)
        gateway = Gateway(site, health_interval=3600)
        await gateway.start()
        try:
            await until(lambda: _connected(gateway))
            await until(lambda: not gateway.mqtt._backlog)  # type: ignore[union-attr]
            operator.publish(SET, '{"value": 24, "by": "day-shift"}')  # live: no ts needed
            await until(lambda: _replied(operator) >= {20, 21, 27, 23, 25, 24}, timeout=10)
            health = gateway.health()
        finally:
            await gateway.stop()
            operator.close()
    replies = [json.loads(p) for p in operator.wait_for(RESULT)]
    by_value = {r["value"]: r for r in replies}
    # The broker drops a command whose expiry ran out; had it delivered it, it must not run.
    assert by_value.get(22, {"ok": False})["ok"] is False
    assert by_value[20]["ok"] is False
    assert "offline" in by_value[20]["reason"]
    assert by_value[21]["ok"] is False
    assert "stale" in by_value[21]["reason"]
    assert by_value[27]["ok"] is False
    assert "future" in by_value[27]["reason"]
    assert by_value[23]["ok"] is True  # the sender's MQTT 5 expiry is its age limit
    assert by_value[25]["ok"] is True
    assert by_value[24]["ok"] is True
    stale = 3 + (22 in by_value)
    assert health["commands_stale"] == stale
    audit = _audit(tmp_path)
    refused = [line for line in audit if "outcome=refused" in line]
    assert len(refused) == stale
    assert any('origin="mqtt:night-shift"' in line and "offline" in line for line in refused)
    assert any("requested=21.0" in line and "stale" in line for line in refused)
    assert sum("outcome=accepted" in line for line in audit) == 3


# ---------------------------------------------------------------------------------------------
# Item: control topics off until enabled; every write passes the allowlist


async def test_control_topics_are_off_until_the_site_enables_them(
    tmp_path: Path, broker: MosquittoServer
) -> None:
    async with modbus_server({1: meter_image()}) as port:
        site = load_site(
            mqtt_site(tmp_path, broker_yaml(broker), modbus_port=port, allow="['ac-*:*']")
        )
        gateway = Gateway(site, health_interval=3600)
        assert gateway.mqtt is not None
        subscribed = gateway.mqtt.home.filters
        assert not [f for f in subscribed if f.startswith("guanjia/")], subscribed
        seen = samples_of(gateway)
        operator = Client(broker.port)
        operator.subscribe("guanjia/t1/#")
        await gateway.start()
        try:
            await until(lambda: _connected(gateway))
            operator.publish(SET, "26")
            operator.publish("guanjia/t1/alarm/x.ac-1/ack", "mallory")
            operator.publish("guanjia/t1/alarm/x.ac-1/shelve", '{"for": "2h", "reason": "x"}')
            operator.publish("guanjia/t1/dr/event", '{"cancel": "grid-1"}')
            # Messages from one publisher arrive in order: once this one is in, those were too.
            operator.publish("sensors/r0", '{"temperature": 20.0, "seq": 1}')
            await until(lambda: any(s.values.get("seq") == 1 for s in seen))
        finally:
            await gateway.stop()
            operator.close()
    answered = [t for t, _, _ in operator.messages if t.endswith("/result")]
    assert answered == []
    assert _audit(tmp_path) == []
    assert gateway.mqtt.health()["commands"] == 0


async def test_turning_a_control_topic_off_drops_it_from_the_persistent_session(
    tmp_path: Path, broker: MosquittoServer
) -> None:
    on = mqtt_site(tmp_path, broker_yaml(broker), control="{commands: true, ack: true}")
    await _session(Gateway(load_site(on), health_interval=3600))  # the broker keeps these
    off = load_site(mqtt_site(tmp_path, broker_yaml(broker)))  # same client id, control off
    gateway = Gateway(off, health_interval=3600)
    seen = samples_of(gateway)
    operator = Client(broker.port)
    operator.subscribe("guanjia/t1/status")
    await gateway.start()
    try:
        # The gateway unsubscribes before it announces itself, on one connection: once its
        # `online` is out, the broker has dropped the old subscriptions.
        await until(lambda: b"online" in operator.wait_for("guanjia/t1/status", 0))
        operator.publish(SET, "26")
        operator.publish("guanjia/t1/alarm/x/ack", "mallory")
        operator.publish("sensors/r0", '{"temperature": 20.0, "seq": 7}')
        await until(lambda: any(s.values.get("seq") == 7 for s in seen))
        health = gateway.health()
    finally:
        await gateway.stop()
        operator.close()
    assert health["mqtt_unclaimed"] == 0  # the broker no longer sends them at all
    assert health["commands"] == 0


async def test_a_demand_response_event_cannot_write_past_the_allowlist(
    tmp_path: Path, broker: MosquittoServer
) -> None:
    """The incident: a demand-response event wrote 28.0 °C with `commands.allow: []`."""
    async with modbus_server({1: coolmaster_image(26.0)}) as port:
        path = tmp_path / "site.yaml"
        path.write_text(
            textwrap.dedent(f"""\
            site: {{name: 市行政中心, id: city-hall}}
            spool: {{path: spool}}
            alarms: {{store: alarms.sqlite}}
            mqtt:
              brokers: [{{name: site, host: 127.0.0.1, port: {broker.port}}}]
              control: {{demand_response: true}}
            commands: {{allow: []}}
            devices:
              - id: ac-301
                profile: coolmaster_indoor
                modbus: {{transport: tcp, host: 127.0.0.1, port: {port}, base: 16}}
                poll: 0.2s
            rules:
              - {{id: dr, kind: demand_response, offset: 2}}
            """),
            encoding="utf-8",
        )
        gateway = Gateway(load_site(path), health_interval=3600)
        setpoints: list[float] = []
        gateway.bus.subscribe(
            Sample,
            lambda s: (
                setpoints.append(float(s.values["setpoint_degc"]))
                if "setpoint_degc" in s.values
                else None
            ),
            name="test",
        )
        await gateway.start()
        try:
            await until(lambda: _connected(gateway) and bool(setpoints))
            now = datetime.now(UTC)
            event = {
                "id": "grid-1",
                "start": (now - timedelta(seconds=1)).isoformat(),
                "end": (now + timedelta(minutes=5)).isoformat(),
            }
            operator = Client(broker.port)
            operator.subscribe("guanjia/city-hall/dr/event/result")
            operator.publish("guanjia/city-hall/dr/event", json.dumps(event))
            result = json.loads((await operator.wait("guanjia/city-hall/dr/event/result"))[0])
            assert result["result"] == "accepted"
            await until(lambda: gateway.commands.records >= 1, timeout=10)
            polled = len(setpoints)
            await until(lambda: len(setpoints) > polled + 2)  # polls after the refusal
            operator.close()
        finally:
            await gateway.stop()
    assert max(setpoints) == 26.0, setpoints
    audit = _audit(tmp_path)
    assert audit, "the refused rule command must be audited"
    assert all("outcome=refused" in line for line in audit)
    assert all('origin="rule:dr"' in line for line in audit)
    assert "commands.allow" in audit[0]


# ---------------------------------------------------------------------------------------------
# Item: bounded payloads and replies; replies only under the gateway's prefix


async def test_huge_commands_are_refused_and_replies_stay_under_the_prefix(
    tmp_path: Path, broker: MosquittoServer
) -> None:
    async with modbus_server({1: meter_image()}) as port:
        site = load_site(
            mqtt_site(
                tmp_path,
                f"brokers: [{{name: site, host: 127.0.0.1, port: {broker.port}, protocol: '5'}}]",
                modbus_port=port,
                allow="['ac-*:setpoint_degc']",
                control="{commands: true}",
            )
        )
        gateway = Gateway(site, health_interval=3600)
        watcher = Client(broker.port)
        watcher.subscribe("#")
        await gateway.start()
        try:
            await until(lambda: _connected(gateway))
            await until(lambda: not gateway.mqtt._backlog)  # type: ignore[union-attr]
            huge = json.dumps({"value": "x" * 1_000_000, "by": "y" * 100_000})
            watcher.publish(SET, huge)
            long_text = json.dumps({"value": "z" * 3000, "by": "b" * 500})  # under 4 KiB
            watcher.publish(SET, long_text)
            # A reply asked for on a Tasmota command topic goes to .../set/result instead.
            publish5(broker.port, SET, "26", response_topic="cmnd/plug/POWER", correlation=b"1")
            # One under guanjia/<site>/reply/ is honoured, with its correlation data.
            reply_to = "guanjia/t1/reply/console-7"
            publish5(broker.port, SET, "25", response_topic=reply_to, correlation=b"req-42")
            await watcher.wait(reply_to)
            results = await watcher.wait(RESULT, count=3)
        finally:
            await gateway.stop()
            watcher.close()
    big, long, redirected = (json.loads(p) for p in results)
    assert big["ok"] is False
    assert "max_payload" in big["reason"]
    assert len(results[0]) < 1024
    assert long["ok"] is False  # a string is no setpoint, refused by the profile's check
    assert len(results[1]) < 1024
    assert redirected["value"] == 26
    assert [t for t, _, _ in watcher.messages if t.startswith("cmnd/")] == []
    honoured = json.loads(watcher.wait_for(reply_to)[0])
    assert honoured["value"] == 25
    assert honoured["ok"] is True
    audit = _audit(tmp_path)
    assert len(audit) == 4
    assert max(len(line) for line in audit) < 1024


# ---------------------------------------------------------------------------------------------
# Item: the shipped broker refuses anonymous clients and gives control topics to a named user


class AclMosquitto(MosquittoServer):
    """Mosquitto with a password file and the shipped ACL file."""

    def __init__(self, data_dir: Path, *, password_file: Path, acl_file: Path) -> None:
        super().__init__(data_dir, password_file=password_file)
        self.acl_file = acl_file

    def _prepare(self) -> None:
        super()._prepare()
        with self.config_path.open("a") as conf:
            conf.write(f"acl_file {self.acl_file}\n")


def _connect(port: int, user: str | None, password: str = "") -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2)
    if user is not None:
        client.username_pw_set(user, password)
    refused: list[Any] = []
    done = threading.Event()

    def on_connect(*args: Any) -> None:
        if args[3].is_failure:
            refused.append(args[3])
        done.set()

    client.on_connect = on_connect
    client.connect("127.0.0.1", port)
    client.loop_start()
    assert done.wait(5)
    if refused:
        client.loop_stop()
        raise PermissionError(str(refused[0]))
    return client


def test_the_shipped_broker_config_refuses_anonymous_clients() -> None:
    conf = (ROOT / "config/mosquitto/mosquitto.conf").read_text()
    options = dict(
        line.split(None, 1) for line in conf.splitlines() if line.strip() and line[0] != "#"
    )
    assert options["allow_anonymous"].strip() == "false"
    assert options["password_file"].strip() == "/mosquitto/data/passwd"
    assert options["acl_file"].strip() == "/mosquitto/config/acl"
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    mosquitto = compose["services"]["mosquitto"]
    mounts = " ".join(mosquitto["volumes"])
    assert "config/mosquitto/acl:/mosquitto/config/acl:ro" in mounts
    assert "passwords.sh" in " ".join(mosquitto["entrypoint"])
    for user in ("GATEWAY", "OPERATOR", "DEVICES"):
        assert f"MQTT_{user}_PASSWORD" in mosquitto["environment"]


async def test_the_shipped_acl_gives_control_topics_to_the_operator_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    passwords = {"gateway": "gw-secret", "operator": "op-secret", "devices": "dev-secret"}
    env = {f"MQTT_{k.upper()}_PASSWORD": v for k, v in passwords.items()}
    passwd = tmp_path / "passwd"
    result = subprocess.run(
        ["sh", str(ROOT / "config/mosquitto/passwords.sh"), str(passwd)],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert passwd.stat().st_mode & 0o077 == 0, "the password file must be private"
    assert "gw-secret" not in passwd.read_text()  # hashed
    with AclMosquitto(
        tmp_path / "m", password_file=passwd, acl_file=ROOT / "config/mosquitto/acl"
    ) as server:
        with pytest.raises(PermissionError):
            _connect(server.port, None)  # anonymous
        with pytest.raises(PermissionError):
            _connect(server.port, "operator", "wrong")
        async with modbus_server({1: meter_image()}) as port:
            monkeypatch.setenv("GJ_MQTT_PASSWORD", passwords["gateway"])
            broker = (
                f"brokers: [{{name: site, host: 127.0.0.1, port: {server.port}, "
                "username: guanjia, password: '${GJ_MQTT_PASSWORD}'}]"
            )
            site = mqtt_site(
                tmp_path,
                broker,
                modbus_port=port,
                allow="['ac-*:setpoint_degc']",
                control="{commands: true}",
            )
            gateway = Gateway(load_site(site), health_interval=3600)
            seen = samples_of(gateway)
            await gateway.start()
            try:
                await until(lambda: _connected(gateway))
                await until(lambda: not gateway.mqtt._backlog)  # type: ignore[union-attr]
                replies: list[bytes] = []
                subscribed = threading.Event()
                operator = _connect(server.port, "operator", passwords["operator"])
                operator.on_message = lambda _c, _u, m: replies.append(bytes(m.payload))
                operator.on_subscribe = lambda *_: subscribed.set()
                operator.subscribe(RESULT, qos=1)
                assert subscribed.wait(5)
                devices = _connect(server.port, "devices", passwords["devices"])
                # A device bridge may not command the gateway (the broker drops it, acked);
                # the operator may. The broker routes in order: the operator's command
                # reaches the gateway after whatever the device got through.
                devices.publish(SET, "29", qos=1).wait_for_publish(5)
                devices.publish("sensors/r0", '{"temperature": 1.0, "seq": 1}', qos=1)
                devices.publish(f"{SET}/result", '{"value": 30}', qos=1).wait_for_publish(5)
                operator.publish(SET, '{"value": 25, "by": "duty"}', qos=1).wait_for_publish(5)
                await until(lambda: len(replies) >= 1)
                operator.disconnect()
                devices.disconnect()
                operator.loop_stop()
                devices.loop_stop()
            finally:
                await gateway.stop()
    assert [json.loads(r)["value"] for r in replies] == [25]  # the device's 29 never arrived
    assert not [s for s in seen if s.values.get("seq") == 1]
    assert [line for line in _audit(tmp_path) if "requested=29" in line] == []


async def test_a_broker_that_withholds_the_sync_marker_is_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """An ACL without write on <prefix>/<site>/sync: the gateway cannot tell the backlog from
    live commands, says so, and runs no command whose age it cannot know."""
    caplog.set_level(logging.INFO, logger="guanjia.mqtt")
    monkeypatch.setattr("gateway.mqtt_service.SYNC_PATIENCE", 0.3)
    passwd = create_mosquitto_password_file(tmp_path / "passwd", {"gw": "pw", "op": "pw"})
    acl = tmp_path / "acl"
    acl.write_text(
        "user gw\ntopic read #\ntopic write guanjia/t1/+/+/set/result\n\n"
        "user op\ntopic readwrite #\n"
    )
    with AclMosquitto(tmp_path / "m", password_file=passwd, acl_file=acl) as server:
        monkeypatch.setenv("GJ_MQTT_PASSWORD", "pw")
        broker = (
            f"brokers: [{{name: site, host: 127.0.0.1, port: {server.port}, username: gw, "
            "password: '${GJ_MQTT_PASSWORD}'}]"
        )
        async with modbus_server({1: meter_image()}) as port:
            site = mqtt_site(
                tmp_path,
                broker,
                modbus_port=port,
                allow="['ac-*:setpoint_degc']",
                control="{commands: true}",
            )
            gateway = Gateway(load_site(site), health_interval=3600)
            await gateway.start()
            try:
                await until(lambda: "has not returned" in caplog.text)
                operator = _connect(server.port, "op", "pw")
                replies: list[bytes] = []
                subscribed = threading.Event()
                operator.on_message = lambda _c, _u, m: replies.append(bytes(m.payload))
                operator.on_subscribe = lambda *_: subscribed.set()
                operator.subscribe(RESULT, qos=1)
                assert subscribed.wait(5)
                operator.publish(SET, "25", qos=1).wait_for_publish(5)
                await until(lambda: bool(replies))
                operator.disconnect()
                operator.loop_stop()
            finally:
                await gateway.stop()
    reply = json.loads(replies[0])
    assert reply["ok"] is False
    assert "offline" in reply["reason"]
    warning = next(r.getMessage() for r in caplog.records if "has not returned" in r.getMessage())
    assert "readwrite on guanjia/t1/#" in warning


def test_the_password_script_needs_every_password(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MQTT_")}
    env["MQTT_GATEWAY_PASSWORD"] = "x"
    result = subprocess.run(
        ["sh", str(ROOT / "config/mosquitto/passwords.sh"), str(tmp_path / "passwd")],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0
    assert "MQTT_OPERATOR_PASSWORD" in result.stderr


# ---------------------------------------------------------------------------------------------
# Item: a broker that cannot be reached, or refuses, is logged once and counted


async def test_an_unreachable_broker_is_logged_once_and_counted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="guanjia.mqtt")
    port = free_port()  # nothing listens here
    broker = f"brokers: [{{name: site, host: 127.0.0.1, port: {port}}}]"
    gateway = Gateway(load_site(mqtt_site(tmp_path, broker)), health_interval=3600)
    await gateway.start()
    try:
        await until(lambda: gateway.health()["mqtt_connect_failures"] >= 3, timeout=20)
        health = gateway.health()
        assert gateway.mqtt is not None
        status = gateway.brokers.status()
    finally:
        await gateway.stop()
    assert health["mqtt_connected"] == 0
    assert health["mqtt_connected_site"] == 0
    assert health["mqtt_brokers"] == 1
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    reach = [w for w in warnings if "cannot reach the broker" in w]
    assert len(reach) == 1, warnings
    assert f"127.0.0.1:{port}" in reach[0]
    assert "refused" in reach[0].lower()
    assert "check the host and port" in reach[0]
    assert status[0]["connected"] is False
    assert status[0]["connect_failures"] >= 3
    assert status[0]["last_error"]


async def test_a_refused_login_is_logged_once_with_the_reason_code(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.INFO, logger="guanjia.mqtt")
    passwords = create_mosquitto_password_file(tmp_path / "passwd", {"gw": "right"})
    with MosquittoServer(tmp_path / "m", password_file=passwords) as server:
        monkeypatch.setenv("GJ_MQTT_PASSWORD", "wrong")
        broker = (
            f"brokers: [{{name: site, host: 127.0.0.1, port: {server.port}, username: gw, "
            "password: '${GJ_MQTT_PASSWORD}'}]"
        )
        gateway = Gateway(load_site(mqtt_site(tmp_path, broker)), health_interval=3600)
        await gateway.start()
        try:
            await until(lambda: gateway.health()["mqtt_connect_failures"] >= 2, timeout=20)
            health = gateway.health()
        finally:
            await gateway.stop()
    assert health["mqtt_connected_site"] == 0
    refusals = [
        r.getMessage() for r in caplog.records if "refused the connection" in r.getMessage()
    ]
    assert len(refusals) == 1, refusals
    assert "reason code 13" in refusals[0]  # 134 bad user name or password / 135 not authorized
    assert "username, password" in refusals[0]


# ---------------------------------------------------------------------------------------------
# Item: health for devices without availability; unmatched messages counted


HIK_EVENT = {
    "ipAddress": "10.0.8.31",
    "dateTime": "",
    "eventType": "AccessControllerEvent",
    "eventState": "active",
    "AccessControllerEvent": {"majorEventType": 5, "subEventType": 27, "doorNo": 1},
}


def _hik(serial: int, when: datetime, sub: int = 27) -> str:
    doc = json.loads(json.dumps(HIK_EVENT))
    doc["dateTime"] = when.isoformat(timespec="seconds")
    doc["AccessControllerEvent"].update(serialNo=serial, subEventType=sub)
    return json.dumps(doc)


def _doorsmqtt_site(tmp_path: Path, broker: MosquittoServer) -> Path:
    path = tmp_path / "site.yaml"
    path.write_text(
        textwrap.dedent(f"""\
        site: {{name: 测试楼, id: t1, timezone: Asia/Shanghai}}
        spool: {{path: spool}}
        mqtt: {{brokers: [{{name: site, host: 127.0.0.1, port: {broker.port}}}]}}
        devices:
          - {{id: door-1, profile: hikvision_access_controller, mqtt: {{vars: {{device: d1}}}}}}
          - {{id: plug-1, profile: tasmota_energy_plug, mqtt: {{vars: {{topic: p1}}}}}}
        """),
        encoding="utf-8",
    )
    return path


async def test_devices_without_availability_are_not_offline_and_unmatched_is_counted(
    tmp_path: Path, broker: MosquittoServer
) -> None:
    gateway = Gateway(load_site(_doorsmqtt_site(tmp_path, broker)), health_interval=3600)
    seen = samples_of(gateway)
    device = Client(broker.port)
    await gateway.start()
    try:
        await until(lambda: _connected(gateway))
        before = gateway.health()
        now = datetime.now(UTC)
        device.publish("hikvision/d1/event", _hik(1, now, sub=999))  # a code no mapping has
        device.publish("tele/p1/LWT", "Online")
        await until(lambda: any(s.device == "plug-1" for s in seen))
        after = gateway.health()
    finally:
        await gateway.stop()
        device.close()
    # The access controller has no availability topic and no heartbeat: never offline.
    assert before["devices"] == 2
    assert before["devices_online"] == 1  # the controller; the plug has not spoken yet
    assert before["mqtt_devices_unmonitored"] == 1
    assert after["devices_online"] == 2
    assert gateway.mqtt is not None
    assert gateway.drivers["mqtt"].ingest["site"].state["door-1"].online is not False  # not OFFLINE
    assert after["mqtt_unmatched"] == 1
    assert not [s for s in seen if s.device == "door-1"]


# ---------------------------------------------------------------------------------------------
# Item: redeliveries stored once, at the device's own time


async def test_a_redelivered_event_is_one_sample_at_the_device_time(
    tmp_path: Path, broker: MosquittoServer
) -> None:
    await _session(Gateway(load_site(_doorsmqtt_site(tmp_path, broker)), health_interval=3600))
    # The broker keeps the session: the first copy waits there.
    device = Client(broker.port)
    when = (datetime.now(UTC) - timedelta(seconds=30)).astimezone()
    device.publish("hikvision/d1/event", _hik(41, when))  # queued while the gateway is down
    gateway = Gateway(load_site(_doorsmqtt_site(tmp_path, broker)), health_interval=3600)
    seen = samples_of(gateway)
    await gateway.start()
    try:
        await until(lambda: any(s.values.get("serial_no") == 41 for s in seen))
        device.publish("hikvision/d1/event", _hik(41, when))  # the same event again
        later = when + timedelta(seconds=5)
        device.publish("hikvision/d1/event", _hik(42, later))
        # Tasmota's Time is local time at the site (Asia/Shanghai), without an offset.
        plug_time = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=10)
        local = plug_time.astimezone(ZoneInfo("Asia/Shanghai")).replace(tzinfo=None)
        device.publish(
            "tele/p1/STATE", json.dumps({"Time": local.isoformat(), "POWER": "ON", "UptimeSec": 5})
        )
        await until(lambda: any(s.device == "plug-1" for s in seen))
        health = gateway.health()
    finally:
        await gateway.stop()
        device.close()
    events = [s for s in seen if s.device == "door-1"]
    assert [s.values["serial_no"] for s in events] == [41, 42]
    assert events[0].ts == int(when.timestamp()) * 1_000_000_000
    assert events[1].ts == int(later.timestamp()) * 1_000_000_000
    assert events[0].values["door_forced_open"] is True
    assert float(events[0].values["arrival_lag_s"]) >= 30
    assert health["mqtt_duplicates"] == 1
    plug = next(s for s in seen if s.device == "plug-1")
    assert plug.ts == int(plug_time.timestamp()) * 1_000_000_000
    assert plug.values["relay_on"] is True
    # Stored once: the spool has one line per event.
    with Spool(tmp_path / "spool", 1 << 30) as spool:
        chunk = spool.peek(1 << 30)
    assert chunk is not None
    lines = [x for x in chunk.body.decode().splitlines() if "serial_no=41" in x]
    assert len(lines) == 1
