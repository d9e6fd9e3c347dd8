"""Results `ingest_vs_paho` and `ingest_vs_aiomqtt`: MQTT messages ingested per CPU second.

A real Mosquitto (tests.servers.MosquittoServer, persistence off, `max_queued_messages 0` so the
broker queues and never drops what a slow subscriber has not read yet) on a free loopback port.
The load is Debian's `mosquitto_pub`, one process per device (it publishes to one topic), 50
devices, each reading its lines from a file with `-l`: MESSAGES Zigbee2MQTT-style JSON reports
of about 90 bytes, {"temperature": 21.53, "humidity": 45.2, "battery": 97, "seq": 12, "id":
"sensor-007"} on `zigbee2mqtt/sensor-007`, at QoS 0 and, separately, at QoS 1. The 50
publishers are started by one shell, so this process pays a single fork for them, and together
they publish faster than any contender reads (the report prints the slowest publishing run next
to the fastest subscriber): the subscriber is the bottleneck and the broker holds the backlog.

Contenders, each a fresh client with its own client id, subscribed (SUBACK received) at the
run's QoS before the publishers start, one at a time, in the same run:

* paho: a bare paho-mqtt 2.x client on its own network thread (`loop_start`); on_message does
  `json.loads(payload)` and reads the five fields, nothing else. The reference of
  `ingest_vs_paho`.
* gateway: the gateway's path as gateway/mqtt_service.py wires it: drivers.mqtt.client.Connection
  (persistent session; it always subscribes at QoS 1, so QoS 0 messages arrive at QoS 0),
  its handler calls drivers.mqtt.ingest.Ingest.on_message (an MQTT profile for the 50 devices,
  mapping temperature, humidity, battery and seq with valid ranges) and hands the Samples to
  drivers.mqtt.client.Handoff, which publishes them on an asyncio loop into
  gateway.influx_sink.InfluxSink.offer (LineEncoder.encode, batches of 5,000 lines joined into
  the body a Writer gets; the writer here only counts). Counted: Samples that reached the loop.
* aiomqtt: what a typical aiomqtt 2.x user writes: `async with aiomqtt.Client(...)`, `await
  client.subscribe(...)`, `async for message in client.messages:` json.loads and the same five
  field reads. The reference of `ingest_vs_aiomqtt`.

The figure is messages per CPU second of this process (getrusage: user + system, every thread),
from the first message the contender sees to the last. Why CPU and not wall time: this machine
has two cores shared by the broker, 50 publishers and the subscriber, so a wall rate measures
how the scheduler shares them as much as the subscriber's code; and at QoS 1 the wall rate is
capped by the broker's in-flight window (20 unacknowledged messages per client) and the
round trips, not by the subscriber. CPU per message is what the code costs, whatever the
machine does around it; the wall rate is printed too, for information. All three contenders
are measured the same way, in the same process, one after the other, each with nothing else of
its own running. Each (contender, QoS) is measured REPEATS times, the order rotated every round,
and keeps its best round: noise only ever adds CPU.

value = gateway rate / reference rate, per QoS; each result is the worse of QoS 0 and QoS 1.

`python -m bench.bench_ingest --profile` prints where the gateway path's CPU goes: per-thread CPU
(paho's network thread against the event loop) and cProfile of each thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import cProfile
import gc
import json
import math
import os
import pstats
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import aiomqtt
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from bench.common import HOST, Result, cpu_seconds, quiet_logs, result, us
from core.types import Sample
from drivers.mqtt.client import BrokerSettings, Connection, Handoff
from drivers.mqtt.ingest import Ingest, MqttDevice
from drivers.mqtt.profile import MqttProfile
from gateway.influx_sink import InfluxSink
from gateway.influx_writer import Batch, Writer
from gateway.lineproto import LineEncoder, series_prefix
from tests.servers import MosquittoServer

DEVICES = 50
MESSAGES = 20_000  # per run, spread evenly over the devices
REPEATS = 3
QOS_LEVELS = (0, 1)
BATCH = 5000  # InfluxSink.max_points: the site default
STALL = 3.0  # s without progress after the publishers exit: the run is over, incomplete
DEADLINE = 60.0  # s for one run, whatever happens
SITE = "bench"
TOPIC_PREFIX = "zigbee2mqtt"

# One shell starts every publisher: this process forks once, not 50 times, inside the window.
_PUBLISHERS = """
host=$1 port=$2 qos=$3 dir=$4
for f in "$dir"/*.txt; do
  name=${f##*/}
  mosquitto_pub -h "$host" -p "$port" -q "$qos" -M 1000 -i "bench-pub-$qos-${name%.txt}" \
    -t "zigbee2mqtt/${name%.txt}" -l < "$f" &
