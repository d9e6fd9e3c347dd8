"""Results `rules_cpu` and `rules_p99_ms`: what 2,000 rules cost the whole ingest path, and how
soon an alarm transition is durable and announced.

The gateway is the real one: gateway.service.Gateway on a site file loaded by load_site (see
bench/gateway_site.py: meters on the fake Modbus farm, a separate process; the InfluxDB sink
writing through the v2 write API to bench.common.FakeInflux, another process; with rules,
threshold rules, their runtime on its own inbox, the SQLite alarm store on the local disk on its
own thread). Its logging is the CLI's (format, INFO), into /dev/null.

rules_cpu: CPU per reading of the whole gateway process (getrusage: user + system, all threads:
the event loop, the InfluxDB writer, the alarm store) with 2,000 rules, against the same site
without rules (which has no rules runtime at all). The two gateways run side by side, each in a
process of its own (bench/gateway_proc.py), polling the same fake meters, and are measured over
the same WINDOWS windows of WINDOW seconds after WARMUP: on this shared two-core machine, rounds
run one after the other differed by up to 15 % from one another, more than the effect measured,
while side by side the machine's noise falls on both alike. The site is the one this figure has
always had: 1,000 meters (8 values each) with two threshold rules each, polled every 0.5 s
(2,000 polls, 16,000 readings a second). Two of the meters flip (bench.common.ModbusFarm(flip=
...)), so the rules raise and clear about 24 alarms a minute, each fsynced before it is
announced: several times the store's storm budget (a few a minute), so that their cost is in
the figure, without making it a storm benchmark (rules_p99_ms is that). A running gateway also
rewrites every rule's state once a minute (the saved thresholds move with the values); a window
this short would miss it, so the rules gateway measures it at the end
(bench.gateway_site.state_save_cpu) and it is spread over the minute's readings. value = CPU
per reading with rules (that share included) / without, over all windows (target <= 1.10).
Printed as information: the same for the dense site (200 meters every 100 ms
with ten rules each, also 2,000 rules), where every reading meets five times as many rules.

rules_p99_ms: the dense site (200 meters, 2,000 rules) with 100 meters flipping, raising and
clearing about 20 alarms a second (a storm: the store's budget is a few a minute). Each poller's
hand-over to the bus is stamped (the arrival), and a bus subscriber to
gateway.messages.AlarmTransition (registered after the InfluxDB sink, so its stamp comes after
the sinks have taken it) stamps the transition; the latency pairs the reading that first showed
a meter's new value with its rule's transition, which the rules runtime publishes only once the
alarm store has committed it (synchronous=FULL). value = p99 over LATENCY_SECONDS, in ms (target
< 10). The store's floor is printed beside it: one bare commit of one row in a WAL database with
synchronous=FULL, in the same directory, the same run.

`python -m bench.bench_rules --profile` prints where the rules site's CPU goes (cProfile of the
event loop's thread over a window).
"""

from __future__ import annotations

import asyncio
import cProfile
import pstats
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.common import (
    FakeInflux,
    ModbusFarm,
    Result,
    median,
    modbus_of,
    ms,
    percentile,
    result,
    us,
)
from bench.gateway_site import (
    DEVICES,
    FLIP_ABOVE,
    FLIP_POINT,
    INTERVAL,
    POINTS,
    RULES_PER_DEVICE,
    flip_rule_id,
    fs_type,
    gateway_logs,
    gateway_process,
    load,
    loadavg,
    stop_gateway,
    write_site,
)
from core.types import Sample
from gateway.alarm_store import AlarmStore
from gateway.messages import AlarmTransition
from gateway.service import Gateway

WARMUP = 4.0  # connections open, the first tick saved every rule's state
WINDOW = 4.0
WINDOWS = 6
FLIP_PERIOD = 10.0  # a flipping meter raises and clears once per period (no flapping in a run)
CPU_FLIP = 2  # about 24 transitions a minute
LATENCY_FLIP = 100  # about 20 transitions a second
LATENCY_SECONDS = 20.0
STATE_SAVE_EVERY = 60.0  # AlarmService.state_save_interval


