"""Demand response end to end, with real parts: openleadr's VTN on loopback sends an event
to the gateway's VEN; the rules switch the simulated CoolMasterNet units off through the
Modbus driver; the simulated AC meter's power drops; the gateway is restarted in the middle
of the event and still restores the units; the load shed it measures from its own readings
in a real InfluxDB is checked against the one computed here from the simulator's own
counters and a baseline history written here."""

from __future__ import annotations

import asyncio
import json
import os
import re
import textwrap
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from gateway.config_load import load_site
from gateway.service import Gateway
from gateway.view import render
from simulator.building import Building, start_building
from simulator.clock import SimClock
from simulator.models.hvac import AcUnit
from simulator.site import read_site
from tests.servers import InfluxDB1Server, free_port, free_ports
from tests.test_dr_openadr import PREFIX, Vtn, until

pytestmark = pytest.mark.servers

ROOT = Path(__file__).resolve().parent.parent
SITE_ID = "dr-site"
LEAD_S = 8.0  # the event starts this long after the VTN gets it
EVENT_S = 45.0
RESTART_AT_S = 15.0  # into the event, the gateway is stopped and started again
HISTORY_DAYS = 10
ZONES = ("301", "302", "303", "304")


def site_text(influx_url: str, vtn_port: int, ports: list[int]) -> str:
    meter_port, ac_port = ports
    units = [
        f"  - id: ac-{zone}\n"
        "    profile: coolmaster_indoor\n"
        f"    modbus: {{transport: tcp, host: 127.0.0.1, port: {ac_port}, unit: 1,\n"
        f"             base: {16 * (i + 1)}, max_writes_per_s: 5}}\n"
        "    poll: 0.5s\n"
        f'    tags: {{floor: "3", zone: "{zone}"}}\n'
        for i, zone in enumerate(ZONES)
    ]
    head = f"""\
site: {{name: 需求响应测试楼, id: {SITE_ID}, timezone: Asia/Shanghai,
       tags: {{building: main}}}}
influxdb: {{api: v1, url: '{influx_url}', database: building}}
batching: {{max_age: 0.2s}}
spool: {{path: spool}}
alarms: {{store: alarms.sqlite}}
commands: {{allow: ["ac-*:setpoint_degc", "ac-*:on_off"]}}
devices:
  - id: meter-hvac
    profile: eastron_sdm630
    modbus: {{transport: tcp, host: 127.0.0.1, port: {meter_port}, unit: 1}}
    poll: 0.5s
    tags: {{floor: B1, zone: switch-room, use: hvac}}
"""
    tail = f"""\
rules:
  - {{id: dr, kind: demand_response}}
demand_response:
  openadr:
    vtn_url: http://127.0.0.1:{vtn_port}{PREFIX}
    ven_name: {SITE_ID}
    state_file: openadr.json
    reconnect_min: 0.2s
    reconnect_max: 1s
    report: {{min_sampling: 1s, max_sampling: 1h}}
  shed: {{meter: meter-hvac, interval: 1s, settle: 2s}}
  state: dr.json
"""
    return head + "".join(units) + tail


def history_lines(start: float, end: float, rate_kw: float) -> list[str]:
    """The meter's counter on the same window of the days before: `rate_kw` all along."""
    lines = []
    counter = 1000.0
    for days in range(1, HISTORY_DAYS + 1):
        t0, t1 = start - 86400 * days - 300, end - 86400 * days + 300
        t = t0
        while t <= t1:
            kwh = counter + rate_kw * (t - t0) / 3600
            lines.append(
                f"meter,device=meter-hvac,kind=meter,site={SITE_ID},building=main "
                f"energy_import_kwh={kwh!r} {round(t * 1e9)}"
            )
            t += 30
        counter += 500.0
    return lines


class CounterLog:
    """The simulated meter's own energy counter, sampled often, read at any instant."""

    def __init__(self, building: Building) -> None:
        self.model = building.model("meter-hvac")
        self.samples: list[tuple[float, float]] = []
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            self.samples.append((time.time(), float(self.model.values()["energy_import_kwh"])))
            await asyncio.sleep(0.1)

    def at(self, t: float) -> float:
        for (t0, e0), (t1, e1) in zip(self.samples, self.samples[1:], strict=False):
            if t0 <= t <= t1:
                return e0 + (e1 - e0) * (t - t0) / (t1 - t0)
        raise AssertionError(f"no counter samples around {t}")


