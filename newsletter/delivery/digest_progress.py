"""A digest's progress, derived from its deliveries, and its status kept up to date."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import Exists, exists, func, select, update
from sqlalchemy.orm import Session

from ..models import Delivery, DeliveryKind, DeliveryStatus, Digest, DigestStatus, Post, utcnow

_PENDING = (DeliveryStatus.QUEUED, DeliveryStatus.SENDING)
_DELIVERIES, _DIGESTS = Delivery.__table__, Digest.__table__
_UNFINISHED = (DigestStatus.QUEUED, DigestStatus.SENDING)


def digest_counts(session: Session, digest_id: int) -> dict[str, int]:
    """Copies of the digest (test copies aside) by outcome: sent, failed, skipped, pending."""
    rows = session.execute(
        select(Delivery.status, func.count())
        .where(Delivery.digest_id == digest_id, Delivery.kind == DeliveryKind.DIGEST)
        .group_by(Delivery.status)
    ).all()
    by_status = {status: count for status, count in rows}
    return {
        "sent": by_status.get(DeliveryStatus.SENT, 0),
        "failed": by_status.get(DeliveryStatus.FAILED, 0),
        "skipped": by_status.get(DeliveryStatus.SKIPPED, 0),
        "pending": sum(by_status.get(s, 0) for s in _PENDING),
    }


def mark_sending(session: Session, digest_ids: Iterable[int]) -> None:
    """Mark the queued ones of these digests sending (a batch of their copies went); commit."""
    session.execute(
        update(_DIGESTS)
        .where(_DIGESTS.c.id.in_(set(digest_ids)), _DIGESTS.c.status == DigestStatus.QUEUED)
        .values(status=DigestStatus.SENDING, started_at=utcnow())
    )
    session.commit()


def settle(session: Session, digest_ids: Iterable[int]) -> set[int]:
    """Mark digests sent or failed once no copy is pending; commit; the ones it finished.

    A digest that ends failed (no copy went out) gives its posts back. A
    dispatch pass runs it as it ends, and every second of a longer one, for
    the digests it sent copies of, not after each batch: the pending check
    reads the digest's copies, and PostgreSQL's planner, while most of them
    are queued, scans the table, so each batch's check read past every copy
    sent before it (6.7-7.7 µs a message at 100,000, ``bench/phases.py``).
    """
    now = utcnow()
    finished: set[int] = set()
    for digest_id in set(digest_ids):
        still_pending = session.scalar(select(_pending_copy(digest_id)))
        if not still_pending:
            _finish(session, digest_id, now)
            finished.add(digest_id)
    session.commit()
    return finished


SETTLE_EVERY_SECONDS = 60.0  # how often a dispatcher or Celery beat runs settle_stalled


def settle_stalled(session: Session) -> int:
    """Finish every unfinished digest none of whose copies is pending; how many. Commits.

    A dispatcher that dies, or whose pass fails, between recording a
    digest's last batch and settling it (as its pass ends) leaves no copy
    pending, so no later pass would settle it, whether it was marked sending
    or, its only batch, not yet: this job does.
    """
    stalled = session.scalars(
        select(_DIGESTS.c.id).where(
            _DIGESTS.c.status.in_(_UNFINISHED), ~_pending_copy(_DIGESTS.c.id)
        )
    ).all()
    now = utcnow()
    for digest_id in stalled:
        _finish(session, digest_id, now)
    session.commit()
    return len(stalled)


def _pending_copy(digest_id) -> Exists:
    """Whether a copy of the digest (a test copy aside) is still queued or being sent."""
    return exists().where(
        _DELIVERIES.c.digest_id == digest_id,
        _DELIVERIES.c.status.in_(_PENDING),
        _DELIVERIES.c.kind == DeliveryKind.DIGEST,
    )


def _finish(session: Session, digest_id: int, now: datetime) -> None:
    """Mark a digest with no pending copy sent, or failed if none went out (posts back)."""
    counts = digest_counts(session, digest_id)
    final = (
        DigestStatus.FAILED if counts["sent"] == 0 and counts["failed"] > 0 else DigestStatus.SENT
    )
    ended = session.execute(
        update(_DIGESTS)
        .where(_DIGESTS.c.id == digest_id, _DIGESTS.c.status.in_(_UNFINISHED))
        .values(
            status=final,
            started_at=func.coalesce(_DIGESTS.c.started_at, now),
            finished_at=now,
        )
    )
    if final is DigestStatus.FAILED and ended.rowcount:
        # No reader got these posts: the next digest offers them again.
        session.execute(update(Post).where(Post.digest_id == digest_id).values(digest_id=None))
