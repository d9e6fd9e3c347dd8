"""Demand response in the running gateway: the sources (MQTT, the webhook, the OpenADR VEN)
hand their events here; they go on to the rules (the AlarmService's engine), and each event
the rules took is followed until its load shed is known.

For every event taken: while it runs, its figure so far (baseline, actual, reduction) is worked
out every `shed.interval` and written as a `dr_shed` point (a Record on the bus: the InfluxDB
sink stores it) and offered to the VTN as the OpenADR report; once it is complete (after the
end, or a cancel), the last point is written and its summary, Chinese and English, goes to the
log and, with MQTT, to the retained topic `<prefix>/<site>/dr/summary/<event id>` as JSON
{"event", "zh", "en", "figure"}. The events taken and whether their summary went out are kept
in `demand_response.state` (JSON, written atomically), so a restart in the middle of an event
still measures and reports it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from core.text import shorten
from gateway.bus import Bus
from gateway.config_load import LoadedSite, site_relative
from gateway.dr.config import DemandResponseConfig
from gateway.dr.contract import DrInput, DrSink, ShedFigure, deliver_payload
from gateway.dr.openadr import OpenAdrVen
from gateway.dr.shed import ShedAccounts, readings_for
from gateway.dr.webhook import DrWebhook
from rules.calendar import WorkCalendar
from rules.model import DemandResponseCancel, DemandResponseEvent

log = logging.getLogger("guanjia.dr")

_TOPIC_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")

MAX_KEPT = 200
"""Events kept in the state file (the oldest summarised ones go first)."""

Publish = Callable[[str, str], None]
"""(topic under the site's prefix, payload) -> a retained MQTT message."""


@dataclass(slots=True)
class TakenEvent:
    """An event the rules accepted, as the service follows it (its window as the rules act)."""

    id: str
    start: float
    end: float
    zones: tuple[str, ...]
    ended_at: float | None = None  # cancelled before its end
    summarised: bool = False

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "zones": list(self.zones)}

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> TakenEvent:
        return cls(
            str(doc["id"]),
            float(doc["start"]),
            float(doc["end"]),
            tuple(str(z) for z in doc.get("zones", ())),
            None if doc.get("ended_at") is None else float(doc["ended_at"]),
            bool(doc.get("summarised", False)),
        )


