"""Log output of ``llmmultichat serve``: one line per record, as text or JSON
(``[kernel] log_format``), each carrying the id of the request it is about."""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
from typing import Any

from sdk.request_context import current_request_id

ACCESS_LOGGER = "llmmultichat.access"


class RequestIdFilter(logging.Filter):
    """Gives every record the id of the request being served ("" outside requests)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = current_request_id()
        return True


def _iso(created: float) -> str:
    return dt.datetime.fromtimestamp(created, dt.UTC).isoformat(timespec="milliseconds")


class TextFormatter(logging.Formatter):
    """``<time> <level> <logger> [<request id>] <message>``; an access line spells out
    its fields as ``key=value``."""

    def format(self, record: logging.LogRecord) -> str:
        rid = getattr(record, "request_id", "") or "-"
        line = (
            f"{_iso(record.created)} {record.levelname} {record.name} [{rid}] {record.getMessage()}"
        )
        access = getattr(record, "access", None)
        if access:
            line += " " + " ".join(f"{k}={_text(v)}" for k, v in access.items())
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def _text(value: Any) -> str:
    if value is None or value == "":
        return "-"
    text = str(value)
    return json.dumps(text) if (" " in text or '"' in text or not text.isprintable()) else text


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request_id, and the
    access-log fields at the top level for access lines."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": _iso(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", "") or None,
        }
        access = getattr(record, "access", None)
        if access:
            out.update(access)
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, ensure_ascii=False)


def configure_logging(level: str, fmt: str = "text") -> None:
    """The root handler of a server process (replaces any earlier one)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(getattr(logging, level, logging.INFO))