def power_w(building: Building) -> float:
    return float(building.model("meter-hvac").values()["active_power_total_w"])


def units_on(building: Building) -> dict[str, bool]:
    out = {}
    for zone in ZONES:
        model = building.model(f"ac-{zone}")
        assert isinstance(model, AcUnit)
        out[zone] = model.on
    return out


def dr_shed(influx: InfluxDB1Server) -> dict[str, Any] | None:
    result = influx.query('SELECT * FROM "dr_shed" WHERE "event" = \'grid-peak-1\'', db="building")[
        "results"
    ][0]
    if "series" not in result:
        return None
    series = result["series"][0]
    return dict(zip(series["columns"], series["values"][-1], strict=True))


async def test_an_openadr_event_sheds_load_across_a_restart(tmp_path: Path) -> None:
    with InfluxDB1Server(tmp_path / "influx") as influx:
        influx.create_database("building")
        vtn_port, *ports = free_ports(3)
        site_path = tmp_path / "site.yaml"
        site_path.write_text(site_text(influx.url, vtn_port, ports), encoding="utf-8")
        # Summer afternoon in the building (the simulated clock), whatever today is.
        clock = SimClock(start=datetime(2025, 7, 15, 14, 0))
        building = await start_building(read_site(site_path), clock)
        counters = CounterLog(building)
        async with Vtn(vtn_port) as vtn:
            gateway = Gateway(load_site(site_path), health_interval=3600)
            await gateway.start()
            try:
                dr = gateway.dr
                assert dr is not None
                assert dr.ven is not None
                await asyncio.wait_for(dr.ven.registered.wait(), 20)
                # The units the building runs (every other one on, cooling) and its load.
                await until(lambda: len(gateway.latest) == 5, 20)
                running = [z for z, on in units_on(building).items() if on]
                assert running, units_on(building)
                rate_kw = power_w(building) / 1000
                start = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=LEAD_S)
                end = start + timedelta(seconds=EVENT_S)
                influx.write(history_lines(start.timestamp(), end.timestamp(), rate_kw), "building")
                vtn.add_event("grid-peak-1", 3, start, hours=EVENT_S / 3600)  # level 3: off
                await until(lambda: vtn.opts == [("grid-peak-1", "optIn")], 20)

                # At the start every running unit is switched off, confirmed by reading back.
                await until(lambda: not any(units_on(building).values()), LEAD_S + 15)
                assert time.time() >= start.timestamp() - 0.5
                await until(lambda: power_w(building) < 0.5 * rate_kw * 1000, 5)

                # A restart in the middle of the event.
                await asyncio.sleep(max(0.0, start.timestamp() + RESTART_AT_S - time.time()))
                await gateway.stop()
                gateway = Gateway(load_site(site_path), health_interval=3600)
                await gateway.start()
                assert gateway.dr is not None
                assert "grid-peak-1" in gateway.dr.events

                # After the end the units that ran are switched on again, and only they.
                await until(lambda: time.time() > end.timestamp(), EVENT_S + 5)
                await until(
                    lambda: [z for z, on in units_on(building).items() if on] == running, 15
                )

                # The figure: complete once the meter's reading after the end is in.
                await until(lambda: (dr_shed(influx) or {}).get("complete") is True, 30)
                shed = dr_shed(influx)
                assert shed is not None
                health = gateway.health()
                view = render(gateway)
            finally:
                await gateway.stop()
                counters.task.cancel()
                await building.stop()
            # The VTN got the reduction as the OpenADR report.
            await until(lambda: bool(vtn.reports.get("reduction")), 10)

    hours = EVENT_S / 3600
    baseline = rate_kw * hours
    actual = counters.at(end.timestamp()) - counters.at(start.timestamp())
    assert shed["baseline_days"] == 5
    assert shed["baseline_kwh"] == pytest.approx(baseline, rel=1e-3)
    # The meter's registers are float32 (a few Wh at this counter) and polled every 0.5 s.
    assert shed["actual_kwh"] == pytest.approx(actual, abs=0.006)
    assert shed["reduction_kwh"] == pytest.approx(baseline - actual, abs=0.006)
    assert shed["reduction_kw"] == pytest.approx((baseline - actual) / hours, abs=0.006 / hours)
    assert shed["reduction_kwh"] > 0.3 * baseline  # switching units off shed a third or more
    assert health["dr_events_taken"] >= 1
    assert health["dr_summaries"] == 1
    assert health["openadr_opted_in"] >= 1
    assert health["openadr_openleadr_errors"] == 0  # no report the VTN refused (a NaN)
    # The live view says it too: the writes confirmed, the event and the VEN.
    assert re.search(r"writes: \d+ \(\d+ confirmed by reading back, 0 kept another", view)
    assert "demand response: 1 events taken, 0 open" in view
    assert "OpenADR registered, opted in 1" in view
    state = json.loads((tmp_path / "dr.json").read_text(encoding="utf-8"))
    assert [e["summarised"] for e in state["events"]] == [True]


