"""Profiles compiled against a device's variables: concrete topics and fast value extraction."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, tzinfo
from math import isfinite
from typing import Any

from drivers.mqtt.profile import DeviceTime, JsonPoint, JsonScalar, MessageMapping, MqttProfile

_MISSING: Any = object()
_STEP = re.compile(r"([^.\[\]]+)|\[(\d+)\]")

Path = tuple[str | int, ...]


def parse_path(path: str) -> Path:
    """`a.b[0].c` -> ("a", "b", 0, "c")."""
    steps: list[str | int] = []
    for key, index in _STEP.findall(path):
        steps.append(int(index) if index else key)
    return tuple(steps)


def extract(obj: Any, path: Path) -> Any:
    """The value at path, or _MISSING."""
    for step in path:
        try:
            obj = obj[step]
        except (KeyError, IndexError, TypeError):
            return _MISSING
    return obj


def substitute(text: str, variables: Mapping[str, str]) -> str:
    for key, value in variables.items():
        text = text.replace("{" + key + "}", value)
    return text


def _key(value: Any) -> tuple[bool, Any]:
    return (isinstance(value, bool), value)


def same(got: Any, want: JsonScalar) -> bool:
    """A match value equals the message's: 27 matches 27 and "27" (XML bridges send text);
    true matches only true, never 1."""
    if isinstance(got, bool) or isinstance(want, bool):
        return got is want
    if got == want:
        return True
    return isinstance(got, str) and not isinstance(want, str) and got == str(want)


class BadValue(ValueError):
    """A value of the wrong type or outside the map; ``reason`` is the counter key."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# Ints this large or larger are left to CompiledPoint.convert (float() of them may overflow).
_HUGE = 1 << 1000


@dataclass(frozen=True, slots=True)
class CompiledPoint:
    name: str
    path: Path | None
    const: JsonScalar
    type: str
    map: Mapping[tuple[bool, JsonScalar], JsonScalar] | None
    scale: float
    offset: float
    lo: float
    hi: float
    optional: bool
    # For Handler.read's fast path (see there): the key when the path is one object key, and
    # the type when the value is stored as it comes (no map, no scale, no offset), else "".
    key: str | None = None
    plain: str = ""

    @classmethod
    def of(cls, point: JsonPoint) -> CompiledPoint:
        path = parse_path(point.path) if point.path is not None else None
        as_is = point.map is None and point.scale == 1 and not point.offset
        first = path[0] if path is not None and len(path) == 1 else None
        return cls(
            name=point.name,
            path=path,
            const=point.value,
            type=point.type,
            # Keyed with their bool-ness: in a plain dict 1 and True are the same key.
            map={_key(k): v for k, v in point.map.items()} if point.map is not None else None,
            scale=point.scale,
            offset=point.offset,
            lo=point.valid.min if point.valid else -math.inf,
            hi=point.valid.max if point.valid else math.inf,
            optional=point.optional,
            key=first if isinstance(first, str) else None,
            plain=point.type if as_is and point.type in ("float", "int") else "",
        )

    def convert(self, raw: Any) -> float | int | bool | str:
        """The stored value; BadValue (never anything else) when the raw one won't do."""
        try:
            return self._convert(raw)
        except (ValueError, OverflowError, TypeError) as exc:  # NaN to int, 1e400, ...
            if isinstance(exc, BadValue):
                raise
            raise BadValue("type") from None

    def _convert(self, raw: Any) -> float | int | bool | str:
        if self.map is not None:
            if isinstance(raw, dict | list) or _key(raw) not in self.map:
                raise BadValue("unmapped")
            raw = self.map[_key(raw)]
        kind = self.type
        if kind == "float":
            if isinstance(raw, bool) or not isinstance(raw, int | float):
                raise BadValue("type")
            value = raw * self.scale + self.offset if self.scale != 1 or self.offset else raw
            value = float(value)
            if not math.isfinite(value):
                raise BadValue("nan")
            if not self.lo <= value <= self.hi:
                raise BadValue("out_of_range")
            return value
        if kind == "int":
            if isinstance(raw, bool) or not isinstance(raw, int | float) or raw != int(raw):
                raise BadValue("type")
            number = int(raw)
            if not self.lo <= number <= self.hi:
                raise BadValue("out_of_range")
            return number
        if kind == "bool":
            if not isinstance(raw, bool):
                raise BadValue("type")
            return raw
        if isinstance(raw, dict | list) or raw is None:
            raise BadValue("type")
        return str(raw)


