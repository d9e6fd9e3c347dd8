"""Result `loop_lag_p99_ms`: how late the gateway's event loop runs a task while 200 meters are
polled, alarms transition and operators acknowledge alarms through the store.

The gateway: the real gateway.service.Gateway in this process, on the dense rules site of
bench/gateway_site.py (200 meters every 100 ms, 2,000 threshold rules, InfluxDB through the v2
write API to bench.common.FakeInflux), with 100 meters flipping, so that about 20 alarms a
second are raised or cleared, each committed to the SQLite store on the local disk before it is
announced. Beside it, bench/ack_writer.py, in a process of its own, asks for the
acknowledgement of an open alarm every ACK_EVERY seconds with AlarmStore.ack_request, as
`guanjia ack` does: a fsynced write transaction on the gateway's own store file, holding the
write lock the gateway's store thread needs. The gateway reads the requests on its
once-a-second tick, acknowledges, and answers them in its next commit.

The probe: a task on the gateway's loop that sleeps 10 ms and notes how much later than that it
wakes, for SECONDS after WARMUP. value = p99 of that lag, in ms (target < 5).

Reference, the same run: the same probe on a loop where bench.common.BareClient polls the same
200 meters every 100 ms and nothing else (bench/bare_poller.py's loop): what this machine gives
any event loop doing that much I/O (asyncio sleeps to the millisecond, and the machine is
shared). Printed with the ratio, as information. Also printed: the alarm transitions' latency
(arrival of the reading to durable and published, as rules_p99_ms measures it) while the
acknowledgements compete for the store.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.bare_poller import Counter, poll
from bench.bench_rules import FLIP_PERIOD, TransitionClock
from bench.common import (
    FakeInflux,
    ModbusFarm,
    Result,
    connect_bare,
    median,
    ms,
    percentile,
    result,
)
from bench.gateway_site import (
    DEVICES,
    INTERVAL,
    RULES_PER_DEVICE,
    Process,
    fs_type,
    gateway_logs,
    load,
    loadavg,
    stop_gateway,
)
from gateway.service import Gateway

WARMUP = 3.0
SECONDS = 20.0
REFERENCE_SECONDS = 10.0
PROBE = 0.010  # the probe's sleep
FLIP = 100  # about 20 transitions a second
ACK_EVERY = 0.1  # ten acknowledgement requests a second: far more than a duty desk makes


async def probe(seconds: float) -> list[float]:
    """Sleep PROBE again and again; how late each wake-up was, in seconds."""
    lags: list[float] = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        started = time.perf_counter()
        await asyncio.sleep(PROBE)
        lags.append(time.perf_counter() - started - PROBE)
    return lags


def describe(lags: list[float]) -> str:
    return (
        f"p50 {ms(median(lags))}, p99 {ms(percentile(lags, 99))}, "
        f"p99.9 {ms(percentile(lags, 99.9))}, max {ms(max(lags, default=0.0))} (n={len(lags)})"
    )


@dataclass
class GatewayRun:
    lags: list[float] = field(default_factory=list)
    clock: TransitionClock = field(default_factory=TransitionClock)
    polls: int = 0
    acks: dict[str, float] = field(default_factory=dict)
    store_errors: int = 0
    commits: int = 0


async def gateway_run(directory: Path, farm: ModbusFarm, influx: FakeInflux) -> GatewayRun:
    loaded = load(directory, farm.healthy, influx.url, rules=RULES_PER_DEVICE)
    gateway = Gateway(loaded)
    out = GatewayRun()
    out.clock.attach(gateway)
    await gateway.start()
    try:
        store = str(loaded.alarm_store_path())
        with Process("ack_writer.py", [store, "--every", str(ACK_EVERY)]) as acker:
            await asyncio.sleep(WARMUP)
            before = await asyncio.to_thread(acker.counters)
            polls = gateway.bus.published["Sample"]
            out.clock.start = time.perf_counter()
            out.lags = await probe(SECONDS)
            out.polls = gateway.bus.published["Sample"] - polls
            after = await asyncio.to_thread(acker.counters)
            out.acks = {k: after[k] - before[k] for k in after}
    finally:
        await stop_gateway(gateway)
    assert gateway.alarms is not None
    out.store_errors = gateway.alarms.store_errors
    out.commits = gateway.alarms.store.commits
    return out


async def reference_run(ports: list[int]) -> list[float]:
    clients = [await connect_bare(port) for port in ports]
    counter = Counter()
    tasks = [asyncio.create_task(poll(c, INTERVAL, counter)) for c in clients]
    try:
        await asyncio.sleep(1.0)
        return await probe(REFERENCE_SECONDS)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for client in clients:
            client.close()


def run() -> dict[str, Result]:
    print(f"   load average before: {loadavg()}")
    with (
        gateway_logs(),
        tempfile.TemporaryDirectory(prefix="bench-loop-lag-") as tmp,
        ModbusFarm(DEVICES, flip=FLIP, flip_period=FLIP_PERIOD) as farm,
        FakeInflux() as influx,
    ):
        reference = asyncio.run(reference_run(farm.healthy))
        gw = asyncio.run(gateway_run(Path(tmp) / "site", farm, influx))
        fs = fs_type(Path(tmp))
    p99 = percentile(gw.lags, 99)
    ref99 = percentile(reference, 99)
    print(
        f"   {DEVICES} meters every {INTERVAL * 1000:.0f} ms, {DEVICES * RULES_PER_DEVICE:,} "
        f"rules, {FLIP} meters flipping every {FLIP_PERIOD / 2:g} s; alarm store on {fs}"
    )
    print(
        f"   gateway, {SECONDS:g} s: {gw.polls:,} polls; transitions published "
        f"{gw.clock.published}; {gw.commits} store commits, {gw.store_errors} store errors"
    )
    print(
        f"   ack writer (another process, every {ACK_EVERY * 1000:.0f} ms): "
        f"{gw.acks.get('requests', 0):.0f} ack requests written, "
        f"{gw.acks.get('nothing_to_ack', 0):.0f} times nothing to acknowledge, "
        f"{gw.acks.get('errors', 0):.0f} errors"
    )
    print(f"   transitions, arrival -> durable + published: {gw.clock.describe()}")
    print(f"   lag of a {PROBE * 1000:.0f} ms sleep, gateway:   {describe(gw.lags)}")
    print(f"   lag of a {PROBE * 1000:.0f} ms sleep, reference: {describe(reference)}")
    print(
        f"   loop_lag_p99_ms = {p99 * 1000:.2f} (target < 5); the reference's p99 "
        f"{ref99 * 1000:.2f} ms, ratio {p99 / ref99:.2f}"
    )
    print(f"   load average after: {loadavg()}")
    return {"loop_lag_p99_ms": result(p99 * 1000, "< 5", "ms")}


if __name__ == "__main__":
    run()
