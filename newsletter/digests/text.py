"""Cleaning what posts carry: plain-text summaries and links a reader may follow."""

from __future__ import annotations

import html
import ipaddress
import re
from collections.abc import Callable
from urllib.parse import quote, urlsplit, urlunsplit

import idna
import nh3

SUMMARY_MAX_CHARS = 300
_SPACES = re.compile(r"\s+")
# Controls that are not white space (which _SPACES folds): no page or email shows
# them, and PostgreSQL's text cannot hold NUL.
_CONTROLS = re.compile(r"[\x00-\x08\x0e-\x1b\x7f]")
# Tags a browser shows as a break between words: kept through the clean-up, then
# each made a space, so "<p>One.</p><p>Two</p>" reads "One. Two", not "One.Two".
_BLOCK_TAGS = frozenset(
    (  # noqa: SIM905 (a word list reads best as words)
        "address article aside blockquote br dd div dl dt figcaption figure footer h1 h2 h3 h4 "
        "h5 h6 header hr li main nav ol p pre section table tbody td tfoot th thead tr ul"
    ).split()
)
# In nh3's output every ``<`` of the text is escaped: what is left is a tag it kept.
_KEPT_TAG = re.compile(r"<[^>]*>")


def single_line(raw: str) -> str:
    """Text as given, on one line: spaces collapsed, controls (NUL included) gone."""
    return _SPACES.sub(" ", _CONTROLS.sub("", raw)).strip()


def _plain(raw: str) -> str:
    """``single_line`` of the text with its markup gone (nh3 drops script/style content
    and every tag but the blocks, which become spaces; its entities are unescaped back)."""
    blocks = nh3.clean(_CONTROLS.sub("", raw), tags=_BLOCK_TAGS, attributes={}, link_rel=None)
    return single_line(html.unescape(_KEPT_TAG.sub(" ", blocks)))


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


def text_line(raw: str | None, limit: int) -> str | None:
    """A title, author or subject as written (no markup taken out), on one line, shortened."""
    return single_line(raw or "")[:limit] or None


class TooLong(ValueError):
    """A value past its field's limit, refused where a feed's would be cut."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"at most {limit} characters")
        self.limit = limit


Cleaner = Callable[[str | None, int], str | None]  # text_line, one_line: cleans and cuts


def whole(clean: Cleaner, raw: str | None, limit: int) -> str | None:
    """``clean(raw, limit)``, or ``TooLong`` where it would have cut: an admin's own value."""
    line = clean(raw, limit + 1)
    if line is not None and len(line) > limit:
        raise TooLong(limit)
    return line


def one_line(raw: str | None, limit: int) -> str | None:
    """A title or a name: plain text on one line, at most ``limit`` characters."""
    if raw is None:
        return None
    return _plain(raw)[:limit] or None


# Characters a URL may hold as they are; anything else (quotes, <, >, spaces...)
# is percent-encoded, as a browser would, so no link can break out of markup.
_URL_SAFE = ":/?#[]@!$&'()*+,;=%~-._"


_DEFAULT_PORTS = {"http": 80, "https": 443}


def web_url(raw: str, *, user_allowed: bool = False) -> str | None:
    """The link as a post keeps it, or None unless it is an absolute http(s) URL to a host.

    Scheme and host in lower case (``HTTP://A.EXAMPLE/x`` is the post at
    ``http://a.example/x``), an international host as its ``xn--`` form, no
    default port (``https://a.example:443/x`` is ``https://a.example/x``), an
    empty path as ``/``, the rest percent-encoded where needed. Refused: a
    host that is no host name or IP address (``exa mple.com``, ``a..b``,
    ``%00a``, ``256.1.1.1``), a port out of range, and a user name before the
    host (``https://bank.example@evil.example``) unless ``user_allowed`` (a
    private feed's address, never shown to a reader).
    """
    try:
        parts = urlsplit(raw.strip())
        port = parts.port
    except ValueError:  # a port that is no number, or out of range; a broken IPv6 host
        return None
    scheme = parts.scheme.lower()
    host = _link_host(parts.hostname or "")
    user = parts.netloc.rpartition("@")[0]
    if scheme not in ("http", "https") or host is None or port == 0 or (user and not user_allowed):
        return None
    netloc = f"[{host}]" if ":" in host else host
    if port is not None and port != _DEFAULT_PORTS[scheme]:
        netloc = f"{netloc}:{port}"
    if user:
        netloc = f"{user}@{netloc}"
    path = parts.path or "/"
    url = quote(urlunsplit((scheme, netloc, path, parts.query, parts.fragment)), _URL_SAFE)
    return None if _SPACES.search(url) else url


# One label of an ASCII host name; "_" is let through, as browsers do.
_ASCII_LABEL = re.compile(r"(?!-)[a-z0-9_-]{1,63}(?<!-)")


def _link_host(host: str) -> str | None:
    """``urlsplit``'s host (lower case, no brackets) as a link carries it, or None."""
    if ":" in host:
        try:
            return ipaddress.IPv6Address(host).compressed
        except ValueError:
            return None
    name = host[:-1] if host.endswith(".") else host  # one final dot names the same host
    if not name or len(name) > 253:
        return None
    if name.isascii():
        labels = name.split(".")
        if all(label.isdigit() for label in labels):  # an IPv4 address, or no host at all
            try:
                return str(ipaddress.IPv4Address(name))
            except ValueError:
                return None
        labels_ok = all(_ASCII_LABEL.fullmatch(label) for label in labels)
        return host if labels_ok else None
    try:
        return idna.encode(name, uts46=True).decode() + host[len(name) :]
    except idna.IDNAError:
        return None
