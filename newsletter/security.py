"""Security headers on every answer, and log masking of addresses and tokens."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping

from flask import Flask, Response, request

# The pages whose URL holds a signed token: never cached, never in a log.
TOKEN_PATHS = ("/confirm/", "/unsubscribe/")

# Our pages run no script at all, inline no style, and load nothing from elsewhere.
_PAGE_DIRECTIVES: dict[str, tuple[str, ...]] = {
    "default-src": ("'none'",),
    "style-src": ("'self'",),
    "img-src": ("'self'", "data:"),
    "form-action": ("'self'",),
    "frame-ancestors": ("'none'",),
    "base-uri": ("'none'",),
}


def page_csp(extra: Mapping[str, tuple[str, ...]] | None = None) -> str:
    """Our page policy, with ``extra`` sources added per directive (a CAPTCHA widget's)."""
    directives = dict(_PAGE_DIRECTIVES)
    for name, sources in (extra or {}).items():
        directives[name] = directives.get(name, ()) + tuple(sources)
    return "; ".join(f"{name} {' '.join(sources)}" for name, sources in directives.items())


PAGE_CSP = page_csp()
# An email shown in the admin's browser (the digest preview): its inline styles and
# remote images, never a script.
EMAIL_PREVIEW_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src https: data:; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


def add_security_headers(response: Response) -> Response:
    """A strict CSP and friends; token pages never leak their URL as a referrer.

    A header the view already set is kept.
    """
    path = request.path
    wanted = [("X-Content-Type-Options", "nosniff"), ("Referrer-Policy", "no-referrer")]
    if request.is_secure:  # over HTTPS (or behind a trusted proxy that says so): only that
        wanted.append(("Strict-Transport-Security", "max-age=31536000"))
    if path.startswith("/static/") and response.status_code < 400:
        # The signup widget is loaded by the publisher's pages, from another origin.
        wanted.append(("Cross-Origin-Resource-Policy", "cross-origin"))
    else:
        wanted.append(("X-Frame-Options", "DENY"))
        # Admin HTML (a digest preview) is an email's markup and sets its own policy.
        if response.mimetype == "text/html" and not path.startswith("/admin/"):
            wanted.append(("Content-Security-Policy", PAGE_CSP))
    if path.startswith((*TOKEN_PATHS, "/admin/")):
        wanted.append(("Cache-Control", "no-store"))
    # One pass over the headers: each ``setdefault`` that misses raises and catches
    # a KeyError inside werkzeug, which cost more than the rest of this function.
    headers = response.headers
    present = {name.lower() for name, _ in headers.items()}
    for name, value in wanted:
        if name.lower() not in present:
            headers.add(name, value)
    return response


_TOKEN_PATH = re.compile(f"({'|'.join(map(re.escape, TOKEN_PATHS))})" + r"[^\s/?\"']+")
# An address, also as a URL carries it ("%40", as clients encode a path or a query):
# a local part of anything an address may hold (not a separator of text, paths or
# queries), then the domain.
# A domain with a dot (as every address we take has): "celery@vm" is a worker's name.
_DOMAIN = r"[^\s\"'<>,;/?=&#%@]*\.[^\s\"'<>,;/?=&#%@]+"
_EMAIL = re.compile(r"([^\s\"<>,;:@/?=&])[^\s\"<>,;:@/?=&]*(?:@|%40)(" + _DOMAIN + ")")
# What that leaves of an address whose local part holds a separator too:
# "okaddr&@x.org" (nothing was masked: the whole run before it goes, path and
# all), and "user=smith@x.org" outside a query ("user=s***@": the part before
# the "=" goes too). Inside a query ("?q=c***@") the name of the field stays.
_SEPARATOR_LAST = re.compile(r"[^\s\"'<>,;:@]*[/?=&](?:@|%40)(" + _DOMAIN + ")")
_SEPARATOR_INSIDE = re.compile(
    r"(^|[\s/\"'(<])([^\s\"<>,;:@/?&=])[^\s\"<>,;:@/?&]*=[^\s\"<>,;:@/?&]*\*\*\*@"
)


def mask(text: str) -> str:
    """The text with link tokens cut and addresses reduced to ``a***@domain``."""
    if "@" not in text and "%40" not in text and not any(p in text for p in TOKEN_PATHS):
        return text  # most lines (every access line but the token pages'): no regex
    masked = _EMAIL.sub(r"\1***@\2", _TOKEN_PATH.sub(r"\1***", text))
    masked = _SEPARATOR_LAST.sub(r"***@\1", masked)
    return _SEPARATOR_INSIDE.sub(r"\1\2***@", masked)


class MaskingFilter(logging.Filter):
    """Masks addresses and tokens in every record before a handler writes it."""

    def __init__(self, keep_links: bool = False) -> None:
        super().__init__()
        self.keep_links = keep_links

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record's message, masked; never drops a record."""
        if getattr(record, "unmasked", False) and self.keep_links:
            return True
        message = record.getMessage()
        masked = mask(message)
        if masked != message:
            record.msg, record.args = masked, None
        return True


def install(app: Flask) -> None:
    """Add the headers to every response and the masking filter to every log handler."""
    app.after_request(add_security_headers)
    keep_links = app.config["EMAIL_PROVIDER"] == "outbox"
    loggers = [logging.getLogger(name) for name in ("", "gunicorn.access", "gunicorn.error")]
    for handler in [h for logger in loggers for h in logger.handlers]:
        if not any(isinstance(f, MaskingFilter) for f in handler.filters):
            handler.addFilter(MaskingFilter(keep_links=keep_links))
