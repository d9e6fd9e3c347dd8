"""From one part of an event stream to the events it carries, as plain dictionaries that the
profile's mappings read with the same paths as the MQTT driver's (`eventType`,
`AccessControllerEvent.serialNo`, `data.UTC`).

Hikvision (ISAPI alertStream): a part is XML `<EventNotificationAlert>` (cameras, NVRs) or JSON
(access controllers and face terminals); some firmwares put several alerts in one part, one
after the other (facts: hikvision_isapi.yaml, `batching`). XML elements become keys with their
text as the value (every value a string, as an XML-to-JSON bridge gives them), nested elements
become nested dictionaries, repeated ones lists; namespaces are dropped (the two ISAPI
namespaces name the same fields).

Dahua (eventManager.cgi attach): a part is text: `Heartbeat`, or one or more
`Code=VideoMotion;action=Start;index=0` entries, each optionally followed by `;data={...}` (a
JSON object that may span lines and hold semicolons of its own). An entry becomes
{"Code": ..., "action": ..., "index": 0, "channel": "1", "data": {...}}: `index` is the
device's 0-based channel (or door, alarm input); `channel` is the 1-based channel number the
site file's channel filter and the stored `channel_id` use, as Hikvision numbers them.
A bare `Heartbeat` becomes {"Code": "Heartbeat"}.

A body that is none of these raises DecodeError (counted by the caller, the stream goes on).

Sources (the shapes; no code taken from them):
- Hikvision: shared/facts/devices/hikvision_isapi.yaml (pyHik, node-red-contrib-hikvision-
  ultimate: the alertStream framing, the XML fields and both namespaces, several alerts in one
  part, the access-controller JSON).
- Dahua: rroller/dahua tests/dahua/test_event_stream.py and test_event_header_shape.py (parts
  with and without Content-Length, a varying number of header lines, `Heartbeat`, several
  entries in one part, data JSON spanning lines and holding semicolons); SaWey/home-assistant-
  dahua-event README.md (the attach URL and the HTTP API's event codes); elad-bar/DahuaVTO2MQTT
  MQTTEvents.MD (the data of VTO events: AccessControl, CallNoAnswered, AlarmLocal, UTC).
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from typing import Any

Event = dict[str, Any]

_ALERT_START = re.compile(rb"<(?:[A-Za-z_][\w.-]*:)?EventNotificationAlert[\s>/]")
_ALERT_END = re.compile(rb"</(?:[A-Za-z_][\w.-]*:)?EventNotificationAlert\s*>")
_DAHUA_ENTRY = re.compile(r"^[ \t]*Code=", re.M)
# A camera's alert as cameras send it: text elements under the root and nothing else (no
# entities, comments, attributes or nesting below it, no characters XML refuses, no CR, which
# XML would turn into LF). Such an alert is read with two regular expressions; anything else
# goes to ElementTree, which is too slow for the 20 alerts a second of bench_streams. Measured
# on a camera's VMD alert: 16 µs through ElementTree and _element, 8 µs here; in the driver
# process, where 1,000 streams take turns and the CPU's caches are cold, about 90 and 35 µs.
_NAME = r"[A-Za-z_][A-Za-z0-9_.-]*"
_TEXT = r"[^<&\x00-\x08\x0b-\x1f\ufffe\uffff]*"
_SPACE = r"[ \t\r\n]*"
_ATTRIBUTE = rf'[ \t\r\n]+(?:version|xmlns){_SPACE}={_SPACE}"[^"<&\x00-\x08\x0b-\x1f\ufffe\uffff]*"'
_FLAT_ALERT = re.compile(
    rf"<EventNotificationAlert((?:{_ATTRIBUTE})*){_SPACE}>"
    rf"((?:{_SPACE}<({_NAME})>{_TEXT}</\3>)+){_SPACE}</EventNotificationAlert{_SPACE}>"
)
_FLAT_ELEMENT = re.compile(rf"<({_NAME})>({_TEXT})</\1>")
_json = json.JSONDecoder()


class DecodeError(ValueError):
    """A part that is not what the stream's vendor sends."""


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _element(element: ET.Element) -> Any:
    children = list(element)
    if not children:
        return (element.text or "").strip()
    out: dict[str, Any] = {}
    for child in children:
        _add(out, _local(child.tag), _element(child))
    return out


