"""How the gateway's log lines look: text for a person, or one JSON object per line for a log
shipper (`guanjia run --log-format json`).

A JSON line has `time` (UTC, ISO 8601 to the millisecond), `level`, `logger` and `message`,
then the record's extra fields (`log.info(..., extra={"device": "meter-b1-main"})`) under
their own names, and `exception` with the traceback when there is one. A value JSON cannot
carry is written as its str().

Text under systemd leaves the time out: the journal stamps every line itself.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import UTC, datetime
from typing import Any, Literal

LogFormat = Literal["text", "json"]
LOG_FORMATS: tuple[LogFormat, ...] = ("text", "json")

TEXT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
JOURNAL_TEXT = "%(levelname)-7s %(name)s: %(message)s"

# What every LogRecord has; anything else on a record came with `extra=`.
_STANDARD = frozenset(
    {
        *vars(logging.LogRecord("", 0, "", 0, "", None, None)),
        "message",
        "asctime",
        "taskName",  # Python 3.12's asyncio task name
    }
)
_RESERVED = frozenset({"time", "level", "logger", "message", "exception", "stack"})


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                # An extra named like one of ours keeps its value under a prefixed name.
                out[f"extra_{key}" if key in _RESERVED else key] = value
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return json.dumps(out, ensure_ascii=False, default=str)


def stderr_is_journal() -> bool:
    """systemd connected stderr to the journal: JOURNAL_STREAM names stderr's device and
    inode (a child whose stderr was redirected keeps the variable but not the file)."""
    stream = os.environ.get("JOURNAL_STREAM", "")
    device, _, inode = stream.partition(":")
    if not (device.isdigit() and inode.isdigit()):
        return False
    try:
        st = os.fstat(sys.stderr.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return (st.st_dev, st.st_ino) == (int(device), int(inode))


def formatter(log_format: LogFormat) -> logging.Formatter:
    if log_format == "json":
        return JsonFormatter()
    return logging.Formatter(JOURNAL_TEXT if stderr_is_journal() else TEXT)
