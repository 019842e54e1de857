"""The log line format every Tandem process writes.

Text for people, or one JSON object per line for a log collector (``--log-format json``). Log lines
never carry row values (DESIGN.md §1); this module only shapes what callers already log.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Literal

__all__ = ["LOG_FORMATS", "JsonLogFormatter", "LogFormat", "configure_logging"]

LogFormat = Literal["text", "json"]
LOG_FORMATS: tuple[LogFormat, ...] = ("text", "json")
_TEXT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonLogFormatter(logging.Formatter):
    """One JSON object per record.

    Keys: ``ts`` (UTC, ISO 8601), ``level``, ``logger``, ``message``, and ``exc_type`` when an exception
    is attached (its traceback only at DEBUG).
    """

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON."""
        line = {"ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
                "level": record.levelname, "logger": record.name, "message": record.getMessage()}
        if record.exc_info and record.exc_info[0] is not None:
            line["exc_type"] = record.exc_info[0].__name__
            if record.levelno <= logging.DEBUG:
                line["traceback"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


def configure_logging(level: int, fmt: LogFormat = "text") -> None:
    """Send the root logger's records to stderr at ``level``, as text or JSON lines (replacing handlers)."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonLogFormatter() if fmt == "json" else logging.Formatter(_TEXT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
