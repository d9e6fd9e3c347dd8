"""The provisioned Grafana dashboards (config/grafana/dashboards/).

Without a server: six dashboards with Chinese titles and their own uids, the chained selectors
园区 / 楼栋 / 楼层, InfluxQL only on the datasource variable, alarm annotations, and every name
a query uses is a measurement, tag or field the gateway writes.

With a real InfluxDB 1.6: the virtual building runs into it for some seconds (the demo's
wiring, `gateway.demo.run_demo`, with the gateway's health every 2 s instead of 30), and two
days of accounts are written beside it (the building's meter models stepped over yesterday and
today by simulator/month.py, fed to the gateway's AccountsService, its `energy` Records encoded
as the sink encodes them). Then every panel's, variable's and annotation's query runs as Grafana
would send it (tests/grafana_queries.py fills the macros) and must return values.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml

from tests.grafana_queries import (
    ALL,
    MODES,
    dashboards,
    fill,
    format_variable,
    panel_queries,
    query_variables,
    resolve_variables,
)
from tests.servers import InfluxDB1Server

ROOT = Path(__file__).resolve().parent.parent
DB = "building"
TZ = ZoneInfo("Asia/Shanghai")
# The six of this module; others in the folder (the fleet's) are tested where they are made.
SIX = ("cockpit", "energy", "pv", "hvac", "security", "gateway")
DASHBOARDS = {name: d for name, d in dashboards().items() if name[: -len(".json")] in SIX}
DEMO_SECONDS = 12.0  # the demo's scenario is over within ~4 s at speed 60 (simulator/scenario.py)
HEALTH_EVERY = 2.0
# A July Tuesday before office hours, as `guanjia demo` starts: the AC policy's summer rule.
DEMO_START = datetime(2026, 7, 14, 7, 58)

# What the gateway writes besides profile points: health, alarms, the audit trail, accounts.
WRITTEN_BY_THE_GATEWAY = {
    "gateway": {
        "spool_points",
        "spool_dropped_points",
        "devices_online",
        "devices",
        "database_up",
        "uptime_s",
        "points_written",
        "points_lost",
        "points_rejected",
        "dead_letter_points",
        "bus_subscriber_failures",
        "write_failures",
        "loop_lag_ms",
        "loop_lag_max_ms",
    },
    "alarm": {"text_zh", "text_en", "transition", "state", "value", "alarm_id", "by"},
    "audit": {"origin", "requested", "old", "reason", "requested_text", "old_text"},
    "energy": {"amount", "kgce", "co2_kg", "coverage", "factor_set"},
}
TAG_KEYS = {
    *("site", "gateway", "building", "floor", "zone", "device", "kind", "use"),
    *("grade", "rule", "subject", "point", "outcome", "carrier", "flow", "period"),
}


# -- the files ----------------------------------------------------------------------------


def test_six_dashboards_with_chinese_titles() -> None:
    assert len(DASHBOARDS) == 6
    uids = [d["uid"] for d in DASHBOARDS.values()]
    assert len(set(uids)) == 6
    assert all(uid.startswith("guanjia-") for uid in uids)
    titles = {d["title"] for d in DASHBOARDS.values()}
    assert len(titles) == 6
    assert all(re.search(r"[\u4e00-\u9fff]", t) for t in titles), titles
    assert DASHBOARDS["cockpit.json"]["title"] == "管家 · 一屏通览"
    for name, d in DASHBOARDS.items():
        assert "guanjia" in d["tags"], name  # what `grafana push` finds them by
        assert d["panels"], name
        ids = [p["id"] for p in d["panels"]]
        assert len(set(ids)) == len(ids), name
        for p in d["panels"]:
            assert re.search(r"[\u4e00-\u9fff]", p["title"]), (name, p["title"])
            grid = p["gridPos"]
            assert grid["x"] + grid["w"] <= 24, (name, p["title"])


def test_selectors_are_chained_tag_queries() -> None:
    for name, d in DASHBOARDS.items():
        variables = {v["name"]: v for v in d["templating"]["list"]}
        assert list(variables) == ["datasource", "site", "building", "floor"], name
        assert variables["datasource"]["type"] == "datasource"
        assert variables["datasource"]["query"] == "influxdb"
        site, building, floor = (variables[n] for n in ("site", "building", "floor"))
        assert site["query"] == 'SHOW TAG VALUES WITH KEY = "site"'
        assert building["query"] == (
            'SHOW TAG VALUES WITH KEY = "building" WHERE "site" =~ /^$site$/'
        )
        assert floor["query"] == (
            'SHOW TAG VALUES WITH KEY = "floor" WHERE "site" =~ /^$site$/ AND '
            '"building" =~ /^$building$/'
        )
        for v in (site, building, floor):
            # "All" must match lines without the tag (a site-less database, a device with no
            # floor): `.*`, not the list of values Grafana would put there by default.
            assert v["includeAll"], (name, v["name"])
            assert v["multi"], (name, v["name"])
            assert v["allValue"] == ".*", (name, v["name"])
            assert v["refresh"] == 1  # on load: a chained variable follows the one before
            assert v["datasource"] == {"type": "influxdb", "uid": "${datasource}"}


def _queries(d: dict[str, Any]) -> list[tuple[str, str]]:
    out = [(f"panel {p['title']}", t["query"]) for p in d["panels"] for t in p["targets"]]
    out += [(f"variable {v['name']}", v["query"]) for v in query_variables(d)]
    out += [(f"annotation {a['name']}", a["query"]) for a in d["annotations"]["list"]]
    return out


def test_every_query_is_influxql_on_the_datasource_variable() -> None:
    for name, d in DASHBOARDS.items():
        for p in d["panels"]:
            assert p["datasource"] == {"type": "influxdb", "uid": "${datasource}"}, name
            assert p["targets"], (name, p["title"])
            for t in p["targets"]:
                assert t["rawQuery"] is True
                assert t["datasource"] == p["datasource"]
                assert t["resultFormat"] in ("time_series", "table")
        for where, query in _queries(d):
            assert re.match(r"(SELECT|SHOW TAG VALUES) ", query), (name, where, query)
            assert "|>" not in query  # no Flux
            if query.startswith("SELECT"):
                # Every selector applies (the gateway's own and the audit have only the site).
                assert '"site" =~ /^$site$/' in query, (name, where)
                # Bounded in time: the panel's range, or a fixed look-back for open alarms;
                # the last `available` of a door or camera is read whenever it was written.
                bounded = "$timeFilter" in query or "time > now() - 30d" in query
                assert bounded or 'last("available")' in query, (name, where, query)


def test_alarms_are_annotations_on_every_dashboard() -> None:
    for name, d in DASHBOARDS.items():
        (a,) = d["annotations"]["list"]
        assert a["enable"], name
        assert a["datasource"]["uid"] == "${datasource}", name
        target = a["target"]  # Grafana 9 and later; older ones read the same at the top
        assert target["query"] == a["query"]
        assert (target["textColumn"], target["tagsColumn"], target["titleColumn"]) == (
            a["textColumn"],
            a["tagsColumn"],
            a["titleColumn"],
        )
        assert re.search(r'FROM "alarm" WHERE "transition" = \'raised\'', a["query"])
        assert a["textColumn"] == "text_zh"
        assert set(a["tagsColumn"].split(",")) <= TAG_KEYS


def _profile_fields() -> dict[str, set[str]]:
    fields: dict[str, set[str]] = {}
    for path in (ROOT / "config" / "profiles").glob("*.yaml"):
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        names = {p["name"] for p in data.get("points", [])}
        names |= {p["name"] for m in data.get("messages", []) for p in m["points"]}
        names |= {p["name"] for e in data.get("events", []) for p in e.get("points", [])}
        fields.setdefault(data["kind"], set()).update(names)
    for kind in ("access", "camera", "meter", "sensor"):
        fields.setdefault(kind, set()).update({"available", "arrival_lag_s"})
    return fields


def test_every_name_in_a_query_is_written_by_the_gateway() -> None:
    known = _profile_fields()
    for kind, names in WRITTEN_BY_THE_GATEWAY.items():
        known.setdefault(kind, set()).update(names)
    for name, d in DASHBOARDS.items():
        for where, query in _queries(d):
            lists = re.findall(r'FROM ((?:"[a-z_]+"(?:, )?)+)', query)
            measurements = {m for names in lists for m in re.findall(r'"([a-z_]+)"', names)}
            assert measurements <= set(known), (name, where, measurements)
            aliases = set(re.findall(r'AS "([^"]+)"', query))
            names = set(re.findall(r'"([^"]+)"', query)) - aliases - measurements - TAG_KEYS
            fields = set().union(*(known[m] for m in measurements)) if measurements else set()
            assert names <= fields, f"{name} {where}: {names - fields} in {query}"


# -- against a demo run -------------------------------------------------------------------


def _run_rows(influx: InfluxDB1Server) -> Callable[[str], list[list[Any]]]:
    def rows(query: str) -> list[list[Any]]:
        result = influx.query(query, db=DB)["results"][0]
        return [row for s in result.get("series", []) for row in s["values"]]

    return rows


def _accounts_into(influx: InfluxDB1Server, site: Path, now: datetime) -> int:
    """Yesterday and today of the building's counters through the accounts, into the
    database. The models run to the end of the current hour: "today" has a closed hour at any
    time of day (the demo's own accounts close nothing in a run of seconds)."""
    from accounts.config import DEFAULT_COUNTERS
    from gateway.accounts_service import AccountsService
    from gateway.bus import Bus
    from gateway.catalog import DeviceCatalog
    from gateway.config_load import load_site
    from gateway.lineproto import record_line
    from gateway.site import BrokerConfig, MqttConfig
    from rules.model import Record
    from simulator.building import models_for_site
    from simulator.clock import SimClock
    from simulator.month import Month
    from simulator.site import read_site

    loaded = load_site(site, mqtt=MqttConfig(brokers=[BrokerConfig(name="site", host="127.0.0.1")]))
    start = (now - timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    end = now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1, minutes=15)
    clock = SimClock(speed=0, start=start, tz=loaded.site.site.timezone)
    models = {s.config.id: s.model for s in models_for_site(read_site(site), clock)}
    counters = {p for points in DEFAULT_COUNTERS.values() for p in points}
    month = Month(
        models, start, end, step=timedelta(minutes=15), points={d: counters for d in models}
    )
    bus = Bus()
    records: list[Record] = []
    bus.subscribe(Record, records.append, name="test")
    service = AccountsService(
        loaded, DeviceCatalog.build(loaded), bus, store_path=site.with_name("accounts.sqlite")
    )
    service.store.start()
    try:
        batch: list[Any] = []
        for sample in month.samples():
            if batch and sample.ts != batch[-1].ts:  # one step of every device, as the inbox
                service.take(batch)
                batch = []
            batch.append(sample)
        service.take(batch)
        service.settle(end.timestamp() + 3600)
    finally:
        service.store.stop()
    lines = [line for r in records if (line := record_line(loaded.site.site.id, r))]
    influx.write(lines, DB)
    return len(lines)


async def _demo_into(influx: InfluxDB1Server, site: Path, tmp: Path) -> None:
    from gateway.config_load import LoadedSite
    from gateway.demo import DemoOptions, run_demo
    from gateway.influx_writer import V1Transport
    from gateway.service import Gateway

    async def run_gateway(loaded: LoadedSite, rules_clock: Callable[[], datetime]) -> None:
        gateway = Gateway(
            loaded,
            transport=V1Transport(influx.url, DB, None, None, None, 10.0),
            spool_dir=tmp / "spool",
            health_interval=HEALTH_EVERY,
            rules_clock=rules_clock,
        )
        await gateway.start()
        try:
            await asyncio.sleep(DEMO_SECONDS)
        finally:
            await gateway.stop()

    options = DemoOptions(
        site=site, speed=60.0, start=DEMO_START, alarm_store=str(tmp / "alarms.sqlite")
    )
    await run_demo(options, run_gateway)


@pytest.fixture(scope="module")
def demo_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfluxDB1Server]:
    from tests.sites import demo_on_free_ports

    tmp = tmp_path_factory.mktemp("grafana")
    with InfluxDB1Server(tmp / "influx") as influx:
        influx.create_database(DB)
        site, _ = demo_on_free_ports(tmp)
        assert _accounts_into(influx, site, datetime.now(TZ)) > 1000
        asyncio.run(_demo_into(influx, site, tmp))
        yield influx


