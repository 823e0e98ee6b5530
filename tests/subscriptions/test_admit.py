"""``admit``: a batch of signups in one transaction, each address once, new or known."""

from __future__ import annotations

from sqlalchemy import func, select

from newsletter.extensions import db
from newsletter.models import ConsentEvent, ConsentKind, Delivery, Status, Subscriber
from newsletter.subscriptions.service import ClientInfo, Signup, admit
from tests.subscriptions.helpers import set_status

CLIENT = ClientInfo(ip="192.0.2.7", user_agent="test", source="https://blog.example", wording="w")


def _count(model) -> int:
    return db.session.scalar(select(func.count()).select_from(model))


def test_a_batch_admits_each_new_address_once_with_its_proof_and_email(app):
    with app.app_context():
        assert admit(db.engine, [Signup("known@example.com", None, CLIENT)]) == [True]
        batch = [
            Signup("ann@example.com", "Ann", CLIENT),
            Signup("known@example.com", None, CLIENT),
            Signup("bob@example.com", None, CLIENT),
            Signup("ann@example.com", "Ann again", CLIENT),
        ]
        assert admit(db.engine, batch) == [True, False, True, False]
        subscribers = {s.email: s for s in db.session.scalars(select(Subscriber))}
        assert set(subscribers) == {"known@example.com", "ann@example.com", "bob@example.com"}
        ann = subscribers["ann@example.com"]
        assert ann.status is Status.PENDING and ann.name == "Ann"
        assert ann.source == "https://blog.example" and ann.last_confirmation_at is not None
        assert _count(Delivery) == 3  # one confirmation per new address, none for repeats
        kinds = db.session.execute(
            select(ConsentEvent.kind, ConsentEvent.ip).where(ConsentEvent.subscriber_id == ann.id)
        ).all()
        assert sorted(kinds) == sorted(
            [
                (ConsentKind.SIGNUP, "192.0.2.7"),
                (ConsentKind.CONFIRMATION_QUEUED, None),
                (ConsentKind.SIGNED_UP_AGAIN, "192.0.2.7"),  # its second copy: nothing sent
            ]
        )
        known = subscribers["known@example.com"]
        again = db.session.scalars(
            select(ConsentEvent.kind).where(ConsentEvent.subscriber_id == known.id)
        ).all()
        assert again.count(ConsentKind.SIGNED_UP_AGAIN) == 1  # a link went within the gap
        deliveries = db.session.scalars(select(Delivery.subscriber_id)).all()
        assert sorted(deliveries) == sorted(s.id for s in subscribers.values())


def test_every_copy_of_an_address_in_one_batch_keeps_who_asked(app):
    # Thirty parallel signups of one address, each from another browser, kept 22 events:
    # past its second copy an address's copies were dropped, agents and all.
    with app.app_context():
        admit(db.engine, [Signup("left@example.com", None, CLIENT)])
    set_status(app, "left@example.com", Status.UNSUBSCRIBED)
    with app.app_context():
        batch = [
            Signup(email, None, ClientInfo(ip="192.0.2.8", user_agent=f"{email} {n}"))
            for email in ("new@example.com", "left@example.com")
            for n in range(4)
        ]
        assert admit(db.engine, batch) == [True, False, False, False] + [False] * 4
        agents = db.session.scalars(
            select(ConsentEvent.user_agent).where(ConsentEvent.user_agent.is_not(None))
        ).all()
        assert sorted(a for a in agents if a != "test") == sorted(
            s.client.user_agent for s in batch
        )
        assert _count(Delivery) == 3  # still one link each (and one when left@ first came)