def test_the_readmes_air_conditioning_example_checks(tmp_path: Path) -> None:
    """The README's example, in a site with the devices it names, passes `guanjia check`'s
    loader (secrets resolved, variants merged, the outdoor sensor and the meter found)."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"## Air conditioning and demand response\n\n```yaml\n(.*?)```", readme, re.S)
    assert block is not None
    port = free_port()
    site = tmp_path / "site.yaml"
    site.write_text(
        textwrap.dedent(f"""\
        site: {{name: 示例, id: example, tags: {{building: main}}}}
        influxdb: {{api: v1, url: 'http://127.0.0.1:{port}', database: building}}
        commands: {{allow: ["ac-*:setpoint_degc"]}}
        devices:
          - {{id: weather-roof, profile: z2m_temperature_humidity, mqtt: {{vars: {{id: roof}}}}}}
          - {{id: meter-b1-hvac, profile: eastron_sdm630,
             modbus: {{transport: tcp, host: 127.0.0.1, port: {port}, unit: 1}}}}
          - {{id: ac-annex-1, profile: coolmaster_indoor,
             modbus: {{transport: tcp, host: 127.0.0.1, port: {port}, unit: 1, base: 16}},
             tags: {{zone: hall, area: public}}}}
        mqtt: {{brokers: [{{name: local, host: 127.0.0.1, port: {port}}}]}}
        """)
        + block.group(1),
        encoding="utf-8",
    )
    os.environ["DR_TOKEN"] = "a-token-for-the-readme-example-0123456789"
    try:
        loaded = load_site(site)
    finally:
        del os.environ["DR_TOKEN"]
    dr = loaded.site.demand_response
    assert dr is not None
    assert dr.webhook is not None
    assert dr.webhook.mapping is not None
    assert dr.openadr is not None
    assert dr.shed is not None
    assert loaded.secrets["${DR_TOKEN}"].startswith("a-token")
    from rules.registry import build_rules

    rules = {r.id: r for r in build_rules(loaded.site.rules)}
    policy = rules["ac-policy"].params
    assert (policy.heating_max, policy.outdoor.no_cooling_below) == (18, 30)  # type: ignore[attr-defined]
    # The example site lets only setpoints be written: check names the power point that the
    # enforced outdoor limit and demand response's off would write, and how to allow it.
    from gateway.rule_points import unwritable_rule_points

    warnings = unwritable_rule_points(loaded)
    assert warnings == [
        "rules[0] (ac-policy, ac_policy) writes 'on_off' of ac-annex-1, which commands.allow "
        "does not let anyone write: add 'ac-annex-1:on_off' (or a pattern that covers them "
        "all) to commands.allow",
        "rules[3] (dr, demand_response) writes 'on_off' of ac-annex-1, which commands.allow "
        "does not let anyone write: add 'ac-annex-1:on_off' (or a pattern that covers them "
        "all) to commands.allow",
    ]
