"""Privacy and hygiene: security headers, masked logs, subject access, retention."""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

import pytest
from flask import session
from sqlalchemy import update

from newsletter.delivery.health import dispatch_health
from newsletter.extensions import db
from newsletter.models import Status, Subscriber, utcnow
from newsletter.security import MaskingFilter, mask
from tests.conftest import path_of
from tests.servers import wait_for
from tests.subscriptions.helpers import confirmed, find, unsubscribe_link


def test_pages_send_a_strict_csp_and_token_pages_no_referrer(client, outbox):
    client.post("/subscribe", data={"email": "ann@example.com"})
    outbox.dispatch()
    page = client.get(path_of(outbox.confirm_link("ann@example.com")))
    csp = page.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp
    assert page.headers["Referrer-Policy"] == "no-referrer"
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    assert page.headers["Cache-Control"] == "no-store"


def test_static_files_may_be_loaded_by_the_publishers_site(client):
    response = client.get("/static/pages.css")
    assert response.status_code == 200
    assert response.headers["Cross-Origin-Resource-Policy"] == "cross-origin"
    response.close()


def test_mask_hides_addresses_and_tokens():
    line = "POST /confirm/WyJhYmMiLDBd.xyz.sig HTTP/1.1 from ann.smith@example.com"
    masked = mask(line)
    assert "WyJhYmMiLDBd" not in masked and "ann.smith" not in masked
    assert "/confirm/***" in masked and "a***@example.com" in masked
    # Each kind alone is still caught; a line with neither comes back as it was.
    assert mask('"POST /unsubscribe/abc.def HTTP/1.1"') == '"POST /unsubscribe/*** HTTP/1.1"'
    assert mask("bounce for bob@example.org") == "bounce for b***@example.org"
    plain = '"POST /subscribe HTTP/1.1" 202 rid=1a2b'
    assert mask(plain) == plain
    # As URLs carry them (%40), and with the characters an address may hold.
    assert mask('"DELETE /admin/subscribers/bob%40example.com HTTP/1.1"') == (
        '"DELETE /admin/subscribers/b***@example.com HTTP/1.1"'
    )
    assert mask("GET /admin/subscribers?q=carol%40example.com") == (
        "GET /admin/subscribers?q=c***@example.com"
    )
    # Two in one URL: the first one's domain ends where the URL goes on.
    assert mask("?to=a%40x.com&cc=b%40y.com") == "?to=a***@x.com&cc=b***@y.com"
    assert mask("a@x.com/b@y.com") == "a***@x.com/b***@y.com"
    for address in ("bob#@example.com", "{x}@example.com", "josé@example.com", "o'neil@x.org"):
        assert mask(f"address {address}") == f"address {address[0]}***@{address.split('@')[1]}"
    # A separator of paths or queries inside the local part: nothing of it is left.
    for line in (
        "GET /admin/subscribers/okaddr&@example.org HTTP/1.1",
        "Failing row contains (1, trapper/@example.org, x)",
        "'email': 'trapper=@example.org'",
        "DELETE /admin/subscribers/okaddr2=smith@example.org HTTP/1.1",
    ):
        masked = mask(line)
        assert "okaddr" not in masked and "trapper" not in masked and "smith" not in masked
        assert "***@example.org" in masked, masked


def test_no_answer_sets_a_cookie_and_the_session_refuses_writes(app, client):
    """No cookie today; and the session is a NullSession, so none can creep in unnoticed."""
    for response in (
        client.get("/subscribe"),
        client.post("/subscribe", data={"email": "ann@example.com"}),
        client.post("/subscribe", json={"email": "bob@example.com"}),
    ):
        assert response.status_code in (200, 202)
        assert "Set-Cookie" not in response.headers
    # A NullSession: no state per visitor is kept.
    with app.test_request_context("/"), pytest.raises(RuntimeError):
        session["seen"] = True


def test_log_records_are_masked_unless_marked_as_a_development_link():
    record = logging.LogRecord(
        "x", logging.INFO, __file__, 1, "sent to %s", ("bob@example.com",), None
    )
    assert MaskingFilter().filter(record) and record.getMessage() == "sent to b***@example.com"
    link = logging.LogRecord("x", logging.INFO, __file__, 1, "-> /confirm/tok", None, None)
    link.unmasked = True
    MaskingFilter(keep_links=True).filter(link)
    assert link.getMessage() == "-> /confirm/tok"
    MaskingFilter(keep_links=False).filter(link)
    assert link.getMessage() == "-> /confirm/***"


def test_subject_access_export_holds_everything(client, outbox, admin_headers):
    confirmed(client, outbox, "ann@example.com")
    body = client.get("/admin/subscribers/ann@example.com/export", headers=admin_headers).get_json()
    assert body["subscriber"]["email"] == "ann@example.com"
    assert [e["kind"] for e in body["consent"]] == ["signup", "confirmation_queued", "confirmed"]
    assert [(d["kind"], d["status"]) for d in body["deliveries"]] == [("confirmation", "sent")]
    assert (
        client.get("/admin/subscribers/x@example.com/export", headers=admin_headers).status_code
        == 404
    )


def _last_touched(days: float, emails: list[str] | None = None) -> None:
    """Date the subscribers' signup, last change and last link ``days`` back (in an app context)."""
    then = utcnow() - timedelta(days=days)
    chosen = update(Subscriber)
    if emails is not None:
        chosen = chosen.where(Subscriber.email.in_(emails))
    db.session.execute(chosen.values(created_at=then, updated_at=then, last_confirmation_at=then))
    db.session.commit()


