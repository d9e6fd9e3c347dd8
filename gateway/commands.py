"""Commands to devices, from MQTT `.../set` today and from the rules tomorrow: one checked,
audited path. Every command, accepted or refused, leaves an audit record (who, what, old
value, new value, outcome) in InfluxDB and the log."""

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
    fields: dict[str, Value] = {"origin": c.origin, "reason": record.reason}
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
        """A rule's own commands are authorised by the rule (`enforce: true` in the site file);
        everyone else's need the site's allowlist."""
        if command.origin.startswith("rule:"):
            return True
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
                f"{command.device}:{command.point} is not in the site's "
                "command allowlist (commands.allow)",
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
            "command %s.%s = %r by %s: %s%s%s",
            command.device,
            command.point,
            command.value,
            command.origin,
            outcome,
            f" (was {result.old_value!r})" if result.old_value is not None else "",
            f": {result.reason}" if result.reason else "",
        )
