"""The optional CAPTCHA on POST /subscribe, against a local fake siteverify on 127.0.0.1."""

from __future__ import annotations

from fnmatch import fnmatch
from pathlib import Path

import pytest

from config import ConfigError
from newsletter.models import Status
from newsletter.subscriptions.captcha import PROVIDERS
from tests.conftest import Outbox, path_of
from tests.servers import free_port, serve
from tests.subscriptions.captcha_fake import SECRET, SITE_KEY, FakeSiteverify
from tests.subscriptions.helpers import find, set_status

FIELDS = {"turnstile": "cf-turnstile-response", "hcaptcha": "h-captcha-response"}


@pytest.fixture
def siteverify():
    """The fake verifier on a free port: (fake, its URL)."""
    fake = FakeSiteverify()
    with serve(fake) as base:
        yield fake, f"{base}/siteverify"


def _app(make_app, url: str, provider: str = "turnstile", **overrides):
    settings = {
        "CAPTCHA_PROVIDER": provider,
        "CAPTCHA_SECRET": SECRET,
        "CAPTCHA_SITE_KEY": SITE_KEY,
        "CAPTCHA_VERIFY_URL": url,
        "RATELIMIT_ENABLED": False,
    }
    return make_app(**{**settings, **overrides})


def test_disabled_by_default_and_no_call_is_made(make_app, siteverify):
    fake, url = siteverify
    app = make_app(CAPTCHA_VERIFY_URL=url)  # a URL alone turns nothing on
    client = app.test_client()
    assert client.post("/subscribe", json={"email": "ann@example.com"}).status_code == 202
    assert client.post("/subscribe", data={"email": "bob@example.com"}).status_code == 200
    assert fake.calls == []
    assert find(app, "ann@example.com") is not None
    page = client.get("/subscribe")
    assert b"<script" not in page.data
    assert "script-src" not in page.headers["Content-Security-Policy"]


@pytest.mark.parametrize("provider", ["turnstile", "hcaptcha"])
def test_a_good_token_signs_up_in_json_and_form(make_app, siteverify, provider):
    fake, url = siteverify
    fake.good = {"json-token", "form-token"}
    app = _app(make_app, url, provider)
    client = app.test_client()
    field = FIELDS[provider]
    body = {"email": "ann@example.com", field: "json-token"}
    response = client.post("/subscribe", json=body, environ_base={"REMOTE_ADDR": "198.51.100.7"})
    assert response.status_code == 202 and response.get_json() == {"status": "pending"}
    form = client.post("/subscribe", data={"email": "bob@example.com", field: "form-token"})
    assert form.status_code == 200 and b"Check your inbox" in form.data
    assert find(app, "ann@example.com") is not None and find(app, "bob@example.com") is not None
    first = fake.calls[0]
    assert first["secret"] == SECRET and first["response"] == "json-token"
    assert first["remoteip"] == "198.51.100.7"
    assert (first.get("sitekey") == SITE_KEY) is (provider == "hcaptcha")


@pytest.mark.parametrize("provider", ["turnstile", "hcaptcha"])
def test_a_refused_token_is_422_and_stores_nothing(make_app, siteverify, provider):
    fake, url = siteverify
    app = _app(make_app, url, provider)
    client, outbox = app.test_client(), Outbox(app)
    response = client.post(
        "/subscribe", json={"email": "bot@example.com", FIELDS[provider]: "forged"}
    )
    assert response.status_code == 422
    assert response.get_json()["error"]["code"] == "captcha_failed"
    assert response.get_json()["error"]["field"] == FIELDS[provider]
    assert len(fake.calls) == 1
    outbox.dispatch()
    assert find(app, "bot@example.com") is None and outbox.messages() == []


def test_a_token_is_good_once(make_app, siteverify):
    fake, url = siteverify
    client = _app(make_app, url).test_client()
    body = {"email": "ann@example.com", "cf-turnstile-response": "good-token"}
    assert client.post("/subscribe", json=body).status_code == 202
    again = client.post("/subscribe", json={**body, "email": "bob@example.com"})
    assert again.status_code == 422 and again.get_json()["error"]["code"] == "captcha_failed"
    assert [call["response"] for call in fake.calls] == ["good-token", "good-token"]