def test_purge_pending_deletes_only_old_unconfirmed_signups(app, client, outbox):
    confirmed(client, outbox, "kept@example.com")
    client.post("/subscribe", json={"email": "old@example.com"})
    client.post("/subscribe", json={"email": "new@example.com"})
    with app.app_context():
        _last_touched(40, ["old@example.com", "kept@example.com"])
    result = app.test_cli_runner().invoke(
        args=["subscribers", "purge-pending", "--older-than", "30"]
    )
    assert result.exit_code == 0 and "purged 1" in result.output
    assert find(app, "old@example.com") is None
    assert find(app, "new@example.com").status is Status.PENDING
    assert find(app, "kept@example.com").status is Status.CONFIRMED


def test_purge_counts_from_the_last_signup_not_the_first(app, client, outbox):
    """A reader who signed up long ago and again today keeps the row, the history, the link."""
    back = confirmed(client, outbox, "back@example.com")
    assert client.post(unsubscribe_link(app, back)).status_code == 200
    client.post("/subscribe", json={"email": "late@example.com"})  # never confirmed
    outbox.dispatch()
    with app.app_context():
        _last_touched(40)
    for email in ("back@example.com", "late@example.com"):  # both sign up again today
        assert client.post("/subscribe", json={"email": email}).status_code == 202
    outbox.dispatch()

    result = app.test_cli_runner().invoke(
        args=["subscribers", "purge-pending", "--older-than", "30"]
    )
    assert result.exit_code == 0 and "purged 0" in result.output
    for email in ("back@example.com", "late@example.com"):
        assert find(app, email).status is Status.PENDING
        assert client.post(path_of(outbox.confirm_link(email))).status_code == 200
    with app.app_context():
        events = db.session.get(Subscriber, back.id).events
        kinds = [event.kind.value for event in events]
    assert kinds[:2] == ["signup", "confirmation_queued"] and "unsubscribed" in kinds


def test_purge_keeps_a_reader_who_left_and_came_back_without_confirming(app, client, outbox):
    """Pending again for long, a former reader keeps the proof of consent and unsubscribe."""
    back = confirmed(client, outbox, "back@example.com")
    client.post(unsubscribe_link(app, back))
    client.post("/subscribe", json={"email": "back@example.com"})
    with app.app_context():
        _last_touched(40)
    result = app.test_cli_runner().invoke(
        args=["subscribers", "purge-pending", "--older-than", "30"]
    )
    assert "purged 0" in result.output
    assert find(app, "back@example.com").status is Status.PENDING


def test_purge_deletes_the_outbox_files_of_the_addresses_it_purges(app, client, outbox):
    for email in ("gone@example.com", "stays@example.com"):
        client.post("/subscribe", json={"email": email})
    outbox.dispatch()
    with app.app_context():
        _last_touched(40, ["gone@example.com"])
    result = app.test_cli_runner().invoke(
        args=["subscribers", "purge-pending", "--older-than", "30"]
    )
    assert "purged 1" in result.output and "warning" not in result.output
    assert outbox.messages("gone@example.com") == []
    assert len(outbox.messages("stays@example.com")) == 1


def test_a_purge_that_kills_links_still_valid_says_so(app, client):
    client.post("/subscribe", json={"email": "gone@example.com"})
    with app.app_context():
        _last_touched(2)
    result = app.test_cli_runner().invoke(
        args=["subscribers", "purge-pending", "--older-than", "1"]
    )
    assert result.exit_code == 0 and "purged 1" in result.output
    assert "warning: their confirm links were valid for 7 days" in result.stderr


@pytest.mark.parametrize("days", ["nan", "inf", "1e9", "-1"])
def test_purge_pending_refuses_a_number_of_days_it_cannot_use(app, days):
    result = app.test_cli_runner().invoke(
        args=["subscribers", "purge-pending", "--older-than", days]
    )
    assert result.exit_code == 2 and "Invalid value for '--older-than'" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_celery_beat_purges_old_pending_signups_hourly(app, client, monkeypatch):
    from newsletter import tasks

    purge = tasks.celery.conf.beat_schedule["purge-old-pending-signups"]
    assert purge["schedule"] == 3600.0 and purge["task"] == tasks.housekeeping.name
    client.post("/subscribe", json={"email": "old@example.com"})
    with app.app_context():
        _last_touched(31)
    monkeypatch.setattr(tasks, "flask_app", lambda: app)
    assert tasks.housekeeping.run(*purge["args"]) == 1
    assert find(app, "old@example.com") is None


def test_cron_dispatch_also_runs_the_housekeeping(app, client):
    # Without a dispatcher thread or Celery beat, ``flask outbox dispatch`` from cron purges.
    client.post("/subscribe", json={"email": "old@example.com"})
    with app.app_context():
        _last_touched(31)
    result = app.test_cli_runner().invoke(args=["outbox", "dispatch"])
    assert result.exit_code == 0, result.output
    assert "purge-old-pending-signups: 1" in result.output
    assert "settle-stalled-digests: 0" in result.output
    assert find(app, "old@example.com") is None


@pytest.mark.parametrize(("index", "purged"), [(0, True), (1, False)])
def test_only_the_first_dispatcher_process_runs_the_housekeeping(app, client, index, purged):
    # DISPATCH_PROCESSES=2: one purge an hour is enough, whichever process is 0.
    from newsletter.delivery.dispatch_process import run

    client.post("/subscribe", json={"email": "old@example.com"})
    with app.app_context():
        _last_touched(31)
    stop = threading.Event()
    process = threading.Thread(target=run, args=(app, stop, index))
    process.start()
    try:
        # Each loop runs the jobs due (all of them, the first time), then a pass.
        wait_for(lambda: dispatch_health(app).last_pass_at is not None, 15, "a first pass")
    finally:
        stop.set()
        process.join(10)
    assert (find(app, "old@example.com") is None) is purged