done
wait
"""


def device_ids() -> list[str]:
    return [f"sensor-{i:03d}" for i in range(DEVICES)]


def make_payloads(directory: Path) -> int:
    """One file of JSON lines per device; returns the average payload size in bytes."""
    rng = random.Random(7)
    per_device = MESSAGES // DEVICES
    total = 0
    for device in device_ids():
        lines = []
        for seq in range(per_device):
            doc = {
                "temperature": round(rng.uniform(18.0, 27.0), 2),
                "humidity": round(rng.uniform(30.0, 65.0), 1),
                "battery": rng.randint(60, 100),
                "seq": seq,
                "id": device,
            }
            line = json.dumps(doc)
            total += len(line)
            lines.append(line)
        (directory / f"{device}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return round(total / (per_device * DEVICES))


def sensor_profile() -> MqttProfile:
    """A Zigbee2MQTT temperature sensor (config/profiles/z2m_temperature_humidity.yaml's shape,
    without availability, plus the sequence number the load carries)."""
    return MqttProfile.model_validate(
        {
            "name": "bench_z2m_sensor",
            "protocol": "mqtt",
            "kind": "sensor",
            "variables": ["id"],
            "messages": [
                {
                    "topic": TOPIC_PREFIX + "/{id}",
                    "format": "json",
                    "points": [
                        {
                            "name": "temperature_degc",
                            "path": "temperature",
                            "unit": "degC",
                            "valid": {"min": -40, "max": 85},
                        },
                        {
                            "name": "humidity_pct",
                            "path": "humidity",
                            "unit": "%",
                            "valid": {"min": 0, "max": 100},
                        },
                        {
                            "name": "battery_pct",
                            "path": "battery",
                            "type": "int",
                            "valid": {"min": 0, "max": 100},
                            "optional": True,
                        },
                        {"name": "seq", "path": "seq", "type": "int"},
                    ],
                }
            ],
        }
    )


# -- the broker and the load ---------------------------------------------------------------


class _Broker(MosquittoServer):
    """tests.servers.MosquittoServer with an unbounded per-client queue.

    Mosquitto's default (max_queued_messages 1000) drops QoS 0 messages, and QoS 1 messages
    beyond the in-flight window, once a subscriber is 1000 behind; the publishers here are
    faster than every subscriber on purpose, so the backlog must wait, not vanish.
    """

    def _prepare(self) -> None:
        super()._prepare()
        with self.config_path.open("a", encoding="utf-8") as config:
            config.write("max_queued_messages 0\n")


class Load:
    """The 50 mosquitto_pub processes of one run, under one shell in its own process group."""

    def __init__(self, port: int, directory: Path) -> None:
        self.port = port
        self.directory = directory
        self.elapsed = math.nan  # wall seconds from start until the last publisher exited
        self._proc: subprocess.Popen[bytes] | None = None
        self._started = 0.0

    def start(self, qos: int) -> None:
        self.elapsed = math.nan
        self._started = time.perf_counter()
        self._proc = subprocess.Popen(
            ["sh", "-c", _PUBLISHERS, "sh", HOST, str(self.port), str(qos), str(self.directory)],
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own group: stop() can end the shell and its children
        )

    def running(self) -> bool:
        if self._proc is None or self._proc.poll() is not None:
            if math.isnan(self.elapsed):
                self.elapsed = time.perf_counter() - self._started
            return False
        return True

    def stop(self) -> None:
        proc = self._proc
        if proc is None:
            return
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=5)
        self.running()  # records elapsed, if the polls have not yet
        self._proc = None


# -- measuring -----------------------------------------------------------------------------


class Meter:
    """Counts what a contender delivered; CPU and wall clock at the first and the last one.

    `hit()` is the only per-message cost the measurement adds, and all contenders pay it.
    """

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.count = 0
        self.cpu0 = self.wall0 = math.nan
        self.cpu1 = self.wall1 = math.nan

    def hit(self) -> None:
        self.count += 1
        if self.count == 1:
            self.cpu0, self.wall0 = cpu_seconds(), time.perf_counter()
        elif self.count == self.expected:
            self.cpu1, self.wall1 = cpu_seconds(), time.perf_counter()

    @property
    def done(self) -> bool:
        return self.count >= self.expected

    async def wait(self, load: Load) -> None:
        """Until every message is in, or the load has ended and nothing came for STALL s."""
        deadline = time.monotonic() + DEADLINE
        last, last_change = -1, time.monotonic()
        while not self.done and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
            publishing = load.running()  # every poll: notes when the publishers are done
            if self.count != last:
                last, last_change = self.count, time.monotonic()
            elif not publishing and time.monotonic() - last_change > STALL:
                break
        if not self.done:  # incomplete: the window ends now (idle time adds little CPU)
            self.cpu1, self.wall1 = cpu_seconds(), time.perf_counter()


@dataclass
class Run:
    count: int
    cpu: float
    wall: float
    publishing: float  # wall seconds the publishers took for all MESSAGES

    @property
    def rate(self) -> float:
        """Messages per CPU second (the first message opens the window: count - 1 inside it)."""
        return (self.count - 1) / self.cpu if self.cpu > 0 else math.nan

    @property
    def wall_rate(self) -> float:
        return (self.count - 1) / self.wall if self.wall > 0 else math.nan


@dataclass
class Figures:
    runs: list[Run] = field(default_factory=list)

    def best(self) -> Run:
        return max(self.runs, key=lambda r: r.rate)


Contender = Callable[[int, int, Meter, str], AbstractAsyncContextManager[None]]

# -- contenders ----------------------------------------------------------------------------


class _Last:
    """Where the bare contenders put the fields they read (so the reads are not dead code)."""

    fields: tuple[Any, ...] = ()


@asynccontextmanager
async def paho_bare(port: int, qos: int, meter: Meter, client_id: str) -> AsyncIterator[None]:
    last = _Last()
    hit = meter.hit

    def on_message(_client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        doc = json.loads(message.payload)
        last.fields = (
            doc["temperature"],
            doc["humidity"],
            doc["battery"],
            doc["seq"],
            doc["id"],
        )
        hit()

    subscribed = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
    client.on_message = on_message
    client.on_subscribe = lambda *_args: subscribed.set()
    client.connect(HOST, port)
    client.loop_start()
    try:
        client.subscribe(f"{TOPIC_PREFIX}/+", qos)
        if not await asyncio.to_thread(subscribed.wait, 10):
            raise RuntimeError("paho: no SUBACK")
        yield
    finally:
        client.disconnect()
        client.loop_stop()


class _CountingWriter:
    """Stands in for gateway.influx_writer.Writer: takes the batches, delivers nothing."""

    def __init__(self) -> None:
        self.batches = 0
        self.points = 0

    def submit(self, batch: Batch) -> None:
        self.batches += 1
        self.points += batch.points


@dataclass
class GatewayParts:
    """What the gateway contender built, for its checks and for --profile."""

    ingest: Ingest
    sink: InfluxSink
    writer: _CountingWriter
    handoff: Handoff
    on_message: Callable[[str, bytes, Any], None]
    publish: Callable[[Sample], None]


def gateway_parts(loop: asyncio.AbstractEventLoop, meter: Meter) -> GatewayParts:
    profile = sensor_profile()
    devices = [MqttDevice(d, profile, "bench", {"id": d}) for d in device_ids()]
    ingest = Ingest(devices)
    encoder = LineEncoder(
        {
            d.id: series_prefix("sensor", {"site": SITE, "device": d.id, "kind": "sensor"})
            for d in devices
        }
    )
    writer = _CountingWriter()
    sink = InfluxSink(encoder, cast(Writer, writer), BATCH, 1.0)
    offer, hit = sink.offer, meter.hit

    def publish(sample: Sample) -> None:  # the bus, with the sink as its subscriber
        offer(sample)
        hit()

    handoff = Handoff(loop, publish)
    prefix = f"guanjia/{SITE}"
    put, on_message = handoff.put, ingest.on_message

    def handle(topic: str, payload: bytes, _message: Any) -> None:
        # MqttService._message_handler on the home broker: commands first, then ingest.
        if topic.endswith("/set") and topic.startswith(prefix + "/"):
            return
        put(on_message(topic, payload))

    return GatewayParts(ingest, sink, writer, handoff, handle, publish)


def _forget_session(port: int, client_id: str) -> None:
    """The gateway's session is persistent: end it, or the broker queues for it ever after."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True)
    with contextlib.suppress(OSError):
        client.connect(HOST, port)
        client.loop(timeout=0.5)
        client.disconnect()


