"""The subscriber's journey through our hosted pages, in a real browser."""

from __future__ import annotations

import time

import pytest
from itsdangerous import TimestampSigner, URLSafeTimedSerializer
from playwright.sync_api import Page, expect

from newsletter.models import Status
from newsletter.tokens import CONFIRM_SALT
from tests.conftest import SECRET, path_of

from .checks import check_state
from .conftest import Site
from .watch import Watch

pytestmark = pytest.mark.slow

NAME = "Clinic News"  # NEWSLETTER_NAME in the test settings


def assert_our_page(page: Page, site: Site, watch: Watch, heading: str) -> None:
    """This heading, the newsletter's name, and nothing loaded from another origin."""
    expect(page.get_by_role("heading", level=1)).to_have_text(heading)
    expect(page.get_by_text(NAME, exact=True).first).to_be_visible()
    assert NAME in page.title()
    urls = watch.take()
    assert urls, "no request seen"
    assert all(url.startswith(site.service.url + "/") for url in urls), urls
    assert watch.csp_violations() == []


def confirmed_subscriber(site: Site, email: str) -> str:
    """Sign ``email`` up and confirm it through the service; its public id."""
    client = site.app.test_client()
    assert client.post("/subscribe", data={"email": email}).status_code == 200
    site.outbox.dispatch()
    assert client.post(path_of(site.outbox.confirm_link(email))).status_code == 200
    stored = site.subscriber(email)
    assert stored is not None and stored.status is Status.CONFIRMED
    return stored.public_id


def test_journey_from_the_blog_box_to_confirmed(site: Site, page: Page, watch: Watch) -> None:
    page.goto(site.blog.url + "/")
    page.get_by_label("Email address").fill("ann@example.com")
    page.get_by_role("button", name="Subscribe").click()
    expect(page.locator("[data-newsletter-status]")).to_have_text(
        "Thank you! Check your inbox to confirm."
    )

    site.outbox.dispatch()
    [message] = site.outbox.messages("ann@example.com")
    link = site.outbox.confirm_link("ann@example.com")
    assert link.startswith(site.service.url + "/confirm/")

    watch.take()
    page.goto(link)
    assert_our_page(page, site, watch, "Confirm your subscription")
    stored = site.subscriber("ann@example.com")
    assert stored is not None and stored.status is Status.PENDING  # opening is not confirming
    check_state(page, "page-confirm")

    page.get_by_role("button", name="Confirm my subscription").click()
    assert_our_page(page, site, watch, "Thank you! Your subscription is confirmed.")
    stored = site.subscriber("ann@example.com")
    assert stored is not None and stored.status is Status.CONFIRMED
    check_state(page, "page-confirmed")

    html = message.get_body(("html",)).get_content()
    page.set_content(html)  # the email as a mail client would show it
    expect(page.get_by_role("link").filter(has_text="onfirm").first).to_have_attribute("href", link)
    check_state(page, "email-confirm")


def test_unsubscribe_from_a_digest_link_and_come_back(site: Site, page: Page, watch: Watch):
    public_id = confirmed_subscriber(site, "bob@example.com")
    token = site.app.extensions["newsletter.tokens"].unsubscribe_token(public_id)

    page.goto(f"{site.service.url}/unsubscribe/{token}")
    assert_our_page(page, site, watch, "Unsubscribe")
    stored = site.subscriber("bob@example.com")
    assert stored is not None and stored.status is Status.CONFIRMED  # a GET changes nothing
    check_state(page, "page-unsubscribe")

    page.get_by_role("button", name="Unsubscribe").click()
    assert_our_page(page, site, watch, "You are unsubscribed")
    stored = site.subscriber("bob@example.com")
    assert stored is not None and stored.status is Status.UNSUBSCRIBED
    check_state(page, "page-unsubscribed")

    page.get_by_role("button", name="Subscribe again").click()
    assert_our_page(page, site, watch, "Check your inbox")
    stored = site.subscriber("bob@example.com")
    assert stored is not None and stored.status is Status.PENDING


def test_hosted_signup_page_explains_a_mistake_and_keeps_the_name(
    site: Site, page: Page, watch: Watch
) -> None:
    page.goto(site.service.url + "/subscribe")
    assert_our_page(page, site, watch, "Subscribe to our newsletter")
    check_state(page, "page-subscribe")

    page.get_by_label("Email address").fill("ann@example")
    page.get_by_label("Name").fill("Ann")
    page.get_by_role("button", name="Subscribe").click()
    expect(page.get_by_role("alert")).to_contain_text("not a valid email address")
    expect(page.get_by_label("Name")).to_have_value("Ann")
    expect(page.get_by_label("Email address")).to_have_attribute("aria-invalid", "true")
    check_state(page, "page-subscribe-error")

    page.get_by_label("Email address").fill("ann@example.com")
    page.get_by_role("button", name="Subscribe").click()
    assert_our_page(page, site, watch, "Check your inbox")
    check_state(page, "page-check-inbox")


def test_too_many_signups_on_the_hosted_page(make_site, page: Page, watch: Watch) -> None:
    site = make_site(RATELIMIT_SUBSCRIBE="1 per minute")
    for address in ("ann@example.com", "bob@example.com"):
        page.goto(site.service.url + "/subscribe")
        page.get_by_label("Email address").fill(address)
        page.get_by_role("button", name="Subscribe").click()
    assert_our_page(page, site, watch, "Too many attempts")
    check_state(page, "page-rate-limited")


def test_a_broken_link_offers_a_way_back(site: Site, page: Page, watch: Watch) -> None:
    page.goto(site.service.url + "/confirm/not-a-real-token")
    assert_our_page(page, site, watch, "This link is not valid")
    check_state(page, "page-invalid-link")
    page.get_by_role("link", name="Sign up again").click()
    assert_our_page(page, site, watch, "Subscribe to our newsletter")


class _LongAgo(TimestampSigner):
    def get_timestamp(self) -> int:
        return int(time.time()) - 30 * 86400


def test_an_expired_link_sends_a_new_one(make_site, page: Page, watch: Watch) -> None:
    site = make_site(CONFIRM_RESEND_INTERVAL=0)
    client = site.app.test_client()
    client.post("/subscribe", data={"email": "ann@example.com"})
    stored = site.subscriber("ann@example.com")
    assert stored is not None
    old = URLSafeTimedSerializer(SECRET, salt=CONFIRM_SALT, signer=_LongAgo).dumps(
        [stored.public_id, stored.round]
    )
    site.outbox.dispatch()
    sent_before = len(site.outbox.messages("ann@example.com"))

    page.goto(f"{site.service.url}/confirm/{old}")
    assert_our_page(page, site, watch, "This link has expired")
    check_state(page, "page-expired-link")
    page.get_by_role("button", name="Send me a new link").click()
    assert_our_page(page, site, watch, "Check your inbox")
    site.outbox.dispatch()
    newest = site.outbox.messages("ann@example.com")
    assert len(newest) == sent_before + 1
    assert site.outbox.confirm_link("ann@example.com").startswith(site.service.url + "/confirm/")


def test_page_not_found(site: Site, page: Page, watch: Watch) -> None:
    response = page.goto(site.service.url + "/no-such-page")
    assert response is not None and response.status == 404
    assert "default-src 'none'" in response.headers["content-security-policy"]
    assert_our_page(page, site, watch, "Page not found")
    check_state(page, "page-not-found")
