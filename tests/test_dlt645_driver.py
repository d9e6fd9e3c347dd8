"""The DL/T 645 driver in the real gateway: simulated meters behind a transparent serial server
(TCP on loopback) and on a pseudo-terminal, started and stopped by each test; values into a
real InfluxDB or the spool; error answers, follow-up frames, noise, a meter offline and back,
address discovery; and the site-file checks before anything connects."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import jsonschema
import pytest

from core.types import Command, Sample
from drivers.contract import DeviceEntry, RuntimeContext
from drivers.dlt645.config import RtuConnection, TcpConnection
from drivers.dlt645.runtime import OFFLINE, Dlt645Driver
from gateway.config_errors import ConfigError
from gateway.config_load import load_site
from gateway.schema import site_schema
from gateway.service import Gateway
from simulator.dlt645_meter import SimulatedMeter, load_profile, serve_pty, serve_tcp
from tests.servers import InfluxDB1Server
from tests.waiting import until

PROFILE = load_profile()
DB = "building"

VALUES = {
    "energy_combined_kwh": 4321.5,
    "energy_import_kwh": 5321.07,
    "energy_import_t1_kwh": 1000.01,
    "energy_import_t2_kwh": 2000.02,
    "energy_import_t3_kwh": 1500.03,
    "energy_import_t4_kwh": 821.01,
    "energy_export_kwh": 999.06,
    "voltage_l1_v": 231.2,
    "voltage_l2_v": 229.9,
    "voltage_l3_v": 230.4,
    "current_l1_a": 10.125,
    "current_l2_a": -0.25,
    "current_l3_a": 9.875,
    "active_power_total_w": -1234.5,
    "active_power_l1_w": 2012.3,
    "active_power_l2_w": -3300.0,
    "active_power_l3_w": 53.2,
    "power_factor_total": 0.987,
    "power_factor_l1": -0.5,
    "power_factor_l2": 0.999,
    "power_factor_l3": 0.95,
    "frequency_hz": 50.02,
}


def meter(address: str, scale: float = 1.0, **faults: object) -> SimulatedMeter:
    values = {k: round(v * scale, 2) if k.startswith("energy") else v for k, v in VALUES.items()}
    return SimulatedMeter(address, PROFILE, values, **faults)  # type: ignore[arg-type]


def site_file(tmp_path: Path, devices: str, database: str = "") -> Path:
    text = (
        "site: {name: 测试楼, id: test-site, tags: {building: main}}\n"
        f"{database}\n"
        "batching: {max_points: 200, max_age: 0.2s}\n"
        "spool: {path: spool, max_bytes: 64MiB}\n"
        "devices:\n" + textwrap.indent(textwrap.dedent(devices), "  ")
    )
    path = tmp_path / "site.yaml"
    path.write_text(text, encoding="utf-8")
    return path


class Collector:
    """Every Sample the gateway's bus carries, by device."""

    def __init__(self, gateway: Gateway) -> None:
        self.samples: dict[str, list[Sample]] = {}
        gateway.bus.subscribe(Sample, self._add, name="test")

    def _add(self, sample: Sample) -> None:
        self.samples.setdefault(sample.device, []).append(sample)

    def of(self, device: str) -> list[Sample]:
        return self.samples.get(device, [])

    def last(self, device: str) -> Sample | None:
        samples = self.of(device)
        return samples[-1] if samples else None

    def good(self, device: str) -> bool:
        last = self.last(device)
        return last is not None and not last.bad

    def offline(self, device: str) -> bool:
        last = self.last(device)
        return last is not None and set(last.bad.values()) == {OFFLINE}


def assert_values(sample: Sample | None, expected: dict[str, float]) -> None:
    assert sample is not None
    assert sample.bad == {}
    assert sample.values == pytest.approx(expected)


# -- the gateway, into InfluxDB ------------------------------------------------------------


