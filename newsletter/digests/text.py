"""Cleaning what posts carry: plain-text summaries and links a reader may follow."""

from __future__ import annotations

import html
import re
from urllib.parse import quote, urlsplit

import nh3

SUMMARY_MAX_CHARS = 300
_SPACES = re.compile(r"\s+")
# Controls that are not white space (which _SPACES folds): no page or email shows
# them, and PostgreSQL's text cannot hold NUL.
_CONTROLS = re.compile(r"[\x00-\x08\x0e-\x1b\x7f]")


def single_line(raw: str) -> str:
    """Text as given, on one line: spaces collapsed, controls (NUL included) gone."""
    return _SPACES.sub(" ", _CONTROLS.sub("", raw)).strip()


def _plain(raw: str) -> str:
    """``single_line`` of the text with its markup gone (nh3 drops every tag, and
    script/style content; its entities are unescaped back)."""
    return single_line(html.unescape(nh3.clean(_CONTROLS.sub("", raw), tags=set())))


def plain_summary(raw: str | None, limit: int = SUMMARY_MAX_CHARS) -> str | None:
    """The summary as plain text: markup and scripts gone, spaces collapsed, shortened."""
    if not raw:
        return None
    text = _plain(raw)
    if not text:
        return None
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(" ", 1)[0] or text[:limit]
    return cut.rstrip(" ,.;:-") + "…"


def one_line(raw: str | None, limit: int) -> str | None:
    """A title or a name: plain text on one line, at most ``limit`` characters."""
    if raw is None:
        return None
    return _plain(raw)[:limit] or None


# Characters a URL may hold as they are; anything else (quotes, <, >, spaces...)
# is percent-encoded, as a browser would, so no link can break out of markup.
_URL_SAFE = ":/?#[]@!$&'()*+,;=%~-._"


def web_url(raw: str) -> str | None:
    """The URL percent-encoded where needed if it is an absolute http(s) link, else None."""
    url = quote(raw.strip(), safe=_URL_SAFE)
    return url if is_web_url(url) else None


def is_web_url(url: str) -> bool:
    """True for an absolute http(s) URL with a host: the only links put in an email."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname) and not _SPACES.search(url)
