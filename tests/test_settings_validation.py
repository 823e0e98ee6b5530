"""Settings that would break the service quietly stop start-up instead, in one line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from config import ConfigError, from_env

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("name", "refused", "accepted", "message"),
    [
        # Two overlapping dispatchers each took back the other's batch: every message twice.
        ("DISPATCH_LEASE", "0", "1", "at least 1"),
        ("CONFIRM_MAX_AGE", "0", "1", "at least 1"),  # every link expired as sent
        ("PENDING_RETENTION_DAYS", "0", "1", "at least 1"),  # purged a second-old signup
        ("PENDING_RETENTION_DAYS", "0.5", "1.5", "at least 1"),
        ("MAX_CONTENT_LENGTH", "0", "1024", "at least 1024"),  # every signup 413
        ("IMPORT_MAX_BYTES", "100", "1024", "at least 1024"),
        ("WEBHOOK_TOLERANCE", "0", "60", "at least 60"),  # every signed webhook stale
        ("RETRY_MAX_ATTEMPTS", "0", "1", "at least 1"),
        ("CONFIRM_MAX_PER_DAY", "0", "1", "at least 1"),  # no one could confirm
        ("DISPATCH_BATCH_SIZE", "0", "1", "at least 1"),
        ("DISPATCH_FANOUT", "0", "1", "at least 1"),
        ("FEED_MAX_BYTES", "0", "1", "at least 1"),
        ("RATELIMIT_NETWORK_V4", "0", "8", "at least 8"),  # the whole internet one network
        ("RATELIMIT_NETWORK_V6", "0", "16", "at least 16"),
        # Seconds where 0 is no wait at all; the tests' own tenths of a second still pass.
        ("PROVIDER_TIMEOUT", "0", "0.2", "more than 0"),  # ValueError: Invalid timeout
        ("CAPTCHA_TIMEOUT", "0", "0.3", "more than 0"),
        ("READINESS_TIMEOUT", "0", "0.5", "more than 0"),
        ("FEED_TIMEOUT", "0", "1.0", "more than 0"),
        ("DISPATCH_INTERVAL", "0.0", "0.1", "more than 0"),  # a dispatcher spinning idle
    ],
)
def test_a_value_too_small_to_work_stops_start_up_and_the_least_that_works_does_not(
    name: str, refused: str, accepted: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=f"^{name} must be {message}$"):
        from_env({name: refused})
    assert from_env({name: accepted})[name] == float(accepted)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SECRET_KEY", "<python3 -c 'import secrets; print(secrets.token_hex(32))'>"),
        ("ADMIN_TOKEN", "<another long random string>"),
        ("ADMIN_TOKEN", "a-real-token, <another long random string>"),
        ("SECRET_KEY_FALLBACKS", "<the old key>"),
    ],
)
def test_a_placeholder_copied_from_a_template_is_refused_as_a_secret(name: str, value: str):
    with pytest.raises(ConfigError, match=f"^{name} looks like a placeholder"):
        from_env({name: value})
    # A short key is the quick start's (SECRET_KEY=change-me), and a "<" inside is no template.
    assert from_env({"SECRET_KEY": "change-me"})["SECRET_KEY"] == "change-me"
    assert from_env({"SECRET_KEY": "<a>b"})["SECRET_KEY"] == "<a>b"


@pytest.mark.parametrize(
    "url",
    [
        "garbage",
        "http://localhost:6379",
        "async+redis://localhost",
        "memcached://127.0.0.1:11211",  # a traceback at start: its driver is not installed
        "mongodb://127.0.0.1:27017",
    ],
)
def test_a_rate_limit_storage_the_limits_package_cannot_use_stops_start_up(url: str) -> None:
    with pytest.raises(ConfigError, match=r"^RATELIMIT_STORAGE_URL must be a storage URL"):
        from_env({"RATELIMIT_STORAGE_URL": url})
    redis = "redis://127.0.0.1:6379/1"
    assert from_env({"RATELIMIT_STORAGE_URL": redis})["RATELIMIT_STORAGE_URI"] == redis


@pytest.mark.parametrize(
    "name",
    [
        "POSTMARK_API_URL",
        "SENDGRID_API_URL",
        "MAILGUN_API_URL",
        "RESEND_API_URL",
        "CAPTCHA_VERIFY_URL",
    ],
)
@pytest.mark.parametrize(
    "url", ["ftp://x", "notaurl", "https://", "https://api.example.com?x=1", "http://h:99999"]
)
def test_an_api_url_that_is_no_http_address_stops_start_up(name: str, url: str) -> None:
    with pytest.raises(ConfigError, match=f"^{name} must be an http\\(s\\) URL"):
        from_env({name: url})
    # A local stand-in, as the tests point the providers at, is fine.
    assert from_env({name: "http://127.0.0.1:5501/v3/"})[name] == "http://127.0.0.1:5501/v3/"


BROKERS_CELERY_SUPPORTS = [
    "",  # this host sends
    "memory://",
    "redis://127.0.0.1:6379/0",
    "rediss://:pw@redis.example.org:6380/0",
    "amqp://guest:guest@localhost:5672//",
    "sentinel://h1:26379;sentinel://h2:26379",  # kombu's fail-over list
    "sqla+postgresql://u:p@db/broker",  # transport+driver
]


@pytest.mark.parametrize(
    "url", ["garbage", "http://x", "redis", "redis://x;nonsense", "redis//:hunter2@x:6379/0"]
)
def test_a_celery_broker_url_celery_would_misread_stops_start_up(url: str) -> None:
    with pytest.raises(ConfigError, match=r"^CELERY_BROKER_URL must be a broker URL") as refused:
        from_env({"CELERY_BROKER_URL": url})
    assert "hunter2" not in str(refused.value)  # the URL may hold a password: never repeated
    # The check is on the transport, not on Redis alone.
    for broker in BROKERS_CELERY_SUPPORTS:
        assert from_env({"CELERY_BROKER_URL": broker})["CELERY_BROKER_URL"] == broker


@pytest.mark.parametrize("value", ["nocolon", ":", "user:", ":password"])
def test_webhook_basic_auth_needs_both_a_user_and_a_password(value: str) -> None:
    with pytest.raises(ConfigError, match=r"^WEBHOOK_BASIC_AUTH must be user:password"):
        from_env({"WEBHOOK_BASIC_AUTH": value})
    # The password is all after the first colon, colons included.
    assert from_env({"WEBHOOK_BASIC_AUTH": "hooks:p:w"})["WEBHOOK_BASIC_AUTH"] == "hooks:p:w"


@pytest.mark.parametrize(
    ("setting", "named"),
    [
        ({"RATELIMIT_STORAGE_URL": "garbage"}, "RATELIMIT_STORAGE_URL"),  # was 14 lines
        ({"PROVIDER_TIMEOUT": "0"}, "PROVIDER_TIMEOUT"),
        ({"CELERY_BROKER_URL": "garbage"}, "CELERY_BROKER_URL"),
    ],
)
def test_a_refused_setting_is_one_line_at_start_up_with_no_traceback(
    setting: dict[str, str], named: str, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if k != "FLASK_DEBUG"}
    env.update(SECRET_KEY="test-secret-key", DATABASE_URL=f"sqlite:///{tmp_path / 'x.db'}")
    env.update(setting)
    result = subprocess.run(
        [sys.executable, "-c", "import wsgi"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"newsletter: cannot start: {named} ")


@pytest.mark.parametrize("zone", ["Mars/Olympus", "UTC+5", "../etc/passwd", "Europe"])
def test_a_time_zone_that_is_no_iana_name_stops_start_up(zone):
    with pytest.raises(ConfigError, match="NEWSLETTER_TIMEZONE must be an IANA time zone"):
        from_env({"NEWSLETTER_TIMEZONE": zone})


def test_the_time_zone_is_utc_unless_set():
    assert from_env({})["NEWSLETTER_TIMEZONE"] == "UTC"
    assert (
        from_env({"NEWSLETTER_TIMEZONE": "Europe/Berlin"})["NEWSLETTER_TIMEZONE"] == "Europe/Berlin"
    )


@pytest.mark.parametrize(
    ("name", "key", "default"),
    [
        ("RATELIMIT_STORAGE_URL", "RATELIMIT_STORAGE_URI", "memory://"),
        ("NEWSLETTER_TIMEZONE", "NEWSLETTER_TIMEZONE", "UTC"),
    ],
)
def test_an_empty_setting_means_its_default(name: str, key: str, default: str) -> None:
    # Compose files pass ${X:-}: empty, as for every other setting, is the default.
    assert from_env({name: ""})[key] == default


def test_a_fraction_where_a_whole_number_belongs_is_named_as_such() -> None:
    with pytest.raises(ConfigError, match=r"DISPATCH_LEASE must be a whole number, not '0\.5'"):
        from_env({"DISPATCH_LEASE": "0.5"})


def test_a_rate_limit_store_that_must_answer_at_start_and_cannot_stops_start_up_in_one_line(
    make_app,
):
    from tests.servers import free_port

    with pytest.raises(ConfigError, match=r"^RATELIMIT_STORAGE_URL cannot be used"):
        make_app(RATELIMIT_STORAGE_URI=f"redis+cluster://127.0.0.1:{free_port()}")


def test_a_redis_socket_stays_a_rate_limit_store() -> None:
    url = "redis+unix:///run/redis.sock"
    assert from_env({"RATELIMIT_STORAGE_URL": url})["RATELIMIT_STORAGE_URI"] == url


def test_an_api_url_holding_credentials_is_refused_and_not_repeated() -> None:
    with pytest.raises(ConfigError, match="no user name") as refused:
        from_env({"POSTMARK_API_URL": "https://user:s3cret@api.example.com"})
    assert "s3cret" not in str(refused.value)


def _sendgrid_pair() -> tuple[str, str]:
    """A P-256 public key as SendGrid's page shows it (base64 DER), and as PEM."""
    import base64

    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    public = ec.generate_private_key(ec.SECP256R1()).public_key()
    der = public.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    pem = public.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()
    return base64.b64encode(der).decode(), pem