@pytest.mark.servers
async def test_meters_behind_a_serial_server_and_on_a_pty_reach_influxdb(
    tmp_path: Path, influx1: InfluxDB1Server
) -> None:
    shared = [meter("000000000161"), meter("000000000162", scale=2.0, max_data=12)]
    alone = meter("000000001001", scale=3.0)
    async with serve_tcp(shared) as port, serve_pty([alone]) as pty:
        site = site_file(
            tmp_path,
            f"""\
            - id: meter-1f
              profile: dlt645_meter
              dlt645: {{transport: tcp, host: 127.0.0.1, port: {port}, address: "000000000161"}}
              poll: 0.1s
              tags: {{floor: "1", use: lighting_sockets}}
            - id: meter-2f
              profile: dlt645_meter
              dlt645: {{transport: tcp, host: 127.0.0.1, port: {port}, address: "000000000162"}}
              poll: 0.1s
              tags: {{floor: "2", use: hvac}}
            - id: meter-b1
              profile: dlt645_meter
              dlt645: {{transport: rtu, port: {pty}, address: "000000001001"}}
              poll: 0.1s
              tags: {{floor: B1, use: total}}
            """,
            f"influxdb: {{api: v1, url: '{influx1.url}', database: {DB}}}",
        )
        gateway = Gateway(load_site(site), spool_dir=tmp_path / "spool")
        assert set(gateway.drivers) == {"dlt645"}
        driver = gateway.drivers["dlt645"]
        assert isinstance(driver, Dlt645Driver)
        assert len(driver.lines) == 2  # the serial server's two meters share one owner
        seen = Collector(gateway)
        await gateway.start()
        try:
            await until(
                lambda: all(len(seen.of(d)) >= 3 for d in ("meter-1f", "meter-2f", "meter-b1")),
                "three polls of every meter",
            )
            statuses = gateway.statuses()
            health = gateway.health()
        finally:
            await gateway.stop()
    for device, source in (("meter-1f", shared[0]), ("meter-2f", shared[1]), ("meter-b1", alone)):
        assert_values(seen.last(device), source.values)
        # One request per identifier per poll: the blocks' items come in one answer (the
        # last poll may have been cut short by the stop).
        assert len(source.reads) == 12
        assert min(source.reads.values()) >= 3
        assert max(source.reads.values()) - min(source.reads.values()) <= 1
    assert {(s.device, s.driver, s.online) for s in statuses} == {
        ("meter-1f", "dlt645", True),
        ("meter-2f", "dlt645", True),
        ("meter-b1", "dlt645", True),
    }
    assert health["devices_online"] == 3
    assert health["dlt645_errors"] == 0
    assert health["dlt645_polls"] >= 9
    assert health["points_rejected"] == 0

    rows = influx1.query(
        'SELECT last("active_power_total_w"), last("energy_import_kwh"), last("current_l2_a") '
        'FROM "meter" GROUP BY "device", "floor", "use"',
        db=DB,
    )["results"][0]["series"]
    stored = {r["tags"]["device"]: (r["tags"], r["values"][0][1:]) for r in rows}
    assert stored["meter-1f"] == (
        {"device": "meter-1f", "floor": "1", "use": "lighting_sockets"},
        [-1234.5, 5321.07, -0.25],
    )
    assert stored["meter-2f"][1] == [-1234.5, 10642.14, -0.25]
    assert stored["meter-b1"][1] == [-1234.5, 15963.21, -0.25]


# -- the gateway, into the spool -----------------------------------------------------------


async def test_a_meter_goes_offline_and_comes_back_on_either_path(tmp_path: Path) -> None:
    on_pty = meter("000000000007")
    behind_server = meter("000000000008")
    async with serve_pty([on_pty]) as pty:
        server = serve_tcp([behind_server])
        port = await server.__aenter__()
        site = site_file(
            tmp_path,
            f"""\
            - id: pty-meter
              profile: dlt645_meter
              dlt645: {{transport: rtu, port: {pty}, address: "000000000007",
                       timeout: 200ms, retries: 0}}
              poll: 0.05s
            - id: tcp-meter
              profile: dlt645_meter
              dlt645: {{transport: tcp, host: 127.0.0.1, port: {port},
                       address: "000000000008", timeout: 200ms, retries: 0}}
              poll: 0.05s
            """,
        )
        gateway = Gateway(load_site(site), spool_dir=tmp_path / "spool")
        seen = Collector(gateway)
        await gateway.start()
        try:
            await until(lambda: seen.good("pty-meter") and seen.good("tcp-meter"), "online")

            on_pty.silent = True  # the meter stops answering; the line stays
            await server.__aexit__(None, None, None)  # the serial server goes away
            await until(lambda: seen.offline("pty-meter") and seen.offline("tcp-meter"), "offline")
            down = {s.device: s for s in gateway.statuses()}
            assert down["pty-meter"].online is False
            assert "no answer" in down["pty-meter"].last_error
            assert down["tcp-meter"].online is False
            # Refused, or cut off while a request waited.
            assert re.search("cannot connect|connection lost", down["tcp-meter"].last_error)
            assert gateway.health()["dlt645_offline"] == 2
            assert gateway.health()["devices_online"] == 0

            on_pty.silent = False
            server = serve_tcp([behind_server], port=port)
            await server.__aenter__()
            await until(lambda: seen.good("pty-meter") and seen.good("tcp-meter"), "back")
            up = {s.device: s.online for s in gateway.statuses()}
        finally:
            await gateway.stop()
            await server.__aexit__(None, None, None)
    assert up == {"pty-meter": True, "tcp-meter": True}
    assert_values(seen.last("pty-meter"), on_pty.values)
    assert gateway.health()["dlt645_no_answer"] >= 2
    assert len(gateway.spool) > 0  # no database: the values wait in the spool


