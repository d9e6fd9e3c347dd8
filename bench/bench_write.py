"""Result `write`: CPU per point from readings to an HTTP write, ours against influxdb-client's.

A stand-in InfluxDB (bench/fake_influx.py, its own process, 204 to every write) receives the
same 10,000 Samples of 20 values (a meter poll: 18 floats from float32 registers, 2 integer
codes), 200,000 points in all, from 50 devices:

* ours: gateway.lineproto.LineEncoder encodes each Sample into one line, lines are batched
  5,000 at a time exactly as gateway.influx_sink.InfluxSink.flush does, and each batch is sent
  with gateway.influx_writer.V2Transport (one urllib3 POST to /api/v2/write, bytes in);
* baseline: influxdb-client used at its best: its batching write API
  (WriteOptions(batch_size=5000)) fed one `Point("meter").tag(...).field(...).time(ts)` per
  Sample with all its fields, until close() has flushed it all;
* informational: the same library fed one Point per reading, as a gateway that writes
  Readings one by one would use it.

CPU is time.process_time(), which counts every thread of this process: the baseline's batching
thread (reactivex) included. Client construction is left out of both; the baseline's close() is
in, because that is where its last batch is written. Three rounds, alternating, best of each.
value = our points per CPU second / the baseline's (target >= 5).

`python -m bench.bench_write --profile` prints where our path's CPU goes (cProfile).
"""

from __future__ import annotations

import cProfile
import gc
import pstats
import random
import struct
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from bench.common import FakeInflux, Result, result
from core.field_types import FieldType, float_format
from core.types import Sample, Value
from gateway.influx_writer import V2Transport
from gateway.lineproto import LineEncoder, series_prefix

DEVICES = 50
SAMPLES = 10_000
FLOATS, INTS = 18, 2  # values per Sample
POINTS = SAMPLES * (FLOATS + INTS)
BATCH = 5000  # lines per HTTP write, both paths
REPEATS = 3
ORG = BUCKET = "bench"
TOKEN = "bench-token"
SITE = "bench"


def _float32(value: float) -> float:
    """What a float32 register pair decodes to: the long repr a real meter value has."""
    result: float = struct.unpack(">f", struct.pack(">f", value))[0]
    return result


def make_samples() -> list[Sample]:
    rng = random.Random(42)
    start = 1_700_000_000_000_000_000
    samples = []
    for i in range(SAMPLES):
        values: dict[str, Value] = {
            f"value_{k:02d}": _float32(rng.uniform(-1000.0, 1000.0)) for k in range(FLOATS)
        }
        values.update({f"code_{k}": rng.randrange(0, 65536) for k in range(INTS)})
        samples.append(Sample(f"meter{i % DEVICES:02d}", start + i * 1_000_000, values))
    return samples


def _encoder() -> LineEncoder:
    # As the gateway configures it: float32 points stored with the digits a float32 holds,
    # each field's type declared (the two codes are integers on purpose, as enum points are).
    names = [f"value_{k:02d}" for k in range(FLOATS)]
    formats = {name: float_format("float32", False) for name in names}
    types = {name: FieldType.FLOAT for name in names}
    types.update({f"code_{k}": FieldType.INTEGER for k in range(INTS)})
    return LineEncoder(
        {
            f"meter{d:02d}": series_prefix("meter", {"device": f"meter{d:02d}", "site": SITE})
            for d in range(DEVICES)
        },
        {f"meter{d:02d}": formats for d in range(DEVICES)},
        {f"meter{d:02d}": types for d in range(DEVICES)},
    )


def ours(samples: Sequence[Sample], url: str) -> float:
    """CPU seconds of encode + batch + send for all samples."""
    encoder = _encoder()
    transport = V2Transport(url, ORG, BUCKET, TOKEN, timeout=30.0)
    try:
        gc.collect()
        started = time.process_time()
        lines: list[str] = []
        for sample in samples:
            line = encoder.encode(sample)
            if line is not None:
                lines.append(line)
            if len(lines) >= BATCH:
                _send(transport, lines)
                lines = []
        if lines:
            _send(transport, lines)
        return time.process_time() - started
    finally:
        transport.close()


def _send(transport: V2Transport, lines: list[str]) -> None:
    # As InfluxSink.flush builds a batch: newline-terminated lines, UTF-8.
    lines.append("")
    transport.send("\n".join(lines).encode())


def baseline(samples: Sequence[Sample], url: str) -> float:
    """influxdb-client at its best: one Point per Sample, all its fields."""
    return _library(samples, url, per_reading=False)


def baseline_per_reading(samples: Sequence[Sample], url: str) -> float:
    """influxdb-client fed one Point per reading (informational)."""
    return _library(samples, url, per_reading=True)


