"""What the MQTT benchmarks share: a real Mosquitto, the load, the site file, a process's CPU.

The benchmarks run the gateway as it ships: a site file generated here with 50 Zigbee2MQTT
temperature sensors on the shipped profile `z2m_temperature_humidity`, one broker, and an
InfluxDB v2 URL pointing at bench.common.FakeInflux. Nothing here imports `tests`: the broker is
started from this module, on a free loopback port, with its state in a temporary directory.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Self

from bench.common import HOST

DEVICES = 50
TOPIC_PREFIX = "zigbee2mqtt"
PROFILE = "z2m_temperature_humidity"  # config/profiles/, as shipped
SITE = "bench"
BROKER = "site"
_CLOCK_TICK = os.sysconf("SC_CLK_TCK")


def device_ids() -> list[str]:
    return [f"sensor-{i:03d}" for i in range(DEVICES)]


def write_site(
    path: Path,
    *,
    broker_port: int,
    influx_url: str,
    client_id: str,
    spool: Path,
) -> Path:
    """A site file (JSON is YAML) for the 50 sensors; the database is the FakeInflux at
    `influx_url` (a v2 write API without a token)."""
    site = {
        "site": {"name": "bench", "id": SITE, "timezone": "Asia/Shanghai"},
        "influxdb": {"api": "v2", "url": influx_url, "org": "bench", "bucket": "bench"},
        "spool": {"path": str(spool), "fsync": True},
        "mqtt": {
            "brokers": [{"name": BROKER, "host": HOST, "port": broker_port, "client_id": client_id}]
        },
        "devices": [
            {
                "id": device,
                "profile": PROFILE,
                "mqtt": {"vars": {"id": device}},
                "tags": {"building": "main", "floor": str(1 + i // 10), "zone": f"z{i}"},
            }
            for i, device in enumerate(device_ids())
        ],
    }
    path.write_text(json.dumps(site, indent=1), encoding="utf-8")
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of a running process, all its threads (/proc/<pid>/stat,
    clock-tick resolution: 10 ms), read from outside, the same way for every contender."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICK  # utime, stime


class Mosquitto:
    """A real Mosquitto 2.x on a free loopback port, persistence off, its log in `directory`.

    `unbounded`: `max_queued_messages 0`, so a subscriber that falls behind finds its messages
    waiting instead of dropped (Mosquitto's default drops past 1,000).
    """

    def __init__(self, directory: Path, *, unbounded: bool = False) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        config = directory / "mosquitto.conf"
        lines = [
            # As root, Mosquitto would switch to the user `mosquitto`: stay who we are.
            f"user {pwd.getpwuid(os.getuid()).pw_name}",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            f"listener {self.port} {HOST}",
            "allow_anonymous true",
            "persistence false",
        ]
        if unbounded:
            lines.append("max_queued_messages 0")
        config.write_text("\n".join(lines) + "\n", encoding="utf-8")
        self.log_path = directory / "mosquitto.log"
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                ["mosquitto", "-c", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 10
        while True:
            if self._proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {self.log_path.read_text()[-2000:]}")
            with contextlib.suppress(OSError), socket.create_connection((HOST, self.port), 0.5):
                break
            if time.monotonic() > deadline:
                self.close()
                raise RuntimeError(f"mosquitto not listening on {self.port} after 10 s")
            time.sleep(0.05)

    @property
    def pid(self) -> int:
        return self._proc.pid

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
