"""The integrator's tools: `guanjia read` on a device, `guanjia replay` of a spool, `schema`."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.modbus_devices import modbus_server
from tests.servers import InfluxDB1Server
from tests.test_influx_e2e import _site
from tests.test_modbus_polling import _image

ROOT = Path(__file__).resolve().parent.parent


def _guanjia(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
        timeout=timeout,
    )


async def test_read_prints_decoded_values_with_units(tmp_path: Path) -> None:
    async with modbus_server({1: _image()}) as port:
        site = _site(tmp_path, [port], "")
        result = await asyncio.to_thread(_guanjia, "read", str(site), "m0")
        as_json = await asyncio.to_thread(_guanjia, "read", str(site), "m0", "--json")
    assert result.returncode == 0, result.stderr
    lines = {line.split()[0]: line.split()[1:] for line in result.stdout.splitlines()[1:]}
    assert lines["voltage_v"][:2] == ["230.5", "V"]
    assert lines["temp_degc"][:2] == ["-5.5", "degC"]
    values = json.loads(as_json.stdout)["values"]
    assert values["setpoint_degc"] == pytest.approx(24.5)


def test_read_of_a_silent_device_says_so(tmp_path: Path) -> None:
    site = _site(tmp_path, [1], "")  # nothing listens on port 1
    result = _guanjia("read", str(site), "m0")
    assert result.returncode == 2
    assert "m0 did not answer" in result.stderr
    assert "Traceback" not in result.stderr


def test_read_unknown_device_suggests(tmp_path: Path) -> None:
    site = _site(tmp_path, [1], "")
    result = _guanjia("read", str(site), "mo")
    assert result.returncode == 1
    assert "no device 'mo'; did you mean 'm0'?" in result.stderr


@pytest.mark.servers
async def test_replay_sends_a_spool_to_the_database(tmp_path: Path) -> None:
    async with modbus_server({1: _image()}) as port:
        site = _site(tmp_path, [port], "")  # no database: everything stays in the spool
        run = await asyncio.to_thread(_guanjia, "run", str(site), "--duration", "2")
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stderr.split("gateway stopped: ")[1].splitlines()[0])
    assert summary["spool_points"] == summary["lines_encoded"] > 0
    with InfluxDB1Server(tmp_path / "influx") as influx:
        influx.create_database("building")
        result = _guanjia("replay", str(site), "--influx-v1", influx.url, "--database", "building")
        assert result.returncode == 0, result.stderr
        stored = influx.count_points("building", "meter", field="voltage_v")
    assert stored == summary["lines_encoded"]
    assert f"replayed {stored} of {stored} points" in result.stdout


def test_schema_is_generated_from_the_models() -> None:
    site = json.loads(_guanjia("schema").stdout)
    device = site["$defs"]["DeviceConfig"]
    assert device["additionalProperties"] is False
    assert all("description" in prop for prop in device["properties"].values())
    profile = json.loads(_guanjia("schema", "--profile").stdout)
    assert "Point" in profile["$defs"]


async def test_read_exits_non_zero_and_says_why_for_each_bad_point(tmp_path: Path) -> None:
    image = _image(power=5e7)  # outside power_w's valid range
    image["holding"][0] = 0xFFFF  # status: "not available"
    del image["input"][100], image["input"][101]  # the device refuses the energy registers
    async with modbus_server({1: image}) as port:
        site = _site(tmp_path, [port], "")
        result = await asyncio.to_thread(_guanjia, "read", str(site), "m0")
        as_json = await asyncio.to_thread(_guanjia, "read", str(site), "m0", "--json")
    assert result.returncode == 3, result.stderr
    assert as_json.returncode == 3
    rows = {line.split()[0]: line.split(None, 2)[1:] for line in result.stdout.splitlines()[1:]}
    assert rows["voltage_v"][0] == "230.5"
    assert rows["status"] == [
        "BAD",
        "not available: the device sent its 'no value' marker (`invalid` in the profile)",
    ]
    assert rows["power_w"] == ["BAD", "out of range: outside -1e+06..1e+06 W"]
    refused = (
        "refused by the device: exception 2 (illegal_data_address) at input registers 100..101"
    )
    assert rows["energy_kwh"] == ["BAD", refused]
    assert "m0: 3 of 8 points are bad:" in result.stderr
    assert f"  energy_kwh: {refused}" in result.stderr.splitlines()
    assert "Traceback" not in result.stderr
    bad = json.loads(as_json.stdout)["bad"]
    assert bad == {"status": "not_available", "power_w": "out_of_range", "energy_kwh": refused}
