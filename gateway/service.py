"""The running gateway, the composition root: drivers publish on the bus; the InfluxDB sink,
the MQTT sink, the rules runtime and the live view subscribe."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.types import Sample, Value
from drivers.contract import DeviceStatus, DriverRuntime, RuntimeContext
from drivers.lines import Lines
from drivers.mqtt.hub import BrokerHub
from drivers.registry import DRIVERS
from gateway.accounts_service import AccountsService
from gateway.alarm_service import AlarmService
from gateway.bus import Bus
from gateway.catalog import DeviceCatalog
from gateway.commands import CommandRouter
from gateway.config_load import LoadedSite
from gateway.dead_letter import DeadLetters
from gateway.duty import build_console, build_notifier
from gateway.influx_sink import InfluxSink
from gateway.influx_writer import Transport, V1Transport, V2Transport, Writer
from gateway.lineproto import LineEncoder
from gateway.loop_lag import LoopLag
from gateway.messages import Health
from gateway.mqtt_service import MqttService, broker_settings
from gateway.site import InfluxV1, InfluxV2
from gateway.spool import Spool
from rules.calendar import coverage_warning

# The duty console, the notifier and the metrics endpoint bring aiohttp (and prometheus-client)
# along: imported when the site has them, so a gateway without them does not carry them
# (about 10 MiB resident each; bench/bench_fleet.py runs 20 gateways on one box).
if TYPE_CHECKING:
    from gateway.console.server import Console
    from gateway.dr.service import DrService
    from gateway.metrics import MetricsServer
    from gateway.notify.notifier import Notifier

log = logging.getLogger("guanjia")


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


class Gateway:
    """Drivers publish on the bus; sinks, the rules runtime and the view subscribe."""

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
        self.catalog = DeviceCatalog.build(loaded)
        self.spool = Spool(
            spool_dir or loaded.spool_dir(), site.spool.max_bytes, fsync=site.spool.fsync
        )
        self.writer = Writer(
            transport if transport is not None else make_transport(loaded),
            self.spool,
            dead_letters=DeadLetters(
                self.spool.dir, site.spool.dead_letter_max_bytes, fsync=site.spool.fsync
            ),
        )
        self.bus = Bus()
        # The site's MQTT connections: the MQTT driver reads devices there, the gateway
        # publishes and takes control messages there, over the same connection per broker.
        self.brokers: BrokerHub | None = None
        if site.mqtt is not None:
            self.brokers = BrokerHub(
                [
                    broker_settings(
                        site.site.id,
                        b,
                        loaded.secrets.get(f"mqtt.{b.name}"),
                        gateway=site.site.gateway,
                    )
                    for b in site.mqtt.brokers
                ],
                site.mqtt.publish_to,
            )
        self.drivers: dict[str, DriverRuntime] = {}
        # One owner per serial line, whichever drivers' devices share it.
        self.lines = Lines()
        mqtt = site.mqtt
        for name, driver in DRIVERS.items():
            entries = loaded.driver_devices(name)
            if not entries:
                continue
            ctx = RuntimeContext(
                entries,
                self.bus.publish,
                site.site.timezone,
                self.brokers,
                secrets=loaded.secrets,
                lines=self.lines,
            )
            if mqtt is not None:
                ctx = replace(
                    ctx, max_payload=mqtt.max_payload, heartbeat_check=mqtt.heartbeat_check
                )
            self.drivers[name] = driver.runtime(ctx)
        catalog = self.catalog
        self.sink = InfluxSink(
            LineEncoder(catalog.prefixes(), catalog.float_formats(), catalog.field_types()),
            self.writer,
            site.batching.max_points,
            site.batching.max_age,
            site_id=site.site.id,
            gateway=site.site.gateway or "",
            device_tags=catalog.tags(),
            known=catalog.known,
        )
        self.sink.attach(self.bus)
        self.latest: dict[str, Sample] = {}
        # Every point's last value, per device: a device may send a few points per message.
        self.latest_values: dict[str, dict[str, Value]] = {}
        self.bus.subscribe(Sample, self._remember, name="view")
        self.commands = CommandRouter(
            site.site.id, self.writer_of, site.commands.allow, self.bus.publish
        )
        self.mqtt: MqttService | None = None
        if site.mqtt is not None and self.brokers is not None:
            self.mqtt = MqttService(loaded, site.mqtt, self.brokers, self.commands)
            self.mqtt.sink.attach(self.bus)
        self.alarms: AlarmService | None = None
        if site.rules:
            self.alarms = AlarmService(
                loaded,
                self.catalog,
                self.commands,
                self.bus,
                store_path=loaded.alarm_store_path(),
                clock=rules_clock,
            )
        # Energy accounts only when the site keeps them: their own inbox, store and thread.
        self.accounts: AccountsService | None = None
        if site.accounts is not None:
            self.accounts = AccountsService(loaded, self.catalog, self.bus)
        self.console: Console | None = None
        self.notifier: Notifier | None = None
        if self.alarms is not None:
            self.console = build_console(loaded, self.alarms, self.statuses, self.bus)
            self.notifier = build_notifier(
                loaded, self.catalog, self.alarms, self.bus, self.brokers, self.console
            )
        # Demand-response sources and the load shed (aiohttp and openleadr: imported when the
        # site has them).
        self.dr: DrService | None = None
        if site.demand_response is not None and self.alarms is not None:
            from gateway.dr.service import DrService

            self.dr = DrService(
                loaded,
                site.demand_response,
                self.alarms.demand_response_input,
                self.bus,
                self.alarms.calendar,
            )
            self.dr.window_of = self.alarms.dr_window
            if self.mqtt is not None:
                self.dr.publish = self.mqtt.publish_retained
        if self.alarms is not None and self.mqtt is not None:
            self.mqtt.on_alarm_ack = self.alarms.ack
            self.mqtt.on_dr_event = (
                self.dr.handle_payload if self.dr is not None else self.alarms.demand_response
            )
            self.mqtt.on_alarm_shelve = self.alarms.shelve
            self.mqtt.sink.seed_alarms(self.alarms.open_alarm_texts())
            self.alarms.outbox = self.mqtt.alarm_outbox(
                self.alarms.read_outbox, self.alarms.store.store.outbox_last
            )
        self.loop_lag = LoopLag()
        self.metrics: MetricsServer | None = None
        if site.metrics is not None:
            from gateway.metrics import GatewayCollector, MetricsServer

            self.metrics = MetricsServer(
                site.metrics,
                GatewayCollector(self.health, self.statuses, site.site.id, site.site.gateway or ""),
            )
        self.health_interval = health_interval
        self._calendar_checked: tuple[date | None, str | None] = (None, None)
        self.started = time.monotonic()
        self._tasks: list[asyncio.Task[None]] = []

    def _remember(self, sample: Sample) -> None:
        self.latest[sample.device] = sample
        values = self.latest_values.get(sample.device)
        if values is None:
            self.latest_values[sample.device] = dict(sample.values)
        else:
            values.update(sample.values)

    def writer_of(self, device: str) -> DriverRuntime | None:
        """The driver that can write to `device`, if any."""
        for runtime in self.drivers.values():
            if runtime.can_write(device):
                return runtime
        return None

    def statuses(self) -> list[DeviceStatus]:
        return [s for runtime in self.drivers.values() for s in runtime.statuses()]

    async def start(self) -> None:
        """Start everything; when a part fails to start (a console port taken), what did start
        is stopped again (readings flushed or spooled) before the error goes on: no poller is
        left running without a gateway around it."""
        try:
            await self._start()
        except BaseException:
            log.error("the gateway did not start; stopping the parts that did")
            await self.stop()
            raise

    async def _start(self) -> None:
        self.sink.start()
        for runtime in self.drivers.values():
            runtime.start()
        if self.mqtt is not None:
            self.mqtt.start()
        if self.brokers is not None:
            self.brokers.start()  # after everyone who reads there has subscribed
        if self.alarms is not None:
            self.alarms.start()
        if self.accounts is not None:
            self.accounts.start()
        if self.notifier is not None:
            self.notifier.start()
        if self.console is not None:
            await self.console.start()
        if self.dr is not None:
            await self.dr.start()
        self._tasks.append(asyncio.create_task(self._health(), name="health"))
        self._tasks.append(asyncio.create_task(self.loop_lag.run(), name="loop-lag"))
        if self.metrics is not None:
            await self.metrics.start()
        # What start-up built (profiles, plans, rules, catalogue) lives as long as the
        # gateway: out of the collector's way, so full collections scan only what polls make
        # (bench/bench_cycle.py saw them at 20-60 ms with ~55,000 start-up objects).
        gc.freeze()
        log.info(
            "gateway %s started: %d devices, database %s",
            self.loaded.site.site.id,
            len(self.statuses()),
            "configured" if self.writer.transport else "none (spooling)",
        )

    async def stop(self) -> None:
        """Stop polling, then flush or spool everything in memory, whatever fails on the way."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        # Inputs first: the gateway's MQTT topics (commands in flight finish), the brokers
        # (status offline as the last word), the drivers (what they hold reaches the bus),
        # then the rules that judge it, then the sink's last flush: nothing arrives after it.
        # A failing step doesn't skip the others.
        steps: list[Callable[[], Awaitable[None]]] = []
        if self.metrics is not None:
            steps.append(self.metrics.stop)
        if self.console is not None:
            steps.append(self._stop_console)  # no acknowledgement arrives while stopping
        if self.dr is not None:
            steps.append(self.dr.stop)  # no event arrives while stopping
        if self.mqtt is not None:
            steps.append(self.mqtt.stop)
        if self.brokers is not None:
            steps.append(self._stop_brokers)
        steps += [runtime.stop for runtime in self.drivers.values()]
        if self.alarms is not None:
            steps.append(self.alarms.stop)
        if self.accounts is not None:
            steps.append(self.accounts.stop)  # its last periods reach the sink's last flush
        if self.notifier is not None:
            steps.append(self.notifier.stop)  # after the rules: their last transitions
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
        gc.unfreeze()  # a reload builds a new gateway: this one's objects may go now

    async def _stop_console(self) -> None:
        assert self.console is not None
        await self.console.stop()
        from gateway.console.desk import ServiceDesk

        desk = self.console.state.desk
        if isinstance(desk, ServiceDesk):
            desk.close()

    async def _stop_brokers(self) -> None:
        assert self.brokers is not None
        finals = self.mqtt.final_messages() if self.mqtt is not None else {}
        for problem in await asyncio.to_thread(self.brokers.stop, finals):
            log.error("%s", problem)
        for name in self.brokers.connections:
            log.info("MQTT %s closed", name)

    async def run_until(self, stop: asyncio.Event) -> None:
        await self.start()
        try:
            await stop.wait()
        finally:
            await self.stop()

    async def _health(self) -> None:
        while True:
            await asyncio.sleep(self.health_interval)
            values = {k: v for k, v in self.health().items() if isinstance(v, int | float)}
            self.bus.publish(Health(time.time_ns(), values))

    def health(self) -> dict[str, Any]:
        statuses = self.statuses()
        drivers: dict[str, int] = {}
        for runtime in self.drivers.values():
            drivers.update(runtime.health())
        return {
            "uptime_s": round(time.monotonic() - self.started, 1),
            "devices": len(statuses),
            "devices_online": sum(s.up for s in statuses),
            "samples": self.bus.published["Sample"],
            "lines_encoded": self.sink.lines_encoded,
            **self.loop_lag.health(),
            **drivers,
            **self.bus.health(),
            **(self.brokers.health() if self.brokers is not None else {}),
            **(self.mqtt.health() if self.mqtt is not None else {}),
            **(self.alarms.health() if self.alarms is not None else {}),
            **(self.accounts.health() if self.accounts is not None else {}),
            **(self.notifier.health() if self.notifier is not None else {}),
            **(self.console.health() if self.console is not None else {}),
            **(self.dr.health() if self.dr is not None else {}),
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
