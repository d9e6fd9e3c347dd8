"""Results `streams_cpu_vs_bare`, `streams_rss_mib`, `streams_reconnect_s`: the HTTP event-stream
driver reading 1,000 Hikvision alertStreams, against a bare asyncio client reading the same
streams.

The devices: one process of their own (this file, `farm`), 1,000 simulated cameras on one
loopback port, one per user name (the driver keeps one stream per address and user), each
demanding Digest authentication (MD5, qop=auth, checked) and then streaming an endless
`multipart/mixed` body: a `videoloss`/`inactive` keep-alive every HEARTBEAT seconds (phases
spread), and EVENTS_PER_S motion alerts a second across all of them (VMD active and inactive in
turn, the camera's time, a growing activePostCount), every part as a real camera frames it.
Each part goes to every stream open for its camera, so both clients get the same bytes.

The driver: a process of its own (`driver`) running drivers.http_events.runtime.HttpEventsDriver
on 1,000 devices of the shipped hikvision_isapi_camera profile, its Samples counted (the bus,
rules and sinks are other benchmarks' business). Everything it does is counted: aiohttp, the
multipart parser, the XML decoder, the mappings, the judge task.

The reference: a process of its own (`bare`) with 1,000 asyncio connections that answer the same
Digest challenge (hashlib) and then only read bytes and count them; nothing else.

Both run side by side and are read over the same WINDOW-second windows after WARMUP seconds.
value = the driver's CPU per byte received / the bare client's (target <= 1.5); the median of
the windows' ratios beside it. streams_rss_mib: the driver process's resident memory with its
1,000 streams open (target <= 150). streams_reconnect_s: the farm drops every connection and
refuses new ones for OUTAGE seconds (a switch reboot); the time from its return until the driver
streams from all 1,000 again (target <= 30); the most handshakes the farm saw in one second
beside it (the jittered backoff spreads them).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import logging
import os
import random
import re
import resource
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bench.common import Result

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script: find the packages

DEVICES = 1000
HEARTBEAT = 10.0  # seconds between a camera's keep-alives
EVENTS_PER_S = 20.0  # motion alerts a second, all cameras together
WARMUP = 5.0
WINDOW = 10.0
WINDOWS = 4
OUTAGE = 5.0
PASSWORD = "bench-password"
PASSWORD_ENV = "GUANJIA_BENCH_STREAMS_PASSWORD"
REALM = "IP Camera(C0001)"
HIK_NS = "http://www.hikvision.com/ver20/XMLSchema"
CST = timezone(timedelta(hours=8))
_PARAM = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|[^,\s]+)')


def _md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def _alert(event_type: str, state: str, post_count: int) -> bytes:
    when = datetime.now(CST).replace(microsecond=0).isoformat()
    xml = (
        f'<EventNotificationAlert version="2.0" xmlns="{HIK_NS}">'
        "<ipAddress>192.168.1.64</ipAddress><portNo>80</portNo><protocol>HTTP</protocol>"
        "<macAddress>44:19:b6:00:00:01</macAddress><channelID>1</channelID>"
        f"<dateTime>{when}</dateTime><activePostCount>{post_count}</activePostCount>"
        f"<eventType>{event_type}</eventType><eventState>{state}</eventState>"
        f"<eventDescription>{event_type} alarm</eventDescription></EventNotificationAlert>"
    ).encode()
    head = (
        '--boundary\r\nContent-Type: application/xml; charset="UTF-8"\r\n'
        f"Content-Length: {len(xml)}\r\n\r\n"
    ).encode()
    return head + xml + b"\r\n"


# --- the farm: 1,000 cameras on one port -------------------------------------------------


class Farm:
    def __init__(self) -> None:
        self.nonces: set[str] = set()
        self.streams: dict[int, list[asyncio.StreamWriter]] = {}
        self.kinds: Counter[str] = Counter()  # open streams by client (aiohttp, bare)
        self.handshakes: Counter[int] = Counter()  # aiohttp streams opened, by whole second
        self.server: asyncio.Server | None = None
        self.port = 0
        self.reopened = 0.0

    async def listen(self, port: int = 0) -> None:
        self.server = await asyncio.start_server(
            self.handle, "127.0.0.1", port, reuse_address=True, backlog=4096
        )
        self.port = self.server.sockets[0].getsockname()[1]

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            writer.close()
            return
        lines = head.split("\r\n")
        target = lines[0].split(" ")[1] if len(lines[0].split(" ")) > 1 else ""
        headers = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
        device = self.verify(target, headers.get("authorization", ""))
        if device is None:
            nonce = os.urandom(8).hex()
            self.nonces.add(nonce)
            writer.write(
                (
                    "HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n"
                    f'WWW-Authenticate: Digest realm="{REALM}", nonce="{nonce}", '
                    'qop="auth", algorithm=MD5\r\n\r\n'
                ).encode()
            )
            with contextlib.suppress(ConnectionError):
                await writer.drain()
            writer.close()
            return
        kind = "bare" if headers.get("user-agent") == "bare" else "aiohttp"
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: multipart/mixed; boundary=boundary\r\n"
            b"Connection: close\r\n\r\n"
        )
        self.streams.setdefault(device, []).append(writer)
        self.kinds[kind] += 1
        if kind == "aiohttp":
            self.handshakes[int(time.monotonic())] += 1
        try:
            await reader.read()  # until the client goes
        except ConnectionError:
            pass
        finally:
            with contextlib.suppress(ValueError):
                self.streams[device].remove(writer)
                self.kinds[kind] -= 1
            writer.close()

    def verify(self, target: str, header: str) -> int | None:
        if not header.startswith("Digest "):
            return None
        p = {k: v.strip('"') for k, v in _PARAM.findall(header[7:])}
        user, nonce = p.get("username", ""), p.get("nonce", "")
        if nonce not in self.nonces or not user.startswith("dev"):
            return None
        ha1 = _md5(f"{user}:{REALM}:{PASSWORD}")
        ha2 = _md5(f"GET:{target}")
        want = _md5(f"{ha1}:{nonce}:{p.get('nc')}:{p.get('cnonce')}:auth:{ha2}")
        return int(user[3:]) if p.get("response") == want else None

    def send(self, device: int, data: bytes) -> None:
        for writer in self.streams.get(device, ()):
            if not writer.is_closing():
                writer.write(data)

    async def heartbeats(self, devices: int) -> None:
        phase = {d: random.uniform(0, HEARTBEAT) for d in range(devices)}
        start = time.monotonic()
        due = sorted((phase[d], d) for d in range(devices))
        rounds = 0
        while True:
            for offset, device in due:
                at = start + rounds * HEARTBEAT + offset
                delay = at - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                self.send(device, _alert("videoloss", "inactive", 0))
            rounds += 1

    async def events(self, devices: int) -> None:
        posts: Counter[int] = Counter()
        while True:
            await asyncio.sleep(1 / EVENTS_PER_S)
            device = random.randrange(devices)
            posts[device] += 1
            state = "active" if posts[device] % 2 else "inactive"
            self.send(device, _alert("VMD", state, posts[device]))

    async def outage(self, seconds: float) -> None:
        assert self.server is not None
        self.server.close()
        for writers in self.streams.values():
            for writer in writers:
                with contextlib.suppress(Exception):
                    writer.transport.abort()
        await asyncio.sleep(seconds)
        self.handshakes.clear()
        await self.listen(self.port)
        self.reopened = time.monotonic()


async def _lines() -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


async def farm_main(devices: int) -> None:
    farm = Farm()
    await farm.listen()
    tasks = [
        asyncio.create_task(farm.heartbeats(devices)),
        asyncio.create_task(farm.events(devices)),
    ]
    print(json.dumps({"port": farm.port}), flush=True)
    reader = await _lines()
    while line := await reader.readline():
        words = line.decode().split()
        if words and words[0] == "outage":
            await farm.outage(float(words[1]))
        print(
            json.dumps(
                {
                    "streams": dict(farm.kinds),
                    "reopened": farm.reopened,
                    "max_handshakes_per_s": max(farm.handshakes.values(), default=0),
                }
            ),
            flush=True,
        )
    for task in tasks:
        task.cancel()


# --- the driver --------------------------------------------------------------------------


def _rss_mib() -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def driver_main(port: int, devices: int) -> None:
    from core.types import Sample
    from drivers.contract import DeviceEntry, RuntimeContext, secret_key
    from drivers.http_events.config import HttpEventsConnection
    from drivers.http_events.runtime import HttpEventsDriver
    from gateway.config_load import BUILTIN_PROFILES, load_profile

    # Its log lines (a thousand "trying again" in the outage) would cost it CPU in the windows
    # too: the figures are the driver's reading, not its logging.
    logging.basicConfig(level=logging.CRITICAL)
    profile = load_profile(BUILTIN_PROFILES / "hikvision_isapi_camera.yaml")
    entries = [
        DeviceEntry(
            f"cam-{i}",
            profile,
            HttpEventsConnection(
                host="127.0.0.1",
                port=port,
                username=f"dev{i}",
                password=f"${{{PASSWORD_ENV}}}",
            ),
            10.0,
        )
        for i in range(devices)
    ]
    samples = 0

    def emit(_sample: Sample) -> None:
        nonlocal samples
        samples += 1

    os.environ[PASSWORD_ENV] = PASSWORD  # the reference the devices' connections name
    secrets = {secret_key(e.id, "password"): PASSWORD for e in entries}
    driver = HttpEventsDriver(RuntimeContext(entries, emit, "Asia/Shanghai", secrets=secrets))
    driver.start()
    print(json.dumps({"pid": os.getpid()}), flush=True)
    reader = await _lines()
    try:
        while await reader.readline():
            health = driver.health()
            print(
                json.dumps(
                    {
                        "cpu": _cpu(),
                        "wall": time.monotonic(),
                        "bytes": sum(s.stats.bytes for s in driver.streams),
                        "samples": samples,
                        "streaming": health["http_events_streaming"],
                        "parts": health["http_events_parts"],
                        "rss_mib": _rss_mib(),
                    }
                ),
                flush=True,
            )
    finally:
        await driver.stop()


# --- the bare client ---------------------------------------------------------------------


async def _bare_stream(port: int, device: int, counts: dict[str, int]) -> None:
    user = f"dev{device}"
    target = "/ISAPI/Event/notification/alertStream"
    while True:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(f"GET {target} HTTP/1.1\r\nHost: x\r\nUser-Agent: bare\r\n\r\n".encode())
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
            writer.close()
            nonce = re.search(r'nonce="([^"]+)"', head)
            assert nonce is not None
            cnonce = os.urandom(8).hex()
            ha1 = _md5(f"{user}:{REALM}:{PASSWORD}")
            ha2 = _md5(f"GET:{target}")
            response = _md5(f"{ha1}:{nonce.group(1)}:00000001:{cnonce}:auth:{ha2}")
            auth = (
                f'Digest username="{user}", realm="{REALM}", nonce="{nonce.group(1)}", '
                f'uri="{target}", algorithm=MD5, response="{response}", qop=auth, '
                f'nc=00000001, cnonce="{cnonce}"'
            )
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(
                f"GET {target} HTTP/1.1\r\nHost: x\r\nUser-Agent: bare\r\n"
                f"Authorization: {auth}\r\n\r\n".encode()
            )
            while data := await reader.read(65536):
                counts["bytes"] += len(data)
            writer.close()
        except (OSError, asyncio.IncompleteReadError, AssertionError):
            pass
        await asyncio.sleep(1.0)


async def bare_main(port: int, devices: int) -> None:
    counts = {"bytes": 0}
    tasks = [asyncio.create_task(_bare_stream(port, d, counts)) for d in range(devices)]
    print(json.dumps({"pid": os.getpid()}), flush=True)
    reader = await _lines()
    while await reader.readline():
        print(
            json.dumps({"cpu": _cpu(), "wall": time.monotonic(), "bytes": counts["bytes"]}),
            flush=True,
        )
    for task in tasks:
        task.cancel()


# --- the benchmark -----------------------------------------------------------------------


class _Process:
    def __init__(self, *args: str) -> None:
        self.role = args[0]
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__)), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=ROOT,
        )
        self.hello = self._line()

    def _line(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{self.role} exited (code {self.proc.poll()})")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def ask(self, text: str = "") -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text.encode() + b"\n")
        self.proc.stdin.flush()
        return self._line()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            assert self.proc.stdin is not None
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@contextlib.contextmanager
def _process(*args: str) -> Iterator[_Process]:
    process = _Process(*args)
    try:
        yield process
    finally:
        process.close()


def _wait(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.2)


def run() -> dict[str, Result]:
    # Imported here: the farm and the bare client, this file's other roles, stay light.
    from bench.common import median, result

    with (
        _process("farm", str(DEVICES)) as farm,
        _process("driver", str(farm.hello["port"]), str(DEVICES)) as driver,
        _process("bare", str(farm.hello["port"]), str(DEVICES)) as bare,
    ):
        _wait(
            lambda: farm.ask()["streams"] == {"aiohttp": DEVICES, "bare": DEVICES},
            120,
            "every stream open",
        )
        time.sleep(WARMUP)
        last = {"driver": driver.ask(), "bare": bare.ask()}
        windows = []
        for _ in range(WINDOWS):
            time.sleep(WINDOW)
            now = {"driver": driver.ask(), "bare": bare.ask()}
            windows.append(
                {n: {k: now[n][k] - last[n][k] for k in ("cpu", "bytes", "wall")} for n in now}
                | {"samples": now["driver"]["samples"] - last["driver"]["samples"]}
            )
            last = now
        rss = driver.ask()["rss_mib"]
        print(
            f"   {DEVICES} cameras, a keep-alive each every {HEARTBEAT:g} s, "
            f"{EVENTS_PER_S:g} motion alerts/s in all; {WINDOWS} windows of {WINDOW:g} s "
            f"after {WARMUP:g} s, side by side:"
        )
        ratios = []
        for w in windows:
            d, b = w["driver"], w["bare"]
            ratio = (d["cpu"] / d["bytes"]) / (b["cpu"] / b["bytes"])
            ratios.append(ratio)
            print(
                f"     driver {d['cpu']:.3f} s CPU / {d['bytes'] / 1e3:,.0f} kB "
                f"({w['samples']} samples), bare {b['cpu']:.3f} s / {b['bytes'] / 1e3:,.0f} kB: "
                f"{ratio:.3f}"
            )
        total = {
            n: sum(w[n]["cpu"] for w in windows) / sum(w[n]["bytes"] for w in windows)
            for n in ("driver", "bare")
        }
        cpu_ratio = total["driver"] / total["bare"]
        print(
            f"   streams_cpu_vs_bare = {cpu_ratio:.3f} (target <= 1.5; median of the windows "
            f"{median(ratios):.3f})"
        )
        print(f"   streams_rss_mib = {rss:.1f} (target <= 150), {DEVICES} streams open")
        answer = farm.ask(f"outage {OUTAGE}")
        reopened = answer["reopened"]
        _wait(lambda: driver.ask()["streaming"] == DEVICES, 120, "every stream back")
        back = time.monotonic() - reopened
        spread = farm.ask()["max_handshakes_per_s"]
        print(
            f"   streams_reconnect_s = {back:.1f} (target <= 30): every stream dropped, the farm "
            f"away {OUTAGE:g} s, then all {DEVICES} streaming again; at most {spread} "
            "handshakes in one second"
        )
    return {
        "streams_cpu_vs_bare": result(cpu_ratio, "<= 1.5"),
        "streams_rss_mib": result(rss, "<= 150", "MiB"),
        "streams_reconnect_s": result(back, "<= 30", "s"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("role", choices=["farm", "driver", "bare", "run"])
    parser.add_argument("args", nargs="*")
    args = parser.parse_args()
    if args.role == "farm":
        asyncio.run(farm_main(int(args.args[0])))
    elif args.role == "driver":
        asyncio.run(driver_main(int(args.args[0]), int(args.args[1])))
    elif args.role == "bare":
        asyncio.run(bare_main(int(args.args[0]), int(args.args[1])))
    else:
        run()


if __name__ == "__main__":
    main()