def _library(samples: Sequence[Sample], url: str, *, per_reading: bool) -> float:
    """CPU seconds of influxdb-client's Point + batching write API for all samples."""
    from influxdb_client.client.influxdb_client import InfluxDBClient
    from influxdb_client.client.write.point import Point
    from influxdb_client.client.write_api import WriteOptions
    from influxdb_client.domain.write_precision import WritePrecision

    # The library is untyped (and absent where only the test extra is installed, for mypy):
    # Any keeps mypy --strict quiet about each call either way.
    new_point: Any = Point
    client: Any = InfluxDBClient(url=url, token=TOKEN, org=ORG, timeout=30_000, enable_gzip=False)
    options = WriteOptions(
        batch_size=BATCH,
        # ms; batches close by count (a run lasts ~1 s), the last one by close(). Short, because
        # reactivex keeps its window timer thread alive that long, delaying interpreter exit.
        flush_interval=2_000,
        jitter_interval=0,
        retry_interval=1_000,
        max_retries=0,
    )
    write_api = client.write_api(write_options=options)
    try:
        gc.collect()
        started = time.process_time()
        for sample in samples:
            if per_reading:
                for name, value in sample.values.items():
                    point: Any = new_point("meter")
                    point.tag("device", sample.device).tag("site", SITE)
                    point.field(name, value).time(sample.ts, WritePrecision.NS)
                    write_api.write(bucket=BUCKET, org=ORG, record=point)
                continue
            point = new_point("meter")
            point.tag("device", sample.device).tag("site", SITE)
            for name, value in sample.values.items():
                point.field(name, value)
            point.time(sample.ts, WritePrecision.NS)
            write_api.write(bucket=BUCKET, org=ORG, record=point)
        write_api.close()  # waits until all is written
        return time.process_time() - started
    finally:
        client.close()


def _round(
    name: str,
    path: Callable[[Sequence[Sample], str], float],
    samples: list[Sample],
    db: FakeInflux,
    lines: int,
) -> float:
    db.reset()
    cpu = path(samples, db.url)
    got = db.stats()
    if got["lines"] != lines:
        print(f"  WARNING: {name} delivered {got['lines']} lines, expected {lines}")
    return cpu


def run() -> dict[str, Result]:
    samples = make_samples()
    ours_cpu: list[float] = []
    base_cpu: list[float] = []
    per_reading_cpu: list[float] = []
    with FakeInflux() as db:
        for repeat in range(REPEATS):
            # Alternate which path goes first: neither always gets the warm (or cold) machine.
            order = [
                ("ours", ours, ours_cpu, SAMPLES),
                ("baseline", baseline, base_cpu, SAMPLES),
                ("baseline_per_reading", baseline_per_reading, per_reading_cpu, POINTS),
            ]
            for name, path, cpu, lines in order if repeat % 2 == 0 else order[::-1]:
                cpu.append(_round(name, path, samples, db, lines))
        db.reset()
        ours(samples[:BATCH], db.url)
        body_bytes = db.stats()["bytes"]
    ours_rate = POINTS / min(ours_cpu)
    base_rate = POINTS / min(base_cpu)
    per_reading_rate = POINTS / min(per_reading_cpu)
    value = ours_rate / base_rate
    print(
        f"write: {POINTS} points ({SAMPLES} Samples of {FLOATS + INTS} values, {DEVICES} devices)"
        f" to a local 204 endpoint, batches of {BATCH} lines (~{body_bytes / 1e6:.1f} MB each)"
    )
    for name, cpu, rate in (
        ("ours (LineEncoder + V2Transport)", ours_cpu, ours_rate),
        ("baseline: library at best (Point/Sample)", base_cpu, base_rate),
        ("library, Point per reading", per_reading_cpu, per_reading_rate),
    ):
        rounds = ", ".join(f"{c:.3f}" for c in cpu)
        print(
            f"  {name:38s} CPU {min(cpu):.3f} s (rounds {rounds}) -> {rate:,.0f} points/CPU s, "
            f"{min(cpu) / POINTS * 1e6:.2f} µs/point"
        )
    print(f"  write = ours / library at best, points per CPU second = {value:.2f} x (target >= 5)")
    per_reading = ours_rate / per_reading_rate
    print(
        f"  write_vs_point_per_reading = ours / Point per reading = {per_reading:.2f} x "
        "(informational)"
    )
    return {
        "write": result(value, ">= 5", "x"),
        "write_vs_point_per_reading": result(per_reading, "informational", "x"),
    }


def profile(top: int = 25) -> None:
    """Where our path's CPU goes: cProfile of one full run (200k points), by own time."""
    samples = make_samples()
    with FakeInflux() as db:
        ours(samples, db.url)  # warm: imports, connection
        profiler = cProfile.Profile()
        profiler.enable()
        cpu = ours(samples, db.url)
        profiler.disable()
    print(f"ours under cProfile: {cpu:.3f} CPU s for {POINTS} points (profiler overhead included)")
    stats = pstats.Stats(profiler)
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)


if __name__ == "__main__":
    if "--profile" in sys.argv[1:]:
        profile()
    else:
        run()
