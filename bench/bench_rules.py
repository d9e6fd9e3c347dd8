"""Results `rules_cpu` and `rules_p99_ms`: what 2,000 rules cost the ingest path, and how fast an
alarm transition is recorded and published.

The site, built in code: 1,000 Modbus meters (profile `bench_meter8`, eight float32 points:
three voltages, three currents, total active power, imported energy; tags building / floor /
zone) and 2,000 `threshold` rules, two per meter, each scoped to its meter by id:
`active_power_total_w` above 60,000 W (hysteresis 2,000 W) and `voltage_l1_v` below 200 V
(hysteresis 4 V), on_delay and off_delay 0. Readings are float32-exact values well within the
limits (218-236 V, 3-45 kW); a chosen few cross a limit (see below), so alarms are rare.

Wiring, as gateway/service.py's Gateway does it: a gateway.service.Bus whose subscribers are
gateway.influx_sink.InfluxSink.offer (a LineEncoder with the prefixes of
gateway.service.series_prefixes and float32 formats, batches of 5,000 lines, a writer that only
counts batches: no HTTP), the gateway's "latest sample" dict, and — with rules — the real
gateway.alarm_service.AlarmService.observe. The AlarmService is the real one, built from a
LoadedSite made in code (rules through rules.registry.build_rules from the site's rule entries,
DeviceInfos through device_infos, the WorkCalendar, the alarm catalog), with its real
gateway.alarm_store.AlarmStore (SQLite, WAL, synchronous=FULL) in a temporary directory on the
local disk; its alarm lines go to InfluxSink.offer_line, its MQTT publish is a counter (no
broker), and the `guanjia.alarms` log goes through a handler with the CLI's format into
/dev/null (the gateway logs every transition; here nothing is printed). The command router has
a Modbus driver with no devices (threshold rules issue no commands).

rules_cpu: CPU per reading (time.process_time) of Bus.publish for 50,000 Samples (50 polls of
every meter, round robin, 8 readings each), with the 2,000 rules and the AlarmService against
the same Bus without them (a site without rules has no AlarmService), measured alternately in
the same run, best of 3 each, after one warm-up poll of every meter. One reading in 2,000
crosses a limit, so a few dozen alarms are raised and cleared per round (SQLite fsync time is
I/O wait, not CPU). value = CPU per reading with rules / without (target <= 1.2). Printed
besides: the CPU of one AlarmService.tick (run once a second by the gateway: the engine tick,
escalation, and saving every changed rule snapshot), per reading at 5,000 Samples/s, and the
CPU per Sample of the rules' parts measured one by one on readings within limits
(AlarmService.observe, Engine.on_sample, the two ThresholdRule.on_sample calls, the engine's
clock + ctx.set_now, and Engine.on_sample for a device no rule watches).

rules_p99_ms: Samples are fed at 5,000 per second (a reading here is one Sample: a meter poll of
8 values) from a coroutine on an asyncio event loop, the AlarmService's once-a-second tick
running as in the gateway: the feeder sleeps until the next Sample is due and publishes every
due one. One reading in 200 crosses a limit (raise), and that meter's next reading, 0.2 s later,
is back within limits (clear): 1 % of readings make a transition. For each reading that made one
(AlarmService.transitions moved), latency = from just before Bus.publish to just after it
returns, i.e. after book.apply, AlarmStore.save (one BEGIN IMMEDIATE ... COMMIT, fsynced), the
texts, the line and the MQTT publish. value = p99 of that, in ms (target < 10). Printed for
context: p50/p99/max, the same from the reading's scheduled arrival (adds the wait behind
earlier readings and the tick), the part inside AlarmService._apply (its own latency list), the
wall time of each tick (it runs on the loop, so readings wait for it), and the same run with the
store replaced by an in-memory stand-in (no SQLite at all).

`python -m bench.bench_rules --profile` prints where the time goes (cProfile): the rules CPU
path, one AlarmService.tick, and the transitions of a paced run with SQLite.
"""

from __future__ import annotations

