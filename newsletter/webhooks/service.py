"""Acting on provider events: store each once, then stop mail to dead or angry addresses.

A hard bounce or a complaint stops all mail to the address (the renderers
skip anyone not pending or confirmed) and is recorded in the consent ledger;
a complaint outranks a bounce and nothing moves an address back. Soft
bounces are counted. A provider-side unsubscribe unsubscribes. Delivered and
unknown events are only stored.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from ..db_helpers import insert_ignoring_conflicts, locked
from ..models import (
    ConsentKind,
    Delivery,
    Erasure,
    ProviderEvent,
    Status,
    Subscriber,
    WebhookNonce,
    utcnow,
)
from ..subscriptions.addresses import InvalidAddress, normalize_email
from ..subscriptions.erased import email_hash
from ..subscriptions.service import leave, locked_by_email, record_event
from .events import EventKind, WebhookEvent


def claim_nonce(session: Session, provider: str, nonce: str, tolerance: float) -> bool:
    """Record a signature nonce; False if it was used before (a replay).

    Not committed here: the nonce is kept only with the events ``handle``
    commits, so a request that fails after it (an unreadable body, a database
    error) leaves no trace and the provider's retry is not refused as a replay.
    A concurrent copy of the request waits on the unique index and then sees it.
    Nonces older than twice the freshness window are dropped: their
    signatures are refused as stale anyway.
    """
    session.execute(
        delete(WebhookNonce).where(
            WebhookNonce.seen_at < utcnow() - timedelta(seconds=2 * tolerance)
        )
    )
    claimed = session.execute(
        insert_ignoring_conflicts(session, WebhookNonce, ["provider", "nonce"])
        .values(provider=provider, nonce=nonce[:255])
        .returning(WebhookNonce.id)
    ).scalar_one_or_none()
    return claimed is not None


def handle(session: Session, provider: str, events: list[WebhookEvent]) -> int:
    """Store and act on each event not seen before; how many were new."""
    new = 0
    for event in events:
        stored = session.execute(
            insert_ignoring_conflicts(session, ProviderEvent, ["provider", "event_id"])
            .values(
                provider=provider,
                event_id=event.event_id[:255],
                kind=event.kind.value,
                raw_type=event.raw_type[:64],
                email=_normalized(event.email),
                message_key=(event.message_key or "")[:64] or None,
                provider_message_id=(event.provider_message_id or "")[:255] or None,
                occurred_at=event.occurred_at,
                payload=event.payload,
            )
            .returning(ProviderEvent.id)
        ).scalar_one_or_none()
        if stored is None:
            continue  # delivered twice by the provider, or replayed: already acted on
        new += 1
        _act(session, provider, event, stored)
    session.commit()
    return new


def _normalized(email: str | None) -> str | None:
    """The address as we store it, so erasure and lookups find it; None if unusable."""
    try:
        return normalize_email(email, international=True) if email else None
    except InvalidAddress:
        return None


def _subscriber(session: Session, event: WebhookEvent) -> Subscriber | None:
    email = _normalized(event.email)
    found = locked_by_email(session, email) if email else None
    if found is not None:
        return found
    if event.message_key:
        subscriber_id = session.scalar(
            select(Delivery.subscriber_id).where(Delivery.message_key == event.message_key)
        )
        if subscriber_id is not None:
            return locked(session, select(Subscriber).where(Subscriber.id == subscriber_id)).first()
    return None


def _erased_copy(session: Session, message_key: str | None) -> bool:
    """Whether the key is a digest copy's whose reader was erased (it names nobody now)."""
    if not message_key:
        return False
    anonymous = session.scalar(
        select(Delivery.id).where(
            Delivery.message_key == message_key,
            Delivery.subscriber_id.is_(None),
            Delivery.to_address.is_(None),
        )
    )
    return anonymous is not None


def _after_erasure(session: Session, event: WebhookEvent, stored: int) -> None:
    """An event about an erased address: keep nothing that names it, keep it stopped.

    Providers report bounces and complaints minutes after the send, so after
    an erasure too: the stored event loses the address (and the payload that
    holds it), and a bounce or complaint makes the erasure a suppression, as
    it would have had it come first.
    """
    email = _normalized(event.email)
    erasure = session.get(Erasure, email_hash(email), with_for_update=True) if email else None
    if erasure is None and not (email is None and _erased_copy(session, event.message_key)):
        return
    session.execute(
        update(ProviderEvent)
        .where(ProviderEvent.id == stored)
        .values(email=None, payload=None, provider_message_id=None)
    )
    if erasure is None:
        return  # found by its key alone: no address to keep stopped
    stops = {EventKind.COMPLAINT: Status.COMPLAINED, EventKind.HARD_BOUNCE: Status.BOUNCED}
    status = stops.get(event.kind)
    if status is not None and erasure.prior_status is not Status.COMPLAINED:
        erasure.prior_status = status


def _act(session: Session, provider: str, event: WebhookEvent, stored: int) -> None:
    if event.kind in (EventKind.DELIVERED, EventKind.UNKNOWN):
        email = _normalized(event.email)
        if (
            email is None
            or session.scalar(select(Subscriber.id).where(Subscriber.email == email)) is None
        ):
            _after_erasure(session, event, stored)
        return
    subscriber = _subscriber(session, event)
    if subscriber is None:
        # Looked up after the subscriber's row (locked_by_email waited on an erasure
        # deleting it): an erasure committed by now is seen here.
        _after_erasure(session, event, stored)
        return
    detail = {"provider": provider, "type": event.raw_type, "event_id": event.event_id}
    if event.kind is EventKind.COMPLAINT and subscriber.status is not Status.COMPLAINED:
        subscriber.status = Status.COMPLAINED
        record_event(session, subscriber, ConsentKind.COMPLAINED, **detail)
    elif event.kind is EventKind.HARD_BOUNCE and subscriber.status not in (
        Status.BOUNCED,
        Status.COMPLAINED,
    ):
        subscriber.status = Status.BOUNCED
        record_event(session, subscriber, ConsentKind.BOUNCED, **detail)
    elif event.kind is EventKind.SOFT_BOUNCE:
        subscriber.soft_bounces += 1
    elif event.kind is EventKind.UNSUBSCRIBE:
        leave(session, subscriber, None, method=f"{provider} webhook")
