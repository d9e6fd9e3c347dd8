"""The gateway's own metrics (`metrics:` in the site file): scraped over HTTP while the gateway
runs the virtual building, parsed with prometheus_client's parser, and held against the
health view (Gateway.health() and the device statuses) read just before and just after."""

from __future__ import annotations

import asyncio
import logging
import socket
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from drivers.contract import DeviceStatus
from gateway.cli import main
from gateway.config_load import LoadedSite, load_site
from gateway.demo import DemoOptions, run_demo
from gateway.metrics import metric_name
from gateway.service import Gateway
from tests.modbus_devices import meter_image, modbus_server
from tests.servers import free_port
from tests.sites import demo_on_free_ports, meter_site

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def _scrape(url: str) -> tuple[Samples, dict[str, str], str]:
    """Every sample by (name, labels), every family's type, and the content type."""
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.status == 200
        text = await response.text()
        content_type = response.headers["Content-Type"]
    samples: Samples = {}
    types: dict[str, str] = {}
    for family in text_string_to_metric_families(text):
        types[family.name] = family.type
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples, types, content_type


def _between(value: float, before: float, after: float) -> bool:
    return min(before, after) <= value <= max(before, after)


def _device_figures(statuses: list[DeviceStatus]) -> dict[tuple[str, str, str], float]:
    out: dict[tuple[str, str, str], float] = {}
    for s in statuses:
        out[("guanjia_device_polls_total", s.device, s.driver)] = s.count
        out[("guanjia_device_errors_total", s.device, s.driver)] = s.errors
        out[("guanjia_device_up", s.device, s.driver)] = float(s.up)
        if s.timing.replace(".", "", 1).isdigit():
            out[("guanjia_device_poll_duration_seconds", s.device, s.driver)] = (
                float(s.timing) / 1000
            )
    return out


async def _compare(gateway: Gateway, url: str) -> tuple[Samples, dict[str, str], list[str]]:
    """One scrape between two readings of the health view; what lies outside them."""
    health_before, devices_before = gateway.health(), _device_figures(gateway.statuses())
    samples, types, _ = await _scrape(url)
    health_after, devices_after = gateway.health(), _device_figures(gateway.statuses())
    outside = []
    for key, before in health_before.items():
        if not isinstance(before, int | float) or key not in health_after:
            continue
        value = samples.get((metric_name(key), ()))
        if value is None or not _between(value, before, health_after[key]):
            outside.append(f"{key}: {value} not in {before}..{health_after[key]}")
    for (name, device, driver), before in devices_before.items():
        value = samples.get((name, (("device", device), ("driver", driver))))
        after = devices_after.get((name, device, driver), before)
        if value is None or not _between(value, before, after):
            outside.append(f"{name}{{{device}}}: {value} not in {before}..{after}")
    return samples, types, outside


