"""`guanjia accounts refactor`: the accounts a site kept with one factor set (cn-2023) written by
the accounts runtime into a real InfluxDB 1.6 and VictoriaMetrics, a late stretch rewriting some
periods; then the site takes another set (the test's own file, every grid factor 0.6 and
electricity 0.3 kgce/kWh) and the command recomputes history, month by month. Every period's
figures are checked against amount × the new factors, the amounts against what was there; on
VictoriaMetrics each rewrite is the period's newest sample and the gateway's next revision comes
after it."""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml

from accounts.store import AccountsStore
from core.types import Sample
from gateway.accounts_service import AccountsService
from gateway.bus import Bus
from gateway.catalog import DeviceCatalog
from gateway.cli import main
from gateway.config_load import load_site
from gateway.lineproto import record_line
from gateway.service import make_transport
from gateway.spool import Spool
from rules.model import Record
from tests.servers import InfluxDB1Server, VictoriaMetricsServer
from tests.sites import meter_site

ROOT = Path(__file__).resolve().parent.parent
TZ = ZoneInfo("Asia/Shanghai")
RATE = 36.0  # kWh an hour
OLD_KGCE, OLD_CO2 = 0.1229, 0.55  # cn-2023: electricity, and the east grid's 2023 factor
NEW_KGCE, NEW_CO2 = 0.3, 0.6  # the test's set
START = datetime(2026, 6, 30, tzinfo=TZ)
END = datetime(2026, 7, 2, 0, 10, tzinfo=TZ)
JULY = datetime(2026, 7, 1, tzinfo=TZ).timestamp()
approx = pytest.approx

# (device, from, to): readings that reach the accounts late, once the rest was written
LATE = [("m1", datetime(2026, 6, 30, 10, tzinfo=TZ), datetime(2026, 6, 30, 12, tzinfo=TZ))]
# A stretch that arrives only after the refactor, when the gateway runs again
AFTER = ("m0", datetime(2026, 7, 1, 10, tzinfo=TZ), datetime(2026, 7, 1, 11, tzinfo=TZ))


def _site(tmp_path: Path, database: str) -> Path:
    path = meter_site(tmp_path, [1, 2], database)
    path.write_text(
        path.read_text(encoding="utf-8") + "accounts:\n"
        "  grid_region: east\n"
        "  store: accounts.sqlite\n"
        "  counters: {energy_kwh: {carrier: electricity, flow: import, unit: kWh}}\n",
        encoding="utf-8",
    )
    return path


def _new_factors(site: Path) -> None:
    """The site now names the test's factor set, a file beside it."""
    data = yaml.safe_load((ROOT / "config/factors/cn-2023.yaml").read_text(encoding="utf-8"))
    data["name"] = "cn-test"
    electricity = data["carriers"]["electricity"]
    electricity["kgce"]["value"] = NEW_KGCE
    for factor in electricity["grid_co2_kg"]:
        factor["value"] = NEW_CO2
    (site.parent / "cn-test.yaml").write_text(
        yaml.safe_dump(data, allow_unicode=True), encoding="utf-8"
    )
    text = site.read_text(encoding="utf-8")
    site.write_text(
        text.replace("  grid_region: east\n", "  grid_region: east\n  factors: cn-test.yaml\n"),
        encoding="utf-8",
    )


def _inside(device: str, t: datetime, stretches: list[tuple[str, datetime, datetime]]) -> bool:
    return any(d == device and lo <= t < hi for d, lo, hi in stretches)


