"""Commands to devices, whatever asks for them (MQTT `.../set`, the rules, demand response):
one checked, audited path, CommandRouter.execute. Every write passes the site's allowlist and
the profile's writable range; no origin is trusted more than another. Every command, accepted
or refused, leaves an audit record (who, what, old value, new value, outcome) in InfluxDB and
the log, with what came from outside cut to a bounded length."""

from __future__ import annotations

import fnmatch
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from core.types import Command, CommandResult, Value
from drivers.modbus.driver import ModbusDriver
from gateway.lineproto import format_field, series_prefix

log = logging.getLogger("guanjia.commands")


@dataclass(frozen=True, slots=True)
class AuditRecord:
    ts: int
    command: Command
    outcome: str  # accepted | refused | failed
    old_value: Value | None
    reason: str


def _number(value: Value | None) -> float | None:
    """A value as a float field, if it is one (bools as 0/1): one field type in InfluxDB."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        number = float(value)
        return number if math.isfinite(number) else None
    return None


def shorten(text: str, limit: int = 64) -> str:
    """Text from outside, cut for a log line, a reply or an audit field."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def audit_line(site: str, record: AuditRecord, known: Callable[[str, str], bool]) -> str:
    """The `audit` measurement. Tags stay bounded: a device or point the site doesn't know is
    tagged `_unknown` (topics come from outside) and kept as a field. Each field has one type
    whatever the caller sent: numbers in `requested`/`old`, text in `requested_text`/`old_text`.
    """
    c = record.command
    real = known(c.device, c.point)
    prefix = series_prefix(
        "audit",
        {
            "site": site,
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


class CommandRouter:
    """Checks a command against the site's allowlist, then the device's profile and range."""

    def __init__(
        self,
        site_id: str,
        modbus: ModbusDriver,
        allow: Sequence[str],
        audit: Callable[[str], None],
    ) -> None:
        self.site_id = site_id
        self.modbus = modbus
        self.allow = list(allow)
        self.audit = audit
        self.records = 0

    def known(self, device: str, point: str) -> bool:
        poller = self.modbus.pollers.get(device)
        return poller is not None and any(s.name == point for s in poller.plan.specs)

    def allowed(self, command: Command) -> bool:
        """The site's allowlist, for every origin: a rule (`enforce: true`, demand response)
        writes only what the site lets anyone write."""
        target = f"{command.device}:{command.point}"
        return any(fnmatch.fnmatchcase(target, pattern) for pattern in self.allow)

    def audit_refusal(self, command: Command, reason: str) -> None:
        """A command refused before it could be checked (a payload that is no command)."""
        self._record(CommandResult(command, False, None, reason))

    async def execute(self, command: Command) -> CommandResult:
        if command.device not in self.modbus.pollers:
            result = CommandResult(command, False, None, f"no writable device {command.device!r}")
        elif not self.allowed(command):
            result = CommandResult(
                command,
                False,
                None,
                f"{shorten(command.device)}:{shorten(command.point)} is not in the site's "
                "command allowlist: add it to commands.allow to let anyone (MQTT, rules) "
                "write it",
            )
        else:
            result = await self.modbus.write(command)
        self._record(result)
        return result

    def _record(self, result: CommandResult) -> None:
        command, outcome = result.command, result.outcome
        record = AuditRecord(time.time_ns(), command, outcome, result.old_value, result.reason)
        self.records += 1
        self.audit(audit_line(self.site_id, record, self.known))
        log.info(
            "command %s.%s = %s by %s: %s%s%s",
            shorten(command.device),
            shorten(command.point),
            shorten(repr(command.value)),
            shorten(command.origin),
            outcome,
            f" (was {result.old_value!r})" if result.old_value is not None else "",
            f": {shorten(result.reason, 300)}" if result.reason else "",
        )
