"""Erasure (GDPR): the personal data goes, a keyed hash stays to keep suppressions."""

from __future__ import annotations

import hashlib
import hmac

from flask import current_app
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from ..db_helpers import locked
from ..models import Erasure, ProviderEvent, Status, Subscriber, utcnow

SUPPRESSED = (Status.BOUNCED, Status.COMPLAINED)


def email_hash(email: str) -> str:
    """A keyed hash of an address: matches a later import, reveals nothing alone."""
    key = hmac.new(current_app.config["SECRET_KEY"].encode(), b"erasure", hashlib.sha256).digest()
    return hmac.new(key, email.encode(), hashlib.sha256).hexdigest()


def erase(session: Session, email: str) -> bool:
    """Delete the subscriber, its consent events and deliveries; False if unknown."""
    subscriber = locked(session, select(Subscriber).where(Subscriber.email == email)).one_or_none()
    if subscriber is None:
        return False
    digest = email_hash(email)
    existing = session.get(Erasure, digest)
    if existing is None:
        session.add(Erasure(email_hash=digest, prior_status=subscriber.status))
    elif subscriber.status in SUPPRESSED:
        existing.prior_status = subscriber.status
        existing.erased_at = utcnow()
    # ON DELETE CASCADE removes consent events and deliveries with the row;
    # what providers reported about the address goes too.
    session.execute(delete(ProviderEvent).where(ProviderEvent.email == email))
    session.execute(delete(Subscriber).where(Subscriber.id == subscriber.id))
    session.commit()
    return True


def suppressed_hashes(session: Session, hashes: list[str]) -> set[str]:
    """Which of these hashed addresses were erased while bounced or complained."""
    if not hashes:
        return set()
    return set(
        session.scalars(
            select(Erasure.email_hash).where(
                Erasure.email_hash.in_(hashes), Erasure.prior_status.in_(SUPPRESSED)
            )
        )
    )