# `auto`: epoch seconds stay below this until the year 5138, epoch milliseconds pass it in 1973.
_MS_FROM = 1e11


def parse_device_time(raw: Any, fmt: str, local: tzinfo) -> int:
    """ns since the epoch from a device's time; ValueError when it is no time.

    ISO times without an offset are the site's local time (Tasmota's `Time`, Dahua's
    `LocaleTime`); old Tasmota firmware writes `2018.02.01 22:52:09`. `auto` tells epoch
    seconds from milliseconds by size and takes other text as ISO 8601."""
    if isinstance(raw, bool):
        raise ValueError("a boolean is no time")
    if fmt == "auto":
        if isinstance(raw, str):
            try:
                raw = float(raw) if len(raw) <= 32 else raw
            except ValueError:
                return parse_device_time(raw, "iso8601", local)
        if not isinstance(raw, int | float):
            raise ValueError("expected a number or an ISO 8601 text")
        fmt = "unix_ms" if abs(raw) >= _MS_FROM else "unix_s"
    if fmt == "iso8601":
        if not isinstance(raw, str) or len(raw) > 64:
            raise ValueError("expected an ISO 8601 text")
        text = raw.strip()
        if len(text) >= 10 and text[4] == "." and text[7] == ".":
            text = text[:10].replace(".", "-") + text[10:]
        when = datetime.fromisoformat(text)
        if when.tzinfo is None:
            when = when.replace(tzinfo=local)
        return int(when.timestamp() * 1_000_000) * 1000
    number = float(raw) if isinstance(raw, str) and len(raw) <= 32 else raw
    if not isinstance(number, int | float) or not math.isfinite(number):
        raise ValueError("expected a number")
    seconds = number / 1000 if fmt == "unix_ms" else number
    if not 0 < seconds < 1e11:
        raise ValueError("not a plausible time")
    return round(seconds * 1_000_000) * 1000


@dataclass(frozen=True, slots=True)
class Handler:
    """One device's mapping of one topic."""

    device: str
    topic: str  # concrete topic filter, may hold wildcards
    text: bool
    event: bool
    match: tuple[tuple[Path, JsonScalar], ...]
    points: tuple[CompiledPoint, ...]
    event_id: tuple[Path, ...] = ()
    time_path: Path | None = None
    time_format: str = "iso8601"

    def matches(self, doc: Any) -> bool:
        return all(same(extract(doc, path), want) for path, want in self.match)

    def identity(self, doc: Any) -> tuple[JsonScalar, ...] | None:
        """The message's id (values at the event_id paths), or None when it has none."""
        if not self.event_id:
            return None
        key = tuple(extract(doc, path) for path in self.event_id)
        if all(v is _MISSING for v in key):
            return None
        if any(isinstance(v, dict | list) for v in key):
            return None  # not an id: ignore rather than guess
        return tuple(None if v is _MISSING else v for v in key)

    def device_time(self, doc: Any, local: tzinfo) -> int | None:
        """The message's own time (ns), None when the mapping or the message has none;
        ValueError (or OverflowError, TypeError) when it is there and no time."""
        if self.time_path is None:
            return None
        raw = extract(doc, self.time_path)
        if raw is _MISSING or raw is None:
            return None
        return parse_device_time(raw, self.time_format, local)

    def read(self, doc: Any) -> tuple[dict[str, float | int | bool | str], dict[str, str]]:
        """Values and bad points from a decoded payload (a JSON document or the text).

        This runs on the MQTT network thread for every point of every message, so the common
        case is inlined: a top-level key of a JSON object, and a number stored as it comes
        and within range (for a six-point Zigbee2MQTT report: 0.7 instead of 1.9 µs). Anything
        else, every refusal included, takes CompiledPoint.convert: same values, same reasons."""
        values: dict[str, float | int | bool | str] = {}
        bad: dict[str, str] = {}
        obj = doc if type(doc) is dict else None
        for point in self.points:
            key = point.key
            if key is not None and obj is not None:
                raw = obj.get(key, _MISSING)
            elif point.path is None:
                raw = point.const if point.const is not None else doc
            else:
                raw = extract(doc, point.path)
            if raw is _MISSING:
                if not point.optional:
                    bad[point.name] = "missing"
                continue
            plain, kind = point.plain, type(raw)
            if plain == "float" and (kind is float or (kind is int and -_HUGE < raw < _HUGE)):
                value = float(raw)
                if point.lo <= value <= point.hi and isfinite(value):
                    values[point.name] = value
                    continue
            elif plain == "int" and kind is int and point.lo <= raw <= point.hi:
                values[point.name] = raw
                continue
            try:
                values[point.name] = point.convert(raw)
            except BadValue as exc:
                bad[point.name] = exc.reason
        return values, bad


