"""Retention: signups never confirmed are deleted after ``PENDING_RETENTION_DAYS``."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete
from sqlalchemy.orm import Session

from ..models import Status, Subscriber, utcnow


def purge_pending(session: Session, older_than_days: float) -> int:
    """Delete pending subscribers created more than ``older_than_days`` ago; how many."""
    cutoff = utcnow() - timedelta(days=older_than_days)
    result = session.execute(
        delete(Subscriber).where(
            Subscriber.status == Status.PENDING, Subscriber.created_at < cutoff
        )
    )
    session.commit()
    return result.rowcount or 0


PURGE_EVERY_SECONDS = 3600.0  # how often the housekeeping purges (``housekeeping.py``)
