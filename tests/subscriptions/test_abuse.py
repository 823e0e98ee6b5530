"""What a stranger or a bot can and cannot learn or do through /subscribe."""

from __future__ import annotations

import pytest
import requests
from sqlalchemy import func, select

from newsletter.extensions import db, limiter
from newsletter.models import Status, Subscriber
from tests.conftest import Outbox
from tests.servers import free_port, serve
from tests.subscriptions.helpers import confirmed, find, set_status, unsubscribe_link


def _answer(response):
    return response.status_code, response.content_type, response.data


def test_the_answer_is_identical_whatever_state_the_address_is_in(make_app):
    app = make_app(RATELIMIT_ENABLED=False)
    client, outbox = app.test_client(), Outbox(app)
    confirmed(client, outbox, "confirmed@example.com")
    confirmed(client, outbox, "gone@example.com")
    gone = find(app, "gone@example.com")
    client.post(unsubscribe_link(app, gone))
    client.post("/subscribe", data={"email": "pending@example.com"})
    confirmed(client, outbox, "bounced@example.com")
    set_status(app, "bounced@example.com", Status.BOUNCED)

    addresses = [
        "new@example.com",
        "pending@example.com",
        "confirmed@example.com",
        "gone@example.com",
        "bounced@example.com",
    ]
    for kind in ("form", "json"):
        answers = set()
        for address in addresses:
            if kind == "json":
                response = client.post("/subscribe", json={"email": address})
            else:
                response = client.post("/subscribe", data={"email": address})
            answers.add(_answer(response))
        assert len(answers) == 1, kind


def test_a_honeypot_holding_only_white_space_is_empty(app, client):
    client.post("/subscribe", data={"email": "ann@example.com", "website": " \t"})
    assert find(app, "ann@example.com") is not None


def test_honeypot_gets_the_same_answer_and_stores_nothing(app, client, outbox):
    response = client.post(
        "/subscribe", json={"email": "bot@example.com", "website": "http://spam"}
    )
    assert response.status_code == 202 and response.get_json() == {"status": "pending"}
    outbox.dispatch()
    assert find(app, "bot@example.com") is None
    assert outbox.messages() == []


def test_rate_limit_answers_429_with_retry_after(make_app):
    app = make_app(RATELIMIT_SUBSCRIBE="2 per minute")
    client = app.test_client()
    for n in range(2):
        accepted = client.post("/subscribe", json={"email": f"a{n}@example.com"})
        assert accepted.status_code == 202
        # Nothing to wait for yet: only how much is left is said.
        assert "Retry-After" not in accepted.headers
        assert "X-RateLimit-Remaining" in accepted.headers
    limited = client.post("/subscribe", json={"email": "a3@example.com"})
    assert limited.status_code == 429
    assert int(limited.headers["Retry-After"]) > 0
    assert limited.get_json()["error"]["code"] == "rate_limited"
    html = client.post("/subscribe", data={"email": "a4@example.com"})
    assert html.status_code == 429 and b"Too many" in html.data
    assert find(app, "a3@example.com") is None


def test_retry_after_waits_for_the_last_limit_that_is_spent(make_app):
    app = make_app(RATELIMIT_SUBSCRIBE="2 per minute;2 per hour")
    client = app.test_client()
    for n in range(2):
        assert client.post("/subscribe", json={"email": f"a{n}@example.com"}).status_code == 202
    limited = client.post("/subscribe", json={"email": "a2@example.com"})
    assert limited.status_code == 429
    # Back after a minute, it would be refused again: the hour's two are spent too.
    assert 60 < int(limited.headers["Retry-After"]) <= 3600


@pytest.fixture
def closed_port():
    """A local port nothing listens on (a Redis that is down)."""
    yield free_port()
    limiter._storage_dead = False  # the limiter is one per process: the next app starts afresh


