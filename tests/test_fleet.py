"""Many compounds, one centre: 20 gateways on this machine, each its own `guanjia run` process
with a small simulated building (three meters), against one Mosquitto, one VictoriaMetrics and
one InfluxDB 1.6 behind a link the test cuts and restores (tests/fleet.py).

Checked per site: the rows the centre's database holds are exactly what that gateway says it
wrote, every reading it took among them (none lost, none twice); its devices, topics and alarm
transitions are its own and nobody else's; the alarm transitions raised and cleared while the
link was down reach the centre's broker in order, seq for seq as the gateway's store has them,
and the database too. Then the fleet dashboard's queries (config/grafana/dashboards/fleet.json)
run on the InfluxDB 1.6 sites' data.
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from gateway.alarm_store import AlarmStore
from tests.fleet import (
    Archiver,
    Buildings,
    FleetSite,
    GatewayProcess,
    LinkProxy,
    influx_rows,
    running,
    vm_rows,
    write_fleet,
)
from tests.servers import InfluxDB1Server, MosquittoServer, VictoriaMetricsServer

pytestmark = pytest.mark.servers

ROOT = Path(__file__).resolve().parent.parent
GATEWAYS = 20
CUT_S = 8.0  # how long the link to the centre is down
DB = "building"


def wait(
    what: str, condition: Any, timeout: float = 60.0, every: float = 0.2, why: Any = None
) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            detail = f": {why()}" if why is not None else ""
            raise AssertionError(f"not within {timeout:g} s: {what}{detail}")
        time.sleep(every)


def expected_transitions(site: FleetSite) -> list[tuple[str, str]]:
    """(alarm, what), sorted: every site raises and clears its first meter's alarm (the clear
    while the link is down); even sites also raise their second meter's during the outage
    (before or after that clear, as the polls come). Their order is the gateway's store's."""
    first, second = (f"volts.{d}" for d in site.devices[:2])
    out = [(first, "raised"), (first, "cleared")]
    if int(site.id[-2:]) % 2 == 0:
        out.append((second, "raised"))
    return sorted(out)


def unique_events(archiver: Archiver, site: str) -> list[dict[str, Any]]:
    """The site's transitions at the centre, a repeat (a PUBACK lost with the link) dropped."""
    seen: dict[int, dict[str, Any]] = {}
    for event in archiver.events(site):
        seen.setdefault(event["seq"], event)
    return list(seen.values())


def test_twenty_gateways_one_centre_the_link_cut_and_restored(tmp_path: Path) -> None:
    started = time.monotonic()
    with (
        MosquittoServer(tmp_path / "mosquitto") as broker,
        InfluxDB1Server(tmp_path / "influx") as influx,
        VictoriaMetricsServer(tmp_path / "vm") as vm,
    ):
        influx.create_database(DB)
        targets = {"mqtt": broker.port, "influx": influx.port, "vm": vm.port}
        with LinkProxy(targets) as link:
            sites = write_fleet(
                tmp_path / "sites",
                GATEWAYS,
                broker_port=link.ports["mqtt"],
                influx_url=link.url("influx"),
                vm_url=link.url("vm"),
            )
            buildings = Buildings(sites, tmp_path / "buildings.log")
            archiver = Archiver(broker.port)
            gateways = [GatewayProcess(s, s.path.parent / "gateway.log") for s in sites]
            try:
                with running(gateways):
                    _run(sites, gateways, buildings, archiver, link, influx, vm)
                codes = [g.process.returncode for g in gateways]
                assert codes == [0] * GATEWAYS, codes
            finally:
                buildings.stop()
                archiver.close()
            print(f"fleet run: {time.monotonic() - started:.1f} s, {link.resets} resets")
            _check(sites, gateways, archiver, influx, vm)


