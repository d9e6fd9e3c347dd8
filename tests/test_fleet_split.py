"""A site too large for one box, split across gateways by line (`site.gateway`): `guanjia
check` on several site files of one site refuses whatever two gateways would both own, one
line each; two real gateways of one site (`guanjia run`, each its own process) keep their own
MQTT sessions, status topics and last wills, tag their lines with their gateway, and each acts
only on its own devices' commands."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from gateway.cli import main
from simulator.building import start_building
from simulator.clock import SimClock
from simulator.site import read_site
from tests.conftest import DB
from tests.mqtt_helpers import Client
from tests.servers import InfluxDB1Server, MosquittoServer, free_ports
from tests.waiting import until

ROOT = Path(__file__).resolve().parent.parent


def _site(directory: Path, name: str, gateway: str | None, body: str) -> Path:
    head = f"site: {{name: 大楼, id: big{f', gateway: {gateway}' if gateway else ''}}}\n"
    path = directory / name
    path.write_text(head + textwrap.dedent(body), encoding="utf-8")
    return path


A = """\
devices:
  - {id: meter-a1, profile: chint_dtsu666, modbus: {transport: rtu_over_tcp, host: 10.0.8.9, port: 8899, unit: 1}}
  - {id: meter-a2, profile: chint_dtsu666, modbus: {transport: rtu_over_tcp, host: 10.0.8.9, port: 8899, unit: 2}}
  - {id: ac-1, profile: coolmaster_indoor, modbus: {transport: tcp, host: 10.0.8.20, unit: 1, base: 16}}
  - {id: m645, profile: dlt645_meter, dlt645: {transport: tcp, host: 10.0.8.30, port: 8899, address: "000000000001"}}
  - {id: rs485, profile: chint_dtsu666, modbus: {transport: rtu, port: /dev/ttyUSB0, unit: 3}}
rules:
  - {id: hot, kind: threshold, point: active_power_total_w, above: 100000}
