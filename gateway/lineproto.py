"""InfluxDB line protocol for Samples: one line per device acquisition.

Encoding is hand-written because it is the hot path: `bench/bench_write.py` compares it with
influxdb-client's `Point` objects fed one at a time (the library's own batching API), and the
prefix of every device (measurement and escaped tags) is built once, not per value.
"""

from __future__ import annotations

from collections.abc import Mapping

from core.types import Sample, Value

_TAG_ESCAPES = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ ", "\n": " "})
_MEASUREMENT_ESCAPES = str.maketrans({",": r"\,", " ": r"\ ", "\n": " "})


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


class LineEncoder:
    """Knows every device's series prefix; turns a Sample into one line (or None if empty)."""

    def __init__(self, prefixes: Mapping[str, str]) -> None:
        self._prefixes = dict(prefixes)
        self._field_keys: dict[str, str] = {}

    def add(self, device: str, prefix: str) -> None:
        self._prefixes[device] = prefix

    def encode(self, sample: Sample) -> str | None:
        if not sample.values:
            return None
        keys = self._field_keys
        fields = []
        for name, value in sample.values.items():
            key = keys.get(name)
            if key is None:
                key = keys[name] = escape_tag(name)
            fields.append(f"{key}={format_field(value)}")
        return f"{self._prefixes[sample.device]} {','.join(fields)} {sample.ts}"