def test_signups_go_on_and_stay_limited_while_the_rate_limit_store_is_down(
    make_app, closed_port, caplog
):
    app = make_app(
        RATELIMIT_STORAGE_URI=f"redis://127.0.0.1:{closed_port}/1",
        RATELIMIT_SUBSCRIBE="2 per minute",
    )
    client = app.test_client()
    answers = [
        client.post("/subscribe", json={"email": f"r{n}@example.com"}).status_code for n in range(3)
    ]
    assert answers == [202, 202, 429]  # counted in memory meanwhile
    assert find(app, "r0@example.com") and find(app, "r1@example.com")
    assert "falling back to in-memory storage" in caplog.text


def test_rate_headers_describe_the_limit_with_least_left(make_app):
    """Per address 3 a minute, per network 30: the headers count down the 3."""
    app = make_app(RATELIMIT_SUBSCRIBE="3 per minute", RATELIMIT_SUBSCRIBE_NETWORK="30 per minute")
    client = app.test_client()
    seen = []
    for n in range(3):
        answer = client.post("/subscribe", json={"email": f"a{n}@example.com"})
        assert answer.status_code == 202
        seen.append((answer.headers["X-RateLimit-Limit"], answer.headers["X-RateLimit-Remaining"]))
    assert seen == [("3", "2"), ("3", "1"), ("3", "0")]
    refused = client.post("/subscribe", json={"email": "a3@example.com"})
    assert refused.status_code == 429
    assert refused.headers["X-RateLimit-Limit"] == "3"
    # Another address of the same network has its own 3, and the network far more left.
    other = client.post(
        "/subscribe", json={"email": "b@example.com"}, environ_base={"REMOTE_ADDR": "127.0.0.9"}
    )
    assert (other.headers["X-RateLimit-Limit"], other.headers["X-RateLimit-Remaining"]) == (
        "3",
        "2",
    )


def test_rate_limit_is_per_client_address(make_app):
    app = make_app(RATELIMIT_SUBSCRIBE="1 per minute")
    client = app.test_client()
    first = {"REMOTE_ADDR": "198.51.100.1"}
    second = {"REMOTE_ADDR": "198.51.100.2"}
    assert (
        client.post("/subscribe", json={"email": "a@example.com"}, environ_base=first).status_code
        == 202
    )
    assert (
        client.post("/subscribe", json={"email": "b@example.com"}, environ_base=first).status_code
        == 429
    )
    assert (
        client.post("/subscribe", json={"email": "c@example.com"}, environ_base=second).status_code
        == 202
    )


def test_rate_limits_can_be_turned_off(make_app):
    client = make_app(RATELIMIT_SUBSCRIBE="1 per minute", RATELIMIT_ENABLED=False).test_client()
    for n in range(3):
        assert client.post("/subscribe", json={"email": f"a{n}@example.com"}).status_code == 202


def test_trusted_proxy_decides_the_client_address(make_app):
    app = make_app(RATELIMIT_SUBSCRIBE="1 per minute", TRUSTED_PROXY_COUNT=1)
    client = app.test_client()

    def post(forwarded, email):
        return client.post(
            "/subscribe", json={"email": email}, headers={"X-Forwarded-For": forwarded}
        )

    assert post("203.0.113.9", "a@example.com").status_code == 202
    assert post("203.0.113.10", "b@example.com").status_code == 202
    assert post("203.0.113.9", "c@example.com").status_code == 429
    with app.app_context():
        from newsletter.extensions import db
        from newsletter.models import Subscriber

        subscriber = db.session.get(Subscriber, find(app, "a@example.com").id)
        assert subscriber.events[0].ip == "203.0.113.9"


@pytest.mark.parametrize(
    ("forwarded", "stored"),
    [
        ("203.0.113.9:5678", "203.0.113.9"),  # Azure's gateway, IIS: the client's port too
        ("[2001:db8::1]:443", "2001:db8::1"),
        ("[2001:DB8:0::1]", "2001:db8::1"),
        ("fe80::1%eth0", "fe80::1"),
        ("::ffff:203.0.113.9", "203.0.113.9"),
        (" 203.0.113.9 ", "203.0.113.9"),
        ("junk", "unknown"),
        ("", "127.0.0.1"),  # none forwarded: ProxyFix keeps the peer's (the test client's)
    ],
)
def test_a_forwarded_address_is_stored_in_one_spelling(make_app, forwarded, stored):
    app = make_app(TRUSTED_PROXY_COUNT=1)
    answer = app.test_client().post(
        "/subscribe", json={"email": "a@example.com"}, headers={"X-Forwarded-For": forwarded}
    )
    assert answer.status_code == 202
    with app.app_context():
        from newsletter.extensions import db
        from newsletter.models import Subscriber

        assert db.session.get(Subscriber, find(app, "a@example.com").id).events[0].ip == stored