@asynccontextmanager
async def gateway(port: int, qos: int, meter: Meter, client_id: str) -> AsyncIterator[None]:
    parts = gateway_parts(asyncio.get_running_loop(), meter)
    async with _gateway_connection(port, client_id, parts):
        yield
    parts.sink.flush()
    _check_gateway(parts, meter)


@asynccontextmanager
async def _gateway_connection(
    port: int, client_id: str, parts: GatewayParts
) -> AsyncIterator[None]:
    settings = BrokerSettings(name="bench", host=HOST, port=port, client_id=client_id)
    connection = Connection(settings, parts.ingest.router.filters(), parts.on_message)
    subscribed = threading.Event()
    connection.client.on_subscribe = lambda *_args: subscribed.set()  # observe the SUBACK only
    connection.start()
    try:
        if not await asyncio.to_thread(subscribed.wait, 10):
            raise RuntimeError("gateway: no SUBACK")
        yield
    finally:
        await asyncio.to_thread(connection.stop)
        await asyncio.to_thread(_forget_session, port, client_id)


def _check_gateway(parts: GatewayParts, meter: Meter) -> None:
    stats = parts.ingest.stats
    if stats.rejected or stats.unclaimed or stats.problems.total() or parts.handoff.dropped:
        print(
            f"  WARNING: gateway rejected {stats.rejected}, unclaimed {stats.unclaimed}, "
            f"problems {dict(stats.problems.counts)}, handoff dropped {parts.handoff.dropped}"
        )
    if parts.writer.points != meter.count:
        print(f"  WARNING: {parts.writer.points} lines reached the writer, {meter.count} samples")


