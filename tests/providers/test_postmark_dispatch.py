"""Postmark against a local fake, through the real dispatcher and ledger: every failure kind.

Each test ends with every deliverable message delivered exactly once at the fake.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from flask import Flask
from sqlalchemy import select, update

from config import ConfigError
from newsletter.delivery.dispatcher import BackgroundDispatcher, PassStats, dispatch_pass
from newsletter.delivery.dispatcher import log as dispatcher_log
from newsletter.delivery.health import DispatchHealth, dispatch_health, health_file
from newsletter.extensions import db
from newsletter.models import (
    ConsentKind,
    Delivery,
    DeliveryStatus,
    ProviderEvent,
    Status,
    Subscriber,
    utcnow,
)
from newsletter.providers import Outcome
from newsletter.providers.postmark import PostmarkProvider
from tests.conftest import ADMIN_TOKEN
from tests.log_lines import said_by
from tests.servers import wait_for

from .messages import confirmation, digest
from .servers import FakePostmark

Postmark = tuple[FakePostmark, str]


READERS = ["ann@example.com", "bob@example.com", "cy@example.com"]


def postmark_app(make_app: Callable[..., Flask], postmark: Postmark, **overrides) -> Flask:
    fake, base = postmark
    settings = {
        "EMAIL_PROVIDER": "postmark",
        "POSTMARK_API_URL": base,
        "POSTMARK_SERVER_TOKEN": fake.token,
        "PROVIDER_TIMEOUT": 5.0,
    }
    return make_app(**{**settings, **overrides})


def sign_up(app: Flask, *emails: str) -> None:
    client = app.test_client()
    for address in emails:
        response = client.post("/subscribe", json={"email": address})
        assert response.status_code == 202, response.get_data(as_text=True)


def dispatch(app: Flask) -> PassStats:
    with app.app_context():
        try:
            return dispatch_pass()
        finally:
            db.session.remove()


def counts(stats: PassStats) -> dict[str, int]:
    return {outcome: n for outcome, n in stats.outcomes.items() if n}


def statuses(app: Flask) -> dict[str, DeliveryStatus]:
    with app.app_context():
        rows = db.session.scalars(select(Delivery)).all()
        result = {d.subscriber.email: d.status for d in rows}
        db.session.remove()
        return result


def assert_each_delivered_once(fake: FakePostmark, emails: list[str]) -> None:
    for address in emails:
        assert len(fake.to(address)) == 1, (address, fake.to(address))


def test_batch_sends_each_message_with_stream_metadata_and_headers(postmark: Postmark) -> None:
    fake, base = postmark
    provider = PostmarkProvider(fake.token, base, "newsletter-broadcast", 5)
    results = provider.send_batch([digest(1), confirmation(2)])
    assert [r.outcome for r in results] == [Outcome.SENT, Outcome.SENT]
    assert [r.provider_id for r in results] == ["pm-1", "pm-2"]
    sent_digest, sent_confirmation = fake.delivered
    assert sent_digest["MessageStream"] == "newsletter-broadcast"
    assert sent_confirmation["MessageStream"] == "outbound"
    assert sent_digest["Metadata"] == {"newsletter_key": digest(1).key}
    assert {"Name": "List-Unsubscribe-Post", "Value": "List-Unsubscribe=One-Click"} in (
        sent_digest["Headers"]
    )
    assert sent_digest["Tag"] == "digest"


def test_a_batch_never_exceeds_postmarks_limit(postmark: Postmark) -> None:
    fake, base = postmark
    provider = PostmarkProvider(fake.token, base, "broadcast", 5)
    assert provider.max_batch == 500
    results = provider.send_batch([digest(n) for n in range(500)])
    assert all(r.outcome is Outcome.SENT for r in results)
    assert len(fake.delivered) == 500


def test_a_batch_too_large_for_one_request_is_sent_in_parts(postmark: Postmark) -> None:
    fake, base = postmark
    provider = PostmarkProvider(fake.token, base, "broadcast", 5)
    one = len(orjson.dumps([provider.payload(digest(0))]))
    fake.max_bytes = one * 2 + 10  # two copies a request at most
    results = provider.send_batch([digest(n) for n in range(5)])
    assert [r.outcome for r in results] == [Outcome.SENT] * 5
    assert sorted(m["To"] for m in fake.delivered) == [f"reader{n}@example.com" for n in range(5)]
    # 5 refused, halves of 2 and 3 (the 3 refused, then 1 and 2): every copy sent once.
    assert fake.calls == 5


def test_a_message_too_large_alone_fails_without_pausing_the_rest(
    make_app: Callable[..., Flask], postmark: Postmark
) -> None:
    fake, _ = postmark
    fake.max_bytes = 100  # no message fits
    app = postmark_app(make_app, postmark)
    sign_up(app, *READERS)
    assert counts(dispatch(app)) == {"rejected": 3}
    assert set(statuses(app).values()) == {DeliveryStatus.FAILED}
    health = dispatch_health(app)
    assert not health.paused, health.last_error
    with app.app_context():
        errors = db.session.scalars(select(Delivery.last_error)).all()
    assert all("too large" in (e or "") and "413" in (e or "") for e in errors), errors
    assert fake.delivered == []


def test_signups_are_sent_once(make_app: Callable[..., Flask], postmark: Postmark) -> None:
    fake, _ = postmark
    app = postmark_app(make_app, postmark)
    sign_up(app, *READERS)
    stats = dispatch(app)
    assert counts(stats) == {"sent": 3}
    assert set(statuses(app).values()) == {DeliveryStatus.SENT}
    assert all(m["MessageStream"] == "outbound" for m in fake.delivered)
    dispatch(app)
    assert_each_delivered_once(fake, READERS)


def test_server_error_then_success(make_app: Callable[..., Flask], postmark: Postmark) -> None:
    fake, _ = postmark
    fake.script = [(500, {}, {"ErrorCode": 500, "Message": "oops"})] * 2
    app = postmark_app(make_app, postmark)
    sign_up(app, *READERS)
    stats = dispatch(app)  # back-off is 0 in tests: the retries come in the same pass
    assert counts(stats) == {"transient": 6, "sent": 3}
    with app.app_context():
        attempts = db.session.scalars(select(Delivery.attempts)).all()
    assert attempts == [3, 3, 3]
    assert_each_delivered_once(fake, READERS)


def test_rate_limit_waits_retry_after_without_spending_attempts(
    make_app: Callable[..., Flask], postmark: Postmark
) -> None:
    fake, _ = postmark
    fake.script = [(429, {"Retry-After": "1"}, {"ErrorCode": 429, "Message": "slow down"})]
    app = postmark_app(make_app, postmark, DISPATCH_BATCH_SIZE=1)
    sign_up(app, *READERS)
    stats = dispatch(app)
    assert counts(stats) == {"rate_limited": 1}
    assert fake.calls == 1  # the rest of the queue waited instead of meeting the same 429
    assert dispatch(app).claimed == 0  # nothing due before Retry-After has passed
    with app.app_context():
        assert db.session.scalars(select(Delivery.attempts)).all() == [0, 0, 0]
    time.sleep(1.1)
    assert counts(dispatch(app)) == {"sent": 3}
    assert_each_delivered_once(fake, READERS)


def test_a_first_try_with_no_answer_is_tried_once_more(
    make_app: Callable[..., Flask], postmark: Postmark
) -> None:
    fake, _ = postmark
    fake.script, fake.delay = ["timeout"], 1.0  # hung, and took nothing
    app = postmark_app(make_app, postmark, PROVIDER_TIMEOUT=0.2)
    sign_up(app, *READERS)
    started = time.monotonic()
    stats = dispatch(app)
    assert time.monotonic() - started < 5
    assert counts(stats) == {"unknown": 3, "sent": 3}
    with app.app_context():
        errors = db.session.scalars(select(Delivery.last_error)).all()
    assert errors == [None, None, None]
    assert_each_delivered_once(fake, READERS)


def test_an_unanswered_try_after_a_plain_failure_is_still_tried_again(
    make_app: Callable[..., Flask], postmark: Postmark
) -> None:
    fake, _ = postmark
    # A 503 (nothing taken), then a hang that takes nothing: only the second went out
    # unanswered, so the copy is tried once more, and arrives.
    fake.script, fake.delay = [(503, {}, {"ErrorCode": 100, "Message": "down"}), "timeout"], 1.0
    app = postmark_app(make_app, postmark, PROVIDER_TIMEOUT=0.2)
    sign_up(app, *READERS)
    assert counts(dispatch(app)) == {"transient": 3, "unknown": 3, "sent": 3}
    assert_each_delivered_once(fake, READERS)


def test_a_provider_slower_than_the_timeout_sends_a_reader_two_copies_at_most(
    make_app: Callable[..., Flask], postmark: Postmark
) -> None:
    fake, _ = postmark
    fake.slow = 0.6  # takes every batch, answers after our timeout
    app = postmark_app(make_app, postmark, PROVIDER_TIMEOUT=0.2)
    sign_up(app, *READERS)
    with said_by(dispatcher_log) as said:
        for _ in range(4):  # each retry used to be one more copy, up to the last attempt
            dispatch(app)
    assert any("went out with no answer" in line for line in said)  # not silent
    fake.slow = 0.0
    assert dispatch(app).claimed == 0  # nothing left to send
    for address in READERS:
        assert len(fake.to(address)) == 2, address  # the first try, and its one retry
    assert set(statuses(app).values()) == {DeliveryStatus.SENT}
    with app.app_context():
        errors = db.session.scalars(select(Delivery.last_error)).all()
    assert all(error.startswith("sent, no answer in time") for error in errors)


@pytest.mark.parametrize(
    "body", ["<html>maintenance</html>", [{"ErrorCode": 0}], [1, 2, 3]], ids=str
)
def test_an_unreadable_success_is_unknown_not_a_plain_retry(
    make_app: Callable[..., Flask], postmark: Postmark, body: object
) -> None:
    fake, _ = postmark
    fake.script = [(200, {}, body)]  # a 2xx: the batch may well have been taken
    app = postmark_app(make_app, postmark)
    sign_up(app, *READERS)
    assert counts(dispatch(app)) == {"unknown": 3, "sent": 3}  # once more, not for good


def test_rejected_recipient_fails_alone(make_app: Callable[..., Flask], postmark: Postmark) -> None:
    fake, _ = postmark
    fake.inactive = {"bob@example.com"}
    app = postmark_app(make_app, postmark)
    sign_up(app, *READERS)
    assert counts(dispatch(app)) == {"sent": 2, "rejected": 1}
    assert statuses(app) == {
        "ann@example.com": DeliveryStatus.SENT,
        "bob@example.com": DeliveryStatus.FAILED,
        "cy@example.com": DeliveryStatus.SENT,
    }
    assert dispatch(app).claimed == 0  # a rejection is final: never retried
    assert_each_delivered_once(fake, ["ann@example.com", "cy@example.com"])
    assert fake.to("bob@example.com") == []


@pytest.mark.parametrize(
    ("reason", "status", "consent", "kind"),
    [
        ("HardBounce", Status.BOUNCED, ConsentKind.BOUNCED, "hard_bounce"),
        ("SpamComplaint", Status.COMPLAINED, ConsentKind.COMPLAINED, "complaint"),
        ("ManualSuppression", Status.UNSUBSCRIBED, ConsentKind.UNSUBSCRIBED, "unsubscribe"),
    ],
)
def test_an_address_postmark_keeps_inactive_stops_for_the_reason_postmark_gives(
    make_app: Callable[..., Flask], postmark: Postmark, reason, status, consent, kind
) -> None:
    """406: Postmark sends it nothing (a bounce, a complaint, the reader's own unsubscribe)."""
    fake, _ = postmark
    fake.inactive = {"bob@example.com": reason}
    app = postmark_app(make_app, postmark)
    sign_up(app, *READERS)
    # Asked only once the batch is recorded: a slow answer cannot outlast its claim.
    seen_while_asked: list[dict] = []
    fake.on_suppressions_asked = lambda: seen_while_asked.append(statuses(app))
    assert counts(dispatch(app)) == {"sent": 2, "rejected": 1}
    assert fake.suppressions_asked == [("outbound", "bob@example.com")]  # bob's alone
    assert seen_while_asked == [
        {
            "ann@example.com": DeliveryStatus.SENT,
            "bob@example.com": DeliveryStatus.FAILED,
            "cy@example.com": DeliveryStatus.SENT,
        }
    ]
    with app.app_context():
        bob = db.session.scalars(select(Subscriber).where(Subscriber.email == "bob@example.com"))
        bob = bob.one()
        assert bob.status is status
        [stopped] = [e for e in bob.events if e.kind is consent]
        if consent is ConsentKind.UNSUBSCRIBED:  # no webhook came: the send was refused
            assert stopped.detail == {"method": "postmark send refusal"}
        else:
            assert (stopped.detail["provider"], stopped.detail["type"]) == (
                "postmark",
                "SendRefused",
            )
        stored = db.session.scalars(select(ProviderEvent)).all()
        assert [(e.kind, e.email, e.raw_type) for e in stored] == [
            (kind, "bob@example.com", "SendRefused")
        ]
        db.session.remove()
    assert fake.to("bob@example.com") == []


def test_a_406_whose_reason_cannot_be_read_fails_that_copy_only(
    make_app: Callable[..., Flask], postmark: Postmark
) -> None:
    """Not in the suppressions dump (lifted meanwhile, or a lookup that failed)."""
    fake, _ = postmark
    fake.inactive = {"bob@example.com": None}
    app = postmark_app(make_app, postmark)
    sign_up(app, "bob@example.com")
    assert counts(dispatch(app)) == {"rejected": 1}
    assert fake.suppressions_asked == [("outbound", "bob@example.com")]
    assert statuses(app) == {"bob@example.com": DeliveryStatus.FAILED}
    with app.app_context():
        assert db.session.scalars(select(Subscriber.status)).all() == [Status.PENDING]
        assert db.session.scalars(select(ProviderEvent)).all() == []
        db.session.remove()


def test_an_invalid_sender_pauses_and_an_invalid_reader_fails_alone(
    make_app: Callable[..., Flask], postmark: Postmark
) -> None:
    """ErrorCode 300 names the field first: ours (From) pauses; a reader's fails that one."""
    local = postmark_app(make_app, postmark, MAIL_FROM="Newsletter <newsletter@localhost>")
    sign_up(local, "ann@example.com")
    assert counts(dispatch(local)) == {"config_error": 1}
    assert statuses(local) == {"ann@example.com": DeliveryStatus.QUEUED}

    fixed = postmark_app(make_app, postmark)
    with fixed.app_context():  # fixed, restarted, and the retry falls due
        db.session.execute(update(Delivery).values(next_attempt_at=utcnow()))
        db.session.commit()
        db.session.remove()
    sign_up(fixed, "from.me@example.com")  # an address the fake refuses, quoted after 'To'
    assert counts(dispatch(fixed)) == {"sent": 1, "rejected": 1}
    assert statuses(fixed) == {
        "ann@example.com": DeliveryStatus.SENT,
        "from.me@example.com": DeliveryStatus.FAILED,
    }


def test_bad_key_pauses_sending_then_resumes_once_fixed(
    make_app: Callable[..., Flask], postmark: Postmark
) -> None:
    fake, _ = postmark
    app = postmark_app(make_app, postmark, POSTMARK_SERVER_TOKEN="wrong", RETRY_BASE_SECONDS=60.0)
    sign_up(app, *READERS)
    stats = dispatch(app)
    assert counts(stats) == {"config_error": 3}
    health = dispatch_health(app)
    assert health.paused and "Server API token" in (health.last_error or "")
    assert app.test_client().get("/healthz").get_json()["dispatch"]["paused"] is True
    assert dispatch(app).claimed == 0  # paused: the queue is not burned through
    with app.app_context():
        assert db.session.scalars(select(Delivery.attempts)).all() == [0, 0, 0]
    assert fake.delivered == []

    fixed = postmark_app(make_app, postmark)  # the operator fixes the token and restarts
    with fixed.app_context():
        db.session.execute(Delivery.__table__.update().values(next_attempt_at=Delivery.created_at))
        db.session.commit()
    assert counts(dispatch(fixed)) == {"sent": 3}
    assert_each_delivered_once(fake, READERS)


@pytest.mark.parametrize(
    ("provider", "needs"),
    [
        ("postmark", "POSTMARK_SERVER_TOKEN"),
        ("sendgrid", "SENDGRID_API_KEY"),
        ("mailgun", "MAILGUN_API_KEY and MAILGUN_DOMAIN"),
        ("resend", "RESEND_API_KEY"),
        ("smtp", "SMTP_URL"),
    ],
)
def test_provider_without_credentials_stops_start_up(
    make_app: Callable[..., Flask], provider: str, needs: str
) -> None:
    with pytest.raises(ConfigError, match=needs):
        make_app(EMAIL_PROVIDER=provider)


def test_workers_show_the_pause_that_the_dispatcher_process_published(
    make_app: Callable[..., Flask], postmark: Postmark, tmp_path: Path, admin_headers: dict
) -> None:
    # Under gunicorn one process sends and the workers answer /healthz: the
    # process publishes its health record, the workers read it.
    shared = {
        "POSTMARK_SERVER_TOKEN": "wrong",
        "RETRY_BASE_SECONDS": 60.0,
        "DISPATCH_IN_PROCESS": False,
        "DISPATCH_HEALTH_FILE": str(tmp_path / "health.json"),
        "DISPATCH_DIGEST_PROCESSES": 0,  # one process alone, on PostgreSQL too
    }
    worker = postmark_app(make_app, postmark, **shared)
    client = worker.test_client()
    assert "dispatch" not in client.get("/healthz").get_json()  # nothing published yet
    sign_up(worker, *READERS)

    sender = postmark_app(make_app, postmark, **shared)
    dispatcher = BackgroundDispatcher(
        sender, interval=0.05, health_file=sender.config["DISPATCH_HEALTH_FILE"]
    )
    dispatcher.start()
    try:
        wait_for(lambda: "dispatch" in client.get("/healthz").get_json(), 15, "the pause")
    finally:
        dispatcher.stop()
    health = client.get("/healthz").get_json()["dispatch"]
    assert health == {"paused": True, "details": "/admin/stats"}  # why: for the admin only
    stats = client.get("/admin/stats", headers=admin_headers).get_json()["dispatch"]
    assert stats["paused"] is True and stats["last_pass_at"] is not None
    assert "Server API token" in stats["last_error"]


@pytest.mark.parametrize(
    "processes",
    [
        {"DISPATCH_PROCESSES": 2},
        {"DISPATCH_PROCESSES": 1, "DISPATCH_DIGEST_PROCESSES": 1},  # the second: digests only
    ],
)
def test_workers_show_a_pause_any_of_several_dispatcher_processes_published(
    make_app: Callable[..., Flask], postmark: Postmark, tmp_path: Path, processes: dict
) -> None:
    # Two dispatcher processes: the first found the queue empty and is healthy,
    # the second met the wrong token. The workers must show the pause.
    first = str(tmp_path / "health.json")
    shared = {
        "POSTMARK_SERVER_TOKEN": "wrong",
        "RETRY_BASE_SECONDS": 60.0,
        "DISPATCH_IN_PROCESS": False,
        "DISPATCH_HEALTH_FILE": first,
        **processes,
    }
    worker = postmark_app(make_app, postmark, **shared)
    client = worker.test_client()
    DispatchHealth(last_pass_at="2026-11-25T00:00:00+00:00").save(first)
    assert client.get("/healthz").get_json()["status"] == "ok"
    sign_up(worker, *READERS)

    sender = postmark_app(make_app, postmark, **shared)
    second = health_file(first, 1)
    assert second == str(tmp_path / "health-1.json")
    dispatcher = BackgroundDispatcher(sender, interval=0.05, health_file=second)
    dispatcher.start()
    try:
        wait_for(lambda: "dispatch" in client.get("/healthz").get_json(), 15, "the pause")
    finally:
        dispatcher.stop()
    health = client.get("/healthz").get_json()["dispatch"]
    assert health["paused"] is True
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    stats = worker.test_client().get("/admin/stats", headers=admin).get_json()["dispatch"]
    assert "Server API token" in stats["last_error"]


def test_a_list_id_beyond_ascii_reaches_the_provider_as_an_encoded_word(
    make_app: Callable[..., Flask], postmark: Postmark
) -> None:
    from email.header import decode_header, make_header

    from tests.digests.helpers import add_confirmed, add_post

    fake, _ = postmark
    app = postmark_app(make_app, postmark, NEWSLETTER_NAME="Café Zürich News")
    add_confirmed(app, 1)
    client = app.test_client()
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    add_post(client, headers, 1)
    assert client.post("/admin/digests", json={}, headers=headers).status_code == 202
    dispatch(app)
    [sent] = fake.delivered
    value = {h["Name"]: h["Value"] for h in sent["Headers"]}["List-Id"]
    # Header values are ASCII; the provider passes this one on as it is.
    assert value.isascii() and value.endswith(" <digest.news.example.org>")
    assert str(make_header(decode_header(value))).startswith("Café Zürich News")
