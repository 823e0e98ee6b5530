"""The admin API: authentication, listing, one subscriber, erasure, CSV in and out, stats."""

from __future__ import annotations

import csv
import io

import pytest

from newsletter.models import Status
from tests.conftest import ADMIN_TOKEN
from tests.subscriptions.helpers import confirmed, find, set_status, unsubscribe_link


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Basic {ADMIN_TOKEN}"},
        {"Authorization": f"Bearer {ADMIN_TOKEN}x"},
        {"Authorization": "Bearer "},
    ],
)
def test_admin_refuses_without_the_right_token(client, headers):
    response = client.get("/admin/subscribers", headers=headers)
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "unauthorized"
    # RFC 9110: a 401 names the scheme it wants.
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="admin"'
    assert client.get("/admin/digests/1", headers=headers).headers["WWW-Authenticate"]


def test_token_in_the_query_string_is_refused(client):
    assert client.get(f"/admin/subscribers?access_token={ADMIN_TOKEN}").status_code == 401


def test_no_admin_token_configured_means_everyone_is_refused(make_app):
    client = make_app(ADMIN_TOKENS=[]).test_client()
    assert client.get("/admin/subscribers", headers={"Authorization": "Bearer "}).status_code == 401


def test_several_tokens_are_accepted_for_rotation(make_app):
    client = make_app(ADMIN_TOKENS=["old-token", "new-token"]).test_client()
    for token in ("old-token", "new-token"):
        assert (
            client.get("/admin/stats", headers={"Authorization": f"Bearer {token}"}).status_code
            == 200
        )


def test_list_filters_searches_and_pages(app, client, outbox, admin_headers):
    confirmed(client, outbox, "carol@example.com")
    for name in ("alice", "bob", "dave"):
        client.post("/subscribe", json={"email": f"{name}@example.com", "name": name.title()})
    everything = client.get("/admin/subscribers", headers=admin_headers).get_json()
    assert everything["total"] == 4 and everything["page"] == 1 and everything["per_page"] == 50
    assert everything["items"][0]["email"] == "dave@example.com"  # newest first
    assert set(everything["items"][0]) >= {"email", "name", "status", "created_at", "confirmed_at"}

    pending = client.get("/admin/subscribers?status=pending", headers=admin_headers).get_json()
    assert pending["total"] == 3
    assert {i["status"] for i in pending["items"]} == {"pending"}

    search = client.get("/admin/subscribers?q=BOB", headers=admin_headers).get_json()
    assert [i["email"] for i in search["items"]] == ["bob@example.com"]

    page = client.get("/admin/subscribers?page=2&per_page=3", headers=admin_headers).get_json()
    assert page["total"] == 4 and len(page["items"]) == 1

    # Letters beyond ASCII fold too, on either database.
    client.post("/subscribe", json={"email": "emile@example.com", "name": "Émile Zola"})
    for typed in ("émile", "ÉMILE"):
        answer = client.get("/admin/subscribers", query_string={"q": typed}, headers=admin_headers)
        assert [i["email"] for i in answer.get_json()["items"]] == ["emile@example.com"]

    # What is typed is matched literally: "_" and "%" are no wildcards.
    client.post("/subscribe", json={"email": "a_b@example.com"})
    client.post("/subscribe", json={"email": "axb@example.com", "name": "100% sure"})
    for typed, found in [("a_b", ["a_b@example.com"]), ("%", ["axb@example.com"]), ("\\", [])]:
        answer = client.get("/admin/subscribers", query_string={"q": typed}, headers=admin_headers)
        assert [i["email"] for i in answer.get_json()["items"]] == found, typed


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("status=nope", "invalid_status"),
        ("page=0", "invalid_page"),
        ("page=x", "invalid_page"),
        ("per_page=100000", "invalid_per_page"),
        ("q=a%00b", "invalid_q"),  # PostgreSQL text cannot hold NUL: was a 500 there
    ],
)
def test_list_rejects_bad_parameters(client, admin_headers, query, code):
    response = client.get(f"/admin/subscribers?{query}", headers=admin_headers)
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == code


def test_one_subscriber_shows_its_consent_history(client, outbox, admin_headers):
    confirmed(client, outbox, "ann@example.com")
    body = client.get("/admin/subscribers/ANN@example.com", headers=admin_headers).get_json()
    assert body["status"] == "confirmed"
    assert [e["kind"] for e in body["consent"]] == ["signup", "confirmation_queued", "confirmed"]
    assert body["consent"][0]["wording"]
    assert (
        client.get("/admin/subscribers/nobody@example.com", headers=admin_headers).status_code
        == 404
    )
    assert client.get("/admin/subscribers/not-an-address", headers=admin_headers).status_code == 404


