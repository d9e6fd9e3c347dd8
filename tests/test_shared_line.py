"""A Modbus device and DL/T 645 meters on one RS-485 line, polled by the real gateway through
the line's one owner (drivers/lines.py): on a pseudo-terminal (the port set to 9600 baud for the
Modbus device's turns and to 2400 for the meters') and behind a transparent serial server (a
local TCP server, one connection for both drivers).

The far end of the line is a responder in this file that answers like the devices would:
each device only frames of its own protocol and address, and on the pty only at its own baud
rate (read from the pty's termios, as a real receiver at another rate would see garbage),
after a turnaround. A pty has no parity (Linux keeps PARENB off, and refuses a change of it
alone), so the meters on the pty are at 2400 8N1 and the change between turns is the rate.
It records every request in order and whether one arrived while an answer was still pending:
two masters (or one owner letting two requests out) would show there."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import struct
import termios
import textwrap
import tty
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path

import pytest
import yaml

from core.types import Sample
from drivers.dlt645.config import RtuConnection
from drivers.dlt645.runtime import OFFLINE
from drivers.lines import SharedLine
from drivers.modbus.driver import ModbusDriver
from drivers.modbus.line_client import SharedLineClient
from gateway.config_errors import ConfigError
from gateway.config_load import load_site
from gateway.service import Gateway
from simulator.dlt645_meter import SimulatedMeter, load_profile
from tests.modbus_devices import PROFILE, meter_image
from tests.waiting import until

METER_PROFILE = load_profile()
TURNAROUND = 0.02  # seconds a device takes to answer
UNIT = 5
LIVE, DEAD = "000000000161", "000000000199"
MODBUS_VALUES = {
    "voltage_v": 230.5,
    "current_a": 5.25,
    "power_w": 1234.5,
    "energy_kwh": 4321.0,
    "status": 3,
    "temp_degc": -5.5,
    "setpoint_degc": 24.5,
    "alarm_bits": 9,
}
METER_VALUES = {
    "energy_import_kwh": 5321.07,
    "voltage_l1_v": 231.2,
    "current_l1_a": 10.125,
    "active_power_total_w": -1234.5,
    "frequency_hz": 50.02,
}


def crc16(data: bytes) -> int:
    """Modbus RTU's CRC, computed bit by bit here (the driver has its own, table-driven)."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


Settings = int  # the termios baud constant


class Responder:
    """One Modbus RTU device (FC 3 and 4 on a register image) and DL/T 645 meters on a line."""

    def __init__(
        self,
        image: Mapping[str, Mapping[int, int]],
        meters: list[SimulatedMeter],
        send: Callable[[bytes], None],
        settings: Callable[[], Settings] | None = None,
    ) -> None:
        self.image = image
        self.meters = meters
        self.send = send
        self.settings = settings  # the line's settings now; None behind a serial server
        self.log: list[str] = []  # every request, in order: "modbus", or a meter's address
        self.overlaps: list[str] = []  # requests that came while an answer was pending
        self.wrong_settings: list[str] = []  # frames sent at the other protocol's settings
        self.unknown: list[bytes] = []
        self._pending: asyncio.TimerHandle | None = None

    def receive(self, data: bytes) -> None:
        if self._pending is not None:
            self.overlaps.append(data.hex())
        if (
            len(data) == 8
            and data[0] == UNIT
            and crc16(data[:6]) == int.from_bytes(data[6:], "little")
        ):
            self.log.append("modbus")
            if self._at(termios.B9600, "modbus"):
                self._answer(self._modbus(data))
            return
        body = data.lstrip(b"\xfe")
        if body[:1] == b"\x68" and len(body) >= 12:
            address = bytes(reversed(body[1:7])).hex()
            self.log.append(address)
            if self._at(termios.B2400, address):
                from simulator.dlt645_meter import MeterLine

                self._answer(MeterLine(self.meters).receive(data))
            return
        self.unknown.append(data)

    def _at(self, expected: Settings, who: str) -> bool:
        if self.settings is None or self.settings() == expected:
            return True
        self.wrong_settings.append(who)
        return False

    def _answer(self, answer: bytes) -> None:
        if answer:
            self._pending = asyncio.get_running_loop().call_later(TURNAROUND, self._sent, answer)

    def _sent(self, answer: bytes) -> None:
        self._pending = None
        self.send(answer)

    def _modbus(self, request: bytes) -> bytes:
        function, address, count = struct.unpack(">BHH", request[1:6])
        table = self.image.get({3: "holding", 4: "input"}.get(function, ""), {})
        words = [table.get(a) for a in range(address, address + count)]
        if function not in (3, 4) or None in words:
            pdu = bytes([UNIT, function | 0x80, 2])
        else:
            pdu = bytes([UNIT, function, 2 * count]) + struct.pack(f">{count}H", *words)
        return pdu + struct.pack("<H", crc16(pdu))

    def assert_clean(self) -> None:
        assert self.overlaps == []
        assert self.wrong_settings == []
        assert self.unknown == []


