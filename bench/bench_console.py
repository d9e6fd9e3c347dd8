"""Result `console_p99_ms`: the duty console's alarm page with 500 open alarms, under 20 clients.

The console is the real one (gateway.console.Console over ServiceDesk over a real AlarmService
with its SQLite store on its own thread), in a process of its own (`--serve console`), with
500 open alarms of all four grades seeded into its store. Twenty aiohttp clients in this
process, each logged in with a session of its own, fetch /alarms back to back (a closed loop:
each sends its next request when the last answer is in) for SECONDS after WARMUP. value = p99
of the request latency (send to last byte), in ms (target < 100).

Reference, the same run, as information: an aiohttp server in a process of its own
(`--serve static`) answering every GET with a page of the same size built once at start-up,
under the same twenty clients: what this machine's loopback, aiohttp and the clients cost
for the same bytes without any console work. Printed with the ratio.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import aiohttp
from aiohttp import web

from bench.common import ROOT, Result, median, ms, percentile, result

ALARMS = 500
CLIENTS = 20
WARMUP = 2.0
SECONDS = 10.0
PASSWORD = "bench-password-1"


# -- the servers (child processes) ------------------------------------------------------------


def seed(store_path: Path, count: int) -> None:
    from gateway.alarm_store import AlarmStore
    from rules.alarms import GRADES
    from rules.catalog import Catalog
    from rules.model import Raise

    store = AlarmStore(store_path)
    book, catalog = store.load(), Catalog.load()
    t = time.time() - 3600
    transitions = []
    for i in range(count):
        grade = GRADES[i % len(GRADES)]
        effect = Raise("offline", f"meter-{i:03d}", "meter_offline", 600 + i, grade=grade)
        transitions += book.apply(effect, t + i, catalog.grade_of)
    for i in range(0, count, 5):  # a fifth already taken by someone
        transitions += book.ack(f"offline.meter-{i:03d}", "console:wang", t + count + i)
    store.save(transitions, book)
    store.close()


async def serve_console(directory: Path) -> None:
    from gateway.alarm_service import AlarmService
    from gateway.bus import Bus
    from gateway.catalog import DeviceCatalog
    from gateway.commands import CommandRouter
    from gateway.config_load import load_site
    from gateway.console import Console, ConsoleConfig, ServiceDesk, hash_password

    site = directory / "site.yaml"
    site.write_text(
        textwrap.dedent("""\
            site: {name: 基准测试楼, id: bench-site, tags: {building: main}}
            alarms: {store: alarms.sqlite}
            """),
        encoding="utf-8",
    )
    loaded = load_site(site, need_broker=False)
    seed(loaded.alarm_store_path(), ALARMS)
    bus = Bus()
    service = AlarmService(
        loaded,
        DeviceCatalog.build(loaded),
        CommandRouter("bench-site", lambda _d: None, [], bus.publish),
        bus,
        store_path=loaded.alarm_store_path(),
        rules=[],
    )
    service.start()
    desk = ServiceDesk(service, list)
    config = ConsoleConfig.model_validate(
        {
            "enabled": True,
            "port": 0,
            "max_sessions": CLIENTS * 2,
            "login": {"free_address": 1000},
            "users": [
                {
                    "id": f"duty{i}",
                    "name": f"值班 {i}",
                    "role": "duty",
                    "password_hash": hash_password(PASSWORD),
                }
                for i in range(CLIENTS)
            ],
        }
    )
    console = Console(config, desk, lambda ref: ref)
    await console.start()
    try:
        await announce_and_wait(console.port)
    finally:
        await console.stop()
        await service.stop()
        desk.close()


async def serve_static(size: int) -> None:
    page = (b"<!doctype html><html><body>" + b"x" * size)[:size]

    async def handler(_request: web.Request) -> web.Response:
        return web.Response(body=page, content_type="text/html", charset="utf-8")

    app = web.Application()
    app.add_routes([web.get("/{tail:.*}", handler), web.post("/{tail:.*}", handler)])
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        await announce_and_wait(int(runner.addresses[0][1]))
    finally:
        await runner.cleanup()


async def announce_and_wait(port: int | None) -> None:
    """Tell the parent the port; serve until it closes our stdin."""
    print(json.dumps({"port": port}), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


@contextmanager
def server(mode: str, arg: str) -> Iterator[int]:
    child = subprocess.Popen(
        [sys.executable, "-m", "bench.bench_console", "--serve", mode, arg],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdin is not None
        line = child.stdout.readline()
        if not line:
            raise RuntimeError(f"the {mode} server did not start (exit {child.wait()})")
        yield int(json.loads(line)["port"])
    finally:
        if child.stdin is not None:
            child.stdin.close()
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


# -- the clients (this process) -----------------------------------------------------------------


async def log_in(http: aiohttp.ClientSession, base: str, user: str) -> None:
    page = await (await http.get(f"{base}/login")).text()
    match = re.search(r'name="csrf" value="([^"]+)"', page)
    assert match, "no login form"
    r = await http.post(
        f"{base}/login",
        data={"user": user, "password": PASSWORD, "csrf": match.group(1)},
        allow_redirects=False,
    )
    if r.status != 303:
        raise RuntimeError(f"login of {user} failed: HTTP {r.status}")


async def client_loop(
    http: aiohttp.ClientSession, url: str, start: float, end: float, out: list[float]
) -> int:
    size = 0
    while True:
        sent = time.perf_counter()
        if sent >= end:
            return size
        async with http.get(url, allow_redirects=False) as r:
            body = await r.read()
            if r.status != 200:
                raise RuntimeError(f"GET {url}: HTTP {r.status}")
        if sent >= start:
            out.append(time.perf_counter() - sent)
        size = len(body)


async def hammer(base: str, logins: Sequence[str]) -> tuple[list[float], int]:
    """CLIENTS closed-loop clients on /alarms; latencies after WARMUP, and the page size."""
    sessions = [
        aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) for _ in range(CLIENTS)
    ]
    try:
        for http, user in zip(sessions, logins, strict=False):
            await log_in(http, base, user)
        latencies: list[float] = []
        start = time.perf_counter() + WARMUP
        end = start + SECONDS
        sizes = await asyncio.gather(
            *(client_loop(http, f"{base}/alarms", start, end, latencies) for http in sessions)
        )
        return latencies, max(sizes)
    finally:
        for http in sessions:
            await http.close()


def describe(latencies: list[float]) -> str:
    return (
        f"p50 {ms(median(latencies))}, p99 {ms(percentile(latencies, 99))}, "
        f"max {ms(max(latencies, default=0.0))} (n={len(latencies)}, "
        f"{len(latencies) / SECONDS:.0f} pages/s)"
    )


def run() -> dict[str, Result]:
    users = [f"duty{i}" for i in range(CLIENTS)]
    with (
        tempfile.TemporaryDirectory(prefix="bench-console-") as tmp,
        server("console", tmp) as port,
    ):
        console, size = asyncio.run(hammer(f"http://127.0.0.1:{port}", users))
    with server("static", str(size)) as port:
        static, _ = asyncio.run(hammer(f"http://127.0.0.1:{port}", []))
    p99, ref99 = percentile(console, 99), percentile(static, 99)
    print(
        f"   {ALARMS} open alarms, page {size / 1024:.0f} KiB, {CLIENTS} clients back to back, "
        f"{SECONDS:g} s"
    )
    print(f"   console /alarms:          {describe(console)}")
    print(f"   static page, same size:   {describe(static)}")
    print(
        f"   console_p99_ms = {p99 * 1000:.2f} (target < 100); the static page's p99 "
        f"{ref99 * 1000:.2f} ms, ratio {p99 / ref99:.2f}"
    )
    return {"console_p99_ms": result(p99 * 1000, "< 100", "ms")}


def main(argv: Sequence[str]) -> None:
    if argv[:1] == ["--serve"]:
        mode, arg = argv[1], argv[2]
        if mode == "console":
            from bench.gateway_site import gateway_logs

            with gateway_logs():  # as `guanjia run` logs (every escalation), into /dev/null
                asyncio.run(serve_console(Path(arg)))
        else:
            asyncio.run(serve_static(int(arg)))
        return
    for key, value in run().items():
        print(f"{key}: {value}")


if __name__ == "__main__":
    main(sys.argv[1:])
