"""Request parsing and answering shared by every blueprint: fields in, HTML or JSON out."""

from __future__ import annotations

import contextlib
import unicodedata
from typing import IO, Any
from urllib.parse import parse_qsl

from flask import Flask, Request, Response, jsonify, render_template, request
from flask.sessions import SessionInterface, SessionMixin
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.routing import BaseConverter
from werkzeug.utils import cached_property
from werkzeug.wsgi import LimitedStream

from config import yes_or_no

from .errors import AppError, wants_json
from .one_line import NOT_ONE_LINE
from .storable import unstorable


class _CappedStream(LimitedStream):
    """A body sent without a length, read up to ``MAX_CONTENT_LENGTH``: past it, a 413.

    Werkzeug's own stream raises the 413 only when read in parts; read whole
    (a urlencoded form, JSON) it stopped at the limit and handed over the body
    cut short: a form whose address came after 64 KB of padding was "missing
    its address", one whose address came first was stored from a body that
    was never read to its end.
    """

    def __init__(self, raw: IO[bytes], limit: int) -> None:
        super().__init__(raw, limit, is_max=True)
        self._raw = raw

    def readall(self) -> bytes:
        """The whole body, or ``RequestEntityTooLarge`` when more follows the limit."""
        data = super().readall()
        if self.is_exhausted and self._raw.read(1):
            raise RequestEntityTooLarge()
        return data


class CappedRequest(Request):
    """Flask's request, whose body is never read cut short, with or without a length.

    A ``text/json`` body is JSON too, as a ``text/json`` Accept already was.
    """

    @property
    def is_json(self) -> bool:
        """``application/json``, a ``+json`` type, or ``text/json``, an old alias still sent."""
        return super().is_json or self.mimetype == "text/json"

    @cached_property
    def stream(self) -> IO[bytes]:
        """The body as Werkzeug guards it; a chunked one whole or a 413; one cut short a 400."""
        limit, length = self.max_content_length, self.content_length
        terminated = "wsgi.input_terminated" in self.environ
        if self.shallow or not terminated:
            return Request.stream.fget(self)
        if length is not None:
            # gunicorn marks every body terminated, and ended one whose client stopped
            # short of its Content-Length as if it were whole: an address cut at
            # "...@example.co" was signed up. Read to the length, a body cut short is
            # Werkzeug's ClientDisconnected, a 400.
            if limit is not None and length > limit:
                raise RequestEntityTooLarge()
            return LimitedStream(self.environ["wsgi.input"], length)
        if limit is None:
            return Request.stream.fget(self)
        return _CappedStream(self.environ["wsgi.input"], limit)


def json_body() -> Any:
    """The request's JSON, or None when it is not JSON at all; unstorable text is refused.

    Nesting too deep for the parser and lone surrogates are 400s here, not
    500s further on (a surrogate in one signup failed every signup sharing
    its group commit). A NUL is each field's to refuse or strip.
    """
    try:
        data = request.get_json(silent=True)
    except RecursionError:
        raise AppError("invalid_json", "The request body is nested too deeply.") from None
    if unstorable(data, allow_nul=True):
        raise AppError("invalid_json", "The request body holds text that is not valid Unicode.")
    return data


def json_object() -> dict[str, Any]:
    """The JSON body, which must be an object: else 400 ``invalid_json`` saying which is wrong."""
    data = json_body()
    if data is None and request.get_data().strip() != b"null":
        raise AppError("invalid_json", "The request body is not valid JSON.")
    if not isinstance(data, dict):
        raise AppError("invalid_json", "The request body must be a JSON object.")
    return data


_NOT_UTF8 = (
    "The form is not UTF-8 text: a page in another encoding must send it so "
    '(<form accept-charset="UTF-8">).'
)


def request_fields() -> dict[str, Any]:
    """The body's fields, whether form-encoded, multipart or a JSON object.

    A form that is not UTF-8 is a 400 ``invalid_form``, not text read wrong:
    Werkzeug drops a raw non-UTF-8 form whole (its address read as missing),
    keeps a percent-encoded byte that is not UTF-8 as the letters ``%E9``
    (a Latin-1 page's ``josé@`` became the address ``jos%e9@``), and puts
    U+FFFD for such bytes in a multipart field that names no charset.
    """
    if request.is_json:
        return json_object()
    if request.mimetype == "application/x-www-form-urlencoded" and not _is_utf8_form(
        request.get_data(cache=True)  # the form is then parsed from this copy
    ):
        raise AppError("invalid_form", _NOT_UTF8)
    fields = request.form.to_dict()
    if request.mimetype == "multipart/form-data" and any(
        "\ufffd" in value for value in fields.values()
    ):
        raise AppError("invalid_form", _NOT_UTF8)
    return fields


def _is_utf8_form(data: bytes) -> bool:
    """Whether a form-encoded body, and every %-encoded byte in it, is UTF-8."""
    try:
        parse_qsl(data.decode(), keep_blank_values=True, errors="strict")
    except UnicodeDecodeError:
        return False
    return True