def meters() -> list[SimulatedMeter]:
    live = SimulatedMeter(LIVE, METER_PROFILE, dict(METER_VALUES))
    return [live, SimulatedMeter(DEAD, METER_PROFILE, dict(METER_VALUES), silent=True)]


@contextlib.asynccontextmanager
async def pty_line(image: Mapping[str, Mapping[int, int]]) -> AsyncIterator[tuple[str, Responder]]:
    master, slave = os.openpty()
    tty.setraw(slave)
    os.set_blocking(master, False)
    loop = asyncio.get_running_loop()

    def settings() -> Settings:
        speed: int = termios.tcgetattr(master)[4]  # a pty's termios are the gateway end's
        return speed

    responder = Responder(image, meters(), lambda data: os.write(master, data), settings)

    def readable() -> None:
        try:
            data = os.read(master, 4096)
        except (BlockingIOError, OSError):
            return  # EIO while the gateway does not hold the port
        responder.receive(data)

    loop.add_reader(master, readable)
    try:
        yield os.ttyname(slave), responder
    finally:
        loop.remove_reader(master)
        os.close(master)
        os.close(slave)


@contextlib.asynccontextmanager
async def serial_server(
    image: Mapping[str, Mapping[int, int]],
) -> AsyncIterator[tuple[int, Responder, list[int]]]:
    """A transparent serial server in front of the line: yields its port, the responder and
    how many connections it has taken."""
    connections: list[int] = []
    writers: list[asyncio.StreamWriter] = []
    responder = Responder(image, meters(), lambda data: writers[-1].write(data))

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        writers.append(writer)
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(4096):
                responder.receive(data)
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1], responder, connections
    finally:
        for w in writers:
            w.close()
        server.close()


def site_file(tmp_path: Path, devices: str) -> Path:
    profiles = tmp_path / "profiles"
    profiles.mkdir(exist_ok=True)
    (profiles / "test_meter.yaml").write_text(
        yaml.safe_dump(PROFILE.model_dump(mode="json", exclude_defaults=True))
    )
    path = tmp_path / "site.yaml"
    path.write_text(
        "site: {name: 测试楼, id: test-site, tags: {building: main}}\n"
        "profile_dirs: [profiles]\n"
        "batching: {max_points: 200, max_age: 0.2s}\n"
        "spool: {path: spool, max_bytes: 64MiB}\n"
        "devices:\n" + textwrap.indent(textwrap.dedent(devices), "  "),
        encoding="utf-8",
    )
    return path


def devices(modbus: str, dlt645: str) -> str:
    points = "[" + ", ".join(METER_VALUES) + "]"
    return f"""\
    - id: ac-panel
      profile: test_meter
      modbus: {{{modbus}, unit: {UNIT}, timeout: 0.5s, retries: 0}}
      poll: 0.1s
    - id: meter-live
      profile: dlt645_meter
      dlt645: {{{dlt645}, address: "{LIVE}", timeout: 0.3s}}
      points: {points}
      poll: 0.3s
    - id: meter-dead
      profile: dlt645_meter
      dlt645: {{{dlt645}, address: "{DEAD}", timeout: 0.3s}}
      points: {points}
      poll: 0.3s
    """


