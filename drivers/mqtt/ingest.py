"""From an MQTT message to Samples: route by topic, decode once, map every claiming device.

Runs on the MQTT client's network thread, so it must be cheap and must never raise: a bad
payload is counted per topic and reason, logged once, and ingest goes on. Every map keyed by
something a publisher chooses (topics, ids) is bounded: anyone on the broker can invent topics.

A reading carries the device's own time where the profile says where it is (`timestamp`), and
the delay to its arrival as the field `arrival_lag_s`; a time too far from the arrival (a clock
never set, a wrong zone) is not trusted: the arrival time is used and the device counted. QoS 1
delivers at least once, so a message may come twice; where the device numbers its messages
(`event_id`) a copy already seen is dropped and counted.

A retained message is what the broker replays to a new subscription (every (re)connect
subscribes again): on a state mapping it is the latest state and is taken, on an `event: true`
mapping it is an old event told again and is dropped and counted, so an alarm is not raised
twice. Live messages reach an established subscription without the flag (MQTT 3.1.1 3.3.1.3;
MQTT 5 without retain-as-published, as the gateway subscribes).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import tzinfo
from zoneinfo import ZoneInfo

from paho.mqtt.client import topic_matches_sub

from core.once import ProblemCounter
from core.types import Sample
from drivers.mqtt.mapping import Handler, availability_of, compile_profile, decode_payload
from drivers.mqtt.mapping import substitute as fill
from drivers.mqtt.profile import MqttProfile

log = logging.getLogger("guanjia.mqtt")

AVAILABLE = "available"  # the point that carries a device's availability
ARRIVAL_LAG = "arrival_lag_s"  # arrival time minus the device's own time, where it sends one
_UNDECODABLE = object()
# A device time this far ahead of the arrival, or this far behind it, is a clock not to trust.
# Behind: the broker keeps a session's messages for a week (BrokerSettings.session_expiry).
MAX_AHEAD_NS = 5 * 60 * 1_000_000_000
MAX_BEHIND_NS = 7 * 86400 * 1_000_000_000
OTHER = ProblemCounter.OVERFLOW  # where problem keys past the bound are counted


class RecentIds:
    """The last `size` ids seen, as a set with the oldest forgotten first."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._ids: dict[Hashable, None] = {}

    def __contains__(self, key: Hashable) -> bool:
        return key in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, key: Hashable) -> None:
        self._ids[key] = None
        if len(self._ids) > self.size:
            del self._ids[next(iter(self._ids))]


@dataclass(frozen=True, slots=True)
class MqttDevice:
    """An MQTT device as the site file describes it."""

    id: str
    profile: MqttProfile
    broker: str
    variables: dict[str, str]


@dataclass(frozen=True, slots=True)
class AvailabilityHandler:
    device: str
    topic: str
    online: tuple[str, ...]
    offline: tuple[str, ...]


@dataclass
class DeviceState:
    """What ingest knows about a device's health."""

    online: bool | None = None  # None: not known (yet, or ever: see `tracked`)
    last_message: float = 0.0  # monotonic
    heartbeat: float | None = None
    messages: int = 0
    # False for a device with neither an availability topic nor a heartbeat (an access
    # controller speaks only when something happens): it is never judged offline.
    tracked: bool = True

    @property
    def up(self) -> bool:
        """Counts as online in health: online, or never judged at all."""
        return bool(self.online) or not self.tracked


@dataclass
class IngestStats:
    messages: int = 0
    samples: int = 0
    unclaimed: int = 0  # no profile subscribes to the topic
    unmatched: int = 0  # a profile does, but no mapping's `match` accepted the message
    rejected: int = 0
    duplicates: int = 0  # a message whose event id was seen already (a QoS 1 redelivery)
    clock_refused: int = 0  # a device time too far from the arrival: arrival time used
    retained_events: int = 0  # retained messages on event mappings: old events, dropped
    # Keys come from topics anyone may publish on: bounded, folded into OTHER past the bound.
    problems: ProblemCounter = field(default_factory=lambda: ProblemCounter(log))

    @property
    def folded(self) -> int:
        """Problems counted under OTHER because there were too many different ones."""
        return self.problems.counts.get(OTHER, 0)


