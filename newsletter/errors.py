"""One error family with one JSON shape, and an HTML page for browsers."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, jsonify, render_template, request
from sqlalchemy.exc import OperationalError, ProgrammingError
from werkzeug.datastructures import MIMEAccept
from werkzeug.exceptions import ClientDisconnected, HTTPException

log = logging.getLogger(__name__)


def describe(exc: BaseException) -> str:
    """An exception in one line: its type and the first line of its message.

    For a database error, the driver's own message (``orig``): SQLAlchemy's
    text adds the statement and a link over several lines, unfit for a log
    line or a health record.
    """
    lines = str(getattr(exc, "orig", None) or exc).splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"


# Codes for the errors werkzeug raises before our code runs.
_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "unprocessable",
    429: "rate_limited",
}
_HTTP_MESSAGES = {
    413: "The request body is too large.",
    429: "Too many requests. Please wait a little and try again.",
}


class AppError(Exception):
    """An error a client can act on: an HTTP status, a stable code, a sentence."""

    status = 400

    def __init__(
        self,
        code: str,
        message: str,
        status: int | None = None,
        field: str | None = None,
        headers: list[tuple[str, str]] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field
        self.headers = headers or []  # sent with the answer (a 401's WWW-Authenticate)
        self.extra = extra
        if status is not None:
            self.status = status


# Machine-only APIs: always JSON, even for a client that sends no Accept header.
JSON_ONLY_PREFIXES = ("/admin/", "/webhooks/", "/healthz", "/readyz", "/metrics", "/openapi.json")


def _accepted_types() -> MIMEAccept:
    """The request's ``Accept`` without media-type parameters (``q`` aside).

    Werkzeug matches ``application/json; charset=utf-8`` only to a type with that
    very parameter, so a client asking for JSON in UTF-8 got HTML. ``text/json``,
    an old alias, reads as ``application/json``.
    """
    kinds = []
    for kind, quality in request.accept_mimetypes:
        bare = kind.split(";", 1)[0].strip().lower()
        kinds.append(("application/json" if bare == "text/json" else bare, quality))
    return MIMEAccept(kinds)


def vary_on_accept(response: Response) -> Response:
    """Every answer ``wants_json`` may have shaped says so: ``Vary: Accept``.

    One URL gives JSON or the page by the Accept header; without it a cache in
    front could hand the JSON to a browser. The JSON-only paths need none.
    """
    if not request.path.startswith(JSON_ONLY_PREFIXES):
        response.vary.add("Accept")
    return response


def wants_json() -> bool:
    """True on a JSON-only API, or when the client sent JSON or prefers a JSON answer."""
    if request.is_json or request.path.startswith(JSON_ONLY_PREFIXES):
        return True
    accept = _accepted_types()
    # Quality first, then the more specific match: axios's "application/json, text/plain,
    # */*" gets JSON, a browser's "text/html, ..., */*;q=0.8" or a bare "*/*" gets HTML.
    best = accept.best_match(["text/html", "application/json"])
    if best is None:  # neither asked for: a JSON flavour ("application/problem+json") counts
        return any(kind.endswith("+json") and quality > 0 for kind, quality in accept)
    return best == "application/json"


def error_response(
    status: int,
    code: str,
    message: str,
    field: str | None = None,
    headers: Any = None,
    **extra: Any,
) -> Response:
    """The error as JSON or as the HTML error page, whichever the client wants."""
    if wants_json():
        # "field" always, null when no one field is at fault: the contract's shape.
        body: dict[str, Any] = {"code": code, "message": message, "field": field or None}
        body.update(extra)
        response = jsonify(error=body)
    else:
        response = Response(
            render_template("pages/error.html", status=status, code=code, message=message, **extra),
            mimetype="text/html",
        )
    response.status_code = status
    if headers:
        response.headers.extend(headers)
    return response


class Misconfigured(RuntimeError):
    """A setting this host runs with makes the request unsafe to serve: a 503, said in the log."""


# PostgreSQL's errors for a table or column the code needs and the schema lacks (SQLite's
# "no such table" is an OperationalError: a 503 already).
_SCHEMA_MISSING = frozenset({"UndefinedTable", "UndefinedColumn"})


def _unavailable(state: str, retry_after: int) -> Response:
    """503 ``unavailable``: "The service is <state>.", and when to try again."""
    return error_response(
        503,
        "unavailable",
        f"The service is {state}.",
        headers=[("Retry-After", str(retry_after))],
    )


def register_error_handlers(app: Flask) -> None:
    """Route every error through ``error_response``; never a traceback to a client."""

    @app.errorhandler(AppError)
    def _app_error(exc: AppError) -> Response:
        return error_response(
            exc.status, exc.code, exc.message, exc.field, headers=exc.headers, **exc.extra
        )

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        code = _HTTP_CODES.get(status, "http_error")
        message = _HTTP_MESSAGES.get(status) or exc.description or exc.name
        headers = [(k, v) for k, v in exc.get_headers() if k.lower() != "content-type"]
        return error_response(status, code, message, headers=headers)

    @app.errorhandler(ClientDisconnected)
    def _cut_short(exc: ClientDisconnected) -> Response:
        return error_response(
            400,
            "incomplete_body",
            "The request body was cut short before its end; nothing was kept. "
            "Please send it again.",
        )

    @app.errorhandler(OperationalError)
    def _database_down(exc: OperationalError) -> Response:
        log.error("database unavailable: %s", exc.orig.__class__.__name__ if exc.orig else exc)
        return _unavailable("briefly unavailable. Please try again in a minute", 30)

    @app.errorhandler(Misconfigured)
    def _misconfigured(exc: Misconfigured) -> Response:
        log.error("%s", exc)
        return _unavailable("briefly unavailable. Please try again later", 300)

    @app.errorhandler(ProgrammingError)
    def _schema_behind(exc: ProgrammingError) -> Response:
        # A table or column the code needs and the database lacks: ``db upgrade`` was
        # not run at a deploy. Not the client's fault, and not for it to retry soon.
        if type(exc.orig).__name__ not in _SCHEMA_MISSING:
            return _unexpected(exc)
        log.error("the schema is behind the code (run flask db upgrade): %s", describe(exc))
        return _unavailable("being updated. Please try again in a few minutes", 300)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, "internal_error", "Something went wrong on our side.")
