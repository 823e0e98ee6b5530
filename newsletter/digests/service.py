"""Digests: take the posts not sent before, snapshot the recipients, follow the sending.

The trigger is one transaction: a digest row whose ``seq`` (max + 1) is
unique, the watermark (``Post.digest_id``) set on every untaken post, and one
``INSERT ... SELECT`` writing a delivery per confirmed subscriber. Two
triggers at once collide on ``seq`` (on PostgreSQL they wait on each other's
lock first, ``db_helpers.hold_recipients``); the loser retries, finds no
untaken post and answers ``no_new_posts``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import current_app
from sqlalchemy import func, insert, literal, or_, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..db_helpers import hold_recipients, is_postgresql
from ..delivery import ledger
from ..delivery.digest_progress import digest_counts
from ..models import (
    Delivery,
    DeliveryKind,
    DeliveryStatus,
    Digest,
    DigestStatus,
    Post,
    Status,
    Subscriber,
    iso,
    utcnow,
)
from ..subscriptions.erasure import is_suppressed
from .posts import newest_first, waiting
from .text import text_line, whole

SUBJECT_MAX = 200
_TRIES = 5


class NoNewPosts(Exception):
    """Every post has gone out already."""


class NoRecipients(Exception):
    """No subscriber is confirmed: the posts wait for a digest someone will get."""

    def __init__(self) -> None:
        super().__init__("No subscriber has confirmed yet: the posts wait for the next digest.")


class DigestNotFound(Exception):
    """No digest has that id."""


def untaken_posts_filter(now: Any) -> Any:
    """Posts no digest has taken yet, not marked as sent, and already published."""
    return (*waiting(), or_(Post.published_at.is_(None), Post.published_at <= now))


def next_posts(session: Session) -> list[Post]:
    """The posts the next digest would carry, newest first."""
    return list(
        session.scalars(
            select(Post).where(*untaken_posts_filter(utcnow())).order_by(*newest_first())
        ).all()
    )


def nothing_to_send(session: Session) -> str:
    """Why no digest can go now: every post went out, or the rest are scheduled for later."""
    scheduled = session.execute(
        select(func.count(), func.min(Post.published_at)).where(
            *waiting(), Post.published_at > utcnow()
        )
    ).one()
    if not scheduled[0]:
        return "Every post has gone out already (or was marked as sent)."
    return (
        "Every post has gone out already (or was marked as sent), but for "
        f"{scheduled[0]} scheduled for later: the first can go from "
        f"{scheduled[1]:%Y-%m-%d %H:%M} UTC."
    )


def confirmed_count(session: Session) -> int:
    """How many subscribers a digest triggered now would go to."""
    return (
        session.scalar(
            select(func.count())
            .select_from(Subscriber)
            .where(Subscriber.status == Status.CONFIRMED)
        )
        or 0
    )


def default_subject(newsletter: str, posts: list[Post]) -> str:
    """The newsletter's name and the newest post's title (and how many others)."""
    subject = f"{newsletter}: {posts[0].title}"
    if len(posts) > 1:
        subject += f" (+{len(posts) - 1:,} more)"
    return subject


def clean_subject(raw: str | None) -> str | None:
    """A subject on one line, or None to use the default; ``TooLong`` rather than cut."""
    return whole(text_line, raw, SUBJECT_MAX)


def create_digest(session: Session, subject: str | None = None) -> Digest:
    """Queue a digest of every untaken post to every confirmed reader (or raise: see below).

    ``NoNewPosts`` when every post has gone out; ``NoRecipients`` when nobody
    is confirmed, the posts left for a later digest.
    """
    for _ in range(_TRIES):
        try:
            return _create_once(session, subject)
        except IntegrityError:
            # Another trigger committed the same seq first: look again.
            session.rollback()
    raise RuntimeError("could not create a digest: too many concurrent triggers")


def _create_once(session: Session, subject: str | None) -> Digest:
    hold_recipients(session, exclusive=True)  # no erasure deletes a reader being copied
    now = utcnow()
    # The write comes first: on SQLite it takes the database's write lock before any read.
    next_seq = select(func.coalesce(func.max(Digest.seq), 0) + 1).scalar_subquery()
    digest_id = session.execute(
        insert(Digest)
        .values(seq=next_seq, subject="", status=DigestStatus.QUEUED, recipients=0, created_at=now)
        .returning(Digest.id)
    ).scalar_one()
    taken = session.execute(
        update(Post)
        .where(*untaken_posts_filter(now))
        .values(digest_id=digest_id)
        .execution_options(synchronize_session=False)
    ).rowcount
    if not taken:
        session.rollback()
        raise NoNewPosts()
    posts = list(
        session.scalars(select(Post).where(Post.digest_id == digest_id).order_by(*newest_first()))
    )
    recipients = session.execute(
        insert(Delivery.__table__).from_select(
            [
                "kind",
                "status",
                "subscriber_id",
                "digest_id",
                "message_key",
                "attempts",
                "next_attempt_at",
                "created_at",
            ],
            select(
                literal(DeliveryKind.DIGEST.value),
                literal(DeliveryStatus.QUEUED.value),
                Subscriber.id,
                literal(digest_id),
                # (digest, subscriber) is unique, so is this key; and it is the same
                # on every retry, which lets providers that take one de-duplicate. The
                # reader's public id (16 characters, in their unsubscribe link already),
                # not the row id: every copy shows its key, and row ids count the list.
                literal(f"digest-{digest_id}-") + Subscriber.public_id,
                literal(0),
                literal(now),
                literal(now),
            ).where(Subscriber.status == Status.CONFIRMED),
        ),
        execution_options={"preserve_rowcount": True},
    ).rowcount
    if not recipients:
        # Taken by a digest to nobody, the posts would never reach the first readers.
        session.rollback()
        raise NoRecipients()
    if is_postgresql(session):
        # Fresh statistics, so the claims of this digest read the due index in order
        # rather than sort every copy (the planner would think the table near empty).
        session.execute(text("ANALYZE deliveries"))
    digest = session.get_one(Digest, digest_id)
    digest.subject = subject or default_subject(current_app.config["NEWSLETTER_NAME"], posts)
    digest.recipients = recipients
    ledger.mark_work_queued(session)
    session.commit()
    return digest


def get_digest(session: Session, digest_id: int) -> Digest:
    """The digest, or ``DigestNotFound``."""
    digest = session.get(Digest, digest_id)
    if digest is None:
        raise DigestNotFound()
    return digest


@dataclass(frozen=True)
class DigestReport:
    """A digest with its live counts and timings."""

    digest: Digest
    counts: dict[str, int]

    def to_dict(self, with_posts: bool = True) -> dict[str, Any]:
        """The digest as the admin API shows it."""
        d = self.digest
        finished = d.finished_at
        body: dict[str, Any] = {
            "id": d.id,
            "seq": d.seq,
            "subject": d.subject,
            "status": d.status.value,
            "recipients": d.recipients,
            **self.counts,
            "created_at": iso(d.created_at),
            "started_at": iso(d.started_at),
            "finished_at": iso(finished),
            "duration_seconds": (
                round((finished - d.created_at).total_seconds(), 3) if finished else None
            ),
        }
        if with_posts:
            body["posts"] = [p.to_dict() for p in sorted(d.posts, key=_post_order)]
        return body


def _post_order(post: Post) -> tuple:
    return (-post.shown_at.timestamp(), -post.id)


def report(session: Session, digest: Digest) -> DigestReport:
    """The digest and its live counts: sent, failed, skipped, pending."""
    return DigestReport(digest, digest_counts(session, digest.id))


def history(session: Session, limit: int = 100) -> list[DigestReport]:
    """The latest digests, newest first, with their counts."""
    digests = session.scalars(select(Digest).order_by(Digest.id.desc()).limit(limit)).all()
    return [report(session, d) for d in digests]


class SuppressedAddress(Exception):
    """The address bounced or complained: no mail goes to it, a test copy neither."""


def queue_test_copy(session: Session, digest: Digest, address: str) -> Delivery:
    """A test copy of the digest to one address, committed; ``SuppressedAddress`` if it may not."""
    if is_suppressed(session, address):
        raise SuppressedAddress(address)
    delivery = ledger.queue(
        session, DeliveryKind.DIGEST_TEST, digest_id=digest.id, to_address=address
    )
    session.commit()
    return delivery


def digests_by_status(session: Session) -> dict[str, int]:
    """How many digests are in each status, every status named (0 when none)."""
    counts = dict(
        session.execute(select(Digest.status, func.count()).group_by(Digest.status)).all()
    )
    return {status.value: counts.get(status, 0) for status in DigestStatus}
