"""The duty console (值班台): alarm pages for the duty staff, a JSON API, signed ack links.

The integrator's entry points: `ConsoleConfig` (the site file's `console:`), `ServiceDesk`
(the gateway's alarms and devices), `Console` (start/stop, sign_link, stats/health) and
`hash_password` (for a CLI command that writes a user's `password_hash:`), `RoundsBoard`
(today's patrol rounds, from the bus).

Imported lazily: the site model imports `gateway.console.config`, and the server and desk
import the alarm service, which imports the site model.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gateway.console.config import ApiClient as ApiClient
    from gateway.console.config import ConsoleConfig as ConsoleConfig
    from gateway.console.config import ConsoleUser as ConsoleUser
    from gateway.console.desk import AlarmDesk as AlarmDesk
    from gateway.console.desk import DeskAlarm as DeskAlarm
    from gateway.console.desk import HistoryPage as HistoryPage
    from gateway.console.desk import HistoryQuery as HistoryQuery
    from gateway.console.desk import ServiceDesk as ServiceDesk
    from gateway.console.passwords import hash_password as hash_password
    from gateway.console.passwords import verify_password as verify_password
    from gateway.console.rounds import RoundsBoard as RoundsBoard
    from gateway.console.server import Console as Console
    from gateway.console.server import ConsoleError as ConsoleError

_HOMES = {
    "ApiClient": "config",
    "ConsoleConfig": "config",
    "ConsoleUser": "config",
    "AlarmDesk": "desk",
    "DeskAlarm": "desk",
    "HistoryPage": "desk",
    "HistoryQuery": "desk",
    "ServiceDesk": "desk",
    "hash_password": "passwords",
    "verify_password": "passwords",
    "RoundsBoard": "rounds",
    "Console": "server",
    "ConsoleError": "server",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'gateway.console' has no attribute {name!r}")
    return getattr(importlib.import_module(f"gateway.console.{home}"), name)
