"""Confirm and unsubscribe links that do not work: each refused with a 4xx and a way on."""

from __future__ import annotations

import time

from newsletter.models import Status
from tests.conftest import Outbox, path_of
from tests.subscriptions.helpers import confirmed, find, unsubscribe_link

JSON = {"Accept": "application/json"}


def test_tampered_confirm_link_is_400_in_html_and_json(app, client, outbox):
    client.post("/subscribe", data={"email": "ann@example.com"})
    outbox.dispatch()
    path = path_of(outbox.confirm_link("ann@example.com"))
    tampered = path[:-3] + ("aaa" if not path.endswith("aaa") else "bbb")
    for method in (client.get, client.post):
        html = method(tampered)
        assert html.status_code == 400 and b"not valid" in html.data
        assert method(tampered, headers=JSON).get_json()["error"]["code"] == "invalid_token"
    assert find(app, "ann@example.com").status is Status.PENDING


def test_unsubscribe_token_used_as_a_confirm_link_is_refused(app, client, outbox):
    subscriber = confirmed(client, outbox, "ann@example.com")
    token = unsubscribe_link(app, subscriber).rsplit("/", 1)[1]
    assert client.post(f"/confirm/{token}", headers=JSON).status_code == 400
    confirm_token = path_of(outbox.confirm_link("ann@example.com")).rsplit("/", 1)[1]
    assert client.post(f"/unsubscribe/{confirm_token}", headers=JSON).status_code == 400
    assert find(app, "ann@example.com").status is Status.CONFIRMED


def test_forged_unsubscribe_is_refused(client):
    response = client.post("/unsubscribe/abc.def", headers=JSON)
    assert response.status_code == 400
    # The contract's shape, {code, message, field}: field null when no field is at fault.
    assert response.get_json()["error"] == {
        "code": "invalid_token",
        "message": "This unsubscribe link is not valid: your mail program may have cut it "
        "short. Open the unsubscribe link at the bottom of our latest email again, or copy "
        "the whole link into your browser.",
        "field": None,
    }
    # A reader trying to leave is told how, not sent to sign up again.
    page = client.get("/unsubscribe/abc.def")
    assert page.status_code == 400
    assert b"Unsubscribe</strong> button" in page.data and b"Sign up again" not in page.data
    assert b"Sign up again" in client.get("/confirm/abc.def").data


def test_expired_link_is_410_with_a_way_to_get_a_new_one(make_app):
    app = make_app(CONFIRM_MAX_AGE=1, CONFIRM_RESEND_INTERVAL=0)
    client, outbox = app.test_client(), Outbox(app)
    client.post("/subscribe", data={"email": "ann@example.com"})
    outbox.dispatch()
    path = path_of(outbox.confirm_link("ann@example.com"))
    time.sleep(2.1)

    page = client.get(path)
    assert page.status_code == 410 and b"Send me a new link" in page.data
    expired = client.post(path, headers=JSON)
    assert expired.status_code == 410
    error = expired.get_json()["error"]
    assert error["code"] == "token_expired" and error["renew_url"] == f"{path}/renew"
    assert find(app, "ann@example.com").status is Status.PENDING

    # The form's address opened by hand (or by a scanner) sends nothing: it shows the page.
    opened = client.get(f"{path}/renew")
    assert opened.status_code == 303 and opened.headers["Location"] == path
    asked = client.get(f"{path}/renew", headers=JSON)  # a script: the URL to POST
    assert asked.status_code == 200 and asked.get_json() == {"renew_url": f"{path}/renew"}
    renewed = client.post(f"{path}/renew")
    assert renewed.status_code == 200 and b"Check your inbox" in renewed.data
    outbox.dispatch()
    fresh = outbox.confirm_link("ann@example.com")
    assert path_of(fresh) != path
    assert client.post(path_of(fresh)).status_code == 200
    assert find(app, "ann@example.com").status is Status.CONFIRMED


def test_renewing_a_forged_token_is_refused(client):
    assert client.post("/confirm/forged.token.here/renew", headers=JSON).status_code == 400


def test_retired_key_still_confirms_after_rotation(make_app):
    old = make_app(SECRET_KEY="old-secret")
    client, outbox = old.test_client(), Outbox(old)
    client.post("/subscribe", data={"email": "ann@example.com"})
    outbox.dispatch()
    path = path_of(outbox.confirm_link("ann@example.com"))
    rotated = make_app(SECRET_KEY="new-secret", SECRET_KEY_FALLBACKS=["old-secret"])
    assert rotated.test_client().post(path).status_code == 200
    assert find(rotated, "ann@example.com").status is Status.CONFIRMED


def test_key_retired_without_fallback_refuses_old_links(make_app):
    old = make_app(SECRET_KEY="old-secret")
    client, outbox = old.test_client(), Outbox(old)
    client.post("/subscribe", data={"email": "ann@example.com"})
    outbox.dispatch()
    path = path_of(outbox.confirm_link("ann@example.com"))
    assert make_app(SECRET_KEY="new-secret").test_client().post(path).status_code == 400


