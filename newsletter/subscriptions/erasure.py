"""Erasure (GDPR): the personal data goes, a keyed hash stays to keep suppressions."""

from __future__ import annotations

from sqlalchemy import case, delete, select, update
from sqlalchemy.orm import Session

from ..db_helpers import hold_recipients
from ..models import (
    SUPPRESSED,
    Delivery,
    DeliveryKind,
    DeliveryStatus,
    Erasure,
    ProviderEvent,
    Subscriber,
)
from .erased import email_hash, keep_hash, suppressed_hashes
from .personal_data import deliveries_to, provider_events_about
from .service import locked_by_email

ERASED_BEFORE_ITS_TURN = "the reader was erased before its turn came"


def erase(session: Session, email: str) -> bool:
    """Delete everything held about the address (``personal_data``); False if nothing was.

    The subscriber goes with its consent events and deliveries; test copies
    sent to the address and the providers' events about it go too. Its
    digest copies stay, anonymous, so that each digest's counts still add up
    to its recipients: a copy still queued becomes skipped. One in flight is
    waited for (PostgreSQL: the claim's row lock) and kept as it ended.
    """
    digest = email_hash(email)  # first: its key may be read on a connection of its own
    hold_recipients(session, exclusive=False)  # no digest is copying the list meanwhile
    subscriber = locked_by_email(session, email)
    # First, while the deliveries still lead to them: events found by message key too.
    events = session.execute(delete(ProviderEvent).where(provider_events_about(email, subscriber)))
    # Test copies of a digest name the address, not the subscriber: no cascade reaches them.
    # (They are read among the rows that name no subscriber, the anonymous copies kept
    # below included: a few per erasure, never the whole ledger.)
    copies = session.execute(delete(Delivery).where(deliveries_to(email, None)))
    if subscriber is None:
        session.commit()
        return bool(events.rowcount or copies.rowcount)
    keep_hash(session, digest, subscriber.status)
    # The digests' history keeps its numbers: a copy that went out, failed or was
    # skipped stays counted, and one still queued is counted skipped, with nothing left
    # that leads back to the reader. (On SQLite a leased copy stays "sending" until its
    # dispatcher records the answer; it renders nothing for a reader who is gone.)
    queued = Delivery.status == DeliveryStatus.QUEUED
    session.execute(
        update(Delivery)
        .where(Delivery.subscriber_id == subscriber.id, Delivery.kind == DeliveryKind.DIGEST)
        .values(
            subscriber_id=None,
            provider_message_id=None,
            status=case((queued, DeliveryStatus.SKIPPED), else_=Delivery.status),
            last_error=case((queued, ERASED_BEFORE_ITS_TURN), else_=None),
        )
    )
    # ON DELETE CASCADE removes consent events and the other deliveries with the row.
    session.execute(delete(Subscriber).where(Subscriber.id == subscriber.id))
    session.commit()
    return True


def is_suppressed(session: Session, email: str) -> bool:
    """Whether the address bounced or complained, here or before it was erased."""
    status = session.scalar(select(Subscriber.status).where(Subscriber.email == email))
    if status is not None:
        return status in SUPPRESSED
    return (
        session.scalar(suppressed_hashes().where(Erasure.email_hash == email_hash(email)))
        is not None
    )


def forget_mail_to(*addresses: str) -> None:
    """Delete what the provider kept of the mail it sent to ``addresses`` (the outbox's files)."""
    from flask import current_app

    forget = getattr(current_app.extensions["newsletter.provider"], "forget", None)
    if forget is not None and addresses:
        forget(*addresses)
