"""A month of a site's meter readings at one-minute resolution, written into InfluxDB 1.x and
VictoriaMetrics the way the gateway writes them: simulator/month.py steps the virtual
building's models, the gateway's LineEncoder (prefixes, field types and float formats from
the site's DeviceCatalog) makes the lines, and the gateway's transports
(gateway/influx_writer.py, `send_or_split`) send them in big batches.

`site_yaml` writes a site of N meters (two buildings, a main meter each, sub-meters by use
over the floors) with an `accounts:` section. For a bench-sized month (200 meters) the models
are the expensive part (a meter model computes every quantity of its profile, ~0.2 ms a
step), so `distinct` models feed all meters: meter i reads model i mod `distinct`'s values
times its own size factor. Its true counters are scaled alike. Tests use distinct=None: every
meter its own model.

    .venv/bin/python -m bench.month_data --meters 20 --days 3   # time a load, print figures
"""

from __future__ import annotations

import argparse
import math
import tempfile
import textwrap
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from core.types import Sample, Value
from gateway.catalog import DeviceCatalog
from gateway.config_load import load_site
from gateway.influx_writer import Batch, Transport, WriteError, send_or_split
from gateway.lineproto import LineEncoder
from simulator.building import models_for_site
from simulator.clock import SimClock
from simulator.month import Month, Scenario
from simulator.site import read_site

METER_PROFILE = "chint_dtsu666"
# What the accounts and the report read of a meter: its import counter and its power.
METER_POINTS = ("energy_import_kwh", "active_power_total_w")
USES = ("hvac", "lighting_sockets", "power", "special")
BATCH_LINES = 50_000  # ~8 MB of lines per request: few requests, under influxd's 25 MB limit
TZ = "Asia/Shanghai"


def meter_ids(n: int, buildings: int = 2) -> list[str]:
    """The meters of `site_yaml`, in its order: per building its main meter first."""
    out: list[str] = []
    per = math.ceil(n / buildings)
    for b in range(buildings):
        count = min(per, n - len(out))
        if count <= 0:
            break
        out.append(f"b{b + 1}-main")
        out.extend(f"b{b + 1}-m{i:03d}" for i in range(1, count))
    return out


def site_yaml(n: int, influxdb: str, *, buildings: int = 2, extra_accounts: str = "") -> str:
    """A site file of `n` meters. `influxdb`: its `influxdb:` line (a flow mapping);
    `extra_accounts`: more keys of the `accounts:` section, indented as its keys."""
    devices = []
    for i, dev in enumerate(meter_ids(n, buildings)):
        building = dev.split("-")[0]
        main = dev.endswith("-main")
        use = "total" if main else USES[i % len(USES)]
        floor = "B1" if main else str(1 + i % 12)
        # Never polled here (the month is simulated), but the file must be a valid site.
        devices.append(
            f"  - id: {dev}\n"
            f"    profile: {METER_PROFILE}\n"
            f"    modbus: {{transport: tcp, host: 127.0.0.1, port: {15900 + i // 200}, "
            f"unit: {i % 200 + 1}}}\n"
            f"    poll: 60s\n"
            f'    tags: {{building: {building}, floor: "{floor}", use: {use}}}\n'
        )
    areas = "".join(
        f"    b{b + 1}: {{name: {b + 1}号楼, area_m2: {12000 + 3000 * b}, headcount: "
        f"{400 + 100 * b}}}\n"
        for b in range(buildings)
    )
    return (
        f"site: {{name: 模拟园区, id: month-site, timezone: {TZ}}}\n"
        f"{influxdb}\n"
        "spool: {path: spool}\n"
        "accounts:\n"
        "  grid_region: east\n"
        "  buildings:\n" + areas + textwrap.indent(extra_accounts, "  ") + "devices:\n"
        "" + "".join(devices)
    )


@dataclass(frozen=True, slots=True)
class Copy:
    """A meter that reads another model's values times `scale`."""

    source: str
    scale: float


@dataclass
class LoadFigures:
    lines: int = 0
    bytes: int = 0
    batches: int = 0
    seconds: float = 0.0  # wall time of the whole load
    make_seconds: float = 0.0  # stepping the models and encoding (this thread)
    written: dict[str, int] = field(default_factory=dict)  # points written, by target

    def __str__(self) -> str:
        rate = self.lines / self.seconds if self.seconds else 0.0
        return (
            f"{self.lines:,} lines ({self.bytes / 1e6:.0f} MB, {self.batches} batches) in "
            f"{self.seconds:.1f} s ({rate:,.0f} lines/s; models and encoding "
            f"{self.make_seconds:.1f} s)"
        )