@pytest.mark.parametrize(
    "spellings",
    [
        [f"203.0.113.9:{port}" for port in range(40000, 40004)],
        ["203.0.113.9", "::ffff:203.0.113.9", "[::ffff:203.0.113.9]:80", "203.0.113.9:1"],
        [f"junk{i}" for i in range(4)],
    ],
)
def test_a_client_cannot_escape_its_limit_by_spelling_its_address_anew(make_app, spellings):
    """Each spelling of one address, and every unreadable one, counts as the same client."""
    app = make_app(RATELIMIT_SUBSCRIBE="3 per minute", TRUSTED_PROXY_COUNT=1)
    client = app.test_client()
    codes = [
        client.post(
            "/subscribe", json={"email": f"r{i}@example.com"}, headers={"X-Forwarded-For": f}
        ).status_code
        for i, f in enumerate(spellings)
    ]
    assert codes == [202, 202, 202, 429]


def test_the_way_back_to_a_unicode_site_names_it_as_its_readers_do(make_app):
    app = make_app(CORS_ORIGINS=["http://xn--bckerei-5wa.example"])  # as config makes it
    page = app.test_client().post(
        "/subscribe",
        data={"email": "ann@example.com", "source": "http://xn--bckerei-5wa.example/brot"},
    )
    assert (
        '<a href="http://xn--bckerei-5wa.example/brot">Back to b\u00e4ckerei.example</a>'
        in page.get_data(as_text=True)
    )


@pytest.mark.parametrize(
    ("fields", "headers", "back"),
    [
        ({"source": "https://blog.example.org/post/1"}, {}, "https://blog.example.org/post/1"),
        ({}, {"Referer": "https://blog.example.org/about"}, "https://blog.example.org/about"),
        ({"source": "https://evil.example.net/x"}, {}, None),  # a site not listed
        ({"source": "javascript:alert(1)"}, {}, None),
        ({"source": "https://blog.example.org:x/"}, {}, None),
        ({"source": "https://blog.example.org@evil.example/"}, {}, None),  # a user name
        ({"source": "https://evil.example\\@blog.example.org/"}, {}, None),
        ({"source": "https:\\\\blog.example.org/"}, {}, None),
        ({"source": "https://blog.example.org:443/x"}, {}, None),  # not the origin listed
    ],
)
def test_the_check_your_inbox_page_links_back_to_a_listed_site(make_app, fields, headers, back):
    app = make_app(CORS_ORIGINS=["https://blog.example.org"])
    client = app.test_client()
    page = client.post(
        "/subscribe", data={"email": "ann@example.com", **fields}, headers=headers
    ).get_data(as_text=True)
    assert "Check your inbox" in page
    if back is None:
        assert "Back to" not in page
    else:
        assert f'<a href="{back}">Back to blog.example.org</a>' in page
    as_json = client.post("/subscribe", json={"email": "bob@example.com", **fields})
    assert as_json.get_json() == {"status": "pending"}


