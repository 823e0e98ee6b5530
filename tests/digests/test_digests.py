"""Digests through the admin API and the dispatcher, on the outbox provider."""

from __future__ import annotations

import re
from collections import Counter

from sqlalchemy import select

from newsletter.extensions import db
from newsletter.models import DeliveryStatus, Post, Status, Subscriber
from newsletter.providers import REGISTRY, Outcome, SendResult
from tests.conftest import Outbox, path_of
from tests.digests.helpers import add_confirmed, add_post, digest_deliveries
from tests.subscriptions.helpers import set_status


def trigger(client, headers, **body):
    return client.post("/admin/digests", json=body, headers=headers)


def test_a_post_goes_out_in_exactly_one_digest(app, client, admin_headers, outbox):
    add_confirmed(app, 3)
    add_post(client, admin_headers, 1)
    add_post(client, admin_headers, 2)
    first = trigger(client, admin_headers)
    assert first.status_code == 202
    body = first.get_json()
    assert body["status"] == "queued" and body["recipients"] == 3
    assert [p["title"] for p in body["posts"]] == ["Post 2", "Post 1"]

    again = trigger(client, admin_headers)
    assert again.status_code == 409
    assert again.get_json()["error"]["code"] == "no_new_posts"

    add_post(client, admin_headers, 3)
    second = trigger(client, admin_headers).get_json()
    assert [p["title"] for p in second["posts"]] == ["Post 3"]
    with app.app_context():
        owners = dict(db.session.execute(select(Post.title, Post.digest_id)).all())
    assert owners == {"Post 1": body["id"], "Post 2": body["id"], "Post 3": second["id"]}


def test_digest_reaches_every_confirmed_subscriber_once_and_ends_sent(
    app, client, admin_headers, outbox
):
    emails = add_confirmed(app, 7)
    with app.app_context():
        db.session.add(Subscriber(email="pending@example.com", status=Status.PENDING))
        db.session.commit()
    add_post(client, admin_headers, 1)
    digest = trigger(client, admin_headers, subject="Our October news").get_json()
    assert digest["recipients"] == 7
    outbox.dispatch()
    messages = outbox.messages()
    assert sorted(m["To"] for m in messages) == sorted(emails)
    assert {m["Subject"] for m in messages} == {"Our October news"}
    report = client.get(f"/admin/digests/{digest['id']}", headers=admin_headers).get_json()
    assert report["status"] == "sent"
    assert (report["sent"], report["failed"], report["pending"], report["skipped"]) == (7, 0, 0, 0)
    assert report["started_at"] and report["finished_at"] and report["duration_seconds"] >= 0
    assert [p["title"] for p in report["posts"]] == ["Post 1"]  # went out: kept, not given back
    history = client.get("/admin/digests", headers=admin_headers).get_json()["items"]
    assert [d["id"] for d in history] == [digest["id"]]
    stats = client.get("/admin/stats", headers=admin_headers).get_json()
    assert stats["digests"] == {"queued": 0, "sending": 0, "sent": 1, "failed": 0}


def test_stats_show_a_digest_before_it_is_sent(app, client, admin_headers):
    # Only "sent" was counted: a digest going out (or failed) showed nowhere in the stats.
    add_confirmed(app, 2)
    add_post(client, admin_headers, 1)
    assert client.post("/admin/digests", json={}, headers=admin_headers).status_code == 202
    stats = client.get("/admin/stats", headers=admin_headers).get_json()
    assert stats["digests"] == {"queued": 1, "sending": 0, "sent": 0, "failed": 0}


def test_default_subject_names_the_newsletter_and_the_newest_post(app, client, admin_headers):
    add_confirmed(app, 1)
    add_post(client, admin_headers, 1)
    add_post(client, admin_headers, 2, title="Hip Extension")
    digest = trigger(client, admin_headers).get_json()
    assert digest["subject"] == "Clinic News: Hip Extension (+1 more)"


