"""InfluxDB line protocol for Samples: one line per device acquisition.

Encoding is hand-written because it is the hot path: `bench/bench_write.py` compares it with
influxdb-client's `Point` objects fed one at a time (the library's own batching API), and the
prefix of every device (measurement and escaped tags) is built once, not per value.
"""

from __future__ import annotations

from collections.abc import Mapping

from core.field_types import FieldType
from core.types import Sample, Value

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
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def series_prefix(measurement: str, tags: Mapping[str, str]) -> str:
    """`measurement,tag=value,...` with tags sorted by key (what InfluxDB stores anyway)."""
    parts = [escape_measurement(measurement)]
    for key in sorted(tags):
        if tags[key] != "":
            parts.append(f"{escape_tag(key)}={escape_tag(tags[key])}")
    return ",".join(parts)


def float_format(dtype: str, scaled: bool) -> str:
    """Digits worth storing for a value decoded from this register type.

    A float32 holds at most 9 significant digits and a 16-bit register times a scale fewer;
    printing them with repr() stores float noise (230.20000000000002) and costs twice the CPU.
    Wider types keep every digit.
    """
    if dtype == "float32" or (dtype in ("int16", "uint16", "sunssf") and scaled):
        return "%.9g"
    if dtype in ("int32", "uint32") and scaled:
        return "%.12g"
    return "%r"


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
