"""Helpers shared by the benchmarks: statistics, CPU clocks, the fake devices and database.

Project rule: every figure is a ratio to a reference measured in the same run on the same
machine, printed with the raw numbers behind it. Absolute thresholds would compare this
machine with another one; a ratio compares two ways of doing the same work here and now.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import resource
import struct
import subprocess
import sys
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self, TypedDict, cast

from drivers.modbus.config import TcpConnection
from drivers.modbus.driver import ModbusDevice, ModbusDriver
from drivers.modbus.profile import Profile

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
HOST = "127.0.0.1"  # every benchmark stays on loopback


class Result(TypedDict):
    """One entry of bench/results.json."""

    value: float
    target: str
    unit: str  # "ratio" (lower is better unless the target says otherwise) or "x" (a multiple)


def result(value: float, target: str, unit: str = "ratio") -> Result:
    return {"value": round(value, 4), "target": target, "unit": unit}


# -- statistics ----------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) with linear interpolation between ranks (numpy's default)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median(values: Sequence[float]) -> float:
    return percentile(values, 50.0)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


def us(seconds: float) -> str:
    return f"{seconds * 1e6:.1f} µs"


# -- CPU clocks ----------------------------------------------------------------------------


def cpu_seconds() -> float:
    """User + system CPU of this process, all threads (not children: the fakes don't count)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# -- helper processes ----------------------------------------------------------------------


class _Child:
    """A stdlib-only helper script in its own process, announcing itself with one JSON line.

    The child serves until its stdin closes, so closing the pipe is the polite stop and a crash
    of the benchmark (which closes the pipe too) can never leave it behind.
    """

    def __init__(self, script: str, args: Sequence[str]) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, str(BENCH_DIR / script), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=ROOT,
        )
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if not line:
            self.close()
            raise RuntimeError(f"{script} exited before it was ready (code {self._proc.poll()})")
        self.hello: dict[str, Any] = json.loads(line)

    def request(self, text: str = "") -> dict[str, Any]:
        """One line to the child's stdin, one JSON line back (for children that answer)."""
        assert self._proc.stdin is not None
        assert self._proc.stdout is not None
        self._proc.stdin.write(text.encode() + b"\n")
        self._proc.stdin.flush()
        line = self._proc.stdout.readline()
        if not line:
            raise RuntimeError(f"helper exited (code {self._proc.poll()})")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def close(self) -> None:
        proc = self._proc
        pipes: list[IO[bytes] | None] = [proc.stdin, proc.stdout]
        for pipe in pipes:
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


class _Helper:
    """A helper process owned as a context manager: stopped on exit."""

    _child: _Child

    def close(self) -> None:
        self._child.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class ModbusFarm(_Helper):
    """``ports`` fake Modbus TCP devices in one separate process (bench/fake_modbus.py).

    ``healthy`` ports answer FC3/FC4 after ``delay_ms``; the last ``dead`` ports accept
    connections and never answer. The first ``flip`` healthy ports (``flipping``) alternate
    between two register images every half ``flip_period`` (see fake_modbus.py).
    """

    def __init__(
        self,
        ports: int,
        *,
        dead: int = 0,
        delay_ms: float = 0.0,
        flip: int = 0,
        flip_period: float = 10.0,
    ) -> None:
        args = ["--ports", str(ports), "--dead", str(dead), "--delay-ms", str(delay_ms)]
        if flip:
            args += ["--flip", str(flip), "--flip-period", str(flip_period)]
        self._child = _Child("fake_modbus.py", args)
        self.healthy: list[int] = list(self._child.hello["healthy"])
        self.dead: list[int] = list(self._child.hello["dead"])
        self.flipping: list[int] = list(self._child.hello.get("flipping", []))


class FakeInflux(_Helper):
    """An HTTP endpoint answering every write with 204, in its own process (fake_influx.py)."""

    def __init__(self) -> None:
        self._child = _Child("fake_influx.py", [])
        self.url = f"http://{HOST}:{self._child.hello['port']}"

    def stats(self) -> dict[str, int]:
        with urllib.request.urlopen(self.url + "/stats", timeout=10) as response:
            data: dict[str, int] = json.loads(response.read())
        return data

    def reset(self) -> None:
        request = urllib.request.Request(self.url + "/reset", data=b"", method="POST")
        with urllib.request.urlopen(request, timeout=10):
            pass


# -- the benchmark device ------------------------------------------------------------------


