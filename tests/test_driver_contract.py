"""The driver contract: the running gateway knows drivers only through the registry."""

from __future__ import annotations

import ast
import asyncio
from pathlib import Path

import pytest

from core.types import Command
from drivers.registry import DRIVERS
from gateway.config_load import load_site
from gateway.service import Gateway
from tests.modbus_devices import meter_image, modbus_server
from tests.sites import meter_site

GATEWAY = Path(__file__).resolve().parent.parent / "gateway"

# What in gateway/ may name a driver's package, and why: the site's MQTT connections are
# the gateway's own transport too (status, alarms, control, the notifier's MQTT channel),
# and `guanjia read` / `guanjia check` poll or plan Modbus devices, which no other driver has.
ALLOWED = {
    ("cli.py", "drivers.modbus.driver"),  # `guanjia check` counts the Modbus requests it plans
    # `guanjia read` on a Modbus device: its poller's request count, time and bad points
    # explained from the register map; other drivers are read through the registry
    ("cli_read.py", "drivers.modbus.codec"),
    ("cli_read.py", "drivers.modbus.driver"),
    ("cli_read.py", "drivers.modbus.derived"),  # why a derived point (no registers) is bad
    ("mqtt_service.py", "drivers.mqtt.client"),
    ("mqtt_service.py", "drivers.mqtt.hub"),
    ("service.py", "drivers.mqtt.hub"),
    ("duty.py", "drivers.mqtt.hub"),  # the notifier's MQTT channel publishes on the home broker
    # `guanjia scan` finds devices on a line before any site file names them, with each
    # driver's own wire code.
    ("scan.py", "drivers.modbus.scan"),
    ("scan.py", "drivers.dlt645.scan"),
}


def _driver_imports() -> set[tuple[str, str]]:
    found = set()
    for path in GATEWAY.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module:
                parts = node.module.split(".")
                if parts[0] == "drivers" and len(parts) > 2 and parts[1] in DRIVERS:
                    found.add((str(path.relative_to(GATEWAY)), node.module))
    return found


def test_gateway_reaches_drivers_through_the_registry_only() -> None:
    assert _driver_imports() <= ALLOWED, sorted(_driver_imports() - ALLOWED)


@pytest.mark.asyncio
async def test_runtimes_come_from_the_registry(tmp_path: Path) -> None:
    """A site with Modbus devices gets the Modbus runtime and no other; status, health and
    the command path all go through it."""
    async with modbus_server({1: meter_image()}) as port:
        site = meter_site(tmp_path, [port], "", interval=0.05)
        gateway = Gateway(load_site(site), spool_dir=tmp_path / "spool")
        assert set(gateway.drivers) == {"modbus"}
        await gateway.start()
        try:
            for _ in range(200):
                if gateway.health()["devices_online"] == 1:
                    break
                await asyncio.sleep(0.02)
            statuses = gateway.statuses()
            refused = await gateway.commands.execute(Command("nope", "x", 1, "test"))
        finally:
            await gateway.stop()
    assert [(s.device, s.driver, s.online) for s in statuses] == [("m0", "modbus", True)]
    assert gateway.health()["devices"] == 1
    assert "modbus_errors" in gateway.health()
    assert gateway.writer_of("m0") is gateway.drivers["modbus"]
    assert not refused.ok
    assert "no writable device" in refused.reason