def test_email_has_posts_footer_and_per_recipient_unsubscribe(make_app, admin_headers, tmp_path):
    app = make_app(MAIL_POSTAL_ADDRESS="12 Harbour Road, Portland ME 04101")
    client = app.test_client()
    add_confirmed(app, 2)
    add_post(client, admin_headers, 1, author="Amanda Kerpius")
    digest = trigger(client, admin_headers).get_json()
    from tests.conftest import Outbox

    outbox = Outbox(app)
    outbox.dispatch()
    messages = outbox.messages()
    assert len(messages) == 2
    links = set()
    for message in messages:
        assert message.get_content_type() == "multipart/alternative"
        text = message.get_body(("plain",)).get_content()
        html = message.get_body(("html",)).get_content()
        [link] = outbox.links(message, "/unsubscribe/")
        links.add(link)
        assert message["List-Unsubscribe"] == f"<{link}>"
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert message["List-Id"] == '"Clinic News" <digest.news.example.org>'
        # The key names the reader by the random id of their link, never by row id.
        public_id = link.rsplit("/", 1)[1].rsplit(".", 1)[0]
        assert message["X-Newsletter-Key"] == f"digest-{digest['id']}-{public_id}"
        for body in (text, html):
            assert link in body
            assert "Post 1" in body and "https://blog.example.org/post-1" in body
            assert "October 2, 2026" in body and "Amanda Kerpius" in body
            assert "12 Harbour Road, Portland ME 04101" in body
            assert "because you subscribed" in body
        assert "<script" not in html.lower() and ".masthead {" not in html
        assert 'style="' in html  # CSS inlined
        assert "<table" in html and html.count("prefers-color-scheme: dark") == 1
        assert html.index('<meta charset="utf-8">') < html.index("<style")  # charset first
    assert len(links) == 2  # each reader their own link

    # The link in the email unsubscribes its reader, in one click.
    response = client.post(path_of(links.pop()), data={"List-Unsubscribe": "One-Click"})
    assert response.status_code == 200
    with app.app_context():
        statuses = Counter(s.status for s in db.session.scalars(select(Subscriber)))
    assert statuses == {Status.CONFIRMED: 1, Status.UNSUBSCRIBED: 1}


def test_hostile_titles_summaries_and_urls_are_escaped(app, client, admin_headers, outbox):
    add_confirmed(app, 1)
    add_post(
        client,
        admin_headers,
        1,
        title='<img src=x onerror="alert(1)"> Tom & Jerry: 1 < 2',
        url='https://blog.example.org/a?x=1&y="><script>alert(2)</script>',
        summary="<a href='javascript:alert(3)'>click</a> <b>bold</b> 1 < 2",
    )
    rejected = client.post(
        "/admin/posts",
        json={"title": "x", "url": "javascript:alert(1)//https://x.org"},
        headers=admin_headers,
    )
    assert rejected.status_code == 422
    trigger(client, admin_headers)
    outbox.dispatch()
    [message] = outbox.messages()
    html = message.get_body(("html",)).get_content()
    assert "<script" not in html and "<img" not in html and "javascript:" not in html
    # A title is plain text, kept as written and escaped: inert, not lost.
    assert '&lt;img src=x onerror="alert(1)"&gt; Tom &amp; Jerry: 1 &lt; 2</a>' in html
    assert (
        'href="https://blog.example.org/a?x=1&amp;y=%22%3E%3Cscript%3Ealert(2)%3C/script%3E"'
        in html
    )
    assert "1 &lt; 2" in html
    hrefs = re.findall(r'href="([^"]*)"', html)
    assert all(
        h.startswith(("https://blog.example.org/", "http://news.example.org/")) for h in hrefs
    )


def test_subscriber_who_leaves_before_their_copy_is_skipped(app, client, admin_headers, outbox):
    emails = add_confirmed(app, 3)
    add_post(client, admin_headers, 1)
    digest = trigger(client, admin_headers).get_json()
    with app.app_context():
        leaver = db.session.scalars(select(Subscriber).where(Subscriber.email == emails[1])).one()
        leaver.status = Status.UNSUBSCRIBED
        db.session.commit()
    outbox.dispatch()
    assert sorted(m["To"] for m in outbox.messages()) == [emails[0], emails[2]]
    report = client.get(f"/admin/digests/{digest['id']}", headers=admin_headers).get_json()
    assert (report["status"], report["sent"], report["skipped"]) == ("sent", 2, 1)


