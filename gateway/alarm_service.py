"""The rules runtime: Samples (from its own inbox on the bus) and clock ticks into the
engine; Effects out to the alarm book, persisted on the store's thread, then announced on the
bus as AlarmTransitions (the InfluxDB and MQTT sinks subscribe); commands through the one
audited command path."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Coroutine, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from core.types import Sample
from gateway.alarm_store import AlarmStore, Outgoing, StoreThread
from gateway.bus import Bus, Inbox, Overflow
from gateway.catalog import DeviceCatalog
from gateway.commands import CommandRouter
from gateway.config_load import LoadedSite
from gateway.dr.contract import deliver_payload
from gateway.messages import AlarmTransition
from gateway.mqtt_outbox import AlarmOutbox
from rules.alarms import Alarm, AlarmBook, Transition
from rules.calendar import WorkCalendar
from rules.catalog import Catalog
from rules.engine import Engine
from rules.model import (
    Clear,
    DeviceInfo,
    Effect,
    Input,
    Issue,
    PointInfo,
    Raise,
    Record,
    Rule,
)
from rules.registry import build_rules
from rules.texts import AlarmTexts

log = logging.getLogger("guanjia.alarms")


def device_infos(source: DeviceCatalog | LoadedSite) -> list[DeviceInfo]:
    """Devices as rules see them, from the catalogue: kind, profile, tags, points."""
    catalog = source if isinstance(source, DeviceCatalog) else DeviceCatalog.build(source)
    return [
        DeviceInfo(
            d.id,
            d.kind,
            d.profile,
            d.tags,
            {
                name: PointInfo(
                    p.unit,
                    p.writable[0] if p.writable else None,
                    p.writable[1] if p.writable else None,
                    p.labels,
                )
                for name, p in d.points.items()
            },
            stale_after=d.stale_after,
        )
        for d in catalog.devices.values()
    ]


# At most one batch of readings per millisecond: with thousands of readings a second, each in
# a loop pass of its own, waking for every one would cost more than judging it
# (bench/bench_rules.py, rules_cpu); an alarm waits at most that much longer (rules_p99_ms).
INBOX_PACE = 0.001

MAX_SHELVE_S = 7 * 86400  # a week: longer is a rule to change, not an alarm to hide


class AlarmService:
    """The rules runtime. Samples reach it through its own bounded inbox, off the pollers'
    path; every alarm-store call runs on the store's thread; a transition is announced on the
    bus (InfluxDB, MQTT, the coming notifier) only once it is durable; rule commands go
    through the one command path as tracked tasks, bounded, awaited at stop."""

    def __init__(
        self,
        loaded: LoadedSite,
        devices: DeviceCatalog,
        commands: CommandRouter,
        bus: Bus,
        *,
        store_path: Path,
        rules: Sequence[Rule] | None = None,
        tick: float = 1.0,
        clock: Callable[[], datetime] | None = None,
        inbox_bound: int = 50_000,
        inbox_pace: float = INBOX_PACE,
        max_commands: int = 1000,
        max_queued: int = 5000,
    ) -> None:
        site = loaded.site
        self.site_id = site.site.id
        self.commands = commands
        self.bus = bus
        self.catalog = Catalog.load().with_overrides(site.alarms.grades)
        self.calendar = WorkCalendar.from_config(site.calendar, site.site.timezone, loaded.base_dir)
        self.devices = {d.id: d for d in device_infos(devices)}
        self.alarm_texts = AlarmTexts(self.catalog, self.devices)
        self.engine = Engine(
            list(rules) if rules is not None else build_rules(site.rules),
            list(self.devices.values()),
            self.calendar,
            site.site.timezone,
            clock,
        )
        store = AlarmStore(store_path)
        self.book: AlarmBook = store.load()
        self.engine.restore(store.load_rule_state())
        self.store = StoreThread(store)
        # Readings for the rules: the newest matter most; what overflows is counted.
        self.inbox: Inbox[Sample] = bus.inbox(
            Sample,
            name="rules",
            bound=inbox_bound,
            overflow=Overflow.DROP_OLDEST,
            pace=inbox_pace,
        )
        self.tick_interval = tick
        self.state_save_interval = 60.0
        self._states_saved = 0.0
        self._tasks: list[asyncio.Task[None]] = []
        self._pending: set[asyncio.Task[Any]] = set()  # commands and announcements in flight
        self.max_commands = max_commands
        self._commands_running = 0
        self.commands_refused = 0
        self.commands_superseded = 0
        self.max_queued = max_queued
        # Rule commands waiting for one of the max_commands places, by (device, point).
        self._queued: OrderedDict[tuple[str, str], Issue] = OrderedDict()
        self._stopping = False
        self.transitions = 0
        self.store_errors = 0
        # The messages that tell the home broker of each transition, kept in the store until
        # the broker has them (gateway/mqtt_outbox.py); set by the gateway when it has MQTT.
        self.outbox: AlarmOutbox | None = None
        warning = self.calendar_warning()
        if warning:
            log.warning("%s", warning)

    def calendar_warning(self) -> str | None:
        """The working calendar's end, from 60 days before, in the rules' own time (the
        demo's building runs in July): for health and the live view."""
        today = self.engine.clock().astimezone(self.engine.ctx.tz).date()
        return self.calendar.coverage_warning(today)

    def health(self) -> dict[str, int]:
        outbox = {}
        if self.outbox is not None:
            store = self.store.store
            outbox = {
                **self.outbox.health(),
                "mqtt_outbox_stored": store.outbox_rows,
                "mqtt_outbox_dropped": store.outbox_dropped,
            }
        return {
            "alarms_open": len(self.book.open_alarms()),
            "alarm_transitions": self.transitions,
            "alarm_store_errors": self.store_errors,
            "alarm_store_commits": self.store.commits,
            "rule_commands_refused": self.commands_refused,
            "rule_commands_running": self._commands_running,
            "rule_commands_queued": len(self._queued),
            "rule_commands_superseded": self.commands_superseded,
            **outbox,
        }

    async def read_outbox(self, after: int, limit: int) -> list[Outgoing]:
        """Stored outbox messages past `after`, read on the store's thread."""
        rows: list[Outgoing] = await asyncio.wrap_future(
            self.store.read(lambda s: s.outbox_after(after, limit))
        )
        return rows

    def open_alarm_texts(self) -> list[tuple[Alarm, str, str]]:
        return [(a, *self.texts(a)) for a in self.book.open_alarms()]

    # -- inputs from outside (MQTT control topics, the CLI through the store) --------------

    def demand_response(self, payload: bytes) -> str:
        """A grid operator's event: {"id", "start", "end", "offset"} (ISO times with a zone),
        or {"cancel": id}. An input of the engine, which hands it to every rule; the
        demand_response rules take it and their commands follow on ticks."""
        return deliver_payload(payload, self.demand_response_input)

    def dr_window(self, event_id: str) -> tuple[float, float] | None:
        """When the demand_response rules act on an event they took (the widest of them)."""
        from rules.kinds.demand_response import DemandResponseRule

        windows = [
            w
            for rule in self.engine.rules
            if isinstance(rule, DemandResponseRule) and (w := rule.window(event_id)) is not None
        ]
        if not windows:
            return None
        return min(w[0] for w in windows), max(w[1] for w in windows)

    def demand_response_input(self, event: Input) -> str:
        """A parsed demand-response event or cancel, from any source (MQTT, the webhook, the
        OpenADR VEN): the rules' answer as text ("accepted", "refused: ...", ...)."""
        outcome = self.engine.on_input(event)
        self._spawn(self._apply(outcome.effects, time.time()))
        answer = outcome.text()
        if outcome.result in ("accepted", "cancelled"):
            self._states_saved = 0.0  # the next tick saves the rule states: survives a restart
            log.info("demand response %s: %s", answer, event)
        elif outcome.result == "refused":
            log.warning("demand response event %s", answer)
        return answer

    def shelve(self, alarm_id: str, payload: bytes) -> str:
        """{"for": "2h", "reason": "...", "by": "..."} from MQTT: quiet for a while."""
        from core.config_types import parse_duration

        if self.book.get(alarm_id) is None:
            return "unknown alarm"
        try:
            doc = json.loads(payload)
            seconds = parse_duration(doc["for"])
            reason = str(doc["reason"])
        except (ValueError, KeyError, TypeError, OverflowError, RecursionError) as exc:
            return f'refused: {exc}; send {{"for": "2h", "reason": "..."}}'
        outcome = self.shelve_as(alarm_id, f"mqtt:{doc.get('by', 'anonymous')}", seconds, reason)
        if outcome.startswith("refused:"):
            return f'{outcome}; send {{"for": "2h", "reason": "..."}}'
        return outcome

    def shelve_as(self, alarm_id: str, by: str, seconds: float, reason: str) -> str:
        """Quiet an alarm for `seconds` with a reason, recorded as `by` (the console's
        `console:<user>`, MQTT's `mqtt:<name>`); announced once the store holds it."""
        if self.book.get(alarm_id) is None:
            return "unknown alarm"
        if not 0 < seconds <= MAX_SHELVE_S:  # also refuses NaN and infinity
            return f"refused: shelve for more than 0 and at most {MAX_SHELVE_S / 86400:g} days"
        reason = reason.strip()
        if not reason:
            return "refused: a reason is required"
        t = time.time()
        self._spawn(self._commit(self.book.shelve(alarm_id, t + seconds, reason, by, t)))
        return "shelved"

    def ack(self, alarm_id: str, by: str, note: str = "") -> str:
        """Acknowledge now; the transition is announced once the store holds it."""
        outcome, transitions = self._ack(alarm_id, by, note)
        self._spawn(self._commit(transitions))
        return outcome

    def _ack(self, alarm_id: str, by: str, note: str) -> tuple[str, list[Transition]]:
        if self.book.get(alarm_id) is None:
            return "unknown alarm", []
        transitions = self.book.ack(alarm_id, by, time.time(), note)
        return ("acked" if transitions else "already acknowledged"), transitions

    # -- the runtime -----------------------------------------------------------------------

    def start(self) -> None:
        self.store.start()
        self._tasks = [
            asyncio.create_task(self._consume(), name="rules"),
            asyncio.create_task(self._ticks(), name="rules-tick"),
        ]

    async def stop(self) -> None:
        """Judge what is still queued, finish commands and announcements, save, close."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        try:
            await self._evaluate(self.inbox.drain())
        except Exception:
            log.exception("rules: evaluating the last readings failed")
        # Commands still waiting are not started: a line at its write rate could hold the
        # stop for minutes. Each is audited as not executed.
        self._stopping = True
        while self._queued:
            _key, effect = self._queued.popitem(last=False)
            self.commands_refused += 1
            self.commands.audit_refusal(effect.command, "the gateway stopped; not executed")
        while self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)
        await self._commit([], rule_states=self.engine.snapshot())
        await asyncio.to_thread(self.store.stop)

    async def _consume(self) -> None:
        inbox = self.inbox
        while True:
            waiter = inbox.ready()
            if waiter is not None:
                await waiter  # a bare future: this wakes hundreds of times a second
                continue
            try:
                effects = self._judge(inbox.take())
                if effects:  # seldom: a coroutine only then
                    await self._apply(effects, time.time())
            except Exception:  # a rule's bug must not stop the rest
                log.exception("rules: evaluating readings failed")

    def _judge(self, samples: Sequence[Sample]) -> list[Effect]:
        """A batch of readings through the rules; their effects, applied together."""
        effects: list[Effect] = []
        on_sample = self.engine.on_sample
        for sample in samples:
            out = on_sample(sample)
            if out:
                effects.extend(out)
        return effects

    async def _evaluate(self, samples: Sequence[Sample]) -> None:
        effects = self._judge(samples)
        if effects:
            await self._apply(effects, time.time())

    async def _ticks(self) -> None:
        while True:
            await asyncio.sleep(self.tick_interval)
            try:
                await self.tick(time.time())
            except Exception:  # a rule's bug must not stop the rest
                log.exception("rules tick failed")

    async def tick(self, t: float) -> None:
        await self._apply(self.engine.on_tick(), t)
        transitions = self.book.tick(t, self.catalog.response_time)
        acks_done = []
        requests = await asyncio.wrap_future(self.store.read(lambda s: s.pending_acks()))
        for request in requests:  # `guanjia ack`, through the store
            outcome, done = self._ack(request.alarm_id, request.by, request.note)
            transitions.extend(done)
            acks_done.append((request.id, outcome))
        # Rule states (running on-delays, learned baselines) are saved once a minute, not
        # every tick: a restart loses at most a minute of a delay, and the store is spared
        # rewriting thousands of rows each second.
        states = None
        if t - self._states_saved >= self.state_save_interval:
            states, self._states_saved = self.engine.snapshot(), t
        await self._commit(transitions, acks_done=acks_done, rule_states=states, t=t)

    async def _apply(self, effects: Sequence[Effect], t: float) -> None:
        transitions: list[Transition] = []
        for effect in effects:
            if isinstance(effect, Issue):
                self._command(effect)
            elif isinstance(effect, Raise | Clear):
                transitions.extend(self.book.apply(effect, t, self.catalog.grade_of))
            elif isinstance(effect, Record):
                self.bus.publish(effect)  # a rule's derived fact (a patrol round), for storage
        await self._commit(transitions)

    def _command(self, effect: Issue) -> None:
        """A rule's write, through the one checked and audited command path. At most
        `max_commands` run at once (1000: a demand-response event writes to hundreds of units,
        all waiting at once on their lines, each line taking them at its own write rate in
        turn; a cap of one line's worth would hold the next line's first write back); the
        others wait in order, a newer command for the same point replacing the one still
        waiting. Past `max_queued` waiting, a command is
        refused and audited as such (a rule gone wild must not grow the queue without end)."""
        command = effect.command
        key = (command.device, command.point)
        if self._commands_running >= self.max_commands:
            if key in self._queued:
                self._queued[key] = effect  # the newer value wins; it keeps its place
                self.commands_superseded += 1
                return
            if len(self._queued) >= self.max_queued:
                self.commands_refused += 1
                self.commands.audit_refusal(
                    command,
                    f"{self.max_commands} rule commands running and {self.max_queued} "
                    "waiting; not executed",
                )
                return
            self._queued[key] = effect
            return
        self._run_command(effect)

    def _run_command(self, effect: Issue) -> None:
        command = effect.command
        log.info(
            "rule command %s.%s = %r: %s",
            command.device,
            command.point,
            command.value,
            effect.reason,
        )
        self._commands_running += 1
        task = self._spawn(self.commands.execute(command))
        task.add_done_callback(self._command_done)

    def _command_done(self, _task: asyncio.Task[Any]) -> None:
        self._commands_running -= 1
        if self._queued and not self._stopping:
            _key, effect = self._queued.popitem(last=False)
            self._run_command(effect)

    def _spawn(self, work: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(work)
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)
        return task

    async def _commit(
        self,
        transitions: Sequence[Transition],
        *,
        acks_done: Sequence[tuple[int, str]] = (),
        rule_states: Mapping[str, Mapping[str, Any]] | None = None,
        t: float | None = None,
    ) -> None:
        """Make the transitions (and their MQTT messages) durable on the store's thread, then
        announce them; the messages the broker has acknowledged are deleted on the way."""
        changed = self.book.unsaved()
        outbox = self.outbox
        sent = outbox.take_sent() if outbox is not None else []
        if not (transitions or changed or acks_done or rule_states or sent):
            return
        texts = [self.texts(tr.alarm) for tr in transitions]
        entries = outbox.messages(transitions, texts) if outbox is not None else []
        try:
            stored = await asyncio.wrap_future(
                self.store.write(
                    transitions,
                    changed,
                    acks_done=acks_done,
                    rule_states=rule_states,
                    t=t,
                    outbox=entries,
                    sent=sent,
                )
            )
        except Exception as exc:  # a locked or full disk must not silence the alarm itself
            self.store_errors += 1
            log.error(
                "alarm store: cannot save %d transitions (%r); announcing them anyway",
                len(transitions),
                exc,
            )
            if outbox is not None:
                outbox.give_back(sent)
                outbox.unstored(entries)
        else:
            self.book.saved(changed)
            if outbox is not None:
                outbox.stored(stored)
        self._announce(transitions, texts)

    def _announce(
        self, transitions: Sequence[Transition], texts: Sequence[tuple[str, str]]
    ) -> None:
        self.transitions += len(transitions)
        for i, (tr, (text_zh, text_en)) in enumerate(zip(transitions, texts, strict=True)):
            alarm = tr.alarm
            level = logging.WARNING if tr.what in ("raised", "escalated") else logging.INFO
            log.log(
                level, "alarm %s %s [%s] %s | %s", alarm.id, tr.what, alarm.grade, text_zh, text_en
            )
            self.bus.publish(AlarmTransition(tr, text_zh, text_en, i))

    def texts(self, alarm: Alarm) -> tuple[str, str]:
        """(Chinese, English), through rules.texts like `guanjia alarms`."""
        return self.alarm_texts.render(alarm)