def _run(
    sites: list[FleetSite],
    gateways: list[GatewayProcess],
    buildings: Buildings,
    archiver: Archiver,
    link: LinkProxy,
    influx: InfluxDB1Server,
    vm: VictoriaMetricsServer,
) -> None:
    def online() -> bool:
        return all(archiver.latest(f"guanjia/{s.id}/status") == b"online" for s in sites)

    def dead() -> list[str]:
        return [g.site.id for g in gateways if g.process.poll() is not None]

    wait("every gateway online at the centre", lambda: online() or bool(dead()), 90)
    assert not dead(), dead()
    for site in sites:
        buildings.raise_alarm(site.devices[0])
    wait("every first alarm at the centre", lambda: all(archiver.events(s.id) for s in sites))

    link.cut()
    cut_at = time.time()
    for site in sites:
        buildings.clear_alarm(site.devices[0])
        if int(site.id[-2:]) % 2 == 0:
            buildings.raise_alarm(site.devices[1])
    time.sleep(CUT_S)
    link.restore()
    restored_at = time.time()

    def caught_up() -> bool:
        return all(
            sorted((e["alarm"], e["what"]) for e in unique_events(archiver, s.id))
            == expected_transitions(s)
            for s in sites
        )

    def missing() -> dict[str, Any]:
        return {
            s.id: [(e["seq"], e["alarm"], e["what"]) for e in archiver.events(s.id)]
            for s in sites
            if sorted((e["alarm"], e["what"]) for e in unique_events(archiver, s.id))
            != expected_transitions(s)
        }

    wait("the alarm transitions of the outage at the centre", caught_up, 60, why=missing)

    # Readings: each gateway's spool replays what the outage held back. Done when every
    # meter has a reading from after the restore and its health line is in (the `gateway`
    # measurement, every 30 s), for the dashboard's "sites online".
    after = int((restored_at + 2) * 1e9)

    def replayed() -> bool:
        for site in sites:
            if site.database == "influxdb":
                rows = influx_rows(influx, DB, site.id)
                newest = {r["device"]: r["time"] for r in rows.get("meter", [])}
                if "gateway" not in rows:
                    return False
            else:
                vm.flush()
                found = vm_rows(vm, site.id)
                newest = {}
                for labels, ts in found.get("meter", set()):
                    device = dict(labels)["device"]
                    newest[device] = max(newest.get(device, 0), ts * 1_000_000)
                if "gateway" not in found:
                    return False
            if any(newest.get(d, 0) < after for d in site.devices):
                return False
        return True

    wait("the readings of the outage in the databases", replayed, 60, every=1.0)
    print(f"link down {restored_at - cut_at:.1f} s")
    # Stopped by their own pids (SIGTERM: each flushes what it holds and logs its counters).
    for g in gateways:
        g.stop()


def _check(
    sites: list[FleetSite],
    gateways: list[GatewayProcess],
    archiver: Archiver,
    influx: InfluxDB1Server,
    vm: VictoriaMetricsServer,
) -> None:
    messages = archiver.snapshot()
    repeats = 0
    all_devices = {d: s.id for s in sites for d in s.devices}
    for site, gateway in zip(sites, gateways, strict=True):
        health = gateway.final_health()
        # Nothing lost, nothing left behind: every encoded line written, none spooled or lost.
        assert health["points_lost"] == 0, site.id
        assert health["spool_points"] == 0, site.id
        assert health["dead_letter_points"] == 0, site.id
        assert health["lines_encoded"] == health["points_written"], (site.id, health)
        assert health["mqtt_outbox_depth"] == 0, site.id
        if site.database == "influxdb":
            rows = influx_rows(influx, DB, site.id)
            counts = {m: len(r) for m, r in rows.items()}
            meter_devices = {r["device"] for r in rows["meter"]}
            alarm_rows = sorted(rows.get("alarm", []), key=lambda r: r["time"])
            db_transitions = [(r["alarm_id"], r["transition"]) for r in alarm_rows]
        else:
            # VictoriaMetrics shows a write a second or so later: the last lines, flushed as
            # the gateway stopped, are waited for.
            def all_in(site_id: str = site.id, written: int = health["points_written"]) -> bool:
                vm.flush()
                return sum(len(r) for r in vm_rows(vm, site_id).values()) >= written

            wait(f"{site.id}'s last lines", all_in, 15)
            found = vm_rows(vm, site.id)
            counts = {m: len(r) for m, r in found.items()}
            meter_devices = {dict(labels)["device"] for labels, _ts in found["meter"]}
            assert counts.get("alarm", 0) == len(expected_transitions(site)), site.id
        # The site's rows in the centre's database are exactly what its gateway wrote, and
        # every reading it took is among them.
        assert sum(counts.values()) == health["points_written"], (site.id, counts, health)
        assert counts["meter"] == health["samples"], (site.id, counts, health)
        # No cross-talk: the site's rows hold its own devices only.
        assert meter_devices == set(site.devices), site.id

        # Its alarm transitions at the centre: seq for seq its store's history, in order.
        events = archiver.events(site.id)
        repeats += len(events) - len(unique_events(archiver, site.id))
        unique = unique_events(archiver, site.id)
        with AlarmStore(site.store) as store:
            history = store.history(limit=1000)
        in_order = [(h.alarm_id, h.what) for h in history]
        assert sorted(in_order) == expected_transitions(site), site.id
        if site.database == "influxdb":
            assert db_transitions == in_order, site.id
        assert [e["seq"] for e in unique] == [h.seq for h in history] == [1, 2, 3][: len(history)]
        assert [(e["alarm"], e["what"]) for e in unique] == in_order
        assert all(e["site"] == site.id for e in events)

    # Every topic at the centre is under its own site; a device's topics name its site.
    for topic, _payload, _retain in messages:
        parts = topic.split("/")
        assert parts[0] == "guanjia", topic
        assert parts[1] in {s.id for s in sites}, topic
        if parts[2] in all_devices:
            assert all_devices[parts[2]] == parts[1], topic
    states = {t for t, _, _ in messages if t.endswith("/state")}
    assert states == {f"guanjia/{all_devices[d]}/{d}/state" for d in all_devices}
    print(f"{repeats} transitions delivered twice (dropped by seq)")

    _fleet_dashboard(influx, [s for s in sites if s.database == "influxdb"])