async def test_the_endpoint_serves_the_health_views_figures(tmp_path: Path) -> None:
    site, _ = demo_on_free_ports(tmp_path)
    port = free_port()
    with site.open("a", encoding="utf-8") as f:
        f.write(f"\nmetrics: {{host: 127.0.0.1, port: {port}}}\n")
    url = f"http://127.0.0.1:{port}/metrics"
    seen: dict[str, Any] = {}

    async def run_gateway(loaded: LoadedSite, clock: Any) -> None:
        gateway = Gateway(loaded, spool_dir=tmp_path / "spool", rules_clock=clock)
        await gateway.start()
        try:
            assert gateway.metrics is not None
            assert gateway.metrics.url == url
            await asyncio.sleep(6)  # polls, MQTT messages, the scenario's first alarms
            # A depth may rise and fall back between the two readings: a scrape in that
            # moment lies outside them though it is right; another one will not.
            for _ in range(3):
                samples, types, outside = await _compare(gateway, url)
                if not outside:
                    break
                await asyncio.sleep(0.2)
            seen.update(samples=samples, types=types, outside=outside)
            seen["content_type"] = (await _scrape(url))[2]
        finally:
            await gateway.stop()

    options = DemoOptions(site=site, speed=60, alarm_store=str(tmp_path / "alarms.sqlite"))
    await run_demo(options, run_gateway)

    assert seen["outside"] == []
    samples: Samples = seen["samples"]
    types: dict[str, str] = seen["types"]
    assert seen["content_type"].startswith("text/plain; version=0.0.4")
    assert samples[("guanjia_info", (("gateway", ""), ("site", "city-hall"), ("version", "0.1.0")))]
    # What the issue asks for, each by its name: polls and errors per device, the last poll's
    # time, the spool (no database: everything waits there), the outboxes, dead letters,
    # the loop's lag.
    meter = (("device", "meter-b1-main"), ("driver", "modbus"))
    assert types["guanjia_device_polls"] == "counter"
    assert samples[("guanjia_device_polls_total", meter)] >= 1
    assert types["guanjia_device_errors"] == "counter"
    assert ("guanjia_device_errors_total", meter) in samples
    assert 0 < samples[("guanjia_device_poll_duration_seconds", meter)] < 5
    assert samples[("guanjia_device_up", meter)] == 1
    mqtt_device = (("device", "door-main-entrance"), ("driver", "mqtt"))
    assert samples[("guanjia_device_polls_total", mqtt_device)] >= 1  # messages
    assert ("guanjia_device_poll_duration_seconds", mqtt_device) not in samples
    for name in (
        "guanjia_samples",
        "guanjia_modbus_errors",
        "guanjia_spool_points",
        "guanjia_spool_bytes",
        "guanjia_points_lost",
        "guanjia_outbox_depth",
        "guanjia_mqtt_outbox_depth",
        "guanjia_dead_letter_points",
        "guanjia_loop_lag_ms",
        "guanjia_loop_lag_max_ms",
        "guanjia_inbox_rules_queued",
    ):
        assert (name, ()) in samples, name
        assert types[name] == "gauge"
    assert samples[("guanjia_spool_points", ())] > 0
    assert samples[("guanjia_devices_online", ())] > 0
    # A notify channel's figure: its name had a '-' (wall-display).
    assert ("guanjia_notify_wall_display_sent", ()) in samples
    # The process beside it.
    assert samples[("process_resident_memory_bytes", ())] > 10e6


async def test_metrics_are_off_unless_the_site_asks(tmp_path: Path) -> None:
    async with modbus_server({1: meter_image()}) as device_port:
        site = meter_site(tmp_path, [device_port], "")
        gateway = Gateway(load_site(site))
        await gateway.start()
        try:
            assert gateway.metrics is None
            assert "loop_lag_ms" in gateway.health()  # the figure is there all the same
        finally:
            await gateway.stop()


async def test_a_taken_port_is_logged_and_the_gateway_runs_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        async with modbus_server({1: meter_image()}) as device_port:
            site = meter_site(tmp_path, [device_port], "")
            with site.open("a", encoding="utf-8") as f:
                f.write(f"metrics: {{port: {port}}}\n")
            gateway = Gateway(load_site(site))
            with caplog.at_level(logging.ERROR, logger="guanjia"):
                await gateway.start()
            try:
                await asyncio.sleep(0.5)
                assert gateway.metrics is not None
                assert gateway.metrics.port is None
                assert f"metrics not served on 127.0.0.1:{port}" in caplog.text
                assert "metrics.port" in caplog.text
                assert gateway.statuses()[0].count >= 1  # it polls
            finally:
                await gateway.stop()


@pytest.mark.parametrize(
    ("metrics", "said"),
    [
        ("{listen: 127.0.0.1:9108}", "metrics.listen: unknown key 'listen'"),
        ("{port: 70000}", "metrics.port: "),
        ("{host: '127.0.0.1:9108'}", "write `host: 127.0.0.1, port: 9108`"),
    ],
)
def test_a_mistake_in_metrics_is_one_line_with_its_key(
    tmp_path: Path, metrics: str, said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    site = meter_site(tmp_path, [free_port()], "")
    with site.open("a", encoding="utf-8") as f:
        f.write(f"metrics: {metrics}\n")
    assert main(["check", str(site)]) == 1
    err = capsys.readouterr().err
    assert err.strip().count("\n") == 0, err
    assert said in err
    assert f"{site}:" in err
