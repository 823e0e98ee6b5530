"""The signup box on the publisher's blog (a second origin), in a real browser."""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser, Page, Route, expect

from newsletter.models import Status

from .checks import check_state, screenshots
from .conftest import DESKTOP, Site
from .watch import Watch

pytestmark = pytest.mark.slow

FORM = "form[data-newsletter]"
SUCCESS = "Thank you! Check your inbox to confirm."
INVALID = "That doesn't look like an email address. Please check it and try again."
LIMITED = "Too many attempts, please try again later."
FAILED = "Something went wrong, please try again."
NAME = "Please check your name: one line of at most 200 characters."


def open_blog(page: Page, site: Site) -> None:
    """Load the blog post and wait until the widget has taken over the form."""
    page.goto(site.blog.url + "/")
    expect(page.locator(f"{FORM}[data-newsletter-ready]")).to_have_count(1)


def status(page: Page):
    """The widget's live region."""
    return page.locator(f"{FORM} [data-newsletter-status]")


def test_signup_succeeds_from_another_origin(site: Site, page: Page, watch: Watch) -> None:
    open_blog(page, site)
    check_state(page, "widget-idle")
    screenshots(page, "widget-idle-box", FORM)

    page.get_by_label("Email address").fill("ann@example.com")
    page.get_by_role("button", name="Subscribe").click()

    expect(status(page)).to_have_text(SUCCESS)
    expect(status(page)).to_have_attribute("aria-live", "polite")
    expect(page.locator(FORM)).to_have_attribute("data-state", "success")
    assert page.url == site.blog.url + "/"  # no navigation: the widget posted it
    [post] = watch.posts(site.service.url + "/subscribe")
    assert post.headers["accept"] == "application/json"
    assert post.header_value("origin") == site.blog.url
    stored = site.subscriber("ann@example.com")
    assert stored is not None and stored.status is Status.PENDING
    assert stored.source == site.blog.url + "/"
    assert watch.csp_violations() == []
    check_state(page, "widget-success")
    screenshots(page, "widget-success-box", FORM)


def test_invalid_address_says_what_to_do_and_keeps_it(site: Site, page: Page, watch: Watch):
    open_blog(page, site)
    email = page.get_by_label("Email address")
    email.fill("ann@example")  # a browser accepts it; the service does not
    email.press("Enter")

    expect(status(page)).to_have_text(INVALID)
    expect(email).to_have_value("ann@example")
    expect(email).to_have_attribute("aria-invalid", "true")
    status_id = status(page).get_attribute("id")
    expect(email).to_have_attribute("aria-describedby", status_id)  # the error describes it
    expect(email).to_be_focused()
    assert len(watch.posts(site.service.url + "/subscribe")) == 1
    assert site.subscriber("ann@example") is None
    check_state(page, "widget-invalid")
    screenshots(page, "widget-invalid-box", FORM)

    email.fill("ann@example.com")
    email.press("Enter")
    expect(status(page)).to_have_text(SUCCESS)
    expect(email).not_to_have_attribute("aria-invalid", "true")
    # ...and no longer once the error is gone ("Thank you" does not describe the field).
    expect(email).not_to_have_attribute("aria-describedby", status_id)


def test_obviously_wrong_address_is_caught_before_sending(site: Site, page: Page, watch: Watch):
    open_blog(page, site)
    email = page.get_by_label("Email address")
    email.fill("not an address")
    page.get_by_role("button", name="Subscribe").click()
    expect(status(page)).to_have_text(INVALID)
    expect(email).to_have_value("not an address")
    email.fill("")
    email.press("Enter")
    expect(status(page)).to_have_text("Please enter your email address.")
    assert watch.posts(site.service.url + "/subscribe") == []


def test_rate_limited_signup_says_try_later(make_site, page: Page, watch: Watch) -> None:
    site = make_site(RATELIMIT_SUBSCRIBE="1 per minute")
    open_blog(page, site)
    email = page.get_by_label("Email address")
    email.fill("ann@example.com")
    email.press("Enter")
    expect(status(page)).to_have_text(SUCCESS)

    email.fill("bob@example.com")
    email.press("Enter")
    expect(status(page)).to_have_text(LIMITED)
    expect(email).to_have_value("bob@example.com")
    assert site.subscriber("bob@example.com") is None
    check_state(page, "widget-rate-limited")
    screenshots(page, "widget-rate-limited-box", FORM)


def test_server_down_says_try_again_and_keeps_the_address(site: Site, page: Page) -> None:
    open_blog(page, site)
    site.service.stop()
    email = page.get_by_label("Email address")
    email.fill("ann@example.com")
    button = page.get_by_role("button", name="Subscribe")
    button.focus()
    page.keyboard.press("Enter")

    expect(status(page)).to_have_text(FAILED)
    expect(email).to_have_value("ann@example.com")
    expect(button).to_be_enabled()
    expect(button).to_be_focused()  # focus returns where the reader was
    check_state(page, "widget-failed")
    screenshots(page, "widget-failed-box", FORM)


