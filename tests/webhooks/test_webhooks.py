"""Provider webhooks: verified on the raw body, stored once, acted on; never a 500."""

from __future__ import annotations

import json
import threading
import time

import pytest
from sqlalchemy import func, select

from newsletter.extensions import db
from newsletter.models import ConsentKind, ProviderEvent, Status, Subscriber
from newsletter.storable import unstorable
from newsletter.webhooks.events import MAX_NESTING
from tests.conftest import Outbox
from tests.digests.helpers import add_post
from tests.subscriptions.helpers import confirmed, find
from tests.webhooks import signing


@pytest.fixture
def signer():
    return signing.SendGridSigner()


@pytest.fixture
def hook_app(make_app, signer):
    return make_app(
        MAILGUN_WEBHOOK_SIGNING_KEY=signing.MAILGUN_KEY,
        RESEND_WEBHOOK_SECRET=signing.RESEND_SECRET,
        SENDGRID_WEBHOOK_PUBLIC_KEY=signer.public_key,
        WEBHOOK_BASIC_AUTH=signing.BASIC_AUTH,
    )


@pytest.fixture
def hook(hook_app):
    client, outbox = hook_app.test_client(), Outbox(hook_app)
    confirmed(client, outbox, "ann@example.com")
    return client


def stored_events(app) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(ProviderEvent))


def consent_kinds(app, email) -> list[ConsentKind]:
    with app.app_context():
        return [e.kind for e in db.session.get(Subscriber, find(app, email).id).events]


# --- one request per provider and kind ------------------------------------------------


def postmark(client, record: dict, credentials=signing.BASIC_AUTH):
    return client.post("/webhooks/postmark", json=record, headers=signing.basic(credentials))


def mailgun(client, data: dict, **kwargs):
    body = signing.mailgun_body(data, **kwargs)
    return client.post("/webhooks/mailgun", data=body, content_type="application/json")


def sendgrid(client, signer, events: list, at=None):
    body = json.dumps(events).encode()
    return client.post("/webhooks/sendgrid", data=body, headers=signer.headers(body, at))


def resend(client, event: dict, msg_id="msg_1", at=None):
    body = json.dumps(event).encode()
    return client.post(
        "/webhooks/resend", data=body, headers=signing.svix_headers(body, msg_id, at=at)
    )


HARD_BOUNCES = {
    "postmark": lambda c, s: postmark(
        c,
        {
            "RecordType": "Bounce",
            "ID": 42,
            "Type": "HardBounce",
            "Email": "Ann@Example.com",
            "MessageID": "pm-1",
        },
    ),
    "mailgun": lambda c, s: mailgun(
        c,
        {
            "event": "failed",
            "severity": "permanent",
            "id": "mg-1",
            "recipient": "ann@example.com",
            "timestamp": time.time(),
        },
    ),
    "sendgrid": lambda c, s: sendgrid(
        c,
        s,
        [
            {
                "event": "bounce",
                "type": "bounce",
                "sg_event_id": "sg-1",
                "email": "ann@example.com",
                "timestamp": int(time.time()),
            }
        ],
    ),
    "resend": lambda c, s: resend(
        c,
        {
            "type": "email.bounced",
            "created_at": "2026-11-24T10:00:00Z",
            "data": {
                "email_id": "rs-1",
                "to": ["ann@example.com"],
                "bounce": {"type": "Permanent"},
            },
        },
    ),
}
COMPLAINTS = {
    "postmark": lambda c, s: postmark(
        c, {"RecordType": "SpamComplaint", "ID": 7, "Email": "ann@example.com"}
    ),
    "mailgun": lambda c, s: mailgun(
        c, {"event": "complained", "id": "mg-2", "recipient": "ann@example.com"}
    ),
    "sendgrid": lambda c, s: sendgrid(
        c, s, [{"event": "spamreport", "sg_event_id": "sg-2", "email": "ann@example.com"}]
    ),
    "resend": lambda c, s: resend(
        c, {"type": "email.complained", "data": {"to": ["ann@example.com"]}}, "msg_2"
    ),
}
SOFT_BOUNCES = {
    "postmark": lambda c, s: postmark(
        c, {"RecordType": "Bounce", "ID": 8, "Type": "SoftBounce", "Email": "ann@example.com"}
    ),
    "mailgun": lambda c, s: mailgun(
        c,
        {"event": "failed", "severity": "temporary", "id": "mg-3", "recipient": "ann@example.com"},
    ),
    "sendgrid": lambda c, s: sendgrid(
        c, s, [{"event": "deferred", "sg_event_id": "sg-3", "email": "ann@example.com"}]
    ),
    "resend": lambda c, s: resend(
        c,
        {
            "type": "email.bounced",
            "data": {"to": ["ann@example.com"], "bounce": {"type": "Transient"}},
        },
        "msg_3",
    ),
}
UNSUBSCRIBES = {
    "postmark": lambda c, s: postmark(
        c,
        {
            "RecordType": "SubscriptionChange",
            "Recipient": "ann@example.com",
            "SuppressSending": True,
            "ChangedAt": "2026-11-24T10:00:00Z",
        },
    ),
    "mailgun": lambda c, s: mailgun(
        c, {"event": "unsubscribed", "id": "mg-4", "recipient": "ann@example.com"}
    ),
    "sendgrid": lambda c, s: sendgrid(
        c, s, [{"event": "unsubscribe", "sg_event_id": "sg-4", "email": "ann@example.com"}]
    ),
}
PROVIDERS = sorted(HARD_BOUNCES)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_hard_bounce_stops_mail_and_is_in_the_consent_ledger(
    hook_app, hook, signer, provider, admin_headers
):
    response = HARD_BOUNCES[provider](hook, signer)
    assert response.status_code == 200, response.get_json()
    assert response.get_json() == {"received": 1, "new": 1}
    assert find(hook_app, "ann@example.com").status is Status.BOUNCED
    assert consent_kinds(hook_app, "ann@example.com")[-1] is ConsentKind.BOUNCED
    # and the next digest, which she would get as a confirmed reader, leaves her out
    # (a later signup proves nothing: a confirmed address is not mailed again either)
    # Bob, confirmed too, shows the digest did go out, to everyone but her.
    outbox = Outbox(hook_app)
    confirmed(hook, outbox, "bob@example.com")
    before = len(outbox.messages("ann@example.com"))
    bob_before = len(outbox.messages("bob@example.com"))
    add_post(hook, admin_headers, 1)
    digest = hook.post("/admin/digests", json={}, headers=admin_headers)
    assert digest.status_code == 202, digest.get_json()
    assert digest.get_json()["recipients"] == 1
    outbox.dispatch()
    assert len(outbox.messages("ann@example.com")) == before
    assert len(outbox.messages("bob@example.com")) == bob_before + 1


