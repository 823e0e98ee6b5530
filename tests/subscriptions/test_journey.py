"""The subscriber's journey through the real app: signup, email, confirm, unsubscribe."""

from __future__ import annotations

from sqlalchemy import select

from newsletter.extensions import db
from newsletter.models import ConsentKind, Status, Subscriber
from tests.conftest import path_of


def subscriber(app, email: str) -> Subscriber | None:
    with app.app_context():
        return db.session.scalars(select(Subscriber).where(Subscriber.email == email)).one_or_none()


def test_form_signup_sends_one_confirmation_whose_link_confirms(app, client, outbox):
    response = client.post("/subscribe", data={"email": "Ann@Example.COM", "name": "Ann"})
    assert response.status_code == 200
    assert b"Check your inbox" in response.data
    assert subscriber(app, "ann@example.com").status is Status.PENDING
    assert outbox.messages() == []  # nothing is sent from inside the request

    outbox.dispatch()
    [message] = outbox.messages()
    assert message["To"] == "ann@example.com"
    assert message.get_content_type() == "multipart/alternative"
    assert message["Message-ID"] and message["Date"]
    link = outbox.confirm_link("ann@example.com")
    assert link.startswith("http://news.example.org/confirm/")
    html = message.get_body(("html",)).get_content()
    assert link in html

    page = client.get(path_of(link))
    assert page.status_code == 200
    assert b'<form method="post"' in page.data
    assert subscriber(app, "ann@example.com").status is Status.PENDING  # GET never confirms

    confirmed = client.post(path_of(link))
    assert confirmed.status_code == 200
    assert b"Your subscription is confirmed" in confirmed.data
    again = client.post(path_of(link), headers={"Accept": "application/json"})
    assert again.status_code == 200 and again.get_json() == {"status": "confirmed"}

    stored = subscriber(app, "ann@example.com")
    assert stored.status is Status.CONFIRMED and stored.confirmed_at is not None
    with app.app_context():
        kinds = [e.kind for e in db.session.get(Subscriber, stored.id).events]
    assert kinds == [ConsentKind.SIGNUP, ConsentKind.CONFIRMATION_QUEUED, ConsentKind.CONFIRMED]


def test_json_signup_answers_202_pending(client):
    response = client.post("/subscribe", json={"email": "bob@example.com"})
    assert response.status_code == 202
    assert response.get_json() == {"status": "pending"}