def bench_profile_data() -> dict[str, Any]:
    """bench_profile() as a profile file holds it (the benches that load a site file)."""
    points: list[dict[str, Any]] = [
        {"name": f"value_{i}", "address": i, "type": "uint16"} for i in range(6)
    ]
    points += [
        {"name": "power_w", "address": 6, "type": "float32", "unit": "W"},
        {"name": "energy_kwh", "address": 8, "type": "float32", "unit": "kWh"},
    ]
    return {
        "name": "bench_meter",
        "kind": "meter",
        "defaults": {"function": "holding"},
        "points": points,
    }


def bench_profile() -> Profile:
    """A small meter: 10 holding registers, six uint16 values and two float32 values.

    Both decoders a real meter uses are on the path; one read of registers 0..9 serves it all.
    """
    return Profile.model_validate(bench_profile_data())


def tcp_device(
    device_id: str,
    port: int,
    profile: Profile,
    *,
    interval: float = 1.0,
    timeout: float = 1.0,
    retries: int = 0,
) -> ModbusDevice:
    connection = TcpConnection(
        transport="tcp", host=HOST, port=port, unit=1, timeout=timeout, retries=retries
    )
    return ModbusDevice(device_id, profile, connection, interval)


async def stop_driver(driver: ModbusDriver, patience: float = 0.5) -> int:
    """``await driver.stop()``, but bounded; returns how many poller tasks ignored the cancel.

    On Python 3.11, ``asyncio.wait_for`` (used per request in stream_client.py) loses a
    cancellation that arrives as the awaited answer completes (CPython gh-86296, fixed in 3.12
    by rewriting wait_for on asyncio.timeout). The poller's loop then keeps running, and
    ``ModbusDriver.stop()``, which cancels each task once and gathers them, waits forever.
    A benchmark must end, so the tasks still alive after ``patience`` are cancelled again.
    """
    tasks = list(driver._tasks)
    stopping = asyncio.ensure_future(driver.stop())
    stubborn: set[asyncio.Task[None]] = set()
    while True:
        done, _pending = await asyncio.wait({stopping}, timeout=patience)
        if done:
            break
        for task in tasks:
            if not task.done():
                task.cancel()
                stubborn.add(task)
    stopping.result()
    return len(stubborn)


@contextlib.contextmanager
def quiet_logs(name: str = "guanjia", level: int = logging.ERROR) -> Iterator[None]:
    """Keep expected warnings (devices going offline on purpose) off the benchmark's output."""
    logger = logging.getLogger(name)
    old = logger.level
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.setLevel(old)


# -- the reference client ------------------------------------------------------------------

_READ_REQUEST = struct.Struct(">HHHBBHH")  # MBAP (tid, protocol, length, unit) + fc, address, count


class BareClient(asyncio.Protocol):
    """The least an asyncio Modbus TCP client can do: pack a FC3 request, unpack the registers.

    No timeout, no transaction matching, no error handling, one request at a time: the CPU
    floor any real client (ours, pymodbus) is compared with, on the same event loop primitive
    (asyncio.Protocol) that drivers/modbus/stream_client.py uses.
    """

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[list[int]] | None = None
        self.tid = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but behave as one.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        buf = self.buffer
        buf += data
        while len(buf) >= 9:
            length = buf[4] << 8 | buf[5]
            if len(buf) < 6 + length:
                return
            count = buf[8] // 2
            registers = list(struct.unpack_from(f">{count}H", buf, 9))
            del buf[: 6 + length]
            if self.waiter is not None and not self.waiter.done():
                self.waiter.set_result(registers)

    async def read_holding(self, address: int, count: int) -> list[int]:
        assert self.transport is not None
        self.tid = (self.tid + 1) & 0xFFFF
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(_READ_REQUEST.pack(self.tid, 0, 6, 1, 3, address, count))
        return await self.waiter

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def connect_bare(port: int) -> BareClient:
    _transport, protocol = await asyncio.get_running_loop().create_connection(
        BareClient, HOST, port
    )
    return protocol


def modbus_of(gateway: Any) -> ModbusDriver:
    """The running gateway's Modbus driver, for a bench that watches its pollers."""
    runtime = gateway.drivers["modbus"]
    assert isinstance(runtime, ModbusDriver)
    return runtime


def end_child(proc: subprocess.Popen[bytes] | subprocess.Popen[str]) -> None:
    """A child that stops when its stdin closes: close it, wait, kill it after 10 s."""
    if proc.stdin is not None:
        with contextlib.suppress(OSError):
            proc.stdin.close()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
