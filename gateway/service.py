"""The running gateway: drivers feed the bus, the bus feeds the sinks. The composition root."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import time
from collections.abc import Awaitable, Callable
from datetime import date, datetime
from pathlib import Path
from typing import Any

from core.once import ProblemCounter
from core.types import Sample
from drivers.modbus.driver import ModbusDriver
from gateway.alarm_service import AlarmService
from gateway.commands import CommandRouter
from gateway.config_load import LoadedSite
from gateway.field_catalog import site_field_types
from gateway.influx_sink import InfluxSink
from gateway.influx_writer import Transport, V1Transport, V2Transport, Writer
from gateway.lineproto import LineEncoder, float_format, series_prefix
from gateway.mqtt_service import MqttService
from gateway.site import InfluxV1, InfluxV2
from gateway.spool import Spool
from rules.calendar import coverage_warning

log = logging.getLogger("guanjia")

HEALTH_DEVICE = "_gateway"


def make_transport(loaded: LoadedSite) -> Transport | None:
    db = loaded.site.influxdb
    if isinstance(db, InfluxV2):
        return V2Transport(db.url, db.org, db.bucket, loaded.secrets.get("token"), db.timeout)
    if isinstance(db, InfluxV1):
        return V1Transport(
            db.url,
            db.database,
            db.retention_policy,
            db.username,
            loaded.secrets.get("password"),
            db.timeout,
        )
    return None


def series_prefixes(loaded: LoadedSite) -> dict[str, str]:
    """Measurement and tags of every device: site tags, then device tags, then identity."""
    site = loaded.site.site
    prefixes = {HEALTH_DEVICE: series_prefix("gateway", {"site": site.id})}
    for dev in loaded.site.devices:
        kind = loaded.kind_of(dev)
        tags = {**site.tags, **dev.tags, "site": site.id, "device": dev.id, "kind": kind}
        prefixes[dev.id] = series_prefix(kind, tags)
    return prefixes


class Bus:
    """Synchronous fan-out of Samples. Subscribers must not block: each owns a bounded buffer."""

    def __init__(self) -> None:
        self.subscribers: list[Callable[[Sample], None]] = []
        self.samples = 0
        self.problems = ProblemCounter(log)

    def subscribe(self, callback: Callable[[Sample], None]) -> None:
        self.subscribers.append(callback)

    def publish(self, sample: Sample) -> None:
        self.samples += 1
        for callback in self.subscribers:
            try:
                callback(sample)
            except Exception as exc:  # one subscriber's bug (a rule's) must not starve the rest
                name = getattr(callback, "__qualname__", repr(callback))
                self.problems.report(
                    f"subscriber:{name}",
                    f"{name} failed on a sample of {sample.device}: {exc!r}",
                    logging.ERROR,
                )


class Gateway:
    def __init__(
        self,
        loaded: LoadedSite,
        *,
        transport: Transport | None = None,
        spool_dir: Path | None = None,
        health_interval: float = 30.0,
        rules_clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.loaded = loaded
        site = loaded.site
        self.spool = Spool(
            spool_dir or loaded.spool_dir(), site.spool.max_bytes, fsync=site.spool.fsync
        )
        self.writer = Writer(
            transport if transport is not None else make_transport(loaded), self.spool
        )
        self.bus = Bus()
        self.modbus = ModbusDriver(loaded.modbus_devices(), self.bus.publish)
        float_formats = {
            device: {s.name: float_format(s.dtype.value, s.scaled) for s in poller.plan.specs}
            for device, poller in self.modbus.pollers.items()
        }
        field_types = site_field_types(
            (d.id, loaded.profiles[d.profile], d.points) for d in site.devices if d.enabled
        )
        self.sink = InfluxSink(
            LineEncoder(series_prefixes(loaded), float_formats, field_types),
            self.writer,
            site.batching.max_points,
            site.batching.max_age,
        )
        self.latest: dict[str, Sample] = {}
        self.bus.subscribe(self.sink.offer)
        self.bus.subscribe(self._remember)
        self.commands = CommandRouter(
            site.site.id, self.modbus, site.commands.allow, self.sink.offer_line
        )
        self.mqtt: MqttService | None = None
        if site.mqtt is not None:
            self.mqtt = MqttService(loaded, site.mqtt, self.bus.publish, self.commands)
            self.bus.subscribe(self.mqtt.observe)
        self.alarms: AlarmService | None = None
        if site.rules:
            store = Path(site.alarms.store)
            mqtt = self.mqtt
            self.alarms = AlarmService(
                loaded,
                self.commands,
                self.sink.offer_line,
                (lambda topic, payload, retain: mqtt.home.publish(topic, payload, retain=retain))
                if mqtt is not None
                else None,
                store_path=store if store.is_absolute() else loaded.base_dir / store,
                clock=rules_clock,
            )
            self.bus.subscribe(self.alarms.observe)
            if mqtt is not None:
                mqtt.on_alarm_ack = self.alarms.ack
                mqtt.on_dr_event = self.alarms.demand_response
                mqtt.on_alarm_shelve = self.alarms.shelve
                mqtt.on_connected = self.alarms.republish
        self.health_interval = health_interval
        self._calendar_checked: tuple[date | None, str | None] = (None, None)
        self.started = time.monotonic()
        self._tasks: list[asyncio.Task[None]] = []

    def _remember(self, sample: Sample) -> None:
        self.latest[sample.device] = sample

    async def start(self) -> None:
        self.sink.start()
        self.modbus.start()
        if self.mqtt is not None:
            self.mqtt.start()
        if self.alarms is not None:
            self.alarms.start()
        self._tasks.append(asyncio.create_task(self._health(), name="health"))
        log.info(
            "gateway %s started: %d devices, database %s",
            self.loaded.site.site.id,
            len(self.modbus.pollers),
            "configured" if self.writer.transport else "none (spooling)",
        )

    async def stop(self) -> None:
        """Stop polling, then flush or spool everything in memory, whatever fails on the way."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        # Inputs first (pollers, MQTT ingest), then the rules that judge them, then the sink's
        # last flush: nothing arrives after it. A failing step doesn't skip the others.
        steps: list[Callable[[], Awaitable[None]]] = [self.modbus.stop]
        if self.mqtt is not None:
            steps.append(self.mqtt.stop)
        if self.alarms is not None:
            steps.append(self.alarms.stop)
        for step in steps:
            try:
                await step()
            except Exception:
                log.exception("stopping %s failed", getattr(step, "__qualname__", step))
        try:
            await self.sink.stop()
        finally:
            self.spool.close()
        log.info("gateway stopped: %s", json.dumps(self.health(), sort_keys=True))

    async def run_until(self, stop: asyncio.Event) -> None:
        await self.start()
        try:
            await stop.wait()
        finally:
            await self.stop()

    async def _health(self) -> None:
        while True:
            await asyncio.sleep(self.health_interval)
            values: dict[str, int | float | bool | str] = {
                k: v for k, v in self.health().items() if isinstance(v, int | float)
            }
            self.bus.publish(Sample(HEALTH_DEVICE, time.time_ns(), values))

    def health(self) -> dict[str, Any]:
        online = sum(1 for p in self.modbus.pollers.values() if p.stats.online)
        devices = len(self.modbus.pollers)
        if self.mqtt is not None:
            states = [s for i in self.mqtt.ingest.values() for s in i.state.values()]
            devices += len(states)
            online += sum(1 for s in states if s.up)  # never judged: not offline
        return {
            "uptime_s": round(time.monotonic() - self.started, 1),
            "devices": devices,
            "devices_online": online,
            "samples": self.bus.samples,
            "lines_encoded": self.sink.lines_encoded,
            "modbus_errors": sum(p.stats.errors.total() for p in self.modbus.pollers.values()),
            **(self.mqtt.health() if self.mqtt is not None else {}),
            **{k: v for k, v in self.writer.snapshot().items() if v is not None},
            "calendar_warning": int(self.calendar_warning() is not None),
        }

    def calendar_warning(self) -> str | None:
        """When the working calendar ends within 60 days (or has ended): what to do. Worked
        out once a day; the rules' calendar (with the site's year files) when there are
        rules, else the shipped data."""
        today = date.today()
        if self._calendar_checked[0] != today:
            warning = (
                self.alarms.calendar_warning()
                if self.alarms is not None
                else coverage_warning(today)
            )
            self._calendar_checked = (today, warning)
        return self._calendar_checked[1]


def install_signal_handlers(stop: asyncio.Event, hangup: asyncio.Event | None = None) -> None:
    """SIGTERM and SIGINT end the run through the normal shutdown (flush or spool); SIGHUP,
    whose default would kill the process without a flush, asks for a reload."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, (hangup or stop).set)