def text_field(
    data: dict[str, Any],
    name: str,
    *,
    max_length: int,
    required: bool = False,
    cut: bool = False,
) -> str | None:
    """One optional single-line text field: a string, not too long, no control characters.

    In Unicode's composed form (NFC) first, so a name typed as letters and combining
    accents counts as the letters a reader sees (an address or a link is the same
    text either way). ``cut``: a longer value is cut to ``max_length``, not refused
    (what the page sent, not what the visitor typed: they could not shorten it).
    """
    value = data.get(name)
    if value is None or value == "":
        if required:
            raise AppError(f"missing_{name}", f"The field {name!r} is required.", 422, field=name)
        return None
    if not isinstance(value, str):
        raise AppError(f"invalid_{name}", f"The field {name!r} must be text.", 422, field=name)
    value = unicodedata.normalize("NFC", value.strip())
    if cut:
        value = value[:max_length].rstrip()
    if len(value) > max_length:
        raise AppError(
            f"invalid_{name}",
            f"The field {name!r} must be at most {max_length} characters.",
            422,
            field=name,
        )
    if NOT_ONE_LINE.search(value):
        raise AppError(
            f"invalid_{name}",
            f"The field {name!r} must be a single line of text.",
            422,
            field=name,
        )
    return value or None


def header_text(name: str, max_length: int) -> str | None:
    """A request header as text to keep (a consent record's): cut, no control characters.

    Headers reach the app as latin-1 (WSGI); one a client sent as UTF-8 is
    read back as UTF-8. A NUL or other control character is dropped: the
    servers in front of us do not all refuse one (gunicorn does, Flask's
    does not), and PostgreSQL cannot store a NUL.
    """
    value = request.headers.get(name, "")
    with contextlib.suppress(UnicodeError):  # not UTF-8 bytes, or not latin-1: kept as read
        value = value.encode("latin-1").decode("utf-8")
    return NOT_ONE_LINE.sub("", value)[:max_length].strip() or None


MAX_PER_PAGE = 500
MAX_PAGE = 1_000_000


def query_arg(name: str) -> str:
    """One query parameter ("" if absent); given twice, or holding a NUL, is refused."""
    values = request.args.getlist(name)
    if len(values) > 1:
        raise AppError(
            f"invalid_{name}", f"Give {name} once, not {len(values)} times.", 400, field=name
        )
    value = values[0] if values else ""
    if "\x00" in value:
        # PostgreSQL text cannot hold NUL: a search for one would be a 500.
        raise AppError(f"invalid_{name}", f"{name} must not contain NUL.", 400, field=name)
    return value


def int_query_arg(name: str, default: int, low: int, high: int) -> int:
    """A whole-number query parameter within ``low..high``, or ``default`` when absent."""
    if name not in request.args:
        return default
    raw = query_arg(name)
    try:
        value = int(raw)
    except ValueError:
        raise AppError(
            f"invalid_{name}", f"{name} must be a whole number.", 400, field=name
        ) from None
    if not low <= value <= high:
        raise AppError(
            f"invalid_{name}", f"{name} must be between {low} and {high}.", 400, field=name
        )
    return value


def bool_query_arg(name: str) -> bool:
    """A yes/no query parameter, false when absent; anything else is refused, not read as no.

    ``?confirmed=ture`` read as false would have emailed a whole imported list.
    """
    raw = query_arg(name)
    value = yes_or_no(raw) if raw.strip() else False
    if value is None:
        raise AppError(f"invalid_{name}", f"{name} must be true or false.", 400, field=name)
    return value


def page_args() -> tuple[int, int]:
    """``page`` and ``per_page`` of a listing (defaults 1 and 50)."""
    return int_query_arg("page", 1, 1, MAX_PAGE), int_query_arg("per_page", 50, 1, MAX_PER_PAGE)


def answer(template: str, body: dict[str, Any], status: int = 200, **context: Any) -> Response:
    """``body`` as JSON or ``template`` as HTML, as the client prefers."""
    if wants_json():
        response = jsonify(body)
    else:
        response = Response(render_template(template, **context), mimetype="text/html")
    response.status_code = status
    return response


class EmailConverter(BaseConverter):
    """A path part that can be an email address (has an ``@``): keeps routes apart.

    The local part may hold a ``/`` (``a/b@example.org`` is a valid address,
    sent as is or as ``%2F``); the domain cannot, so what follows it is the route's.
    """

    regex = r".+@[^/]+"


ROW_ID_MAX = 2**31 - 1  # the id columns' range (PostgreSQL's integer)


class RowIdConverter(BaseConverter):
    """A row's id in a path: any run of digits; one out of the id columns' range is 0.

    ``int(max=...)`` refused such a path outright, and the routing then answered
    Flask's own 404, or a 405 from a neighbouring rule, instead of the
    endpoint's "no post has that id". No row has id 0: the endpoint says so.
    """

    # ASCII digits only (\d took U+0661, Arabic-Indic one, for post 1); a sign, for -1 too.
    regex = r"-?[0-9]+"
    weight = 50  # as int's: the rule wins over a plain string part

    def to_python(self, value: str) -> int:
        """The id, or 0 when the column could not hold it (negative, or too large)."""
        if value.startswith("-"):
            return 0
        digits = value.lstrip("0")
        if len(digits) > len(str(ROW_ID_MAX)):  # never int() of a thousand digits
            return 0
        number = int(digits or "0")
        return number if number <= ROW_ID_MAX else 0

    def to_url(self, value: int) -> str:
        """The id as digits."""
        return str(int(value))


class NoSessions(SessionInterface):
    """No cookie session: nothing here keeps state per visitor, so no signer per request.

    ``flask.session`` is then a ``NullSession``, which refuses writes: code that
    starts to need one fails loudly instead of setting a cookie nobody reads.
    """

    def open_session(self, app: Flask, request: Request) -> SessionMixin:
        """The same empty, read-only session for every request."""
        return self.make_null_session(app)

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        """Nothing to save."""
