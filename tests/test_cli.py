"""The integrator's tools: `guanjia read` on a device, `guanjia replay` of a spool, `schema`."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml

from gateway.cli import main
from tests.modbus_devices import meter_image, modbus_server
from tests.servers import InfluxDB1Server
from tests.sites import demo_on_free_ports, meter_site

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
    async with modbus_server({1: meter_image()}) as port:
        site = meter_site(tmp_path, [port], "")
        result = await asyncio.to_thread(_guanjia, "read", str(site), "m0")
        as_json = await asyncio.to_thread(_guanjia, "read", str(site), "m0", "--json")
    assert result.returncode == 0, result.stderr
    lines = {line.split()[0]: line.split()[1:] for line in result.stdout.splitlines()[1:]}
    assert lines["voltage_v"][:2] == ["230.5", "V"]
    assert lines["temp_degc"][:2] == ["-5.5", "degC"]
    values = json.loads(as_json.stdout)["values"]
    assert values["setpoint_degc"] == pytest.approx(24.5)


def test_read_of_a_silent_device_says_so(tmp_path: Path) -> None:
    site = meter_site(tmp_path, [1], "")  # nothing listens on port 1
    result = _guanjia("read", str(site), "m0")
    assert result.returncode == 2
    assert "m0 did not answer" in result.stderr
    assert "Traceback" not in result.stderr


def test_read_unknown_device_suggests(tmp_path: Path) -> None:
    site = meter_site(tmp_path, [1], "")
    result = _guanjia("read", str(site), "mo")
    assert result.returncode == 1
    assert "no device 'mo'; did you mean 'm0'?" in result.stderr


@pytest.mark.servers
async def test_replay_sends_a_spool_to_the_database(tmp_path: Path) -> None:
    async with modbus_server({1: meter_image()}) as port:
        site = meter_site(tmp_path, [port], "")  # no database: everything stays in the spool
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
    image = meter_image(power=5e7)  # outside power_w's valid range
    image["holding"][0] = 0xFFFF  # status: "not available"
    del image["input"][100], image["input"][101]  # the device refuses the energy registers
    async with modbus_server({1: image}) as port:
        site = meter_site(tmp_path, [port], "")
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


# --- check, alarms and ack on real files -------------------------------------------------


def readmemeter_site(tmp_path: Path) -> Path:
    """The site file of README.md's "A site file", as the README has it today."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"## A site file\n\n```yaml\n(.*?)```", readme, re.S)
    assert block is not None, "README.md lost its site example"
    path = tmp_path / "site.yaml"
    path.write_text(block.group(1), encoding="utf-8")
    return path