def test_confirm_link_of_an_erased_subscriber_is_refused(app, client, outbox, admin_headers):
    client.post("/subscribe", data={"email": "ann@example.com"})
    outbox.dispatch()
    path = path_of(outbox.confirm_link("ann@example.com"))
    assert (
        client.delete("/admin/subscribers/ann@example.com", headers=admin_headers).status_code
        == 204
    )
    assert client.post(path, headers=JSON).status_code == 400
    assert find(app, "ann@example.com") is None


def test_an_expired_link_of_a_confirmed_reader_says_confirmed_and_offers_nothing(make_app):
    app = make_app(CONFIRM_MAX_AGE=1)
    client, outbox = app.test_client(), Outbox(app)
    confirmed(client, outbox, "ann@example.com")
    path = path_of(outbox.confirm_link("ann@example.com"))
    time.sleep(2.1)
    page = client.get(path)  # what clicking the old email's link does
    assert page.status_code == 200 and b"Send me a new link" not in page.data
    assert client.get(path, headers=JSON).get_json() == {"status": "confirmed"}
    assert client.post(path, headers=JSON).get_json() == {"status": "confirmed"}


def test_a_link_that_died_shows_no_button_and_no_new_link(make_app):
    # Unsubscribed since: the link must not confirm (the contract), and neither its page
    # nor its POST may offer the button or a new link that would never come.
    app = make_app()  # links valid for the default week: the dead link is not expired
    client, outbox = app.test_client(), Outbox(app)
    reader = confirmed(client, outbox, "ann@example.com")
    link = path_of(outbox.confirm_link("ann@example.com"))
    assert client.post(unsubscribe_link(app, reader)).status_code == 200
    page = client.get(link)
    assert page.status_code == 400 and b'method="post"' not in page.data.lower()  # no button
    assert client.get(link, headers=JSON).get_json()["error"]["code"] == "invalid_token"
    # The same link once expired too (an app with a one-second lifetime, the same key).
    soon = make_app(CONFIRM_MAX_AGE=1).test_client()
    time.sleep(2.1)
    for answer in (soon.get(link, headers=JSON), soon.post(link, headers=JSON)):
        assert answer.status_code == 400
        assert answer.get_json()["error"]["code"] == "invalid_token"  # no renew_url


def test_the_confirm_page_of_a_valid_link_has_the_button(client, outbox):
    client.post("/subscribe", data={"email": "ann@example.com"})
    outbox.dispatch()
    page = client.get(path_of(outbox.confirm_link("ann@example.com")))
    assert page.status_code == 200 and b'method="post"' in page.data.lower()


def test_each_page_answers_json_when_asked_the_same_in_every_state(app, client, outbox):
    # JSON came only for an error or an already confirmed link: a pending one gave HTML.
    asks = {"Accept": "application/json"}
    client.post("/subscribe", data={"email": "ann@example.com"})
    outbox.dispatch()
    confirm = path_of(outbox.confirm_link("ann@example.com"))
    pending = client.get(confirm, headers=asks)
    assert pending.mimetype == "application/json"
    assert pending.get_json() == {"status": "pending", "confirm_url": confirm}
    assert find(app, "ann@example.com").status is Status.PENDING  # a GET confirms nothing
    assert client.post(pending.get_json()["confirm_url"], headers=asks).status_code == 200
    assert client.get(confirm, headers=asks).get_json() == {"status": "confirmed"}

    leave = unsubscribe_link(app, find(app, "ann@example.com"))
    page = client.get(leave, headers=asks)
    assert page.mimetype == "application/json"
    assert page.get_json() == {"unsubscribe_url": leave}
    assert find(app, "ann@example.com").status is Status.CONFIRMED

    form = client.get("/subscribe", headers=asks).get_json()
    assert form["subscribe_url"] == "/subscribe" and form["required"] == ["email"]
    # Browsers still get the pages; a cache is told the answer depends on Accept.
    assert client.get(confirm).mimetype == client.get(leave).mimetype == "text/html"
    for path in (confirm, leave, "/subscribe", "/confirm/not-a-token"):
        assert "Accept" in client.get(path).headers.get("Vary", ""), path
        assert "Accept" in client.get(path, headers=asks).headers.get("Vary", ""), path