def test_cors_only_for_configured_origins(make_app):
    client = make_app(CORS_ORIGINS=["https://blog.example.org"]).test_client()
    allowed = client.options(
        "/subscribe",
        headers={
            "Origin": "https://blog.example.org",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert allowed.headers.get("Access-Control-Allow-Origin") == "https://blog.example.org"
    other = client.post(
        "/subscribe", json={"email": "a@example.com"}, headers={"Origin": "https://evil.example"}
    )
    assert "Access-Control-Allow-Origin" not in other.headers
    posted = client.post(
        "/subscribe",
        json={"email": "a@example.com"},
        headers={"Origin": "https://blog.example.org"},
    )
    # A browser shows the widget's script only the headers it is told to: a 429's wait.
    assert "Retry-After" in posted.headers.get("Access-Control-Expose-Headers", "")
    # Each answer depends on the Origin, the refusal and the page without one too: a
    # cache in front must not hand one origin's answer to another.
    page = client.get("/subscribe")
    for answer in (allowed, other, posted, page):
        assert "Origin" in answer.vary, answer.headers


def test_an_ipv6_origin_is_matched_as_written_not_as_a_pattern(make_app):
    # As a regex, "[::1]" is a character class (":" or "1"): it matches http://1:8000,
    # not itself.
    client = make_app(CORS_ORIGINS=["http://[::1]:8000"]).test_client()

    def allowed(origin: str) -> str | None:
        answer = client.post(
            "/subscribe", json={"email": "a@example.com"}, headers={"Origin": origin}
        )
        return answer.headers.get("Access-Control-Allow-Origin")

    assert allowed("http://[::1]:8000") == "http://[::1]:8000"
    assert allowed("http://1:8000") is None
    assert allowed("http://[::1]:8000.evil.example") is None


def test_no_cors_at_all_by_default(client):
    response = client.post(
        "/subscribe",
        json={"email": "a@example.com"},
        headers={"Origin": "https://blog.example.org"},
    )
    assert "Access-Control-Allow-Origin" not in response.headers


def test_a_name_is_counted_in_the_letters_a_reader_sees(app, client):
    decomposed = "e\u0301" * 150  # 150 letters é, as e and a combining accent: 300 code points
    assert (
        client.post("/subscribe", json={"email": "a@example.com", "name": decomposed}).status_code
        == 202
    )
    assert find(app, "a@example.com").name == "\u00e9" * 150


@pytest.mark.parametrize(
    ("body", "status", "code", "field"),
    [
        ({}, 422, "invalid_email", "email"),
        ({"email": ""}, 422, "invalid_email", "email"),
        ({"email": "not-an-address"}, 422, "invalid_email", "email"),
        ({"email": "a@b"}, 422, "invalid_email", "email"),
        ({"email": 42}, 422, "invalid_email", "email"),
        ({"email": ["a@example.com"]}, 422, "invalid_email", "email"),
        ({"email": "x" * 300 + "@example.com"}, 422, "invalid_email", "email"),
        ({"email": "a@example.com\r\nBcc: victim@example.com"}, 422, "invalid_email", "email"),
        ({"email": "\u00f1and\u00fa@example.com"}, 422, "invalid_email", "email"),  # SMTPUTF8
        (
            {"email": "a@example.com", "name": "Ann\r\nBcc: v@example.com"},
            422,
            "invalid_name",
            "name",
        ),
        ({"email": "a@example.com", "name": "n" * 201}, 422, "invalid_name", "name"),
        # Unicode's own line breaks: NEL, the line and the paragraph separators.
        ({"email": "a@example.com", "name": "Ann\u0085Lee"}, 422, "invalid_name", "name"),
        ({"email": "a@example.com", "name": "Ann\u2028Lee"}, 422, "invalid_name", "name"),
        (
            {"email": "a@example.com", "source": "https://a.example/\u2029x"},
            422,
            "invalid_source",
            "source",
        ),
        ({"email": "a@example.com", "name": {"first": "Ann"}}, 422, "invalid_name", "name"),
    ],
)
def test_bad_fields_get_a_clear_json_error(client, body, status, code, field):
    response = client.post("/subscribe", json=body)
    assert response.status_code == status
    error = response.get_json()["error"]
    assert error["code"] == code and error["field"] == field and error["message"]


def test_bad_field_in_a_form_shows_the_form_again_with_what_was_typed(client):
    response = client.post("/subscribe", data={"email": "nope", "name": "Ann"})
    assert response.status_code == 422
    assert b"not a valid email address" in response.data
    assert b'value="nope"' in response.data and b'value="Ann"' in response.data


@pytest.mark.parametrize(
    ("data", "content_type"),
    [
        ("{not json", "application/json"),
        ('["a@example.com"]', "application/json"),
        ('"a@example.com"', "application/json"),
        ("null", "application/json"),
        ("[" * 40_000, "application/json"),  # nested past the parser's depth
        ('{"email": "s1@example.com", "name": "\\ud800"}', "application/json"),  # half a pair
        ('{"email": "s\\udc80@example.com"}', "application/json"),
    ],
)
def test_broken_json_is_a_400(client, data, content_type):
    response = client.post("/subscribe", data=data, content_type=content_type)
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "invalid_json"


def test_a_lone_surrogate_fails_its_own_signup_only(make_app):
    # Signups share one write (group commit): text the database cannot encode used to
    # fail every signup in it with a 500.
    app = make_app(RATELIMIT_ENABLED=False)
    client = app.test_client()
    bad = client.post(
        "/subscribe",
        data='{"email": "x@example.com", "name": "\\ud800"}',
        content_type="application/json",
    )
    good = client.post("/subscribe", json={"email": "ann@example.com", "name": "Ann \U0001f600"})
    assert (bad.status_code, good.status_code) == (400, 202)
    assert find(app, "x@example.com") is None
    assert find(app, "ann@example.com").name == "Ann \U0001f600"


@pytest.mark.parametrize(
    ("accept", "json_answer"),
    [
        ("application/json, text/plain, */*", True),  # axios, fetch wrappers
        ("application/problem+json", True),
        ("*/*", False),  # fetch's default, curl's: the page, as for a form
        ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", False),  # browsers
        ("text/html, application/json", False),  # a tie goes to the page
        ("application/json; charset=utf-8", True),  # a parameter does not hide the type
        ("Application/JSON;charset=UTF-8", True),
        ("text/json", True),  # the old alias
        ("text/html, application/json; charset=utf-8;q=0.5", False),
    ],
)
def test_a_form_post_answers_json_when_accept_prefers_it(client, accept, json_answer):
    response = client.post("/subscribe", data={"email": "nope"}, headers={"Accept": accept})
    assert response.status_code == 422
    assert (response.mimetype == "application/json") is json_answer


@pytest.mark.parametrize("kind", ["text/json", "text/json; charset=utf-8", "application/ld+json"])
def test_a_json_body_under_another_json_type_is_read_as_json(app, client, kind):
    # text/json, the old alias: the address was read as missing, and the answer was a page.
    response = client.post("/subscribe", data='{"email": "ann@example.com"}', content_type=kind)
    assert (response.status_code, response.get_json()) == (202, {"status": "pending"})
    assert find(app, "ann@example.com").status is Status.PENDING


def test_huge_body_is_a_413(client):
    response = client.post("/subscribe", json={"email": "a@example.com", "name": "x" * 200_000})
    assert response.status_code == 413
    assert response.get_json()["error"]["code"] == "payload_too_large"


def test_multipart_signup_works(app, client):
    response = client.post(
        "/subscribe", data={"email": "m@example.com"}, content_type="multipart/form-data"
    )
    assert response.status_code == 200
    assert find(app, "m@example.com").status is Status.PENDING


def test_unicode_domain_and_case_make_one_subscriber(app, client):
    client.post("/subscribe", json={"email": "Ann@Bücher.Example"})
    client.post("/subscribe", json={"email": "ann@xn--bcher-kva.example"})
    subscriber = find(app, "ann@bücher.example")
    assert subscriber is not None
    with app.app_context():
        from sqlalchemy import func, select

        from newsletter.extensions import db
        from newsletter.models import Subscriber

        assert db.session.scalar(select(func.count()).select_from(Subscriber)) == 1


def test_signup_keeps_proof_of_consent(app, client):
    client.post(
        "/subscribe",
        data={"email": "ann@example.com", "source": "https://blog.example.org/post"},
        headers={"User-Agent": "TestBrowser/1.0"},
        environ_base={"REMOTE_ADDR": "192.0.2.7"},
    )
    with app.app_context():
        from newsletter.extensions import db
        from newsletter.models import Subscriber

        event = db.session.get(Subscriber, find(app, "ann@example.com").id).events[0]
        assert event.ip == "192.0.2.7"
        assert event.user_agent == "TestBrowser/1.0"
        assert event.source == "https://blog.example.org/post"
        assert event.wording == app.config["CONSENT_WORDING"]


def test_a_long_source_is_cut_not_a_signup_refused(app, client):
    # A page whose address carries a long query string (tracking tags): the widget and
    # the hosted form send it as it is, and the visitor cannot shorten it.
    page = "https://blog.example.org/post?utm=" + "q" * 3000
    response = client.post("/subscribe", data={"email": "ann@example.com", "source": page})
    assert response.status_code == 200 and b"Check your inbox" in response.data
    with app.app_context():
        from newsletter.extensions import db
        from newsletter.models import Subscriber

        event = db.session.get(Subscriber, find(app, "ann@example.com").id).events[0]
        assert event.source == page[:2048]


def test_consent_headers_keep_text_only(app, client):
    """A NUL or control byte in a header is dropped (PostgreSQL refused the NUL: a 500 for
    the signup and every signup written with it); UTF-8 sent raw is read as UTF-8."""
    as_wsgi_gives_it = "https://blog.exämple.org/ö".encode().decode("latin-1")
    response = client.post(
        "/subscribe",
        json={"email": "ann@example.com"},
        environ_base={
            "HTTP_USER_AGENT": "Bad\x00Agent\x01/1.0\t",
            "HTTP_REFERER": as_wsgi_gives_it,
        },
    )
    assert response.status_code == 202
    with app.app_context():
        from newsletter.extensions import db
        from newsletter.models import Subscriber

        event = db.session.get(Subscriber, find(app, "ann@example.com").id).events[0]
        assert event.user_agent == "BadAgent/1.0"
        assert event.source == "https://blog.exämple.org/ö"


def _post_from(client, address: str, email: str) -> int:
    return client.post(
        "/subscribe", json={"email": email}, environ_base={"REMOTE_ADDR": address}
    ).status_code


@pytest.mark.parametrize(
    ("same_network", "other_network"),
    [
        (
            ["198.51.100.1", "198.51.100.77", "198.51.100.254", "::ffff:198.51.100.9"],
            "198.51.101.1",
        ),
        (
            ["2001:db8:1:2::1", "2001:db8:1:2::ff", "2001:db8:1:2:a::1", "2001:db8:1:2::9"],
            "2001:db8:1:3::1",
        ),
    ],
)
def test_network_limit_holds_a_bot_rotating_addresses_in_one_network(
    make_app, same_network, other_network
):
    app = make_app(RATELIMIT_SUBSCRIBE="10 per minute", RATELIMIT_SUBSCRIBE_NETWORK="3 per minute")
    client = app.test_client()
    answers = [_post_from(client, a, f"bomb{n}@example.com") for n, a in enumerate(same_network)]
    assert answers == [202, 202, 202, 429]  # each address is under its own limit
    assert find(app, "bomb3@example.com") is None
    assert _post_from(client, other_network, "other@example.com") == 202


def test_per_address_limit_still_holds_inside_a_quiet_network(make_app):
    app = make_app(RATELIMIT_SUBSCRIBE="2 per minute", RATELIMIT_SUBSCRIBE_NETWORK="100 per minute")
    client = app.test_client()
    answers = [_post_from(client, "192.0.2.5", f"a{n}@example.com") for n in range(3)]
    assert answers == [202, 202, 429]
    assert _post_from(client, "192.0.2.6", "b@example.com") == 202


def test_network_limit_can_be_turned_off_alone(make_app):
    app = make_app(RATELIMIT_SUBSCRIBE="10 per minute", RATELIMIT_SUBSCRIBE_NETWORK="")
    client = app.test_client()
    answers = [_post_from(client, f"203.0.113.{n}", f"c{n}@example.com") for n in range(1, 8)]
    assert answers == [202] * 7


def test_bombing_a_victim_from_many_networks_mails_them_once(make_app):
    """The per-address throttle holds whatever the rate limits let through."""
    app = make_app(CONFIRM_RESEND_INTERVAL=300, CONFIRM_MAX_PER_DAY=5)
    client, outbox = app.test_client(), Outbox(app)
    for n in range(40):
        assert _post_from(client, f"10.{n}.0.1", "victim@example.com") == 202
    outbox.dispatch()
    assert len(outbox.messages("victim@example.com")) == 1


def test_a_script_on_an_unlisted_origin_is_logged_once_for_the_operator(make_app, caplog):
    # Its browser hides our answer from it (no CORS header): the widget says "something
    # went wrong" while the confirmation goes out. The log says why, once per origin.
    from newsletter.subscriptions import routes

    routes._WARNED_ORIGINS.clear()
    client = make_app(CORS_ORIGINS=["https://blog.example.org"], RATELIMIT_ENABLED=False)
    client = client.test_client()
    script = {"Origin": "https://other.example", "Accept": "application/json"}
    for n in range(2):
        client.post("/subscribe", data={"email": f"a{n}@example.com"}, headers=script)
    client.post(  # the listed origin, and a plain form from anywhere: nothing to say
        "/subscribe",
        data={"email": "b@example.com"},
        headers={**script, "Origin": "https://blog.example.org"},
    )
    client.post(
        "/subscribe", data={"email": "c@example.com"}, headers={"Origin": "https://x.example"}
    )
    warnings = [r.getMessage() for r in caplog.records if "CORS_ORIGINS" in r.getMessage()]
    assert len(warnings) == 1 and "https://other.example" in warnings[0]


def test_a_form_sent_again_after_a_mistake_keeps_the_page_it_came_from(app, client):
    # Without JavaScript, a mistyped address shows our page; it sends no referrer, so the
    # blog page the reader started on must travel in the form to the proof of consent.
    blog = "https://www.example-clinic.org/2020/10/hip-extension/"
    retry = client.post("/subscribe", data={"email": "ann@"}, headers={"Referer": blog})
    assert retry.status_code == 422 and f'value="{blog}"'.encode() in retry.data
    client.post("/subscribe", data={"email": "ann@example.com", "source": blog})
    with app.app_context():
        from newsletter.extensions import db
        from newsletter.models import Subscriber

        subscriber = db.session.get(Subscriber, find(app, "ann@example.com").id)
        assert subscriber.events[0].source == blog


def _chunked(parts: list[bytes]):
    """A body requests sends chunked: a generator has no length."""
    yield from parts


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        (
            "application/x-www-form-urlencoded",
            b"other=" + b"x" * 70_000 + b"&email=tail@example.com",
        ),
        ("application/x-www-form-urlencoded", b"email=head@example.com&other=" + b"x" * 70_000),
        ("application/json", b'{"email": "json@example.com", "name": "' + b"x" * 70_000 + b'"}'),
    ],
)
def test_a_chunked_body_over_the_limit_is_a_413_not_read_cut_short(app, content_type, body):
    # Without a Content-Length the size shows only as the body is read; a real server
    # (werkzeug's, as gunicorn does) hands the app a terminated stream.
    with serve(app) as base:
        answer = requests.post(
            f"{base}/subscribe",
            data=_chunked([body[i : i + 8192] for i in range(0, len(body), 8192)]),
            headers={"Content-Type": content_type, "Accept": "application/json"},
            timeout=10,
        )
    assert answer.status_code == 413, answer.text
    assert answer.json()["error"]["code"] == "payload_too_large"
    for address in ("tail@example.com", "head@example.com", "json@example.com"):
        assert find(app, address) is None


