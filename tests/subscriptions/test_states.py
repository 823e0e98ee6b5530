"""Every state transition of the contract, and nothing else."""

from __future__ import annotations

import pytest

from newsletter.models import Status
from tests.conftest import path_of
from tests.subscriptions.helpers import confirmed, find, set_status, unsubscribe_link


def signup(client, email="ann@example.com", **extra):
    return client.post("/subscribe", data={"email": email, **extra})


def test_new_address_becomes_pending_with_one_confirmation(app, client, outbox):
    signup(client)
    outbox.dispatch()
    assert find(app, "ann@example.com").status is Status.PENDING
    assert len(outbox.messages("ann@example.com")) == 1


def test_pending_again_is_throttled_then_resent(make_app, tmp_path):
    from tests.conftest import Outbox

    app = make_app(CONFIRM_RESEND_INTERVAL=3600)
    client, outbox = app.test_client(), Outbox(app)
    signup(client)
    signup(client)
    outbox.dispatch()
    assert len(outbox.messages()) == 1  # the second signup inside the interval sends nothing

    app.config["CONFIRM_RESEND_INTERVAL"] = 0
    signup(client)
    outbox.dispatch()
    assert len(outbox.messages()) == 2


def test_daily_cap_holds_however_often_a_stranger_posts(make_app):
    from tests.conftest import Outbox

    app = make_app(CONFIRM_RESEND_INTERVAL=0, CONFIRM_MAX_PER_DAY=3, RATELIMIT_ENABLED=False)
    client, outbox = app.test_client(), Outbox(app)
    for _ in range(10):
        assert signup(client, "victim@example.com").status_code == 200
    outbox.dispatch()
    assert len(outbox.messages("victim@example.com")) == 3


def test_confirmed_address_gets_nothing_new(app, client, outbox):
    confirmed(client, outbox, "ann@example.com")
    before = len(outbox.messages())
    signup(client)
    outbox.dispatch()
    assert len(outbox.messages()) == before
    assert find(app, "ann@example.com").status is Status.CONFIRMED


def test_unsubscribed_becomes_pending_and_must_confirm_again(app, client, outbox):
    subscriber = confirmed(client, outbox, "ann@example.com")
    old_link = outbox.confirm_link("ann@example.com")
    assert client.post(unsubscribe_link(app, subscriber)).status_code == 200
    assert find(app, "ann@example.com").status is Status.UNSUBSCRIBED

    signup(client)
    assert find(app, "ann@example.com").status is Status.PENDING
    # A confirm link issued before the unsubscribe no longer works...
    stale = client.post(path_of(old_link), headers={"Accept": "application/json"})
    assert stale.status_code == 400
    assert stale.get_json()["error"]["code"] == "invalid_token"
    assert find(app, "ann@example.com").status is Status.PENDING
    # ...the fresh one does.
    outbox.dispatch()
    new_link = outbox.confirm_link("ann@example.com")
    assert new_link != old_link
    assert client.post(path_of(new_link)).status_code == 200
    assert find(app, "ann@example.com").status is Status.CONFIRMED


@pytest.mark.parametrize("status", [Status.BOUNCED, Status.COMPLAINED])
def test_bounced_and_complained_get_nothing(app, client, outbox, status):
    confirmed(client, outbox, "ann@example.com")
    set_status(app, "ann@example.com", status)
    before = len(outbox.messages())
    signup(client)
    outbox.dispatch()
    assert len(outbox.messages()) == before
    assert find(app, "ann@example.com").status is status


def test_confirmation_queued_then_unsubscribed_is_skipped_not_sent(app, client, outbox):
    signup(client)
    set_status(app, "ann@example.com", Status.COMPLAINED)
    stats = outbox.dispatch()
    assert stats.outcomes == {"skipped": 1}
    assert outbox.messages() == []


def test_unsubscribe_page_has_one_button_and_get_changes_nothing(app, client, outbox):
    subscriber = confirmed(client, outbox, "ann@example.com")
    page = client.get(unsubscribe_link(app, subscriber))
    assert page.status_code == 200
    assert page.data.count(b"<button") == 1
    assert find(app, "ann@example.com").status is Status.CONFIRMED


def test_one_click_unsubscribe_works_without_cookies_or_csrf(app, outbox):
    client = app.test_client(use_cookies=False)
    subscriber = confirmed(client, outbox, "ann@example.com")
    response = client.post(
        unsubscribe_link(app, subscriber),
        data="List-Unsubscribe=One-Click",
        content_type="application/x-www-form-urlencoded",
    )
    assert response.status_code == 200  # no redirect
    assert find(app, "ann@example.com").status is Status.UNSUBSCRIBED
    again = client.post(unsubscribe_link(app, subscriber), data={"List-Unsubscribe": "One-Click"})
    assert again.status_code == 200
    with app.app_context():
        from newsletter.extensions import db
        from newsletter.models import ConsentKind, Subscriber

        events = db.session.get(Subscriber, subscriber.id).events
        unsubscribes = [e for e in events if e.kind is ConsentKind.UNSUBSCRIBED]
    assert len(unsubscribes) == 1 and unsubscribes[0].detail == {"method": "one-click"}


def test_one_click_unsubscribe_as_multipart_form_data(app, outbox):
    """RFC 8058 allows the one-click body as multipart/form-data too."""
    client = app.test_client(use_cookies=False)
    subscriber = confirmed(client, outbox, "ann@example.com")
    response = client.post(
        unsubscribe_link(app, subscriber),
        data={"List-Unsubscribe": "One-Click"},
        content_type="multipart/form-data",
    )
    assert response.status_code == 200
    assert find(app, "ann@example.com").status is Status.UNSUBSCRIBED
    with app.app_context():
        from newsletter.extensions import db
        from newsletter.models import ConsentKind, Subscriber

        events = db.session.get(Subscriber, subscriber.id).events
        details = [e.detail for e in events if e.kind is ConsentKind.UNSUBSCRIBED]
    assert details == [{"method": "one-click"}]


def test_unsubscribe_json_answer(app, client, outbox):
    subscriber = confirmed(client, outbox, "ann@example.com")
    response = client.post(
        unsubscribe_link(app, subscriber), headers={"Accept": "application/json"}
    )
    assert response.get_json() == {"status": "unsubscribed"}


def test_resubscribe_from_the_unsubscribed_page(app, client, outbox):
    subscriber = confirmed(client, outbox, "ann@example.com")
    page = client.post(unsubscribe_link(app, subscriber))
    assert b"Subscribe again" in page.data
    signup(client)
    assert find(app, "ann@example.com").status is Status.PENDING
