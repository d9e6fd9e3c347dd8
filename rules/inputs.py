"""Events from outside, parsed into the typed inputs of rules.model (Engine.on_input).

The gateway only carries the payload (MQTT `<prefix>/<site>/dr/event`); what it means is
decided here, once, and every error says what to send instead.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from rules.model import DR_STRATEGIES, AcWindowSwitch, DemandResponseCancel, DemandResponseEvent

DR_EXAMPLE = (
    '{"id": "grid-1", "start": "2024-07-10T14:00+08:00", "end": "2024-07-10T15:00+08:00", '
    '"offset": 1} (optional: "strategy": "offset" | "off" | "precool_off", "zones": ["3f-*"]), '
    '{"cancel": "grid-1"} or {"window": "tight-supply", "active": true}'
)


def parse_dr_event(
    payload: bytes | str, source: str = "mqtt"
) -> DemandResponseEvent | DemandResponseCancel | AcWindowSwitch:
    """A demand-response message: {"id", "start", "end", "offset", "strategy", "zones"} (ISO
    times with a zone; the others optional), {"cancel": id}, or an off window switched
    {"window": name, "active": bool}. Raises ValueError saying what is wrong."""
    try:
        doc = json.loads(payload)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise ValueError(f"not JSON ({exc}); send {DR_EXAMPLE}") from None
    if not isinstance(doc, dict):
        raise ValueError(f"expected a JSON object; send {DR_EXAMPLE}")
    if "cancel" in doc:
        return DemandResponseCancel(_text(doc["cancel"], "cancel"))
    if "window" in doc:
        active = doc.get("active")
        if not isinstance(active, bool):
            raise ValueError(f"active must be true or false; send {DR_EXAMPLE}")
        return AcWindowSwitch(_text(doc["window"], "window"), active)
    missing = [key for key in ("start", "end") if key not in doc]
    if missing:
        raise ValueError(f"{' and '.join(missing)} missing; send {DR_EXAMPLE}")
    raw_id = doc.get("id")
    strategy = doc.get("strategy")
    if strategy is not None and strategy not in DR_STRATEGIES:
        raise ValueError(
            f"strategy must be one of {', '.join(DR_STRATEGIES)}, got {json.dumps(strategy)[:40]}"
        )
    return DemandResponseEvent(
        "" if raw_id is None else _text(raw_id, "id"),
        _time(doc["start"], "start"),
        _time(doc["end"], "end"),
        _offset(doc.get("offset")),
        strategy,
        _zones(doc.get("zones")),
        source,
    )


def _zones(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, list) and all(isinstance(z, str) and z for z in value):
        return tuple(value)
    raise ValueError(f"zones must be a list of zone globs, got {json.dumps(value)[:40]}")


def _text(value: Any, key: str) -> str:
    if isinstance(value, dict | list):
        raise ValueError(f"{key} must be a string, got {json.dumps(value)[:40]}")
    return str(value)


def _time(value: Any, key: str) -> datetime:
    if not isinstance(value, str):
        raise ValueError(f"{key} must be an ISO time with a zone, got {json.dumps(value)[:40]}")
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(
            f"{key} {value[:40]!r} is no ISO time; e.g. 2024-07-10T14:00+08:00"
        ) from None


def _offset(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, int | float | str) and not isinstance(value, bool):
        try:
            return float(value)
        except (ValueError, OverflowError):
            pass
    raise ValueError(f"offset must be a number of °C, got {json.dumps(value)[:40]}")
