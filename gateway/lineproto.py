"""InfluxDB line protocol for Samples: one line per device acquisition.

Encoding is hand-written because it is the hot path: `bench/bench_write.py` compares it with
influxdb-client's `Point` objects fed one at a time (the library's own batching API), and the
prefix of every device (measurement and escaped tags) is built once, not per value.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

from core.field_types import FieldType
from core.text import shorten
from core.types import Sample, Value
from gateway.messages import AlarmTransition, AuditRecord, ConsoleEvent
from rules.model import Record

# Line protocol has no escape for a newline: it becomes an (escaped) space.
_TAG_ESCAPES = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ ", "\n": r"\ ", "\r": r"\ "})
_MEASUREMENT_ESCAPES = str.maketrans({",": r"\,", " ": r"\ ", "\n": r"\ ", "\r": r"\ "})


def escape_tag(text: str) -> str:
    """Tag keys, tag values and field keys."""
    return text.replace("\\", "\\\\").translate(_TAG_ESCAPES)


def escape_measurement(text: str) -> str:
    return text.replace("\\", "\\\\").translate(_MEASUREMENT_ESCAPES)


def format_field(value: Value) -> str:
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return f"{value}i"
    if isinstance(value, float):
        return repr(value)
    text = value.replace("\\", "\\\\").replace('"', '\\"')
    # A raw line break would end the line: a newline or carriage return in text is escaped.
    return '"' + text.replace("\n", "\\n").replace("\r", "\\r") + '"'


def series_prefix(measurement: str, tags: Mapping[str, str]) -> str:
    """`measurement,tag=value,...` with tags sorted by key (what InfluxDB stores anyway)."""
    parts = [escape_measurement(measurement)]
    for key in sorted(tags):
        if tags[key] != "":
            parts.append(f"{escape_tag(key)}={escape_tag(tags[key])}")
    return ",".join(parts)


# -- the gateway's own measurements ---------------------------------------------------


def _number(value: Value | None) -> float | None:
    """A value as a float field, if it is one (bools as 0/1): one field type in InfluxDB."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        number = float(value)
        return number if math.isfinite(number) else None
    return None


def audit_line(
    site: str, record: AuditRecord, known: Callable[[str, str], bool], gateway: str = ""
) -> str:
    """The `audit` measurement. Tags stay bounded: a device or point the site doesn't know is
    tagged `_unknown` (topics come from outside) and kept as a field. Each field has one type
    whatever the caller sent: numbers in `requested`/`old`, text in `requested_text`/`old_text`.
    `gateway`: the gateway's id in a site split across gateways (empty: no tag), as in every
    function here.
    """
    c = record.command
    real = known(c.device, c.point)
    prefix = series_prefix(
        "audit",
        {
            "site": site,
            "gateway": gateway,
            "device": c.device if real else "_unknown",
            "point": c.point if real else "_unknown",
            "outcome": record.outcome,
        },
    )
    fields: dict[str, Value] = {
        "origin": shorten(c.origin, 80),
        "reason": shorten(record.reason, 300),
    }
    if not real:
        fields.update(device_name=c.device[:64], point_name=c.point[:64])
    for name, value in (("requested", c.value), ("old", record.old_value)):
        number = _number(value)
        if number is not None:
            fields[name] = number
        elif value is not None:
            fields[f"{name}_text"] = str(value)[:128]
    body = ",".join(f"{k}={format_field(v)}" for k, v in fields.items())
    return f"{prefix} {body} {record.ts}"


def record_line(site: str, record: Record, gateway: str = "") -> str | None:
    """A rule's Record (a patrol round): its measurement, the site and its tags, its fields as
    they are typed (a rule keeps one type per field); None when it has no field to store."""
    fields = {k: v for k, v in record.fields.items() if v is not None}
    if not fields:
        return None
    prefix = series_prefix(record.measurement, {**record.tags, "site": site, "gateway": gateway})
    body = ",".join(f"{escape_tag(k)}={format_field(v)}" for k, v in fields.items())
    return f"{prefix} {body} {record.ts}"


def console_line(site: str, event: ConsoleEvent, gateway: str = "") -> str:
    """The `console` measurement: logins, logouts, acknowledgements and shelvings done at the
    duty console or through its API. Tags are the action and its outcome (a few words each);
    who, from where and which alarm are fields: names typed at a login form come from outside
    and must not make series."""
    prefix = series_prefix(
        "console",
        {
            "site": site,
            "gateway": gateway,
            "action": event.action[:32],
            "outcome": event.outcome[:32],
        },
    )
    fields: dict[str, Value] = {"who": shorten(event.who, 80), "via": event.via[:16]}
    for name, value, limit in (
        ("alarm_id", event.alarm_id, 128),
        ("address", event.address, 64),
        ("detail", event.detail, 300),
    ):
        if value:
            fields[name] = shorten(value, limit)
    body = ",".join(f"{k}={format_field(v)}" for k, v in fields.items())
    return f"{prefix} {body} {event.ts}"