import asyncio
import contextlib
import cProfile
import gc
import logging
import os
import pstats
import random
import struct
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from bench.common import HOST, Result, median, ms, percentile, result, us
from core.field_types import float_format
from core.types import Sample, Value
from drivers.modbus.driver import ModbusDriver
from drivers.modbus.profile import Profile
from gateway.alarm_service import AlarmService
from gateway.alarm_store import AlarmStore
from gateway.commands import CommandRouter
from gateway.config_load import LoadedSite
from gateway.influx_sink import InfluxSink
from gateway.influx_writer import Batch, Writer
from gateway.lineproto import LineEncoder
from gateway.service import Bus, series_prefixes
from gateway.site import Site
from rules.alarms import AlarmBook, Transition
from rules.engine import Engine

DEVICES = 1000
PROFILE = "bench_meter8"
SITE = "bench"
POINTS: tuple[tuple[str, str], ...] = (
    ("voltage_l1_v", "V"),
    ("voltage_l2_v", "V"),
    ("voltage_l3_v", "V"),
    ("current_l1_a", "A"),
    ("current_l2_a", "A"),
    ("current_l3_a", "A"),
    ("active_power_total_w", "W"),
    ("energy_import_kwh", "kWh"),
)
POWER_ABOVE, POWER_HYSTERESIS = 60_000.0, 2_000.0
VOLTAGE_BELOW, VOLTAGE_HYSTERESIS = 200.0, 4.0
BATCH = 5000  # InfluxSink.max_points: the site default

CPU_SAMPLES = 50 * DEVICES
CPU_CROSS_EVERY = 2000  # one reading in 2,000 crosses a limit: alarms are rare
REPEATS = 3

RATE = 5000.0  # readings (Samples) per second
LATENCY_SECONDS = 10.0  # with SQLite
MEMORY_SECONDS = 4.0  # the in-memory context run
LATENCY_CROSS_EVERY = 200  # + the clear on the next reading: 1 % make a transition

LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"  # gateway/cli.py's


# -- the site ------------------------------------------------------------------------------


def device_ids() -> list[str]:
    return [f"meter-{i:04d}" for i in range(DEVICES)]


def meter_profile() -> Profile:
    return Profile.model_validate(
        {
            "name": PROFILE,
            "kind": "meter",
            "defaults": {"function": "holding", "type": "float32"},
            "points": [
                {"name": name, "address": 2 * i, "unit": unit}
                for i, (name, unit) in enumerate(POINTS)
            ],
        }
    )


def rule_entries(ids: Sequence[str]) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    for d in ids:
        scope = {"devices": [d]}
        entries.append(
            {
                "id": f"{d}-power-high",
                "kind": "threshold",
                "scope": scope,
                "point": "active_power_total_w",
                "above": POWER_ABOVE,
                "hysteresis": POWER_HYSTERESIS,
            }
        )
        entries.append(
            {
                "id": f"{d}-voltage-low",
                "kind": "threshold",
                "scope": scope,
                "point": "voltage_l1_v",
                "below": VOLTAGE_BELOW,
                "hysteresis": VOLTAGE_HYSTERESIS,
            }
        )
    return entries