def test_a_chunked_body_under_the_limit_is_read_whole(app):
    body = b"name=" + b"A" * 60 + b"&email=chunked@example.com"
    with serve(app) as base:
        answer = requests.post(
            f"{base}/subscribe",
            data=_chunked([body[:20], body[20:]]),
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "Accept": "application/json",
            },
            timeout=10,
        )
    assert answer.status_code == 202, answer.text
    assert find(app, "chunked@example.com").status is Status.PENDING


def test_a_form_holding_a_byte_that_is_not_utf8_is_named_as_such_not_as_a_missing_address(
    app, client
):
    answer = client.post(
        "/subscribe",
        data=b"email=l2@example.com&name=Jos\xe9",
        content_type="application/x-www-form-urlencoded",
        headers={"Accept": "application/json"},
    )
    assert answer.status_code == 400
    assert answer.get_json()["error"]["code"] == "invalid_form"
    assert find(app, "l2@example.com") is None
    # Percent-encoded, as browsers send it, the same name is fine.
    good = client.post(
        "/subscribe",
        data=b"email=l3@example.com&name=Jos%C3%A9",
        content_type="application/x-www-form-urlencoded",
        headers={"Accept": "application/json"},
    )
    assert good.status_code == 202 and find(app, "l3@example.com").name == "Jos\u00e9"


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        # A Latin-1 page's form, percent-encoded as browsers send it: josé@ stayed jos%e9@.
        (b"email=jos%E9@example.com", "application/x-www-form-urlencoded"),
        (b"email=l4@example.com&name=Zo%EB", "application/x-www-form-urlencoded"),
        (
            b"--b\r\nContent-Disposition: form-data; name=email\r\n\r\nl5@example.com\r\n"
            b"--b\r\nContent-Disposition: form-data; name=name\r\n\r\nZo\xeb\r\n--b--\r\n",
            "multipart/form-data; boundary=b",
        ),
    ],
    ids=["percent-encoded-address", "percent-encoded-name", "multipart-no-charset"],
)
def test_a_form_whose_bytes_are_not_utf8_stores_nothing(app, client, body, content_type):
    answer = client.post(
        "/subscribe", data=body, content_type=content_type, headers={"Accept": "application/json"}
    )
    assert answer.status_code == 400, answer.text
    error = answer.get_json()["error"]
    assert error["code"] == "invalid_form" and "accept-charset" in error["message"]
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Subscriber)) == 0


