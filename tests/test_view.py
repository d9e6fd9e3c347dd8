"""The live view shows what needs a person: counters of refused and lost points, the
database's last error, dead letters, the working calendar's end."""

from __future__ import annotations

import textwrap
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from gateway.config_load import load_site
from gateway.service import Gateway
from gateway.view import render


def _site(tmp_path: Path) -> Path:
    path = tmp_path / "site.yaml"
    path.write_text(
        textwrap.dedent("""\
            site: {name: 测试楼, id: view-test}
            spool: {path: spool}
            alarms: {store: alarms.sqlite}
            rules:
              - {id: hot, kind: threshold, point: power_w, above: 1000}
            devices:
              - id: m1
                profile: eastron_sdm630
                modbus: {transport: tcp, host: 127.0.0.1, port: 1502, unit: 1}
            """),
        encoding="utf-8",
    )
    return path


async def test_the_view_says_when_the_working_calendar_ends(tmp_path: Path) -> None:
    loaded = load_site(_site(tmp_path))
    probe = Gateway(loaded, spool_dir=tmp_path / "probe")
    assert probe.alarms is not None
    end = probe.alarms.calendar.known_until(date.today())
    probe.spool.close()
    probe.alarms.store.stop()
    assert end is not None
    # Ten days before the last day the calendar knows, in the rules' clock.
    moment = datetime.combine(end - timedelta(days=10), datetime.min.time(), ZoneInfo("UTC"))
    gateway = Gateway(loaded, rules_clock=lambda: moment)
    try:
        view = render(gateway)
        health = gateway.health()
    finally:
        gateway.spool.close()
        gateway.alarms.store.stop()  # type: ignore[union-attr]
    assert f"working calendar ends on {end.isoformat()}" in view
    assert "year_files" in view
    assert health["calendar_warning"] == 1
    assert "refused by the database 0" in view
    assert "dead letters 0" in view


async def test_the_view_names_an_unreachable_broker_and_offline_devices(tmp_path: Path) -> None:
    import asyncio

    from tests.servers import free_ports

    broker_port, modbus_port = free_ports(2)  # nothing listens on either
    path = tmp_path / "site.yaml"
    path.write_text(
        textwrap.dedent(f"""\
            site: {{name: 测试楼, id: view-test}}
            spool: {{path: spool}}
            mqtt: {{brokers: [{{name: site, host: 127.0.0.1, port: {broker_port}}}]}}
            devices:
              - id: m1
                profile: eastron_sdm630
                modbus: {{transport: tcp, host: 127.0.0.1, port: {modbus_port}, unit: 1,
                          timeout: 0.2s, retries: 0}}
                poll: 0.2s
              - id: door-1
                profile: z2m_door_contact
                mqtt: {{vars: {{id: door_1}}}}
            """),
        encoding="utf-8",
    )
    gateway = Gateway(load_site(path), health_interval=3600)
    await gateway.start()
    try:
        for _ in range(100):
            await asyncio.sleep(0.1)
            view = render(gateway)
            if "! MQTT broker site" in view and "! m1 offline" in view:
                break
    finally:
        await gateway.stop()
    assert f"! MQTT broker site (127.0.0.1:{broker_port}):" in view
    assert "! m1 offline:" in view
    assert gateway.health()["mqtt_connect_failures"] >= 1