def test_a_digest_every_reader_left_before_their_copy_gives_its_posts_back(
    app, client, admin_headers, outbox
):
    emails = add_confirmed(app, 2)
    add_post(client, admin_headers, 1)
    digest = trigger(client, admin_headers).get_json()
    for email in emails:
        set_status(app, email, Status.UNSUBSCRIBED)
    outbox.dispatch()
    assert outbox.messages() == []
    report = client.get(f"/admin/digests/{digest['id']}", headers=admin_headers).get_json()
    assert (report["status"], report["sent"], report["skipped"]) == ("sent", 0, 2)
    # Nobody got the post: the first reader of the next digest does.
    add_confirmed(app, 1, prefix="newcomer")
    again = trigger(client, admin_headers)
    assert again.status_code == 202
    assert [p["title"] for p in again.get_json()["posts"]] == ["Post 1"]


class FlakyProvider:
    """Fails every other call transiently: a provider falling over midway."""

    name = "flaky"
    max_batch = 10

    def __init__(self, outbox_provider) -> None:
        self.inner = outbox_provider
        self.calls = 0
        self.accepted: list[str] = []

    def send_batch(self, messages):
        self.calls += 1
        if self.calls % 2 == 0:
            return [SendResult(Outcome.TRANSIENT, error="503 from provider")] * len(messages)
        if self.calls == 3:
            raise ConnectionError("connection reset mid-batch")
        results = self.inner.send_batch(messages)
        self.accepted.extend(m.to for m in messages)
        return results


def test_provider_failing_midway_still_gives_everyone_exactly_one_copy(
    make_app, admin_headers, tmp_path, monkeypatch
):
    from newsletter.providers.outbox import OutboxProvider
    from tests.conftest import Outbox

    flaky = FlakyProvider(OutboxProvider(tmp_path / "outbox"))
    monkeypatch.setitem(REGISTRY, "flaky", lambda config: flaky)
    app = make_app(EMAIL_PROVIDER="flaky", DISPATCH_BATCH_SIZE=10)
    client = app.test_client()
    emails = add_confirmed(app, 45)
    add_post(client, admin_headers, 1)
    digest = trigger(client, admin_headers).get_json()
    outbox = Outbox(app)
    for _ in range(20):
        outbox.dispatch()
        if (
            client.get(f"/admin/digests/{digest['id']}", headers=admin_headers).get_json()[
                "pending"
            ]
            == 0
        ):
            break
    assert flaky.calls > 5  # it did fail, several times
    assert Counter(flaky.accepted) == Counter(emails)  # each accepted exactly once
    assert sorted(m["To"] for m in outbox.messages()) == sorted(emails)
    deliveries = digest_deliveries(app, digest["id"])
    assert {d.status for d in deliveries} == {DeliveryStatus.SENT}
    assert max(d.attempts for d in deliveries) >= 2


def test_digest_where_nothing_could_be_delivered_is_failed(make_app, admin_headers, monkeypatch):
    class Refusing:
        name = "refusing"
        max_batch = 50

        def send_batch(self, messages):
            return [SendResult(Outcome.REJECTED, error="422 inactive recipient")] * len(messages)

    monkeypatch.setitem(REGISTRY, "refusing", lambda config: Refusing())
    app = make_app(EMAIL_PROVIDER="refusing")
    client = app.test_client()
    add_confirmed(app, 3)
    add_post(client, admin_headers, 1)
    digest = trigger(client, admin_headers).get_json()
    from tests.conftest import Outbox

    Outbox(app).dispatch()
    report = client.get(f"/admin/digests/{digest['id']}", headers=admin_headers).get_json()
    assert (report["status"], report["failed"], report["sent"]) == ("failed", 3, 0)

    # No reader got its post: the post is offered again, by the next digest.
    assert digest["posts"][0]["title"] == "Post 1" and report["posts"] == []
    # A test copy of it would hold no post at all.
    test_copy = f"/admin/digests/{digest['id']}/test"
    answer = client.post(test_copy, json={"email": "me@example.com"}, headers=admin_headers)
    assert answer.status_code == 409 and answer.get_json()["error"]["code"] == "no_posts"
    again = trigger(client, admin_headers)
    assert again.status_code == 202
    assert [p["title"] for p in again.get_json()["posts"]] == ["Post 1"]