def _has_values(result: dict[str, Any]) -> bool:
    return any(
        v is not None for s in result.get("series", []) for row in s["values"] for v in row[1:]
    )


@pytest.mark.servers
@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_every_query_returns_values_from_a_demo_run(name: str, demo_db: InfluxDB1Server) -> None:
    """Every panel, variable and annotation query, the selectors as All, as every value listed
    and as one site and building (floor All), as Grafana sends them."""
    dashboard = DASHBOARDS[name]
    rows = _run_rows(demo_db)
    now = datetime.now(TZ)
    empty = []
    for mode in MODES:
        texts, values = resolve_variables(
            dashboard, rows, mode, {"floor": "All"} if mode == "single" else None
        )
        assert values["site"] == ["city-hall"]
        assert values["building"] == ["main"]
        assert {"B1", "1", "3", "roof"} <= set(values["floor"])
        for pq in panel_queries(dashboard, now):
            query = fill(pq.query, texts, pq.range)
            if not _has_values(demo_db.query(query, db=DB)["results"][0]):
                empty.append(f"{mode}: {pq.where}: {query}")
    assert not empty, "\n".join(empty)


@pytest.mark.servers
def test_one_floor_narrows_the_hvac_dashboard(demo_db: InfluxDB1Server) -> None:
    """The third floor picked: its AC units, its room sensors, its alarms; no other zone."""
    dashboard = DASHBOARDS["hvac.json"]
    rows = _run_rows(demo_db)
    texts, _ = resolve_variables(dashboard, rows, "single", {"floor": "3"})
    assert texts["floor"] == "3"
    now = datetime.now(TZ)
    for pq in panel_queries(dashboard, now):
        query = fill(pq.query, texts, pq.range)
        result = demo_db.query(query, db=DB)["results"][0]
        assert _has_values(result), f"{pq.where}: {query}"
        zones = {s.get("tags", {}).get("zone") for s in result.get("series", [])} - {None}
        assert zones <= {"301", "302", "east", "west", "pantry", "switch-room"}, (pq.where, zones)