"""  # noqa: E501


def test_check_refuses_what_two_gateways_of_one_site_would_both_own(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = _site(tmp_path, "gw-a.yaml", "gw-a", A)
    b = _site(
        tmp_path,
        "gw-b.yaml",
        "gw-b",
        """\
        devices:
          - {id: meter-a2, profile: chint_dtsu666, modbus: {transport: tcp, host: 10.0.8.21}}
          - {id: meter-b1, profile: chint_dtsu666, modbus: {transport: rtu_over_tcp, host: 10.0.8.9, port: 8899, unit: 5}}
          - {id: ac-2, profile: coolmaster_indoor, modbus: {transport: tcp, host: 10.0.8.20, unit: 1, base: 32}}
          - {id: m645-b, profile: dlt645_meter, dlt645: {transport: tcp, host: 10.0.8.30, port: 8899, address: "000000000002"}}
          - {id: rs485-b, profile: chint_dtsu666, modbus: {transport: rtu, port: /dev/ttyUSB0, unit: 4}}
        rules:
          - {id: hot, kind: threshold, point: active_power_total_w, above: 200000}
        """,  # noqa: E501
    )
    assert main(["check", str(a), str(b)]) == 1
    out = capsys.readouterr()
    assert "Traceback" not in out.err
    assert out.err.splitlines() == [
        f"{b}:3: devices[0].id: device 'meter-a2' is also gateway gw-a's ({a}:4: "
        "devices[1].id); a device belongs to one gateway: remove it from one file",
        f"{b}:4: devices[1].modbus: serial server 10.0.8.9:8899 is also gateway gw-a's ({a}:3: "
        "devices[0].modbus); a line has one owner: give all its devices to one gateway (or, "
        "on two boxes, name each local port by its /dev/serial/by-id/ path)",
        f"{b}:5: devices[2].modbus: Modbus TCP device 10.0.8.20:502 unit 1 is also gateway "
        f"gw-a's ({a}:5: devices[2].modbus); a Modbus TCP device belongs to one gateway: "
        "remove it from one file",
        f"{b}:6: devices[3].dlt645: serial server 10.0.8.30:8899 is also gateway gw-a's "
        f"({a}:6: devices[3].dlt645); a line has one owner: give all its devices to one "
        "gateway (or, on two boxes, name each local port by its /dev/serial/by-id/ path)",
        f"{b}:7: devices[4].modbus: serial port /dev/ttyUSB0 is also gateway gw-a's ({a}:7: "
        "devices[4].modbus); a line has one owner: give all its devices to one gateway (or, "
        "on two boxes, name each local port by its /dev/serial/by-id/ path)",
        f"{b}:9: rules[0].id: rule 'hot' is also gateway gw-a's ({a}:9: rules[0].id); a rule "
        "runs on one gateway: rename it or remove it from one file",
    ]
    # Each file on its own is fine; so are two files that own nothing twice.
    assert main(["check", str(a)]) == 0
    c = _site(
        tmp_path,
        "gw-c.yaml",
        "gw-c",
        """\
        devices:
          - {id: meter-c1, profile: chint_dtsu666, modbus: {transport: rtu_over_tcp, host: 10.0.8.10, port: 8899, unit: 1}}
          - {id: ac-3, profile: coolmaster_indoor, modbus: {transport: tcp, host: 10.0.8.20, unit: 2, base: 16}}
        """,  # noqa: E501
    )
    capsys.readouterr()
    assert main(["check", str(a), str(c)]) == 0
    assert (
        "no device, serial line, Modbus TCP device or rule owned twice" in capsys.readouterr().out
    )


def test_check_wants_a_gateway_id_in_each_file_of_a_split_site(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = _site(tmp_path, "a.yaml", None, "devices: []\n")
    b = _site(tmp_path, "b.yaml", "gw-b", "devices: []\n")
    c = _site(tmp_path, "c.yaml", "gw-b", "devices: []\n")
    assert main(["check", str(a), str(b), str(c)]) == 1
    assert capsys.readouterr().err.splitlines() == [
        f"{a}: site.gateway: 3 files are of site 'big': give each gateway its own id (e.g. "
        "`gateway: gw-a`), or each would take the other's MQTT session and status topic",
        f"{c}: site.gateway: 'gw-b' is also {b}'s; give each gateway of the site its own id",
    ]
    tagged = _site(
        tmp_path,
        "d.yaml",
        "gw-d",
        "devices:\n  - {id: m, profile: chint_dtsu666, modbus: {transport: tcp, host: 10.0.8.9},"
        " tags: {gateway: x}}\n",
    )
    assert main(["check", str(tagged)]) == 1
    assert capsys.readouterr().err.strip() == (
        f"{tagged}:3: devices[0].tags.gateway: tag 'gateway' is set by the gateway when the "
        "site names one (site.gateway); rename it"
    )


def _running_site(directory: Path, gateway: str, devices: str, broker: int, influx: str) -> Path:
    return _site(
        directory,
        f"site-{gateway}.yaml",
        gateway,
        f"""\
        influxdb: {{api: v1, url: "{influx}", database: {DB}}}
        batching: {{max_age: 0.2s}}
        spool: {{path: spool-{gateway}}}
        alarms: {{store: alarms-{gateway}.sqlite}}
        mqtt:
          brokers: [{{name: centre, host: 127.0.0.1, port: {broker}, keepalive: 5}}]
          state_interval: 0.5s
          control: {{commands: true}}
        commands: {{allow: ["*:setpoint_degc"]}}
        rules:
          - {{id: volts-{gateway}, kind: threshold, point: voltage_l1_v, above: 1000}}
        devices:
        {textwrap.indent(devices, "  ")}
        """,
    )


def _guanjia_run(site: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "run", str(site)],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=site.parent,
        )


@pytest.mark.servers
async def test_two_gateways_of_one_site_keep_their_own_session_status_and_lines(
    tmp_path: Path, broker: MosquittoServer, influx1: InfluxDB1Server
) -> None:
    pa, pb = free_ports(2)
    sites = {
        "gw-a": _running_site(
            tmp_path,
            "gw-a",
            f"- {{id: meter-a, profile: chint_dtsu666, poll: 0.5s, modbus: {{transport: "
            f"rtu_over_tcp, host: 127.0.0.1, port: {pa}, unit: 1}}}}\n",
            broker.port,
            influx1.url,
        ),
        "gw-b": _running_site(
            tmp_path,
            "gw-b",
            f"- {{id: ac-b, profile: coolmaster_indoor, poll: 0.5s, modbus: {{transport: tcp, "
            f"host: 127.0.0.1, port: {pb}, unit: 1, base: 16}}}}\n",
            broker.port,
            influx1.url,
        ),
    }
    assert main(["check", *map(str, sites.values())]) == 0
    buildings = [await start_building(read_site(s), SimClock()) for s in sites.values()]
    watcher = Client(broker.port)
    watcher.subscribe("guanjia/big/#")
    processes = {g: _guanjia_run(s, tmp_path / f"{g}.log") for g, s in sites.items()}
    try:

        def statuses() -> dict[str, bytes]:
            return {t: p for t, p, _ in watcher.messages if "/status" in t}

        await until(
            lambda: (
                statuses()
                == {"guanjia/big/status/gw-a": b"online", "guanjia/big/status/gw-b": b"online"}
            ),
            "both gateways online, each on its own status topic",
        )
        # A command for gw-b's unit: gw-b runs it and answers; gw-a, which subscribes the same
        # wildcard, keeps quiet.
        command = {"value": 26, "ts": time.time()}
        watcher.publish("guanjia/big/ac-b/setpoint_degc/set", json.dumps(command))
        result = "guanjia/big/ac-b/setpoint_degc/set/result"
        await until(lambda: any(t == result for t, _, _ in watcher.messages), "the answer")
        await asyncio.sleep(1.0)
        answers = [json.loads(p) for t, p, _ in watcher.messages if t == result]
        assert [a["ok"] for a in answers] == [True], answers

        # gw-a dies without a word: its last will says offline on its own topic only.
        os.kill(processes["gw-a"].pid, signal.SIGKILL)
        processes["gw-a"].wait(10)
        await until(lambda: statuses()["guanjia/big/status/gw-a"] == b"offline", "gw-a's will", 30)
        assert statuses()["guanjia/big/status/gw-b"] == b"online"
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes.values():
            process.wait(30)
        watcher.close()
        for building in buildings:
            await building.stop()
    assert processes["gw-b"].returncode == 0
    # The broker saw two sessions, each with its own client id.
    log = broker.log_tail(400)
    assert "guanjia-big-gw-a-centre" in log
    assert "guanjia-big-gw-b-centre" in log
    # Each gateway's lines carry its gateway tag: its devices' readings and its audit.
    tags = influx1.query('SHOW TAG VALUES FROM "meter", "hvac" WITH KEY = "gateway"', db=DB)
    series = {s["name"]: [v[1] for v in s["values"]] for s in tags["results"][0]["series"]}
    assert series == {"meter": ["gw-a"], "hvac": ["gw-b"]}
    audit = influx1.query('SELECT * FROM "audit"', db=DB)["results"][0]["series"][0]
    row = dict(zip(audit["columns"], audit["values"][0], strict=True))
    assert (row["gateway"], row["device"], row["outcome"]) == ("gw-b", "ac-b", "accepted")


def test_readme_fleet_check_command_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """README.md's "A site split across gateways": its command on two files of one site, and
    the line it shows for a serial server both files name."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("### A site split across gateways", 1)[1].split("\n### ", 1)[0]
    [command] = re.findall(r"^\.venv/bin/guanjia (check .*)$", section, re.M)
    [shown] = re.findall(r"^(gw-b\.yaml:.*)$", section, re.M)
    monkeypatch.chdir(tmp_path)
    _site(tmp_path, "gw-a.yaml", "gw-a", A)
    both = """\
        devices:
          - {id: meter-b1, profile: chint_dtsu666, modbus: {transport: tcp, host: 10.0.8.21}}
          - {id: meter-b2, profile: chint_dtsu666, modbus: {transport: rtu_over_tcp, host: 10.0.8.9, port: 8899, unit: 7}}
        """  # noqa: E501
    _site(tmp_path, "gw-b.yaml", "gw-b", both)
    assert main(shlex.split(command)) == 1
    assert capsys.readouterr().err.splitlines() == [shown]
    _site(tmp_path, "gw-b.yaml", "gw-b", both.replace("10.0.8.9", "10.0.8.10"))
    assert main(shlex.split(command)) == 0
    assert "owned twice" in capsys.readouterr().out