class DrService:
    """The demand-response sources and the load-shed follow-up of one gateway."""

    def __init__(
        self,
        loaded: LoadedSite,
        config: DemandResponseConfig,
        sink: DrSink,
        bus: Bus,
        calendar: WorkCalendar,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`sink`: the rules (AlarmService.demand_response_input); the load shed is read from
        the site's database (InfluxDB or VictoriaMetrics), none: not measured."""
        self.config = config
        self.site_id = loaded.site.site.id
        self.sink = sink
        self.bus = bus
        self.clock = clock
        self.publish: Publish | None = None  # set by the gateway when it has MQTT
        # The rules' window of an event they took (AlarmService.dr_window), if known.
        self.window_of: Callable[[str], tuple[float, float] | None] | None = None
        self.shed: ShedAccounts | None = None
        if config.shed is not None and loaded.site.influxdb is not None:
            s = config.shed
            self.shed = ShedAccounts(
                readings_for(loaded, s.meter),
                self.site_id,
                s.meter,
                calendar,
                point=s.point,
                power_point=s.power_point,
                days=s.days,
                look_back_days=s.look_back_days,
                min_days=s.min_days,
                settle_s=s.settle,
                refresh_s=s.interval,
            )
        elif config.shed is not None:
            log.warning("demand response: no database configured; the load shed is not measured")
        self.webhook = (
            DrWebhook(
                config.webhook,
                self.handle,
                loaded.secrets.__getitem__,
                timezone=loaded.site.site.timezone,
            )
            if config.webhook is not None
            else None
        )
        self.ven = (
            OpenAdrVen(config.openadr, self.handle, self.shed_of, base_dir=loaded.base_dir)
            if config.openadr is not None
            else None
        )
        self.state_path = site_relative(loaded.base_dir, config.state)
        self.events: dict[str, TakenEvent] = {}
        self.counts = {
            "dr_events_taken": 0,
            "dr_events_cancelled": 0,
            "dr_events_refused": 0,
            "dr_shed_points": 0,
            "dr_summaries": 0,
            "dr_state_errors": 0,
            "dr_summary_publish_errors": 0,
            "dr_follow_errors": 0,
        }
        self._load()
        self._task: asyncio.Task[None] | None = None
        self._written: dict[str, ShedFigure] = {}  # event -> the figure last written

    # -- events in --------------------------------------------------------------------------

    def handle(self, event: DrInput) -> str:
        """A source's event: to the rules; what they took is followed. Their answer as text."""
        outcome = self.sink(event)
        now = self.clock()
        if outcome.startswith("refused"):
            self.counts["dr_events_refused"] += 1
        elif isinstance(event, DemandResponseEvent) and outcome == "accepted":
            self._taken(event)
        elif isinstance(event, DemandResponseCancel) and outcome == "cancelled":
            taken = self.events.get(event.id)
            if taken is not None and taken.ended_at is None and now < taken.end:
                taken.ended_at = max(now, taken.start)
                if now <= taken.start:
                    taken.summarised = True  # cancelled before it began: nothing to measure
                elif self.shed is not None:
                    self.shed.event_ended(event.id, taken.ended_at)
                self.counts["dr_events_cancelled"] += 1
                self._save()
        return outcome

    def handle_payload(self, payload: bytes) -> str:
        """An MQTT `dr/event` message (rules/inputs.py's format)."""
        return deliver_payload(payload, self.handle)

    def _taken(self, event: DemandResponseEvent) -> None:
        start, end = event.start.timestamp(), event.end.timestamp()
        if self.window_of is not None:
            # What the rules made of it: cut to their max_duration, their staggered
            # restores after the end: the load shed is measured over that.
            start, end = self.window_of(event.id) or (start, end)
        taken = TakenEvent(event.id, start, end, event.zones)
        self.events.pop(event.id, None)
        self.events[event.id] = taken
        self._written.pop(event.id, None)
        if self.shed is not None:
            self.shed.event_started(event.id, start, end, event.zones)
        self.counts["dr_events_taken"] += 1
        self._save()

    def shed_of(self, event_id: str) -> ShedFigure | None:
        """The event's figure so far (the OpenADR report's source)."""
        return None if self.shed is None else self.shed.cached(event_id)

    # -- running ----------------------------------------------------------------------------

    async def start(self) -> None:
        if self.webhook is not None:
            await self.webhook.start()
        if self.ven is not None:
            await self.ven.start()
        if self.shed is not None:
            self._task = asyncio.create_task(self._follow(), name="dr-shed")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.ven is not None:
            await self.ven.stop()
        if self.webhook is not None:
            await self.webhook.stop()
        self._save()

    async def _follow(self) -> None:
        assert self.config.shed is not None
        while True:
            try:
                await self.update(self.clock())
            except Exception:  # a bug: counted, logged; the next round tries again
                self.counts["dr_follow_errors"] += 1
                log.exception("demand response: following the load shed failed")
            await asyncio.sleep(self.config.shed.interval)

    async def update(self, now: float) -> None:
        """Work out the figures of the events running or just over; write what changed."""
        shed = self.shed
        if shed is None:
            return
        for taken in list(self.events.values()):
            if taken.summarised or now <= taken.start:
                continue
            figure = await shed.figure(taken.id, now)
            if figure is None:
                continue
            if self._written.get(taken.id) != figure:
                record = shed.record(taken.id)
                if record is not None:
                    self.bus.publish(record)
                    self.counts["dr_shed_points"] += 1
                    self._written[taken.id] = figure
            if shed.is_final(taken.id):
                self._summarise(taken, figure)

    def _summarise(self, taken: TakenEvent, figure: ShedFigure) -> None:
        assert self.shed is not None
        texts = self.shed.summary(taken.id)
        if texts is None:
            return
        zh, en = texts
        log.info("%s", en)
        log.info("%s", zh)
        if self.publish is not None:
            doc = {
                "event": taken.id,
                "zh": zh,
                "en": en,
                "figure": {k: _json_number(v) for k, v in asdict(figure).items()},
            }
            # An event id may hold what a topic may not (+, #, /): the topic level is a
            # cleaned copy, the payload has the id as it is.
            level = _TOPIC_UNSAFE.sub("-", taken.id) or "event"
            try:
                self.publish(f"dr/summary/{level}", json.dumps(doc, ensure_ascii=False))
            except (ValueError, OSError) as exc:
                self.counts["dr_summary_publish_errors"] += 1
                log.error("demand response: summary of %s not published: %s", taken.id, exc)
        taken.summarised = True
        self.counts["dr_summaries"] += 1
        self._save()

    def health(self) -> dict[str, int]:
        return {
            **self.counts,
            "dr_events_open": sum(not e.summarised for e in self.events.values()),
            **(self.webhook.health() if self.webhook is not None else {}),
            **(
                {f"openadr_{k}": v for k, v in self.ven.health().items()}
                if self.ven is not None
                else {}
            ),
            **(self.shed.health() if self.shed is not None else {}),
        }

    # -- state ------------------------------------------------------------------------------

    def _load(self) -> None:
        try:
            doc = json.loads(self.state_path.read_text(encoding="utf-8"))
            events = [TakenEvent.from_json(e) for e in doc.get("events", [])]
        except FileNotFoundError:
            return
        except (OSError, ValueError, KeyError, TypeError) as exc:
            self.counts["dr_state_errors"] += 1
            log.error(
                "demand response: %s unreadable (%s); the events in it are not followed",
                self.state_path,
                shorten(str(exc), 200),
            )
            return
        for taken in events:
            self.events[taken.id] = taken
            if self.shed is not None and not taken.summarised:
                self.shed.event_started(taken.id, taken.start, taken.end, taken.zones)
                if taken.ended_at is not None:
                    self.shed.event_ended(taken.id, taken.ended_at)

    def _save(self) -> None:
        while len(self.events) > MAX_KEPT:
            oldest = next((k for k, e in self.events.items() if e.summarised), None)
            key = oldest if oldest is not None else next(iter(self.events))
            del self.events[key]
            self._written.pop(key, None)
        doc = {"events": [e.to_json() for e in self.events.values()]}
        path = self.state_path
        tmp = path.with_suffix(path.suffix + ".tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
            os.replace(tmp, path)
        except OSError as exc:
            self.counts["dr_state_errors"] += 1
            log.error("demand response: cannot save %s: %s", path, exc.strerror)


def _json_number(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, tuple):
        return list(value)
    return value
