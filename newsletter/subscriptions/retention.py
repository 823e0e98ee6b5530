"""Housekeeping: signups never confirmed are deleted after ``PENDING_RETENTION_DAYS``.

Also the dispatcher's periodic job list, with the digests left unsettled.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from flask import current_app
from sqlalchemy import delete
from sqlalchemy.orm import Session

from ..delivery.digest_progress import SETTLE_EVERY_SECONDS, settle_stalled
from ..extensions import db
from ..models import Status, Subscriber, utcnow

log = logging.getLogger(__name__)


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


PURGE_EVERY_SECONDS = 3600.0  # how often a dispatcher runs purge_past_retention


def purge_past_retention() -> None:
    """The periodic job: purge what ``PENDING_RETENTION_DAYS`` says is too old."""
    purged = purge_pending(db.session, current_app.config["PENDING_RETENTION_DAYS"])
    if purged:
        log.info("purged %d pending signups past retention", purged)


def settle_stalled_digests() -> None:
    """The periodic job: finish digests whose last batch's dispatcher died before settling."""
    settle_stalled(db.session)


# The periodic jobs of a dispatcher thread or process (Celery beat has its own schedule).
HOUSEKEEPING = [
    (PURGE_EVERY_SECONDS, purge_past_retention),
    (SETTLE_EVERY_SECONDS, settle_stalled_digests),
]