class MonthData:
    """The readings of a site's meters between `start` and `end` (see the module docstring).

    ``distinct``: how many models feed the meters (None: one each). ``scenarios`` name
    meters that have their own model (the first ``distinct``), and apply to their copies too.
    """

    def __init__(
        self,
        site_path: Path,
        start: datetime,
        end: datetime,
        *,
        distinct: int | None = None,
        scenarios: Sequence[Scenario] = (),
        points: Sequence[str] | None = METER_POINTS,
        seed: int = 0,
    ) -> None:
        loaded = load_site(site_path)
        self.site_id = loaded.site.site.id
        catalog = DeviceCatalog.build(loaded)
        self.catalog = catalog
        self.encoder = LineEncoder(
            catalog.prefixes(), catalog.float_formats(), catalog.field_types()
        )
        building = read_site(site_path)
        clock = SimClock(speed=0, start=start, tz=loaded.site.site.timezone)
        models = {s.config.id: s.model for s in models_for_site(building, clock, seed=seed)}
        ids = list(models)
        count = len(ids) if distinct is None else max(1, min(distinct, len(ids)))
        sources = ids[:count]
        # Sizes spread over 0.5-1.5 so the copies of one model are not one meter repeated.
        self.copies: dict[str, list[tuple[str, float]]] = {s: [] for s in sources}
        for i, dev in enumerate(ids):
            source = sources[i % count]
            scale = 1.0 if dev == source else 0.5 + ((i * 37) % 101) / 100.0
            self.copies[source].append((dev, scale))
        keep = None if points is None else {d: set(points) for d in sources}
        self.month = Month(
            {s: models[s] for s in sources}, start, end, points=keep, scenarios=scenarios
        )
        self.devices = ids

    # -- the truth, per meter ------------------------------------------------------------

    def source_of(self, device: str) -> tuple[str, float]:
        for source, copies in self.copies.items():
            for dev, scale in copies:
                if dev == device:
                    return source, scale
        raise KeyError(device)

    def hourly(self, device: str, counter: str = "energy_import_kwh") -> dict[datetime, float]:
        """The energy the meter counted per local hour, as its model integrated it."""
        source, scale = self.source_of(device)
        return {h: e * scale for h, e in self.month.hourly[source].get(counter, {}).items()}

    def unsure(self, device: str) -> float:
        """Energy of the intervals across a reset or swap of the meter (see Month.unsure)."""
        source, scale = self.source_of(device)
        return scale * sum(e for _, e in self.month.unsure[source])

    # -- the readings --------------------------------------------------------------------

    def samples(self) -> Iterator[Sample]:
        for sample in self.month.samples():
            for dev, scale in self.copies[sample.device]:
                if scale == 1.0 and dev == sample.device:
                    yield sample
                else:
                    yield Sample(dev, sample.ts, _scaled(sample.values, scale))

    def batches(self, lines: int = BATCH_LINES) -> Iterator[Batch]:
        encode = self.encoder.encode
        pending: list[str] = []
        for sample in self.samples():
            line = encode(sample)
            if line is None:
                continue
            pending.append(line)
            if len(pending) >= lines:
                yield Batch(("\n".join(pending) + "\n").encode(), len(pending))
                pending = []
        if pending:
            yield Batch(("\n".join(pending) + "\n").encode(), len(pending))

    def write(self, targets: Mapping[str, Transport], lines: int = BATCH_LINES) -> LoadFigures:
        """Send every batch to every target, each target on its own thread (two batches in
        flight at most, so memory stays bounded while the models run)."""
        figures = LoadFigures(written={name: 0 for name in targets})
        refused: list[str] = []

        def on_refused(exc: WriteError, line: bytes) -> None:
            refused.append(f"{exc}: {line[:120]!r}")

        def send(name: str, transport: Transport, batch: Batch) -> None:
            figures.written[name] += send_or_split(
                transport.send, batch.body, batch.points, on_refused
            )

        started = time.perf_counter()
        in_flight: list[Future[None]] = []
        pools = {name: ThreadPoolExecutor(1, thread_name_prefix=name) for name in targets}
        try:
            made = time.perf_counter()
            for batch in self.batches(lines):
                figures.make_seconds += time.perf_counter() - made
                figures.lines += batch.points
                figures.bytes += len(batch.body)
                figures.batches += 1
                for name, transport in targets.items():
                    in_flight.append(pools[name].submit(send, name, transport, batch))
                while len(in_flight) > 2 * len(targets):
                    in_flight.pop(0).result()
                made = time.perf_counter()
            for f in in_flight:
                f.result()
        finally:
            for pool in pools.values():
                pool.shutdown(wait=True)
        figures.seconds = time.perf_counter() - started
        if refused:
            raise RuntimeError(f"{len(refused)} lines refused, first: {refused[0]}")
        return figures


def _scaled(values: Mapping[str, Value], scale: float) -> dict[str, Value]:
    return {
        k: v * scale if isinstance(v, float) else v  # counters and power; codes stay
        for k, v in values.items()
    }


def main(argv: Sequence[str] | None = None) -> None:
    from gateway.influx_writer import V1Transport, V2Transport
    from tests.servers import InfluxDB1Server, VictoriaMetricsServer

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--meters", type=int, default=200)
    parser.add_argument("--days", type=int, default=31)
    parser.add_argument("--distinct", type=int, default=8)
    parser.add_argument("--vm", action="store_true", help="also write into VictoriaMetrics")
    args = parser.parse_args(argv)
    start = datetime.fromisoformat("2026-07-01T00:00:00+08:00")
    end = start + timedelta(days=args.days)
    with tempfile.TemporaryDirectory(prefix="guanjia-month-") as tmp, ExitStack() as stack:
        root = Path(tmp)
        influx = stack.enter_context(InfluxDB1Server(root / "influx"))
        influx.create_database("building")
        site = root / "site.yaml"
        db = f"influxdb: {{api: v1, url: '{influx.url}', database: building}}"
        site.write_text(site_yaml(args.meters, db), encoding="utf-8")
        data = MonthData(site, start, end, distinct=args.distinct)
        targets: dict[str, Transport] = {
            "influxdb1": V1Transport(influx.url, "building", None, None, None, 120.0)
        }
        if args.vm:
            vm = stack.enter_context(VictoriaMetricsServer(root / "vm"))
            targets["victoriametrics"] = V2Transport(vm.url, "o", "b", None, 120.0)
        figures = data.write(targets)
        print(f"{args.meters} meters, {args.days} days: {figures}")


if __name__ == "__main__":
    main()