def test_server_error_says_try_again(site: Site, page: Page) -> None:
    def fail(route: Route) -> None:
        route.fulfill(status=500, content_type="text/html", body="<h1>Internal error</h1>")

    open_blog(page, site)
    page.route(site.service.url + "/subscribe", fail)
    page.get_by_label("Email address").fill("ann@example.com")
    page.get_by_role("button", name="Subscribe").click()
    expect(status(page)).to_have_text(FAILED)


def test_processing_state_and_double_click_send_one_request(
    site: Site, page: Page, watch: Watch
) -> None:
    open_blog(page, site)
    page.get_by_label("Email address").fill("ann@example.com")
    site.gate.close()
    try:
        page.locator(f"{FORM} button").dblclick()
        button = page.locator(f"{FORM} button")
        expect(button).to_have_text("Processing...")
        expect(button).to_be_disabled()
        expect(page.locator(FORM)).to_have_attribute("aria-busy", "true")
        page.locator(f"{FORM} button").click(force=True)  # a third, impatient click
        page.get_by_label("Email address").press("Enter")  # and Enter
        screenshots(page, "widget-processing-box", FORM)
    finally:
        site.gate.open()
    expect(status(page)).to_have_text(SUCCESS)
    expect(page.locator(f"{FORM} button")).to_have_text("Subscribe")
    assert len(watch.posts(site.service.url + "/subscribe")) == 1
    assert site.gate.held == 1


def test_keyboard_alone_is_enough(site: Site, page: Page) -> None:
    open_blog(page, site)
    email = page.get_by_label("Email address")
    email.focus()
    page.keyboard.type("ann@example.com")
    page.keyboard.press("Tab")
    expect(page.get_by_role("button", name="Subscribe")).to_be_focused()  # honeypot skipped
    page.keyboard.press("Enter")
    expect(status(page)).to_have_text(SUCCESS)
    expect(page.get_by_role("button", name="Subscribe")).to_be_focused()


def test_honeypot_is_hidden_from_people_and_screen_readers(site: Site, page: Page) -> None:
    open_blog(page, site)
    trap = page.locator(f"{FORM} input[name=website]")
    box = trap.bounding_box()
    assert box is not None and box["x"] + box["width"] <= 0  # off-screen, not display:none
    assert "Leave this field empty" not in page.locator(FORM).aria_snapshot()
    assert trap.get_attribute("tabindex") == "-1"


def test_without_javascript_the_form_lands_on_the_hosted_page(site: Site, browser: Browser):
    context = browser.new_context(java_script_enabled=False, viewport=DESKTOP)
    try:
        page = context.new_page()
        page.goto(site.blog.url + "/")
        page.get_by_label("Email address").fill("ann@example.com")
        page.get_by_role("button", name="Subscribe").click()
        expect(page.get_by_role("heading", level=1)).to_have_text("Check your inbox")
        assert page.url == site.service.url + "/subscribe"
        stored = site.subscriber("ann@example.com")
        assert stored is not None and stored.status is Status.PENDING
        screenshots(page, "nojs-check-inbox")
    finally:
        context.close()


def test_a_page_with_a_very_long_address_still_signs_up(site: Site, page: Page) -> None:
    """The service refuses a source over 2,048 characters; the widget sends no more."""
    open_blog(page, site)
    long_path = "/" + "p" * 2100
    page.evaluate("path => history.pushState(null, '', path)", long_path)
    page.get_by_label("Email address").fill("ann@example.com")
    page.get_by_role("button", name="Subscribe").click()

    expect(status(page)).to_have_text(SUCCESS)
    stored = site.subscriber("ann@example.com")
    assert stored is not None
    assert stored.source == (site.blog.url + long_path)[:2048]


def test_a_name_the_service_refuses_is_said_and_marked(site: Site, page: Page) -> None:
    """A publisher's optional name field: the answer names it, not "something went wrong"."""
    # Added as the page is parsed, before widget.js looks at the form (a deferred script
    # runs after "interactive"), as a publisher's own markup would have it.
    page.add_init_script(
        """document.addEventListener("readystatechange", function () {
          if (document.readyState !== "interactive") return;
          var label = document.createElement("label");
          label.htmlFor = "nl-name";
          label.textContent = "Name";
          var input = document.createElement("input");
          input.id = "nl-name";
          input.name = "name";
          var row = document.querySelector("form[data-newsletter] .nl-row");
          row.parentNode.insertBefore(label, row);
          row.parentNode.insertBefore(input, row);
        });"""
    )
    open_blog(page, site)
    name, email = page.get_by_label("Name", exact=True), page.get_by_label("Email address")
    name.fill("N" * 201)
    email.fill("ann@example.com")
    email.press("Enter")

    expect(status(page)).to_have_text(NAME)
    expect(name).to_have_attribute("aria-invalid", "true")
    expect(name).to_have_attribute("aria-describedby", status(page).get_attribute("id") or "")
    expect(name).to_be_focused()
    expect(email).not_to_have_attribute("aria-invalid", "true")
    assert site.subscriber("ann@example.com") is None

    name.fill("Ann")
    email.press("Enter")
    expect(status(page)).to_have_text(SUCCESS)
    expect(name).not_to_have_attribute("aria-invalid", "true")
    stored = site.subscriber("ann@example.com")
    assert stored is not None and stored.name == "Ann"
