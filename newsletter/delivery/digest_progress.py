"""A digest's progress, derived from its deliveries, and its status kept up to date."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import Exists, and_, case, exists, func, literal, select, update
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
    """Mark the queued ones of these digests sending (a batch of their copies went).

    In the caller's transaction: the dispatcher commits it with the batch's
    answers (one commit a batch, not two), after writing them, so the digest's
    row stays locked only for that commit, not while the answers are written
    (another sender marking the same digest would wait that long).
    """
    ids = set(digest_ids)
    if ids:
        session.execute(
            update(_DIGESTS)
            .where(_DIGESTS.c.id.in_(ids), _DIGESTS.c.status == DigestStatus.QUEUED)
            .values(status=DigestStatus.SENDING, started_at=utcnow())
        )


def settle(session: Session, digest_ids: Iterable[int]) -> set[int]:
    """Mark digests sent or failed once no copy is pending; commit; the ones it finished.

    A digest no copy of which went out (failed, or every copy skipped) gives its
    posts back. A
    dispatch pass runs it as it ends, and every second of a longer one, for
    the digests it sent copies of, not after each batch: the pending check
    reads the digest's copies, and PostgreSQL's planner, while most of them
    are queued, scans the table, so each batch's check read past every copy
    sent before it (6.7-7.7 µs a message at 100,000, ``bench/phases.py``).
    """
    now = utcnow()
    finished = {digest_id for digest_id in set(digest_ids) if _finish(session, digest_id, now)}
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
    finished = sum(_finish(session, digest_id, now) for digest_id in stalled)
    session.commit()
    return finished


def _copy_in(digest_id, *statuses: DeliveryStatus) -> Exists:
    """Whether a copy of the digest (a test copy aside) is in one of ``statuses``."""
    return exists().where(
        _DELIVERIES.c.digest_id == digest_id,
        _DELIVERIES.c.status.in_(statuses),
        _DELIVERIES.c.kind == DeliveryKind.DIGEST,
    )


def _pending_copy(digest_id) -> Exists:
    """Whether a copy of the digest (a test copy aside) is still queued or being sent."""
    return _copy_in(digest_id, *_PENDING)


# Sent, unless no copy went out and one failed for good: then failed.
_FINAL_STATUS = case(
    (
        and_(
            ~_copy_in(_DIGESTS.c.id, DeliveryStatus.SENT),
            _copy_in(_DIGESTS.c.id, DeliveryStatus.FAILED),
        ),
        literal(DigestStatus.FAILED, _DIGESTS.c.status.type),
    ),
    else_=literal(DigestStatus.SENT, _DIGESTS.c.status.type),
)


def _finish(session: Session, digest_id: int, now: datetime) -> bool:
    """Mark the digest sent or failed if no copy is pending (none sent: posts back); done?

    One statement, whose subqueries read the digest index: it used to be a
    pending check, a count of every copy by status, then the update.
    """
    final = session.execute(
        update(_DIGESTS)
        .where(
            _DIGESTS.c.id == digest_id,
            _DIGESTS.c.status.in_(_UNFINISHED),
            ~_pending_copy(_DIGESTS.c.id),
        )
        .values(
            status=_FINAL_STATUS,
            started_at=func.coalesce(_DIGESTS.c.started_at, now),
            finished_at=now,
        )
        .returning(_DIGESTS.c.status)
    ).scalar()
    if final is None:
        return False
    # No reader got these posts (every copy failed, or every reader left or was erased
    # before theirs): the next digest offers them again. Asked once, as the digest
    # ends. (Not in the RETURNING above: SQLAlchemy writes its columns there without
    # their table, so a subquery's "digests.id" read the deliveries' own id.)
    session.execute(
        update(Post)
        .where(Post.digest_id == digest_id, ~_copy_in(digest_id, DeliveryStatus.SENT))
        .values(digest_id=None)
    )
    return True
