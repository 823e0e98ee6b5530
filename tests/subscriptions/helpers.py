"""Shortcuts for tests that need a subscriber in a given state."""

from __future__ import annotations

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, update

from newsletter.extensions import db
from newsletter.models import Status, Subscriber
from tests.conftest import Outbox, path_of


def find(app: Flask, email: str) -> Subscriber | None:
    """The subscriber of ``email`` as stored now."""
    with app.app_context():
        found = db.session.scalars(select(Subscriber).where(Subscriber.email == email))
        return found.one_or_none()


def confirmed(client: FlaskClient, outbox: Outbox, email: str) -> Subscriber:
    """Sign ``email`` up and confirm it through the real pages."""
    assert client.post("/subscribe", data={"email": email}).status_code == 200
    outbox.dispatch()
    assert client.post(path_of(outbox.confirm_link(email))).status_code == 200
    subscriber = find(client.application, email)
    assert subscriber is not None and subscriber.status is Status.CONFIRMED
    return subscriber


def set_status(app: Flask, email: str, status: Status) -> None:
    """Force a status, as a provider webhook would."""
    with app.app_context():
        db.session.execute(
            update(Subscriber).where(Subscriber.email == email).values(status=status)
        )
        db.session.commit()


def unsubscribe_link(app: Flask, subscriber: Subscriber) -> str:
    """The path of the subscriber's unsubscribe link."""
    token = app.extensions["newsletter.tokens"].unsubscribe_token(subscriber.public_id)
    return f"/unsubscribe/{token}"