@asynccontextmanager
async def aiomqtt_naive(port: int, qos: int, meter: Meter, client_id: str) -> AsyncIterator[None]:
    last = _Last()

    async def consume(client: aiomqtt.Client) -> None:
        async for message in client.messages:
            doc = json.loads(message.payload)
            last.fields = (
                doc["temperature"],
                doc["humidity"],
                doc["battery"],
                doc["seq"],
                doc["id"],
            )
            meter.hit()

    async with aiomqtt.Client(HOST, port, identifier=client_id) as client:
        await client.subscribe(f"{TOPIC_PREFIX}/+", qos=qos)
        task = asyncio.create_task(consume(client))
        try:
            yield
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


CONTENDERS: dict[str, Contender] = {
    "paho": paho_bare,
    "gateway": gateway,
    "aiomqtt": aiomqtt_naive,
}


async def measure_once(
    contender: Contender, port: int, qos: int, load: Load, client_id: str
) -> Run:
    meter = Meter(MESSAGES)
    try:
        async with contender(port, qos, meter, client_id):
            load.start(qos)
            await meter.wait(load)
    finally:
        load.stop()
    if meter.count < MESSAGES:
        print(f"  WARNING: {client_id} received {meter.count} of {MESSAGES}")
    return Run(meter.count, meter.cpu1 - meter.cpu0, meter.wall1 - meter.wall0, load.elapsed)


def measure(port: int, load: Load) -> dict[int, dict[str, Figures]]:
    figures = {qos: {name: Figures() for name in CONTENDERS} for qos in QOS_LEVELS}
    names = list(CONTENDERS)
    for round_ in range(REPEATS):
        for qos in QOS_LEVELS:
            shift = round_ % len(names)
            for name in names[shift:] + names[:shift]:
                gc.collect()
                client_id = f"bench-{name}-q{qos}-r{round_}"
                run = asyncio.run(measure_once(CONTENDERS[name], port, qos, load, client_id))
                figures[qos][name].runs.append(run)
    return figures