async def run_gateway(site: Path, tmp_path: Path) -> tuple[Gateway, dict[str, list[Sample]]]:
    """The gateway until the Modbus device and the live meter have five good polls each and
    the dead meter has been found offline."""
    gateway = Gateway(load_site(site), spool_dir=tmp_path / "spool")
    seen: dict[str, list[Sample]] = {}
    gateway.bus.subscribe(Sample, lambda s: seen.setdefault(s.device, []).append(s), name="t")

    def done() -> bool:
        good = [len([s for s in seen.get(d, []) if not s.bad]) for d in ("ac-panel", "meter-live")]
        dead = seen.get("meter-dead", [])
        return min(good) >= 5 and bool(dead) and set(dead[-1].bad.values()) == {OFFLINE}

    await gateway.start()
    try:
        await until(done, "the Modbus device and the live meter read, the dead one offline")
    finally:
        await gateway.stop()
    return gateway, seen


def assert_both_read(gateway: Gateway, seen: dict[str, list[Sample]], log: list[str]) -> None:
    panel = [s for s in seen["ac-panel"] if not s.bad]
    assert panel[-1].values == pytest.approx(MODBUS_VALUES)
    # The Modbus device never failed, the dead meter's timeouts notwithstanding.
    assert all(not s.bad for s in seen["ac-panel"])
    assert seen["meter-live"][-1].values == pytest.approx(METER_VALUES)
    assert all(not s.bad for s in seen["meter-live"])
    statuses = {s.device: (s.online, s.errors) for s in gateway.statuses()}
    assert statuses["ac-panel"] == (True, 0)
    assert statuses["meter-live"] == (True, 0)
    assert statuses["meter-dead"][0] is False
    # The dead meter's every request holds the line for one timeout, and gives it back: the
    # Modbus device's request waiting meanwhile goes next, before the meter's retry or probe.
    dead_at = [i for i, who in enumerate(log) if who == DEAD]
    assert len(dead_at) >= 2
    for before, after in itertools.pairwise(dead_at):
        assert "modbus" in log[before + 1 : after], log[before : after + 1]


async def test_a_modbus_device_and_meters_share_a_serial_port(tmp_path: Path) -> None:
    async with pty_line(meter_image()) as (pty, responder):
        site = site_file(
            tmp_path,
            devices(
                f"transport: rtu, port: {pty}, baudrate: 9600",
                f"transport: rtu, port: {pty}, parity: N",  # 2400, the standard's rate
            ),
        )
        gateway, seen = await run_gateway(site, tmp_path)
    responder.assert_clean()
    assert_both_read(gateway, seen, responder.log)
    (line,) = list(gateway.lines)
    assert isinstance(line, SharedLine)
    assert line.users == set()  # both drivers gave it back at stop: closed
    assert not line.is_open
    # The port was set to the other protocol's settings turn by turn (each device answers
    # only at its own, so none of them could have answered otherwise).
    assert line.reconfigured >= 10
    modbus = gateway.drivers["modbus"]
    assert isinstance(modbus, ModbusDriver)
    (link,) = modbus.links.values()
    assert isinstance(link.client, SharedLineClient)


async def test_a_modbus_device_and_meters_share_a_serial_server(tmp_path: Path) -> None:
    async with serial_server(meter_image()) as (port, responder, connections):
        site = site_file(
            tmp_path,
            devices(
                f"transport: rtu_over_tcp, host: 127.0.0.1, port: {port}, baudrate: 2400",
                f"transport: tcp, host: 127.0.0.1, port: {port}",
            ),
        )
        gateway, seen = await run_gateway(site, tmp_path)
    responder.assert_clean()
    assert_both_read(gateway, seen, responder.log)
    assert len(connections) == 1  # both drivers on the one connection of the line's owner