def test_check_accepts_the_readme_site_example(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    site = readmemeter_site(tmp_path)
    assert "transport: rtu," in site.read_text(encoding="utf-8")  # a serial device: no port opened
    monkeypatch.setenv("INFLUX_TOKEN", "secret")
    assert main(["check", str(site)]) == 0
    out = capsys.readouterr()
    assert f"{site}: ok — site city-hall, 2 devices, 2 profiles" in out.out
    assert out.err == ""


@pytest.mark.parametrize("site", sorted(p.name for p in (ROOT / "config").glob("*site*.yaml")))
def test_check_accepts_every_shipped_site_file(
    site: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    text = (ROOT / "config" / site).read_text(encoding="utf-8")
    for var in set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", text)):
        monkeypatch.setenv(var, "a placeholder secret")  # as the operator exports them
    assert main(["check", str(ROOT / "config" / site)]) == 0
    out = capsys.readouterr()
    assert ": ok — site " in out.out
    assert out.err == ""


def test_check_says_when_the_working_calendar_ends(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # What check prints is the site calendar's warning for today (from 60 days before its
    # end); tests/test_calendar.py moves the clock itself.
    from rules.calendar import WorkCalendar

    demo = ROOT / "config" / "demo-site.yaml"
    assert main(["check", str(demo)]) == 0
    today = datetime.now(ZoneInfo("Asia/Shanghai")).date()
    expected = WorkCalendar().coverage_warning(today)
    out = capsys.readouterr().out
    if expected is None:
        assert "working calendar" not in out
    else:
        assert f"{demo}: {expected}" in out.splitlines()


def test_check_reports_a_wrong_year_file_with_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "2027.yaml").write_text(
        "year: 2027\nsource: test fixture, invented days\n"
        "holidays:\n  X: [2027-02-11, 2027-02-05]\n",
        encoding="utf-8",
    )
    site = tmp_path / "site.yaml"
    site.write_text(
        "site: {name: t, id: t}\ndevices: []\ncalendar: {year_files: [2027.yaml, 2028.yaml]}\n",
        encoding="utf-8",
    )
    assert main(["check", str(site)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert any(
        line.startswith(f"{tmp_path / '2027.yaml'}:3: holidays") and "X: give [first, last]" in line
        for line in err
    ), err
    assert any(
        line.startswith(f"{site}:3: calendar.year_files[1]") and "cannot read" in line
        for line in err
    ), err


def alarmmeter_site(tmp_path: Path) -> tuple[Path, list[str]]:
    """A site whose alarm store holds open alarms of every kind a rule raises, each from a
    real rule run (tests/test_alarm_texts.py)."""
    from gateway.alarm_store import AlarmStore
    from tests.test_alarm_texts import SITE, run_every_kind

    run = run_every_kind(tmp_path)
    store = AlarmStore(tmp_path / "alarms.sqlite")
    store.save([], run.book)
    store.close()
    site = tmp_path / "alarms-site.yaml"
    site.write_text(SITE + "alarms: {store: alarms.sqlite}\n", encoding="utf-8")
    return site, [a.id for a in run.book.open_alarms()]


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_alarms_lists_open_alarms_of_every_kind(
    tmp_path: Path, lang: str, capsys: pytest.CaptureFixture[str]
) -> None:
    site, ids = alarmmeter_site(tmp_path)
    assert len(ids) > 25
    assert main(["alarms", str(site), "--lang", lang]) == 0
    out = capsys.readouterr()
    assert out.err == ""
    lines = out.out.splitlines()
    assert sorted(line.split()[0] for line in lines) == sorted(ids)
    for line in lines:
        assert not re.search(r"(?<![\w）)])\?", line), line
        assert "{" not in line, line
    if lang == "zh":
        assert any("设定温度 22°C，低于制冷下限 26°C" in line for line in lines)
    else:
        assert any("held open for 125 s" in line for line in lines)


def test_ack_asks_the_gateway_through_the_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from gateway.alarm_store import AlarmStore

    site, ids = alarmmeter_site(tmp_path)
    # No gateway runs: the request waits in the store, and the CLI says so.
    assert main(["ack", str(site), ids[0], "--by", "zhang", "--wait", "0.3"]) == 2
    assert "the gateway has not answered" in capsys.readouterr().err
    store = AlarmStore(tmp_path / "alarms.sqlite")
    [request] = store.pending_acks()
    store.close()
    assert (request.alarm_id, request.by) == (ids[0], "zhang")


# --- every command on the demo's site file ---------------------------------------------

DEMO = ROOT / "config" / "demo-site.yaml"


async def test_every_command_works_on_the_demo_site(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from simulator.building import start_building
    from simulator.clock import SimClock
    from simulator.site import read_site

    def run(*args: str) -> tuple[int, str, str]:
        code = main(list(args))
        out = capsys.readouterr()
        assert "no MQTT broker" not in out.err, args
        assert "Traceback" not in out.err, args
        return code, out.out, out.err

    assert run("check", str(DEMO))[0] == 0
    assert run("alarms", str(DEMO))[0] == 0
    code, _, err = run("ack", str(DEMO), "ac-policy.ac-301", "--wait", "0.2")
    assert code == 2
    assert "has not answered" in err
    code, out, _ = run(
        "replay", str(DEMO), "--spool", str(tmp_path / "spool"), "--influx-v1", "http://127.0.0.1:9"
    )
    assert code == 0
    assert "replayed 0 of 0 points" in out
    # `read` runs its own event loop: a subprocess, as a user runs it.
    mqtt = await asyncio.to_thread(_guanjia, "read", str(DEMO), "door-archive")
    assert (mqtt.returncode, mqtt.stderr.strip()) == (
        2,
        "door-archive is an MQTT device, which publishes when it chooses: its values are in "
        "`guanjia run SITE --view`",
    )
    # A Modbus device of the demo site against the virtual building; the demo's fixed ports
    # moved to free ones, so a demo running on this machine does not get in the way.
    demo, _moved = demo_on_free_ports(tmp_path)
    building = await start_building(read_site(demo), SimClock())
    try:
        result = await asyncio.to_thread(_guanjia, "read", str(demo), "ac-301", "--json")
    finally:
        await building.stop()
    assert result.returncode == 0, result.stderr
    assert "setpoint_degc" in json.loads(result.stdout)["values"]


def test_run_still_needs_a_broker_for_the_demo_site(capsys: pytest.CaptureFixture[str]) -> None:
    # Only `guanjia demo` brings one; `run` must not drop the MQTT devices silently.
    assert main(["run", str(DEMO), "--duration", "0.1"]) == 1
    err = capsys.readouterr().err
    # One line per MQTT device of the demo, however many it has.
    devices = yaml.safe_load(DEMO.read_text(encoding="utf-8"))["devices"]
    assert err.count("no MQTT broker") == sum("mqtt" in d for d in devices) > 0


def test_the_duty_site_commands_of_its_header(capsys: pytest.CaptureFixture[str]) -> None:
    """`guanjia roster config/duty-site.yaml --at 2026-10-10T09:00`: a 调休 Saturday runs the
    workday shifts of the shipped roster example."""
    assert (
        main(["roster", str(ROOT / "config" / "duty-site.yaml"), "--at", "2026-10-10T09:00"]) == 0
    )
    out = capsys.readouterr().out
    assert "调休 workday" in out
    assert "on duty: 张伟" in out
