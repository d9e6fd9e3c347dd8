"""A fleet of gateways on one machine, for tests/test_fleet.py and bench/bench_fleet.py: each
site a small simulated building (three meters on one Modbus TCP port, a voltage rule,
accounts), each gateway its own `guanjia run` process, the centre (one Mosquitto, one
VictoriaMetrics, one InfluxDB 1.6) behind a loopback proxy whose link can be cut.

The link is cut as a firewall that rejects: established connections are reset (RST) and new
ones are accepted and reset at once, so a write in flight dies mid-way and its answer may be
lost. The database and the broker themselves keep running, as they do when a compound's line
to the city goes down.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import socket
import struct
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from tests.servers import LOOPBACK, InfluxDB1Server, VictoriaMetricsServer, free_ports

ROOT = Path(__file__).resolve().parent.parent
GRADES = ("red", "orange", "yellow", "blue")
VOLTS_ABOVE = 260.0  # the rule's limit; the simulated meters read about 230 V
BAD_VOLTS = 300.0


@dataclass(frozen=True, slots=True)
class FleetSite:
    id: str
    path: Path
    database: str  # "influxdb" (1.6) or "victoriametrics"
    devices: tuple[str, ...]
    grade: str

    @property
    def store(self) -> Path:
        return self.path.parent / "var" / "alarms.sqlite"


def write_fleet(
    directory: Path,
    count: int,
    *,
    broker_port: int,
    influx_url: str,
    vm_url: str,
    meters: int = 3,
    poll: float = 1.0,
) -> list[FleetSite]:
    """`count` site files, each in a folder of its own with its data: odd sites write to
    InfluxDB 1.6, even ones to VictoriaMetrics; each device id names its site."""
    sites = []
    ports = free_ports(count)
    uses = ("total", "hvac", "lighting_sockets", "power", "special")
    for n, port in enumerate(ports, start=1):
        site_id = f"site-{n:02d}"
        folder = directory / site_id
        folder.mkdir(parents=True, exist_ok=True)
        if n % 2:
            database = "influxdb"
            db = f'{{api: v1, url: "{influx_url}", database: building, timeout: 3s}}'
        else:
            database = "victoriametrics"
            db = (
                f'{{api: v2, url: "{vm_url}", org: fleet, bucket: fleet, '
                "server: victoriametrics, timeout: 3s}"
            )
        grade = GRADES[n % len(GRADES)]
        devices = tuple(f"{site_id}-m{i}" for i in range(1, meters + 1))
        lines = [
            f"site: {{name: 站点{n:02d}, id: {site_id}, tags: {{building: main}}}}",
            f"influxdb: {db}",
            "batching: {max_age: 0.5s}",
            "spool: {path: var/spool}",
            "alarms: {store: var/alarms.sqlite}",
            "mqtt:",
            f"  brokers: [{{name: centre, host: 127.0.0.1, port: {broker_port}, keepalive: 5}}]",
            "accounts: {factors: cn-2023, grid_region: east, store: var/accounts.sqlite}",
            "rules:",
            f"  - {{id: volts, kind: threshold, point: voltage_l1_v, above: {VOLTS_ABOVE}, "
            f"grade: {grade}}}",
            "devices:",
        ]
        for i, device in enumerate(devices, start=1):
            lines.append(
                f"  - {{id: {device}, profile: chint_dtsu666, poll: {poll}s, modbus: "
                f"{{transport: tcp, host: 127.0.0.1, port: {port}, unit: {i}}}, "
                f"tags: {{use: {uses[(i - 1) % len(uses)]}}}}}"
            )
        path = folder / "site.yaml"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        sites.append(FleetSite(site_id, path, database, devices, grade))
    return sites


# -- the buildings --------------------------------------------------------------------------


class Buildings:
    """tests/fleet_building.py in a process of its own, serving every site's meters."""

    def __init__(self, sites: Sequence[FleetSite], log: Path) -> None:
        self._log = log.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.fleet_building", *(str(s.path) for s in sites)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            cwd=ROOT,
        )
        hello = self._read()
        self.devices: list[str] = hello["devices"]

    def _read(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the buildings exited (code {self.process.poll()})")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def command(self, text: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(text.encode() + b"\n")
        self.process.stdin.flush()
        answer = self._read()
        assert answer["ok"], answer

    def raise_alarm(self, device: str) -> None:
        self.command(f"bad {device} voltage_l1_v {BAD_VOLTS}")

    def clear_alarm(self, device: str) -> None:
        self.command(f"clear {device}")

    def stop(self) -> None:
        stdin: IO[bytes] | None = self.process.stdin
        if stdin is not None:
            with contextlib.suppress(OSError):
                stdin.close()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()


# -- the gateways ---------------------------------------------------------------------------


@dataclass
class GatewayProcess:
    """`guanjia run SITE` in its own process, stopped by its own pid."""

    site: FleetSite
    log: Path
    process: subprocess.Popen[bytes] = field(init=False)

    def __post_init__(self) -> None:
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "gateway.cli", "run", str(self.site.path)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.site.path.parent,
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM (the normal shutdown: flush or spool), then wait; SIGKILL if it hangs."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def final_health(self) -> dict[str, Any]:
        """The counters the gateway logs as it stops (`gateway stopped: {...}`)."""
        marker = "gateway stopped: "
        for line in reversed(self.log.read_text(encoding="utf-8").splitlines()):
            if marker in line:
                health: dict[str, Any] = json.loads(line.split(marker, 1)[1])
                return health
        raise AssertionError(f"{self.log} has no final health line")


def proc_rss_kib(pid: int) -> tuple[int, int]:
    """(RSS, PSS) of a process in KiB: PSS shares the pages it has in common with others
    (the interpreter, the libraries) among the processes that map them."""
    status = Path(f"/proc/{pid}/status").read_text()
    rss = int(status.split("VmRSS:")[1].split()[0])
    try:
        rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
        pss = int(rollup.split("\nPss:")[1].split()[0])
    except (OSError, IndexError):
        pss = rss
    return rss, pss


def proc_cpu_seconds(pid: int) -> float:
    """User + system CPU of a process (all its threads) so far."""
    import os

    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- the link to the centre -----------------------------------------------------------------


class LinkProxy:
    """A loopback TCP proxy in front of the centre's servers, on a thread of its own: one
    listening port per target. `cut()` resets every connection and every new one until
    `restore()`."""

    def __init__(self, targets: dict[str, int]) -> None:
        self.targets = dict(targets)
        self.ports = dict(zip(targets, free_ports(len(targets)), strict=True))
        self.down = False
        self.resets = 0
        self.accepted = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="link-proxy")
        self._servers: list[asyncio.Server] = []
        self._open: set[asyncio.StreamWriter] = set()

    def __enter__(self) -> LinkProxy:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(10)
        for port in self.ports.values():  # listening, and ours
            with socket.create_connection((LOOPBACK, port), timeout=2):
                pass
        return self

    def __exit__(self, *_exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def url(self, name: str) -> str:
        return f"http://{LOOPBACK}:{self.ports[name]}"

    def cut(self) -> None:
        asyncio.run_coroutine_threadsafe(self._cut(), self._loop).result(10)

    def restore(self) -> None:
        self._loop.call_soon_threadsafe(setattr, self, "down", False)

    async def _listen(self) -> None:
        for name, target in self.targets.items():

            async def handle(
                reader: asyncio.StreamReader, writer: asyncio.StreamWriter, target: int = target
            ) -> None:
                await self._handle(reader, writer, target)

            self._servers.append(
                await asyncio.start_server(handle, LOOPBACK, self.ports[name], reuse_address=True)
            )

    async def _close(self) -> None:
        for server in self._servers:
            server.close()
        for writer in list(self._open):
            _reset(writer)

    async def _cut(self) -> None:
        self.down = True
        for writer in list(self._open):
            _reset(writer)
            self.resets += 1
        self._open.clear()

    async def _handle(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, target: int
    ) -> None:
        if self.down:
            _reset(writer)
            self.resets += 1
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(LOOPBACK, target)
        except OSError:
            _reset(writer)
            return
        self.accepted += 1
        self._open |= {writer, up_writer}
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            for w in (writer, up_writer):
                self._open.discard(w)
                w.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(OSError, RuntimeError):
            writer.close()


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a RST, as a rejecting firewall does: no orderly FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


# -- what the centre holds ------------------------------------------------------------------


def influx_rows(server: InfluxDB1Server, db: str, site: str) -> dict[str, list[dict[str, Any]]]:
    """Every row of `site` in InfluxDB, by measurement, oldest first."""
    measurements = server.query("SHOW MEASUREMENTS", db=db)["results"][0].get("series", [])
    names = [v[0] for v in measurements[0]["values"]] if measurements else []
    out: dict[str, list[dict[str, Any]]] = {}
    for name in names:
        result = server.query(f'SELECT * FROM "{name}" WHERE "site" = \'{site}\'', db=db)
        for series in result["results"][0].get("series", []):
            columns = series["columns"]
            out.setdefault(name, []).extend(
                dict(zip(columns, v, strict=True)) for v in series["values"]
            )
    return out


def vm_rows(vm: VictoriaMetricsServer, site: str) -> dict[str, set[tuple[Any, ...]]]:
    """`site`'s rows in VictoriaMetrics, by measurement: a line's fields become one series
    each (`<measurement>_<field>`) with the line's tags and time, so a row is the tags and
    the time its fields share."""
    rows: dict[str, set[tuple[Any, ...]]] = {}
    for series in vm.export(f'{{site="{site}"}}'):
        labels = dict(series["metric"])
        name = labels.pop("__name__")
        measurement = next(
            (
                m
                for m in ("meter", "gateway", "alarm", "energy", "audit")
                if name.startswith(m + "_")
            ),
            name,
        )
        key = tuple(sorted(labels.items()))
        rows.setdefault(measurement, set()).update((key, ts) for ts in series["timestamps"])
    return rows


@contextlib.contextmanager
def running(gateways: Sequence[GatewayProcess]) -> Iterator[None]:
    """Every gateway stopped by its own pid on the way out, whatever happened."""
    try:
        yield
    finally:
        for g in gateways:
            if g.process.poll() is None:
                g.process.send_signal(signal.SIGTERM)
        for g in gateways:
            g.stop()


class Archiver:
    """The centre's subscriber to every site (`guanjia/#`): a persistent session, QoS 1."""

    def __init__(self, port: int, client_id: str = "fleet-archiver") -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.messages: list[tuple[str, bytes, bool]] = []
        self.lock = threading.Lock()
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id, clean_session=False)
        self.c.reconnect_delay_set(1, 1)
        subscribed = threading.Event()
        self.c.on_connect = lambda c, *_: c.subscribe("guanjia/#", qos=1)
        self.c.on_subscribe = lambda *_: subscribed.set()
        self.c.on_message = self._message
        self.c.connect(LOOPBACK, port)
        self.c.loop_start()
        assert subscribed.wait(10), "the archiver did not subscribe"

    def _message(self, _c: Any, _u: Any, msg: Any) -> None:
        with self.lock:
            self.messages.append((msg.topic, bytes(msg.payload), bool(msg.retain)))

    def snapshot(self) -> list[tuple[str, bytes, bool]]:
        with self.lock:
            return list(self.messages)

    def latest(self, topic: str) -> bytes | None:
        found = [p for t, p, _ in self.snapshot() if t == topic]
        return found[-1] if found else None

    def events(self, site: str) -> list[dict[str, Any]]:
        """The site's alarm transitions as they arrived (repeats included)."""
        topic = f"guanjia/{site}/transitions"
        return [json.loads(p) for t, p, _ in self.snapshot() if t == topic]

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()
