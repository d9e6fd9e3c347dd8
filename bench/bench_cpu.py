"""Results `cpu` and `cpu_pymodbus`: CPU per Modbus request, against a bare asyncio client.

One fake Modbus TCP device (separate process, answering at once) serves every client, each on
its own connection; each client makes the same FC3 read of 10 registers, one request at a time,
and the CPU of this process only (getrusage: user + system, all threads) is divided by the
request count.

* bare: bench.common.BareClient, pack the request, unpack the registers, nothing else; the
  reference of every ratio.
* gateway: `DevicePoller.poll_once()`, the real path: the link's lock, StreamClient (MBAP
  framing, transaction ids, timeout), decoding into engineering values, a Sample.  -> `cpu`
* pymodbus: pymodbus 3.16 `AsyncModbusTcpClient.read_holding_registers`, registers only, no
  decoding: the reason drivers/modbus/stream_client.py exists.  -> `cpu_pymodbus`
* stream_client: `StreamClient.read` alone (informational): splits the gateway's figure into
  the client and what the poller adds on top (decode, Sample, bookkeeping).

Each client makes REQUESTS requests per round, interleaved with the others in BLOCKS blocks,
over REPEATS rounds, and keeps its best round: noise (another process, a page fault, the VM's
neighbours) only ever adds CPU, so the minimum is the most faithful estimate of what the code
itself costs.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field

from bench.common import (
    HOST,
    ModbusFarm,
    Result,
    bench_profile,
    connect_bare,
    cpu_seconds,
    result,
    tcp_device,
    us,
)
from drivers.modbus.driver import ModbusDriver
from drivers.modbus.stream_client import StreamClient

REQUESTS = 5000
REPEATS = 3
BLOCKS = 10  # each round's requests come in this many blocks per client
WARMUP = 200
TIMEOUT = 2.0

Call = Callable[[], Awaitable[object]]
ClientFactory = Callable[[int], AbstractAsyncContextManager[Call]]


@asynccontextmanager
async def _bare(port: int) -> AsyncIterator[Call]:
    client = await connect_bare(port)
    try:
        yield lambda: client.read_holding(0, 10)
    finally:
        client.close()


@asynccontextmanager
async def _gateway(port: int) -> AsyncIterator[Call]:
    driver = ModbusDriver([tcp_device("meter", port, bench_profile(), timeout=TIMEOUT)], _drop)
    poller = driver.pollers["meter"]
    sample = await poller.poll_once()
    if len(sample.values) != 8 or sample.bad:
        print(f"  WARNING: the gateway's poll is not a clean 8-value sample: {sample}")
    try:
        yield poller.poll_once
    finally:
        await driver.stop()


@asynccontextmanager
async def _stream_client(port: int) -> AsyncIterator[Call]:
    client = StreamClient(HOST, port, "tcp")
    await client.connect()
    try:
        yield lambda: client.read(1, 3, 0, 10, TIMEOUT)
    finally:
        client.close()


@asynccontextmanager
async def _pymodbus(port: int) -> AsyncIterator[Call]:
    from pymodbus.client import AsyncModbusTcpClient

    client = AsyncModbusTcpClient(HOST, port=port, timeout=TIMEOUT, retries=0)
    if not await client.connect():
        raise RuntimeError(f"pymodbus could not connect to {HOST}:{port}")
    response = await client.read_holding_registers(0, count=10, device_id=1)
    if response.isError() or len(response.registers) != 10:
        print(f"  WARNING: pymodbus read failed: {response}")
    try:
        yield lambda: client.read_holding_registers(0, count=10, device_id=1)
    finally:
        client.close()


def _drop(_sample: object) -> None:
    pass


CLIENTS: dict[str, ClientFactory] = {
    "bare": _bare,
    "gateway": _gateway,
    "stream_client": _stream_client,
    "pymodbus": _pymodbus,
}


@dataclass
class _Figures:
    cpu: list[float] = field(default_factory=list)  # CPU seconds per request, per round
    wall: list[float] = field(default_factory=list)  # wall seconds per request, per round


async def _block(call: Call, n: int) -> tuple[float, float]:
    cpu0, wall0 = cpu_seconds(), time.perf_counter()
    for _ in range(n):
        await call()
    return cpu_seconds() - cpu0, time.perf_counter() - wall0


async def _measure() -> dict[str, _Figures]:
    figures = {name: _Figures() for name in CLIENTS}
    names = list(CLIENTS)
    per_block = REQUESTS // BLOCKS
    with ModbusFarm(1) as farm:
        port = farm.healthy[0]
        async with AsyncExitStack() as stack:
            # Every client on its own connection to the same device, all open at once, so
            # their requests can be interleaved in small blocks: a slow patch of the machine
            # (this is a shared VM) then lands on all of them instead of on one.
            calls = {name: await stack.enter_async_context(CLIENTS[name](port)) for name in names}
            for name in names:
                await _block(calls[name], WARMUP)
            for _ in range(REPEATS):
                gc.collect()  # each round starts clean
                cpu = dict.fromkeys(names, 0.0)
                wall = dict.fromkeys(names, 0.0)
                for block in range(BLOCKS):
                    # Rotate the order so that no client always runs right after another one.
                    shift = block % len(names)
                    for name in names[shift:] + names[:shift]:
                        c, w = await _block(calls[name], per_block)
                        cpu[name] += c
                        wall[name] += w
                for name in names:
                    figures[name].cpu.append(cpu[name] / (per_block * BLOCKS))
                    figures[name].wall.append(wall[name] / (per_block * BLOCKS))
    return figures


def run() -> dict[str, Result]:
    figures = asyncio.run(_measure())
    best = {name: min(f.cpu) for name, f in figures.items()}
    bare = best["bare"]
    print(
        f"cpu: CPU of this process per FC3 read of 10 registers, {REQUESTS} requests x "
        f"{REPEATS} rounds per client (interleaved in blocks of {REQUESTS // BLOCKS}), best round"
    )
    for name, f in figures.items():
        rounds = ", ".join(us(c) for c in f.cpu)
        print(
            f"  {name:14s} {us(best[name]):>10s} CPU/request = {best[name] / bare:5.2f} x bare "
            f"(rounds: {rounds}; wall {us(min(f.wall))}/request)"
        )
    cpu = best["gateway"] / bare
    pymodbus = best["pymodbus"] / bare
    print(f"  cpu = gateway / bare = {cpu:.3f} (target <= 1.5)")
    print(f"  cpu_pymodbus = pymodbus / bare = {pymodbus:.3f} (informational)")
    return {
        "cpu": result(cpu, "<= 1.5"),
        "cpu_pymodbus": result(
            pymodbus, "informational: why drivers/modbus/stream_client.py exists"
        ),
    }


if __name__ == "__main__":
    run()
