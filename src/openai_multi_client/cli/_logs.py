"""``omc run --log-format json``: one JSON object a line on standard error, for log shippers.

Each line has ``time`` (UTC, ISO 8601, milliseconds), ``level``, ``logger``, ``event`` (the
record's ``event`` field, else ``"log"``), ``message``, then whichever of the library's
structured fields the record carries (see ``_logfields``: ``custom_id``, ``request_index``,
``attempt``, ``key_id``, ``error_class``, ...) and ``exception`` when there is one.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from typing import Any

# Attributes every LogRecord has: the rest came from ``extra``.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}


class JSONFormatter(logging.Formatter):
    """A record as one line of JSON (never spanning lines: newlines are escaped)."""

    def format(self, record: logging.LogRecord) -> str:
        moment = datetime.fromtimestamp(record.created, tz=timezone.utc)
        line: dict[str, Any] = {
            "time": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "event": getattr(record, "event", None) or "log",
            "message": record.getMessage(),
        }
        for name, value in vars(record).items():
            if name not in _STANDARD and name not in line:
                line[name] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, ensure_ascii=False)


def use_log_format(log_format: str) -> None:
    """Make the root logger's handlers write ``log_format`` (``text`` leaves them as set)."""
    if log_format != "json":
        return
    formatter = JSONFormatter()
    for handler in logging.getLogger().handlers:
        handler.setFormatter(formatter)