@pytest.mark.parametrize("provider", PROVIDERS)
def test_complaint_wins_over_a_bounce_and_is_never_undone(hook_app, hook, signer, provider):
    assert COMPLAINTS[provider](hook, signer).status_code == 200
    assert find(hook_app, "ann@example.com").status is Status.COMPLAINED
    assert HARD_BOUNCES[provider](hook, signer).status_code == 200
    assert find(hook_app, "ann@example.com").status is Status.COMPLAINED
    assert consent_kinds(hook_app, "ann@example.com").count(ConsentKind.COMPLAINED) == 1


@pytest.mark.parametrize("provider", PROVIDERS)
def test_soft_bounce_is_counted_only(hook_app, hook, signer, provider):
    assert SOFT_BOUNCES[provider](hook, signer).status_code == 200
    subscriber = find(hook_app, "ann@example.com")
    assert subscriber.status is Status.CONFIRMED and subscriber.soft_bounces == 1


@pytest.mark.parametrize("provider", sorted(UNSUBSCRIBES))
def test_provider_side_unsubscribe_unsubscribes(hook_app, hook, signer, provider):
    assert UNSUBSCRIBES[provider](hook, signer).status_code == 200
    assert find(hook_app, "ann@example.com").status is Status.UNSUBSCRIBED
    with hook_app.app_context():
        events = db.session.get(Subscriber, find(hook_app, "ann@example.com").id).events
        assert events[-1].detail == {"method": f"{provider} webhook"}


@pytest.mark.parametrize("provider", PROVIDERS)
def test_replayed_event_changes_nothing(hook_app, hook, signer, provider):
    COMPLAINTS[provider](hook, signer)
    again = COMPLAINTS[provider](hook, signer)
    assert again.status_code == 200 and again.get_json()["new"] == 0
    assert stored_events(hook_app) == 1
    assert consent_kinds(hook_app, "ann@example.com").count(ConsentKind.COMPLAINED) == 1


def test_unknown_event_types_are_stored_and_ignored(hook_app, hook, signer):
    assert (
        postmark(hook, {"RecordType": "Open", "ID": 1, "Recipient": "ann@example.com"}).status_code
        == 200
    )
    assert (
        mailgun(hook, {"event": "opened", "id": "mg-9", "recipient": "ann@example.com"}).status_code
        == 200
    )
    assert (
        sendgrid(
            hook,
            signer,
            [
                {"event": "click", "email": "ann@example.com"},
                {"event": "delivered", "email": "ann@example.com"},
            ],
        ).status_code
        == 200
    )
    assert (
        resend(
            hook, {"type": "email.opened", "data": {"to": "ann@example.com"}}, "msg_9"
        ).status_code
        == 200
    )
    assert stored_events(hook_app) == 5
    assert find(hook_app, "ann@example.com").status is Status.CONFIRMED


def test_event_found_by_our_message_key_when_the_address_is_missing(hook_app, hook):
    with hook_app.app_context():
        from newsletter.models import Delivery

        key = db.session.scalars(select(Delivery.message_key)).first()
    response = postmark(
        hook,
        {
            "RecordType": "Bounce",
            "ID": 5,
            "Type": "HardBounce",
            "Metadata": {"newsletter_key": key},
        },
    )
    assert response.status_code == 200
    assert find(hook_app, "ann@example.com").status is Status.BOUNCED


