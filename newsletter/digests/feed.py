"""Importing posts from the blog's RSS or Atom feed: fetch, parse, de-duplicate, store."""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit
from xml.sax import SAXException

import feedparser
import requests
import urllib3
from sqlalchemy import Row, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..models import Post, utcnow
from .feed_http import Deadline, session_within
from .posts import (
    AUTHOR_MAX,
    TITLE_MAX,
    URL_MAX,
    NewPost,
    add_post,
    clean_categories,
    post_at,
)
from .text import one_line, plain_summary, text_line, web_url

USER_AGENT = "newsletter-feed-import/1.0"
LINK_GUID = "link:"  # the guid of an entry that has none: its first link, so marked
# Posts stored per transaction: on SQLite, other writers wait while one is open.
STORE_CHUNK = 500


class FeedError(Exception):
    """The feed could not be used; nothing was imported. ``status`` is the HTTP answer to give."""

    def __init__(self, code: str, message: str, status: int) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


@dataclass
class FeedReport:
    """What an import did."""

    created: list[dict[str, Any]] = field(default_factory=list)  # each post as the API shows it
    duplicates: int = 0
    invalid: int = 0
    updated: int = 0  # of the duplicates, waiting posts whose text the feed changed

    def to_dict(self) -> dict[str, Any]:
        """The report as the admin API shows it."""
        return {
            "created": len(self.created),
            "duplicates": self.duplicates,
            "updated": self.updated,
            "invalid": self.invalid,
            "posts": self.created,
        }


@dataclass(frozen=True)
class Fetched:
    """A feed as fetched: its bytes, content type, and the URL it came from (redirects taken)."""

    body: bytes
    content_type: str
    url: str


def fetch(url: str, timeout: float, max_bytes: int) -> Fetched:
    """The feed, or ``FeedError`` (502 when the far side failed, or took over ``timeout`` s).

    ``timeout`` bounds the whole fetch (connect, headers, every redirect, body), not
    each read: a server sending a byte at a time would otherwise hold the request
    (or the command) for minutes.
    """
    address = web_url(url, user_allowed=True)  # a private feed may need its credentials
    if address is None:
        raise FeedError("invalid_url", "The feed URL must be an absolute http(s) link.", 422)
    deadline = Deadline(timeout)
    # The watchdog stops before the session closes the sockets: it never shuts down
    # a descriptor that, closed, may already be another connection's.
    with session_within(deadline) as session, deadline:
        try:
            fetched = _download(session, address, max_bytes)
        except (requests.RequestException, urllib3.exceptions.HTTPError) as exc:  # read1's
            if deadline.passed:
                raise _too_slow(timeout) from None
            raise FeedError(
                "feed_unreachable", f"The feed could not be fetched ({type(exc).__name__}).", 502
            ) from None
        # Cut by the watchdog, a fetch may also end as if complete: http.client takes
        # the end of the stream amid the headers for their end, and no length, the body's.
        if deadline.passed:
            raise _too_slow(timeout)
        return fetched


def _too_slow(timeout: float) -> FeedError:
    return FeedError("feed_unreachable", f"The feed took over {timeout:g} s to arrive.", 502)


def _download(session: requests.Session, url: str, max_bytes: int) -> Fetched:
    with session.get(url, stream=True, headers={"User-Agent": USER_AGENT}) as response:
        if response.status_code >= 400:
            raise FeedError(
                "feed_unreachable", f"The feed answered HTTP {response.status_code}.", 502
            )
        body = bytearray()
        # read1: what has arrived, decompressed (gzip), at most 64 KiB; a plain read
        # (iter_content's) waits until it has the whole size asked for, or the end.
        while chunk := response.raw.read1(64 * 1024, decode_content=True):
            body += chunk
            if len(body) > max_bytes:
                raise FeedError("feed_too_large", f"The feed is over {max_bytes} bytes.", 502)
        return Fetched(bytes(body), response.headers.get("Content-Type", ""), response.url)


def parse(body: bytes, content_type: str, url: str) -> list[NewPost | None]:
    """The feed's entries as posts (None for an entry with no usable title or link).

    ``url``, where the feed came from, resolves relative links (``/2024/01/post/``),
    without its credentials: a post's link carries none (``web_url`` refuses them).
    """
    headers = {"content-type": content_type, "content-location": _without_credentials(url)}
    parsed = feedparser.parse(body, response_headers=headers)
    problem = parsed.get("bozo_exception")
    if not parsed.get("version"):
        detail = f" ({type(problem).__name__})" if problem else ""
        raise FeedError("invalid_feed", f"That is not an RSS or Atom feed{detail}.", 422)
    if isinstance(problem, SAXException):
        # Truncated or malformed XML: importing whatever parsed would be a guess.
        raise FeedError("invalid_feed", f"The feed is not well-formed XML: {problem}.", 422)
    return [_entry_post(entry) for entry in parsed.entries]