def _add(out: dict[str, Any], key: str, value: Any) -> None:
    """A repeated element becomes a list of its values, in document order."""
    if key in out:
        previous = out[key]
        if isinstance(previous, list):
            previous.append(value)
        else:
            out[key] = [previous, value]
    else:
        out[key] = value


def _json_values(text: str) -> list[Any]:
    """Every JSON value in `text`, one after another (a part may hold several objects)."""
    values: list[Any] = []
    at = 0
    end = len(text)
    while True:
        while at < end and text[at] in " \t\r\n,":
            at += 1
        if at >= end:
            return values
        try:
            value, at = _json.raw_decode(text, at)
        except (ValueError, RecursionError) as exc:
            raise DecodeError(f"not JSON: {exc}") from None
        values.append(value)


def hikvision(body: bytes) -> list[Event]:
    """The alerts of one alertStream part; [] for an empty one (a keep-alive)."""
    text = body.strip()
    if not text:
        return []
    if text[:1] == b"<":
        return _hikvision_xml(text)
    if text[:1] in (b"{", b"["):
        try:
            decoded = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DecodeError(f"not UTF-8 at byte {exc.start}") from None
        events: list[Event] = []
        for value in _json_values(decoded):
            items = value if isinstance(value, list) else [value]
            for item in items:
                if not isinstance(item, dict):
                    raise DecodeError("a JSON part that is not an object")
                inner = item.get("EventNotificationAlert")
                events.append(inner if isinstance(inner, dict) else item)
        return events
    raise DecodeError(f"neither XML nor JSON: {text[:40]!r}")


def _hikvision_xml(text: bytes) -> list[Event]:
    events: list[Event] = []
    at = 0
    while True:
        start = _ALERT_START.search(text, at)
        if start is None:
            break
        end = _ALERT_END.search(text, start.end())
        if end is None:
            raise DecodeError("an EventNotificationAlert without its end")
        alert = text[start.start() : end.end()]
        flat = _flat_alert(alert)
        if flat is not None:
            events.append(flat)
        else:
            try:
                root = ET.fromstring(alert)
            except ET.ParseError as exc:
                raise DecodeError(f"not XML: {exc}") from None
            value = _element(root)
            events.append(value if isinstance(value, dict) else {})
        at = end.end()
    if not events:
        raise DecodeError("XML without an EventNotificationAlert")
    return events


def _flat_alert(alert: bytes) -> Event | None:
    """The alert as _element reads it, if it is flat (see _FLAT_ALERT); None if it is not."""
    try:
        xml = alert.decode("utf-8")
    except UnicodeDecodeError:
        return None
    match = _FLAT_ALERT.fullmatch(xml)
    if match is None or "]]>" in xml:
        return None
    attributes = match[1]
    if attributes.count("version") > 1 or attributes.count("xmlns") > 1:
        return None  # a repeated attribute, which XML refuses (or a value that names one)
    out: dict[str, Any] = {}
    for key, text in _FLAT_ELEMENT.findall(match[2]):
        _add(out, key, text.strip())
    return out


def dahua(body: bytes) -> list[Event]:
    """The events of one eventManager part; [] for an empty one."""
    try:
        text = body.decode("utf-8").strip()
    except UnicodeDecodeError:
        text = body.decode("latin-1").strip()  # old firmwares send GBK names in `data`
    if not text:
        return []
    if text == "Heartbeat":
        return [{"Code": "Heartbeat"}]
    starts = [m.end() - len("Code=") for m in _DAHUA_ENTRY.finditer(text)]
    if not starts:
        raise DecodeError(f"no Code= in {text[:40]!r}")
    events: list[Event] = []
    for i, start in enumerate(starts):
        end = starts[i + 1] if i + 1 < len(starts) else len(text)
        events.append(_dahua_entry(text[start:end]))
    return events


def _dahua_entry(entry: str) -> Event:
    head, marker, data = entry.partition(";data=")
    event: Event = {}
    for field in head.strip().rstrip(";").split(";"):
        key, eq, value = field.partition("=")
        if eq:
            event[key.strip()] = value.strip()
    if "Code" not in event:
        raise DecodeError(f"no Code in {entry[:40]!r}")
    index = event.get("index")
    if isinstance(index, str) and index.lstrip("-").isdigit():
        event["index"] = int(index)
        event["channel"] = str(int(index) + 1)
    if marker:
        try:
            event["data"], _ = _json.raw_decode(data.strip())
        except (ValueError, RecursionError) as exc:
            raise DecodeError(f"{event['Code']}: data is not JSON: {exc}") from None
    return event