# --- refusals: 401 and nothing changes ----------------------------------------------


def assert_refused(app, response, status=401):
    assert response.status_code == status, response.data
    assert response.get_json()["error"]["code"] == (
        "invalid_signature" if status == 401 else "invalid_payload"
    )
    assert stored_events(app) == 0
    assert find(app, "ann@example.com").status is Status.CONFIRMED


def test_postmark_wrong_or_missing_credentials(hook_app, hook):
    record = {"RecordType": "SpamComplaint", "ID": 1, "Email": "ann@example.com"}
    assert_refused(hook_app, postmark(hook, record, credentials="hooks:wrong"))
    assert_refused(hook_app, hook.post("/webhooks/postmark", json=record))


def test_mailgun_bad_signature_and_stale_timestamp(hook_app, hook):
    data = {"event": "complained", "id": "mg-x", "recipient": "ann@example.com"}
    assert_refused(hook_app, mailgun(hook, data, key="not-the-key"))
    assert_refused(hook_app, mailgun(hook, data, at=time.time() - 3600))


def test_sendgrid_bad_signature_stale_timestamp_and_tampered_body(hook_app, hook, signer):
    events = [{"event": "spamreport", "sg_event_id": "x", "email": "ann@example.com"}]
    other = signing.SendGridSigner()
    body = json.dumps(events).encode()
    assert_refused(
        hook_app, hook.post("/webhooks/sendgrid", data=body, headers=other.headers(body))
    )
    assert_refused(hook_app, sendgrid(hook, signer, events, at=time.time() - 3600))
    headers = signer.headers(body)
    tampered = body.replace(b"spamreport", b"delivered!")
    assert_refused(hook_app, hook.post("/webhooks/sendgrid", data=tampered, headers=headers))


def test_resend_bad_signature_and_stale_timestamp(hook_app, hook):
    event = {"type": "email.complained", "data": {"to": ["ann@example.com"]}}
    body = json.dumps(event).encode()
    wrong = signing.svix_headers(body, "msg_x", secret="whsec_" + "QUJD" * 8)
    assert_refused(hook_app, hook.post("/webhooks/resend", data=body, headers=wrong))
    assert_refused(hook_app, resend(hook, event, "msg_y", at=time.time() - 3600))


def test_unconfigured_provider_refuses_everything(make_app):
    client = make_app().test_client()
    body = signing.mailgun_body({"event": "complained", "recipient": "a@example.com"})
    assert (
        client.post("/webhooks/mailgun", data=body, content_type="application/json").status_code
        == 401
    )
    assert client.post("/webhooks/postmark", json={}, headers=signing.basic()).status_code == 401


@pytest.mark.parametrize(
    ("provider", "body"),
    [
        ("postmark", b"{not json"),
        ("postmark", b"[1, 2]"),
        ("postmark", b'{"NoRecordType": 1}'),
        ("postmark", b"[" * 40_000),  # deeper than the parser goes
        # Not JSON (nor what a JSON column stores): a 500 on PostgreSQL before.
        ("postmark", b'{"RecordType": "Bounce", "ID": NaN, "Email": "ann@example.com"}'),
    ],
)
def test_malformed_verified_body_is_a_400(hook_app, hook, provider, body):
    response = hook.post(
        f"/webhooks/{provider}", data=body, content_type="application/json", headers=signing.basic()
    )
    assert_refused(hook_app, response, status=400)


def test_malformed_signed_bodies_of_the_signing_providers(hook_app, hook, signer):
    body = b'{"not": "an array"}'
    assert_refused(
        hook_app, hook.post("/webhooks/sendgrid", data=body, headers=signer.headers(body)), 400
    )
    body = b'{"type": "email.bounced"}'
    assert_refused(
        hook_app,
        hook.post("/webhooks/resend", data=body, headers=signing.svix_headers(body, "m")),
        400,
    )
    body = signing.mailgun_body("nope")  # event-data is not an object
    assert_refused(
        hook_app, hook.post("/webhooks/mailgun", data=body, content_type="application/json"), 400
    )


# --- odd text and odd items: made storable, every other event still acted on ----------

# NUL: PostgreSQL's text cannot hold it; a lone surrogate (JSON may escape one): no encoding.
ODD = ["\x00", "\ud800", "\udfff"]


def stored(app) -> dict[str, dict]:
    """The stored events' columns, by event id."""
    with app.app_context():
        return {
            e.event_id: {"kind": e.kind, "email": e.email, "payload": e.payload}
            for e in db.session.scalars(select(ProviderEvent))
        }


def made_storable(payload) -> bool:
    """The payload holds U+FFFD where odd text was, and nothing a column cannot store."""
    return unstorable(payload) is None and "\ufffd" in json.dumps(payload, ensure_ascii=False)