@pytest.mark.parametrize("spelled", ["a/b@example.org", "a%2Fb@example.org"])
def test_an_address_with_a_slash_can_be_shown_exported_and_erased(
    app, client, outbox, admin_headers, spelled
):
    confirmed(client, outbox, "a/b@example.org")  # a valid address: "/" is an atext character
    shown = client.get(f"/admin/subscribers/{spelled}", headers=admin_headers)
    assert shown.status_code == 200 and shown.get_json()["email"] == "a/b@example.org"
    exported = client.get(f"/admin/subscribers/{spelled}/export", headers=admin_headers)
    assert exported.status_code == 200
    erased = client.delete(f"/admin/subscribers/{spelled}", headers=admin_headers)
    assert erased.status_code == 204 and find(app, "a/b@example.org") is None


def test_erase_removes_personal_data_everywhere(app, client, outbox, admin_headers):
    confirmed(client, outbox, "ann@example.com")
    response = client.delete("/admin/subscribers/ann@example.com", headers=admin_headers)
    assert response.status_code == 204 and response.data == b""
    assert "Content-Type" not in response.headers
    assert find(app, "ann@example.com") is None
    with app.app_context():
        from sqlalchemy import func, select, text

        from newsletter.extensions import db
        from newsletter.models import ConsentEvent, Delivery

        assert db.session.scalar(select(func.count()).select_from(ConsentEvent)) == 0
        assert db.session.scalar(select(func.count()).select_from(Delivery)) == 0
        rows = db.session.execute(text("SELECT * FROM erasures")).all()
        assert len(rows) == 1 and "ann" not in str(rows)
    assert (
        client.delete("/admin/subscribers/ann@example.com", headers=admin_headers).status_code
        == 404
    )


def test_erasure_leaves_each_digests_counts_whole_and_nothing_that_names_the_reader(
    app, client, outbox, admin_headers
):
    from sqlalchemy import select

    from newsletter.extensions import db
    from newsletter.models import Delivery
    from tests.digests.helpers import add_confirmed, add_post

    add_confirmed(app, 3)
    add_post(client, admin_headers, 1)
    sent = client.post("/admin/digests", json={}, headers=admin_headers).get_json()["id"]
    outbox.dispatch()
    add_post(client, admin_headers, 2)
    queued = client.post("/admin/digests", json={}, headers=admin_headers).get_json()["id"]
    before = client.get(f"/admin/digests/{sent}", headers=admin_headers).get_json()

    assert client.delete("/admin/subscribers/reader0@example.com", headers=admin_headers)
    after = client.get(f"/admin/digests/{sent}", headers=admin_headers).get_json()
    assert (after["recipients"], after["sent"]) == (before["recipients"], before["sent"]) == (3, 3)
    outbox.dispatch()  # the erased reader's queued copy is skipped, and counted so
    later = client.get(f"/admin/digests/{queued}", headers=admin_headers).get_json()
    assert (later["recipients"], later["sent"], later["skipped"], later["pending"]) == (3, 2, 1, 0)
    assert later["status"] == "sent"
    assert outbox.messages("reader0@example.com")[1:] == []
    with app.app_context():
        kept = db.session.scalars(
            select(Delivery).where(Delivery.subscriber_id.is_(None)).order_by(Delivery.id)
        ).all()
        assert [(k.digest_id, k.status.value) for k in kept] == [
            (sent, "sent"),
            (queued, "skipped"),
        ]
        assert [(k.to_address, k.provider_message_id) for k in kept] == [(None, None)] * 2
        assert "reader0" not in str([k.last_error for k in kept])


def test_erased_bounced_address_is_not_brought_back_by_an_import(
    app, client, outbox, admin_headers
):
    confirmed(client, outbox, "ann@example.com")
    set_status(app, "ann@example.com", Status.COMPLAINED)
    client.delete("/admin/subscribers/ann@example.com", headers=admin_headers)
    report = client.post(
        "/admin/subscribers/import?confirmed=true",
        data="email\nann@example.com\n",
        content_type="text/csv",
        headers=admin_headers,
    ).get_json()
    assert report["created"] == 0 and report["skipped"] == 1
    assert find(app, "ann@example.com") is None


