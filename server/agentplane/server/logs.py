"""agentplane's log lines: text or JSON, each naming its request, session and call.

``install_context()`` makes every log record carry ``request_id`` (the HTTP
request or gRPC call being served, ``agentplane.net.requests``) and
``session_id`` / ``call_id`` (the session whose code is running:
``create_agent``, ``join_call``, the tasks they start, the agent's
``close()``; ``agentplane.core.context``), None where there is none. The
formatters show them:

- ``text``: ``2025-01-31 12:00:00,123 INFO my_agent: joined [request=9f0c... session=3b1e... call=demo-1]``
- ``json``: one object a line: ``ts``, ``level``, ``logger``, ``message``,
  the ids that are known, an access line's fields (``protocol``, ``method``,
  ``route``, ``path``, ``status``, ``duration_ms``, ``peer``,
  ``client_closed``), ``exc_info`` as text.
"""

from __future__ import annotations

import datetime
import json
import logging
import sys
from typing import Any, Literal

from agentplane.core.context import current_session
from agentplane.net import current_request_id

LogFormat = Literal["text", "json"]
LOG_FORMATS: tuple[LogFormat, ...] = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

CONTEXT_FIELDS = ("request_id", "session_id", "call_id")
_SHORT = {"request_id": "request", "session_id": "session", "call_id": "call"}
# What an access line adds (agentplane.http.access, agentplane.rpc.access).
ACCESS_FIELDS = (
    "protocol",
    "method",
    "route",
    "path",
    "status",
    "duration_ms",
    "peer",
    "client_closed",
)

_installed = False


def install_context() -> None:
    """Every log record from now on carries request_id, session_id and call_id (idempotent)."""
    global _installed
    if _installed:
        return
    _installed = True
    make_record = logging.getLogRecordFactory()

    def with_context(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make_record(*args, **kwargs)
        record.request_id = current_request_id()
        try:
            session = current_session()
        except LookupError:
            record.session_id = record.call_id = None
        else:
            record.session_id = session.session_id
            record.call_id = session.call_id
        return record

    logging.setLogRecordFactory(with_context)


def _context(record: logging.LogRecord) -> dict[str, Any]:
    return {
        name: value for name in CONTEXT_FIELDS if (value := getattr(record, name, None)) is not None
    }


class TextFormatter(logging.Formatter):
    """The classic line, then `` [request=... session=... call=...]`` for the ids known."""

    def __init__(self, fmt: str = TEXT_FORMAT) -> None:
        super().__init__(fmt)

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        known = _context(record)
        if not known:
            return line
        return line + " [" + " ".join(f"{_SHORT[k]}={v}" for k, v in known.items()) + "]"


class JsonFormatter(logging.Formatter):
    """One JSON object a line (see the module's docstring)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(_context(record))
        for name in ACCESS_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        summary = getattr(record, "summary", None)
        if summary is not None:
            entry["summary"] = summary
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exc_info"] = record.exc_text
        if record.stack_info:
            entry["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def formatter(log_format: LogFormat) -> logging.Formatter:
    if log_format == "json":
        return JsonFormatter()
    return TextFormatter()


def stderr_handler(log_format: LogFormat) -> logging.Handler:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(log_format))
    return handler