@pytest.mark.parametrize("odd", ODD)
def test_one_odd_string_in_a_sendgrid_batch_loses_none_of_its_events(hook_app, hook, signer, odd):
    # From the black-box pass: a NUL or lone surrogate anywhere in a signed batch was a
    # 400 for the whole body. SendGrid re-sends it unchanged: its hard bounce was lost.
    confirmed(hook, Outbox(hook_app), "bob@example.com")
    bounce = {
        "event": "bounce",
        "type": "bounce",
        "sg_event_id": "sg-b",
        "email": "ann@example.com",
    }
    odd_one = {
        "event": "delivered",
        "sg_event_id": f"sg-o{odd}",
        "email": "bob@example.com",
        "response": f"250 ok{odd}",
        f"note{odd}": [odd],
    }
    response = sendgrid(hook, signer, [bounce, odd_one])
    assert response.status_code == 200, response.get_json()
    assert response.get_json() == {"received": 2, "new": 2}
    assert find(hook_app, "ann@example.com").status is Status.BOUNCED
    assert consent_kinds(hook_app, "ann@example.com")[-1] is ConsentKind.BOUNCED
    kept = stored(hook_app)["sg-o\ufffd"]
    assert kept["email"] == "bob@example.com"
    assert kept["payload"]["response"] == "250 ok\ufffd"
    assert kept["payload"]["note\ufffd"] == ["\ufffd"]
    # SendGrid's retry of the same body: its events are the same ones, not new
    again = sendgrid(hook, signer, [bounce, odd_one])
    assert again.status_code == 200 and again.get_json()["new"] == 0


def test_odd_text_is_replaced_not_dropped_so_it_names_no_one_else(hook_app, hook, signer):
    events = [
        {"event": "delivered", "sg_event_id": "sg-1", "email": "ann@example.com"},
        # With the NUL dropped this event would be sg-1 (lost as a repeat) and its
        # address ann's: a bounce of an address that is not hers.
        {"event": "bounce", "sg_event_id": "sg-1\x00", "email": "ann\x00@example.com"},
    ]
    response = sendgrid(hook, signer, events)
    assert response.get_json() == {"received": 2, "new": 2}
    assert find(hook_app, "ann@example.com").status is Status.CONFIRMED
    assert sorted(stored(hook_app)) == ["sg-1", "sg-1\ufffd"]


ODD_HARD_BOUNCES = {
    "mailgun": lambda c: mailgun(
        c,
        {
            "event": "failed",
            "severity": "permanent",
            "id": "mg-odd",
            "recipient": "ann@example.com",
            "delivery-status": {"message": "550 no\x00 such user \ud800", "code": 550},
            "user-variables": {"note\x00": "\udc00"},
        },
    ),
    "postmark": lambda c: postmark(
        c,
        {
            "RecordType": "Bounce",
            "ID": 61,
            "Type": "HardBounce",
            "Email": "ann@example.com",
            "Description": "no\x00 such user \ud800",
            "Details": "\udc00",
        },
    ),
    "resend": lambda c: resend(
        c,
        {
            "type": "email.bounced",
            "data": {
                "email_id": "rs-odd",
                "to": ["ann@example.com"],
                "subject": "Digest \x00\ud800",
                "bounce": {"type": "Permanent", "message": "no\x00 such user \udc00"},
            },
        },
        "msg_odd",
    ),
}


@pytest.mark.parametrize("provider", sorted(ODD_HARD_BOUNCES))
def test_odd_free_text_in_an_event_is_stored_and_the_event_acted_on(hook_app, hook, provider):
    # Mailgun's signature was read from the body made storable: this was a 401 there.
    response = ODD_HARD_BOUNCES[provider](hook)
    assert response.status_code == 200, response.get_json()
    assert find(hook_app, "ann@example.com").status is Status.BOUNCED
    [event] = stored(hook_app).values()
    assert event["kind"] == "hard_bounce" and made_storable(event["payload"])


@pytest.mark.parametrize("email", ["ann\\u0000@example.com", "\\ud800ann@example.com"])
def test_an_odd_address_is_stored_and_taken_for_no_one(hook_app, hook, email):
    body = f'{{"RecordType": "Bounce", "ID": 1, "Type": "HardBounce", "Email": "{email}"}}'
    response = hook.post(
        "/webhooks/postmark", data=body, content_type="application/json", headers=signing.basic()
    )
    assert response.status_code == 200, response.get_json()
    assert stored_events(hook_app) == 1
    assert find(hook_app, "ann@example.com").status is Status.CONFIRMED


