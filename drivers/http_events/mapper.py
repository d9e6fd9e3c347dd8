"""From a decoded event to one device's Samples: the profile's mappings (compiled with the
MQTT driver's mapping code, so a point means the same on both drivers), the site's channel
filter, the device's own time beside the arrival time, and the ids of recent events.

An event id (Hikvision serialNo with dateTime, Dahua RecNo with UTC, a camera alert's type,
state, channel, time and activePostCount) seen before is dropped and counted: the memory lives
as long as the driver, not the connection, so an event a device sends again after a reconnect
is not counted twice.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import tzinfo
from typing import Any

from core.once import ProblemCounter
from core.types import Sample
from drivers.http_events.profile import EventMapping, HttpEventsProfile
from drivers.mqtt.ingest import ARRIVAL_LAG, MAX_AHEAD_NS, MAX_BEHIND_NS, RecentIds
from drivers.mqtt.mapping import CompiledPoint, Handler, extract, parse_path, same
from drivers.mqtt.profile import JsonPoint

log = logging.getLogger("guanjia.http_events")

_MISSING = object()
RECENT_IDS = 1024
_DECIMAL = re.compile(r"[+-]?[0-9]+(?:\.[0-9]+)?")


@dataclass(frozen=True, slots=True)
class TextNumberPoint(CompiledPoint):
    """A point that also reads a number written as text: XML carries no types, so a
    Hikvision alert's `<speed>52</speed>` decodes to "52" (decode.py keeps every XML value a
    string: a plate such as 0123 must not lose its zero). Anything but a plain decimal
    stays text and is refused as the MQTT driver refuses it."""

    def convert(self, raw: Any) -> float | int | bool | str:
        if isinstance(raw, str) and self.map is None and self.type in ("float", "int"):
            text = raw.strip()
            if _DECIMAL.fullmatch(text) and len(text) < 40:
                raw = float(text) if "." in text else int(text)
        return CompiledPoint.convert(self, raw)


def _compile_point(point: JsonPoint) -> CompiledPoint:
    """Numbers may come as text (XML); other points keep the plain, faster conversion."""
    if point.type in ("float", "int") and point.map is None:
        return TextNumberPoint.of(point)
    return CompiledPoint.of(point)


def compile_mapping(device: str, profile: HttpEventsProfile, mapping: EventMapping) -> Handler:
    ids = mapping.event_id if mapping.event_id is not None else profile.event_id
    time = mapping.timestamp or profile.timestamp
    return Handler(
        device=device,
        topic="",
        text=False,
        event=mapping.event,
        match=tuple((parse_path(path), value) for path, value in mapping.match.items()),
        points=tuple(_compile_point(p) for p in mapping.points),
        event_id=tuple(parse_path(p) for p in ids),
        time_path=parse_path(time.path) if time is not None else None,
        time_format=time.format if time is not None else "iso8601",
    )


def _route_key(value: Any) -> Hashable:
    """Match values as the index keeps them: 27 and "27" alike (mapping.same), true apart."""
    if isinstance(value, bool) or value is None:
        return (value,)
    return str(value)


@dataclass
class MapperStats:
    events: int = 0  # events offered to this device (keep-alives excluded)
    samples: int = 0
    duplicates: int = 0  # events whose id was seen before
    unmatched: int = 0  # events no mapping took
    filtered: int = 0  # events of a channel the site file leaves out
    bad_values: int = 0  # points read as bad (wrong type, unmapped value, ...)
    clock_refused: int = 0  # device times too far from the arrival: arrival time used
    problems: ProblemCounter = field(default_factory=lambda: ProblemCounter(log))


class EventMapper:
    """One device's mappings, channel filter and recent event ids."""

    def __init__(
        self,
        device: str,
        profile: HttpEventsProfile,
        local: tzinfo,
        *,
        channels: Iterable[int] | None = None,
        points: Sequence[str] | None = None,
        stats: MapperStats | None = None,
    ) -> None:
        self.device = device
        self.profile = profile
        self.local = local
        self.channels = frozenset(channels) if channels is not None else None
        self.points = frozenset(points) if points is not None else None
        self.stats = stats if stats is not None else MapperStats()
        self.seen = RecentIds(RECENT_IDS)
        self.handlers = [compile_mapping(device, profile, m) for m in profile.events]
        self.channel_paths = [parse_path(p) for p in profile.channel]
        keepalive = profile.keepalive
        self.keepalive = (
            tuple((parse_path(k), v) for k, v in keepalive.match.items()) if keepalive else ()
        )
        # Most profiles match every event on one field first (eventType, Code): an index on
        # it keeps the work per event small however many mappings there are.
        first = self.handlers[0].match[0][0] if self.handlers[0].match else None
        self.route = (
            first if all(h.match and h.match[0][0] == first for h in self.handlers) else None
        )
        self.index: dict[Hashable, list[Handler]] = {}
        if self.route is not None:
            for h in self.handlers:
                self.index.setdefault(_route_key(h.match[0][1]), []).append(h)

    def is_keepalive(self, event: Any) -> bool:
        return bool(self.keepalive) and all(
            same(extract(event, path), want) for path, want in self.keepalive
        )

    def channel_of(self, event: Any) -> int | None:
        for path in self.channel_paths:
            raw = extract(event, path)
            if isinstance(raw, int | str) and not isinstance(raw, bool):
                text = str(raw).strip()
                if text.isdigit():
                    return int(text)
        return None

    def candidates(self, event: Any) -> list[Handler]:
        if self.route is None:
            return self.handlers
        return self.index.get(_route_key(extract(event, self.route)), [])

    def samples(self, event: Any, arrival: int) -> list[Sample]:
        """The Samples one event gives this device (none for another channel's event, one
        seen before, or one no mapping takes)."""
        stats = self.stats
        stats.events += 1
        if self.channels is not None:
            channel = self.channel_of(event)
            if channel is not None and channel not in self.channels:
                stats.filtered += 1
                return []
        out: list[Sample] = []
        matched = False
        fresh: list[Hashable] = []
        for h in self.candidates(event):
            if not h.matches(event):
                continue
            matched = True
            key = h.identity(event) if h.event_id else None
            if key is not None:
                if key in self.seen and key not in fresh:
                    stats.duplicates += 1
                    return []
                fresh.append(key)
            values, bad = h.read(event)
            for name, reason in bad.items():
                stats.bad_values += 1
                stats.problems.report(
                    f"{self.device}:{name}:{reason}", f"{self.device}: {name} is {reason}"
                )
            if self.points is not None:
                values = {k: v for k, v in values.items() if k in self.points}
                bad = {k: v for k, v in bad.items() if k in self.points}
            if not values and not bad:
                continue
            stamp = self._device_time(h, event, arrival) if h.time_path else arrival
            if stamp != arrival and values:
                values[ARRIVAL_LAG] = round((arrival - stamp) / 1e9, 3)
            out.append(Sample(self.device, stamp, values, bad))
        for seen_key in fresh:
            self.seen.add(seen_key)
        if not matched:
            stats.unmatched += 1
            what = extract(event, self.route) if self.route is not None else "?"
            stats.problems.report(
                f"{self.device}:unmatched:{str(what)[:40]}",
                f"{self.device}: an event no mapping of {self.profile.name} takes "
                f"({str(what)[:40]}); counted as unmatched",
                logging.INFO,
            )
        stats.samples += len(out)
        return out

    def _device_time(self, h: Handler, event: Any, arrival: int) -> int:
        """The event's own time where the profile names it and it is plausible, else the
        arrival time (the same limits as the MQTT driver's)."""
        try:
            stamp = h.device_time(event, self.local)
        except (ValueError, OverflowError, TypeError) as exc:
            self.stats.problems.report(
                f"{self.device}:time:bad",
                f"{self.device} sent a time that cannot be read ({exc}); the arrival time is used",
            )
            return arrival
        if stamp is None:
            return arrival
        lag = arrival - stamp
        if -MAX_AHEAD_NS <= lag <= MAX_BEHIND_NS:
            if lag > MAX_AHEAD_NS:
                self.stats.problems.report(
                    f"{self.device}:late",
                    f"{self.device}'s events arrive {lag / 1e9:.0f} s after their own time: its "
                    "clock or time zone is off; readings keep the device's time (see the field "
                    "arrival_lag_s)",
                    logging.INFO,
                )
            return stamp
        self.stats.clock_refused += 1
        ahead = "ahead of" if lag < 0 else "behind"
        self.stats.problems.report(
            f"{self.device}:clock",
            f"{self.device}'s clock is {abs(lag) / 1e9:.0f} s {ahead} the gateway's; its events "
            "keep their arrival time until it is set right (NTP, time zone)",
        )
        return arrival
