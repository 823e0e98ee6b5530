"""Retention: signups never confirmed are deleted after ``PENDING_RETENTION_DAYS``."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete
from sqlalchemy.orm import Session

from ..models import Status, Subscriber, utcnow


def purge_pending(session: Session, older_than_days: float) -> int:
    """Delete signups left unconfirmed ``older_than_days`` since their last link; how many.

    The clock is the row's last change (its last confirmation link, a signup
    again), not its creation: a returning reader's first signup may be years
    old, and the hourly purge deleted such a reader, with the consent history,
    minutes after they signed up again. An address that left once and signed
    up again is never purged: its row keeps the proof of its earlier consent
    and of its unsubscribe, as an unsubscribed row does; pending, it is sent
    nothing. The outbox provider's files to the purged addresses go too.
    """
    cutoff = utcnow() - timedelta(days=older_than_days)
    purged = session.scalars(
        delete(Subscriber)
        .where(
            Subscriber.status == Status.PENDING,
            Subscriber.unsubscribed_at.is_(None),
            # Every writer of last_confirmation_at (a signup, a link sent again, an
            # import) sets updated_at with it: one clock.
            Subscriber.updated_at < cutoff,
        )
        .returning(Subscriber.email)
    ).all()
    session.commit()
    # Imported here: the erasure module brings the metrics, which a Celery worker must
    # not import before it knows its metrics folder (tasks -> housekeeping -> here).
    from .erasure import forget_mail_to

    forget_mail_to(*purged)
    return len(purged)


PURGE_EVERY_SECONDS = 3600.0  # how often the housekeeping purges (``housekeeping.py``)