def test_a_sendgrid_batch_keeps_its_events_past_items_that_are_not_events(hook_app, hook, signer):
    # Each was a 400 for the whole batch: an item that is no object, a number past a
    # float's range (stored as Infinity, which PostgreSQL refuses), nesting too deep.
    confirmed(hook, Outbox(hook_app), "bob@example.com")
    body = (
        b'[{"event": "bounce", "sg_event_id": "sg-b", "email": "ann@example.com"},'
        b' 5, "x", null, [],'
        b' {"event": "delivered", "sg_event_id": "sg-d", "email": "bob@example.com",'
        b' "timestamp": 1e400, "deep": ' + b"[" * 100 + b"]" * 100 + b"}]"
    )
    response = hook.post("/webhooks/sendgrid", data=body, headers=signer.headers(body))
    assert response.status_code == 200, response.get_json()
    assert response.get_json() == {"received": 6, "new": 6}
    assert find(hook_app, "ann@example.com").status is Status.BOUNCED
    events = stored(hook_app)
    assert (
        sorted(e["kind"] for e in events.values()) == ["delivered", "hard_bounce"] + ["unknown"] * 4
    )
    payload = events["sg-d"]["payload"]
    assert payload["timestamp"] == "1e400"
    deep, levels = payload["deep"], 2  # the body, the batch, is level 0; its events 1
    while isinstance(deep, list):
        deep, levels = deep[0], levels + 1
    assert deep is None and levels == MAX_NESTING  # cut where a column's limit is


def test_a_postmark_bounce_past_a_floats_range_and_nested_too_deep_is_kept(hook_app, hook):
    # Both were a 400 for Postmark's one event, re-sent unchanged: the bounce was lost.
    body = (
        b'{"RecordType": "Bounce", "ID": 1e400, "Type": "HardBounce",'
        b' "Email": "ann@example.com", "Details": ' + b"[" * 100 + b"]" * 100 + b"}"
    )
    response = hook.post(
        "/webhooks/postmark", data=body, content_type="application/json", headers=signing.basic()
    )
    assert response.status_code == 200, response.get_json()
    assert find(hook_app, "ann@example.com").status is Status.BOUNCED
    [event] = stored(hook_app).values()
    assert event["payload"]["ID"] == "1e400"  # its text, not Infinity
    deep, levels = event["payload"]["Details"], 1  # the body is level 0
    while isinstance(deep, list):
        deep, levels = deep[0], levels + 1
    assert deep is None and levels == MAX_NESTING  # cut where a column's limit is


@pytest.mark.parametrize("odd", [b"\xff", b"\xed\xa0\x80"])  # not UTF-8; half a UTF-16 pair
def test_bytes_that_are_not_utf8_in_one_string_lose_no_event(hook_app, hook, signer, odd):
    body = (
        b'[{"event": "bounce", "sg_event_id": "sg-b", "email": "ann@example.com"},'
        b' {"event": "delivered", "sg_event_id": "sg-x", "email": "ann@example.com",'
        b' "response": "250 ' + odd + b'"}]'
    )
    response = hook.post("/webhooks/sendgrid", data=body, headers=signer.headers(body))
    assert response.status_code == 200, response.get_json()
    assert find(hook_app, "ann@example.com").status is Status.BOUNCED
    assert made_storable(stored(hook_app)["sg-x"]["payload"])


def test_odd_text_is_made_storable_only_after_the_raw_body_verified(hook_app, hook, signer):
    events = [{"event": "spamreport", "sg_event_id": "sg-n\x00", "email": "ann@example.com"}]
    body = json.dumps(events).encode()
    other = signing.SendGridSigner().headers(body)
    assert_refused(hook_app, hook.post("/webhooks/sendgrid", data=body, headers=other))
    # Signed as the body reads once made storable, which is not what was sent.
    cleaned = signer.headers(body.replace(b"\\u0000", b"\\ufffd"))
    assert_refused(hook_app, hook.post("/webhooks/sendgrid", data=body, headers=cleaned))


@pytest.mark.parametrize("field", ["timestamp", "token", "signature"])
def test_a_mailgun_signature_holding_a_lone_surrogate_is_refused(hook_app, hook, field):
    data = json.loads(signing.mailgun_body({"event": "complained", "recipient": "ann@example.com"}))
    data["signature"][field] += "\ud800"  # no bytes Mailgun signed: a 401, not a 500
    body = json.dumps(data).encode()
    assert_refused(
        hook_app, hook.post("/webhooks/mailgun", data=body, content_type="application/json")
    )


def test_a_mailgun_token_holding_a_nul_verifies_and_is_still_used_once(hook_app, hook):
    data = {"event": "failed", "severity": "permanent", "recipient": "ann@example.com"}
    assert mailgun(hook, data, token="tok\x00en").status_code == 200
    assert find(hook_app, "ann@example.com").status is Status.BOUNCED
    replay = mailgun(hook, {**data, "event": "complained"}, token="tok\x00en")
    assert replay.status_code == 401
    assert find(hook_app, "ann@example.com").status is Status.BOUNCED


def test_a_resend_id_holding_a_nul_is_stored(hook_app, hook):
    event = {"type": "email.bounced", "data": {"to": ["ann@example.com"]}}
    assert resend(hook, event, "msg_\x00").status_code == 200
    assert find(hook_app, "ann@example.com").status is Status.BOUNCED
    assert list(stored(hook_app)) == ["msg_\ufffd"]