def compile_mapping(
    device: str,
    mapping: MessageMapping,
    variables: Mapping[str, str],
    event_id: list[str] | None = None,
    timestamp: DeviceTime | None = None,
) -> Handler:
    """A mapping for one device; `event_id` and `timestamp` are the profile's defaults, used
    for JSON mappings that declare none of their own. Variables in paths are filled here, once,
    so a message costs the same as with a literal path."""
    text = mapping.format == "text"
    ids = mapping.event_id if mapping.event_id is not None else (event_id or [])
    time = mapping.timestamp or timestamp

    def path_of(path: str) -> Path:
        return parse_path(substitute(path, variables))

    points = []
    for p in mapping.points:
        if p.path is not None and "{" in p.path:
            p = p.model_copy(update={"path": substitute(p.path, variables)})
        points.append(CompiledPoint.of(p))
    return Handler(
        device=device,
        topic=substitute(mapping.topic, variables),
        text=text,
        event=mapping.event,
        match=tuple(
            (path_of(path), substitute(v, variables) if isinstance(v, str) else v)
            for path, v in mapping.match.items()
        ),
        points=tuple(points),
        event_id=() if text else tuple(path_of(p) for p in ids),
        time_path=path_of(time.path) if time is not None and not text else None,
        time_format=time.format if time is not None else "iso8601",
    )


def compile_profile(
    device: str, profile: MqttProfile, variables: Mapping[str, str]
) -> list[Handler]:
    return [
        compile_mapping(device, m, variables, profile.event_id, profile.timestamp)
        for m in profile.messages
    ]


# json.loads(bytes) guesses the encoding and matches leading and trailing whitespace with
# regular expressions, in Python, around its C scanner: on the MQTT network thread that costs
# as much again as the scanning (a 95-byte report: 1.75 µs, the scanner alone 0.85 µs). An
# object payload that json.loads would decode as UTF-8 (a "{" then a nonzero byte) and that
# ends where its document ends goes to the scanner directly; anything else, every error
# included, goes through json.loads, so results and error messages are json.loads's own.
# JSONDecoder.__init__ sets scan_once (the C scanner json.loads uses); typeshed omits it.
_scan: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


def _loads(payload: bytes) -> Any:
    if payload[:1] == b"{" and payload[1:2] not in (b"", b"\0"):
        try:
            text = payload.decode("utf-8", "surrogatepass")
            doc, end = _scan(text, 0)
        except (StopIteration, ValueError):  # not a document: json.loads says why
            pass
        else:
            if end == len(text):
                return doc
    return json.loads(payload)


def decode_payload(payload: bytes, text: bool) -> Any:
    """The payload as a JSON document (or text); raises ValueError when it is neither."""
    if text:
        return payload.decode("utf-8").strip()
    try:
        return _loads(payload)
    except RecursionError:  # nesting deeper than the parser goes: no device sends that
        raise ValueError("JSON nested too deeply") from None


def availability_of(payload: bytes, online: list[str], offline: list[str]) -> bool | None:
    """Availability from `online`/`offline` text or Zigbee2MQTT's {"state": "online"}."""
    text = payload.decode("utf-8", errors="replace").strip()
    if text.startswith("{"):
        try:
            text = str(json.loads(text).get("state", ""))
        except (ValueError, AttributeError, RecursionError):
            return None
    if text in online:
        return True
    if text in offline:
        return False
    return None