def test_test_copy_goes_to_one_address_and_counts_nowhere(app, client, admin_headers, outbox):
    add_confirmed(app, 2)
    add_post(client, admin_headers, 1)
    digest = trigger(client, admin_headers).get_json()
    bad = client.post(
        f"/admin/digests/{digest['id']}/test", json={"email": "nope"}, headers=admin_headers
    )
    assert bad.status_code == 422 and bad.get_json()["error"]["field"] == "email"
    as_list = client.post(
        f"/admin/digests/{digest['id']}/test",
        json={"email": ["editor@clinic.org"]},
        headers=admin_headers,
    )
    assert as_list.status_code == 422  # it said "please enter your email"
    assert as_list.get_json()["error"]["message"] == "email must be a string."
    missing = client.post(
        "/admin/digests/999/test", json={"email": "a@b.org"}, headers=admin_headers
    )
    assert missing.status_code == 404
    ok = client.post(
        f"/admin/digests/{digest['id']}/test",
        json={"email": "Editor@Clinic.org"},
        headers=admin_headers,
    )
    assert ok.status_code == 202
    outbox.dispatch()
    [copy] = outbox.messages("editor@clinic.org")
    assert copy["Subject"].startswith("[Test] Clinic News: Post 1")
    assert copy["List-Unsubscribe"]
    report = client.get(f"/admin/digests/{digest['id']}", headers=admin_headers).get_json()
    assert (report["recipients"], report["sent"]) == (2, 2)
    # Its bodies say so too: it went to someone who never subscribed.
    for kind in ("plain", "html"):
        body = copy.get_body((kind,)).get_content()
        assert "Test copy" in body or "TEST COPY" in body, kind
        # Not "you are not subscribed": a publisher may test on their own subscribed address.
        assert "unsubscribes nobody, not even you" in body and "because you subscribed" not in body
    real = outbox.messages("reader0@example.com")[-1].get_body(("plain",)).get_content()
    assert "TEST COPY" not in real and "because you subscribed to Clinic News" in real
    assert "\n-- \n" in real  # the signature separator mail clients know
    # Its unsubscribe link says it unsubscribes nobody, rather than "you are unsubscribed".
    link = copy["List-Unsubscribe"].strip("<>").removeprefix("http://news.example.org")
    assert b"unsubscribes nobody" in client.get(link).data
    left = client.post(
        link, data={"List-Unsubscribe": "One-Click"}, headers={"Accept": "text/html"}
    )
    assert b"Nobody was unsubscribed" in left.data and b"You are unsubscribed" not in left.data
    asked = client.post(
        link, data={"List-Unsubscribe": "One-Click"}, headers={"Accept": "application/json"}
    )
    assert asked.get_json() == {"status": "test_copy"}  # was "unsubscribed", to a script
    own = outbox.links(outbox.messages("reader0@example.com")[-1], "/unsubscribe/")[0]
    assert b"You are unsubscribed" in client.post(own.removeprefix("http://news.example.org")).data


def test_no_test_copy_goes_to_an_address_that_bounced_or_complained(
    app, client, admin_headers, outbox
):
    reader, other = add_confirmed(app, 2)
    add_post(client, admin_headers, 1)
    digest = trigger(client, admin_headers).get_json()
    outbox.dispatch()
    set_status(app, reader, Status.COMPLAINED)
    refused = client.post(
        f"/admin/digests/{digest['id']}/test", json={"email": reader}, headers=admin_headers
    )
    assert refused.status_code == 409
    assert refused.get_json()["error"] == {
        "code": "suppressed_email",
        "message": "That address bounced or complained: no mail goes to it.",
        "field": "email",
    }
    # Queued before its bounce arrived: skipped when its turn comes, not sent.
    queued = client.post(
        f"/admin/digests/{digest['id']}/test", json={"email": other}, headers=admin_headers
    )
    assert queued.status_code == 202
    set_status(app, other, Status.BOUNCED)
    stats = outbox.dispatch()
    assert stats.outcomes.get("skipped") == 1 and not stats.outcomes.get("sent")
    assert [m["Subject"] for m in outbox.messages(other)] == ["Clinic News: Post 1"]


