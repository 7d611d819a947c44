"""Log formatters for the server: one line per event, as plain text or as JSON (``--log-format``).

JSON puts the fields passed with ``log.info(..., extra={"k": v})`` in the object next to time,
level, logger and message. A message or traceback with newlines stays on one line (escaped in
plain text, a JSON string in JSON), so every line of the log is one event.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

FORMATS = ("plain", "json")

#: attributes every LogRecord has; anything else on a record came from ``extra=``
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}


def extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The ``extra=`` fields of RECORD, in the order they were given."""
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}


def _text(value: Any) -> Any:
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", "backslashreplace")
    return value


def _one_line(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\r", "\\r").replace("\n", "\\n") if "\n" in text or "\r" in text \
        else text


class PlainFormatter(logging.Formatter):
    """``2026-01-02 03:04:05,678 NOTICE message``, one line per event (the message says it all; the
    ``extra=`` fields are for the JSON format). Without STAMP, ``NOTICE message`` (for syslog, which
    stamps each line itself)."""

    def __init__(self, stamp: bool = True) -> None:
        super().__init__("%(asctime)s %(levelname)s %(message)s" if stamp else "%(levelname)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        return _one_line(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, extra fields, exception."""

    def format(self, record: logging.LogRecord) -> str:
        created = record.created
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)) + f".{int(record.msecs):03d}Z"
        out: dict[str, Any] = {"time": stamp, "level": record.levelname, "logger": record.name,
                               "message": record.getMessage()}
        for key, value in extra_fields(record).items():
            out[key] = _text(value)
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return json.dumps(out, ensure_ascii=False, separators=(",", ":"), default=str)


def make_formatter(fmt: str, stamp: bool = True) -> logging.Formatter:
    """The formatter for ``--log-format FMT`` (plain or json); STAMP False leaves the time out of plain lines."""
    if fmt == "json":
        return JsonFormatter()
    if fmt == "plain":
        return PlainFormatter(stamp)
    raise ValueError(f"unknown log format {fmt!r} (expected one of {', '.join(FORMATS)})")
