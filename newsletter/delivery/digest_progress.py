"""A digest's progress, derived from its deliveries, and its status kept up to date."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import event, func, select, update
from sqlalchemy.orm import Session

from ..models import Delivery, DeliveryKind, DeliveryStatus, Digest, DigestStatus, Post, utcnow

_PENDING = (DeliveryStatus.QUEUED, DeliveryStatus.SENDING)
_DELIVERIES, _DIGESTS = Delivery.__table__, Digest.__table__
_STARTED = "newsletter.digests_started"  # session.info: digests this session marked sending


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


def settle(session: Session, digest_ids: Iterable[int]) -> None:
    """Mark digests sending once touched, and sent or failed once no copy is pending; commit.

    A digest that ends failed (no copy went out) gives its posts back. Runs
    after every batch, so its statements are Core (no ORM compilation), and
    a digest this session already marked sending is not marked again.
    """
    now = utcnow()
    started = session.info.setdefault(_STARTED, set())
    marked = set()
    for digest_id in set(digest_ids):
        if digest_id not in started:
            session.execute(
                update(_DIGESTS)
                .where(_DIGESTS.c.id == digest_id, _DIGESTS.c.status == DigestStatus.QUEUED)
                .values(status=DigestStatus.SENDING, started_at=now)
            )
            marked.add(digest_id)
        still_pending = session.scalar(
            select(_DELIVERIES.c.id)
            .where(
                _DELIVERIES.c.digest_id == digest_id,
                _DELIVERIES.c.status.in_(_PENDING),
                _DELIVERIES.c.kind == DeliveryKind.DIGEST,
            )
            .limit(1)
        )
        if still_pending is not None:
            continue
        marked.discard(digest_id)
        started.discard(digest_id)
        counts = digest_counts(session, digest_id)
        final = (
            DigestStatus.FAILED
            if counts["sent"] == 0 and counts["failed"] > 0
            else DigestStatus.SENT
        )
        ended = session.execute(
            update(_DIGESTS)
            .where(_DIGESTS.c.id == digest_id, _DIGESTS.c.status == DigestStatus.SENDING)
            .values(status=final, finished_at=now)
        )
        if final is DigestStatus.FAILED and ended.rowcount:
            # No reader got these posts: the next digest offers them again.
            session.execute(update(Post).where(Post.digest_id == digest_id).values(digest_id=None))
    session.commit()
    started |= marked  # only once written


def settle_stalled(session: Session) -> int:
    """Settle every digest still marked sending; how many there were. Commits.

    A dispatcher that dies between recording a digest's last batch and
    settling it leaves no copy pending, so no later batch would settle it:
    this periodic job does (``SETTLE_EVERY_SECONDS``).
    """
    sending = session.scalars(
        select(_DIGESTS.c.id).where(_DIGESTS.c.status == DigestStatus.SENDING)
    ).all()
    settle(session, sending)
    return len(sending)


SETTLE_EVERY_SECONDS = 60.0


@event.listens_for(Session, "after_rollback")
def _forget_started(session: Session) -> None:
    # A rolled-back mark was never written: mark again next time.
    session.info.pop(_STARTED, None)