def test_erasure_takes_the_test_copies_to_the_address_too(app, client, admin_headers, outbox):
    [reader] = add_confirmed(app, 1)
    add_post(client, admin_headers, 1)
    digest = trigger(client, admin_headers).get_json()
    client.post(
        f"/admin/digests/{digest['id']}/test", json={"email": reader}, headers=admin_headers
    )
    assert client.delete(f"/admin/subscribers/{reader}", headers=admin_headers).status_code == 204
    with app.app_context():
        from newsletter.models import Delivery

        assert db.session.scalars(select(Delivery).where(Delivery.to_address == reader)).all() == []
    outbox.dispatch()
    assert outbox.messages(reader) == []


def test_preview_shows_the_next_digest(app, client, admin_headers):
    add_post(client, admin_headers, 1, title="Massage & Running Form")
    page = client.get("/admin/digests/preview", headers=admin_headers)
    assert page.status_code == 200 and page.mimetype == "text/html"
    policy = page.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "script-src" not in policy  # no script runs
    assert b"Massage &amp; Running Form" in page.data
    # Its sample unsubscribe link, opened, says it unsubscribes nobody (it was a 400
    # saying "your mail program may have cut it short").
    (sample,) = set(re.findall(r'http://news\.example\.org(/unsubscribe/[^"]+)"', page.text))
    opened = client.get(sample)
    assert opened.status_code == 200 and "unsubscribes nobody" in opened.text
    add_confirmed(app, 1)
    trigger(client, admin_headers)
    assert client.get("/admin/digests/preview", headers=admin_headers).status_code == 409


def test_a_digest_to_nobody_is_refused_and_its_posts_wait_for_the_first_readers(
    app, client, admin_headers, outbox
):
    """A digest to no one used to take the posts: the first readers never got them."""
    add_post(client, admin_headers, 1)
    refused = client.post("/admin/digests", json={}, headers=admin_headers)
    assert refused.status_code == 409
    assert refused.get_json()["error"]["code"] == "no_recipients"
    assert client.get("/admin/digests", headers=admin_headers).get_json()["items"] == []
    add_confirmed(app, 2)
    digest = trigger(client, admin_headers).get_json()
    assert digest["recipients"] == 2
    assert [p["title"] for p in digest["posts"]] == ["Post 1"]
    outbox.dispatch()
    assert len(outbox.messages()) == 2


def test_shared_body_is_rendered_once_per_digest(app, client, admin_headers, outbox, monkeypatch):
    from newsletter.delivery import digest_email

    calls = []
    real = digest_email.render_shared
    monkeypatch.setattr(digest_email, "render_shared", lambda *a: calls.append(1) or real(*a))
    add_confirmed(app, 250)
    add_post(client, admin_headers, 1)
    trigger(client, admin_headers)
    outbox.dispatch()
    assert len(outbox.messages()) == 250
    assert len(calls) == 1


def test_send_rate_holds_the_dispatcher_back(make_app, admin_headers):
    import time

    from tests.conftest import Outbox

    app = make_app(SEND_RATE=20.0)
    client = app.test_client()
    add_confirmed(app, 30)
    add_post(client, admin_headers, 1)
    trigger(client, admin_headers)
    started = time.monotonic()
    stats = Outbox(app).dispatch()
    elapsed = time.monotonic() - started
    assert stats.outcomes["sent"] == 30
    assert elapsed >= 0.9  # 20 at once, the next 10 only after a second


