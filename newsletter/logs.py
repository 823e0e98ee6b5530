"""Logs: one line per event, text or JSON, each with the request id it belongs to.

Addresses and tokens are masked by ``security.MaskingFilter``, which
``security.install`` puts on the same handlers this module formats.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime

from flask import Flask, Response, g, has_request_context, request

from .security import mask

REQUEST_ID_HEADER = "X-Request-ID"
# A proxy's or client's id is kept when it looks like an id: no spaces, no
# quotes, nothing a log reader could mistake for another field.
_SANE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
# gunicorn hands its access log the response headers as ``{name}o`` atoms.
_ACCESS_ATOM = "{x-request-id}o"
HANDLER_NAME = "newsletter"
OWNED_LOGGERS = ("", "gunicorn.error", "gunicorn.access")


def current_request_id() -> str:
    """This request's id: the caller's ``X-Request-ID`` if sane, else a new one."""
    if "request_id" not in g:
        given = request.headers.get(REQUEST_ID_HEADER, "")
        g.request_id = given if _SANE_ID.fullmatch(given) else uuid.uuid4().hex
    return g.request_id


class RequestIdFilter(logging.Filter):
    """Sets ``record.request_id``: the request's, the access log's, or ``-``."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Tag the record; never drops one."""
        if has_request_context():
            record.request_id = current_request_id()
        elif isinstance(record.args, Mapping) and record.args.get(_ACCESS_ATOM, "-") != "-":
            record.request_id = str(record.args[_ACCESS_ATOM])
        elif not hasattr(record, "request_id"):
            record.request_id = "-"
        return True


class _MaskedTracebacks(logging.Formatter):
    """A formatter whose tracebacks are masked as messages are (by ``MaskingFilter``)."""

    def formatException(self, ei) -> str:  # noqa: N802 (logging's name)
        """The traceback, masked."""
        return mask(super().formatException(ei))


class TextFormatter(_MaskedTracebacks):
    """``time level logger [request id]: message``, a traceback folded onto the same line."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        """The record on one line."""
        record.__dict__.setdefault("request_id", "-")
        return super().format(record).replace("\n", "\\n")


class JsonFormatter(_MaskedTracebacks):
    """One JSON object per line: time, level, logger, request_id, message, exception."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as a JSON line; the traceback masked like the message."""
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "request_id": getattr(record, "request_id", "-"),
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure_logging(log_format: str = "text") -> None:
    """A stderr handler on the root logger unless the host (pytest) set one; ours formatted.

    gunicorn's own handlers get the same format, so its access and error
    lines come out as JSON too when ``log_format`` is ``json``.
    """
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler()
        handler.set_name(HANDLER_NAME)
        root.addHandler(handler)
        root.setLevel(logging.INFO)
    formatter = JsonFormatter() if log_format == "json" else TextFormatter()
    for name in OWNED_LOGGERS:
        for handler in logging.getLogger(name).handlers:
            ours = handler.get_name() == HANDLER_NAME
            # gunicorn's text format is its own (see access_log_format in gunicorn.conf.py).
            if ours or (name and log_format == "json"):
                handler.setFormatter(formatter)
            if not any(isinstance(f, RequestIdFilter) for f in handler.filters):
                handler.addFilter(RequestIdFilter())


def _assign_request_id() -> None:
    current_request_id()


def _echo_request_id(response: Response) -> Response:
    response.headers[REQUEST_ID_HEADER] = current_request_id()
    return response


def install(app: Flask) -> None:
    """Give every request an id, echoed in the ``X-Request-ID`` response header."""
    app.before_request(_assign_request_id)
    app.after_request(_echo_request_id)