def _without_credentials(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def _entry_post(entry: Any) -> NewPost | None:
    link = web_url(entry.get("link") or "")
    raw_title = entry.get("title") or ""
    if entry.get("title_detail", {}).get("type") == "text/plain":
        title = text_line(raw_title, TITLE_MAX)  # as written: "<details>" is text
    else:
        title = one_line(raw_title, TITLE_MAX)  # HTML (RSS's kind): markup dropped
    if not title or link is None or len(link) > URL_MAX:
        return None
    summary = entry.get("summary")
    if not summary and entry.get("content"):
        summary = entry.content[0].get("value")
    # No guid: the link is the entry's identity, kept as its guid (marked, apart from
    # feeds' own guids), so a post whose link the admin corrects is still known by the
    # feed's (it came back as a second post).
    guid = (entry.get("id") or "").strip()[:URL_MAX] or f"{LINK_GUID}{link}"[:URL_MAX]
    return NewPost(
        title=title,
        url=link,
        summary=plain_summary(summary),
        author=author_name(entry.get("author")),
        published_at=_entry_time(entry),
        categories=clean_categories(tag.get("term") for tag in entry.get("tags", [])),
        guid=guid,
    )


# An email address, as feeds write one (feedparser's author_detail splits some wrongly:
# "jane@clinic.example (Jane Doe)" gave the address "jane@clinic.exam").
# A fediverse handle (@jane@mastodon.social) is an address too: its "@" goes with it.
_ADDRESS = r"(?:mailto:|@)?[^\s<>()\[\],;:\"'@]+@[^\s<>()\[\],;:\"'@]+"
_ADDRESS_THEN_NAME = re.compile(rf"{_ADDRESS}\s*\(([^()]*)\)")  # RSS: addr (Name)
_BRACKETED_ADDRESS = re.compile(rf"[(<\[]\s*{_ADDRESS}\s*[)>\]]")  # Name (addr), Name <addr>
_BARE_ADDRESS = re.compile(_ADDRESS)
_SPACE_BEFORE_COMMA = re.compile(r"\s+(?=[,;])")  # "Ann (addr), Bob": "Ann, Bob"
# What an address leaves behind: "Jane (via )", "Jane ()".
_EMPTIED_BRACKETS = re.compile(
    r"[(\[<]\s*(?:(?:via|by|from|contact|e-?mail|mail)\s*:?\s*)?[)\]>]", re.IGNORECASE
)


def author_name(raw: str | None) -> str | None:
    """The author's name alone: every copy of a digest shows it, never their address."""
    if not raw:
        return None
    text = one_line(raw, len(raw)) or ""  # plain text first: "&lt;addr&gt;" becomes "<addr>"
    text = _ADDRESS_THEN_NAME.sub(r" \1 ", text)
    text = _BARE_ADDRESS.sub(" ", _BRACKETED_ADDRESS.sub(" ", text))
    text = _EMPTIED_BRACKETS.sub(" ", text)
    return text_line(_SPACE_BEFORE_COMMA.sub("", text).strip(" ,;:-\"'"), AUTHOR_MAX)


def _entry_time(entry: Any) -> datetime | None:
    stamp = entry.get("published_parsed") or entry.get("updated_parsed")
    return datetime.fromtimestamp(calendar.timegm(stamp), UTC) if stamp else None


def store(session: Session, posts: list[NewPost | None], mark_sent: bool = False) -> FeedReport:
    """Add the posts not known by guid or URL, committing every ``STORE_CHUNK`` of them.

    A feed lists its newest first: stored from its end, the first of posts with
    one date (or none) gets the highest id, and ``newest_first`` shows it first.
    The report keeps the feed's order. ``mark_sent``: the new posts are stored
    as gone out already (an archive), each chunk so, whatever stops the import.
    The posts known already are brought up to date (``_refresh``).
    """
    marked_sent_at = utcnow() if mark_sent else None
    valid = [post for post in posts if post is not None]
    fresh, known = _sorted_out(session, valid)
    report = FeedReport(duplicates=len(known), invalid=len(posts) - len(valid))
    report.updated = _refresh(session, known, {post.url for post in fresh})
    created: list[dict[str, Any]] = []
    for chunk in _chunks(fresh[::-1]):
        for post in chunk:
            # Stored meanwhile: a duplicate still. A post dated later (scheduled) is not
            # marked, as ``posts.mark_sent`` marks none: it has not gone out anywhere yet.
            scheduled = marked_sent_at and post.published_at and post.published_at > marked_sent_at
            stored, is_new = add_post(session, post, None if scheduled else marked_sent_at)
            if is_new:
                # As shown, before the commit expires it: read back after, each post was
                # one more query (72,000 for a whole archive).
                created.append(stored.to_dict())
            else:
                report.duplicates += 1
        # On SQLite the import is the one writer until it commits: a signup waits its turn.
        session.commit()
    report.created = created[::-1]
    return report


# What a feed import brings up to date in a post no digest has taken that it lists
# again, and its link (``_refresh``).
_REFRESHED = ("title", "summary", "author", "published_at", "categories")


def _refresh(session: Session, posts: list[NewPost], new_links: set[str]) -> int:
    """Bring the stored posts these are up to date, where the feed changed them; how many.

    A publisher who fixes a typo in a title on the blog expects the digest to
    carry the fixed one. A post is the entry of its guid (a feed's own, or the
    link an entry without one had first); one stored with none (before
    2026-12-08, from such an entry or the admin) is not refreshed: its text
    may be the admin's. Only posts no digest has taken (their readers have
    them as they were) and the admin has neither written nor corrected
    (``edited_at``) are changed, each guarded so in its UPDATE: a digest
    triggered meanwhile takes the post as it was, whole. Each is committed
    alone: holding one post's lock while waiting for another's, the import
    and a digest trigger (which locks every waiting post) deadlocked. A new
    link is taken unless a post, or one of this import's ``new_links``, has it.
    """
    seen: set[int] = set()
    changed = 0
    for chunk in _chunks(posts):
        stored = _stored_rows(session, chunk)
        session.commit()  # the read's snapshot (SQLite) ends before the writes
        for post in chunk:
            row = stored.get(post.guid or "")
            if row is None or row.id in seen:  # the feed's first entry for a post wins
                continue
            seen.add(row.id)
            different = _differences(post, row)
            if (
                post.url != row.url
                and post.url not in new_links
                and post_at(session, post.url) is None
            ):
                different["url"] = post.url  # the blog moved it (a slug fixed): same entry
            if different:
                changed += _write_refresh(session, row.id, different)
    return changed


def _write_refresh(session: Session, post_id: int, values: dict[str, Any]) -> int:
    """Write a refresh, guarded, and commit it; 1 if the post took it.

    A new link another post took meanwhile is left out (the rest is written).
    """
    statement = update(Post).where(
        Post.id == post_id, Post.digest_id.is_(None), Post.edited_at.is_(None)
    )
    try:
        written = session.execute(statement.values(**values)).rowcount
    except IntegrityError:
        session.rollback()
        values = {name: value for name, value in values.items() if name != "url"}
        written = session.execute(statement.values(**values)).rowcount if values else 0
    session.commit()
    return written


def _stored_rows(session: Session, chunk: list[NewPost]) -> dict[str, Row]:
    """The refreshable posts (untaken, uncorrected) these entries' guids name, by guid."""
    guids = [post.guid for post in chunk if post.guid]
    rows = session.execute(
        select(Post.id, Post.url, Post.guid, *(getattr(Post, name) for name in _REFRESHED)).where(
            Post.guid.in_(guids), Post.digest_id.is_(None), Post.edited_at.is_(None)
        )
    ).all()
    return {row.guid: row for row in rows}


def _differences(post: NewPost, row: Row) -> dict[str, Any]:
    """The refreshed fields whose value in the feed differs from the stored one."""
    given = {name: getattr(post, name) for name in _REFRESHED}
    given["categories"] = list(post.categories)
    empty = {"categories": []}
    return {
        name: value
        for name, value in given.items()
        if value != (getattr(row, name) or empty.get(name))
    }


def _chunks(posts: list[NewPost]) -> list[list[NewPost]]:
    return [posts[start : start + STORE_CHUNK] for start in range(0, len(posts), STORE_CHUNK)]


def _sorted_out(session: Session, posts: list[NewPost]) -> tuple[list[NewPost], list[NewPost]]:
    """The new posts (guid and URL neither stored nor an earlier entry's), and the rest."""
    guids: set[str] = set()
    urls: set[str] = set()
    fresh: list[NewPost] = []
    known: list[NewPost] = []
    for chunk in _chunks(posts):
        stored_guids, stored_urls = _stored_keys(session, chunk)
        guids |= stored_guids
        urls |= stored_urls
        for post in chunk:
            if post.url in urls or post.guid in guids:
                known.append(post)
                continue
            fresh.append(post)
            urls.add(post.url)
            if post.guid:
                guids.add(post.guid)
    return fresh, known


def _stored_keys(session: Session, posts: list[NewPost]) -> tuple[set[str], set[str]]:
    """Which of the posts' guids and URLs are stored: one query for each, not one per post."""
    guids = [post.guid for post in posts if post.guid]
    urls = [post.url for post in posts]
    stored_guids = session.scalars(select(Post.guid).where(Post.guid.in_(guids)))
    stored_urls = session.scalars(select(Post.url).where(Post.url.in_(urls)))
    return {guid for guid in stored_guids if guid}, set(stored_urls)


def import_feed(
    session: Session, url: str, timeout: float, max_bytes: int, mark_sent: bool = False
) -> FeedReport:
    """Fetch, parse and store a feed; a broken or unreachable one changes nothing.

    ``mark_sent``: its new posts are marked as gone out, for no digest to take.
    """
    fetched = fetch(url, timeout, max_bytes)
    return store(session, parse(fetched.body, fetched.content_type, fetched.url), mark_sent)
