"""A simulated month through the accounts: the virtual building's meter models stepped minute by
minute (simulator/month.py, via bench/month_data.py), the Samples fed to the gateway's
AccountsService as its inbox would feed them, its `energy` Records written with the gateway's
line encoding and transports into a real InfluxDB 1.6 and VictoriaMetrics, and read back.

What the databases hold must equal what the models counted (their own integrals, not the
readings), per meter, per category and per day, although one meter is reset, one is swapped
for a meter whose counter stands elsewhere, and one meter's day arrives a day late.

The short variant (a few days, four meters) runs in CI; the whole month is `soak`.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from bench.month_data import MonthData, site_yaml
from gateway.accounts_service import AccountsService
from gateway.bus import Bus
from gateway.catalog import DeviceCatalog
from gateway.config_load import load_site
from gateway.influx_writer import V1Transport, V2Transport, WriteError, send_or_split
from gateway.lineproto import record_line
from rules.model import Record
from simulator.month import CounterReset, LateDay, MeterSwap
from tests.servers import InfluxDB1Server, VictoriaMetricsServer

pytestmark = pytest.mark.servers
DB = "building"
TZ = ZoneInfo("Asia/Shanghai")
KWH = "energy_import_kwh"
NEW_METER_KWH = 1000.0  # the swapped-in meter's counter: far below the old one's
SETTLE_EVERY = timedelta(minutes=10)  # how often the fake clock ticks the accounts


@dataclass(frozen=True)
class Plan:
    start: datetime
    end: datetime
    meters: int
    reset: tuple[str, datetime]
    swap: tuple[str, datetime]
    late: tuple[str, date]


SHORT = Plan(
    start=datetime(2026, 7, 6, tzinfo=TZ),  # Monday to Thursday
    end=datetime(2026, 7, 10, tzinfo=TZ),
    meters=4,
    reset=("b1-m001", datetime(2026, 7, 6, 10, 17, tzinfo=TZ)),
    swap=("b1-m002", datetime(2026, 7, 7, 15, 3, tzinfo=TZ)),
    late=("b1-m003", date(2026, 7, 8)),
)
MONTH = Plan(
    start=datetime(2026, 7, 1, tzinfo=TZ),
    end=datetime(2026, 8, 1, tzinfo=TZ),
    meters=12,
    reset=("b1-m001", datetime(2026, 7, 9, 10, 17, tzinfo=TZ)),
    swap=("b1-m002", datetime(2026, 7, 20, 15, 3, tzinfo=TZ)),
    late=("b1-m003", date(2026, 7, 14)),
)


def _send(transport: V1Transport | V2Transport, lines: list[str]) -> None:
    refused: list[str] = []

    def on_refused(exc: WriteError, line: bytes) -> None:
        refused.append(f"{exc}: {line!r}")

    body = ("\n".join(lines) + "\n").encode()
    assert send_or_split(transport.send, body, len(lines), on_refused) == len(lines), refused


class Accounts:
    """The accounts of one site file, its Records as the sink would flush them to its database."""

    def __init__(self, site: Path, transport: V1Transport | V2Transport) -> None:
        self.loaded = load_site(site)
        bus = Bus()
        self.records: list[Record] = []
        bus.subscribe(Record, self.records.append, name="test")
        self.service = AccountsService(
            self.loaded,
            DeviceCatalog.build(self.loaded),
            bus,
            store_path=site.with_suffix(".sqlite"),
        )
        self.transport = transport

    def settle(self, now: float) -> None:
        # Each tick's Records as one request: a rewrite of a period reaches the database in
        # a later request than the figure it replaces.
        published = len(self.records)
        self.service.settle(now)
        site_id = self.loaded.site.site.id
        lines = [r for rec in self.records[published:] if (r := record_line(site_id, rec))]
        if lines:
            _send(self.transport, lines)


def _run(tmp_path: Path, plan: Plan, influx: InfluxDB1Server, vm: VictoriaMetricsServer) -> None:
    site = tmp_path / "site.yaml"
    db = f"influxdb: {{api: v1, url: '{influx.url}', database: {DB}}}"
    site.write_text(site_yaml(plan.meters, db, buildings=1), encoding="utf-8")
    # The same building writing to VictoriaMetrics through the v2 API, which the site says.
    vm_site = tmp_path / "vm-site.yaml"
    vm_db = f"influxdb: {{api: v2, url: '{vm.url}', org: o, bucket: b, server: victoriametrics}}"
    vm_site.write_text(site_yaml(plan.meters, vm_db, buildings=1), encoding="utf-8")
    # The gateway's path for the energy points: Records encoded as the InfluxDB sink encodes
    # them, sent by the writer's transports.
    to_influx = Accounts(site, V1Transport(influx.url, DB, None, None, None, 30.0))
    to_vm = Accounts(vm_site, V2Transport(vm.url, "o", "b", None, 30.0))
    both = (to_influx, to_vm)
    data = MonthData(
        site,
        plan.start,
        plan.end,
        scenarios=[
            CounterReset(*plan.reset),
            MeterSwap(*plan.swap, new_start=NEW_METER_KWH),
            LateDay(*plan.late),
        ],
    )
    assert data.devices[1:4] == [plan.reset[0], plan.swap[0], plan.late[0]]
    for a in both:
        a.service.store.start()
    try:
        batch = []
        last_ts = 0
        next_settle = plan.start.timestamp()
        for sample in data.samples():
            # The inbox hands over what arrived together: one step of every meter.
            if sample.ts != last_ts and batch:
                now = last_ts / 1e9
                for a in both:
                    a.service.take(batch)
                    if now >= next_settle:
                        a.settle(now)
                if now >= next_settle:
                    next_settle = now + SETTLE_EVERY.total_seconds()
                batch = []
            batch.append(sample)
            last_ts = max(last_ts, sample.ts)
        for a in both:
            a.service.take(batch)
            # After the month (and the accounts' grace) everything closes, the month included.
            a.settle(plan.end.timestamp() + 3600)
    finally:
        for a in both:
            a.service.store.stop()
            a.transport.close()

    health = to_influx.service.health()
    assert health["accounts_resets"] == 1
    assert health["accounts_swaps"] == 1
    assert health["accounts_implausible_jumps"] == 0
    assert health["accounts_late_readings"] == 24 * 60
    assert health["accounts_recomputed"] > 0
    assert to_vm.service.health() == health

    _check(plan, data, influx, vm)


def _influx_rows(influx: InfluxDB1Server, period: str) -> dict[tuple[str, int], float]:
    """amount by (device, period start in ns) as InfluxDB 1.6 keeps it (the last write)."""
    result = influx.query(f"SELECT amount, device FROM energy WHERE period = '{period}'", db=DB)
    out: dict[tuple[str, int], float] = {}
    for series in result["results"][0].get("series", []):
        for ts, amount, device in series["values"]:
            out[(device, ts)] = amount
    return out


def _vm_rows(
    vm: VictoriaMetricsServer, period: str, expected: int
) -> tuple[dict[tuple[str, int], float], int]:
    """amount by (device, period start in ns) as VictoriaMetrics answers it (a period's newest
    sample, as last_over_time would), and how many periods were written again."""
    match = f'{{__name__="energy_amount",period="{period}"}}'
    vm.wait_for_samples(match, expected, timeout=30.0)
    newest: dict[tuple[str, int], tuple[int, float]] = {}
    for series in vm.export(match):
        device = series["metric"]["device"]
        for ts_ms, amount in zip(series["timestamps"], series["values"], strict=True):
            key = (device, ts_ms // 1000 * 1_000_000_000)
            if key not in newest or ts_ms > newest[key][0]:
                newest[key] = (ts_ms, amount)
    revised = sum(1 for ts_ms, _ in newest.values() if ts_ms % 1000)
    return {k: amount for k, (_, amount) in newest.items()}, revised


def _ns(t: datetime) -> int:
    return int(t.timestamp()) * 1_000_000_000


def _check(plan: Plan, data: MonthData, influx: InfluxDB1Server, vm: VictoriaMetricsServer) -> None:
    days = [plan.start.date() + timedelta(days=i) for i in range((plan.end - plan.start).days)]
    hours = [plan.start + timedelta(hours=i) for i in range(len(days) * 24)]
    in_influx = {p: _influx_rows(influx, p) for p in ("hour", "day", "month")}
    vm_rows = {p: _vm_rows(vm, p, len(in_influx[p])) for p in ("hour", "day", "month")}
    in_vm = {p: rows for p, (rows, _) in vm_rows.items()}
    # The late day and the swap were written again there: their newest samples answer.
    assert vm_rows["day"][1] > 0
    assert vm_rows["hour"][1] > 0
    assert in_vm["day"].keys() == in_influx["day"].keys()
    assert in_vm["hour"].keys() == in_influx["hour"].keys()
    for period in ("hour", "day"):
        for key, amount in in_influx[period].items():
            assert in_vm[period][key] == pytest.approx(amount, rel=1e-9), (period, key)

    # Only the interval across the swap is unknowable (the new meter's first minute counts
    # nothing: an undeclared swap); everything else is exact to float rounding.
    def slack(device: str) -> float:
        return data.unsure(device) if device == plan.swap[0] else 0.0

    by_use: dict[tuple[str, date], float] = defaultdict(float)
    true_by_use: dict[tuple[str, date], float] = defaultdict(float)
    uses = {d: data.catalog.devices[d].tags["use"] for d in data.devices}
    for device in data.devices:
        truth = data.hourly(device, KWH)
        assert sorted(truth) == hours
        for hour in hours:
            got = in_influx["hour"][(device, _ns(hour))]
            assert got == pytest.approx(truth[hour], rel=1e-9, abs=slack(device) + 1e-6), (
                device,
                hour,
            )
        for day in days:
            start = datetime(day.year, day.month, day.day, tzinfo=TZ)
            want = math.fsum(truth[start + timedelta(hours=h)] for h in range(24))
            got = in_influx["day"][(device, _ns(start))]
            assert got == pytest.approx(want, rel=1e-9, abs=slack(device) + 1e-6), (device, day)
            by_use[(uses[device], day)] += got
            true_by_use[(uses[device], day)] += want
        total = math.fsum(truth.values())
        summed = math.fsum(
            in_influx["day"][(device, _ns(datetime.combine(d, datetime.min.time(), TZ)))]
            for d in days
        )
        assert summed == pytest.approx(total, rel=1e-9, abs=slack(device) + 1e-6)
        if plan.start.day == 1 and plan.end.day == 1:  # a whole month was closed
            month = in_influx["month"][(device, _ns(plan.start))]
            assert month == pytest.approx(total, rel=1e-9, abs=slack(device) + 1e-6)
            assert in_vm["month"][(device, _ns(plan.start))] == pytest.approx(month, rel=1e-9)
    for key, want in true_by_use.items():
        assert by_use[key] == pytest.approx(want, rel=1e-9, abs=data.unsure(plan.swap[0]) + 1e-6)
    # The swap's unknowable minute is small: well under a thousandth of its day.
    swap_day = plan.swap[1].date()
    swap_truth = data.hourly(plan.swap[0], KWH)
    swap_day_kwh = sum(e for h, e in swap_truth.items() if h.date() == swap_day)
    assert 0 < data.unsure(plan.swap[0]) < swap_day_kwh / 500


def test_a_few_days_of_four_meters_with_a_reset_a_swap_and_a_late_day(
    tmp_path: Path, influx1: InfluxDB1Server, vm: VictoriaMetricsServer
) -> None:
    _run(tmp_path, SHORT, influx1, vm)


@pytest.mark.soak
def test_a_month_of_twelve_meters(
    tmp_path: Path, influx1: InfluxDB1Server, vm: VictoriaMetricsServer
) -> None:
    _run(tmp_path, MONTH, influx1, vm)
