"""Everything held about one address: what a subject access request shows and erasure removes.

Both read it from here, so they cannot drift apart: the subscriber (and its
consent history), its deliveries, digest test copies sent to the address
(which name no subscriber), and the providers' events about any of them,
found by the address or by the message key of one of those deliveries.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, or_, select
from sqlalchemy.orm import Session

from ..models import Delivery, ProviderEvent, Subscriber, iso


def deliveries_to(email: str, subscriber: Subscriber | None) -> ColumnElement[bool]:
    """The deliveries to the address: the subscriber's, and test copies sent to it."""
    test_copies = Delivery.subscriber_id.is_(None) & (Delivery.to_address == email)
    if subscriber is None:
        return test_copies
    return or_(Delivery.subscriber_id == subscriber.id, test_copies)


def provider_events_about(email: str, subscriber: Subscriber | None) -> ColumnElement[bool]:
    """The providers' events about the address, by address or by one of its message keys."""
    keys = select(Delivery.message_key).where(deliveries_to(email, subscriber))
    return or_(ProviderEvent.email == email, ProviderEvent.message_key.in_(keys.scalar_subquery()))


def personal_data(session: Session, email: str, subscriber: Subscriber | None) -> dict[str, Any]:
    """The subscriber (or None), its consent history, deliveries and provider events, JSON-ready."""
    deliveries = session.scalars(
        select(Delivery).where(deliveries_to(email, subscriber)).order_by(Delivery.id)
    )
    events = session.scalars(
        select(ProviderEvent)
        .where(provider_events_about(email, subscriber))
        .order_by(ProviderEvent.id)
    )
    return {
        "subscriber": None
        if subscriber is None
        else {
            **subscriber.to_dict(),
            "public_id": subscriber.public_id,
            "round": subscriber.round,
            "updated_at": iso(subscriber.updated_at),
            "last_confirmation_at": iso(subscriber.last_confirmation_at),
        },
        "consent": [] if subscriber is None else [e.to_dict() for e in subscriber.events],
        "deliveries": [
            {
                "kind": d.kind.value,
                "status": d.status.value,
                "digest_id": d.digest_id,
                "to_address": d.to_address,
                "message_key": d.message_key,
                "attempts": d.attempts,
                "last_error": d.last_error,
                "created_at": iso(d.created_at),
                "sent_at": iso(d.sent_at),
                "provider": d.provider,
                "provider_message_id": d.provider_message_id,
            }
            for d in deliveries
        ],
        "provider_events": [
            {
                **event.to_dict(),
                "email": event.email,
                "message_key": event.message_key,
                "payload": event.payload,
            }
            for event in events
        ],
    }
