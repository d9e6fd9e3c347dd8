"""The Mosquitto-bridge variant of the fleet: config/mosquitto/bridge.conf.example on a real
local Mosquitto bridging guanjia/<site>/# over TLS to a real central one. The centre stops,
messages are published meanwhile, the local broker restarts (its persistence), the centre
returns: everything arrives, in order, and nothing of other topics."""

from __future__ import annotations

import json
import os
import pwd
import re
import shlex
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.servers import (
    MosquittoServer,
    create_mosquitto_password_file,
    generate_tls_files,
)

pytestmark = [
    pytest.mark.servers,
    pytest.mark.skipif(not MosquittoServer.is_available(), reason="mosquitto not installed"),
]

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "config" / "mosquitto" / "bridge.conf.example"
SITE = "city-hall"
STREAM = f"guanjia/{SITE}/transitions"


def bridge_config(example: str, *, local_port: int, centre: str, password: str, ca: Path,
                  data: Path) -> str:  # fmt: skip
    """The example as an integrator edits it: the centre's address, password and CA file,
    where the broker keeps its data; and the ports and user of a test."""
    edits = {
        "listener 1883 127.0.0.1": f"listener {local_port} 127.0.0.1",
        "address centre.example.org:8883": f"address {centre}",
        "remote_password change-me": f"remote_password {password}",
        "bridge_cafile /etc/mosquitto/certs/centre-ca.crt": f"bridge_cafile {ca}",
        "persistence_location /var/lib/mosquitto/": f"persistence_location {data}/",
    }
    for old, new in edits.items():
        assert example.count(old) == 1, old
        example = example.replace(old, new)
    # Started as root, mosquitto would switch to the `mosquitto` user; logs to the test's file.
    user = pwd.getpwuid(os.getuid()).pw_name
    return f"user {user}\nlog_dest stderr\nlog_type all\n" + example


def readme_command() -> list[str]:
    """The command README.md's "The bridge variant" gives for the edited example."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("### The bridge variant", 1)[1].split("\n### ", 1)[0]
    [command] = re.findall(r"^(/usr/sbin/mosquitto -c \S+)$", section, re.M)
    return shlex.split(command)


class LocalBroker(MosquittoServer):
    """Mosquitto on the bridge example (edited as an integrator would), started with the
    README's command in its data directory."""

    def __init__(self, data_dir: Path, config: str) -> None:
        super().__init__(data_dir)
        self.text = config
        self.argv = readme_command()
        self.config_path = self.data_dir / self.argv[-1]

    def _command(self) -> list[str]:
        return self.argv

    def _prepare(self) -> None:
        self.persistence_dir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(self.text)


class Reader:
    """The centre's archiver: a persistent session on the centre, QoS 1."""

    def __init__(self, port: int, password: str) -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self.lock = threading.Lock()
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, "archiver", clean_session=False)
        self.c.username_pw_set("archiver", password)
        self.c.reconnect_delay_set(0.1, 0.5)
        self.c.on_connect = lambda c, *_: c.subscribe("guanjia/#", qos=1)
        self.c.on_message = self._message
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()

    def _message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.messages.append((msg.topic, bytes(msg.payload), bool(msg.retain)))

    def seqs(self) -> list[int]:
        with self.lock:
            return [json.loads(p)["seq"] for t, p, _ in self.messages if t == STREAM]

    def wait(self, what: str, condition: Any, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < deadline, f"not within {timeout:g} s: {what}"
            time.sleep(0.05)

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def publish(port: int, first: int, last: int) -> None:
    """The gateway's part: QoS 1 transitions, acknowledged by the local broker."""
    c = mqtt.Client(CallbackAPIVersion.VERSION2, f"publisher-{first}")
    c.connect("127.0.0.1", port)
    c.loop_start()
    try:
        for seq in range(first, last + 1):
            c.publish(STREAM, json.dumps({"seq": seq}), qos=1).wait_for_publish(5)
    finally:
        c.disconnect()
        c.loop_stop()


def test_the_bridge_example_catches_up_in_order_after_the_centre_was_away(
    tmp_path: Path,
) -> None:
    tls = generate_tls_files(tmp_path / "tls")
    passwords = create_mosquitto_password_file(
        tmp_path / "centre-passwd", {SITE: "bridge-secret", "archiver": "reader-secret"}
    )
    centre = MosquittoServer(tmp_path / "centre", password_file=passwords, tls=tls).start()
    local = LocalBroker(tmp_path / "local", "")
    local.text = bridge_config(
        EXAMPLE.read_text(encoding="utf-8"),
        local_port=local.port,
        centre=f"127.0.0.1:{centre.tls_port}",
        password="bridge-secret",
        ca=tls.cafile,
        data=local.persistence_dir,
    )
    reader = None
    try:
        local.start()
        reader = Reader(centre.port, "reader-secret")
        r = reader
        # The bridge says it is up, here and at the centre.
        r.wait("the bridge's notification", lambda: any(
            t == f"guanjia/{SITE}/bridge" and p == b"1" for t, p, _ in r.messages))  # fmt: skip
        publish(local.port, 1, 50)
        one = mqtt.Client(CallbackAPIVersion.VERSION2, "elsewhere")
        one.connect("127.0.0.1", local.port)
        one.publish("guanjia/another-site/status", "online", qos=1, retain=True)
        one.publish("other/topic", "x", qos=1)
        one.disconnect()
        r.wait("the first 50 at the centre", lambda: len(set(r.seqs())) == 50)

        centre.stop()  # the link to the centre is down
        publish(local.port, 51, 150)
        local.stop()  # and the edge box's broker restarts meanwhile (SIGTERM: it saves)
        local.start()
        publish(local.port, 151, 200)
        centre.start()  # same ports and persistence: the link is back
        r.wait("the catch-up", lambda: len(set(r.seqs())) == 200, timeout=60)
    finally:
        if reader is not None:
            reader.close()
        local.stop()
        centre.stop()
    seqs = reader.seqs()
    unique = list(dict.fromkeys(seqs))  # a repeat after a reconnect is dropped by its seq
    assert unique == list(range(1, 201)), seqs
    topics = {t for t, _, _ in reader.messages}
    assert all(t.startswith(f"guanjia/{SITE}/") for t in topics), topics
