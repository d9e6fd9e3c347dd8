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
import re
import time
from pathlib import Path
from typing import Any

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


def fill(query: str, site: str, start_ms: int, end_ms: int) -> str:
    """A panel's InfluxQL as Grafana sends it: the time filter, the interval and `$site`
    (All: its allValue). tests/grafana_queries.py does it in full for the other dashboards;
    these are the macros the fleet dashboard uses."""
    macros = {
        "timeFilter": f"time >= {start_ms}ms and time <= {end_ms}ms",
        "__interval": "10s",
        "site": site,
    }
    filled = re.sub(r"\$(timeFilter|__interval|site)\b", lambda m: macros[m[1]], query)
    assert "$" not in filled.replace("/^", "").replace("$/", ""), filled
    return filled


def _fleet_dashboard(influx: InfluxDB1Server, sites: list[FleetSite]) -> None:
    dashboard = json.loads(
        (ROOT / "config" / "grafana" / "dashboards" / "fleet.json").read_text(encoding="utf-8")
    )
    assert dashboard["title"].startswith("城市中心")
    [variable] = [v for v in dashboard["templating"]["list"] if v["type"] == "query"]
    values = influx.query(variable["query"], db=DB)["results"][0]["series"][0]["values"]
    assert sorted(v[1] for v in values) == [s.id for s in sites]
    now_ms = int(time.time() * 1000)
    start_ms = now_ms - 24 * 3600 * 1000
    empty = []
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            for choice in (".*", sites[0].id):
                query = fill(target["query"], choice, start_ms, now_ms)
                result = influx.query(query, db=DB)["results"][0]  # raises on an error
                series = result.get("series", [])
                if not series:
                    empty.append((panel["title"], choice))
                    continue
                if any("site" in s.get("tags", {}) for s in series):  # grouped by site
                    tagged = {s["tags"]["site"] for s in series}
                    want = {s.id for s in sites} if choice == ".*" else {choice}
                    assert tagged == want, (panel["title"], tagged)
                if panel["title"] == "告警（按站点与等级）" and choice == ".*":
                    by = {(s["tags"]["site"], s["tags"]["grade"]) for s in series}
                    assert by == {(s.id, s.grade) for s in sites}, by
    # The accounts write an hour once it has ended (and two minutes more): a run of a minute
    # closes none, so only the energy panels have nothing to show.
    energy = {
        p["title"]
        for p in dashboard["panels"]
        if any('FROM "energy"' in t["query"] for t in p["targets"])
    }
    assert {title for title, _ in empty} <= energy, empty
    print(f"fleet dashboard: {len(dashboard['panels'])} panels, empty: {sorted(set(empty))}")