_ALARM_PLACE_TAGS = ("building", "floor", "zone")


def alarm_line(
    site: str, msg: AlarmTransition, device_tags: Mapping[str, str], gateway: str = ""
) -> str:
    """The `alarm` measurement: every transition, for Grafana annotations and history. Tags:
    the alarm's kind, grade, rule and subject, and the place of the device behind it."""
    tr = msg.transition
    alarm = tr.alarm
    tags = {
        "site": site,
        "gateway": gateway,
        "kind": alarm.kind,
        "grade": alarm.grade,
        "rule": alarm.rule,
        "subject": alarm.subject,
        **{k: v for k, v in device_tags.items() if k in _ALARM_PLACE_TAGS},
    }
    fields: dict[str, Value] = {
        "alarm_id": alarm.id,
        "transition": tr.what,
        "state": alarm.state,
        "text_zh": msg.text_zh,
        "text_en": msg.text_en,
        "by": tr.by,
    }
    if isinstance(alarm.value, int | float) and not isinstance(alarm.value, bool):
        fields["value"] = float(alarm.value)
    body = ",".join(f"{k}={format_field(v)}" for k, v in fields.items())
    # Transitions of one instant (cleared and closed) must not overwrite each other.
    return f"{series_prefix('alarm', tags)} {body} {int(tr.t * 1e9) + msg.index}"


_Template = tuple[str, tuple[int, ...]]  # format, fields formatted by format_field first
_MAX_TEMPLATES = 10_000


class LineEncoder:
    """Knows every device's series prefix; turns a Sample into one line (or None if empty).

    A device sends the same fields in the same order poll after poll, so each (device, fields)
    gets a %-format template compiled once and every later line is one C-level formatting call
    (bench/bench_write.py measures what that buys).

    A field's type in the line is the one its definition declares (`field_types`, by the rule
    in core/field_types.py), not the Python type of the value at hand: a whole number of a
    float field is written as a float, so one device can never send one field as two types.
    Fields without a declaration (the gateway's own health) keep their Python type.
    """

    def __init__(
        self,
        prefixes: Mapping[str, str],
        float_formats: Mapping[str, Mapping[str, str]] | None = None,
        field_types: Mapping[str, Mapping[str, FieldType]] | None = None,
    ) -> None:
        self._prefixes = dict(prefixes)
        self._float_formats = {d: dict(f) for d, f in (float_formats or {}).items()}
        self._field_types = {d: dict(t) for d, t in (field_types or {}).items()}
        self._templates: dict[tuple[str, tuple[str, ...], tuple[type, ...]], _Template] = {}

    def add(
        self,
        device: str,
        prefix: str,
        float_formats: Mapping[str, str] | None = None,
        field_types: Mapping[str, FieldType] | None = None,
    ) -> None:
        self._prefixes[device] = prefix
        self._float_formats[device] = dict(float_formats or {})
        self._field_types[device] = dict(field_types or {})
        self._templates.clear()

    def _compile(self, device: str, values: Mapping[str, Value]) -> _Template:
        formats = self._float_formats.get(device, {})
        declared = self._field_types.get(device, {})
        parts, converted = [], []
        for i, (name, value) in enumerate(values.items()):
            key = escape_tag(name).replace("%", "%%")
            ftype = declared.get(name)
            number = isinstance(value, int | float) and not isinstance(value, bool)
            if number and ftype is FieldType.FLOAT:
                parts.append(f"{key}={formats.get(name, '%r')}")
            elif number and ftype is FieldType.INTEGER:
                parts.append(f"{key}=%di")
            elif isinstance(value, bool | str):
                parts.append(f"{key}=%s")
                converted.append(i)
            elif isinstance(value, int):
                parts.append(f"{key}=%di")
            else:
                parts.append(f"{key}={formats.get(name, '%r')}")
        prefix = self._prefixes[device].replace("%", "%%")
        return f"{prefix} {','.join(parts)} %d", tuple(converted)

    def encode(self, sample: Sample) -> str | None:
        values = sample.values
        if not values:
            return None
        # Field names and value types pick the template: a type can never meet a wrong slot.
        key = (sample.device, tuple(values), tuple(map(type, values.values())))
        template = self._templates.get(key)
        if template is None:
            if len(self._templates) >= _MAX_TEMPLATES:  # fields that keep changing: stay bounded
                self._templates.clear()
            template = self._templates[key] = self._compile(sample.device, values)
        fmt, converted = template
        if not converted:
            return fmt % (*values.values(), sample.ts)
        args = [*values.values(), sample.ts]
        for i in converted:
            args[i] = format_field(args[i])
        return fmt % tuple(args)
