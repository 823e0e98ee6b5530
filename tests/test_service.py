"""Start-up, health, the OpenAPI document, and errors that never leak a traceback."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from openapi_spec_validator import validate
from sqlalchemy.engine import make_url

import newsletter
from config import (
    ConfigError,
    database_url,
    digest_processes,
    dispatcher_process_count,
    from_env,
    on_postgresql,
    running_dispatcher_processes,
    split_bind,
)
from newsletter import create_app
from newsletter.delivery.dispatch_process import sending_threads

ROOT = Path(__file__).resolve().parents[1]


def test_missing_secret_key_stops_start_up_with_one_clear_line(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "FLASK_DEBUG")}
    env["DATABASE_URL"] = f"sqlite:///{tmp_path / 'x.db'}"
    result = subprocess.run(
        [sys.executable, "-c", "import wsgi"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "SECRET_KEY is not set" in lines[0]
    assert "Traceback" not in result.stderr


def test_debug_runs_without_a_secret_key(tmp_path):
    app = create_app({"DEBUG": True, "SECRET_KEY": "", "OUTBOX_DIR": str(tmp_path)})
    assert app.config["SECRET_KEY"]


def test_unknown_provider_stops_start_up():
    with pytest.raises(ConfigError, match="EMAIL_PROVIDER"):
        create_app({"TESTING": True, "EMAIL_PROVIDER": "carrier-pigeon"})


@pytest.mark.parametrize(
    ("name", "sender"),
    [
        (None, "Newsletter <newsletter@localhost>"),  # the contract's default
        ("Example Clinic", "Example Clinic <newsletter@localhost>"),
        ("B\u00e4ckerei, K\u00f6ln", '"B\u00e4ckerei, K\u00f6ln" <newsletter@localhost>'),
    ],
)
def test_the_default_sender_goes_by_the_newsletter_name(name, sender):
    assert from_env({} if name is None else {"NEWSLETTER_NAME": name})["MAIL_FROM"] == sender


def test_a_sender_at_localhost_is_warned_about_with_a_real_provider(make_app, caplog):
    local = "Newsletter <newsletter@localhost>"
    with caplog.at_level("WARNING", logger="newsletter"):
        make_app(MAIL_FROM=local, EMAIL_PROVIDER="outbox")
        make_app(EMAIL_PROVIDER="postmark", POSTMARK_SERVER_TOKEN="t")  # a real domain
    assert "MAIL_FROM" not in caplog.text
    with caplog.at_level("WARNING", logger="newsletter"):
        make_app(MAIL_FROM=local, EMAIL_PROVIDER="postmark", POSTMARK_SERVER_TOKEN="t")
    assert "MAIL_FROM is newsletter@localhost" in caplog.text


def test_cors_origins_are_taken_as_a_browser_sends_them():
    given = {"CORS_ORIGINS": "HTTPS://Blog.Example.org, http://localhost:3000/"}
    assert from_env(given)["CORS_ORIGINS"] == ["https://blog.example.org", "http://localhost:3000"]
    # Chromium's Origin for a page on a Unicode host, and never a default port.
    given = {
        "CORS_ORIGINS": "http://b\u00e4ckerei.example:8080, https://www.example.org:443, "
        "http://[::1]:80, http://[2001:DB8::1]:8000"
    }
    assert from_env(given)["CORS_ORIGINS"] == [
        "http://xn--bckerei-5wa.example:8080",
        "https://www.example.org",
        "http://[::1]",
        "http://[2001:db8::1]:8000",
    ]


def test_a_public_url_with_a_unicode_host_is_kept_in_idna_form():
    # Every link and List-Unsubscribe header is built on it: mail clients read ASCII only.
    url = from_env({"PUBLIC_URL": "https://news.bäckerei.example/nl/"})["PUBLIC_URL"]
    assert url == "https://news.xn--bckerei-5wa.example/nl"
    # IDNA 2008, as browsers map it: IDNA 2003 would make this fass.example, another domain.
    assert from_env({"PUBLIC_URL": "https://faß.example"})["PUBLIC_URL"] == (
        "https://xn--fa-hia.example"
    )
    assert from_env({"PUBLIC_URL": "http://localhost:5000/"})["PUBLIC_URL"] == (
        "http://localhost:5000"
    )


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:5254/x>, <mailto:evil@evil.example>\r\nBcc: e@evil.example\r\n\r\n<",
        "javascript:alert(1)",
        "not a url",
        "https://news.example.org/?ref=mail",
        "https://news.example.org/#top",
        "https://user@news.example.org",
        'https://news.example.org/"x',
        "ftp://news.example.org",
        "https://news.example.org:port",
    ],
)
def test_a_public_url_that_would_break_every_link_stops_start_up(url):
    with pytest.raises(ConfigError, match="PUBLIC_URL"):
        from_env({"PUBLIC_URL": url})


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"RATELIMIT_ENABLED": "maybe"}, "true or false"),
        ({"CONFIRM_MAX_AGE": "week"}, "number"),
        ({"WORKER_METRICS_BIND": "9808"}, "host:port"),
        ({"WORKER_METRICS_BIND": "0.0.0.0:http"}, "host:port"),
        ({"DISPATCH_PROCESSES": "0"}, "at least 1"),
        ({"DISPATCH_PROCESSES": "two"}, "number"),
        ({"IMPORT_CONNECTIONS": "0"}, "at least 1"),
        ({"DISPATCH_THREADS": "0"}, "at least 1"),
        ({"DISPATCH_DIGEST_PROCESSES": "-1"}, "negative"),
        ({"DISPATCH_DIGEST_PROCESSES": "one"}, "number"),
        ({"SEND_RATE": "nan"}, "finite"),  # Python's float() takes it
        ({"DISPATCH_INTERVAL": "inf"}, "finite"),
        ({"PENDING_RETENTION_DAYS": "1e9"}, "at most 36500"),  # past the calendar
        ({"PUBLIC_URL": "https://xn--\u00e9.example"}, "not a valid URL"),
        ({"CORS_ORIGINS": "https://blog.example.org/news"}, "no path"),  # never matches
        ({"CORS_ORIGINS": "blog.example.org"}, "no path"),
        ({"CORS_ORIGINS": "https://user@blog.example.org"}, "no path"),
        ({"PUBLIC_URL": "https://n\u00e9ws.example:port"}, "not a valid URL"),
        # Taken at start, these had every signup answer 500, or turned the limit off.
        ({"RATELIMIT_NETWORK_V4": "99"}, "at most 32"),
        ({"RATELIMIT_NETWORK_V6": "129"}, "at most 128"),
        ({"RATELIMIT_SUBSCRIBE": "garbage"}, "rate limits such as"),
        ({"RATELIMIT_SUBSCRIBE_NETWORK": "10 per fortnight"}, "rate limits such as"),
    ],
)
def test_malformed_settings_are_refused(env, message):
    with pytest.raises(ConfigError, match=message):
        from_env(env)


def test_settings_follow_the_contract_defaults():
    config = from_env({})
    assert config["PUBLIC_URL"] == "http://localhost:5000"
    assert config["EMAIL_PROVIDER"] == "outbox"
    assert config["CONFIRM_MAX_AGE"] == 604800
    assert config["RATELIMIT_ENABLED"] is True
    assert config["RATELIMIT_STORAGE_URI"] == "memory://"
    assert config["ADMIN_TOKENS"] == []
    assert config["DISPATCH_PROCESSES"] == 1
    # Unset, these follow the database the app is on (its dialect, whatever the URL's spelling).
    assert config["IMPORT_CONNECTIONS"] is None and config["DISPATCH_THREADS"] is None
    assert from_env({"IMPORT_CONNECTIONS": "3"})["IMPORT_CONNECTIONS"] == 3
    assert config["DISPATCH_DIGEST_PROCESSES"] is None
    # SQLite: one process, one thread (one writer at a time).
    assert dispatcher_process_count(config, postgresql=False) == 1
    assert sending_threads(config, postgresql=False) == 1
    # PostgreSQL: a second process for digests, so one thread each.
    assert digest_processes(config, postgresql=True) == 1
    assert dispatcher_process_count(config, postgresql=True) == 2
    assert sending_threads(config, postgresql=True) == 1
    # Without it, the one process sends from two threads.
    alone = from_env({"DISPATCH_DIGEST_PROCESSES": "0"})
    assert dispatcher_process_count(alone, postgresql=True) == 1
    assert sending_threads(alone, postgresql=True) == 2
    # Two full processes already send a digest from two CPUs: no digest process.
    two = from_env({"DISPATCH_PROCESSES": "2"})
    assert dispatcher_process_count(two, postgresql=True) == 2
    assert sending_threads(two, postgresql=True) == 1
    # SEND_RATE holds each process: a second one, unasked, would double the rate.
    capped = from_env({"SEND_RATE": "50"})
    assert dispatcher_process_count(capped, postgresql=True) == 1
    assert sending_threads(capped, postgresql=True) == 2  # sending alone: two threads
    # Values given are taken as given, on either database.
    given = from_env({"DISPATCH_DIGEST_PROCESSES": "2", "DISPATCH_THREADS": "3"})
    assert dispatcher_process_count(given, postgresql=False) == 3
    assert sending_threads(given, postgresql=False) == 3
    # Under gunicorn the count the master started is handed down, and rules.
    handed_one = from_env({"DISPATCH_HEALTH_FILES": "1"})
    assert running_dispatcher_processes(handed_one, postgresql=True) == 1
    assert sending_threads(handed_one, postgresql=True) == 2  # alone, whatever the rule says
    handed_two = from_env({"DISPATCH_DIGEST_PROCESSES": "0", "DISPATCH_HEALTH_FILES": "2"})
    assert running_dispatcher_processes(handed_two, postgresql=True) == 2
    assert sending_threads(handed_two, postgresql=True) == 1
    assert running_dispatcher_processes(config, postgresql=True) == 2  # none handed: the rule
    assert from_env({"ADMIN_TOKEN": "a, b"})["ADMIN_TOKENS"] == ["a", "b"]
    assert from_env({"SECRET_KEY_FALLBACKS": "x,y"})["SECRET_KEY_FALLBACKS"] == ["x", "y"]
    assert from_env({"WORKER_METRICS_BIND": ":9808"})["WORKER_METRICS_BIND"] == ":9808"
    assert split_bind(":9808") == ("0.0.0.0", 9808)  # noqa: S104 (every interface)
    assert split_bind("[::]:9808") == ("::", 9808)
    assert split_bind("10.0.0.5:9808") == ("10.0.0.5", 9808)


def test_healthz_ok_when_the_database_answers(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json()["status"] == "ok"


def test_healthz_503_when_the_database_is_gone(app_losing_its_database):
    response = app_losing_its_database.test_client().get("/healthz")
    assert response.status_code == 503
    assert response.get_json()["status"] == "unavailable"


def test_healthz_503_on_a_database_without_our_schema(make_app, tmp_path):
    # SQLite answers SELECT 1 from a new, empty file (a mistyped path, a deleted file),
    # where every signup fails: that is not a database that answers.
    app = make_app(SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'empty.db'}")
    for probe in ("/healthz", "/readyz"):
        assert app.test_client().get(probe).status_code == 503


def test_signup_while_the_database_is_gone_is_a_clear_503(app_losing_its_database):
    client = app_losing_its_database.test_client()
    response = client.post("/subscribe", json={"email": "a@example.com"})
    assert response.status_code == 503
    assert response.get_json()["error"]["code"] == "unavailable"
    assert response.headers["Retry-After"]


def test_every_503_of_a_lost_database_is_in_the_openapi_document(
    app_losing_its_database, admin_headers
):
    app = app_losing_its_database
    client = app.test_client()
    with app.app_context():
        from newsletter.tokens import current_tokens

        confirm = current_tokens().confirm_token("some-public-id", 0)
        leave = current_tokens().unsubscribe_token("some-public-id")
    document = client.get("/openapi.json").get_json()
    calls = [
        ("post", "/subscribe", "/subscribe"),
        ("get", "/confirm/{token}", f"/confirm/{confirm}"),
        ("post", "/confirm/{token}", f"/confirm/{confirm}"),
        ("post", "/unsubscribe/{token}", f"/unsubscribe/{leave}"),
        ("get", "/admin/subscribers", "/admin/subscribers"),
        ("get", "/admin/stats", "/admin/stats"),
        ("get", "/admin/posts", "/admin/posts"),
    ]
    for method, template, path in calls:
        body = {"email": "a@example.com"} if template == "/subscribe" else None
        headers = {**admin_headers, "Accept": "application/json"}
        answer = client.open(path, method=method, json=body, headers=headers)
        assert answer.status_code == 503, (path, answer.status_code)
        assert answer.get_json()["error"]["code"] == "unavailable"
        assert "503" in document["paths"][template][method]["responses"], template


def test_openapi_document_is_valid_and_lists_the_json_endpoints(client):
    document = client.get("/openapi.json").get_json()
    validate(document)
    for path in (
        "/subscribe",
        "/confirm/{token}",
        "/unsubscribe/{token}",
        "/healthz",
        "/admin/subscribers",
        "/admin/subscribers/{email}",
        "/admin/subscribers/import",
    ):
        assert path in document["paths"], path


def test_openapi_names_the_path_the_service_is_mounted_under(client):
    assert client.get("/openapi.json").get_json()["servers"] == [{"url": "/"}]
    mounted = client.get("/openapi.json", base_url="http://localhost/news").get_json()
    assert mounted["servers"] == [{"url": "/news"}]
    validate(mounted)


def test_a_trusted_proxy_that_strips_the_mount_path_may_name_it(make_app):
    """X-Forwarded-Prefix, from a proxy counted in TRUSTED_PROXY_COUNT: links keep /news."""
    headers = {"X-Forwarded-Prefix": "/news", "Accept": "application/json"}
    trusted = make_app(TRUSTED_PROXY_COUNT=1).test_client()
    assert trusted.get("/openapi.json", headers=headers).get_json()["servers"] == [{"url": "/news"}]
    assert trusted.get("/subscribe", headers=headers).get_json()["subscribe_url"] == (
        "/news/subscribe"
    )
    untrusted = make_app().test_client()  # no proxy counted: a client's header is ignored
    assert untrusted.get("/openapi.json", headers=headers).get_json()["servers"] == [{"url": "/"}]


def test_openapi_email_length_is_the_one_the_service_takes(client):
    limit = client.get("/openapi.json").get_json()["components"]["schemas"]["Signup"]
    longest = limit["properties"]["email"]["maxLength"]
    local = "a" * 64
    domain = ".".join(["b" * 60] * 4)[: longest - len(local) - 1 - 4] + ".com"
    fits = f"{local}@{domain}"
    assert len(fits) == longest
    assert client.post("/subscribe", json={"email": fits}).status_code == 202
    over = f"{local}@c{domain}"
    answer = client.post("/subscribe", json={"email": over})
    assert answer.status_code == 422 and answer.get_json()["error"]["code"] == "invalid_email"


def test_openapi_source_has_no_key_twice(client):
    # A second "get:" under /subscribe silently replaced the first: the JSON answer of
    # GET /subscribe was gone from the served document.
    import yaml

    class Strict(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            keys = [self.construct_object(key, deep=deep) for key, _ in node.value]
            assert len(keys) == len(set(keys)), f"a key twice at line {node.start_mark.line + 1}"
            return super().construct_mapping(node, deep)

    source = Path(newsletter.__file__).with_name("openapi.yaml").read_text(encoding="utf-8")
    yaml.load(source, Loader=Strict)  # noqa: S506 (a SafeLoader)
    signup_page = client.get("/openapi.json").get_json()["paths"]["/subscribe"]["get"]
    assert "application/json" in signup_page["responses"]["200"]["content"]


def test_every_route_is_in_the_openapi_document_or_html_only(app, client):
    documented = set(client.get("/openapi.json").get_json()["paths"])
    html_only = {"/static/{filename}"}
    for rule in app.url_map.iter_rules():
        path = rule.rule.replace("<", "{").replace(">", "}")
        path = re.sub(r"\{[a-z_]+(\([^)]*\))?:", "{", path)  # {row_id:post_id} too
        assert path in documented or path in html_only, path


def test_unknown_page_is_404_html_for_browsers_and_json_for_apis(client):
    page = client.get("/nope", headers={"Accept": "text/html"})
    assert page.status_code == 404 and b"Page not found" in page.data
    api = client.get("/nope", headers={"Accept": "application/json"})
    assert api.get_json()["error"]["code"] == "not_found"
    assert client.get("/admin/nope").get_json()["error"]["code"] in ("not_found", "unauthorized")


def test_wrong_method_is_405_not_500(client):
    response = client.put("/subscribe", headers={"Accept": "application/json"})
    assert response.status_code == 405
    assert response.get_json()["error"]["code"] == "method_not_allowed"


def test_an_unexpected_error_is_a_500_page_without_a_traceback(make_app):
    app = make_app()
    app.config["PROPAGATE_EXCEPTIONS"] = False

    @app.get("/boom")
    def boom():
        raise RuntimeError("secret internals")

    response = app.test_client().get("/boom", headers={"Accept": "application/json"})
    assert response.status_code == 500
    assert response.get_json()["error"]["code"] == "internal_error"
    assert b"secret internals" not in response.data and b"Traceback" not in response.data


@pytest.mark.parametrize(
    ("url", "postgresql"),
    [
        ("", False),  # the embedded default: SQLite in the instance folder
        ("sqlite:////srv/newsletter.db", False),
        ("postgres://app@db/newsletter", True),  # Heroku's spelling
        ("postgresql://app@db/newsletter", True),
        ("postgresql+psycopg://app@db/newsletter", True),
    ],
)
def test_gunicorn_reads_the_database_from_the_url_as_the_app_does(url, postgresql):
    # gunicorn.conf.py decides how many dispatcher processes to start from the URL alone;
    # the processes it starts, and the workers, ask their engine, whose dialect is the URL's.
    assert on_postgresql(from_env({"DATABASE_URL": url})) is postgresql
    engine_dialect = make_url(database_url(url, "/srv/instance")).get_backend_name()
    assert engine_dialect == ("postgresql" if postgresql else "sqlite")
