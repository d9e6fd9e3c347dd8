"""`guanjia scan` against the virtual building on loopback ports: several units on one RTU over
TCP line (a meter that names itself over FC 43, one that does not, a SunSpec inverter, a dead
one), a DL/T 645 meter behind a serial server, and a Modbus TCP gateway. What it finds, what it
suggests, the snippet it prints, and how many requests each unit got, counted by the servers.
And a local serial line: a pseudo-terminal with the simulator's Modbus RTU meters and a DL/T 645
meter on it, each hearing only frames of its own protocol at its own baud rate."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import re
import shlex
import termios
import tty
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from drivers.modbus.scan import Limits, parse_line, scan_line
from gateway.cli import main
from gateway.config_load import LoadedSite, load_site
from simulator.building import Building, start_building
from simulator.clock import SimClock
from simulator.dlt645_meter import MeterLine, SimulatedMeter, load_profile
from simulator.site import read_site
from tests.servers import free_ports
from tests.sites import demo_on_free_ports
from tests.test_shared_line import crc16

ROOT = Path(__file__).resolve().parent.parent
WEEKDAY_NOON = datetime(2025, 7, 15, 12, 0)
METER_ADDRESS = "202301150042"
IDENTIFIED = "lab_meter_fc43"  # an SDM630 map whose firmware answers Read Device Identification


def _identified_profile(folder: Path) -> None:
    text = (ROOT / "config" / "profiles" / "eastron_sdm630.yaml").read_text(encoding="utf-8")
    text = text.replace("name: eastron_sdm630", f"name: {IDENTIFIED}")
    text += (
        "identity: {vendor_name: Eastron, product_code: SDM630-LAB, revision: '2.1',"
        " model_name: SDM630 lab firmware}\n"
    )
    folder.mkdir()
    (folder / f"{IDENTIFIED}.yaml").write_text(text, encoding="utf-8")


def _site(tmp_path: Path, line: int, meters: int, gateway: int) -> Path:
    _identified_profile(tmp_path / "profiles")
    rtu = f"transport: rtu_over_tcp, host: 127.0.0.1, port: {line}"
    path = tmp_path / "site.yaml"
    path.write_text(
        f"""site: {{name: 扫描, id: scan-test, timezone: Asia/Shanghai}}
profile_dirs: [profiles]
devices:
  - {{id: meter-a, profile: chint_dtsu666, modbus: {{{rtu}, unit: 1}}}}
  - {{id: meter-b, profile: {IDENTIFIED}, modbus: {{{rtu}, unit: 2}}}}
  - {{id: pv-1, profile: sunspec_inverter, modbus: {{{rtu}, unit: 3}}}}
  - {{id: meter-dead, profile: chint_dtsu666, modbus: {{{rtu}, unit: 5}}}}
  - id: meter-645
    profile: dlt645_meter
    dlt645: {{transport: tcp, host: 127.0.0.1, port: {meters}, address: "{METER_ADDRESS}"}}
  - id: gw-meter
    profile: chint_dtsu666
    modbus: {{transport: tcp, host: 127.0.0.1, port: {gateway}, unit: 7}}
""",
        encoding="utf-8",
    )
    return path


def _load_snippet(tmp_path: Path, devices: str) -> LoadedSite:
    """The scan's `devices:` snippet pasted into a site file, loaded as the gateway would."""
    snippet = tmp_path / "found.yaml"
    snippet.write_text(
        "site: {name: 扫描, id: found}\nprofile_dirs: [profiles]\n" + devices, encoding="utf-8"
    )
    return load_site(snippet, resolve_secrets=False)


@contextlib.asynccontextmanager
async def _building(path: Path) -> Any:
    building: Building = await start_building(read_site(path), SimClock(0.0, WEEKDAY_NOON))
    try:
        yield building
    finally:
        await building.stop()


async def _cli(argv: Sequence[str]) -> tuple[int, str]:
    """The real command, in a thread of its own (it runs its own event loop)."""
    out = io.StringIO()

    def run() -> int:
        with contextlib.redirect_stdout(out):
            return main(list(argv))

    code = await asyncio.to_thread(run)
    return code, out.getvalue()


def _server(building: Building, port: int) -> Any:
    return next(s for s in building.servers if s.port == port)