@pytest.mark.parametrize("provider", ["turnstile", "hcaptcha"])
def test_missing_or_misnamed_token_is_422_without_asking_the_verifier(
    make_app, siteverify, provider
):
    fake, url = siteverify
    app = _app(make_app, url, provider)
    client = app.test_client()
    other = FIELDS["hcaptcha" if provider == "turnstile" else "turnstile"]
    for body in (
        {"email": "ann@example.com"},
        {"email": "ann@example.com", FIELDS[provider]: ""},
        {"email": "ann@example.com", other: "good-token"},  # the other provider's field
    ):
        response = client.post("/subscribe", json=body)
        assert response.status_code == 422, body
        assert response.get_json()["error"] == {
            "code": "captcha_failed",
            "message": response.get_json()["error"]["message"],
            "field": FIELDS[provider],
        }
    wrong_type = client.post("/subscribe", json={"email": "a@example.com", FIELDS[provider]: 7})
    assert wrong_type.status_code == 422
    assert fake.calls == []
    assert find(app, "ann@example.com") is None


def test_a_bad_address_is_reported_before_the_token_is_spent(make_app, siteverify):
    fake, url = siteverify
    client = _app(make_app, url).test_client()
    body = {"email": "not an address", "cf-turnstile-response": "good-token"}
    response = client.post("/subscribe", json=body)
    assert response.get_json()["error"]["code"] == "invalid_email"
    assert fake.calls == []  # the single-use token is still good for the corrected address


def test_verifier_down_is_503_and_stores_nothing(make_app):
    url = f"http://127.0.0.1:{free_port()}/siteverify"  # nothing listens there
    app = _app(make_app, url)
    client = app.test_client()
    body = {"email": "ann@example.com", "cf-turnstile-response": "good-token"}
    response = client.post("/subscribe", json=body)
    assert response.status_code == 503
    assert response.get_json()["error"]["code"] == "captcha_unavailable"
    assert int(response.headers["Retry-After"]) >= 60  # "in a few minutes", as it says
    assert find(app, "ann@example.com") is None


def test_slow_or_failing_verifier_is_503(make_app, siteverify):
    fake, url = siteverify
    app = _app(make_app, url, CAPTCHA_TIMEOUT=0.3)
    client = app.test_client()
    body = {"email": "ann@example.com", "cf-turnstile-response": "good-token"}
    fake.delay = 1.0
    slow = client.post("/subscribe", json=body)
    assert slow.status_code == 503 and slow.get_json()["error"]["code"] == "captcha_unavailable"
    fake.delay, fake.status = 0.0, 502
    failing = client.post("/subscribe", json=body)
    assert failing.status_code == 503
    assert find(app, "ann@example.com") is None


def test_our_secret_refused_is_503_not_the_visitors_fault(make_app, siteverify):
    fake, url = siteverify
    app = _app(make_app, url, CAPTCHA_SECRET="a-wrong-secret")
    body = {"email": "ann@example.com", "cf-turnstile-response": "good-token"}
    response = app.test_client().post("/subscribe", json=body)
    assert response.status_code == 503
    assert response.get_json()["error"]["code"] == "captcha_unavailable"
    assert fake.calls[0]["secret"] == "a-wrong-secret"


def test_html_form_gets_the_page_again_with_the_message(make_app, siteverify):
    fake, url = siteverify
    client = _app(make_app, url).test_client()
    response = client.post("/subscribe", data={"email": "ann@example.com", "name": "Ann"})
    assert response.status_code == 422
    assert b"not a robot" in response.data and b'value="ann@example.com"' in response.data
    assert b'class="cf-turnstile"' in response.data
    # The page's own policy, kept: not replaced, and not sent beside ours.
    [policy] = response.headers.getlist("Content-Security-Policy")
    assert "https://challenges.cloudflare.com" in policy
    assert fake.calls == []  # no token, nothing to ask


