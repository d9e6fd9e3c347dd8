"""Rules and alarms in the running gateway: Samples and ticks into the engine, Effects out to
the alarm book (persisted), InfluxDB (`alarm` measurement), MQTT (retained
`<prefix>/<site>/alarm/<id>`), the log, and, for commands, the audited command path."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path

from core.types import Sample
from drivers.modbus.profile import Profile
from drivers.mqtt.profile import MqttProfile
from gateway.alarm_store import AlarmStore
from gateway.commands import CommandRouter
from gateway.config_load import LoadedSite
from gateway.lineproto import format_field, series_prefix
from rules.alarms import Alarm, AlarmBook, Transition
from rules.calendar import WorkCalendar
from rules.catalog import Catalog
from rules.engine import STALE_POLLS, Engine
from rules.model import Clear, DeviceInfo, Effect, Issue, PointInfo, Raise, Rule
from rules.registry import build_rules
from rules.texts import AlarmTexts

log = logging.getLogger("guanjia.alarms")


def device_infos(loaded: LoadedSite) -> list[DeviceInfo]:
    """Devices as rules see them: kind, profile, tags (site's then device's), points."""
    out = []
    site_tags = loaded.site.site.tags
    for d in loaded.site.devices:
        profile = loaded.profiles.get(d.profile)
        points: dict[str, PointInfo] = {}
        stale_after: float | None = None
        if isinstance(profile, Profile):
            for p in profile.points:
                w = p.writable
                points[p.name] = PointInfo(
                    p.unit, w.min if w else None, w.max if w else None, dict(p.enum or {})
                )
            stale_after = STALE_POLLS * d.poll
        elif isinstance(profile, MqttProfile):
            for m in profile.messages:
                for jp in m.points:
                    points[jp.name] = PointInfo(jp.unit)
            stale_after = profile.availability.heartbeat
        tags = {**site_tags, **d.tags}
        out.append(
            DeviceInfo(d.id, loaded.kind_of(d), d.profile, tags, points, stale_after=stale_after)
        )
    return out


MAX_SHELVE_S = 7 * 86400  # a week: longer is a rule to change, not an alarm to hide


class AlarmService:
    def __init__(
        self,
        loaded: LoadedSite,
        commands: CommandRouter,
        write_line: Callable[[str], None],
        publish: Callable[[str, str, bool], None] | None,
        *,
        store_path: Path,
        rules: Sequence[Rule] | None = None,
        tick: float = 1.0,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        site = loaded.site
        self.site_id = site.site.id
        self.commands = commands
        self.write_line = write_line
        self.publish = publish
        self.catalog = Catalog.load().with_overrides(site.alarms.grades)
        self.calendar = WorkCalendar.from_config(site.calendar, site.site.timezone, loaded.base_dir)
        self.devices = {d.id: d for d in device_infos(loaded)}
        self.alarm_texts = AlarmTexts(self.catalog, self.devices)
        self.engine = Engine(
            list(rules) if rules is not None else build_rules(site.rules),
            list(self.devices.values()),
            self.calendar,
            site.site.timezone,
            clock,
        )
        self.store = AlarmStore(store_path)
        self.book: AlarmBook = self.store.load()
        self.engine.restore(self.store.load_rule_state())
        self.prefix = f"{site.mqtt.prefix if site.mqtt else 'guanjia'}/{self.site_id}/alarm"
        self.tick_interval = tick
        self.state_save_interval = 60.0
        self._states_saved = 0.0
        self._task: asyncio.Task[None] | None = None
        self.transitions = 0
        self.store_errors = 0
        self.latency: list[float] = []  # seconds from a Sample's arrival to its transitions
        warning = self.calendar_warning()
        if warning:
            log.warning("%s", warning)

    def calendar_warning(self) -> str | None:
        """The working calendar's end, from 60 days before, in the rules' own time (the
        demo's building runs in July): for health and the live view."""
        today = self.engine.clock().astimezone(self.engine.ctx.tz).date()
        return self.calendar.coverage_warning(today)

    # -- inputs ----------------------------------------------------------------------------

    def observe(self, sample: Sample) -> None:
        """Bus subscriber. Cheap when no rule watches the device (a dict lookup)."""
        effects = self.engine.on_sample(sample)
        if effects:
            started = time.perf_counter()
            self._apply(effects, time.time())
            self.latency.append(time.perf_counter() - started)
            if len(self.latency) > 10_000:
                del self.latency[:5_000]

    def demand_response(self, payload: bytes) -> str:
        """A grid operator's event: {"id", "start", "end", "offset"} (ISO times with a zone),
        or {"cancel": id}. An input of the engine, which hands it to every rule; the
        demand_response rules take it and their commands follow on ticks."""
        from rules.inputs import parse_dr_event

        try:
            event = parse_dr_event(payload)
        except ValueError as exc:
            log.warning("demand response event refused: %s", exc)
            return f"refused: {exc}"
        outcome = self.engine.on_input(event)
        self._apply(outcome.effects, time.time())
        answer = outcome.text()
        if outcome.result in ("accepted", "cancelled"):
            self._states_saved = 0.0  # the next tick saves the rule states: survives a restart
            log.info("demand response %s: %s", answer, event)
        elif outcome.result == "refused":
            log.warning("demand response event %s", answer)
        return answer

    def shelve(self, alarm_id: str, payload: bytes) -> str:
        """{"for": "2h", "reason": "...", "by": "..."}: quiet for a while, with a reason."""
        from core.config_types import parse_duration

        if self.book.get(alarm_id) is None:
            return "unknown alarm"
        try:
            doc = json.loads(payload)
            seconds = parse_duration(doc["for"])
            if not 0 < seconds <= MAX_SHELVE_S:  # also refuses NaN and infinity
                raise ValueError(
                    f"shelve for more than 0 and at most {MAX_SHELVE_S / 86400:g} days"
                )
            reason = str(doc["reason"]).strip()
            if not reason:
                raise ValueError("a reason is required")
        except (ValueError, KeyError, TypeError, OverflowError, RecursionError) as exc:
            return f'refused: {exc}; send {{"for": "2h", "reason": "..."}}'
        t = time.time()
        by = f"mqtt:{doc.get('by', 'anonymous')}"
        self._publish(self.book.shelve(alarm_id, t + seconds, reason, by, t))
        return "shelved"

    def ack(self, alarm_id: str, by: str, note: str = "") -> str:
        if self.book.get(alarm_id) is None:
            return "unknown alarm"
        transitions = self.book.ack(alarm_id, by, time.time(), note)
        self._publish(transitions)
        return "acked" if transitions else "already acknowledged"

    # -- the loop --------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._ticks(), name="rules")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self.store.save([], self.book, rule_states=self.engine.snapshot())
        self.store.close()

    async def _ticks(self) -> None:
        while True:
            await asyncio.sleep(self.tick_interval)
            try:
                self.tick(time.time())
            except Exception:  # a rule's bug must not stop the rest
                log.exception("rules tick failed")

    def tick(self, t: float) -> None:
        self._apply(self.engine.on_tick(), t)
        self._publish(self.book.tick(t, self.catalog.response_time))
        acks_done = []
        for request in self.store.pending_acks():
            acks_done.append((request.id, self.ack(request.alarm_id, request.by, request.note)))
        # Rule states (running on-delays, learned baselines) are saved once a minute, not
        # every tick: a restart loses at most a minute of a delay, and the store is spared
        # rewriting thousands of rows each second.
        states = None
        if t - self._states_saved >= self.state_save_interval:
            states, self._states_saved = self.engine.snapshot(), t
        self.store.save([], self.book, acks_done=acks_done, rule_states=states, t=t)

    # -- outputs ---------------------------------------------------------------------------

    def _apply(self, effects: Sequence[Effect], t: float) -> None:
        transitions: list[Transition] = []
        for effect in effects:
            if isinstance(effect, Issue):
                asyncio.get_running_loop().create_task(self.commands.execute(effect.command))
                log.info(
                    "rule command %s.%s = %r: %s",
                    effect.command.device,
                    effect.command.point,
                    effect.command.value,
                    effect.reason,
                )
            elif isinstance(effect, Raise | Clear):
                transitions.extend(self.book.apply(effect, t, self.catalog.grade_of))
        self._publish(transitions)

    def _publish(self, transitions: Sequence[Transition]) -> None:
        if not transitions:
            return
        self.transitions += len(transitions)
        try:
            self.store.save(transitions, self.book)
        except Exception as exc:  # a locked or full disk must not silence the alarm itself
            self.store_errors += 1
            log.error(
                "alarm store: cannot save %d transitions (%r); announcing them anyway",
                len(transitions),
                exc,
            )
        for i, tr in enumerate(transitions):
            alarm = tr.alarm
            text_zh, text_en = self.texts(alarm)
            # Transitions of one instant (cleared and closed) must not overwrite each other
            # in InfluxDB: same series, so a nanosecond apart.
            self.write_line(self.line(tr, text_zh, text_en, i))
            level = logging.WARNING if tr.what in ("raised", "escalated") else logging.INFO
            log.log(
                level, "alarm %s %s [%s] %s | %s", alarm.id, tr.what, alarm.grade, text_zh, text_en
            )
            if self.publish is not None:
                topic = f"{self.prefix}/{alarm.id}"
                if alarm.state == "closed":
                    self.publish(topic, "", True)  # closed: the retained message goes away
                else:
                    self.publish(
                        topic,
                        json.dumps(self.state_json(alarm, text_zh, text_en), ensure_ascii=False),
                        True,
                    )

    def republish(self) -> None:
        """Every open alarm's retained topic again (after the broker was away)."""
        if self.publish is None:
            return
        for alarm in self.book.open_alarms():
            text_zh, text_en = self.texts(alarm)
            payload = json.dumps(self.state_json(alarm, text_zh, text_en), ensure_ascii=False)
            self.publish(f"{self.prefix}/{alarm.id}", payload, True)

    def texts(self, alarm: Alarm) -> tuple[str, str]:
        """(Chinese, English), through rules.texts like `guanjia alarms`."""
        return self.alarm_texts.render(alarm)

    def line(self, tr: Transition, text_zh: str, text_en: str, index: int = 0) -> str:
        alarm = tr.alarm
        tags = {
            "site": self.site_id,
            "kind": alarm.kind,
            "grade": alarm.grade,
            "rule": alarm.rule,
            "subject": alarm.subject,
        }
        device = self.devices.get(alarm.subject.split(":")[0])
        if device is not None:
            tags.update(
                {k: v for k, v in device.tags.items() if k in ("building", "floor", "zone")}
            )
        fields: dict[str, object] = {
            "alarm_id": alarm.id,
            "transition": tr.what,
            "state": alarm.state,
            "text_zh": text_zh,
            "text_en": text_en,
            "by": tr.by,
        }
        if isinstance(alarm.value, int | float) and not isinstance(alarm.value, bool):
            fields["value"] = float(alarm.value)
        body = ",".join(f"{k}={format_field(v)}" for k, v in fields.items())  # type: ignore[arg-type]
        return f"{series_prefix('alarm', tags)} {body} {int(tr.t * 1e9) + index}"

    @staticmethod
    def state_json(alarm: Alarm, text_zh: str, text_en: str) -> dict[str, object]:
        return {
            "id": alarm.id,
            "kind": alarm.kind,
            "grade": alarm.grade,
            "state": alarm.state,
            "subject": alarm.subject,
            "rule": alarm.rule,
            "value": alarm.value,
            "limit": alarm.limit,
            "raised_at": alarm.raised_at,
            "acked_by": alarm.acked_by,
            "text_zh": text_zh,
            "text_en": text_en,
        }