async def test_scan_finds_identifies_and_suggests_within_its_bounds(tmp_path: Path) -> None:
    line, meters, gateway = free_ports(3)
    site = _site(tmp_path, line, meters, gateway)
    async with _building(site) as building:
        building.device("meter-dead").set_dead()
        # A slow unit: a scan that did not wait for each answer would send on meanwhile.
        building.device("meter-a").set_delay(0.05)
        rtu = _server(building, line)
        code, out = await _cli(
            [
                "scan",
                "--modbus",
                f"rtu-over-tcp://127.0.0.1:{line}",
                "--units",
                "1-8",
                "--timeout",
                "0.3",
                "--pause",
                "0.01",
                "--dlt645",
                f"tcp://127.0.0.1:{meters}",
                "--profiles",
                str(tmp_path / "profiles"),
                "--format",
                "json",
            ]
        )
        answered = dict(rtu.requests)
        most = rtu.most_answering
        reads = dict(building.meter("meter-645").reads)
    assert code == 0, out
    report = json.loads(out)
    [scan] = report["modbus"]
    units = {u["unit"]: u for u in scan["units"]}
    assert sorted(units) == [1, 2, 3]  # 5 is dead, 4, 6, 7, 8 nobody
    assert scan["tried"] == list(range(1, 9))
    assert scan["not_tried"] == []

    # The meter that names itself: its identification, and the profile whose identity it is.
    assert units[2]["identification"] == {
        "VendorName": "Eastron",
        "ProductCode": "SDM630-LAB",
        "MajorMinorRevision": "2.1",
        "ModelName": "SDM630 lab firmware",
    }
    top = units[2]["suggestions"][0]
    assert (top["profile"], top["score"]) == (IDENTIFIED, 1.0)
    assert units[2]["probes"] == []  # it said what it is: no probing
    # The inverter: SunSpec models, its common model's strings.
    sunspec = units[3]["sunspec"]
    assert (sunspec["base"], sunspec["models"], sunspec["complete"]) == (40000, [1, 103, 160], True)
    assert sunspec["manufacturer"]
    assert sunspec["model"]
    assert units[3]["suggestions"][0]["profile"] == "sunspec_inverter"
    # The meter that says nothing: refused FC 43, probed, the CHINT map reads best.
    assert units[1]["identification"] == {}
    assert "exception 1" in units[1]["identification_refused"]
    best = units[1]["suggestions"][0]
    assert best["profile"] == "chint_dtsu666", units[1]["suggestions"][:3]
    assert all(s["score"] < best["score"] for s in units[1]["suggestions"][1:])

    # DL/T 645: the broadcast found the meter; one read proved it, one per candidate profile.
    [line645] = report["dlt645"]
    assert [m["address"] for m in line645["meters"]] == [METER_ADDRESS]
    assert line645["meters"][0]["suggestions"][0]["profile"] == "dlt645_meter"
    assert sum(reads.values()) == 1

    # Bounds, counted by the server: one request for each unit nobody answers for (no retry),
    # nothing outside the range, every request of the scan seen there, never two at a time.
    assert all(answered.get(u) == 1 for u in (4, 5, 6, 7, 8)), answered
    assert set(answered) <= set(range(1, 9))
    assert sum(answered.values()) == scan["requests"]
    assert most == 1

    # The snippet is a site file's devices: it loads, with the units and profiles found.
    loaded = _load_snippet(tmp_path, report["devices"])
    found = {
        (d.profile, m.unit if (m := d.connection("modbus")) else None) for d in loaded.site.devices
    }
    assert found == {
        ("chint_dtsu666", 1),
        (IDENTIFIED, 2),
        ("sunspec_inverter", 3),
        ("dlt645_meter", None),
    }


async def test_tcp_gateway_exceptions_mean_nobody_and_concurrency_is_bounded(
    tmp_path: Path,
) -> None:
    """A Modbus TCP gateway answers exception 11 for the ids behind it that are silent: those
    are absent, not present; every id gets exactly one request, a few in flight at most."""
    line, meters, gateway = free_ports(3)
    site = _site(tmp_path, line, meters, gateway)
    async with _building(site) as building:
        server = _server(building, gateway)
        building.device("gw-meter").set_delay(0.05)
        scan = await scan_line(
            parse_line(f"tcp://127.0.0.1:{gateway}"),
            range(1, 21),
            Limits(timeout=0.5, concurrency=3),
        )
        answered = dict(server.requests)
        most = server.most_answering
    assert [u.unit for u in scan.units] == [7]
    assert {u: answered.get(u) for u in range(1, 21) if u != 7} == {
        u: 1 for u in range(1, 21) if u != 7
    }
    assert most <= 3


