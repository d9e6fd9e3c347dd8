"""Alarm messages through the alarm store's outbox (gateway/mqtt_outbox.py): every transition
reaches the broker, in order, across an outage of the broker and a restart of the gateway
during it; a real Mosquitto, a simulated meter whose voltage the test sets."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import yaml

from gateway.alarm_store import AlarmStore
from gateway.config_load import load_site
from gateway.service import Gateway
from simulator.clock import SimClock
from simulator.models.base import StaticModel
from simulator.server import SimulatedDevice, serve
from tests.modbus_devices import PROFILE
from tests.mqtt_helpers import Client
from tests.servers import MosquittoServer
from tests.waiting import until

pytestmark = pytest.mark.servers

ALARM = "volts.m0"
TOPIC = f"guanjia/t1/alarm/{ALARM}"
TRANSITIONS = "guanjia/t1/transitions"


def write_site(tmp_path: Path, meter_port: int, broker_port: int) -> Path:
    profiles = tmp_path / "profiles"
    profiles.mkdir(exist_ok=True)
    (profiles / "test_meter.yaml").write_text(
        yaml.safe_dump(PROFILE.model_dump(mode="json", exclude_defaults=True))
    )
    path = tmp_path / "site.yaml"
    path.write_text(
        textwrap.dedent(f"""\
        site: {{name: 测试楼, id: t1}}
        profile_dirs: [profiles]
        spool: {{path: spool}}
        alarms: {{store: alarms.sqlite}}
        mqtt:
          brokers: [{{name: centre, host: 127.0.0.1, port: {broker_port}, keepalive: 5}}]
        rules:
          - {{id: volts, kind: threshold, point: voltage_v, above: 200, grade: red}}
        devices:
          - id: m0
            profile: test_meter
            modbus: {{transport: tcp, host: 127.0.0.1, port: {meter_port}, timeout: 1s}}
            poll: 0.1s
        """),
        encoding="utf-8",
    )
    return path


def events(watcher: Client) -> list[dict[str, object]]:
    return [json.loads(p) for t, p, _ in watcher.messages if t == TRANSITIONS]


async def test_every_transition_reaches_the_broker_in_order_across_an_outage_and_a_restart(
    tmp_path: Path,
) -> None:
    model = StaticModel(PROFILE, SimClock(), fixed={"voltage_v": 230.0})
    meter = await serve([SimulatedDevice(PROFILE, model, name="m0")])
    broker = MosquittoServer(tmp_path / "mosquitto").start()
    # The centre's archiver: a persistent session, so what the gateway sends while it is
    # reconnecting itself waits for it in the broker.
    watcher = Client(broker.port, client_id="archiver", clean=False)
    watcher.c.reconnect_delay_set(0.1, 0.5)
    watcher.subscribe(TRANSITIONS)
    watcher.subscribe(f"{TOPIC}")
    site = load_site(write_site(tmp_path, meter.port, broker.port))
    gateway = Gateway(site, health_interval=3600)
    alarms = gateway.alarms
    assert alarms is not None
    try:
        await gateway.start()
        await until(lambda: len(events(watcher)) == 1, "the raise on the broker")

        broker.stop()  # the link to the centre is down from here
        model.fixed["voltage_v"] = 100.0  # cleared
        await until(lambda: alarms.transitions == 2, "cleared")
        assert alarms.ack(ALARM, "duty") == "acked"  # acked, and so closed
        await until(lambda: alarms.transitions == 4, "closed")
        model.fixed["voltage_v"] = 240.0  # raised again
        await until(lambda: alarms.transitions == 5, "raised again")
        health = gateway.health()
        assert health["mqtt_outbox_stored"] == 8  # two messages each for four transitions
        # The gateway restarts while the centre is still away.
        await gateway.stop()
        gateway = Gateway(site, health_interval=3600)
        alarms = gateway.alarms
        assert alarms is not None
        await gateway.start()
        model.fixed["voltage_v"] = 100.0
        await until(lambda: alarms.transitions == 1, "cleared after the restart")
        assert gateway.health()["mqtt_outbox_stored"] == 10

        broker.start()  # same port, same persistence: the link is back
        await until(lambda: len(events(watcher)) >= 6, "the catch-up", timeout=30)
        await until(lambda: gateway.health()["mqtt_outbox_stored"] == 0, "deleted once acked")
    finally:
        await gateway.stop()
        watcher.close()
        broker.stop()
        await meter.stop()

    received = events(watcher)
    seqs = [e["seq"] for e in received]
    unique = list(dict.fromkeys(seqs))  # a repeat (a PUBACK lost with the link) is dropped
    assert unique == sorted(unique) == list(range(1, 7)), seqs
    first = {e["seq"]: e for e in reversed(received)}
    whats = [first[s]["what"] for s in unique]
    assert whats == ["raised", "cleared", "acked", "closed", "raised", "cleared"]
    assert all(e["site"] == "t1" and e["alarm"] == ALARM for e in received)
    # What the broker got is the store's history, seq for seq.
    with AlarmStore(tmp_path / "alarms.sqlite") as store:
        history = store.history(ALARM)
    assert [(h.seq, h.what) for h in history] == [(s, first[s]["what"]) for s in unique]
    # The retained state followed in order, the close (an empty message) included; the
    # reconnect may republish the open alarm's latest state on the way.
    states = [json.loads(p)["state"] if p else "" for t, p, _ in watcher.messages if t == TOPIC]
    expected = iter(["active", "cleared", "", "active", "cleared"])
    want = next(expected)
    for state in states:
        if state == want:
            want = next(expected, "done")
    assert want == "done", states
    assert states[-1] == "cleared"
