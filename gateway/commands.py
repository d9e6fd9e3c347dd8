"""Commands to devices, from MQTT `.../set` today and from the rules tomorrow: one checked,
audited path. Every command, accepted or refused, leaves an audit record (who, what, old
value, new value, outcome) in InfluxDB and the log."""

from __future__ import annotations

import fnmatch
import logging
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


def audit_line(site: str, record: AuditRecord) -> str:
    """The `audit` measurement: tags bounded (site, device, point, outcome), the rest fields."""
    c = record.command
    prefix = series_prefix(
        "audit", {"site": site, "device": c.device, "point": c.point, "outcome": record.outcome}
    )
    fields = {"origin": c.origin, "requested": c.value, "reason": record.reason}
    if record.old_value is not None:
        fields["old"] = record.old_value
    if isinstance(c.value, int) and not isinstance(c.value, bool):
        fields["requested"] = float(c.value)  # one field type, whatever the caller sent
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
        self.audit(audit_line(self.site_id, record))
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
