"""Acting on provider events: store each once, then stop mail to dead or angry addresses.

A hard bounce or a complaint stops all mail to the address (the renderers
skip anyone not pending or confirmed) and is recorded in the consent ledger;
a complaint outranks a bounce and nothing moves an address back. Soft
bounces are counted. A provider-side unsubscribe unsubscribes. Delivered and
unknown events are only stored. An event about no subscriber of ours keeps
nothing that names the address; a bounce or complaint among them stops the
address by its keyed hash.
"""

from __future__ import annotations

import contextlib
from datetime import timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from ..db_helpers import address_lock_key, hold_addresses, insert_ignoring_conflicts, locked
from ..models import (
    ConsentKind,
    Delivery,
    ProviderEvent,
    Status,
    Subscriber,
    WebhookNonce,
    utcnow,
)
from ..subscriptions.addresses import lookup_form
from ..subscriptions.erased import email_hash, email_hasher, keep_hash
from ..subscriptions.erasure_key import UnreadableErasureKey
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


def all_stored(session: Session, provider: str, events: list[WebhookEvent]) -> bool:
    """True if every one of these events is stored already (so handling them would do nothing)."""
    ids = {event.event_id[:255] for event in events}
    if not ids:
        return False
    found = session.scalars(
        select(ProviderEvent.event_id).where(
            ProviderEvent.provider == provider, ProviderEvent.event_id.in_(ids)
        )
    )
    return len(set(found)) == len(ids)


def handle(session: Session, provider: str, events: list[WebhookEvent]) -> int:
    """Store and act on each event not seen before; how many were new."""
    # The erasure key read (or first kept) before this transaction writes. A host that
    # cannot read it still acts on events about subscribers, which need no hash; one
    # about an address we do not hold (erased) raises where its hash is kept, and the
    # provider sends the batch again.
    with contextlib.suppress(UnreadableErasureKey):
        email_hasher()
    new = 0
    # Each address normalised once; acted on in the order of their locks (an address's
    # own events keep theirs): two batches about the same readers never wait in turn.
    addressed = [(lookup_form(event.email), number, event) for number, event in enumerate(events)]
    addressed.sort(key=lambda item: (address_lock_key(item[0]) if item[0] else -1, item[1]))
    # Every address's lock at once, in one statement, before any event is acted on: a
    # signup of one of them waits, or is waited for; an event about a subscriber being
    # erased waits for the erasure, then finds nobody and keeps nothing.
    hold_addresses(session, [email for email, _, _ in addressed if email])
    for email, _, event in addressed:
        stored = session.execute(
            insert_ignoring_conflicts(session, ProviderEvent, ["provider", "event_id"])
            .values(
                provider=provider,
                event_id=event.event_id[:255],
                kind=event.kind.value,
                raw_type=event.raw_type[:64],
                email=email,
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
        _act(session, provider, event, email, stored)
    session.commit()
    return new


def _subscriber(session: Session, event: WebhookEvent, email: str | None) -> Subscriber | None:
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


_STOPS = {EventKind.COMPLAINT: Status.COMPLAINED, EventKind.HARD_BOUNCE: Status.BOUNCED}


def _about_no_subscriber(
    session: Session, event: WebhookEvent, email: str | None, stored: int
) -> None:
    """An event about no subscriber of ours: keep nothing that names it; stop it by its hash.

    The address was erased (providers report bounces and complaints minutes
    after the send, so after an erasure too), or was only ever sent a test
    copy, or is not ours at all. The stored event loses the address, its
    payload and the provider's message id; a bounce or complaint is kept as
    a keyed hash (``erasures``), so that signups, imports and test copies to
    the address stop, as they would have had it been a subscriber.
    """
    session.execute(
        update(ProviderEvent)
        .where(ProviderEvent.id == stored)
        .values(email=None, payload=None, provider_message_id=None)
    )
    status = _STOPS.get(event.kind)
    if email is not None and status is not None:
        keep_hash(session, email_hash(email), status)


def _act(
    session: Session, provider: str, event: WebhookEvent, email: str | None, stored: int
) -> None:
    subscriber = _subscriber(session, event, email)
    if subscriber is None:
        _about_no_subscriber(session, event, email, stored)
        return
    if event.kind in (EventKind.DELIVERED, EventKind.UNKNOWN):
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
        leave(session, subscriber, None, method=f"{provider} {event.via}")
