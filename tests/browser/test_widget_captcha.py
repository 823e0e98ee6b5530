"""The signup box when the service requires a CAPTCHA token (fake siteverify on 127.0.0.1).

No provider script can load here, so the test plays the provider's widget:
it adds the hidden token field the widget would fill in and a ``turnstile``
object whose ``reset()`` is counted (Playwright's evaluate is not bound by the
blog's CSP; the snippet itself stays untouched).
"""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.servers import serve
from tests.subscriptions.captcha_fake import SECRET, SITE_KEY, FakeSiteverify

from .test_widget import FORM, SUCCESS, open_blog, status
from .watch import Watch

pytestmark = pytest.mark.slow

CAPTCHA = "Please complete the check that you are not a robot, then try again."

PLAY_THE_WIDGET = """token => {
  const form = document.querySelector("form[data-newsletter]");
  let field = form.querySelector("input[name=cf-turnstile-response]");
  if (!field) {
    field = document.createElement("input");
    field.type = "hidden";
    field.name = "cf-turnstile-response";
    form.appendChild(field);
  }
  field.value = token;
  window.resets = window.resets || 0;
  window.turnstile = { reset: () => { window.resets += 1; } };
}"""


def test_the_box_asks_for_the_check_then_signs_up_and_resets_the_widget(
    make_site, page: Page, watch: Watch
):
    fake = FakeSiteverify(good={"fresh-token"})
    with serve(fake) as verifier:
        site = make_site(
            CAPTCHA_PROVIDER="turnstile",
            CAPTCHA_SECRET=SECRET,
            CAPTCHA_SITE_KEY=SITE_KEY,
            CAPTCHA_VERIFY_URL=f"{verifier}/siteverify",
        )
        open_blog(page, site)
        page.get_by_label("Email address").fill("ann@example.com")
        page.get_by_role("button", name="Subscribe").click()
        expect(status(page)).to_have_text(CAPTCHA)  # no token at all: 422 captcha_failed
        expect(page.locator(FORM)).to_have_attribute("data-state", "captcha")
        assert page.get_by_label("Email address").input_value() == "ann@example.com"
        assert site.subscriber("ann@example.com") is None

        page.evaluate(PLAY_THE_WIDGET, "fresh-token")
        page.get_by_role("button", name="Subscribe").click()
        expect(status(page)).to_have_text(SUCCESS)
        assert page.evaluate("window.resets") == 1  # the spent token is replaced
        assert [call["response"] for call in fake.calls] == ["fresh-token"]
        assert site.subscriber("ann@example.com") is not None
        assert watch.csp_violations() == []