@pytest.mark.parametrize("status", [Status.BOUNCED, Status.COMPLAINED])
def test_erased_suppressed_address_signing_up_again_gets_the_usual_answer_and_nothing_else(
    app, client, outbox, admin_headers, status
):
    confirmed(client, outbox, "ann@example.com")
    set_status(app, "ann@example.com", status)
    client.delete("/admin/subscribers/ann@example.com", headers=admin_headers)
    outbox.dispatch()
    before = len(outbox.messages())
    again = client.post("/subscribe", json={"email": "Ann@Example.com"})
    fresh = client.post("/subscribe", json={"email": "bob@example.com"})
    assert (again.status_code, again.get_json()) == (fresh.status_code, fresh.get_json())
    assert find(app, "ann@example.com") is None  # nothing stored: the erasure holds
    outbox.dispatch()
    assert [m["To"] for m in outbox.messages()[before:]] == ["bob@example.com"]


@pytest.mark.parametrize(("value", "status"), [("on", Status.CONFIRMED), ("No", Status.PENDING)])
def test_import_reads_the_usual_spellings_of_yes_and_no(app, client, admin_headers, value, status):
    answer = client.post(
        f"/admin/subscribers/import?confirmed={value}",
        data="email\nann@example.com\n",
        content_type="text/csv",
        headers=admin_headers,
    )
    assert answer.status_code == 200
    assert find(app, "ann@example.com").status is status


def test_import_refuses_a_confirmed_it_cannot_read_instead_of_emailing_the_list(
    app, client, outbox, admin_headers
):
    answer = client.post(
        "/admin/subscribers/import?confirmed=ture",
        data="email\nann@example.com\n",
        content_type="text/csv",
        headers=admin_headers,
    )
    assert answer.status_code == 400
    assert answer.get_json()["error"]["field"] == "confirmed"
    assert find(app, "ann@example.com") is None
    outbox.dispatch()
    assert outbox.messages() == []


def test_import_default_makes_pending_and_sends_confirmations(app, client, outbox, admin_headers):
    body = "email,name\nNew1@example.com,One\nnew2@example.com,\nbroken,x\nnew1@example.com,Dup\n\n"
    report = client.post(
        "/admin/subscribers/import", data=body, content_type="text/csv", headers=admin_headers
    ).get_json()
    assert report["created"] == 2 and report["skipped"] == 1
    assert [e["line"] for e in report["errors"]] == [4]
    assert find(app, "new1@example.com").status is Status.PENDING
    assert find(app, "new1@example.com").name == "One"
    outbox.dispatch()
    assert len(outbox.messages()) == 2
    assert outbox.confirm_link("new2@example.com")


def test_import_confirmed_records_the_import_as_consent_and_sends_nothing(
    app, client, outbox, admin_headers
):
    client.post("/subscribe", json={"email": "pending@example.com"})
    confirmed(client, outbox, "left@example.com")
    client.post(unsubscribe_link(app, find(app, "left@example.com")))
    before = len(outbox.messages())
    data = {
        "file": (
            io.BytesIO(b"email\nmoved@example.com\npending@example.com\nleft@example.com\n"),
            "list.csv",
        )
    }
    report = client.post(
        "/admin/subscribers/import?confirmed=true",
        data=data,
        content_type="multipart/form-data",
        headers=admin_headers,
    ).get_json()
    assert (report["created"], report["updated"], report["skipped"]) == (1, 1, 1)
    assert find(app, "moved@example.com").status is Status.CONFIRMED
    assert find(app, "pending@example.com").status is Status.CONFIRMED
    assert find(app, "left@example.com").status is Status.UNSUBSCRIBED  # never brought back
    outbox.dispatch()
    assert len(outbox.messages()) == before
    history = client.get("/admin/subscribers/moved@example.com", headers=admin_headers).get_json()
    assert history["consent"][0]["kind"] == "imported"
    assert history["consent"][0]["detail"]["confirmed"] is True


@pytest.mark.parametrize(
    ("body", "content_type", "status", "code"),
    [
        ("name\nann\n", "text/csv", 400, "invalid_csv"),
        ("", "text/csv", 400, "invalid_csv"),
        (b"\xff\xfe\x00garbage", "text/csv", 400, "invalid_csv"),
        ('{"email": "a@example.com"}', "application/json", 415, "unsupported_media_type"),
    ],
)
def test_import_rejects_unreadable_files_whole(
    client, admin_headers, body, content_type, status, code
):
    response = client.post(
        "/admin/subscribers/import", data=body, content_type=content_type, headers=admin_headers
    )
    assert response.status_code == status
    assert response.get_json()["error"]["code"] == code