def test_a_batch_renders_the_shared_body_once_and_gives_each_copy_its_own_link(
    make_app, admin_headers, monkeypatch
):
    from newsletter.delivery import digest_email
    from tests.conftest import Outbox

    app = make_app(DISPATCH_BATCH_SIZE=100)
    client = app.test_client()
    add_confirmed(app, 7)
    add_post(client, admin_headers, 1)
    trigger(client, admin_headers)
    renders = Counter()
    render_shared = digest_email.render_shared

    def counting_render(*args, **kwargs):
        renders["shared"] += 1
        return render_shared(*args, **kwargs)

    monkeypatch.setattr(digest_email, "render_shared", counting_render)
    outbox = Outbox(app)
    outbox.dispatch()
    messages = outbox.messages()
    assert len(messages) == 7
    # Every copy has its own link, each naming its own reader, yet one render served them.
    tokens = app.extensions["newsletter.tokens"]
    reader_of = {
        m["To"]: tokens.read_unsubscribe(m["List-Unsubscribe"].strip("<>").rsplit("/", 1)[1])
        for m in messages
    }
    readers = set(reader_of.values())
    with app.app_context():
        public_id_of = dict(
            db.session.execute(select(Subscriber.email, Subscriber.public_id)).all()
        )
        public_ids = set(public_id_of.values())
    assert readers == public_ids and len(readers) == 7
    assert reader_of == public_id_of  # each copy's link names the reader it went to
    assert renders == {"shared": 1}


def _status(client, headers, digest_id: int) -> str:
    return client.get(f"/admin/digests/{digest_id}", headers=headers).get_json()["status"]


def test_a_pass_marks_the_digest_sending_once_and_settles_it_as_it_ends(
    make_app, admin_headers, monkeypatch
):
    """Whether a copy is pending is asked once a pass, not once a batch: that read grows."""
    from sqlalchemy import event

    from newsletter.delivery import dispatcher
    from tests.conftest import Outbox

    app = make_app(DISPATCH_BATCH_SIZE=2)  # five readers: three batches
    client = app.test_client()
    emails = add_confirmed(app, 5)
    add_post(client, admin_headers, 1)
    digest = trigger(client, admin_headers).get_json()
    marked: list[set[int]] = []
    mark_sending = dispatcher.mark_sending

    def mark_and_note(session, digest_ids) -> None:
        if digest_ids:
            marked.append(set(digest_ids))
        mark_sending(session, digest_ids)

    seen: list[str] = []
    commits_per_batch: list[int] = []
    commits: list[int] = []
    send_claimed = dispatcher.send_claimed

    def send_and_look(*args):
        commits.clear()
        stop = send_claimed(*args)
        commits_per_batch.append(len(commits))
        seen.append(_status(client, admin_headers, digest["id"]))  # once the batch committed
        return stop

    monkeypatch.setattr(dispatcher, "mark_sending", mark_and_note)
    monkeypatch.setattr(dispatcher, "send_claimed", send_and_look)
    pending_checks: list[str] = []

    def keep(conn, cursor, statement, parameters, context, executemany) -> None:
        # (Not the posts given back as the digest ends, which is no check of its copies.)
        if "EXISTS" in statement and "deliveries" in statement and "UPDATE posts" not in statement:
            pending_checks.append(statement)

    def count_commit(connection) -> None:
        commits.append(1)

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", keep)
    event.listen(engine, "commit", count_commit)
    try:
        stats = Outbox(app).dispatch()
    finally:
        event.remove(engine, "before_cursor_execute", keep)
        event.remove(engine, "commit", count_commit)
    assert stats.outcomes["sent"] == 5
    assert marked == [{digest["id"]}]  # by its first batch; the next two had nothing to mark
    assert seen == ["sending"] * 3  # committed with the first batch's answers
    assert commits_per_batch == [1, 1, 1]  # the mark rides on the answers' commit
    assert len(pending_checks) == 1
    report = client.get(f"/admin/digests/{digest['id']}", headers=admin_headers).get_json()
    assert (report["status"], report["sent"], report["pending"]) == ("sent", 5, 0)
    assert sorted(m["To"] for m in Outbox(app).messages()) == sorted(emails)