# -- the fleet dashboard ---------------------------------------------------------------------

ACCOUNTED = 3  # InfluxDB sites given two days of accounts for the energy panels


def _fleet_dashboard(influx: InfluxDB1Server, sites: list[FleetSite]) -> None:
    """Every panel's and variable's query, Grafana's macros filled in as Grafana fills them
    (tests/grafana_queries.py), the site selector as All, as every site listed and as one
    site. The gateways' own accounts close an hour two minutes after it ends, which a run
    of a minute never sees: yesterday and today of the first sites' meters go through the
    accounts runtime into the database first, as tests/test_grafana.py does for the demo."""
    from tests.grafana_queries import MODES, fill, panel_queries, resolve_variables
    from tests.test_grafana import _accounts_into

    now = datetime.now(ZoneInfo("Asia/Shanghai"))
    accounted = {s.id for s in sites[:ACCOUNTED]}
    for site in sites[:ACCOUNTED]:
        assert _accounts_into(influx, site.path, now) > 0
    dashboard = json.loads(
        (ROOT / "config" / "grafana" / "dashboards" / "fleet.json").read_text(encoding="utf-8")
    )
    assert dashboard["title"].startswith("城市中心")

    def rows(query: str) -> list[list[Any]]:
        result = influx.query(query, db=DB)["results"][0]
        return [row for s in result.get("series", []) for row in s["values"]]

    empty = []
    for mode in MODES:
        texts, values = resolve_variables(dashboard, rows, mode)
        assert values["site"] == [s.id for s in sites]
        chosen = {sites[0].id} if mode == "single" else {s.id for s in sites}
        for pq in panel_queries(dashboard, now):
            query = fill(pq.query, texts, pq.range)
            series = influx.query(query, db=DB)["results"][0].get("series", [])  # no error
            if not any(v is not None for s in series for row in s["values"] for v in row[1:]):
                empty.append(f"{mode}: {pq.where}: {query}")
                continue
            tagged = {s["tags"]["site"] for s in series if "site" in s.get("tags", {})}
            if tagged:  # grouped by site: the chosen sites, each with its own rows
                want = chosen & accounted if 'FROM "energy"' in query else chosen
                assert tagged == want, (pq.where, tagged)
            if pq.where.startswith("panel 9 ") and mode == "all":  # alarms by site and grade
                by = {(s["tags"]["site"], s["tags"]["grade"]) for s in series}
                assert by == {(s.id, s.grade) for s in sites}, by
    assert not empty, "\n".join(empty)
    print(f"fleet dashboard: {len(dashboard['panels'])} panels, every query answered with rows")