def make_site(directory: Path, *, with_rules: bool) -> LoadedSite:
    ids = device_ids()
    devices = [
        {
            "id": d,
            "profile": PROFILE,
            "modbus": {"transport": "tcp", "host": HOST, "port": 15020 + i // 100, "unit": 1},
            "poll": 0.2,
            "tags": {"floor": f"{i // 100 + 1}F", "zone": f"{i // 100 + 1}{i % 100:02d}"},
        }
        for i, d in enumerate(ids)
    ]
    site = Site.model_validate(
        {
            "site": {"name": "bench", "id": SITE, "tags": {"building": "main"}},
            "alarms": {"store": str(directory / "alarms.sqlite")},
            "rules": rule_entries(ids) if with_rules else [],
            "devices": devices,
        }
    )
    return LoadedSite(directory / "site.yaml", site, {PROFILE: meter_profile()})


# -- the readings --------------------------------------------------------------------------


def _f32(value: float) -> float:
    """What a float32 register pair decodes to: the long repr a real meter value has."""
    decoded: float = struct.unpack(">f", struct.pack(">f", value))[0]
    return decoded


def make_samples(count: int, cross_every: int, seed: int) -> tuple[list[Sample], int]:
    """`count` polls, round robin over the meters; about one in `cross_every` crosses a limit
    (power or voltage, at random), and that meter's next poll is back within limits.
    Returns the Samples and how many cross."""
    rng = random.Random(seed)
    ids = device_ids()
    energy = [rng.uniform(1e4, 1e6) for _ in ids]
    start = 1_700_000_000_000_000_000
    samples: list[Sample] = []
    crossings = 0
    for i in range(count):
        d = i % DEVICES
        energy[d] += rng.uniform(0.0, 0.05)
        voltage = rng.uniform(218.0, 236.0)
        power = rng.uniform(3_000.0, 45_000.0)
        if rng.randrange(cross_every) == 0:
            crossings += 1
            if rng.random() < 0.5:
                power = rng.uniform(POWER_ABOVE + 500.0, POWER_ABOVE + 8_000.0)
            else:
                voltage = rng.uniform(VOLTAGE_BELOW - 12.0, VOLTAGE_BELOW - 0.5)
        values: dict[str, Value] = {
            "voltage_l1_v": _f32(voltage),
            "voltage_l2_v": _f32(rng.uniform(218.0, 236.0)),
            "voltage_l3_v": _f32(rng.uniform(218.0, 236.0)),
            "current_l1_a": _f32(rng.uniform(5.0, 80.0)),
            "current_l2_a": _f32(rng.uniform(5.0, 80.0)),
            "current_l3_a": _f32(rng.uniform(5.0, 80.0)),
            "active_power_total_w": _f32(power),
            "energy_import_kwh": _f32(energy[d]),
        }
        samples.append(Sample(ids[d], start + i * 200_000, values))
    return samples, crossings


# -- the path ------------------------------------------------------------------------------


class _CountingWriter:
    """Stands in for gateway.influx_writer.Writer: takes the batches, delivers nothing."""

    def __init__(self) -> None:
        self.batches = 0
        self.points = 0

    def submit(self, batch: Batch) -> None:
        self.batches += 1
        self.points += batch.points

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass


class _Published:
    """Stands in for the MQTT home connection's publish: counts the retained alarm messages."""

    def __init__(self) -> None:
        self.messages = 0

    def __call__(self, topic: str, payload: str, retain: bool) -> None:
        self.messages += 1


class _MemoryStore:
    """AlarmStore without SQLite: saving only tells the book its alarms are saved."""

    def save(
        self,
        transitions: Sequence[Transition],
        book: AlarmBook,
        *,
        acks_done: Iterable[tuple[int, str]] = (),
        rule_states: Mapping[str, Mapping[str, Any]] | None = None,
        t: float | None = None,
    ) -> None:
        book.saved(book.unsaved())

    def pending_acks(self) -> list[Any]:
        return []

    def close(self) -> None:
        pass


@dataclass
class IngestPath:
    """One ingest path: the bus and what hangs on it."""

    bus: Bus
    sink: InfluxSink
    writer: _CountingWriter
    alarms: AlarmService | None = None
    published: _Published = field(default_factory=_Published)
    setup_s: float = 0.0


def build_path(directory: Path, *, with_rules: bool) -> IngestPath:
    started = time.perf_counter()
    loaded = make_site(directory, with_rules=with_rules)
    formats = {
        d: {name: float_format("float32", False) for name, _ in POINTS} for d in device_ids()
    }
    writer = _CountingWriter()
    sink = InfluxSink(
        LineEncoder(series_prefixes(loaded), formats), cast(Writer, writer), BATCH, 1.0
    )
    bus = Bus()
    latest: dict[str, Sample] = {}

    def remember(sample: Sample) -> None:  # Gateway._remember
        latest[sample.device] = sample

    bus.subscribe(sink.offer)
    bus.subscribe(remember)
    path = IngestPath(bus, sink, writer)
    if loaded.site.rules:
        commands = CommandRouter(SITE, ModbusDriver([], bus.publish), [], sink.offer_line)
        path.alarms = AlarmService(
            loaded,
            commands,
            sink.offer_line,
            path.published,
            store_path=Path(loaded.site.alarms.store),
        )
        bus.subscribe(path.alarms.observe)
    path.setup_s = time.perf_counter() - started
    return path


@contextlib.contextmanager
def alarm_log() -> Iterator[None]:
    """The gateway's log handler (CLI format, INFO) on `guanjia.alarms`, writing to /dev/null."""
    logger = logging.getLogger("guanjia.alarms")
    old = logger.level, logger.propagate
    with open(os.devnull, "w", encoding="utf-8") as sink:
        handler = logging.StreamHandler(sink)
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
        try:
            yield
        finally:
            logger.removeHandler(handler)
            logger.setLevel(old[0])
            logger.propagate = old[1]


def _fs_type(path: Path) -> str:
    """The file system holding `path` (from /proc/mounts): tmpfs would make fsync free."""
    best, kind = "", "?"
    with contextlib.suppress(OSError), open("/proc/mounts", encoding="utf-8") as mounts:
        for line in mounts:
            parts = line.split()
            if len(parts) >= 3 and str(path).startswith(parts[1]) and len(parts[1]) > len(best):
                best, kind = parts[1], parts[2]
    return kind


# -- rules_cpu -----------------------------------------------------------------------------


def cpu_round(path: IngestPath, samples: Sequence[Sample]) -> float:
    publish = path.bus.publish
    gc.collect()
    started = time.process_time()
    for sample in samples:
        publish(sample)
    return time.process_time() - started


def tick_cpu(service: AlarmService) -> float:
    started = time.process_time()
    service.tick(time.time())
    return time.process_time() - started


def measure_cpu(directory: Path) -> tuple[float, dict[str, float]]:
    samples, crossings = make_samples(CPU_SAMPLES, CPU_CROSS_EVERY, seed=1)
    warm, _ = make_samples(DEVICES, 10**9, seed=2)
    plain = build_path(directory / "plain", with_rules=False)
    rules = build_path(directory / "rules", with_rules=True)
    assert rules.alarms is not None
    service = rules.alarms
    print(
        f"   site: {DEVICES} meters x {len(POINTS)} float32 points, "
        f"{len(service.engine.rules)} threshold rules; "
        f"setup {plain.setup_s:.2f} s without rules, {rules.setup_s:.2f} s with "
        f"(Engine binds every rule's scope against every device)"
    )
    for path in (plain, rules):
        for sample in warm:
            path.bus.publish(sample)
    transitions0 = service.transitions
    best = {"plain": float("inf"), "rules": float("inf")}
    for _ in range(REPEATS):
        best["plain"] = min(best["plain"], cpu_round(plain, samples))
        best["rules"] = min(best["rules"], cpu_round(rules, samples))
    transitions = (service.transitions - transitions0) / REPEATS
    ticks = [tick_cpu(service) for _ in range(3)]  # the first one saves every rule's snapshot
    tick_first, tick_steady = ticks[0], min(ticks[1:])
    # One more round, then a tick: what a tick costs after a second's worth of readings.
    cpu_round(rules, samples[: int(RATE)])
    tick_after = tick_cpu(service)
    readings = len(samples) * len(POINTS)
    per = {k: v / readings for k, v in best.items()}
    ratio = per["rules"] / per["plain"]
    print(
        f"   CPU per reading (best of {REPEATS}, {len(samples):,} Samples = {readings:,} "
        f"readings, {crossings} crossings -> {transitions:.0f} transitions per round):"
    )
    print(
        f"     without rules {us(per['plain'])} ({us(best['plain'] / len(samples))} per Sample), "
        f"with 2,000 rules {us(per['rules'])} ({us(best['rules'] / len(samples))} per Sample)"
    )
    print(
        f"     ratio {ratio:.3f} (target <= 1.2); rules add "
        f"{us((best['rules'] - best['plain']) / len(samples))} per Sample"
    )
    tick_per_reading = tick_after / (RATE * len(POINTS))
    print(
        f"   AlarmService.tick CPU: {ms(tick_first)} first, {ms(tick_steady)} with nothing "
        f"changed, {ms(tick_after)} after {int(RATE):,} Samples "
        f"(= {us(tick_per_reading)} per reading at {RATE:,.0f} Samples/s; with it the ratio "
        f"would be {(per['rules'] + tick_per_reading) / per['plain']:.3f})"
    )
    breakdown(service)
    print(
        f"   ingest: {rules.sink.lines_encoded:,} lines, {rules.writer.batches} batches; "
        f"{service.transitions} transitions, {rules.published.messages} MQTT messages"
    )
    asyncio.run(service.stop())
    return ratio, {"plain_s": best["plain"], "rules_s": best["rules"]}


def breakdown(service: AlarmService) -> None:
    """Where the added CPU goes, without a profiler: the engine's parts, on readings that cross
    no limit (nothing reaches the alarm book)."""
    clean, _ = make_samples(CPU_SAMPLES // 5, 10**9, seed=5)
    engine = service.engine
    bare = Engine([], list(engine.devices.values()), service.calendar)
    ctx = engine.ctx
    pairs = [(s, engine.by_device[s.device]) for s in clean]

    def observe() -> None:
        for s in clean:
            service.observe(s)

    def engine_full() -> None:
        for s in clean:
            engine.on_sample(s)

    def engine_bare() -> None:
        for s in clean:
            bare.on_sample(s)

    def rules_only() -> None:
        for s, rules in pairs:
            for rule in rules:
                rule.on_sample(s, ctx)

    def clock() -> None:
        for _ in clean:
            ctx.set_now(engine.clock())

    parts: dict[str, Callable[[], None]] = {
        "AlarmService.observe": observe,
        "Engine.on_sample": engine_full,
        "  the two ThresholdRule.on_sample": rules_only,
        "  clock() + ctx.set_now": clock,
        "Engine.on_sample, no rule on the device": engine_bare,
    }
    best = dict.fromkeys(parts, float("inf"))
    for _ in range(REPEATS):  # interleaved, so a slow spell of the machine hits them all
        for name, work in parts.items():
            gc.collect()
            started = time.process_time()
            work()
            best[name] = min(best[name], time.process_time() - started)
    print("   CPU per Sample of the rules' parts (best of 3, readings within limits):")
    for name, value in best.items():
        print(f"     {name:42s} {us(value / len(clean))}")


# -- rules_p99_ms --------------------------------------------------------------------------


@dataclass
class Latency:
    transitions: int = 0
    samples: int = 0
    elapsed: float = 0.0
    publish: list[float] = field(default_factory=list)  # just before publish -> after
    scheduled: list[float] = field(default_factory=list)  # scheduled arrival -> after publish
    apply: list[float] = field(default_factory=list)  # AlarmService's own (_apply)
    ticks: list[float] = field(default_factory=list)  # wall time of each AlarmService.tick


async def paced(path: IngestPath, samples: Sequence[Sample], rate: float) -> Latency:
    service = path.alarms
    assert service is not None
    publish = path.bus.publish
    clock = time.perf_counter
    out = Latency()
    service.latency.clear()
    tick = service.tick

    def timed_tick(t: float) -> None:  # the same tick, its duration noted
        started = clock()
        tick(t)
        out.ticks.append(clock() - started)

    service.tick = timed_tick  # type: ignore[method-assign]
    service.start()  # the once-a-second tick, as in the gateway
    try:
        n = len(samples)
        t0 = clock()
        i = 0
        while i < n:
            due = min(n, int((clock() - t0) * rate) + 1)
            while i < due:
                before = service.transitions
                arrival = clock()
                publish(samples[i])
                done = clock()
                if service.transitions != before:
                    out.publish.append(done - arrival)
                    out.scheduled.append(done - (t0 + i / rate))
                i += 1
            await asyncio.sleep(max(0.0, t0 + i / rate - clock()))
        out.elapsed = clock() - t0
    finally:
        out.apply = list(service.latency)
        out.transitions = service.transitions
        await service.stop()
    out.samples = len(samples)
    return out


def run_latency(directory: Path, seconds: float, *, memory: bool, seed: int) -> Latency:
    samples, _ = make_samples(int(RATE * seconds), LATENCY_CROSS_EVERY, seed)
    path = build_path(directory, with_rules=True)
    assert path.alarms is not None
    if memory:
        path.alarms.store.close()
        path.alarms.store = cast(AlarmStore, _MemoryStore())
    warm, _ = make_samples(DEVICES, 10**9, seed + 100)
    for sample in warm:
        path.bus.publish(sample)
    gc.collect()
    return asyncio.run(paced(path, samples, RATE))


def describe(name: str, lat: Latency) -> None:
    rate = lat.samples / lat.elapsed if lat.elapsed else 0.0
    share = len(lat.publish) / lat.samples if lat.samples else 0.0
    print(
        f"   {name}: {lat.samples:,} Samples in {lat.elapsed:.2f} s ({rate:,.0f}/s), "
        f"{len(lat.publish)} made a transition ({share:.2%}), {lat.transitions} transitions"
    )
    for label, values in (
        ("arrival (before Bus.publish) -> saved + published", lat.publish),
        ("scheduled arrival -> saved + published", lat.scheduled),
        ("inside AlarmService._apply", lat.apply),
        (f"AlarmService.tick ({len(lat.ticks)}, wall time, blocks the loop)", lat.ticks),
    ):
        print(
            f"     {label:52s} p50 {ms(median(values))}, p99 {ms(percentile(values, 99))}, "
            f"max {ms(max(values, default=float('nan')))}"
        )


def measure_latency(directory: Path) -> float:
    print(f"   alarm store in {directory} ({_fs_type(directory)}), synchronous=FULL")
    sqlite = run_latency(directory / "sqlite", LATENCY_SECONDS, memory=False, seed=3)
    describe("SQLite store", sqlite)
    memory = run_latency(directory / "memory", MEMORY_SECONDS, memory=True, seed=4)
    describe("in-memory store (context)", memory)
    p99 = percentile(sqlite.publish, 99)
    ref = percentile(memory.publish, 99)
    print(
        f"   p99 {ms(p99)} (target < 10 ms); {p99 / ref:.1f}x the in-memory store's {ms(ref)}"
        if ref > 0
        else f"   p99 {ms(p99)} (target < 10 ms)"
    )
    return p99 * 1000.0


# -- entry points --------------------------------------------------------------------------


def run() -> dict[str, Result]:
    with alarm_log(), tempfile.TemporaryDirectory(prefix="bench-rules-") as tmp:
        directory = Path(tmp)
        ratio, _raw = measure_cpu(directory / "cpu")
        p99_ms = measure_latency(directory / "latency")
    return {
        "rules_cpu": result(ratio, "<= 1.2"),
        "rules_p99_ms": result(p99_ms, "< 10", "ms"),
    }


def _print_profile(profiler: cProfile.Profile, title: str, limit: int = 25) -> None:
    print(f"\n== {title}")
    stats = pstats.Stats(profiler)
    stats.sort_stats("tottime").print_stats(limit)


def profile() -> None:
    with alarm_log(), tempfile.TemporaryDirectory(prefix="bench-rules-") as tmp:
        directory = Path(tmp)
        samples, _ = make_samples(CPU_SAMPLES, CPU_CROSS_EVERY, seed=1)
        rules = build_path(directory / "rules", with_rules=True)
        assert rules.alarms is not None
        publish: Callable[[Sample], None] = rules.bus.publish
        for sample in samples[:DEVICES]:
            publish(sample)
        profiler = cProfile.Profile()
        profiler.enable()
        for sample in samples:
            publish(sample)
        profiler.disable()
        _print_profile(profiler, "rules CPU path: Bus.publish with 2,000 rules")

        profiler = cProfile.Profile()
        profiler.enable()
        rules.alarms.tick(time.time())
        profiler.disable()
        _print_profile(profiler, "one AlarmService.tick after 50 polls of every meter", 15)
        asyncio.run(rules.alarms.stop())

        paced_samples, _ = make_samples(int(RATE * 4), LATENCY_CROSS_EVERY, seed=3)
        path = build_path(directory / "latency", with_rules=True)
        service = path.alarms
        assert service is not None
        profiler = cProfile.Profile()
        observe = service._apply

        def profiled(effects: Any, t: float) -> None:
            profiler.enable()
            try:
                observe(effects, t)
            finally:
                profiler.disable()

        service._apply = profiled  # type: ignore[method-assign]
        asyncio.run(paced(path, paced_samples, RATE))
        _print_profile(profiler, "AlarmService._apply of the transitions (SQLite store)", 25)


if __name__ == "__main__":
    if "--profile" in sys.argv[1:]:
        profile()
    else:
        for key, value in run().items():
            print(f"{key}: {value}")