@dataclass(frozen=True)
class Shape:
    """A site: so many meters, polled so often, with so many rules each (with rules)."""

    name: str
    devices: int
    interval: float
    rules_per_device: int

    @property
    def rules(self) -> int:
        return self.devices * self.rules_per_device

    def describe(self) -> str:
        return (
            f"{self.devices} meters x {POINTS} values every {self.interval * 1000:.0f} ms "
            f"({self.devices / self.interval:,.0f} polls/s), {self.rules_per_device} rules "
            f"per meter ({self.rules:,})"
        )


SPARSE = Shape("1,000 meters x 2 rules", 1000, 0.5, 2)  # the figure's site
DENSE = Shape("200 meters x 10 rules", DEVICES, INTERVAL, RULES_PER_DEVICE)


# -- rules_cpu -----------------------------------------------------------------------------


def _delta(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {k: after[k] - before[k] for k in after}


@dataclass
class CpuRun:
    windows: list[tuple[dict[str, float], dict[str, float]]]  # (plain, rules) per window
    save_cpu: float  # the rules gateway's once-a-minute rewrite of every rule's state
    lines_encoded: float
    lines_received: int

    def per_reading(self, which: int) -> float:
        cpu = sum(w[which]["cpu"] for w in self.windows)
        return cpu / (sum(w[which]["polls"] for w in self.windows) * POINTS)

    def ratios(self) -> list[float]:
        return [(r["cpu"] / r["polls"]) / (p["cpu"] / p["polls"]) for p, r in self.windows]

    @property
    def save_per_reading(self) -> float:
        """The once-a-minute save, spread over a minute's readings at the measured rate."""
        rules = [w[1] for w in self.windows]
        rate = sum(r["polls"] for r in rules) * POINTS / sum(r["wall"] for r in rules)
        return self.save_cpu / (STATE_SAVE_EVERY * rate)


def measure_cpu(directory: Path, shape: Shape) -> float:
    farm = ModbusFarm(shape.devices, flip=CPU_FLIP, flip_period=FLIP_PERIOD)
    with farm, FakeInflux() as influx:
        sites = [
            write_site(
                directory / name, farm.healthy, influx.url, rules=rules, interval=shape.interval
            )
            for name, rules in (("plain", 0), ("rules", shape.rules_per_device))
        ]
        with gateway_process(sites[0]) as plain, gateway_process(sites[1]) as rules:
            time.sleep(WARMUP)
            last = plain.counters(), rules.counters()
            windows = []
            for _ in range(WINDOWS):
                time.sleep(WINDOW)
                now = plain.counters(), rules.counters()
                windows.append((_delta(now[0], last[0]), _delta(now[1], last[1])))
                last = now
            encoded = last[0]["lines"] + last[1]["lines"]
            save_cpu = rules.state_save_cpu()
        run = CpuRun(windows, save_cpu, encoded, influx.stats()["lines"])
    print(f"   {shape.describe()}; {CPU_FLIP} meters flipping every {FLIP_PERIOD / 2:g} s")
    print(
        f"   the two gateways side by side, each a process of its own; CPU of each whole "
        f"process per poll, {WINDOWS} windows of {WINDOW:g} s after {WARMUP:g} s:"
    )
    expected = shape.devices / shape.interval
    for (p, r), ratio in zip(run.windows, run.ratios(), strict=True):
        print(
            f"     without rules {us(p['cpu'] / p['polls'])} ({p['cpu']:.3f} s / "
            f"{p['polls']:,.0f} polls), with {us(r['cpu'] / r['polls'])} ({r['cpu']:.3f} s / "
            f"{r['polls']:,.0f} polls, {r['transitions']:.0f} transitions): {ratio:.3f}"
        )
        for name, w in (("without rules", p), ("with rules", r)):
            if w["polls"] < 0.95 * expected * w["wall"] or w["failed"]:
                print(f"     WARNING {name}: {w['polls']:.0f} polls, {w['failed']:.0f} failed")
    print(
        f"   InfluxDB stand-in: {run.lines_received:,} lines received "
        f"({run.lines_encoded:,.0f} encoded by the last window)"
    )
    save = run.save_per_reading
    plain_r, rules_r = run.per_reading(0), run.per_reading(1)
    ratio = (rules_r + save) / plain_r
    print(
        f"   every rule's state rewritten (once a minute): {ms(run.save_cpu)} CPU "
        f"= {us(save)} per reading"
    )
    print(
        f"   per reading over all windows: without rules {us(plain_r)}, with {us(rules_r)} "
        f"+ {us(save)}; ratio {ratio:.3f} (median of the windows' ratios "
        f"{median(run.ratios()):.3f})"
    )
    return ratio


# -- rules_p99_ms --------------------------------------------------------------------------


@dataclass
class TransitionClock:
    """Arrival of the reading that first shows a flipping meter's new value, to its rule's
    transition published on the bus (raised or cleared)."""

    start: float = float("inf")  # readings arriving before this are not measured
    latencies: list[float] = field(default_factory=list)
    unmatched: int = 0
    published: dict[str, int] = field(default_factory=dict)  # transitions by what
    pending: dict[str, float] = field(default_factory=dict)

    def attach(self, gateway: Gateway) -> None:
        for device, poller in modbus_of(gateway).pollers.items():
            poller.emit = self._stamped(poller.emit, device)
        gateway.bus.subscribe(AlarmTransition, self._on_transition, name="bench")

    def _stamped(self, emit: Callable[[Sample], None], device: str) -> Callable[[Sample], None]:
        """The poller's hand-over to the bus, noting when a reading first shows the new value."""
        pending = self.pending
        last = False

        def stamped(sample: Sample) -> None:
            nonlocal last
            arrival = time.perf_counter()
            value = sample.values.get(FLIP_POINT)
            high = isinstance(value, float) and value > FLIP_ABOVE
            if high != last:
                pending[device] = arrival
                last = high
            emit(sample)

        return stamped

    def _on_transition(self, message: AlarmTransition) -> None:
        published = time.perf_counter()
        tr = message.transition
        self.published[tr.what] = self.published.get(tr.what, 0) + 1
        subject = tr.alarm.subject
        if tr.what not in ("raised", "cleared") or tr.by != f"rule:{flip_rule_id(subject)}":
            return
        arrival = self.pending.pop(subject, None)
        if arrival is None:
            self.unmatched += 1
        elif arrival >= self.start:
            self.latencies.append(published - arrival)

    def describe(self) -> str:
        values = self.latencies
        return (
            f"p50 {ms(median(values))}, p90 {ms(percentile(values, 90))}, "
            f"p99 {ms(percentile(values, 99))}, max {ms(max(values, default=0.0))} "
            f"(n={len(values)}, {self.unmatched} unmatched)"
        )


@dataclass
class Latency:
    clock: TransitionClock
    stored: int = 0  # transitions in the store's history afterwards
    samples: int = 0
    elapsed: float = 0.0
    commits: int = 0


async def latency_run(directory: Path, farm: ModbusFarm, influx: FakeInflux) -> Latency:
    loaded = load(directory, farm.healthy, influx.url, rules=RULES_PER_DEVICE)
    gateway = Gateway(loaded)
    out = Latency(TransitionClock())
    out.clock.attach(gateway)
    await gateway.start()
    try:
        await asyncio.sleep(WARMUP)
        out.clock.start = time.perf_counter()
        samples0 = gateway.bus.published["Sample"]
        await asyncio.sleep(LATENCY_SECONDS)
        out.elapsed = time.perf_counter() - out.clock.start
        out.samples = gateway.bus.published["Sample"] - samples0
    finally:
        await stop_gateway(gateway)
    assert gateway.alarms is not None
    out.commits = gateway.alarms.store.commits
    with AlarmStore(loaded.alarm_store_path()) as store:
        out.stored = len(store.history(limit=10**6))
    return out


def commit_floor(directory: Path, n: int = 300) -> list[float]:
    """One durable commit of one row, as the alarm store makes them (WAL, synchronous=FULL)."""
    directory.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(directory / "floor.sqlite", isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = FULL")
        db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, what TEXT, t REAL, value TEXT)")
        times = []
        for i in range(n):
            started = time.perf_counter()
            db.execute("BEGIN IMMEDIATE")
            db.execute("INSERT INTO t (what, t, value) VALUES (?, ?, ?)", ("raised", i, "1.5"))
            db.execute("COMMIT")
            times.append(time.perf_counter() - started)
            time.sleep(0.005)  # paced like transitions, not a burst
        return times
    finally:
        db.close()


async def measure_latency(directory: Path) -> float:
    farm = ModbusFarm(DEVICES, flip=LATENCY_FLIP, flip_period=FLIP_PERIOD)
    with farm, FakeInflux() as influx:
        lat = await latency_run(directory / "site", farm, influx)
    floor = await asyncio.to_thread(commit_floor, directory)
    values = lat.clock.latencies
    p99 = percentile(values, 99)
    transitions = sum(lat.clock.published.values())
    print(
        f"   {DENSE.describe()}; {LATENCY_FLIP} meters flipping every {FLIP_PERIOD / 2:g} s; "
        f"alarm store in {directory} ({fs_type(directory)}), WAL, synchronous=FULL"
    )
    print(
        f"   {lat.samples:,} polls in {lat.elapsed:.1f} s; {transitions} transitions published "
        f"({lat.stored} in the store's history afterwards, {lat.commits} commits)"
    )
    print(f"   arrival on the bus -> durable + published: {lat.clock.describe()}")
    floor_p99 = percentile(floor, 99)
    print(
        f"   floor, one bare durable SQLite commit here: p50 {ms(median(floor))}, "
        f"p99 {ms(floor_p99)} (n={len(floor)}); p99 ratio {p99 / floor_p99:.2f}"
    )
    print(f"   rules_p99_ms = {p99 * 1000:.2f} (target < 10)")
    return p99 * 1000


# -- entry points --------------------------------------------------------------------------


def run() -> dict[str, Result]:
    print(f"   load average before: {loadavg()}")
    with gateway_logs(), tempfile.TemporaryDirectory(prefix="bench-rules-") as tmp:
        print(f"   rules_cpu, {SPARSE.name}:")
        ratio = measure_cpu(Path(tmp) / "sparse", SPARSE)
        print(f"   rules_cpu = {ratio:.3f} (target <= 1.10)")
        print(f"   information, {DENSE.name}:")
        dense = measure_cpu(Path(tmp) / "dense", DENSE)
        print(f"   rules_cpu_dense = {dense:.3f} (information)")
        print("   rules_p99_ms:")
        p99_ms = asyncio.run(measure_latency(Path(tmp) / "latency"))
    print(f"   load average after: {loadavg()}")
    return {
        "rules_cpu": result(ratio, "<= 1.10"),
        "rules_cpu_dense": result(dense, "information: 10 rules per reading, not 2"),
        "rules_p99_ms": result(p99_ms, "< 10", "ms"),
    }


async def _profile(directory: Path, shape: Shape) -> None:
    farm = ModbusFarm(shape.devices, flip=CPU_FLIP, flip_period=FLIP_PERIOD)
    with farm, FakeInflux() as influx:
        loaded = load(
            directory,
            farm.healthy,
            influx.url,
            rules=shape.rules_per_device,
            interval=shape.interval,
        )
        gateway = Gateway(loaded)
        await gateway.start()
        try:
            await asyncio.sleep(WARMUP)
            profiler = cProfile.Profile()
            profiler.enable()
            await asyncio.sleep(WINDOW)
            profiler.disable()
        finally:
            await stop_gateway(gateway)
    print(f"\n== the event loop's thread, {WINDOW:g} s of {shape.describe()}")
    pstats.Stats(profiler).sort_stats("tottime").print_stats(30)


def profile() -> None:
    with gateway_logs(), tempfile.TemporaryDirectory(prefix="bench-rules-") as tmp:
        for shape in (SPARSE, DENSE):
            asyncio.run(_profile(Path(tmp) / shape.name.replace(" ", ""), shape))


if __name__ == "__main__":
    if "--profile" in sys.argv[1:]:
        profile()
    else:
        for key, value in run().items():
            print(f"{key}: {value}")