@pytest.mark.servers
def test_all_matches_points_without_a_site_tag(demo_db: InfluxDB1Server) -> None:
    """Lines without `site` (written before the tag, or by another writer): the site
    selector has no value to offer, its "All" (`.*`) still matches them."""
    demo_db.create_database("untagged")
    now_ns = int(datetime.now(TZ).timestamp()) * 1_000_000_000
    demo_db.write(
        [
            f"meter,building=old,device=m1,floor=1,kind=meter,use=total "
            f"active_power_total_w=1200.0 {now_ns}",
            f"pv_inverter,building=old,device=pv1,floor=roof,kind=pv_inverter "
            f"active_power_w=300.0 {now_ns}",
        ],
        "untagged",
    )

    def rows(query: str) -> list[list[Any]]:
        result = demo_db.query(query, db="untagged")["results"][0]
        return [row for s in result.get("series", []) for row in s["values"]]

    cockpit = DASHBOARDS["cockpit.json"]
    site, building, floor = query_variables(cockpit)
    assert rows(site["query"]) == []  # Grafana offers "All" alone
    texts = {"site": format_variable(site, ALL)}
    assert {r[-1] for r in rows(fill(building["query"], texts))} == {"old"}
    texts["building"] = format_variable(building, ALL)
    texts["floor"] = format_variable(floor, ALL)
    now = datetime.now(TZ)
    power = {pq.where: pq for pq in panel_queries(cockpit, now)}
    for where in ("panel 1 (当前总功率) A", "panel 4 (光伏当前功率) A"):
        pq = power[where]
        answer = rows(fill(pq.query, texts, pq.range))
        assert answer, where
        assert answer[0][1] in (1200.0, 300.0), where
        picked = {**texts, "site": format_variable(site, "city-hall")}
        assert rows(fill(pq.query, picked, pq.range)) == []
