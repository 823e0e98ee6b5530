"""The digest email: the body shared by every copy rendered once, the rest per reader.

The shared text and HTML are rendered (and the HTML's CSS inlined) once per
digest, with a random placeholder where each reader's unsubscribe link goes;
a copy is the shared body with its own link put in, and its own headers.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import css_inline
from flask import current_app, render_template
from sqlalchemy import func, select

from ..digests.posts import newest_first
from ..extensions import db
from ..models import SUPPRESSED, DeliveryKind, Digest, Post, Status, Subscriber
from ..providers import Message, Stream
from ..providers.mime import phrase_header
from ..tokens import TEST_COPY_READER, current_tokens
from .ledger import Claimed
from .render import MarkedBody, for_subscribers_in, new_mark, public_link, renderer

CACHE_SIZE = 8
# The template's own <style data-css-inline="keep"> carries the media queries; with
# keep_at_rules the inliner also wrote a second copy, in a <style> before <meta charset>.
_inliner = css_inline.CSSInliner()


@dataclass(frozen=True)
class SharedBody:
    """A digest's subject, and its body with a mark for the reader's unsubscribe link."""

    subject: str
    body: MarkedBody
    placeholder: str

    def for_reader(self, unsubscribe_url: str) -> tuple[str, str]:
        """The text and HTML of one reader's copy."""
        return self.body.fill({self.placeholder: unsubscribe_url})


def _safe_link(url: str) -> str | None:
    """The post's link if it is http(s) (checked at input too), else none at all."""
    return url if urlsplit(url).scheme in ("http", "https") else None


def _site_of(posts: Sequence[Post], feed_url: str) -> str | None:
    """The home of the blog: where the posts a digest leaves out are.

    The site of ``FEED_URL`` when set (the blog's own feed), else of the newest
    post: a post added by the admin API may link to another site (a
    newspaper's article about the clinic), and the link went there.
    """
    link = _safe_link(feed_url) if feed_url else None
    if link is None:
        link = _safe_link(posts[0].url) if posts else None
    if link is None:
        return None
    parts = urlsplit(link)
    return f"{parts.scheme}://{parts.netloc}/"


def render_shared(
    subject: str, posts: Sequence[Post], test_copy: bool = False, total: int | None = None
) -> SharedBody:
    """Render the parts of a digest that are the same for every reader (or every test copy).

    ``posts`` newest first; ``total``, how many the digest holds, if more than given.
    A test copy says so at the top and in its footer: its reader never subscribed.
    Past ``DIGEST_MAX_POSTS`` the oldest posts are only counted, with a link to the
    blog: a first digest of a whole archive was megabytes, clipped by Gmail at 102 KB.
    """
    config = current_app.config
    placeholder = new_mark("unsubscribe")
    shown = posts[: config["DIGEST_MAX_POSTS"]]
    zone = ZoneInfo(config["NEWSLETTER_TIMEZONE"])
    context = {
        "test_copy": test_copy,
        "newsletter": config["NEWSLETTER_NAME"],
        "subject": subject,
        "more": (len(posts) if total is None else total) - len(shown),
        "more_url": _site_of(shown, config["FEED_URL"]),
        "posts": [_shown(p, p.shown_at.astimezone(zone)) for p in shown],
        "unsubscribe_url": placeholder,
        "postal_address": config["MAIL_POSTAL_ADDRESS"],
        "public_url": config["PUBLIC_URL"],
    }
    text = render_template("emails/digest.txt", **context)
    html = _inliner.inline(render_template("emails/digest.html", **context))
    return SharedBody(subject, MarkedBody(text, html, (placeholder,)), placeholder)


def _shown(post: Post, local: datetime) -> dict[str, str | None]:
    """What the templates show of a post, dated ``local`` (in the newsletter's zone)."""
    return {
        "title": post.title,
        "url": _safe_link(post.url),
        "summary": post.summary,
        "author": post.author,
        "date": local.strftime("%B %-d, %Y"),
        "iso_date": local.date().isoformat(),
    }


