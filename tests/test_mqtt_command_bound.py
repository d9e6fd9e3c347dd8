"""A flood of `/set` commands does not grow the gateway's tasks without bound: past a limit
of commands in flight, more are refused and audited, not queued."""

from __future__ import annotations

import asyncio
import textwrap
import time
from pathlib import Path

from gateway.config_load import load_site
from gateway.messages import AuditRecord
from gateway.mqtt_service import MAX_COMMANDS_RUNNING, Received
from gateway.service import Gateway
from tests.modbus_devices import dead_device


async def test_commands_in_flight_are_bounded(tmp_path: Path) -> None:
    async with dead_device() as port:  # accepts, never answers: every write waits
        site = tmp_path / "site.yaml"
        site.write_text(
            textwrap.dedent(f"""\
                site: {{name: 测试楼, id: t1}}
                spool: {{path: spool}}
                mqtt:
                  brokers: [{{name: site, host: 127.0.0.1, port: 1}}]
                  control: {{commands: true}}
                commands: {{allow: ["ac-*:setpoint_degc"]}}
                devices:
                  - id: ac-1
                    profile: coolmaster_indoor
                    modbus: {{transport: tcp, host: 127.0.0.1, port: {port}, unit: 1,
                              base: 16, timeout: 2s, retries: 0}}
                """),
            encoding="utf-8",
        )
        gateway = Gateway(load_site(site), health_interval=3600)
        assert gateway.mqtt is not None
        audits: list[AuditRecord] = []
        gateway.bus.subscribe(AuditRecord, audits.append, name="test")
        live = Received(
            at=time.time(), backlog=False, expiry=None, response_topic=None, correlation=None
        )
        flood = MAX_COMMANDS_RUNNING + 50
        for _ in range(flood):
            gateway.mqtt._command_received("ac-1", "setpoint_degc", b"26", live, False)
        await asyncio.sleep(0)
        running = len(gateway.mqtt._tasks_running)
        busy = [a for a in audits if "commands already waiting" in a.reason]
        for task in list(gateway.mqtt._tasks_running):
            task.cancel()
        await asyncio.gather(*gateway.mqtt._tasks_running, return_exceptions=True)
        await gateway.drivers["modbus"].stop()
        gateway.spool.close()
    assert running == MAX_COMMANDS_RUNNING
    assert len(busy) == 50
    assert all(a.outcome == "refused" for a in busy)
    assert gateway.mqtt.health()["commands_busy"] == 50