@pytest.mark.parametrize("when", ["9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+23:59"])
def test_a_bounce_dated_past_the_calendars_edge_still_stops_mail(hook_app, hook, when):
    record = {"RecordType": "Bounce", "ID": 4242, "Type": "HardBounce", "BouncedAt": when}
    response = postmark(hook, {**record, "Email": "ann@example.com"})
    assert response.status_code == 200, response.get_json()
    assert find(hook_app, "ann@example.com").status is Status.BOUNCED


def test_unknown_provider_is_404(client):
    assert client.post("/webhooks/pigeon", json={}).status_code == 404


def test_erasure_removes_provider_events_too(hook_app, hook, signer, admin_headers):
    SOFT_BOUNCES["sendgrid"](hook, signer)
    assert stored_events(hook_app) == 1
    export = hook.get("/admin/subscribers/ann@example.com/export", headers=admin_headers).get_json()
    assert [e["kind"] for e in export["provider_events"]] == ["soft_bounce"]
    assert (
        hook.delete("/admin/subscribers/ann@example.com", headers=admin_headers).status_code == 204
    )
    assert stored_events(hook_app) == 0


def test_mailgun_token_is_accepted_once_even_with_another_event(hook_app, hook):
    first = {"event": "delivered", "id": "mg-a", "recipient": "ann@example.com"}
    assert mailgun(hook, first, token="same-token").status_code == 200
    # An attacker replays the captured signature with a harmful event of their own.
    forged = {"event": "complained", "id": "mg-b", "recipient": "ann@example.com"}
    replay = mailgun(hook, forged, token="same-token")
    assert replay.status_code == 401
    assert "already used" in replay.get_json()["error"]["message"]
    assert find(hook_app, "ann@example.com").status is Status.CONFIRMED
    assert stored_events(hook_app) == 1


@pytest.mark.parametrize("with_id", [True, False])
def test_mailguns_retry_of_a_request_whose_answer_it_lost_is_a_200(hook_app, hook, with_id):
    # Mailgun retries anything but a 2xx (a 401 too) for hours, with the same body.
    data = {"event": "complained", "recipient": "ann@example.com", "timestamp": time.time()}
    if with_id:
        data["id"] = "mg-lost"
    body = signing.mailgun_body(data, token="retried-after-a-timeout")
    first = hook.post("/webhooks/mailgun", data=body, content_type="application/json")
    retry = hook.post("/webhooks/mailgun", data=body, content_type="application/json")
    assert (first.status_code, retry.status_code) == (200, 200)
    assert (first.get_json()["new"], retry.get_json()["new"]) == (1, 0)
    assert stored_events(hook_app) == 1
    assert consent_kinds(hook_app, "ann@example.com").count(ConsentKind.COMPLAINED) == 1


def test_a_used_mailgun_signature_on_an_unreadable_body_is_refused(hook_app, hook):
    assert mailgun(hook, {"event": "delivered", "id": "mg-a"}, token="used").status_code == 200
    replay = mailgun(hook, "not an object", token="used")  # type: ignore[arg-type]
    assert replay.status_code == 401


def test_a_mailgun_request_that_fails_does_not_use_up_its_token(hook_app, hook):
    unreadable = mailgun(hook, "not an object", token="retried-token")  # type: ignore[arg-type]
    assert unreadable.status_code == 400
    # The provider retries with the same signature: it must not be taken for a replay.
    retry = {"event": "delivered", "id": "mg-r", "recipient": "ann@example.com"}
    assert mailgun(hook, retry, token="retried-token").status_code == 200
    assert stored_events(hook_app) == 1


@pytest.mark.parametrize("stamp", ["nan", "inf", "-inf", "soon"])
def test_non_numeric_signed_timestamps_are_refused(hook_app, hook, stamp):
    import hashlib
    import hmac

    token = "t-" + stamp
    signature = hmac.new(
        signing.MAILGUN_KEY.encode(), (stamp + token).encode(), hashlib.sha256
    ).hexdigest()
    body = json.dumps(
        {
            "signature": {"timestamp": stamp, "token": token, "signature": signature},
            "event-data": {"event": "complained", "recipient": "ann@example.com"},
        }
    ).encode()
    assert_refused(
        hook_app, hook.post("/webhooks/mailgun", data=body, content_type="application/json")
    )


def test_mailguns_legacy_form_webhook_is_refused_with_what_to_change(hook_app, hook):
    # Mailgun's legacy webhooks post a form, its signature in fields of their own.
    form = {
        "event": "bounced",
        "recipient": "ann@example.com",
        "timestamp": str(int(time.time())),
        "token": "t" * 50,
        "signature": "0" * 64,
    }
    response = hook.post("/webhooks/mailgun", data=form)
    assert_refused(hook_app, response)
    assert "legacy form-encoded" in response.get_json()["error"]["message"]