def list_id() -> str:
    """The ``List-Id`` header: the newsletter's name and an id under our public host.

    In ASCII whatever the name (an encoded word for ``Café News``): the HTTP
    providers take header values as given, and a header is ASCII.
    """
    config = current_app.config
    name = config["NEWSLETTER_NAME"].replace('"', "").replace("\\", "")
    host = urlsplit(config["PUBLIC_URL"]).hostname or "localhost"
    return phrase_header(f'"{name}" <digest.{host}>', "List-Id")


def _shared_for(digest_id: int, test_copy: bool = False) -> SharedBody:
    """The digest's shared body (or its test copies'), cached in this process or rendered now."""
    cache: OrderedDict[tuple[int, bool], SharedBody] = current_app.extensions.setdefault(
        "newsletter.digest_bodies", OrderedDict()
    )
    key = (digest_id, test_copy)
    if key in cache:
        cache.move_to_end(key)
        return cache[key]
    digest = db.session.get_one(Digest, digest_id)
    # Only the posts shown are loaded; the rest are counted (a whole archive's thousands).
    held = Post.digest_id == digest_id
    posts = db.session.scalars(
        select(Post)
        .where(held)
        .order_by(*newest_first())
        .limit(current_app.config["DIGEST_MAX_POSTS"])
    ).all()
    total = db.session.scalar(select(func.count()).select_from(Post).where(held)) or 0
    shared = render_shared(digest.subject, posts, test_copy, total)
    cache[key] = shared
    while len(cache) > CACHE_SIZE:
        cache.popitem(last=False)
    return shared


class _Copies:
    """Builds a batch's copies: what they all share is looked up once per batch."""

    def __init__(self, test: bool) -> None:
        self.test = test
        self.sender = current_app.config["MAIL_FROM"]
        self.list_id = list_id()
        self.unsubscribe_base = public_link("/unsubscribe/")
        self.sign = current_tokens().unsubscribe_token
        self.bodies: dict[int, SharedBody] = {}

    def shared(self, digest_id: int) -> SharedBody:
        """The digest's shared body, fetched from the process cache once per batch."""
        body = self.bodies.get(digest_id)
        if body is None:
            body = self.bodies[digest_id] = _shared_for(digest_id, self.test)
        return body

    def message(self, delivery: Claimed, to: str, public_id: str | None) -> Message:
        """One reader's copy: the shared body with the reader's own unsubscribe link."""
        shared = self.shared(delivery.digest_id or 0)
        # A test copy's link names no subscriber: following it unsubscribes nobody.
        unsubscribe_url = self.unsubscribe_base + self.sign(public_id or TEST_COPY_READER)
        text, html = shared.for_reader(unsubscribe_url)
        return Message(
            key=delivery.message_key,
            to=to,
            sender=self.sender,
            subject=f"[Test] {shared.subject}" if self.test else shared.subject,
            text=text,
            html=html,
            headers={
                "List-Unsubscribe": f"<{unsubscribe_url}>",
                "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
                "List-Id": self.list_id,
            },
            tags=("digest-test",) if self.test else ("digest", f"digest-{delivery.digest_id}"),
            stream=Stream.BROADCAST,
        )


@renderer(DeliveryKind.DIGEST)
def render_digests(deliveries: Sequence[Claimed]) -> list[Message | None]:
    """One copy per still-confirmed subscriber; None (skip) for one who left meanwhile."""
    copies = _Copies(test=False)
    return for_subscribers_in(
        Status.CONFIRMED,
        deliveries,
        lambda d, subscriber: copies.message(d, subscriber.email, subscriber.public_id),
    )


@renderer(DeliveryKind.DIGEST_TEST)
def render_digest_tests(deliveries: Sequence[Claimed]) -> list[Message | None]:
    """A test copy to the address the admin gave; none (skip) if it bounced or complained since."""
    copies = _Copies(test=True)
    addresses = {d.to_address for d in deliveries if d.to_address}
    suppressed = set(
        db.session.scalars(
            select(Subscriber.email).where(
                Subscriber.email.in_(addresses),
                Subscriber.status.in_(SUPPRESSED),
            )
        )
    )
    return [
        copies.message(d, d.to_address, None)
        if d.to_address and d.to_address not in suppressed
        else None
        for d in deliveries
    ]
