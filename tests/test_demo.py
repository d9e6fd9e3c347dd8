"""`guanjia demo` end to end: the virtual building's devices polled into a real InfluxDB."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.servers import InfluxDB1Server

pytestmark = pytest.mark.servers
ROOT = Path(__file__).resolve().parent.parent


def test_demo_writes_the_virtual_building_to_influxdb(tmp_path: Path) -> None:
    with InfluxDB1Server(tmp_path / "influx") as influx:
        influx.create_database("building")
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "gateway.cli",
                "demo",
                "--no-view",
                "--duration",
                "6",
                "--speed",
                "60",
                "--spool",
                str(tmp_path / "spool"),
                "--alarm-store",
                str(tmp_path / "alarms.sqlite"),
                "--influx-v1",
                influx.url,
                "--database",
                "building",
            ],
            capture_output=True,
            text=True,
            check=False,
            cwd=ROOT,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        assert "Traceback" not in result.stderr
        # The simulated devices' clocks show the wall time, as a building's devices do: the
        # gateway trusts their timestamps (none is "behind the gateway's" clock).
        assert "behind the gateway's" not in result.stderr
        shown = influx.query("SHOW MEASUREMENTS", db="building")
        measurements = {v[0] for v in shown["results"][0]["series"][0]["values"]}
        # Modbus devices polled, MQTT devices published through the embedded broker.
        assert {"meter", "pv_inverter", "hvac", "sensor", "camera"} <= measurements
        # The scripted misbehaviour set off alarms, and the AC policy wrote a setpoint back.
        assert {"alarm", "audit"} <= measurements
        kinds = influx.query('SHOW TAG VALUES FROM "alarm" WITH KEY = "kind"', db="building")
        raised = {v[1] for v in kinds["results"][0]["series"][0]["values"]}
        assert {"ac_setpoint_violation", "door_forced_open", "video_loss"} <= raised
        devices = influx.query('SHOW TAG VALUES FROM "hvac" WITH KEY = "zone"', db="building")
        zones = {v[1] for v in devices["results"][0]["series"][0]["values"]}
        # The CoolMasterNet's four units and the library's HVAC gateways (Intesis, Daikin,
        # Hitachi, LG).
        assert zones == {
            *("301", "302", "401", "srv-1"),
            *("501", "502", "503", "6f", "701", "702", "703"),
        }
        power = influx.query(
            'SELECT last("active_power_total_w") FROM "meter" WHERE "device" = \'meter-b1-main\'',
            db="building",
        )
        assert power["results"][0]["series"][0]["values"][0][1] > 0