def _chunked_import(client, headers, body: bytes):
    """POST ``body`` as a chunked text/csv upload: no Content-Length, its size unknown."""
    return client.post(
        "/admin/subscribers/import",
        input_stream=io.BytesIO(body),
        headers={**headers, "Content-Type": "text/csv", "Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True},
    )


def test_a_chunked_import_too_large_stores_nothing(make_app, admin_headers):
    app = make_app(IMPORT_MAX_BYTES=250_000)
    client = app.test_client()
    rows = "".join(f"user{i}@example.org,Name {i}\n" for i in range(10_000))
    # About 330 KB: the import's first chunk (5,000 rows, 160 KB) fits under the limit.
    body = ("email,name\n" + rows).encode()
    assert _chunked_import(client, admin_headers, body).status_code == 413
    listing = client.get("/admin/subscribers", headers=admin_headers).get_json()
    assert listing["total"] == 0
    small = _chunked_import(client, admin_headers, b"email\nann@example.org\n")
    assert small.status_code == 200 and small.get_json()["created"] == 1


def test_export_csv_streams_every_subscriber_safely(client, outbox, admin_headers):
    confirmed(client, outbox, "ann@example.com")
    client.post("/subscribe", json={"email": "bob@example.com", "name": '=HYPERLINK("x")'})
    response = client.get("/admin/subscribers/export.csv", headers=admin_headers)
    assert response.status_code == 200 and response.mimetype == "text/csv"
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert {r["email"]: r["status"] for r in rows} == {
        "ann@example.com": "confirmed",
        "bob@example.com": "pending",
    }
    assert next(r for r in rows if r["email"] == "bob@example.com")["name"].startswith("'=")


def test_stats_count_by_status(app, client, outbox, admin_headers):
    confirmed(client, outbox, "ann@example.com")
    client.post("/subscribe", json={"email": "bob@example.com"})
    stats = client.get("/admin/stats", headers=admin_headers).get_json()
    assert stats["subscribers"]["confirmed"] == 1 and stats["subscribers"]["pending"] == 1
    assert stats["deliveries"]["sent"] == 1 and stats["deliveries"]["queued"] == 1
    assert stats["backlog"]["waiting"] == 1


def test_token_check_compares_every_token_in_constant_time(monkeypatch):
    """No early exit: a match on the first token costs as much as no match at all."""
    from newsletter.admin import auth

    calls = []
    real = auth.hmac.compare_digest

    def counting(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", counting)
    accepted = ["first-token", "second-token", "third-token"]
    for given in ("first-token", "third-token", "wrong", ""):
        calls.clear()
        assert auth.token_matches(given, accepted) is (given in accepted)
        assert [b for _, b in calls] == [t.encode() for t in accepted]


def test_an_export_imported_again_keeps_every_address_and_name(client, admin_headers):
    # The export escapes formula-like cells with a "'"; an import of it takes it off.
    for email, name in [
        ("-dash@example.org", "=Bob"),
        ("+plus@example.org", "'Quoted"),
        ("quote@example.org", "'=Real"),  # a name that does start with a quote and a "="
    ]:
        assert client.post("/subscribe", json={"email": email, "name": name}).status_code == 202
    exported = client.get("/admin/subscribers/export.csv", headers=admin_headers).get_data()
    client.delete("/admin/subscribers/-dash@example.org", headers=admin_headers)
    client.delete("/admin/subscribers/+plus@example.org", headers=admin_headers)
    client.delete("/admin/subscribers/quote@example.org", headers=admin_headers)
    imported = client.post(
        "/admin/subscribers/import",  # pending in the export: asked to confirm again
        data=exported,
        content_type="text/csv",
        headers=admin_headers,
    )
    assert imported.get_json()["created"] == 3
    listing = client.get("/admin/subscribers", headers=admin_headers).get_json()["items"]
    assert {(s["email"], s["name"]) for s in listing} == {
        ("-dash@example.org", "=Bob"),
        ("+plus@example.org", "'Quoted"),  # a quote before no formula character is kept
        ("quote@example.org", "'=Real"),
    }


def test_a_subscriber_stored_with_an_international_mailbox_can_still_be_erased(
    app, client, admin_headers
):
    # New ones are refused (SMTPUTF8); one stored before that rule must stay reachable.
    from newsletter.extensions import db
    from newsletter.models import Subscriber, new_public_id

    with app.app_context():
        db.session.add(
            Subscriber(
                email="ñandú@example.com", public_id=new_public_id(), status=Status.CONFIRMED
            )
        )
        db.session.commit()
    assert client.post("/subscribe", json={"email": "ñandú@example.com"}).status_code == 422
    shown = client.get("/admin/subscribers/Ñandú@example.com", headers=admin_headers)
    assert shown.status_code == 200 and shown.get_json()["email"] == "ñandú@example.com"
    erased = client.delete("/admin/subscribers/ñandú@example.com", headers=admin_headers)
    assert erased.status_code == 204 and find(app, "ñandú@example.com") is None
