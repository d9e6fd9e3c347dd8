"""The InfluxDB sink: every message that is stored becomes line protocol here, and only here,
batched by size and by age for the writer thread."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

from core.types import Sample
from gateway.bus import Bus
from gateway.influx_writer import Batch, Writer
from gateway.lineproto import LineEncoder, alarm_line, audit_line, console_line, record_line
from gateway.messages import AlarmTransition, AuditRecord, ConsoleEvent, Health
from rules.model import Record

HEALTH_DEVICE = "_gateway"  # the encoder's key for the `gateway` measurement


class InfluxSink:
    """A bus subscriber on the event loop (cheap: encode and append); its buffer is bounded by
    `max_points`, then handed to the writer thread, which delivers, spools or dead-letters."""

    def __init__(
        self,
        encoder: LineEncoder,
        writer: Writer,
        max_points: int,
        max_age: float,
        *,
        site_id: str = "",
        gateway: str = "",
        device_tags: Mapping[str, Mapping[str, str]] | None = None,
        known: Callable[[str, str], bool] = lambda _device, _point: False,
    ) -> None:
        self.encoder = encoder
        self.writer = writer
        self.max_points = max_points
        self.max_age = max_age
        self.site_id = site_id
        self.gateway = gateway  # the `gateway` tag in a site split across gateways
        self.device_tags = device_tags or {}
        self.known = known
        self.lines_encoded = 0
        self._lines: list[str] = []
        self._task: asyncio.Task[None] | None = None

    def attach(self, bus: Bus) -> None:
        bus.subscribe(Sample, self.offer, name="influx")
        bus.subscribe(AlarmTransition, self.offer_alarm, name="influx")
        bus.subscribe(AuditRecord, self.offer_audit, name="influx")
        bus.subscribe(Health, self.offer_health, name="influx")
        bus.subscribe(Record, self.offer_record, name="influx")
        bus.subscribe(ConsoleEvent, self.offer_console, name="influx")

    def offer(self, sample: Sample) -> None:
        line = self.encoder.encode(sample)
        if line is None:
            return
        self._append(line)

    def offer_alarm(self, msg: AlarmTransition) -> None:
        device = msg.transition.alarm.subject.split(":")[0]
        self._append(alarm_line(self.site_id, msg, self.device_tags.get(device, {}), self.gateway))

    def offer_audit(self, record: AuditRecord) -> None:
        self._append(audit_line(self.site_id, record, self.known, self.gateway))

    def offer_record(self, record: Record) -> None:
        line = record_line(self.site_id, record, self.gateway)
        if line is not None:
            self._append(line)

    def offer_console(self, event: ConsoleEvent) -> None:
        self._append(console_line(self.site_id, event, self.gateway))

    def offer_health(self, health: Health) -> None:
        self.offer(Sample(HEALTH_DEVICE, health.ts, health.values))

    def _append(self, line: str) -> None:
        self._lines.append(line)
        self.lines_encoded += 1
        if len(self._lines) >= self.max_points:
            self.flush()

    def flush(self) -> None:
        if not self._lines:
            return
        lines, self._lines = self._lines, []
        lines.append("")
        self.writer.submit(Batch("\n".join(lines).encode(), len(lines) - 1))

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.max_age)
            self.flush()

    def start(self) -> None:
        self.writer.start()
        self._task = asyncio.create_task(self._tick(), name="influx-batch")

    async def stop(self) -> None:
        """Flush what is buffered and let the writer deliver or spool it."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self.flush()
        await asyncio.to_thread(self.writer.stop)