def test_an_expired_link_from_before_the_reader_left_stays_dead_after_a_new_signup(make_app):
    """Round 0's link, once expired, offered a new link (and sent one) to round 1's reader."""
    app = make_app(CONFIRM_RESEND_INTERVAL=0)
    client, outbox = app.test_client(), Outbox(app)
    reader = confirmed(client, outbox, "ann@example.com")
    old_link = path_of(outbox.confirm_link("ann@example.com"))
    assert client.post(unsubscribe_link(app, reader)).status_code == 200
    client.post("/subscribe", data={"email": "ann@example.com"})  # pending again, round 1
    outbox.dispatch()
    sent = len(outbox.messages())
    soon = make_app(CONFIRM_MAX_AGE=1, CONFIRM_RESEND_INTERVAL=0).test_client()
    time.sleep(2.1)
    for answer in (soon.get(old_link, headers=JSON), soon.post(old_link, headers=JSON)):
        assert answer.status_code == 400
        assert answer.get_json()["error"]["code"] == "invalid_token"  # no renew_url
    renewed = soon.post(f"{old_link}/renew", headers=JSON)  # said "check your inbox"
    assert renewed.status_code == 400 and renewed.get_json()["error"]["code"] == "invalid_token"
    Outbox(app).dispatch()
    assert len(outbox.messages()) == sent  # and sent nothing
    assert find(app, "ann@example.com").status is Status.PENDING


def test_links_in_answers_keep_the_path_the_service_is_mounted_under(make_app):
    """Behind a proxy at /news (SCRIPT_NAME), a renew link without it reached nothing."""
    app = make_app(CONFIRM_MAX_AGE=1, CONFIRM_RESEND_INTERVAL=0)
    client, outbox = app.test_client(), Outbox(app)
    mounted = {"base_url": "http://localhost/news"}
    client.post("/subscribe", data={"email": "ann@example.com"})
    outbox.dispatch()
    token = path_of(outbox.confirm_link("ann@example.com")).rsplit("/", 1)[1]
    page = client.get(f"/confirm/{token}", headers=JSON, **mounted).get_json()
    assert page["confirm_url"] == f"/news/confirm/{token}"
    assert client.get("/subscribe", headers=JSON, **mounted).get_json()["subscribe_url"] == (
        "/news/subscribe"
    )
    time.sleep(2.1)
    expired = client.post(f"/confirm/{token}", headers=JSON, **mounted)
    assert expired.get_json()["error"]["renew_url"] == f"/news/confirm/{token}/renew"
    html = client.get(f"/confirm/{token}", **mounted).get_data(as_text=True)
    assert f'action="/news/confirm/{token}/renew"' in html


def test_a_new_link_asked_for_says_whether_one_went(make_app):
    """Held back by the throttle, the page said "we have just sent" a link that never came."""
    app = make_app(CONFIRM_MAX_AGE=1, CONFIRM_RESEND_INTERVAL=60, CONFIRM_MAX_PER_DAY=2)
    client, outbox = app.test_client(), Outbox(app)
    client.post("/subscribe", data={"email": "ann@example.com"})
    outbox.dispatch()
    renew = path_of(outbox.confirm_link("ann@example.com")) + "/renew"
    time.sleep(2.1)
    recent = client.post(renew, headers=JSON)  # the first link went a second ago
    assert recent.status_code == 202
    assert recent.get_json() == {"status": "pending", "new_link": "recent"}
    assert b"a few minutes ago" in client.post(renew).data
    outbox.dispatch()
    assert len(outbox.messages("ann@example.com")) == 1

    later = make_app(CONFIRM_MAX_AGE=1, CONFIRM_RESEND_INTERVAL=0, CONFIRM_MAX_PER_DAY=2)
    sent = later.test_client().post(renew, headers=JSON)
    assert sent.get_json() == {"status": "pending", "new_link": "sent"}
    outbox.dispatch()
    assert len(outbox.messages("ann@example.com")) == 2
    capped = later.test_client().post(renew)  # two links today: the day's cap
    assert capped.status_code == 200 and b"No new link today" in capped.data
    assert later.test_client().post(renew, headers=JSON).get_json()["new_link"] == "daily_cap"
    outbox.dispatch()
    assert len(outbox.messages("ann@example.com")) == 2

    client.post(path_of(outbox.confirm_link("ann@example.com")))  # the newest link, still valid
    assert find(app, "ann@example.com").status is Status.CONFIRMED
    done = later.test_client().post(renew, headers=JSON)
    assert done.status_code == 200 and done.get_json() == {"status": "confirmed"}


def test_the_confirmed_and_unsubscribed_pages_link_back_to_the_readers_site(make_app):
    app = make_app(CORS_ORIGINS=["https://clinic.example.org"])
    client, outbox = app.test_client(), Outbox(app)
    page = "https://clinic.example.org/2020/10/hip-extension/?utm_source=x"
    client.post("/subscribe", data={"email": "ann@example.com", "source": page})
    client.post("/subscribe", data={"email": "bob@example.com", "source": "https://evil.example/"})
    outbox.dispatch()
    back = b'<a href="https://clinic.example.org/">Back to clinic.example.org</a>'
    ann = path_of(outbox.confirm_link("ann@example.com"))
    assert back in client.post(ann).data
    assert back in client.get(ann).data  # the link opened again, days later
    bob = client.post(path_of(outbox.confirm_link("bob@example.com"))).data
    assert b"Thank you!" in bob and b"Back to" not in bob  # not a site of the publisher's
    left = client.post(unsubscribe_link(app, find(app, "ann@example.com")))
    assert back in left.data