def _report(figures: dict[int, dict[str, Figures]], size: int) -> dict[str, float]:
    print(
        f"ingest: {MESSAGES} JSON messages of ~{size} bytes on {DEVICES} topics per run, from "
        f"{DEVICES} mosquitto_pub; messages per CPU second of this process (all threads), "
        f"first to last message, best of {REPEATS} rounds"
    )
    worst = {"paho": math.inf, "aiomqtt": math.inf}
    for qos, by_name in figures.items():
        print(f"  QoS {qos}:")
        best = {name: f.best() for name, f in by_name.items()}
        for name, f in by_name.items():
            b = best[name]
            rounds = ", ".join(f"{r.rate:,.0f}" for r in f.runs)
            print(
                f"    {name:8s} {b.rate:>9,.0f} msg/CPU-s = {us(1 / b.rate):>8s} CPU/msg, "
                f"wall {b.wall_rate:>8,.0f} msg/s, {b.count} msgs (rounds: {rounds})"
            )
        slowest_load = max(r.publishing for f in by_name.values() for r in f.runs)
        fastest_reader = max(f.best().wall_rate for f in by_name.values())
        print(
            f"    publishers: slowest run {MESSAGES / slowest_load:,.0f} msg/s wall "
            f"({slowest_load:.2f} s), fastest subscriber {fastest_reader:,.0f} msg/s wall"
        )
        for ref in worst:
            ratio = best["gateway"].rate / best[ref].rate
            worst[ref] = min(worst[ref], ratio)
            wall = best["gateway"].wall_rate / best[ref].wall_rate
            print(f"    gateway / {ref:8s} = {ratio:.3f} (wall-rate ratio {wall:.3f})")
    print(f"  ingest_vs_paho = {worst['paho']:.3f}, worse of both QoS (target >= 0.6)")
    print(f"  ingest_vs_aiomqtt = {worst['aiomqtt']:.3f}, worse of both QoS (target >= 1.5)")
    return worst


@contextlib.contextmanager
def _setup() -> Iterator[tuple[int, Load, int]]:
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        directory = Path(tmp)
        load_dir = directory / "load"
        load_dir.mkdir()
        size = make_payloads(load_dir)
        with _Broker(directory / "broker", persistence=False) as broker, quiet_logs():
            yield broker.port, Load(broker.port, load_dir), size


def run() -> dict[str, Result]:
    with _setup() as (port, load, size):
        figures = measure(port, load)
    worst = _report(figures, size)
    return {
        "ingest_vs_paho": result(worst["paho"], ">= 0.6", "x"),
        "ingest_vs_aiomqtt": result(worst["aiomqtt"], ">= 1.5", "x"),
    }


# -- --profile -----------------------------------------------------------------------------


async def _profile_once(port: int, qos: int, load: Load) -> None:
    """The gateway path once, with a profiler and a thread clock in each of its two threads."""
    meter = Meter(MESSAGES)
    parts = gateway_parts(asyncio.get_running_loop(), meter)
    net, loop = cProfile.Profile(), cProfile.Profile()
    clocks: dict[str, float] = {}
    handle, publish, seen = parts.on_message, parts.publish, [0, 0]

    def profiled_handle(topic: str, payload: bytes, message: Any) -> None:
        seen[0] += 1
        if seen[0] == 1:
            clocks["net0"] = time.thread_time()
            net.enable()
        handle(topic, payload, message)
        if seen[0] == MESSAGES:
            net.disable()
            clocks["net1"] = time.thread_time()

    def profiled_publish(sample: Sample) -> None:
        seen[1] += 1
        if seen[1] == 1:
            clocks["loop0"] = time.thread_time()
            loop.enable()
        publish(sample)
        if seen[1] == MESSAGES:
            loop.disable()
            clocks["loop1"] = time.thread_time()

    parts.on_message = profiled_handle
    parts.handoff.publish = profiled_publish
    try:
        async with _gateway_connection(port, f"bench-profile-q{qos}", parts):
            load.start(qos)
            await meter.wait(load)
    finally:
        load.stop()
    if len(clocks) < 4:
        print(f"  QoS {qos}: incomplete ({meter.count} of {MESSAGES}); no profile")
        return
    n = MESSAGES
    total = (meter.cpu1 - meter.cpu0) / n
    print(
        f"== QoS {qos}: {us(total)} CPU/msg in all; paho network thread (paho + Ingest + "
        f"Handoff.put) {us((clocks['net1'] - clocks['net0']) / n)}, event loop (Handoff drain "
        f"+ InfluxSink.offer) {us((clocks['loop1'] - clocks['loop0']) / n)} (profiler on)"
    )
    for title, prof in (("network thread", net), ("event loop", loop)):
        print(f"-- {title}, by own time")
        pstats.Stats(prof).sort_stats("tottime").print_stats(14)


def profile() -> None:
    with _setup() as (port, load, _size):
        for qos in QOS_LEVELS:
            asyncio.run(_profile_once(port, qos, load))


if __name__ == "__main__":
    if "--profile" in sys.argv[1:]:
        profile()
    else:
        run()
