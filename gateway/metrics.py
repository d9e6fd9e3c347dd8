"""The gateway's own metrics for Prometheus (`metrics:` in the site file; off by default).

Nothing is counted twice: a scrape reads, at that moment, the figures the health view shows
(`Gateway.health()`: samples, points written and spooled, spool and outbox depths, dead
letters, each driver's errors, the inboxes, loop lag, ...), each under its own name with the
prefix `guanjia_` (characters Prometheus does not allow become `_`), and each device's status
(polls or messages, errors, the last poll's time, up) with `device` and `driver` labels.

The health figures are exported as gauges, values as they are now: most only grow (rate()
works on them as on counters: Prometheus reads no type), some go up and down (depths), and
which is which is the figure's own business, not a second list kept here. The device figures
are typed: polls and errors are counters, the poll time a gauge.

Served by aiohttp from the gateway's event loop, so a scrape never sees a half-updated
figure and an answer says the loop is not stuck (the container's health check asks it:
gateway/healthcheck.py).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Iterator
from importlib import metadata
from typing import Any

from aiohttp import web
from prometheus_client.aiohttp import make_aiohttp_handler
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector, CollectorRegistry

from drivers.contract import DeviceStatus
from gateway.metrics_config import MetricsConfig

log = logging.getLogger("guanjia")

PREFIX = "guanjia_"
PATH = "/metrics"
_NOT_ALLOWED = re.compile(r"[^a-zA-Z0-9_]")


def metric_name(key: str) -> str:
    """The metric of a health figure: `notify_wall-display_sent` ->
    `guanjia_notify_wall_display_sent`."""
    return PREFIX + _NOT_ALLOWED.sub("_", key)


def _version() -> str:
    try:
        return metadata.version("guanjia")
    except metadata.PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown"


def _poll_seconds(status: DeviceStatus) -> float | None:
    """The last poll's time, where the driver reports one in ms ("12.3"); None for devices
    that send on their own ("mqtt")."""
    try:
        return float(status.timing) / 1000
    except ValueError:
        return None


class GatewayCollector(Collector):
    """Reads the gateway's health and device statuses at each scrape."""

    def __init__(
        self,
        health: Callable[[], dict[str, Any]],
        statuses: Callable[[], list[DeviceStatus]],
        site: str,
        gateway: str = "",
    ) -> None:
        self.health = health
        self.statuses = statuses
        self.info = {"site": site, "gateway": gateway, "version": _version()}

    def collect(self) -> Iterator[Metric]:
        yield InfoMetricFamily("guanjia", "The site and gateway this is, the version.", self.info)
        yield from self._health()
        yield from self._devices(self.statuses())

    def _health(self) -> Iterator[Metric]:
        seen: set[str] = set()
        for key, value in sorted(self.health().items()):
            if not isinstance(value, int | float):
                continue
            name = metric_name(key)
            if name in seen:  # two keys that differ only in characters Prometheus refuses
                log.debug("health figure %s not exported: %s is taken", key, name)
                continue
            seen.add(name)
            yield GaugeMetricFamily(name, f"The health figure {key}.", value=float(value))

    def _devices(self, statuses: Iterable[DeviceStatus]) -> Iterator[Metric]:
        labels = ["device", "driver"]
        up = GaugeMetricFamily(
            PREFIX + "device_up", "1: the device answers (or is never judged).", labels=labels
        )
        polls = CounterMetricFamily(
            PREFIX + "device_polls",
            "Polls (Modbus, DL/T 645) or messages (MQTT, event streams) of the device.",
            labels=labels,
        )
        errors = CounterMetricFamily(
            PREFIX + "device_errors", "Failed polls or refused messages.", labels=labels
        )
        seconds = GaugeMetricFamily(
            PREFIX + "device_poll_duration_seconds",
            "How long the device's last poll took.",
            labels=labels,
        )
        for s in statuses:
            values = [s.device, s.driver]
            up.add_metric(values, float(s.up))
            polls.add_metric(values, float(s.count))
            errors.add_metric(values, float(s.errors))
            took = _poll_seconds(s)
            if took is not None:
                seconds.add_metric(values, took)
        yield from (up, polls, errors, seconds)


class MetricsServer:
    """GET /metrics on the configured address; the process' own figures (memory, CPU, open
    files) beside the gateway's."""

    def __init__(self, config: MetricsConfig, collector: GatewayCollector) -> None:
        self.config = config
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(collector)
        ProcessCollector(registry=self.registry)
        app = web.Application()
        app.router.add_get(PATH, make_aiohttp_handler(self.registry))
        self.app = app
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    @property
    def url(self) -> str:
        host = self.config.host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}{PATH}"

    async def start(self) -> None:
        """Serve; a port that is taken is logged and the gateway runs on without metrics:
        the readings matter more than the figures about them."""
        runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, self.config.host, self.config.port)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            log.error(
                "metrics not served on %s:%d: %s; another process has the port? Change "
                "metrics.port in the site file",
                self.config.host,
                self.config.port,
                exc.strerror or exc,
            )
            return
        self._runner = runner
        self.port = int(runner.addresses[0][1])
        log.info("metrics on %s", self.url)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
