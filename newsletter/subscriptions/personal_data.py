"""Everything held about one address, for a subject access request (GDPR art. 15)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..models import Delivery, ProviderEvent, Subscriber, iso


def personal_data(session: Session, subscriber: Subscriber) -> dict[str, Any]:
    """The subscriber, its consent history, deliveries and provider events, JSON-ready."""
    deliveries = session.scalars(
        select(Delivery).where(Delivery.subscriber_id == subscriber.id).order_by(Delivery.id)
    )
    provider_events = session.scalars(
        select(ProviderEvent)
        .where(ProviderEvent.email == subscriber.email)
        .order_by(ProviderEvent.id)
    )
    return {
        "provider_events": [event.to_dict() for event in provider_events],
        "subscriber": subscriber.to_dict(),
        "consent": [event.to_dict() for event in subscriber.events],
        "deliveries": [
            {
                "kind": d.kind.value,
                "status": d.status.value,
                "created_at": iso(d.created_at),
                "sent_at": iso(d.sent_at),
                "provider": d.provider,
                "provider_message_id": d.provider_message_id,
            }
            for d in deliveries
        ],
    }
