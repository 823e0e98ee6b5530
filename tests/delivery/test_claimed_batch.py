"""The claimed batch as plain rows: what ``ledger.load_claimed`` hands the renderers."""

from __future__ import annotations

from flask import Flask

from newsletter.delivery import ledger
from newsletter.extensions import db
from newsletter.models import DeliveryKind, Status, Subscriber


def _queue_two(app: Flask) -> tuple[int, int]:
    """A confirmation to a pending subscriber and a test copy to a bare address."""
    with app.app_context():
        subscriber = Subscriber(email="ann@example.com", name="Ann", status=Status.PENDING)
        db.session.add(subscriber)
        db.session.flush()
        first = ledger.queue(db.session, DeliveryKind.CONFIRMATION, subscriber.id)
        second = ledger.queue(db.session, DeliveryKind.DIGEST_TEST, to_address="qa@example.com")
        db.session.commit()
        ids = first.id, second.id
        db.session.remove()
    return ids


def test_load_claimed_gives_each_delivery_with_its_subscriber_in_id_order(app: Flask) -> None:
    first, second = _queue_two(app)
    with app.app_context():
        claimed = ledger.load_claimed(db.session, [second, first])
        subscriber = db.session.query(Subscriber).one()
        assert [c.id for c in claimed] == [first, second]
        confirmation, test_copy = claimed
        assert confirmation.kind is DeliveryKind.CONFIRMATION
        assert confirmation.attempts == 0 and confirmation.created_at is not None
        assert confirmation.subscriber == ledger.Recipient(
            email="ann@example.com",
            name="Ann",
            status=Status.PENDING,
            round=0,
            public_id=subscriber.public_id,
        )
        assert test_copy.subscriber is None
        assert test_copy.to_address == "qa@example.com"
        assert len(test_copy.message_key) == 36


def test_load_claimed_of_no_ids_is_empty(app: Flask) -> None:
    with app.app_context():
        assert ledger.load_claimed(db.session, []) == []