def test_a_sendgrid_key_given_as_pem_is_read_as_its_base64() -> None:
    base64_der, pem = _sendgrid_pair()
    assert (
        from_env({"SENDGRID_WEBHOOK_PUBLIC_KEY": base64_der})["SENDGRID_WEBHOOK_PUBLIC_KEY"]
        == base64_der
    )
    assert from_env({"SENDGRID_WEBHOOK_PUBLIC_KEY": pem})["SENDGRID_WEBHOOK_PUBLIC_KEY"] == (
        base64_der
    )
    one_line = pem.replace("\n", "\\n")  # as an env file holds it
    assert (
        from_env({"SENDGRID_WEBHOOK_PUBLIC_KEY": one_line})["SENDGRID_WEBHOOK_PUBLIC_KEY"]
        == base64_der
    )


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SENDGRID_WEBHOOK_PUBLIC_KEY", "not a key"),
        ("SENDGRID_WEBHOOK_PUBLIC_KEY", "aGVsbG8="),  # base64, but of no key
        ("RESEND_WEBHOOK_SECRET", "whsec_not*base64"),
        ("RESEND_WEBHOOK_SECRET", "whsec_"),
    ],
)
def test_a_webhook_key_that_cannot_verify_anything_stops_start_up(name: str, value: str) -> None:
    # Every signed webhook would be refused until the provider gave up: bounces lost.
    with pytest.raises(ConfigError, match=name):
        from_env({name: value})


def test_a_resend_secret_is_kept_as_given() -> None:
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    assert from_env({"RESEND_WEBHOOK_SECRET": secret})["RESEND_WEBHOOK_SECRET"] == secret
