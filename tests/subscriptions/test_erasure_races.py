"""Erasure racing what else touches the address or the list, or outliving a key rotation.

An erasure is held open just before it commits (its statements run, its row
locks held) while the other side starts, then let go: the other side must
see it as committed, not as it was when it began.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from flask import Flask
from sqlalchemy import event, func, select

from newsletter.digests import service as digest_service
from newsletter.extensions import db
from newsletter.models import (
    Delivery,
    DeliveryStatus,
    Erasure,
    ProviderEvent,
    Status,
    Subscriber,
    WrappedKey,
)
from newsletter.subscriptions.erased import email_hash
from newsletter.subscriptions.erasure import erase
from tests.conftest import Outbox
from tests.digests.helpers import add_confirmed, add_post
from tests.subscriptions.helpers import confirmed, find, set_status, unsubscribe_link
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
    erased = client.delete("/admin/subscribers/ann@example.com", headers=admin_headers)
    assert erased.status_code == 204
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


def test_a_host_left_out_of_a_key_rotation_refuses_what_would_bring_the_erased_back(
    make_app, admin_headers, tmp_path
):
    # An operator's cron host still on the retired key imported an erased reader, who
    # had left, as confirmed: the hashes were read with a key derived from its own.
    first = make_app(SECRET_KEY="key-1")
    client, outbox = first.test_client(), Outbox(first)
    confirmed(client, outbox, "ann@example.com")
    assert client.post(unsubscribe_link(first, find(first, "ann@example.com"))).status_code == 200
    erased = client.delete("/admin/subscribers/ann@example.com", headers=admin_headers)
    assert erased.status_code == 204
    # Rotated as the README says: the old key listed (the first read wraps it anew), then not.
    for secret, fallbacks in (("key-2", ["key-1"]), ("key-2", [])):
        app = make_app(SECRET_KEY=secret, SECRET_KEY_FALLBACKS=fallbacks)
        signup = app.test_client().post("/subscribe", json={"email": "bob@example.com"})
        assert signup.status_code == 202
    stale = make_app(SECRET_KEY="key-old-host")
    csv = {"data": "email\nann@example.com\n", "content_type": "text/csv"}
    imported = stale.test_client().post(
        "/admin/subscribers/import?confirmed=true", headers=admin_headers, **csv
    )
    assert imported.status_code == 503
    signup = stale.test_client().post("/subscribe", json={"email": "ann@example.com"})
    assert signup.status_code == 503
    assert find(stale, "ann@example.com") is None
    readers = tmp_path / "readers.csv"
    readers.write_text("email\nann@example.com\n")
    result = stale.test_cli_runner().invoke(
        args=["subscribers", "import", "--confirmed", str(readers)]
    )
    assert result.exit_code == 1 and "SECRET_KEY_FALLBACKS" in result.output
    assert find(stale, "ann@example.com") is None


def test_hashes_made_before_the_key_was_kept_still_match(make_app, admin_headers):
    # A database erased into by the earlier code: no kept key, each hash keyed from
    # SECRET_KEY. The first key kept is that one, not a random one.
    legacy = hmac.new(b"key-1", b"erasure", hashlib.sha256).digest()
    app = make_app(SECRET_KEY="key-1")
    with app.app_context():
        digest = hmac.digest(legacy, b"ann@example.com", "sha256").hex()
        db.session.add(Erasure(email_hash=digest, prior_status=Status.BOUNCED))
        db.session.commit()
    answer = app.test_client().post("/subscribe", json={"email": "ann@example.com"})
    assert answer.status_code == 202
    assert find(app, "ann@example.com") is None
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(WrappedKey)) == 1


def test_a_fresh_install_keeps_a_random_key_not_one_derived_from_secret_key(app, client):
    # Derived from SECRET_KEY, a leaked (even retired) key plus a copy of the database
    # would let anyone test addresses against the hashes.
    assert client.post("/subscribe", json={"email": "ann@example.com"}).status_code == 202
    from newsletter.subscriptions.erasure_key import erasure_key

    derived = hmac.new(app.config["SECRET_KEY"].encode(), b"erasure", hashlib.sha256).digest()
    assert len(erasure_key(app)) == 32 and erasure_key(app) != derived


def test_sqlite_an_answer_to_an_erased_readers_copy_names_nobody(
    app, client, admin_headers, database_uri
):
    # SQLite has no row lock for the erasure to wait on: the copy in flight is answered
    # after it. The answer is counted, but the provider's id and error text (a 550
    # often quotes the address) are not written onto the anonymous copy.
    from newsletter.delivery import ledger
    from newsletter.delivery.dispatcher import retry_policy
    from newsletter.providers import Outcome, SendResult
    from tests.conftest import is_postgresql

    if is_postgresql(database_uri):
        pytest.skip("PostgreSQL's erasure waits for the claim's row lock (the races above)")
    emails = add_confirmed(app, 2)
    add_post(client, admin_headers, 1)
    assert client.post("/admin/digests", json={}, headers=admin_headers).status_code == 202
    with app.app_context():
        claimed = ledger.claim(db.session, 10, lease_seconds=300)
        assert erase(db.session, emails[0])
        answers = [
            SendResult(Outcome.REJECTED, error=f"550 <{emails[0]}> unknown"),
            SendResult(Outcome.SENT, provider_id="pm-2"),
        ]
        by_reader = sorted(claimed, key=lambda c: c.subscriber.email)
        ledger.record(db.session, by_reader, answers, retry_policy(), "outbox")
        db.session.commit()
        rows = db.session.execute(
            select(Delivery.status, Delivery.provider_message_id, Delivery.last_error)
            .where(Delivery.kind == "digest")
            .order_by(Delivery.id)
        ).all()
    assert sorted(rows, key=str) == sorted(
        [(DeliveryStatus.FAILED, None, None), (DeliveryStatus.SENT, "pm-2", None)], key=str
    )


def test_a_bounce_arriving_while_its_new_address_signs_up_still_stops_it(make_app):
    # From the last race pass (PostgreSQL, 71 in 150): the webhook found no subscriber
    # (the signup's row not committed), the signup found no hash (the webhook's not
    # committed): both committed, and the bounced address was pending and mailed.
    from sqlalchemy import insert

    from newsletter.db_helpers import hold_addresses
    from newsletter.models import new_public_id

    app = make_app(WEBHOOK_BASIC_AUTH=signing.BASIC_AUTH)
    client = app.test_client()
    bounce = {"RecordType": "Bounce", "Type": "HardBounce", "ID": 5, "Email": "new@example.com"}
    with app.app_context(), db.engine.connect() as signup:
        with signup.begin():  # a signup of the address, caught between insert and commit
            hold_addresses(signup, ["new@example.com"])
            signup.execute(
                insert(Subscriber).values(
                    email="new@example.com", status=Status.PENDING, public_id=new_public_id()
                )
            )
            hook, answers = started(
                client.post,
                "/webhooks/postmark",
                json=bounce,
                headers=signing.basic(signing.BASIC_AUTH),
            )
        hook.join(10)
    assert answers[0].status_code == 200
    assert find(app, "new@example.com").status is Status.BOUNCED