class Router:
    """Topic -> handlers; exact topics by dict, wildcard filters matched once per topic."""

    def __init__(self, handlers: Iterable[Handler | AvailabilityHandler]) -> None:
        self.exact: dict[str, list[Handler | AvailabilityHandler]] = {}
        self.wild: list[Handler | AvailabilityHandler] = []
        for h in handlers:
            if "+" in h.topic or "#" in h.topic:
                self.wild.append(h)
            else:
                self.exact.setdefault(h.topic, []).append(h)
        self._cache: dict[str, list[Handler | AvailabilityHandler]] = {}

    def filters(self) -> list[str]:
        return sorted({*self.exact, *(h.topic for h in self.wild)})

    def route(self, topic: str) -> list[Handler | AvailabilityHandler]:
        found = self.exact.get(topic)
        if not self.wild:
            return found or []
        cached = self._cache.get(topic)
        if cached is not None:
            return cached
        result = list(found or []) + [h for h in self.wild if topic_matches_sub(h.topic, topic)]
        if len(self._cache) > 10_000:  # topics with ids in them must not grow it forever
            self._cache.clear()
        self._cache[topic] = result
        return result


class Ingest:
    def __init__(
        self,
        devices: Sequence[MqttDevice],
        max_payload: int = 256 * 1024,
        *,
        timezone: str | tzinfo = "Asia/Shanghai",
        max_problem_keys: int = 1000,
        recent_ids: int = 1024,
    ) -> None:
        self.max_payload = max_payload
        self.local = ZoneInfo(timezone) if isinstance(timezone, str) else timezone
        self.stats = IngestStats(problems=ProblemCounter(log, max_problem_keys))
        self.devices = {d.id: d for d in devices}
        self.state: dict[str, DeviceState] = {}
        # Per device, the ids of its recent messages: one per configured device, each bounded.
        self.seen: dict[str, RecentIds] = {d.id: RecentIds(recent_ids) for d in devices}
        handlers: list[Handler | AvailabilityHandler] = []
        for d in devices:
            handlers.extend(compile_profile(d.id, d.profile, d.variables))
            avail = d.profile.availability
            if avail.topic:
                handlers.append(
                    AvailabilityHandler(
                        d.id,
                        fill(avail.topic, d.variables),
                        tuple(avail.online),
                        tuple(avail.offline),
                    )
                )
            self.state[d.id] = DeviceState(
                heartbeat=avail.heartbeat,
                tracked=bool(avail.topic) or avail.heartbeat is not None,
            )
        self.router = Router(handlers)
        self._started = time.monotonic()
        self._lock = threading.Lock()

    def _problem(self, topic: str, reason: str, detail: str) -> None:
        self.stats.rejected += 1
        self.stats.problems.report(f"{topic}:{reason}", f"MQTT {topic}: {detail}")

    def on_message(self, topic: str, payload: bytes, retained: bool = False) -> list[Sample]:
        """Samples from one message; never raises. Runs on the MQTT network thread; the lock
        keeps the event loop's heartbeat check from judging a device mid-message. `retained`:
        the message's retain flag (a replay by the broker on subscribe)."""
        with self._lock:
            return self._on_message(topic, payload, retained)

    def _on_message(self, topic: str, payload: bytes, retained: bool) -> list[Sample]:
        self.stats.messages += 1
        handlers = self.router.route(topic)
        if not handlers:
            self.stats.unclaimed += 1
            self.stats.problems.report(
                f"{topic}:unclaimed", f"MQTT {topic}: no device profile claims this topic"
            )
            return []
        if len(payload) > self.max_payload:
            self._problem(
                topic,
                "too_large",
                f"payload of {len(payload)} bytes is over the limit of {self.max_payload}; dropped",
            )
            return []
        ts = time.time_ns()
        now = time.monotonic()
        out: list[Sample] = []
        docs: dict[bool, object] = {}
        mapped = 0
        # A mapping whose `match` took the message but found none of its (optional) points:
        # a partial document for another part of the device (a Shelly's NotifyStatus of
        # another channel), not a message nobody maps.
        answered = False
        duplicates = 0
        replayed = 0
        # Ids first seen in this very message: several mappings of one device may read it.
        # Made when a mapping has an event id: most have none, and this runs per message.
        fresh: set[tuple[str, Hashable]] | None = None
        for h in handlers:
            state = self.state[h.device]
            if isinstance(h, AvailabilityHandler):
                state.messages += 1
                state.last_message = now
                online = availability_of(payload, list(h.online), list(h.offline))
                if online is None:
                    self._problem(topic, "availability", f"unknown availability {payload[:40]!r}")
                    continue
                out.extend(self.set_online(h.device, online, ts))
                continue
            if retained and h.event:
                replayed += 1
                continue
            if h.text not in docs:
                try:
                    docs[h.text] = decode_payload(payload, h.text)
                except ValueError as exc:
                    kind = "not_text" if h.text else "not_json"
                    self._problem(topic, kind, f"cannot decode the payload: {exc}")
                    docs[h.text] = _UNDECODABLE
            doc = docs[h.text]
            if doc is _UNDECODABLE:
                continue
            mapped += 1
            alive = False
            # Some bridges batch several events into one JSON list: each is a message.
            items = doc if isinstance(doc, list) and h.match else (doc,)
            for item in items:
                if h.match:
                    if not h.matches(item):
                        continue
                    answered = True
                key = h.identity(item) if h.event_id else None
                if key is not None:
                    seen = self.seen[h.device]
                    if fresh is None:
                        fresh = set()
                    if key in seen and (h.device, key) not in fresh:
                        duplicates += 1
                        continue
                    seen.add(key)
                    fresh.add((h.device, key))
                values, bad = h.read(item)
                for name, reason in bad.items():
                    self.stats.problems.report(
                        f"{topic}:{name}:{reason}", f"MQTT {topic}: {h.device}.{name} is {reason}"
                    )
                if values or bad:
                    # Without a time in the mapping, the arrival time (and no call per message).
                    stamp = self._device_time(h, item, topic, ts) if h.time_path else ts
                    if stamp != ts and values:
                        values[ARRIVAL_LAG] = round((ts - stamp) / 1e9, 3)
                    out.append(Sample(h.device, stamp, values, bad))
                    # Only messages meant for this device count as its traffic.
                    state.messages += 1
                    state.last_message = now
                alive = alive or bool(values)
            if state.online is not True and alive and state.heartbeat is not None:
                out.extend(self.set_online(h.device, True, ts))
        if replayed:
            self.stats.retained_events += 1
            self.stats.problems.report(
                f"{topic}:retained_event",
                f"MQTT {topic}: a retained event, replayed by the broker, was dropped (the "
                "publisher sets retain on one-shot events; counted as "
                "mqtt_retained_events_dropped)",
                logging.INFO,
            )
        if duplicates:
            self.stats.duplicates += 1
        elif mapped and not out and not answered:
            # Every mapping filtered it out: another camera's event, or an event type no
            # profile maps. Counted, so a typo in a match shows up in the health view.
            self.stats.unmatched += 1
            self.stats.problems.report(
                f"{topic}:unmatched", f"MQTT {topic}: a message no mapping matched", logging.INFO
            )
        self.stats.samples += len(out)
        return out

    def _device_time(self, h: Handler, item: object, topic: str, arrival: int) -> int:
        """The message's own time where the profile names it and it is plausible, else the
        arrival time."""
        try:
            stamp = h.device_time(item, self.local)
        except (ValueError, OverflowError, TypeError) as exc:
            self.stats.problems.report(
                f"{topic}:time:bad",
                f"MQTT {topic}: {h.device} sent a time that cannot be read ({exc}); "
                "the arrival time is used",
            )
            return arrival
        if stamp is None:
            return arrival
        lag = arrival - stamp
        if -MAX_AHEAD_NS <= lag <= MAX_BEHIND_NS:
            if lag > MAX_AHEAD_NS:
                # Kept: a broker's backlog after an outage arrives this late. A clock set to
                # the wrong zone looks the same, hence the hint (arrival_lag_s tells which).
                self.stats.problems.report(
                    f"{h.device}:late",
                    f"MQTT {topic}: {h.device}'s messages arrive {lag / 1e9:.0f} s after their "
                    "own time: a backlog after an outage, or its clock or time zone is off; "
                    "readings keep the device's time (see the field arrival_lag_s)",
                    logging.INFO,
                )
            return stamp
        self.stats.clock_refused += 1
        ahead = "ahead of" if lag < 0 else "behind"
        self.stats.problems.report(
            f"{h.device}:clock",
            f"MQTT {topic}: {h.device}'s clock is {abs(lag) / 1e9:.0f} s {ahead} the gateway's; "
            "its readings keep their arrival time until it is set right (NTP, time zone)",
        )
        return arrival

    def set_online(self, device: str, online: bool, ts: int) -> list[Sample]:
        """An availability change, as a reading of the `available` point (none if no change)."""
        state = self.state[device]
        if state.online is online:
            return []
        state.online = online
        log.log(
            logging.INFO if online else logging.WARNING,
            "%s is %s",
            device,
            "online" if online else "offline",
        )
        return [Sample(device, ts, {AVAILABLE: online})]

    def check_heartbeats(self) -> list[Sample]:
        """Devices silent past their heartbeat go offline (call this now and then)."""
        with self._lock:
            return self._check_heartbeats()

    def _check_heartbeats(self) -> list[Sample]:
        now = time.monotonic()
        ts = time.time_ns()
        out: list[Sample] = []
        for device, state in self.state.items():
            if state.heartbeat is None or state.online is False:
                continue
            silent_since = state.last_message or self._started
            if now - silent_since > state.heartbeat:
                out.extend(self.set_online(device, False, ts))
        return out
