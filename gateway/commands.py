"""Commands to devices, whatever asks for them (MQTT `.../set`, the rules, demand response):
one checked, audited path, CommandRouter.execute. Every write passes the site's allowlist and
the profile's writable range; no origin is trusted more than another. Every command, accepted
or refused, leaves an audit record (who, what, old value, new value, outcome) on the bus, for
InfluxDB and whoever else subscribes, and in the log, with what came from outside cut to a
bounded length."""

from __future__ import annotations

import fnmatch
import logging
import time
from collections.abc import Callable, Sequence

from core.text import shorten
from core.types import Command, CommandResult
from drivers.contract import DriverRuntime
from gateway.messages import AuditRecord

log = logging.getLogger("guanjia.commands")


class CommandRouter:
    """Checks a command against the site's allowlist, then the device's profile and range."""

    def __init__(
        self,
        site_id: str,
        writer_of: Callable[[str], DriverRuntime | None],
        allow: Sequence[str],
        publish: Callable[[AuditRecord], None],
    ) -> None:
        self.site_id = site_id
        self.writer_of = writer_of  # device -> the driver that writes it
        self.allow = list(allow)
        self.publish = publish  # the bus: the audit trail is one more message
        self.records = 0

    def allowed(self, command: Command) -> bool:
        """The site's allowlist, for every origin: a rule (`enforce: true`, demand response)
        writes only what the site lets anyone write."""
        target = f"{command.device}:{command.point}"
        return any(fnmatch.fnmatchcase(target, pattern) for pattern in self.allow)

    def audit_refusal(self, command: Command, reason: str) -> None:
        """A command refused before it could be checked (a payload that is no command)."""
        self._record(CommandResult(command, False, None, reason))

    async def execute(self, command: Command) -> CommandResult:
        driver = self.writer_of(command.device)
        if driver is None:
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
            result = await driver.write(command)
        self._record(result)
        return result

    def _record(self, result: CommandResult) -> None:
        command, outcome = result.command, result.outcome
        record = AuditRecord(time.time_ns(), command, outcome, result.old_value, result.reason)
        self.records += 1
        self.publish(record)
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
