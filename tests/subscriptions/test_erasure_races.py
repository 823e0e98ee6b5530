"""Erasure racing what else touches the address or the list, or outliving a key rotation.

An erasure is held open just before it commits (its statements run, its row
locks held) while the other side starts, then let go: the other side must
see it as committed, not as it was when it began.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from flask import Flask
from sqlalchemy import delete, event, func, select

from newsletter.digests import service as digest_service
from newsletter.extensions import db
from newsletter.models import Erasure, ProviderEvent, Status, WrappedKey
from newsletter.subscriptions.erased import email_hash
from newsletter.subscriptions.erasure import erase
from tests.conftest import Outbox
from tests.digests.helpers import add_confirmed, add_post
from tests.subscriptions.helpers import confirmed, find, set_status
from tests.webhooks import signing

pytestmark = pytest.mark.slow


@contextmanager
def erasure_held_open(app: Flask, email: str) -> Iterator[None]:
    """``erase(email)`` in a thread, paused before its commit until the block ends."""
    paused, release = threading.Event(), threading.Event()
    failures: list[BaseException] = []

    def hold(session) -> None:
        session.flush()  # the erasure record too: everything but the commit
        paused.set()
        release.wait(10)

    def run() -> None:
        with app.app_context():
            event.listen(db.session(), "before_commit", hold, once=True)
            try:
                assert erase(db.session, email)
            except BaseException as exc:  # raised again below
                failures.append(exc)
            finally:
                db.session.remove()

    thread = threading.Thread(target=run)
    thread.start()
    assert paused.wait(10), "the erasure did not get to its commit"
    try:
        yield
    finally:
        release.set()
        thread.join(10)
    if failures:
        raise failures[0]


def started(target, *args, **kwargs) -> tuple[threading.Thread, list]:
    """``target(*args, **kwargs)`` in a thread, given time to reach the lock it waits on."""
    results: list = []
    thread = threading.Thread(target=lambda: results.append(target(*args, **kwargs)))
    thread.start()
    time.sleep(0.3)
    return thread, results


@pytest.mark.parametrize("status", [Status.BOUNCED, Status.COMPLAINED])
def test_a_signup_racing_the_erasure_of_a_stopped_address_does_not_bring_it_back(
    app, client, outbox, status
):
    # The signup read the erasures before its insert, which then waited on the row
    # being deleted and went in once the erasure committed: 2 races in 30 mailed a
    # hard-bounced address again.
    confirmed(client, outbox, "ann@example.com")
    set_status(app, "ann@example.com", status)
    sent_before = len(outbox.messages())
    with erasure_held_open(app, "ann@example.com"):
        signup, answers = started(client.post, "/subscribe", json={"email": "ann@example.com"})
    signup.join(10)
    assert answers[0].status_code == 202
    assert find(app, "ann@example.com") is None
    outbox.dispatch()
    assert len(outbox.messages()) == sent_before


@pytest.mark.parametrize("racing", [False, True], ids=["after", "racing"])
def test_a_complaint_about_an_erased_address_keeps_nothing_and_stops_it(make_app, racing):
    app = make_app(WEBHOOK_BASIC_AUTH=signing.BASIC_AUTH)
    client, outbox = app.test_client(), Outbox(app)
    confirmed(client, outbox, "ann@example.com")
    complaint = {"RecordType": "SpamComplaint", "ID": 7, "Email": "ann@example.com"}

    def complain():
        return client.post(
            "/webhooks/postmark", json=complaint, headers=signing.basic(signing.BASIC_AUTH)
        )

    if racing:
        with erasure_held_open(app, "ann@example.com"):
            hook, answers = started(complain)
        hook.join(10)
        answer = answers[0]
    else:
        with app.app_context():
            assert erase(db.session, "ann@example.com")
        answer = complain()
    assert answer.status_code == 200
    with app.app_context():
        events = db.session.scalars(select(ProviderEvent)).all()
        assert [(e.kind, e.email, e.payload) for e in events] == [("complaint", None, None)]
        erasure = db.session.get(Erasure, email_hash("ann@example.com"))
        assert erasure is not None and erasure.prior_status is Status.COMPLAINED
    sent_before = len(outbox.messages())
    assert client.post("/subscribe", json={"email": "ann@example.com"}).status_code == 202
    assert find(app, "ann@example.com") is None  # stopped, as if the complaint came first
    outbox.dispatch()
    assert len(outbox.messages()) == sent_before


def test_a_digest_triggered_while_a_reader_is_erased_leaves_them_out_first_time(
    app, client, outbox, admin_headers, monkeypatch
):
    # The trigger copied the erased reader and failed on the foreign key; its retries
    # (taken for a clash of two triggers) ran out under a run of erasures: a 500.
    monkeypatch.setattr(digest_service, "_TRIES", 1)
    emails = add_confirmed(app, 3)
    add_post(client, admin_headers, 1)
    with erasure_held_open(app, emails[0]):
        trigger, answers = started(client.post, "/admin/digests", json={}, headers=admin_headers)
    trigger.join(10)
    assert answers[0].status_code == 202, answers[0].get_json()
    digest = answers[0].get_json()
    assert digest["recipients"] == 2
    outbox.dispatch()
    report = client.get(f"/admin/digests/{digest['id']}", headers=admin_headers).get_json()
    assert (report["status"], report["sent"]) == ("sent", 2)
    assert sorted(m["To"] for m in outbox.messages()[-2:]) == emails[1:]


def test_a_stopped_address_stays_stopped_through_secret_key_rotations(make_app, admin_headers):
    # From the privacy pass: the hashes kept of erased addresses were keyed from
    # SECRET_KEY itself, so one rotation let a complainer be imported and mailed again.
    first = make_app(SECRET_KEY="key-1")
    client, outbox = first.test_client(), Outbox(first)
    confirmed(client, outbox, "ann@example.com")
    set_status(first, "ann@example.com", Status.COMPLAINED)
    assert client.delete("/admin/subscribers/ann@example.com", headers=admin_headers)
    csv = {"data": "email\nann@example.com\n", "content_type": "text/csv"}
    # key-1 retired in two steps, as an operator rotates: listed, then dropped.
    for secret, fallbacks in (("key-2", ["key-1"]), ("key-3", ["key-2"])):
        app = make_app(SECRET_KEY=secret, SECRET_KEY_FALLBACKS=fallbacks)
        client = app.test_client()
        assert client.post("/subscribe", json={"email": "ann@example.com"}).status_code == 202
        imported = client.post(
            "/admin/subscribers/import?confirmed=true", headers=admin_headers, **csv
        ).get_json()
        assert (imported["created"], imported["skipped"]) == (0, 1), secret
        assert find(app, "ann@example.com") is None, secret


def test_hashes_made_before_the_key_was_kept_still_match(make_app, admin_headers):
    # A database erased into before this version: no kept key, hashes keyed from
    # SECRET_KEY. The key stored at the first start is that one.
    app = make_app(SECRET_KEY="key-1")
    client, outbox = app.test_client(), Outbox(app)
    confirmed(client, outbox, "ann@example.com")
    set_status(app, "ann@example.com", Status.BOUNCED)
    assert client.delete("/admin/subscribers/ann@example.com", headers=admin_headers)
    with app.app_context():
        db.session.execute(delete(WrappedKey))  # as if erased by the earlier code
        db.session.commit()
    again = make_app(SECRET_KEY="key-1")
    assert again.test_client().post("/subscribe", json={"email": "ann@example.com"})
    assert find(again, "ann@example.com") is None
    with again.app_context():
        assert db.session.scalar(select(func.count()).select_from(WrappedKey)) == 1