async def test_a_meter_alone_on_its_line_is_found_by_broadcast_and_found_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="guanjia.dlt645")
    found = meter("202301150042")
    async with serve_pty([found]) as pty:
        site = site_file(
            tmp_path,
            f"""\
            - id: meter-pump
              profile: dlt645_meter
              dlt645: {{transport: rtu, port: {pty}, discover: true, timeout: 200ms,
                       retries: 0}}
              poll: 0.05s
            """,
        )
        gateway = Gateway(load_site(site), spool_dir=tmp_path / "spool")
        driver = gateway.drivers["dlt645"]
        assert isinstance(driver, Dlt645Driver)
        poller = driver.pollers["meter-pump"]
        seen = Collector(gateway)
        await gateway.start()
        try:
            await until(lambda: seen.good("meter-pump"), "values after discovery")
            assert poller.stats.address == "202301150042"
            # The meter is replaced: silence, then another address on the line.
            found.silent = True
            await until(lambda: seen.offline("meter-pump"), "offline")
            found.address = "202405200007"
            found.silent = False
            await until(lambda: poller.stats.address == "202405200007", "the new address")
            await until(lambda: seen.good("meter-pump"), "values from the new meter")
        finally:
            await gateway.stop()
    assert_values(seen.last("meter-pump"), found.values)
    assert 'write `address: "202301150042"`' in caplog.text
    assert "202405200007" in caplog.text


# -- the driver on its own: what a poll makes of what the line says -------------------------


def _driver(*entries: DeviceEntry) -> tuple[Dlt645Driver, list[Sample]]:
    samples: list[Sample] = []
    return Dlt645Driver(RuntimeContext(entries, samples.append, "Asia/Shanghai")), samples


def _tcp(port: int, address: str) -> TcpConnection:
    return TcpConnection(transport="tcp", host="127.0.0.1", port=port, address=address, timeout=0.5)


async def test_an_error_answer_makes_its_points_bad_and_the_meter_stays_online() -> None:
    partial = meter("000000000031", refuse={"02800002", "0206FF00"})
    async with serve_tcp([partial]) as port:
        driver, _ = _driver(DeviceEntry("m", PROFILE, _tcp(port, "000000000031"), 1.0))
        try:
            sample = await driver.read_once("m")
        finally:
            await driver.stop()
    refused = {"frequency_hz"} | {n for n in VALUES if n.startswith("power_factor")}
    assert sample.bad == dict.fromkeys(refused, "error_no_data")
    assert sample.values == pytest.approx({k: v for k, v in VALUES.items() if k not in refused})
    (status,) = driver.statuses()
    assert status.online is True
    assert driver.health()["dlt645_error_answers"] == 2


async def test_answers_in_follow_up_frames_are_joined() -> None:
    chatty = meter("000000000032", max_data=6)  # 2 data bytes per frame after the identifier
    async with serve_tcp([chatty]) as port:
        driver, _ = _driver(DeviceEntry("m", PROFILE, _tcp(port, "000000000032"), 1.0))
        try:
            sample = await driver.read_once("m")
        finally:
            await driver.stop()
    assert_values(sample, chatty.values)
    assert set(chatty.reads.values()) == {1}  # follow-ups are no new reads