def test_a_long_pass_settles_a_finished_digest_before_it_ends(make_app, admin_headers, monkeypatch):
    """A pass that other mail keeps busy still finishes the digest it sent (every second)."""
    from newsletter.delivery import dispatcher
    from tests.conftest import Outbox

    app = make_app(DISPATCH_BATCH_SIZE=2, RATELIMIT_ENABLED=False)
    client = app.test_client()
    add_confirmed(app, 2)  # the digest: one batch
    add_post(client, admin_headers, 1)
    digest = trigger(client, admin_headers).get_json()
    # Then a second digest, queued after it: two more batches of the pass. (Not
    # confirmations: a claim takes those before any digest copy.)
    add_confirmed(app, 2, prefix="later")
    add_post(client, admin_headers, 2)
    assert trigger(client, admin_headers).get_json()["recipients"] == 4
    monkeypatch.setattr(dispatcher, "PASS_SETTLES_EVERY_SECONDS", 0.0)
    seen: list[str] = []
    send = dispatcher._send

    def look_then_send(provider, messages):
        seen.append(_status(client, admin_headers, digest["id"]))
        return send(provider, messages)

    monkeypatch.setattr(dispatcher, "_send", look_then_send)
    stats = Outbox(app).dispatch()
    assert stats.outcomes["sent"] == 6
    # Before its own batch, then before each batch of the other digest in the same pass.
    assert seen == ["queued", "sent", "sent"]


def test_a_digest_subject_keeps_no_control_character(app, client, admin_headers):
    # PostgreSQL's text cannot hold NUL: it was stored as given (a 500 there).
    add_post(client, admin_headers, 1)
    add_confirmed(app, 1)
    digest = trigger(client, admin_headers, subject="Spring\x00 news\x07 \t here")
    assert digest.status_code == 202 and digest.get_json()["subject"] == "Spring news here"


def test_a_digest_of_a_whole_archive_lists_the_newest_and_counts_the_rest(make_app, admin_headers):
    # A first feed import of a whole archive made each copy megabytes (Gmail clips at 102 KB).
    app = make_app(DIGEST_MAX_POSTS=3)
    client, outbox = app.test_client(), Outbox(app)
    add_confirmed(app, 1)
    for n in range(1, 9):
        add_post(client, admin_headers, n)
    digest = trigger(client, admin_headers).get_json()
    assert len(digest["posts"]) == 8  # every post goes out with this digest: none waits
    outbox.dispatch()
    (message,) = outbox.messages()
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    for body in (text, html):
        assert all(f"Post {n}" in body for n in (8, 7, 6))
        assert not any(re.search(rf"Post {n}\b", body) for n in range(1, 6))
    assert "And 5 older posts on the blog: https://blog.example.org/\n" in text  # no "." after it
    assert re.search(
        r'And 5 older posts <a href="https://blog.example.org/"[^>]*>on the blog', html
    )
    preview = client.get("/admin/digests/preview", headers=admin_headers)
    assert preview.status_code == 409  # all eight were taken


def test_the_older_posts_link_goes_to_the_blog_of_feed_url(make_app, admin_headers):
    # The newest post, added by hand, was a newspaper's article: the link went there.
    app = make_app(DIGEST_MAX_POSTS=1, FEED_URL="https://clinic.example.org/blog/feed/")
    client, outbox = app.test_client(), Outbox(app)
    add_confirmed(app, 1)
    add_post(client, admin_headers, 1)
    add_post(client, admin_headers, 2, url="https://gazette.example.net/news/kerpius")
    trigger(client, admin_headers)
    outbox.dispatch()
    text = outbox.messages()[0].get_body(("plain",)).get_content()
    assert "And 1 older post on the blog: https://clinic.example.org/\n" in text


def test_a_digest_within_the_limit_lists_every_post_and_no_count(
    app, client, admin_headers, outbox
):
    add_confirmed(app, 1)
    add_post(client, admin_headers, 1)
    trigger(client, admin_headers)
    outbox.dispatch()
    (message,) = outbox.messages()
    text = message.get_body(("plain",)).get_content()
    assert "Post 1" in text and "older post" not in text


def test_post_dates_are_shown_in_the_newsletters_time_zone(make_app, admin_headers):
    app = make_app(NEWSLETTER_TIMEZONE="Asia/Karachi")  # UTC+5: 22:30 UTC is the next day
    client, outbox = app.test_client(), Outbox(app)
    add_confirmed(app, 1)
    add_post(client, admin_headers, 1, published_at="2026-01-01T22:30:00Z")
    trigger(client, admin_headers)
    outbox.dispatch()
    (message,) = outbox.messages()
    assert "January 2, 2026" in message.get_body(("plain",)).get_content()
    assert '<time datetime="2026-01-02">' in message.get_body(("html",)).get_content()
