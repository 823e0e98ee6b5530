"""Claiming a batch (a row lock or a lease) and loading it as the renderers get it."""

from __future__ import annotations

import time
from collections import Counter

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from newsletter.delivery import ledger
from newsletter.extensions import db
from newsletter.models import Delivery, DeliveryKind, DeliveryStatus, Status, Subscriber
from tests.conftest import is_postgresql
from tests.digests.helpers import add_confirmed, add_post


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


def test_a_claim_gives_each_delivery_with_its_subscriber_in_id_order(app: Flask) -> None:
    first, second = _queue_two(app)
    with app.app_context():
        claimed = ledger.claim(db.session, 10, 60)
        subscriber = db.session.query(Subscriber).one()
        assert [c.id for c in claimed] == [first, second]
        confirmation, test_copy = claimed
        assert confirmation.kind is DeliveryKind.CONFIRMATION
        assert confirmation.attempts == 0 and confirmation.created_at is not None
        assert confirmation.subscriber == ledger.Recipient(
            email="ann@example.com",
            status=Status.PENDING,
            round=0,
            public_id=subscriber.public_id,
        )
        assert test_copy.subscriber is None
        assert test_copy.to_address == "qa@example.com"
        assert len(test_copy.message_key) == 36
        db.session.rollback()


def test_an_empty_claim_leaves_no_transaction_open(app: Flask) -> None:
    """An idle dispatcher polls often: an empty claim must hold nothing until the next."""
    with app.app_context():
        assert ledger.claim(db.session, 10, 60) == []
        assert not db.session().in_transaction()
        db.session.remove()


def _queue_confirmations(app: Flask, count: int) -> list[int]:
    """``count`` pending subscribers, each with a confirmation queued; the delivery ids."""
    with app.app_context():
        ids = []
        for n in range(count):
            subscriber = Subscriber(email=f"c{n}@example.com", status=Status.PENDING)
            db.session.add(subscriber)
            db.session.flush()
            delivery = ledger.queue(db.session, DeliveryKind.CONFIRMATION, subscriber.id)
            db.session.flush()
            ids.append(delivery.id)
        db.session.commit()
        db.session.remove()
    return ids


def _statuses(app: Flask) -> list[DeliveryStatus]:
    with app.app_context():
        statuses = db.session.scalars(select(Delivery.status).order_by(Delivery.id)).all()
        db.session.remove()
    return list(statuses)


def test_postgresql_claims_by_row_lock_each_dispatcher_its_own_batch(
    app: Flask, database_uri: str
) -> None:
    if not is_postgresql(database_uri):
        pytest.skip("PostgreSQL's row-lock claim (SQLite's lease: the test below)")
    ids = _queue_confirmations(app, 4)
    with app.app_context(), Session(db.engine) as first, Session(db.engine) as second:
        mine = [c.id for c in ledger.claim(first, 2, lease_seconds=300)]
        theirs = [c.id for c in ledger.claim(second, 10, lease_seconds=300)]
        assert mine == ids[:2] and theirs == ids[2:]  # oldest first, none taken twice
        assert _statuses(app) == [DeliveryStatus.QUEUED] * 4  # the claim wrote nothing
        first.rollback()  # a dispatcher that died: its batch is free at once, lease or not
        with Session(db.engine) as third:
            assert [c.id for c in ledger.claim(third, 10, lease_seconds=300)] == ids[:2]
            third.rollback()
        second.rollback()


def test_postgresql_ends_a_claim_left_idle_past_its_lease(app: Flask, database_uri: str) -> None:
    if not is_postgresql(database_uri):
        pytest.skip("PostgreSQL's row-lock claim (SQLite's lease: the test below)")
    ids = _queue_confirmations(app, 2)
    with app.app_context(), Session(db.engine) as frozen, Session(db.engine) as other:
        assert [c.id for c in ledger.claim(frozen, 10, lease_seconds=1.0)] == ids
        assert ledger.claim(other, 10, lease_seconds=300) == []  # locked
        other.rollback()
        time.sleep(2.5)  # a dispatcher frozen mid-send: its transaction sits idle
        assert [c.id for c in ledger.claim(other, 10, lease_seconds=300)] == ids
        other.rollback()
        with pytest.raises(DBAPIError, match="idle-in-transaction"):  # the server ended it
            frozen.execute(text("SELECT 1"))
        frozen.rollback()


def test_sqlite_claims_by_a_committed_lease(app: Flask, database_uri: str) -> None:
    if is_postgresql(database_uri):
        pytest.skip("SQLite's lease (PostgreSQL's row lock: the test above)")
    ids = _queue_confirmations(app, 3)
    with app.app_context():
        claimed = ledger.claim(db.session, 2, lease_seconds=300)
        assert [c.id for c in claimed] == ids[:2]
        assert claimed[0].subscriber is not None  # loaded with what rendering needs
        db.session.rollback()  # the lease was committed by the claim: nothing to undo
        assert [c.id for c in ledger.claim(db.session, 10, lease_seconds=300)] == ids[2:]
        db.session.remove()
    assert _statuses(app) == [DeliveryStatus.SENDING] * 3


def test_a_confirmation_queued_behind_a_digest_goes_in_the_next_batch(
    app: Flask, client: FlaskClient, admin_headers: dict[str, str]
) -> None:
    """Claimed oldest first, it waited for every copy of a digest queued before it."""
    add_confirmed(app, 30)
    add_post(client, admin_headers, 1)
    assert client.post("/admin/digests", json={}, headers=admin_headers).status_code == 202
    assert client.post("/subscribe", json={"email": "new@example.com"}).status_code == 202
    test_copy = {"email": "qa@example.com"}
    assert (
        client.post("/admin/digests/1/test", json=test_copy, headers=admin_headers).status_code
        == 202
    )
    with app.app_context():
        claimed = ledger.claim(db.session, 10, lease_seconds=300)
        kinds = Counter(c.kind for c in claimed)
        # Both in the first batch, which digest copies fill, oldest first.
        assert kinds == {
            DeliveryKind.CONFIRMATION: 1,
            DeliveryKind.DIGEST_TEST: 1,
            DeliveryKind.DIGEST: 8,
        }
        (confirmation,) = (c for c in claimed if c.kind is DeliveryKind.CONFIRMATION)
        assert confirmation.subscriber is not None
        assert confirmation.subscriber.email == "new@example.com"
        db.session.rollback()
        db.session.remove()


def test_a_digests_only_claim_leaves_the_mail_a_person_waits_for(
    app: Flask, client: FlaskClient, admin_headers: dict[str, str]
) -> None:
    assert client.post("/subscribe", json={"email": "new@example.com"}).status_code == 202
    add_confirmed(app, 3)
    add_post(client, admin_headers, 1)
    assert client.post("/admin/digests", json={}, headers=admin_headers).status_code == 202
    with app.app_context():
        claimed = ledger.claim(db.session, 10, 300, kind=DeliveryKind.DIGEST)
        assert [c.kind for c in claimed] == [DeliveryKind.DIGEST] * 3
        db.session.rollback()
        db.session.remove()