class Gateway:
    """The accounts runtime of the site, its Records sent to the site's database as the sink
    would send them (each settle one request)."""

    def __init__(self, site: Path) -> None:
        self.loaded = load_site(site)
        bus = Bus()
        self.records: list[Record] = []
        bus.subscribe(Record, self.records.append, name="test")
        self.service = AccountsService(self.loaded, DeviceCatalog.build(self.loaded), bus)
        self.transport = make_transport(self.loaded)
        self.service.store.start()

    def feed(self, device: str, lo: datetime, hi: datetime) -> None:
        t, batch = lo, []
        while t < hi:
            kwh = (t - START).total_seconds() * RATE / 3600
            batch.append(Sample(device, int(t.timestamp() * 1e9), {"energy_kwh": kwh}))
            t += timedelta(minutes=1)
        self.service.take(batch)

    def settle(self, now: datetime) -> None:
        published = len(self.records)
        self.service.settle(now.timestamp())
        site_id = self.loaded.site.site.id
        lines = [r for rec in self.records[published:] if (r := record_line(site_id, rec))]
        assert self.transport is not None
        if lines:
            self.transport.send(("\n".join(lines) + "\n").encode())

    def stop(self) -> None:
        self.service.store.save(self.service.changes()).result()
        self.service.store.stop()
        if self.transport is not None:
            self.transport.close()


def populate(site: Path) -> int:
    """Two days of two meters read every minute, settled hourly; m1's 10:00-12:00 on 30 June
    arrives the next morning (its hours, day and June written again), m0's 10:00-11:00 on
    1 July only after the refactor. Returns how many period figures were sent."""
    g = Gateway(site)
    try:
        t = START
        while t < END:
            hour = t + timedelta(hours=1)
            for device in ("m0", "m1"):
                m = t
                while m < hour:
                    step = m + timedelta(minutes=1)
                    if not _inside(device, m, [*LATE, AFTER]):
                        g.feed(device, m, step)
                    m = step
            g.settle(hour)
            if hour == datetime(2026, 7, 1, 6, tzinfo=TZ):
                for device, lo, hi in LATE:
                    g.feed(device, lo, hi)
                g.settle(hour + timedelta(minutes=5))
            t = hour
    finally:
        g.stop()
    return len(g.records)


def after_the_refactor(site: Path) -> int:
    """The gateway runs again (the new set) and m0's missing hour arrives; how many period
    figures it sent."""
    g = Gateway(site)
    try:
        g.feed(*AFTER)
        g.settle(END + timedelta(minutes=30))
    finally:
        g.stop()
    return len(g.records)


# Figures by (device, period, start): amount, kgce, co2_kg, factor_set, revision (ms)
Figures = dict[tuple[str, str, int], tuple[float, float, float, str | None, int]]


