"""The accounts runtime (gateway/accounts_service.py) with Samples fed in and a fake clock:
`energy` Records for closed hours, days and months; late data rewriting a day; a restart in
the middle of an hour (the store on disk); counters from a site's `accounts.counters`."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from core.types import Sample
from gateway.accounts_service import AccountsService
from gateway.bus import Bus
from gateway.catalog import DeviceCatalog
from gateway.config_load import load_site
from rules.model import Record
from tests.sites import meter_site

TZ = ZoneInfo("Asia/Shanghai")
RATE = 36.0  # kWh an hour


def at(hour: int, minute: int = 0, second: float = 0, day: int = 1) -> float:
    return datetime(2026, 7, day, hour, minute, tzinfo=TZ).timestamp() + second


def site(tmp_path: Path, accounts: str) -> Path:
    # Ports nobody listens on: the accounts are fed Samples, no driver runs.
    path = meter_site(tmp_path, [1, 2], "")
    path.write_text(path.read_text(encoding="utf-8") + accounts, encoding="utf-8")
    return path


ACCOUNTS = (
    "accounts:\n"
    "  grid_region: east\n"
    "  counters: {energy_kwh: {carrier: electricity, flow: import, unit: kWh}}\n"
)


class Harness:
    def __init__(self, path: Path, store: Path) -> None:
        loaded = load_site(path)
        self.bus = Bus()
        self.records: list[Record] = []
        self.bus.subscribe(Record, self.records.append, name="test")
        self.service = AccountsService(
            loaded, DeviceCatalog.build(loaded), self.bus, store_path=store, tick=3600
        )

    def feed(self, start: float, end: float, every: float = 10.0, device: str = "m0") -> None:
        """A counter at RATE from 0 at at(0), read every `every` seconds in [start, end)."""
        t = start
        batch = []
        while t < end:
            batch.append(Sample(device, int(t * 1e9), {"energy_kwh": (t - at(0)) * RATE / 3600}))
            t += every
        self.service.take(batch)

    def energy(self, period: str, device: str = "m0") -> dict[float, Record]:
        """The last Record of each period start (a rewrite replaces, as in the database)."""
        return {
            r.ts / 1e9: r
            for r in self.records
            if r.tags["period"] == period and r.tags["device"] == device
        }


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    h = Harness(site(tmp_path, ACCOUNTS), tmp_path / "accounts.sqlite")
    h.service.store.start()
    yield h
    h.service.store.stop()


def test_closed_hours_become_energy_records_with_tags_and_factors(harness: Harness) -> None:
    harness.feed(at(9, 30), at(12, 5))
    harness.service.settle(at(11, 3))  # hour 10 ended 3 min ago (grace: 2 min); 11 is open
    hours = harness.energy("hour")
    assert sorted(hours) == [at(9), at(10)]
    ten = hours[at(10)]
    assert ten.measurement == "energy"
    assert ten.tags == {
        "building": "main",
        "floor": "0",
        "use": "lighting_sockets",
        "device": "m0",
        "kind": "meter",
        "carrier": "electricity",
        "flow": "import",
        "period": "hour",
    }
    assert ten.fields["amount"] == pytest.approx(RATE)
    assert ten.fields["coverage"] == pytest.approx(1.0)
    assert ten.fields["kgce"] == pytest.approx(RATE * 0.1229)
    assert ten.fields["co2_kg"] == pytest.approx(RATE * 0.55)  # the east grid, 2023
    assert ten.fields["factor_set"] == "cn-2023/east"
    assert hours[at(9)].fields["coverage"] == pytest.approx(0.5)  # read from 09:30
    assert harness.service.health()["accounts_periods_written"] == 2
    # Nothing new to write: settling again writes nothing twice.
    assert harness.service.settle(at(11, 4)) == []


def test_days_and_months_add_up_when_they_end(harness: Harness) -> None:
    harness.feed(at(22), at(23, 59, 55, day=31), every=60.0)
    harness.feed(at(0, day=1) + 86400 * 31, at(0, 10, day=1) + 86400 * 31, every=60.0)
    harness.service.settle(at(0, 10, day=1) + 86400 * 31)
    days = harness.energy("day")
    assert days[at(0, day=2)].fields["amount"] == pytest.approx(RATE * 24)
    month = harness.energy("month")[at(0, day=1)]
    # From 22:00 on the 1st to the end of the 31st: 2 + 30 * 24 hours.
    assert month.fields["amount"] == pytest.approx(RATE * (2 + 30 * 24), rel=1e-6)
    assert month.fields["coverage"] == pytest.approx((2 + 30 * 24) / (31 * 24), rel=1e-6)


def test_late_data_recomputes_the_hours_and_the_day(harness: Harness) -> None:
    harness.feed(at(0), at(8))
    harness.feed(at(12), at(0, 10, day=2))  # four hours missing: the readings went elsewhere
    harness.service.settle(at(0, 10, day=2) + 200)
    day = harness.energy("day")[at(0)]
    assert day.fields["amount"] == pytest.approx(RATE * 24)  # the gap's share, pro rata
    assert day.fields["coverage"] == pytest.approx(20 / 24, rel=1e-3)
    written = len(harness.records)
    harness.feed(at(8), at(12))  # the spool replayed: the four hours' readings, late
    health = harness.service.health()
    assert health["accounts_late_readings"] == 4 * 360
    again = harness.service.settle(at(0, 15, day=2) + 200)
    rewritten = {(r.tags["period"], r.ts / 1e9) for r in again}
    assert {("hour", at(h)) for h in range(7, 13)} <= rewritten
    assert ("day", at(0)) in rewritten
    day = harness.energy("day")[at(0)]
    assert day.fields["amount"] == pytest.approx(RATE * 24)  # not counted twice
    assert day.fields["coverage"] == pytest.approx(1.0)
    assert harness.service.health()["accounts_recomputed"] == len(again)
    assert len(harness.records) == written + len(again)


async def test_a_restart_in_the_middle_of_an_hour_forgets_nothing(tmp_path: Path) -> None:
    path = site(tmp_path, ACCOUNTS)
    store = tmp_path / "accounts.sqlite"
    first = Harness(path, store)
    first.service.store.start()
    first.feed(at(9, 50), at(10, 30))
    first.service.settle(at(10, 30))
    await first.service.save()
    first.service.store.stop()

    second = Harness(path, store)
    second.service.store.start()
    try:
        second.feed(at(10, 30, 20), at(11, 10))  # back 20 s later
        second.service.settle(at(11, 10))
        hours = second.energy("hour")
        assert list(hours) == [at(10)]  # 09:00 was written before the restart
        assert hours[at(10)].fields["amount"] == pytest.approx(RATE)
        assert hours[at(10)].fields["coverage"] == pytest.approx(1.0)
    finally:
        second.service.store.stop()


def test_resets_swaps_and_jumps_reach_health(harness: Harness) -> None:
    samples = [
        Sample("m1", int(at(10, m) * 1e9), {"energy_kwh": v})
        for m, v in [(0, 1000.0), (1, 1000.5), (2, 0.2), (3, 0.7), (4, 5000.0), (5, 90000.0)]
    ]
    harness.service.take(samples)
    health = harness.service.health()
    assert health["accounts_readings"] == 6
    assert health["accounts_resets"] == 1  # 1000.5 -> 0.2: restarted from 0
    assert health["accounts_implausible_jumps"] == 2  # 0.7 -> 5000, 5000 -> 90000
    harness.service.take(
        [Sample("m1", int(at(10, 6) * 1e9), {"energy_kwh": 4000.0})]
    )  # a new meter
    assert harness.service.health()["accounts_swaps"] == 1
    harness.service.settle(at(11, 5))
    assert harness.energy("hour", "m1")[at(10)].fields["amount"] == pytest.approx(0.5 + 0.2 + 0.5)


def test_a_swap_the_site_declares_counts_both_meters(tmp_path: Path) -> None:
    swap = (
        "  swaps:\n"
        "    - {device: m0, point: energy_kwh, at: '2026-07-01T10:15:00+08:00', "
        "new_start: 50, old_final: 5004}\n"
    )
    h = Harness(site(tmp_path, ACCOUNTS + swap), tmp_path / "accounts.sqlite")
    h.service.store.start()
    try:
        h.service.take(
            [
                Sample("m0", int(at(10, m) * 1e9), {"energy_kwh": v})
                for m, v in [(0, 5000.0), (10, 5003.0), (20, 52.0), (30, 53.0)]
            ]
        )
        h.service.settle(at(11, 5))
        # 5000 -> 5003, the old meter's last 1, the new one's first 2, then 1.
        assert h.energy("hour")[at(10)].fields["amount"] == pytest.approx(7.0)
        assert h.service.health()["accounts_swaps"] == 1
    finally:
        h.service.store.stop()


async def test_on_victoriametrics_each_rewrite_is_a_millisecond_later(tmp_path: Path) -> None:
    """VictoriaMetrics keeps every sample of a timestamp: a period written again must be the
    newest sample of its series there, also after a restart."""
    path = meter_site(
        tmp_path,
        [1],
        "influxdb: {api: v2, url: 'http://127.0.0.1:1', org: o, bucket: b, "
        "server: victoriametrics}",
    )
    path.write_text(path.read_text(encoding="utf-8") + ACCOUNTS, encoding="utf-8")
    store = tmp_path / "accounts.sqlite"
    first = Harness(path, store)
    first.service.store.start()
    first.feed(at(0), at(8))
    first.feed(at(12), at(0, 10, day=2))
    first.service.settle(at(0, 10, day=2) + 200)
    assert {r.ts for r in first.records if r.tags["period"] == "day"} == {int(at(0) * 1e9)}
    first.feed(at(8), at(10))  # the spool replays half the gap
    first.service.settle(at(0, 15, day=2) + 200)
    await first.service.save()
    first.service.store.stop()

    second = Harness(path, store)
    second.service.store.start()
    try:
        second.feed(at(10), at(12))  # after a restart, the rest of it
        second.service.settle(at(0, 20, day=2) + 200)
    finally:
        second.service.store.stop()
    days = [r for r in first.records + second.records if r.tags["period"] == "day"]
    assert [r.ts - int(at(0) * 1e9) for r in days] == [0, 1_000_000, 2_000_000]
    assert days[-1].fields["amount"] == pytest.approx(RATE * 24)
    assert days[-1].fields["coverage"] == pytest.approx(1.0)
    hour_9 = [r.ts for r in second.records if r.tags["period"] == "hour" and r.ts // 10**9 == at(9)]
    assert hour_9 == [int(at(9) * 1e9) + 2_000_000]  # written, rewritten, rewritten again
