"""The virtual building serves the demo site's DL/T 645 meter behind a simulated serial server,
and the gateway's own driver reads it: every point good, values an office floor's, moving with
the building's clock."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from drivers.contract import RuntimeContext
from drivers.dlt645.runtime import Dlt645Driver
from gateway.config_load import load_site
from gateway.site import BrokerConfig, MqttConfig
from simulator.building import start_building
from simulator.clock import SimClock
from simulator.site import read_site
from tests.sites import demo_on_free_ports

ROOT = Path(__file__).resolve().parent.parent
DEMO_SITE = ROOT / "config" / "demo-site.yaml"
DEMO_BROKER = MqttConfig(brokers=[BrokerConfig(name="site", host="127.0.0.1")])
METER = "meter-3f-dlt645"
WEEKDAY_10AM = datetime(2025, 7, 15, 10, 0)


def _demo_on_free_ports(tmp_path: Path) -> Path:
    return demo_on_free_ports(tmp_path)[0]


async def test_the_building_serves_the_demo_dlt645_meter_to_the_gateway(tmp_path: Path) -> None:
    path = _demo_on_free_ports(tmp_path)
    loaded = load_site(path, resolve_secrets=False, mqtt=DEMO_BROKER)
    entries = [e for e in loaded.driver_devices("dlt645") if e.id == METER]
    assert len(entries) == 1
    profile = entries[0].profile
    clock = SimClock(speed=0.0, start=WEEKDAY_10AM)  # still, until advanced
    building = await start_building(read_site(path), clock)
    driver = Dlt645Driver(RuntimeContext(entries, lambda sample: None, "Asia/Shanghai"))
    try:
        assert [line.port for line in building.meter_lines] == [entries[0].connection.port]
        first = await driver.read_once(METER)
        assert dict(first.bad) == {}
        assert set(first.values) == {p.name for p in profile.points}
        values = {k: float(v) for k, v in first.values.items()}
        assert 215.0 <= values["voltage_l1_v"] <= 240.0
        assert 49.8 <= values["frequency_hz"] <= 50.2
        assert 0.9 <= values["power_factor_total"] <= 1.0
        # A weekday morning on a 25 kW lighting-and-sockets circuit.
        assert 10_000.0 <= values["active_power_total_w"] <= 30_000.0
        assert values["active_power_total_w"] == pytest.approx(
            sum(values[f"active_power_l{n}_w"] for n in (1, 2, 3)), rel=0.01
        )
        assert values["current_l1_a"] > 10.0
        tariffs = sum(values[f"energy_import_t{k}_kwh"] for k in range(1, 5))
        assert tariffs == pytest.approx(values["energy_import_kwh"], abs=0.05)
        assert values["energy_combined_kwh"] == pytest.approx(values["energy_import_kwh"], abs=0.05)
        assert values["energy_export_kwh"] == 0.0
        clock.advance(3600.0)
        later = await driver.read_once(METER)
        assert dict(later.bad) == {}
        # An hour at ~20 kW: the counter moved on, the way the model's did.
        moved = float(later.values["energy_import_kwh"]) - values["energy_import_kwh"]
        assert 5.0 < moved < 40.0
        assert float(later.values["energy_import_kwh"]) == pytest.approx(
            float(building.model(METER).values()["energy_import_kwh"]), abs=1.0
        )
    finally:
        await driver.stop()
        await building.stop()
    assert building.meter_lines == []
