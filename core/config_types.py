"""Field types shared by configuration models: durations and sizes as people write them,
hosts, and ranges of values."""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    WithJsonSchema,
    model_validator,
)

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]i?b?|b)?\s*$", re.IGNORECASE)
_BYTES = {"": 1, "b": 1, "k": 1000, "m": 1000**2, "g": 1000**3, "t": 1000**4}
# RFC 1123 labels; `_` is allowed too, as Docker and many site DNS servers hand such names out.
_LABEL = re.compile(r"^[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$")


def parse_duration(value: Any) -> float:
    """'500ms', '10s', '5m', '1h', '2d' or a number of seconds -> seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 10s, 500ms or 5m")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match:
            return float(match.group(1)) * _SECONDS[match.group(2)]
        guess = re.sub(r"[^0-9.]", "", value)
        hint = f"; did you mean '{guess}s'?" if guess else ""
        raise ValueError(f"'{value}' is not a duration: use a number with ms, s, m, h or d{hint}")
    raise ValueError("expected a duration such as 10s, 500ms or 5m")


def parse_size(value: Any) -> int:
    """'256MiB', '1GB', '500k' or a number of bytes -> bytes."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        match = _SIZE.match(value)
        if match:
            unit = (match.group(2) or "").lower()
            base = 1024 if "i" in unit else 1000
            scale = base ** "bkmgt".index(unit[0]) if unit and unit[0] != "b" else 1
            return int(float(match.group(1)) * scale)
    raise ValueError(f"'{value}' is not a size: use bytes or a unit such as 500MB or 256MiB")


Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    PlainSerializer(lambda v: v, return_type=float),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "minimum": 0},
                {"type": "string", "pattern": r"^\d+(\.\d+)?\s*(ms|s|m|h|d)?$"},
            ],
            "description": "Seconds, or a number with a unit: 500ms, 10s, 5m, 1h, 2d.",
        }
    ),
    Field(ge=0),
]

ByteSize = Annotated[
    int,
    BeforeValidator(parse_size),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "minimum": 0},
                {"type": "string", "pattern": r"^\d+(\.\d+)?\s*([kKmMgGtT]i?[bB]?|[bB])?$"},
            ],
            "description": "Bytes, or a number with a unit: 500MB, 256MiB.",
        }
    ),
    Field(ge=0),
]


def check_host(value: str) -> str:
    """A host name (`meter-gw.local`) or an IP literal (`10.0.8.20`, `fe80::1`), nothing else."""
    example = "e.g. 10.0.8.20 or broker.local"
    if not value:
        raise ValueError(f"empty host; write the address, {example}")
    if value != value.strip() or any(c.isspace() for c in value):
        raise ValueError(f"{value!r} contains a space; remove it ({example})")
    if "://" in value:
        raise ValueError(f"{value!r} is a URL; write only the address, {example}")
    if value.startswith("[") and value.endswith("]"):
        raise ValueError(f"{value!r}: write the IPv6 address without brackets")
    try:
        ipaddress.ip_address(value)
        return value
    except ValueError:
        pass
    if ":" in value:
        host, _, port = value.rpartition(":")
        if port.isdigit() and host and ":" not in host:
            raise ValueError(f"{value!r} includes a port; write `host: {host}, port: {port}`")
        raise ValueError(f"{value!r} is not a valid IPv6 address")
    labels = value.removesuffix(".").split(".")
    if all(label.isdigit() for label in labels):
        raise ValueError(f"{value!r} is not a valid IPv4 address; {example}")
    if len(value) > 253 or not all(_LABEL.match(label) for label in labels):
        raise ValueError(
            f"{value!r} is not a host name or IP address: use letters, digits, - and . ({example})"
        )
    return value


Host = Annotated[
    str,
    AfterValidator(check_host),
    WithJsonSchema(
        {
            "type": "string",
            "minLength": 1,
            "description": "Host name or IP address, e.g. 10.0.8.20 or broker.local.",
        }
    ),
]


class Range(BaseModel):
    """An inclusive range in engineering units."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min: float = Field(description="Lowest valid value, in the point's unit.")
    max: float = Field(description="Highest valid value, in the point's unit.")

    @model_validator(mode="after")
    def _ordered(self) -> Range:
        if self.min > self.max:
            raise ValueError(f"min {self.min} is above max {self.max}; swap them")
        return self

    def contains(self, value: float) -> bool:
        return self.min <= value <= self.max


SECRET_PATTERN = r"^(\$\{[A-Za-z_][A-Za-z0-9_]*\}|file:.+)$"

Secret = Annotated[
    str,
    Field(
        description="`${ENV_VAR}` or `file:/run/secrets/name`; a literal secret is refused.",
        pattern=SECRET_PATTERN,
    ),
]
"""A reference to a secret, never the secret: resolved once at start-up, so a missing
variable or file is a start-up error and no configuration file holds a password."""