async def test_noise_and_corrupt_frames_on_the_line_are_skipped_and_counted() -> None:
    noisy = meter("000000000033", garble=True)
    async with serve_pty([noisy]) as pty:
        conn = RtuConnection(transport="rtu", port=pty, address="000000000033", timeout=0.5)
        driver, _ = _driver(DeviceEntry("m", PROFILE, conn, 1.0))
        try:
            sample = await driver.read_once("m")
        finally:
            await driver.stop()
    assert_values(sample, noisy.values)
    health = driver.health()
    assert health["dlt645_line_problems"] >= len(noisy.reads)  # a corrupt copy per answer
    assert health["dlt645_no_answer"] == 0


async def test_values_that_are_not_bcd_are_bad_with_the_reason() -> None:
    single_phase = meter("000000000034", unavailable={"voltage_l2_v", "voltage_l3_v"})
    async with serve_tcp([single_phase]) as port:
        driver, _ = _driver(DeviceEntry("m", PROFILE, _tcp(port, "000000000034"), 1.0))
        try:
            sample = await driver.read_once("m")
        finally:
            await driver.stop()
    assert sample.bad == {"voltage_l2_v": "not_bcd", "voltage_l3_v": "not_bcd"}
    assert sample.values["voltage_l1_v"] == 231.2
    assert driver.health()["dlt645_bad_frames"] == 2


async def test_a_meter_is_read_not_written() -> None:
    driver, _ = _driver()
    result = await driver.write(Command("m", "voltage_l1_v", 1.0, "test"))
    assert not result.ok
    assert "read, not written" in result.reason
    assert not driver.can_write("m")


async def test_a_missing_serial_port_is_offline_with_the_fix(tmp_path: Path) -> None:
    conn = RtuConnection(transport="rtu", port=str(tmp_path / "ttyUSB9"), address="000000000001")
    driver, _ = _driver(DeviceEntry("m", PROFILE, conn, 1.0))
    sample = await driver.read_once("m")
    await driver.stop()
    assert set(sample.bad.values()) == {OFFLINE}
    (status,) = driver.statuses()
    assert status.online is False
    assert "/dev/serial/by-id/" in status.last_error
    assert driver.problems() == [status.last_error]


# -- the site file, before anything connects -----------------------------------------------


def _problems(tmp_path: Path, devices: str) -> list[str]:
    with pytest.raises(ConfigError) as refused:
        load_site(site_file(tmp_path, devices))
    return [f"{p.path}: {p.message}" for p in refused.value.problems]


def test_two_meters_with_one_address_on_one_line_are_refused(tmp_path: Path) -> None:
    problems = _problems(
        tmp_path,
        """\
        - {id: a, profile: dlt645_meter, dlt645: {transport: rtu, port: /dev/ttyUSB0, address: "000000000001"}}
        - {id: b, profile: dlt645_meter, dlt645: {transport: rtu, port: /dev/ttyUSB1, address: "000000000001"}}
        - {id: c, profile: dlt645_meter, dlt645: {transport: rtu, port: /dev/ttyUSB0, address: "000000000001"}}
        """,  # noqa: E501
    )
    assert problems == [
        "devices[2].dlt645.address: address 000000000001 on /dev/ttyUSB0 is already used by "
        "devices[0]; every meter on a line has its own address (on its nameplate)"
    ]


def test_discovery_needs_a_meter_alone_on_its_line(tmp_path: Path) -> None:
    problems = _problems(
        tmp_path,
        """\
        - {id: a, profile: dlt645_meter, dlt645: {transport: tcp, host: 10.0.8.9, port: 8899, discover: true}}
        - {id: b, profile: dlt645_meter, dlt645: {transport: tcp, host: 10.0.8.9, port: 8899, address: "000000000002"}}
        - {id: c, profile: dlt645_meter, dlt645: {transport: tcp, host: 10.0.8.9, port: 8900, address: "000000000002"}}
        - {id: d, profile: dlt645_meter, dlt645: {transport: tcp, host: 10.0.8.9, port: 8900, discover: true}}
        """,  # noqa: E501
    )
    assert len(problems) == 2
    assert problems[0].startswith("devices[1].dlt645: devices[0] finds its address by broadcast")
    assert problems[1].startswith("devices[3].dlt645.discover: 10.0.8.9:8900 has other meters")