@pytest.mark.parametrize(
    ("reason", "status"),
    [
        ("suppress-complaint", Status.COMPLAINED),
        ("suppress-unsubscribe", Status.UNSUBSCRIBED),
        ("suppress-bounce", Status.BOUNCED),
        ("bounce", Status.BOUNCED),
        ("generic", Status.BOUNCED),
        # Given up after hours of retries, or the sender blocked: not the address's fault.
        ("old", Status.CONFIRMED),
        ("espblock", Status.CONFIRMED),
    ],
)
def test_mailgun_refusing_a_suppressed_address_says_which_list(hook_app, hook, reason, status):
    # A permanent "failed" whose reason is one of Mailgun's suppression lists (its API
    # document's Failed example): a complaint there is a complaint here, not a bounce.
    event = {
        "event": "failed",
        "severity": "permanent",
        "reason": reason,
        "id": f"mg-{reason}",
        "recipient": "ann@example.com",
        "timestamp": time.time(),
    }
    assert mailgun(hook, event).status_code == 200
    assert find(hook_app, "ann@example.com").status is status


@pytest.mark.parametrize(
    ("reason", "status"),
    [
        ("previous_complaint", Status.COMPLAINED),
        ("previous_bounce", Status.BOUNCED),
        ("something_new", Status.CONFIRMED),
    ],
)
def test_resend_suppressing_a_copy_stops_the_address_for_its_reason(hook_app, hook, reason, status):
    # email.suppressed (Resend's OpenAPI document): the copy was accepted, then dropped,
    # because the address is on Resend's list. It was stored as unknown and ignored, so
    # every later digest was "sent" into that list.
    event = {
        "type": "email.suppressed",
        "data": {
            "to": ["ann@example.com"],
            "suppressed": {
                "diagnosticCode": [],
                "message": "on suppression list",
                "reason": reason,
                "type": "OnAccountSuppressionList",
            },
        },
    }
    assert resend(hook, event, f"msg_{reason}").status_code == 200
    assert find(hook_app, "ann@example.com").status is status


@pytest.mark.parametrize(
    ("reason", "status"),
    [
        ("Invalid SMTPAPI header", Status.CONFIRMED),  # our request's fault, not hers
        ("Invalid", Status.BOUNCED),
        ("Bounced Address", Status.BOUNCED),
    ],
)
def test_sendgrid_drops_bounce_only_for_a_dead_address(hook_app, hook, signer, reason, status):
    event = {
        "event": "dropped",
        "reason": reason,
        "sg_event_id": "sg-d",
        "email": "ann@example.com",
    }
    assert sendgrid(hook, signer, [event]).status_code == 200
    assert find(hook_app, "ann@example.com").status is status


@pytest.mark.parametrize(
    ("reason", "status", "ledger"),
    [
        ("HardBounce", Status.BOUNCED, ConsentKind.BOUNCED),
        ("SpamComplaint", Status.COMPLAINED, ConsentKind.COMPLAINED),
        ("ManualSuppression", Status.UNSUBSCRIBED, ConsentKind.UNSUBSCRIBED),
    ],
)
def test_postmark_suppression_change_says_why(hook_app, hook, reason, status, ledger):
    # Postmark sends a SubscriptionChange for its own suppressions too: a hard bounce
    # there was recorded as the reader unsubscribing, which a signup could undo.
    change = {
        "RecordType": "SubscriptionChange",
        "ID": f"sc-{reason}",
        "Recipient": "ann@example.com",
        "SuppressSending": True,
        "SuppressionReason": reason,
        "ChangedAt": "2026-12-07T10:00:00Z",
    }
    assert postmark(hook, change).status_code == 200
    assert find(hook_app, "ann@example.com").status is status
    assert consent_kinds(hook_app, "ann@example.com")[-1] is ledger


def _digest_to_ann(hook, admin_headers, hook_app) -> str:
    """A digest sent to ann; the message key of her copy."""
    outbox = Outbox(hook_app)
    add_post(hook, admin_headers, 1)
    digest = hook.post("/admin/digests", json={}, headers=admin_headers).get_json()
    outbox.dispatch()
    [copy] = [m for m in outbox.messages("ann@example.com") if "/unsubscribe/" in str(m)]
    assert copy["X-Newsletter-Key"].startswith(f"digest-{digest['id']}-")
    return copy["X-Newsletter-Key"]