async def test_the_deadline_stops_the_sweep_and_says_where(tmp_path: Path) -> None:
    line, meters, gateway = free_ports(3)
    site = _site(tmp_path, line, meters, gateway)
    async with _building(site) as building:
        server = _server(building, line)
        for name in ("meter-a", "meter-b", "pv-1", "meter-dead"):
            building.device(name).set_dead()
        scan = await scan_line(
            parse_line(f"rtu-over-tcp://127.0.0.1:{line}"),
            range(1, 248),
            Limits(timeout=0.05, pause=0.0, max_time=0.5),
        )
        answered = dict(server.requests)
    assert scan.units == []
    assert scan.not_tried, "247 silent units at 0.05 s each cannot fit in 0.5 s"
    assert sorted(scan.tried + scan.not_tried) == list(range(1, 248))
    # Each unit tried got its one request; none after the deadline.
    assert answered == dict.fromkeys(scan.tried, 1)
    assert "ran out" in scan.stopped


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--modbus", "udp://127.0.0.1:502"], "--modbus udp://127.0.0.1:502: not a line address"),
        (["--modbus", "tcp://127.0.0.1:502", "--units", "0-300"], "--units 0-300: unit ids go"),
        (["--modbus", "rtu:/dev/ttyUSB0?parity=X"], "--modbus rtu:/dev/ttyUSB0?parity=X: parity"),
        (["--dlt645", "tcp://127.0.0.1"], "--dlt645 tcp://127.0.0.1: give the host and port"),
        ([], "give a line"),
    ],
)
def test_bad_flags_are_one_line_before_anything_connects(
    argv: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["scan", *argv]) == 2
    out = capsys.readouterr().out.strip()
    assert says in out
    assert "\n" not in out


async def test_readme_scan_example_runs_against_the_demo_building(tmp_path: Path) -> None:
    """The commands of README.md's "Finding the devices on a line", with the demo's ports
    moved to free ones."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Finding the devices on a line", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"^\.venv/bin/guanjia (scan .*)$", section, re.M)
    assert commands, "README.md lost its scan example"
    site, moved = demo_on_free_ports(tmp_path)
    async with _building(site):
        for command in commands:
            for old, new in moved.items():
                command = command.replace(f":{old}", f":{new}")
            code, out = await _cli(shlex.split(command))
            assert code == 0, out
            # What the README's sample output says the demo's devices are.
            for profile in re.findall(r"^    profile: (\S+)", section, re.M):
                assert f"profile: {profile}" in out, out


# --- a local serial line ---------------------------------------------------------------------


@dataclass
class SerialLineLog:
    """What crossed the pty: every request by protocol, and the ones that came at the other
    protocol's baud rate (a receiver at another rate sees garbage, and does not answer)."""

    requests: list[str] = field(default_factory=list)  # "modbus:<unit>" or "dlt645"
    wrong_rate: list[str] = field(default_factory=list)
    unknown: list[bytes] = field(default_factory=list)


@contextlib.asynccontextmanager
async def rs485_pty(
    modbus_port: int, meters: list[SimulatedMeter]
) -> AsyncIterator[tuple[str, SerialLineLog]]:
    """A pseudo-terminal whose far end is an RS-485 line: the simulator's Modbus RTU devices
    (their RTU-over-TCP server, fed the line's Modbus frames) at 9600 baud and DL/T 645 meters
    at 2400. Yields the port the scan opens. A pty has no parity: both are 8N1."""
    master, slave = os.openpty()
    tty.setraw(slave)
    os.set_blocking(master, False)
    loop = asyncio.get_running_loop()
    reader, writer = await asyncio.open_connection("127.0.0.1", modbus_port)
    meter_line = MeterLine(meters)
    log = SerialLineLog()

    def rate() -> int:
        speed: int = termios.tcgetattr(master)[4]  # the scan's end's settings
        return speed

    def readable() -> None:
        try:
            data = os.read(master, 4096)
        except (BlockingIOError, OSError):
            return  # EIO while the scan does not hold the port
        if len(data) >= 4 and crc16(data[:-2]) == int.from_bytes(data[-2:], "little"):
            log.requests.append(f"modbus:{data[0]}")
            if rate() == termios.B9600:
                writer.write(data)
            else:
                log.wrong_rate.append(f"modbus:{data[0]}")
        elif data.lstrip(b"\xfe")[:1] == b"\x68":
            log.requests.append("dlt645")
            if rate() == termios.B2400:
                if answer := meter_line.receive(data):
                    os.write(master, answer)
            else:
                log.wrong_rate.append("dlt645")
        else:
            log.unknown.append(data)

    async def answers() -> None:
        while data := await reader.read(4096):
            os.write(master, data)

    loop.add_reader(master, readable)
    back = asyncio.create_task(answers())
    try:
        yield os.ttyname(slave), log
    finally:
        back.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await back
        loop.remove_reader(master)
        writer.close()
        os.close(master)
        os.close(slave)