def test_an_unquoted_address_is_refused_with_the_fix(tmp_path: Path) -> None:
    problems = _problems(
        tmp_path,
        """\
        - {id: a, profile: dlt645_meter, dlt645: {transport: rtu, port: /dev/ttyUSB0, address: 000000000161}}
        - {id: b, profile: dlt645_meter, dlt645: {transport: rtu, port: /dev/ttyUSB0, address: "161"}}
        - {id: c, profile: dlt645_meter, dlt645: {transport: rtu, port: /dev/ttyUSB0}}
        """,  # noqa: E501
    )
    text = "\n".join(problems)
    assert 'address: "000000000161"' in text  # in quotes
    assert '"000000000161" (check the nameplate)' in text  # padded
    assert "discover: true" in text  # neither address nor discovery


def test_a_line_another_driver_uses_is_shared_and_its_meters_agree(tmp_path: Path) -> None:
    """A Modbus device on a meters' port takes turns with them (tests/test_shared_line.py);
    the meters on one port still share one set of settings."""
    problems = _problems(
        tmp_path,
        """\
        - {id: pm, profile: eastron_sdm630, modbus: {transport: rtu, port: /dev/ttyUSB0}}
        - {id: m, profile: dlt645_meter, dlt645: {transport: rtu, port: /dev/ttyUSB0, address: "000000000001"}}
        - {id: n, profile: dlt645_meter, dlt645: {transport: rtu, port: /dev/ttyUSB1, address: "000000000001", baudrate: 9600}}
        - {id: o, profile: dlt645_meter, dlt645: {transport: rtu, port: /dev/ttyUSB1, address: "000000000002"}}
        """,  # noqa: E501
    )
    assert len(problems) == 1
    assert problems[0].startswith("devices[3].dlt645: /dev/ttyUSB1 is already opened with")


def test_a_dlt645_profile_needs_a_dlt645_connection(tmp_path: Path) -> None:
    problems = _problems(
        tmp_path,
        """\
        - {id: m, profile: dlt645_meter, modbus: {transport: tcp, host: 10.0.8.9}}
        - {id: p, profile: dlt645_meter, points: [voltage_l1_v, votlage_l1_v], dlt645: {transport: tcp, host: 10.0.8.9, port: 8899, address: "000000000001"}}
        """,  # noqa: E501
    )
    assert problems[0].startswith("devices[0].modbus: device m has modbus: but dlt645_meter is")
    assert "replace modbus: with dlt645:" in problems[0]
    assert problems[1] == (
        "devices[1].points[1]: profile dlt645_meter has no point 'votlage_l1_v'; "
        "did you mean 'voltage_l1_v'?"
    )


def test_a_profile_subset_reads_only_the_identifiers_it_needs(tmp_path: Path) -> None:
    site = site_file(
        tmp_path,
        """\
        - id: m
          profile: dlt645_meter
          points: [voltage_l2_v, energy_import_kwh]
          dlt645: {transport: tcp, host: 10.0.8.9, port: 8899, address: "000000000001"}
        """,
    )
    loaded = load_site(site)
    driver = Dlt645Driver(RuntimeContext(loaded.driver_devices("dlt645"), print, "UTC"))
    (poller,) = driver.pollers.values()
    assert [f"{r.di:08X}" for r in poller.reads] == ["00010000", "0201FF00"]
    assert poller.names == ["energy_import_kwh", "voltage_l2_v"]
    assert Gateway(loaded, spool_dir=tmp_path / "spool").catalog.devices["m"].points.keys() == {
        "voltage_l2_v",
        "energy_import_kwh",
    }


def test_the_site_schema_knows_the_dlt645_block() -> None:
    schema = site_schema()
    validator = jsonschema.validators.validator_for(schema)(schema)
    device = {
        "id": "m",
        "profile": "dlt645_meter",
        "dlt645": {"transport": "rtu", "port": "/dev/ttyUSB0", "address": "000000000161"},
    }
    site = {"site": {"name": "t", "id": "t"}, "devices": [device]}
    assert validator.is_valid(site)
    both = {**device, "modbus": {"transport": "tcp", "host": "10.0.8.9"}}
    assert not validator.is_valid({**site, "devices": [both]})
    unknown = {**device, "dlt645": {**device["dlt645"], "unit": 1}}  # type: ignore[dict-item]
    assert not validator.is_valid({**site, "devices": [unknown]})
