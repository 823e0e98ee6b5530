"""Importing posts from the blog's RSS or Atom feed: fetch, parse, de-duplicate, store."""

from __future__ import annotations

import calendar
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from xml.sax import SAXException

import feedparser
import requests
import urllib3
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from ..models import Post
from .posts import AUTHOR_MAX, TITLE_MAX, URL_MAX, NewPost, add_post, clean_categories
from .text import is_web_url, one_line, plain_summary, text_line, web_url

USER_AGENT = "newsletter-feed-import/1.0"


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

    created: list[Post] = field(default_factory=list)
    duplicates: int = 0
    invalid: int = 0

    def to_dict(self) -> dict[str, Any]:
        """The report as the admin API shows it."""
        return {
            "created": len(self.created),
            "duplicates": self.duplicates,
            "invalid": self.invalid,
            "posts": [p.to_dict() for p in self.created],
        }


@dataclass(frozen=True)
class Fetched:
    """A feed as fetched: its bytes, content type, and the URL it came from (redirects taken)."""

    body: bytes
    content_type: str
    url: str


def fetch(url: str, timeout: float, max_bytes: int) -> Fetched:
    """The feed, or ``FeedError`` (502 when the far side failed, or took over ``timeout`` s).

    ``timeout`` bounds the whole fetch, not each read: a server sending a byte
    at a time would otherwise hold the request (or the command) for minutes.
    """
    if not is_web_url(url, user_allowed=True):  # a private feed may need its credentials
        raise FeedError("invalid_url", "The feed URL must be an absolute http(s) link.", 422)
    deadline = time.monotonic() + timeout
    try:
        with requests.get(
            url, timeout=timeout, stream=True, headers={"User-Agent": USER_AGENT}
        ) as response:
            if response.status_code >= 400:
                raise FeedError(
                    "feed_unreachable",
                    f"The feed answered HTTP {response.status_code}.",
                    502,
                )
            body = bytearray()
            # read1: what has arrived, decompressed (gzip), at most 64 KiB; a plain read
            # (iter_content's) waits until it has the whole size asked for, or the end.
            while chunk := response.raw.read1(64 * 1024, decode_content=True):
                body += chunk
                if len(body) > max_bytes:
                    raise FeedError("feed_too_large", f"The feed is over {max_bytes} bytes.", 502)
                if time.monotonic() > deadline:
                    raise FeedError(
                        "feed_unreachable", f"The feed took over {timeout:g} s to arrive.", 502
                    )
            return Fetched(bytes(body), response.headers.get("Content-Type", ""), response.url)
    except (requests.RequestException, urllib3.exceptions.HTTPError) as exc:  # read1 is urllib3's
        raise FeedError(
            "feed_unreachable", f"The feed could not be fetched ({type(exc).__name__}).", 502
        ) from None


def parse(body: bytes, content_type: str, url: str) -> list[NewPost | None]:
    """The feed's entries as posts (None for an entry with no usable title or link).

    ``url``, where the feed came from, resolves relative links (``/2024/01/post/``).
    """
    headers = {"content-type": content_type, "content-location": url}
    parsed = feedparser.parse(body, response_headers=headers)
    problem = parsed.get("bozo_exception")
    if not parsed.get("version"):
        detail = f" ({type(problem).__name__})" if problem else ""
        raise FeedError("invalid_feed", f"That is not an RSS or Atom feed{detail}.", 422)
    if isinstance(problem, SAXException):
        # Truncated or malformed XML: importing whatever parsed would be a guess.
        raise FeedError("invalid_feed", f"The feed is not well-formed XML: {problem}.", 422)
    return [_entry_post(entry) for entry in parsed.entries]


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
    guid = (entry.get("id") or "").strip()[:URL_MAX] or None
    return NewPost(
        title=title,
        url=link,
        summary=plain_summary(summary),
        author=one_line(entry.get("author"), AUTHOR_MAX),
        published_at=_entry_time(entry),
        categories=clean_categories(tag.get("term") for tag in entry.get("tags", [])),
        guid=guid,
    )


def _entry_time(entry: Any) -> datetime | None:
    stamp = entry.get("published_parsed") or entry.get("updated_parsed")
    return datetime.fromtimestamp(calendar.timegm(stamp), UTC) if stamp else None


def store(session: Session, posts: list[NewPost | None]) -> FeedReport:
    """Add the posts not known by guid, then by URL; commit once."""
    report = FeedReport()
    for post in posts:
        if post is None:
            report.invalid += 1
            continue
        known = session.scalar(
            select(Post.id).where(
                or_(Post.guid == post.guid, Post.url == post.url)
                if post.guid
                else Post.url == post.url
            )
        )
        if known is not None:
            report.duplicates += 1
            continue
        stored, created = add_post(session, post)
        if created:
            report.created.append(stored)
        else:
            report.duplicates += 1
    session.commit()
    return report


def import_feed(session: Session, url: str, timeout: float, max_bytes: int) -> FeedReport:
    """Fetch, parse and store a feed; a broken or unreachable one changes nothing."""
    fetched = fetch(url, timeout, max_bytes)
    return store(session, parse(fetched.body, fetched.content_type, fetched.url))