def test_access_and_erasure_reach_what_is_held_by_message_key_and_test_copy(
    hook_app, hook, admin_headers
):
    # From the privacy pass: the export left out payloads, events found by message key
    # and test copies to the address; erasure left those events (payload and all) and
    # the outbox's files to her.
    key = _digest_to_ann(hook, admin_headers, hook_app)
    by_key = {"RecordType": "Bounce", "Type": "Transient", "ID": 91, "Email": ""}
    by_key["Metadata"] = {"newsletter_key": key}
    by_key["Description"] = "transient for ann@example.com"
    assert postmark(hook, by_key).status_code == 200
    opened = {"RecordType": "Open", "ID": 92, "Recipient": "ann@example.com"}
    opened["Geo"] = {"City": "Portland"}
    assert postmark(hook, opened).status_code == 200
    digest_id = int(key.split("-")[1])
    test = {"email": "Ann@Example.com"}
    sent = hook.post(f"/admin/digests/{digest_id}/test", json=test, headers=admin_headers)
    assert sent.status_code == 202
    Outbox(hook_app).dispatch()

    export = hook.get("/admin/subscribers/ann@example.com/export", headers=admin_headers)
    held = export.get_json()
    assert held["subscriber"]["public_id"] and "round" in held["subscriber"]
    assert sorted(e["type"] for e in held["provider_events"]) == ["Open", "Transient"]
    assert {"City": "Portland"} in [e["payload"].get("Geo") for e in held["provider_events"]]
    kinds = sorted((d["kind"], d["to_address"]) for d in held["deliveries"])
    assert ("digest_test", "ann@example.com") in kinds and ("digest", None) in kinds

    erased = hook.delete("/admin/subscribers/ann@example.com", headers=admin_headers)
    assert erased.status_code == 204
    assert stored_events(hook_app) == 0
    assert Outbox(hook_app).messages("ann@example.com") == []  # the outbox's files too
    assert (
        hook.get("/admin/subscribers/ann@example.com/export", headers=admin_headers).status_code
        == 404
    )
    # A late event found by the erased copy's key alone keeps nothing either.
    late = {**by_key, "ID": 93}
    assert postmark(hook, late).status_code == 200
    with hook_app.app_context():
        (event,) = db.session.scalars(select(ProviderEvent)).all()
        assert (event.email, event.payload, event.provider_message_id) == (None, None, None)


def test_an_address_sent_only_a_test_copy_can_be_exported_and_erased(hook_app, hook, admin_headers):
    _digest_to_ann(hook, admin_headers, hook_app)
    test = {"email": "tester@example.org"}
    assert hook.post("/admin/digests/1/test", json=test, headers=admin_headers).status_code == 202
    Outbox(hook_app).dispatch()
    opened = {"RecordType": "Open", "ID": 94, "Recipient": "tester@example.org"}
    assert postmark(hook, opened).status_code == 200
    held = hook.get("/admin/subscribers/tester@example.org/export", headers=admin_headers)
    assert held.status_code == 200
    assert held.get_json()["subscriber"] is None
    assert [d["kind"] for d in held.get_json()["deliveries"]] == ["digest_test"]
    erased = hook.delete("/admin/subscribers/tester@example.org", headers=admin_headers)
    assert erased.status_code == 204
    with hook_app.app_context():  # the event about a non-subscriber was kept with nothing of her
        events = db.session.scalars(select(ProviderEvent)).all()
        assert [(e.kind, e.email, e.payload) for e in events] == [("unknown", None, None)]
    assert Outbox(hook_app).messages("tester@example.org") == []
    again = hook.delete("/admin/subscribers/tester@example.org", headers=admin_headers)
    assert again.status_code == 404


@pytest.mark.parametrize("record", ["Bounce", "SpamComplaint"])
def test_a_bounce_or_complaint_about_a_non_subscriber_stops_it_and_names_nobody(
    hook_app, hook, admin_headers, record
):
    # From the upgrade pass: a test-copy address that complained got the next test
    # copy, and could sign up and be mailed; its events were kept whole.
    _digest_to_ann(hook, admin_headers, hook_app)
    event = {"RecordType": record, "Type": "HardBounce", "ID": 71, "Email": "tc@example.org"}
    assert postmark(hook, event).status_code == 200
    with hook_app.app_context():
        (stored,) = db.session.scalars(select(ProviderEvent)).all()
        assert (stored.email, stored.payload, stored.provider_message_id) == (None, None, None)
    test = hook.post(
        "/admin/digests/1/test", json={"email": "tc@example.org"}, headers=admin_headers
    )
    assert test.status_code == 409
    assert hook.post("/subscribe", json={"email": "tc@example.org"}).status_code == 202
    assert find(hook_app, "tc@example.org") is None


def test_batches_about_the_same_readers_at_once_do_not_deadlock(hook_app, hook, signer):
    # From the last race pass (PostgreSQL): two SendGrid batches over the same readers
    # in opposite orders locked their rows in turn, and one in two answered 503.
    outbox = Outbox(hook_app)
    readers = [f"r{n}@example.com" for n in range(6)]
    for reader in readers:
        confirmed(hook, outbox, reader)

    def batch(order: list[str], tag: str) -> int:
        events = [
            {"event": "delivered", "sg_event_id": f"{tag}-{n}", "email": email}
            for n, email in enumerate(order)
        ]
        return sendgrid(hook_app.test_client(), signer, events).status_code

    answers: list[int] = []
    for round_ in range(10):
        threads = [
            threading.Thread(target=lambda o=o, t=t: answers.append(batch(o, t)))
            for o, t in ((readers, f"a{round_}"), (readers[::-1], f"b{round_}"))
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    assert answers == [200] * 20