async def test_a_meter_alone_among_the_meters_is_found_by_broadcast_on_a_shared_line(
    tmp_path: Path,
) -> None:
    """Discovery takes its turn like any request: the Modbus device stays quiet during it,
    and only a DL/T 645 read-address answer is taken as the answer."""
    async with pty_line(meter_image()) as (pty, responder):
        responder.meters = responder.meters[:1]
        site = site_file(
            tmp_path,
            f"""\
            - id: ac-panel
              profile: test_meter
              modbus: {{transport: rtu, port: {pty}, unit: {UNIT}, timeout: 0.5s, retries: 0}}
              poll: 0.1s
            - id: meter
              profile: dlt645_meter
              dlt645: {{transport: rtu, port: {pty}, parity: N, discover: true, timeout: 0.3s}}
              points: [{", ".join(METER_VALUES)}]
              poll: 0.3s
            """,
        )
        gateway = Gateway(load_site(site), spool_dir=tmp_path / "spool")
        seen: dict[str, list[Sample]] = {}
        gateway.bus.subscribe(Sample, lambda s: seen.setdefault(s.device, []).append(s), name="t")
        await gateway.start()
        try:
            await until(
                lambda: all(any(not s.bad for s in seen.get(d, [])) for d in ("ac-panel", "meter")),
                "both the Modbus device and the discovered meter read",
            )
        finally:
            await gateway.stop()
    responder.assert_clean()
    assert "aaaaaaaaaaaa" in responder.log  # the broadcast
    assert [s for s in seen["meter"] if not s.bad][-1].values == pytest.approx(METER_VALUES)
    assert [s for s in seen["ac-panel"] if not s.bad][-1].values == pytest.approx(MODBUS_VALUES)


# -- the site file, before anything connects -----------------------------------------------


def _problems(tmp_path: Path, devices: str) -> list[str]:
    with pytest.raises(ConfigError) as refused:
        load_site(site_file(tmp_path, devices))
    return [f"{p.path}: {p.message}" for p in refused.value.problems]


def test_one_port_with_both_protocols_at_their_own_settings_is_accepted(tmp_path: Path) -> None:
    loaded = load_site(
        site_file(
            tmp_path,
            """\
            - {id: pm, profile: test_meter, modbus: {transport: rtu, port: /dev/ttyUSB0, baudrate: 9600}}
            - {id: m, profile: dlt645_meter, dlt645: {transport: rtu, port: /dev/ttyUSB0, address: "000000000001"}}
            - {id: n, profile: dlt645_meter, dlt645: {transport: rtu, port: /dev/ttyUSB0, discover: false, address: "000000000002"}}
            """,  # noqa: E501
        )
    )
    conn = loaded.driver_devices("dlt645")[0].connection
    assert isinstance(conn, RtuConnection)
    assert (conn.baudrate, conn.parity) == (2400, "E")


def test_a_serial_server_port_has_one_baud_rate(tmp_path: Path) -> None:
    problems = _problems(
        tmp_path,
        """\
        - {id: pm, profile: test_meter, modbus: {transport: rtu_over_tcp, host: 10.0.8.9, port: 8899, baudrate: 9600}}
        - {id: m, profile: dlt645_meter, dlt645: {transport: tcp, host: 10.0.8.9, port: 8899, address: "000000000001"}}
        - {id: n, profile: dlt645_meter, dlt645: {transport: tcp, host: 10.0.8.9, port: 8900, address: "000000000001"}}
        - {id: pn, profile: test_meter, modbus: {transport: rtu_over_tcp, host: 10.0.8.9, port: 8900, baudrate: 2400}}
        """,  # noqa: E501
    )
    assert problems == [
        "devices[1].dlt645.baudrate: 10.0.8.9:8899 is a serial server's port, which has one "
        "setting, and the modbus device devices[0] (pm) reads its line at 9600 baud, this "
        "meter at 2400: set the server and every device on the line to one baud rate and "
        "parity, or put the meters on another port of the server"
    ]


def test_a_modbus_tcp_endpoint_is_no_line_for_meters(tmp_path: Path) -> None:
    problems = _problems(
        tmp_path,
        """\
        - {id: pm, profile: test_meter, modbus: {transport: tcp, host: 10.0.8.9, port: 8899}}
        - {id: m, profile: dlt645_meter, dlt645: {transport: tcp, host: 10.0.8.9, port: 8899, address: "000000000001"}}
        """,  # noqa: E501
    )
    assert len(problems) == 1
    assert problems[0].startswith(
        "devices[1].dlt645: 10.0.8.9:8899 is the modbus TCP endpoint of devices[0] (pm)"
    )
    assert "transport: rtu_over_tcp" in problems[0]