def test_a_multipart_field_that_names_its_charset_is_read_in_it(app, client):
    body = (
        b"--b\r\nContent-Disposition: form-data; name=email\r\n\r\nl6@example.com\r\n"
        b"--b\r\nContent-Disposition: form-data; name=name\r\n"
        b"Content-Type: text/plain; charset=iso-8859-1\r\n\r\nZo\xeb\r\n--b--\r\n"
    )
    answer = client.post(
        "/subscribe",
        data=body,
        content_type="multipart/form-data; boundary=b",
        headers={"Accept": "application/json"},
    )
    assert answer.status_code == 202, answer.text
    assert find(app, "l6@example.com").name == "Zo\u00eb"


def test_every_signup_is_one_transaction_whatever_its_address_state(app, client, outbox):
    """The same path for every state: known addresses took a second, ORM transaction.

    A signup that mailed a known address (one that had left, or a pending one
    due a new link) then took about 3.5 ms longer than a new one: one request
    told a stranger the address had been on the list.
    """
    import threading

    from sqlalchemy import event

    for email, status in [
        ("left@example.com", Status.UNSUBSCRIBED),
        ("in@example.com", Status.CONFIRMED),
        ("stopped@example.com", Status.BOUNCED),
        ("waits@example.com", Status.PENDING),
    ]:
        client.post("/subscribe", data={"email": email})
        set_status(app, email, status)
    outbox.dispatch()
    requests_thread = threading.get_ident()
    commits: list[int] = []

    def count(connection) -> None:
        if threading.get_ident() == requests_thread:  # not the dispatcher's thread
            commits.append(1)

    with app.app_context():
        engine = db.engine
    event.listen(engine, "commit", count)
    try:
        per_state = {}
        for email in ("new@example.com", "left@example.com", "in@example.com",
                      "stopped@example.com", "waits@example.com"):  # fmt: skip
            commits.clear()
            answer = client.post("/subscribe", json={"email": email})
            assert answer.status_code == 202
            per_state[email] = len(commits)
    finally:
        event.remove(engine, "commit", count)
    assert set(per_state.values()) == {1}, per_state
    assert find(app, "left@example.com").status is Status.PENDING  # and it did its work