def test_honeypot_and_the_same_answer_rule_still_hold(make_app, siteverify):
    fake, url = siteverify
    fake.good = {f"t{n}" for n in range(20)}
    app = _app(make_app, url)
    client, outbox = app.test_client(), Outbox(app)
    tokens = iter(sorted(fake.good))

    def post(email: str, **extra: str):
        body = {"email": email, "cf-turnstile-response": next(tokens), **extra}
        return client.post("/subscribe", json=body)

    bot = post("bot@example.com", website="http://spam")
    assert bot.status_code == 202 and find(app, "bot@example.com") is None

    assert post("pending@example.com").status_code == 202
    for email in ("confirmed@example.com", "bounced@example.com"):
        body = {"email": email, "cf-turnstile-response": next(tokens)}
        assert client.post("/subscribe", data=body).status_code == 200
        outbox.dispatch()
        assert client.post(path_of(outbox.confirm_link(email))).status_code == 200
    set_status(app, "bounced@example.com", Status.BOUNCED)
    answers = {
        (r.status_code, r.data)
        for r in (
            post(e)
            for e in (
                "new@example.com",
                "pending@example.com",
                "confirmed@example.com",
                "bounced@example.com",
            )
        )
    }
    assert len(answers) == 1 and answers.pop()[0] == 202


DOCUMENTED_ORIGINS = {  # README, "CAPTCHA (optional)"
    "turnstile": ("https://challenges.cloudflare.com",),
    "hcaptcha": ("https://hcaptcha.com", "https://*.hcaptcha.com"),
}
DOCUMENTED_SCRIPTS = {  # the same section: the script a publisher adds
    "turnstile": "https://challenges.cloudflare.com/turnstile/v0/api.js",
    "hcaptcha": "https://js.hcaptcha.com/1/api.js",
}


@pytest.mark.parametrize("provider", ["turnstile", "hcaptcha"])
def test_signup_page_embeds_the_widget_and_lets_only_its_origins_in(make_app, siteverify, provider):
    fake, url = siteverify
    client = _app(make_app, url, provider).test_client()
    page = client.get("/subscribe")
    spec = PROVIDERS[provider]
    assert f'<script src="{spec.script_url}" async defer></script>'.encode() in page.data
    assert spec.script_url == DOCUMENTED_SCRIPTS[provider]  # the page loads what the README says
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    for documented in (DOCUMENTED_SCRIPTS[provider], *DOCUMENTED_ORIGINS[provider]):
        assert documented in readme, documented  # ...and these are the README's own words
    assert f'class="{spec.widget_class}" data-sitekey="{SITE_KEY}"'.encode() in page.data
    policy = dict(
        part.strip().split(" ", 1) for part in page.headers["Content-Security-Policy"].split(";")
    )
    assert policy["default-src"] == "'none'"
    assert policy["frame-ancestors"] == "'none'" and policy["form-action"] == "'self'"
    for directive, origins in spec.csp.items():
        assert set(origins) <= set(policy[directive].split()), directive
    # ...and the origins the README tells a site to allow, written out, not read
    # back from the table the app itself uses.
    for directive in ("script-src", "frame-src"):
        assert set(DOCUMENTED_ORIGINS[provider]) <= set(policy[directive].split()), directive
    script_origin = "/".join(spec.script_url.split("/")[:3])
    assert any(fnmatch(script_origin, source) for source in policy["script-src"].split())
    assert "'unsafe-inline'" not in page.headers["Content-Security-Policy"]
    # Every other page keeps the policy with no script at all.
    for path in ("/confirm/not-a-token", "/no-such-page"):
        other = client.get(path).headers["Content-Security-Policy"]
        assert "script-src" not in other and "frame-src" not in other, path
    assert fake.calls == []


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"CAPTCHA_PROVIDER": "recaptcha"}, "CAPTCHA_PROVIDER must be one of"),
        ({"CAPTCHA_PROVIDER": "turnstile", "CAPTCHA_SITE_KEY": "k"}, "CAPTCHA_SECRET"),
        ({"CAPTCHA_PROVIDER": "hcaptcha", "CAPTCHA_SECRET": "s"}, "CAPTCHA_SITE_KEY"),
    ],
)
def test_settings_that_cannot_work_stop_start_up(make_app, settings, message):
    with pytest.raises(ConfigError, match=message):
        make_app(**settings)


def test_the_signup_description_names_the_token_field_as_required(make_app, siteverify):
    _fake, url = siteverify
    client = _app(make_app, url).test_client()
    described = client.get("/subscribe", headers={"Accept": "application/json"}).get_json()
    assert described["captcha"] is True
    assert described["required"] == ["email", "cf-turnstile-response"]
