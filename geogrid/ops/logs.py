"""Log lines of ``geogrid serve``: text or one JSON object per line, with request ids.

Each request gets an id (a valid incoming ``X-Request-ID``, else a new one; see
:func:`request_id`), held in :data:`REQUEST_ID` while the request runs, so every line
logged for it carries the id (threads started by the server copy the context). One access
line per request (logger :data:`ACCESS_LOGGER`, level INFO) names the method, the route
*template* (``/api/plans/{plan_id}``), the status and the duration: never the raw path,
the query string (tokens, search words) or the body.

JSON lines (``GEOGRID_LOG_FORMAT=json``) hold ``time``, ``level``, ``logger``,
``message``, ``request_id`` and, on access lines, ``route``, ``method``, ``status`` and
``duration_ms``. An exception adds its type and stack, never its message (a database
error's message holds the SQL parameters, i.e. personal data).

Nothing personal is logged by design: messages name ids, codes and counts. SQLAlchemy's
statement log (SQL with its parameters) is pinned to WARNING whatever the level.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import re
import traceback
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "ACCESS_LOGGER",
    "REQUEST_ID",
    "JsonFormatter",
    "RequestIdFilter",
    "log_config",
    "new_request_id",
    "request_id",
]

#: The id of the request being served (``None`` outside requests).
REQUEST_ID: ContextVar[str | None] = ContextVar("geogrid_request_id", default=None)
#: Logger of the one access line per request.
ACCESS_LOGGER = "geogrid.http"

#: An incoming ``X-Request-ID`` kept as the request's id: a UUID (with or without hyphens,
#: e.g. nginx's ``$request_id``). Anything else is replaced, so that a client cannot put
#: free text (a name, a phone or ID number) into every log line of its request.
_VALID_ID = re.compile(
    r"[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}"
)


#: New ids: a random prefix per process and a counter (unique across processes and
#: restarts, and cheaper than 16 random bytes per request).
_PREFIX = os.urandom(8).hex()
_COUNTER = itertools.count(1)


def new_request_id() -> str:
    """A fresh request id: 32 hex digits.

    >>> len(new_request_id()), new_request_id() != new_request_id()
    (32, True)
    """
    return f"{_PREFIX}{next(_COUNTER) & 0xFFFFFFFFFFFFFFFF:016x}"


def request_id(incoming: bytes | str | None) -> str:
    """The request's id: ``incoming`` when it is a UUID, else a new one.

    >>> request_id("0f8fad5b-d9cb-469f-a165-70867728950e")
    '0f8fad5b-d9cb-469f-a165-70867728950e'
    >>> request_id("13800138000") != "13800138000"  # a phone number is not an id
    True
    """
    if isinstance(incoming, bytes):
        try:
            incoming = incoming.decode("ascii")
        except UnicodeDecodeError:
            incoming = None
    if incoming is not None and _VALID_ID.fullmatch(incoming):
        return incoming
    return new_request_id()


class RequestIdFilter(logging.Filter):
    """Adds ``request_id`` (from :data:`REQUEST_ID`, ``-`` outside requests) to records."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = REQUEST_ID.get() or "-"
        return True


#: Attributes of access lines copied into JSON lines.
_ACCESS_FIELDS = ("route", "method", "status", "duration_ms")


class JsonFormatter(logging.Formatter):
    """One JSON object per line (see the module docstring).

    >>> rec = logging.LogRecord("geogrid.x", logging.INFO, "f.py", 1, "hello %s", ("you",), None)
    >>> line = json.loads(JsonFormatter().format(rec))
    >>> line["message"], line["level"], line["logger"], line["request_id"]
    ('hello you', 'INFO', 'geogrid.x', None)
    """

    def format(self, record: logging.LogRecord) -> str:
        rid = getattr(record, "request_id", None) or REQUEST_ID.get()
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": None if rid in (None, "-") else rid,
        }
        for name in _ACCESS_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                out[name] = value
        if record.exc_info and record.exc_info[0] is not None:
            out["exc_type"] = record.exc_info[0].__name__
            out["stack"] = "".join(traceback.format_tb(record.exc_info[2])).rstrip()
        return json.dumps(out, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """``time level logger [request id] message``; exceptions without their message."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s")

    def formatException(self, ei: Any) -> str:  # noqa: N802 (logging's name)
        return (
            "".join(traceback.format_tb(ei[2])).rstrip()
            + f"\n{ei[0].__name__} (message not logged)"
        )


def log_config(level: str, fmt: str) -> dict[str, Any]:
    """A :func:`logging.config.dictConfig` for ``geogrid serve`` (uvicorn applies it in
    every worker process).

    ``level`` is ``GEOGRID_LOG_LEVEL``; ``fmt`` ``text`` or ``json``. uvicorn's own access
    log is off (it logs raw paths and query strings): :data:`ACCESS_LOGGER` replaces it.

    >>> cfg = log_config("INFO", "json")
    >>> cfg["handlers"]["stderr"]["formatter"], cfg["loggers"]["uvicorn.access"]["level"]
    ('json', 'WARNING')
    """
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": RequestIdFilter}},
        "formatters": {
            "json": {"()": JsonFormatter},
            "text": {"()": TextFormatter},
        },
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "formatter": fmt,
                "filters": ["request_id"],
            }
        },
        "root": {"level": level, "handlers": ["stderr"]},
        "loggers": {
            "uvicorn": {"level": level, "handlers": [], "propagate": True},
            "uvicorn.error": {"level": level, "handlers": [], "propagate": True},
            "uvicorn.access": {"level": "WARNING", "handlers": [], "propagate": False},
            # SQL with its parameters (personal data) never reaches the log
            "sqlalchemy": {"level": "WARNING", "handlers": [], "propagate": True},
            ACCESS_LOGGER: {"level": level, "handlers": [], "propagate": True},
        },
    }