async def test_scan_of_a_serial_line_with_modbus_and_dlt645_devices(tmp_path: Path) -> None:
    line, meters, gateway = free_ports(3)
    site = _site(tmp_path, line, meters, gateway)
    on_line = SimulatedMeter(METER_ADDRESS, load_profile())
    async with _building(site) as building, rs485_pty(line, [on_line]) as (pty, log):
        building.device("meter-dead").set_dead()
        rtu = _server(building, line)
        code, out = await _cli(
            [
                "scan",
                "--modbus",
                f"rtu:{pty}?baudrate=9600&parity=N",
                "--units",
                "1-6",
                "--timeout",
                "0.3",
                "--pause",
                "0.01",
                "--dlt645",
                f"{pty}?baudrate=2400&parity=N",
                "--profiles",
                str(tmp_path / "profiles"),
                "--format",
                "json",
            ]
        )
        answered = dict(rtu.requests)
        most = rtu.most_answering
    assert code == 0, out
    report = json.loads(out)
    [scan] = report["modbus"]
    assert scan["line"] == f"rtu:{pty}?baudrate=9600&parity=N"
    assert scan["error"] == ""
    units = {u["unit"]: u for u in scan["units"]}
    assert sorted(units) == [1, 2, 3]  # 5 is dead, 4 and 6 nobody
    assert scan["tried"] == list(range(1, 7))
    # The meter that names itself, over FC 43 on the serial line.
    assert units[2]["identification"]["ProductCode"] == "SDM630-LAB"
    top = units[2]["suggestions"][0]
    assert (top["profile"], top["score"]) == (IDENTIFIED, 1.0)
    assert units[3]["sunspec"]["models"] == [1, 103, 160]
    assert units[3]["suggestions"][0]["profile"] == "sunspec_inverter"
    assert "exception 1" in units[1]["identification_refused"]
    assert units[1]["suggestions"][0]["profile"] == "chint_dtsu666", units[1]["suggestions"][:3]

    [line645] = report["dlt645"]
    assert line645["error"] == ""
    assert [m["address"] for m in line645["meters"]] == [METER_ADDRESS]
    assert line645["meters"][0]["suggestions"][0]["profile"] == "dlt645_meter"
    assert sum(on_line.reads.values()) == 1  # one read proved the address

    # Each protocol's frames went out at its own rate, one request at a time, nothing else.
    assert log.wrong_rate == []
    assert log.unknown == []
    assert log.requests.count("dlt645") == 2  # the broadcast, then the read
    assert [log.requests.count(f"modbus:{u}") for u in (4, 5, 6)] == [1, 1, 1]  # no retry
    assert (scan["noise"], line645["garbled"]) == (0, 0)
    assert sum(answered.values()) == scan["requests"]
    assert most == 1

    # The snippet, pasted into a site file, loads and names the line as it was scanned.
    loaded = _load_snippet(tmp_path, report["devices"])
    settings = {
        d.profile: (c.transport, c.port, c.baudrate, c.parity)
        for d in loaded.site.devices
        if (c := d.connection("modbus") or d.connection("dlt645")) is not None
    }
    assert settings == {
        "chint_dtsu666": ("rtu", pty, 9600, "N"),
        IDENTIFIED: ("rtu", pty, 9600, "N"),
        "sunspec_inverter": ("rtu", pty, 9600, "N"),
        "dlt645_meter": ("rtu", pty, 2400, "N"),
    }