def influx_figures(influx: InfluxDB1Server) -> Figures:
    result = influx.query(
        "SELECT amount, kgce, co2_kg, factor_set FROM energy GROUP BY device, period",
        db="building",
    )
    out: Figures = {}
    for s in result["results"][0].get("series", []):
        tags = s["tags"]
        for ts, amount, kgce, co2, label in s["values"]:
            out[(tags["device"], tags["period"], ts // 10**9)] = (amount, kgce, co2, label, 0)
    return out


def vm_figures(vm: VictoriaMetricsServer) -> Figures:
    """Each period's newest samples, as last_over_time would answer."""
    newest: dict[tuple[str, str, int], dict[str, tuple[int, float]]] = {}
    for s in vm.export('{__name__=~"energy_(amount|kgce|co2_kg)"}'):
        labels = s["metric"]
        name = labels["__name__"].removeprefix("energy_")
        for ts_ms, value in zip(s["timestamps"], s["values"], strict=True):
            key = (labels["device"], labels["period"], ts_ms // 1000)
            got = newest.setdefault(key, {})
            if name not in got or ts_ms % 1000 >= got[name][0]:
                got[name] = (ts_ms % 1000, value)
    return {
        key: (f["amount"][1], f["kgce"][1], f["co2_kg"][1], None, f["amount"][0])
        for key, f in newest.items()
    }


def refactor(capsys: pytest.CaptureFixture[str], site: Path, *args: str) -> tuple[int, str]:
    code = main(["accounts", "refactor", str(site), *args])
    out = capsys.readouterr()
    return code, out.out + out.err


def _counts(keys: Any, pick: Callable[[int], bool]) -> str:
    kinds = [period for _, period, start in keys if pick(start)]
    return ", ".join(f"{kinds.count(k)} {k}" for k in ("hour", "day", "month"))


def _old(f: tuple[float, float, float, str | None, int]) -> bool:
    amount, kgce, co2, label, _ = f
    return (
        kgce == approx(amount * OLD_KGCE)
        and co2 == approx(amount * OLD_CO2)
        and label
        in (
            None,
            "cn-2023/east",
        )
    )


def _new(f: tuple[float, float, float, str | None, int]) -> bool:
    amount, kgce, co2, label, _ = f
    return (
        kgce == approx(amount * NEW_KGCE)
        and co2 == approx(amount * NEW_CO2)
        and label
        in (
            None,
            "cn-test/east",
        )
    )


def test_influxdb_history_recomputed_month_by_month(
    tmp_path: Path, influx1: InfluxDB1Server, capsys: pytest.CaptureFixture[str]
) -> None:
    site = _site(tmp_path, f"influxdb: {{api: v1, url: '{influx1.url}', database: building}}")
    populate(site)
    before = influx_figures(influx1)
    assert before
    assert all(_old(f) for f in before.values())
    assert {k[1] for k in before} == {"hour", "day", "month"}
    _new_factors(site)

    code, said = refactor(capsys, site, "--from", "2026-07", "--to", "2026-07")
    assert code == 0, said
    july = sum(1 for k in before if k[2] >= JULY)
    assert said.strip() == (
        f"{site}: 2026-07 to 2026-07, factor set cn-test/east: {july} periods rewritten "
        f"({_counts(before, lambda t: t >= JULY)}) of {july} read"
    )
    now = influx_figures(influx1)
    assert now.keys() == before.keys()
    for key, f in now.items():
        assert f[0] == before[key][0], key  # the amount stays
        assert _new(f) if key[2] >= JULY else _old(f), key

    code, said = refactor(capsys, site)  # from the first month the accounts hold to now
    assert code == 0, said
    june = len(before) - july
    this_month = datetime.now(TZ).strftime("%Y-%m")
    assert said.strip() == (
        f"{site}: 2026-06 to {this_month}, factor set cn-test/east: {june} periods rewritten "
        f"({_counts(before, lambda t: t < JULY)}) of {len(before)} read"
    )
    now = influx_figures(influx1)
    assert all(_new(f) for f in now.values())
    assert {k: f[0] for k, f in now.items()} == {k: f[0] for k, f in before.items()}
    code, said = refactor(capsys, site)
    assert code == 0
    assert f" 0 periods rewritten (0 hour, 0 day, 0 month) of {len(before)}" in said

    after_the_refactor(site)  # the gateway's own rewrite, with the new set
    late = influx_figures(influx1)
    day = late[("m0", "day", int(JULY))]
    assert day[0] == approx(24 * RATE)
    assert _new(day)


def test_victoriametrics_rewrites_are_the_newest_samples_and_counted_in_the_store(
    tmp_path: Path, vm: VictoriaMetricsServer, capsys: pytest.CaptureFixture[str]
) -> None:
    site = _site(
        tmp_path,
        f"influxdb: {{api: v2, url: '{vm.url}', org: o, bucket: b, server: victoriametrics}}",
    )
    samples = populate(site)
    assert vm.wait_for_samples('{__name__="energy_amount"}', samples, timeout=30.0) == samples
    before = vm_figures(vm)
    assert before
    assert all(_old(f) for f in before.values())
    revised = {k: f[4] for k, f in before.items() if f[4]}
    assert set(revised) >= {
        ("m1", "hour", int(datetime(2026, 6, 30, h, tzinfo=TZ).timestamp())) for h in (10, 11)
    } | {
        ("m1", "day", int(START.timestamp())),
        ("m1", "month", int(datetime(2026, 6, 1, tzinfo=TZ).timestamp())),
    }
    _new_factors(site)

    # A dry run counts and writes nothing (the revisions below are the next ones).
    code, said = refactor(capsys, site, "--dry-run")
    assert code == 0, said
    assert f" {len(before)} periods to rewrite (" in said
    assert vm.count_samples('{__name__="energy_amount"}') == samples

    code, said = refactor(capsys, site, "--from", "2026-06", "--to", "2026-07")
    assert code == 0, said
    assert f"factor set cn-test/east: {len(before)} periods rewritten (" in said
    samples += len(before)
    assert vm.wait_for_samples('{__name__="energy_amount"}', samples, timeout=30.0) == samples
    now = vm_figures(vm)
    assert now.keys() == before.keys()
    for key, f in now.items():
        assert _new(f), key
        assert f[0] == before[key][0], key
        assert f[4] == before[key][4] + 1, key  # a millisecond after its newest sample
    store = AccountsStore(tmp_path / "accounts.sqlite")
    try:
        kept = store.load()
    finally:
        store.close()
    for (device, period, start), f in now.items():
        assert kept[f"{device}/energy_kwh"].revisions[(period, float(start))] == f[4]
    # VictoriaMetrics keeps no factor_set: figures already the set's are left alone.
    code, said = refactor(capsys, site, "--from", "2026-06", "--to", "2026-07")
    assert code == 0
    assert " 0 periods rewritten " in said

    samples += after_the_refactor(site)
    day_start = int(JULY)
    assert vm.wait_for_samples('{__name__="energy_amount"}', samples, timeout=30.0) == samples
    late = vm_figures(vm)
    day = late[("m0", "day", day_start)]
    assert day[0] == approx(24 * RATE)
    assert _new(day)
    assert day[4] == now[("m0", "day", day_start)][4] + 1


def test_refused_beside_a_running_gateway_or_a_spool_to_send(
    tmp_path: Path, influx1: InfluxDB1Server, capsys: pytest.CaptureFixture[str]
) -> None:
    site = _site(tmp_path, f"influxdb: {{api: v1, url: '{influx1.url}', database: building}}")
    loaded = load_site(site)
    with Spool(loaded.spool_dir(), 1 << 20):  # the gateway holds its spool
        code, said = refactor(capsys, site)
    assert code == 1
    assert said.count("\n") == 1
    assert "the gateway is running" in said
    assert "stop it first" in said
    with Spool(loaded.spool_dir(), 1 << 20) as spool:
        spool.append(b"energy,site=test-site amount=1.0 1\n", 1)
    code, said = refactor(capsys, site)
    assert code == 1
    assert said.count("\n") == 1
    assert "1 point waits in the spool" in said
    assert "guanjia replay" in said
    code, said = refactor(capsys, site, "--from", "2026-07", "--to", "2026-06")
    assert code == 2
    assert "is after --to" in said
    bare = tmp_path / "bare.yaml"
    bare.write_text(re.sub(r"accounts:.*", "", site.read_text(encoding="utf-8"), flags=re.S))
    code, said = refactor(capsys, bare)
    assert code == 1
    assert said.strip() == f"{bare}: accounts: the site keeps no accounts: nothing to recompute"


def test_readme_accounts_commands_run(
    tmp_path: Path,
    influx1: InfluxDB1Server,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The commands of README.md's "Energy and carbon accounts", in the site's folder."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Energy and carbon accounts", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"^\.venv/bin/guanjia (accounts refactor .*)$", section, re.M)
    assert len(commands) >= 2, "README.md lost its accounts refactor commands"
    site = _site(tmp_path, f"influxdb: {{api: v1, url: '{influx1.url}', database: building}}")
    populate(site)
    _new_factors(site)
    monkeypatch.chdir(tmp_path)
    for command in commands:
        assert main(shlex.split(command)) == 0, capsys.readouterr()
        assert "factor set cn-test/east" in capsys.readouterr().out, command
    assert all(_new(f) for f in influx_figures(influx1).values())
