"""Log formats of `geartrain serve --log-format plain|json`: one line per event, extra fields in JSON."""

from __future__ import annotations

import json
import logging

import pytest

from geartrain.server.logfmt import JsonFormatter, PlainFormatter, make_formatter


def record(msg: str, *args: object, exc: bool = False, **extra: object) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError("bad\nthing")
        except ValueError:
            import sys

            exc_info = sys.exc_info()
    rec = logging.LogRecord("geartrain.test", logging.WARNING, __file__, 1, msg, args, exc_info)
    rec.__dict__.update(extra)
    return rec


def test_json_has_fields_extras_and_the_exception_on_one_line() -> None:
    line = JsonFormatter().format(record("job %s of %s", b"H:x:1".decode(), "f", exc=True, handle=b"H:\xff1",
                                         status=200))
    assert "\n" not in line
    event = json.loads(line)
    assert event["message"] == "job H:x:1 of f"
    assert event["level"] == "WARNING" and event["logger"] == "geartrain.test"
    assert event["handle"] == "H:\\xff1" and event["status"] == 200
    assert "ValueError: bad\nthing" in event["exception"]
    assert event["time"].endswith("Z") and event["time"][10] == "T"


def test_plain_is_one_line_even_with_newlines() -> None:
    line = PlainFormatter().format(record("two\nlines", exc=True, status=1))
    assert "\n" not in line and "two\\nlines" in line and "ValueError: bad\\nthing" in line
    assert " WARNING two" in line


def test_unknown_format_is_refused() -> None:
    assert isinstance(make_formatter("json"), JsonFormatter)
    with pytest.raises(ValueError):
        make_formatter("xml")
