"""Every setting of the service, read from the environment and documented once.

The names and defaults are the contract of ``../shared/interface.md``; settings
the contract does not name are marked *ours* below. ``Config.from_env()`` is
the only place that reads ``os.environ``.
"""

from __future__ import annotations

import base64
import math
import os
import re
from collections.abc import Mapping
from email.headerregistry import Address
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import SplitResult, quote, urlsplit, urlunsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import idna
from limits import parse_many
from limits.storage import SCHEMES

# Days a pending signup is kept at most: a century, a limit of policy (well short of
# the calendar's end, past which the cutoff date could not be computed).
MAX_RETENTION_DAYS = 36_500


class ConfigError(RuntimeError):
    """A setting is missing or malformed; start-up must stop with this message."""


def _str(env: Mapping[str, str], name: str, default: str = "") -> str:
    return env.get(name, default).strip()


_PEM_LINE = re.compile(r"-----(BEGIN|END) PUBLIC KEY-----")


def _compact_key(raw: str) -> str:
    """A public key's base64 DER: as SendGrid's dashboard shows it, or out of PEM.

    A PEM written on one line with "\\n" for its breaks too (an env file holds no other).
    """
    return "".join(_PEM_LINE.sub("", raw.replace("\\n", "\n")).split())


@cache
def sendgrid_public_key(raw: str) -> Any:
    """SendGrid's webhook verification key, loaded once per value; ``ValueError`` if it is none.

    The webhook checks every request with it; start-up checks it here first.
    """
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import load_der_public_key

    key = load_der_public_key(base64.b64decode(_compact_key(raw), validate=True))
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise ValueError("not an EC public key")
    return key


@cache
def svix_key(raw: str) -> bytes:
    """Resend's (Svix's) signing key out of its ``whsec_`` secret; ``ValueError`` if it is none."""
    key = base64.b64decode(raw.removeprefix("whsec_"), validate=True)
    if not key:
        raise ValueError("an empty key")
    return key


def _sendgrid_key(raw: str) -> str:
    """``SENDGRID_WEBHOOK_PUBLIC_KEY`` as base64 DER, or empty; one that is no key stops start-up.

    Every signed webhook would be refused (401) until SendGrid gave up
    retrying, its bounces and complaints lost, and their readers still mailed.
    """
    if not raw:
        return ""
    try:
        sendgrid_public_key(raw)
    except ValueError:
        raise ConfigError(
            "SENDGRID_WEBHOOK_PUBLIC_KEY is not SendGrid's verification key (an EC public "
            "key, base64 as its Mail Settings page shows it, or PEM)"
        ) from None
    return _compact_key(raw)


def _svix_secret(raw: str) -> str:
    """Resend's signing secret (``whsec_`` and base64); one that is not stops start-up."""
    if raw:
        try:
            svix_key(raw)
        except ValueError:
            raise ConfigError(
                "RESEND_WEBHOOK_SECRET is not Resend's signing secret (whsec_ then base64, "
                "as its webhook page shows it)"
            ) from None
    return raw


def _default_sender(name: str) -> str:
    """``Newsletter <newsletter@localhost>``, under the newsletter's own name when it has one."""
    try:
        return str(Address(display_name=name or "Newsletter", addr_spec="newsletter@localhost"))
    except ValueError:  # a line break: NEWSLETTER_NAME itself is refused as the app starts
        return "Newsletter <newsletter@localhost>"


def _timezone(env: Mapping[str, str], name: str) -> str:
    """An IANA time zone name (``Europe/Berlin``), ``UTC`` when unset or empty."""
    value = _str(env, name) or "UTC"
    try:
        ZoneInfo(value)
    except (ValueError, OSError, ZoneInfoNotFoundError):  # OSError: a folder (Europe)
        raise ConfigError(
            f"{name} must be an IANA time zone such as Europe/Berlin, not {value!r}"
        ) from None
    return value


def _list(env: Mapping[str, str], name: str) -> list[str]:
    return [item.strip() for item in env.get(name, "").split(",") if item.strip()]


def _origins(env: Mapping[str, str], name: str) -> list[str]:
    """Web origins (``scheme://host[:port]``, as a browser sends ``Origin``), or ``*``.

    Anything more (``https://blog.example.org/``, a path) would never equal an
    ``Origin`` header: refused at start-up rather than failing every signup.
    """
    origins = []
    for given in _list(env, name):
        # A site's address as copied from the address bar: its lone "/" is no path.
        origin = given[:-1] if given.endswith("/") and urlsplit(given).path == "/" else given
        parts = urlsplit(origin)
        if origin != "*" and (
            parts.scheme not in ("http", "https")
            or not parts.netloc
            or "@" in parts.netloc
            or f"{parts.scheme}://{parts.netloc}".lower() != origin.lower()
        ):
            raise ConfigError(
                f"{name} holds origins like https://blog.example.org (no path), not {given!r}"
            )
        origins.append(origin if origin == "*" else _as_browsers_send_it(parts, name, given))
    return origins


_DEFAULT_PORTS = {"http": 80, "https": 443}


def _as_browsers_send_it(parts: SplitResult, name: str, given: str) -> str:
    """An origin as a browser's ``Origin`` header has it: lower case, IDNA, no default port.

    Chromium sends ``http://xn--bckerei-5wa.example`` for a page on
    ``bäckerei.example``, and never ``:443`` after ``https``: listed as
    typed, such origins matched no request, and every reader's signup
    failed in the widget.
    """
    try:
        port = parts.port
        host = _ascii_host(parts.hostname or "")
    except (UnicodeError, ValueError):  # idna.IDNAError is both; a bad port a ValueError
        raise ConfigError(f"{name} holds an origin that is not a valid URL: {given!r}") from None
    if ":" in host:
        host = f"[{host}]"
    shown_port = f":{port}" if port and port != _DEFAULT_PORTS[parts.scheme] else ""
    return f"{parts.scheme}://{host}{shown_port}"


def _ascii_host(host: str) -> str:
    """A host as links and ``Origin`` headers carry it: IDNA 2008 with UTS 46 if not ASCII.

    As browsers and email-validator map it (Python's own codec, IDNA 2003,
    makes ``faß.example`` the other domain ``fass.example``). Raises
    ``UnicodeError`` for a host IDNA refuses.
    """
    return host if host.isascii() else idna.encode(host, uts46=True).decode("ascii")


def yes_or_no(raw: str) -> bool | None:
    """``true``/``1``/``yes``/``on`` or ``false``/``0``/``no``/``off`` (any case); else None."""
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    return None


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    value = yes_or_no(raw)
    if value is None:
        raise ConfigError(f"{name} must be true or false, not {raw.lower()!r}")
    return value


def _choice(env: Mapping[str, str], name: str, choices: tuple[str, ...]) -> str:
    raw = env.get(name, "").strip().lower() or choices[0]
    if raw not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, not {raw!r}")
    return raw


def sends_elsewhere(settings: Mapping[str, Any]) -> bool:
    """True when Celery workers or cron send the mail: no process or thread of the web server.

    The one rule for gunicorn.conf.py (start no dispatcher process), the
    app (start no dispatcher thread) and ``/healthz`` (read the senders'
    health records from the database).
    """
    return bool(settings["CELERY_BROKER_URL"]) or not settings["DISPATCH_IN_PROCESS"]


def database_url(raw: str, instance_path: str) -> str:
    """The SQLAlchemy URL: SQLite in the instance folder by default, psycopg 3 for PostgreSQL."""
    if not raw:
        return f"sqlite:///{Path(instance_path) / 'newsletter.db'}"
    for prefix in ("postgres://", "postgresql://"):
        if raw.startswith(prefix):
            return "postgresql+psycopg://" + raw[len(prefix) :]
    return raw


def digest_processes(settings: Mapping[str, Any], postgresql: bool) -> int:
    """``DISPATCH_DIGEST_PROCESSES``; unset, 1 beside one process on PostgreSQL, no SEND_RATE.

    The rule gunicorn.conf.py starts processes by, and the benches play (the
    workers and the processes take the count the master hands down:
    running_dispatcher_processes). SQLite gets none: a second writer would
    only wait for the first. Nor does a ``SEND_RATE``: it holds each
    process, so a second one would double what the provider was promised,
    and under a rate cap the CPU is not what limits a digest.
    """
    if settings["DISPATCH_DIGEST_PROCESSES"] is not None:
        return settings["DISPATCH_DIGEST_PROCESSES"]
    alone = settings["DISPATCH_PROCESSES"] == 1 and not settings["SEND_RATE"]
    return 1 if postgresql and alone else 0


def dispatcher_process_count(settings: Mapping[str, Any], postgresql: bool) -> int:
    """The dispatcher processes gunicorn runs: ``DISPATCH_PROCESSES``, then the digests' ones."""
    return settings["DISPATCH_PROCESSES"] + digest_processes(settings, postgresql)


def running_dispatcher_processes(settings: Mapping[str, Any], postgresql: bool) -> int:
    """The dispatcher processes running for this host: as gunicorn's master said, else the rule.

    The master hands down the count it started (``DISPATCH_HEALTH_FILES``,
    beside ``DISPATCH_HEALTH_FILE``), so its workers read every health file
    written and each process sizes its threads by what really runs, however
    the database was named to them.
    """
    handed = settings["DISPATCH_HEALTH_FILES"]
    return handed if handed is not None else dispatcher_process_count(settings, postgresql)


def on_postgresql(settings: Mapping[str, Any]) -> bool:
    """True when ``DATABASE_URL`` names PostgreSQL (read as ``database_url`` reads it)."""
    return database_url(settings["DATABASE_URL"], "").startswith("postgresql")


def split_bind(value: str) -> tuple[str, int]:
    """``host:port`` as (host, port); an IPv6 host may be bracketed, an empty one is any."""
    host, colon, port = value.rpartition(":")
    if not (colon and port.isdigit() and 0 < int(port) < 65536):
        raise ValueError(value)
    return host.removeprefix("[").removesuffix("]") or "0.0.0.0", int(port)  # noqa: S104


def _bind(env: Mapping[str, str], name: str) -> str:
    """A ``host:port`` setting as given, or "" when unset."""
    raw = _str(env, name)
    if raw:
        try:
            split_bind(raw)
        except ValueError:
            raise ConfigError(
                f"{name} must look like 0.0.0.0:9808 (host:port), not {raw!r}"
            ) from None
    return raw


# White space, controls and what ends a <URL> or a quoted attribute.
_NOT_IN_A_LINK = re.compile(r'[\s\x00-\x1f\x7f<>"`\\]')


def _public_url(raw: str) -> str:
    """``PUBLIC_URL`` as every email must carry it: ASCII, a Unicode host in IDNA form.

    Links and ``List-Unsubscribe`` headers are read by mail clients, which
    take no other form (``https://news.bäckerei.example`` is
    ``https://news.xn--bckerei-5wa.example``).
    """
    parts = urlsplit(raw)
    host = parts.hostname or ""
    try:
        parts.port  # noqa: B018 (read for its ValueError)
    except ValueError:
        raise ConfigError(f"PUBLIC_URL is not a valid URL: {raw!r}") from None
    if not _is_http_url(raw):
        # It goes into every link and List-Unsubscribe header as it is: a space, a quote or
        # a line break there would cut a link short or add a second unsubscribe address.
        raise ConfigError(
            "PUBLIC_URL must be a plain http(s) address with a host and at most a path "
            f"(like https://news.example.org), not {raw!r}"
        )
    if raw.isascii():
        return raw
    try:
        ascii_host = _ascii_host(host)
        port = parts.port
    except (UnicodeError, ValueError):  # idna.IDNAError is both; a bad port a ValueError
        raise ConfigError(f"PUBLIC_URL is not a valid URL: {raw!r}") from None
    netloc = ascii_host + (f":{port}" if port else "")
    path = quote(parts.path, safe="/%")
    return urlunsplit((parts.scheme, netloc, path, parts.query, parts.fragment))


def _number(
    env: Mapping[str, str],
    name: str,
    default: float | None,
    kind: type = int,
    maximum: float | None = None,
    minimum: float | None = None,
) -> Any:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        number = "a whole number" if kind is int else "a number"
        raise ConfigError(f"{name} must be {number}, not {raw!r}") from None
    if not math.isfinite(value):  # "nan" and "inf" parse as floats
        raise ConfigError(f"{name} must be a finite number, not {raw!r}")
    if value < 0:
        raise ConfigError(f"{name} must not be negative")
    if minimum is not None and value < minimum:
        raise ConfigError(f"{name} must be at least {minimum:g}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{name} must be at most {maximum:g}")
    return value


def count_setting(env: Mapping[str, str], name: str, default: int, minimum: int = 1) -> int:
    """A whole-number setting of at least ``minimum``; ``default`` when unset or empty."""
    return _number(env, name, default, minimum=minimum)


def _rate_limits(env: Mapping[str, str], name: str, default: str) -> str:
    """A Flask-Limiter string (``10 per minute;50 per hour``), or empty: none.

    Checked here: Flask-Limiter reads it at each request, and one it cannot
    parse turned the limit off with an error logged per signup.
    """
    value = _str(env, name, default).strip()
    if value:
        try:
            parse_many(value)
        except ValueError:
            raise ConfigError(
                f"{name} must be rate limits such as '10 per minute;50 per hour', not {value!r}"
            ) from None
    return value


def _more_than_zero(env: Mapping[str, str], name: str, default: float) -> float:
    """Seconds to wait, or between tries, where 0 means no wait at all: never right.

    0 failed every provider call (``Invalid timeout (0.0, 0.0)``), every CAPTCHA
    and readiness check, or spun a dispatcher on an empty queue. Small values
    stay: the tests wait a tenth of a second on purpose.
    """
    value = _number(env, name, default, float)
    if value == 0:
        raise ConfigError(f"{name} must be more than 0")
    return value


def _refuse_placeholders(name: str, *values: str) -> None:
    """Refuse a template's ``<placeholder>`` where a secret belongs.

    ``SECRET_KEY=<python3 -c '...'>`` copied from the README as it is signed
    every link with a key anyone reading the README knows.
    """
    if any(value.startswith("<") and value.endswith(">") for value in values):
        raise ConfigError(
            f"{name} looks like a placeholder (<...>) copied from a template: "
            "set it to a long random string"
        )


def _secret(env: Mapping[str, str], name: str) -> str:
    value = _str(env, name)
    _refuse_placeholders(name, value)
    return value


def _secrets(env: Mapping[str, str], name: str) -> list[str]:
    values = _list(env, name)
    _refuse_placeholders(name, *values)
    return values


def _rate_limit_storage(env: Mapping[str, str], name: str) -> str:
    """A storage URL whose driver is installed (``memory://``, ``redis://...``), or empty:
    ``memory://``.

    Checked here: Flask-Limiter refused another at app creation with a
    traceback; memcached's and MongoDB's drivers are not among our
    requirements. The URL is not repeated: it may hold a password.
    """
    value = _str(env, name) or "memory://"
    scheme, separator, _ = value.partition("://")
    if not separator or scheme not in _RATE_LIMIT_SCHEMES:
        raise ConfigError(
            f"{name} must be a storage URL such as memory:// or redis://host:6379/1 "
            f"(schemes: {', '.join(sorted(_RATE_LIMIT_SCHEMES))})"
        )
    return value


# The limits package's storages whose driver (redis) is in requirements.txt.
_RATE_LIMIT_SCHEMES = {
    "memory",
    "redis",
    "rediss",
    "redis+unix",
    "redis+sentinel",
    "redis+cluster",
} & set(SCHEMES)


def _broker_url(env: Mapping[str, str], name: str) -> str:
    """A Celery broker URL (``redis://...``, ``amqp://...``), or empty: this host sends.

    Celery reads anything else as a host name on AMQP (``garbage`` was
    ``amqp://guest@garbage``), and every signup's wake-up then failed.
    Several URLs, ``;``-separated, are kombu's fail-over. The URL is not
    repeated: it may hold a password.
    """
    value = _str(env, name)
    if not value:
        return value
    # Imported here: only a host that names a broker pays for kombu (gunicorn's master too).
    from kombu.transport import TRANSPORT_ALIASES

    for url in filter(None, value.split(";")):
        # kombu's transport+driver (sqla+postgresql://) names the transport first.
        transport, separator, _ = url.partition("://")
        if not separator or transport.partition("+")[0].lower() not in TRANSPORT_ALIASES:
            raise ConfigError(
                f"{name} must be a broker URL such as redis://host:6379/0 or "
                "amqp://host, of a transport Celery knows"
            )
    return value


def _basic_auth(env: Mapping[str, str], name: str) -> str:
    """``user:password``, both parts given, or empty: no basic-auth webhooks.

    ``nocolon`` could never match a provider's credentials, and ``:`` let in
    a request with none.
    """
    value = _str(env, name)
    user, colon, password = value.partition(":")
    if value and not (colon and user and password):
        raise ConfigError(f"{name} must be user:password, both non-empty")
    return value


def _http_url(env: Mapping[str, str], name: str, default: str = "") -> str:
    """An absolute http(s) URL with a host and at most a path, or empty when it may be.

    A provider's API base (``ftp://x``, ``notaurl``) was taken, and every
    message then failed as transient until given up.
    """
    value = _str(env, name, default)
    if value and not _is_http_url(value):
        # Not repeated: a key may ride in its query or its user part.
        raise ConfigError(
            f"{name} must be an http(s) URL such as https://api.example.com, with a host, "
            "at most a path, and no user name, query or fragment"
        )
    return value


def _is_http_url(value: str) -> bool:
    """True for ``http(s)://host[:port][/path]``: the shape a base URL needs, a path appended."""
    parts = urlsplit(value)
    try:
        parts.port  # noqa: B018 (read for its ValueError)
    except ValueError:
        return False
    return bool(
        not _NOT_IN_A_LINK.search(value)
        and parts.scheme in ("http", "https")
        and parts.hostname
        and "@" not in parts.netloc  # a user name, even an empty one
        and not parts.query
        and not parts.fragment
    )


def from_env(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Read every setting from ``env`` (default: the process environment)."""
    env = os.environ if env is None else env
    return {
        # --- secrets and identity -------------------------------------------
        # Signs every token. Required unless DEBUG or TESTING.
        "SECRET_KEY": _secret(env, "SECRET_KEY"),
        # Retired keys still accepted while links signed with them are alive.
        "SECRET_KEY_FALLBACKS": _secrets(env, "SECRET_KEY_FALLBACKS"),
        # Bearer token(s) for /admin/*; empty means the admin API is closed.
        "ADMIN_TOKENS": _secrets(env, "ADMIN_TOKEN"),
        # --- storage ---------------------------------------------------------
        # SQLAlchemy URL; empty means SQLite in the instance folder.
        "DATABASE_URL": _str(env, "DATABASE_URL"),
        # --- what subscribers see -------------------------------------------
        "PUBLIC_URL": _public_url(_str(env, "PUBLIC_URL", "http://localhost:5000").rstrip("/")),
        "NEWSLETTER_NAME": _str(env, "NEWSLETTER_NAME", "Newsletter"),
        # ours: the IANA time zone the digests' post dates are shown in (a post at
        # 03:00+05:00 was dated the day before, in UTC).
        "NEWSLETTER_TIMEZONE": _timezone(env, "NEWSLETTER_TIMEZONE"),
        "MAIL_FROM": _str(env, "MAIL_FROM", _default_sender(_str(env, "NEWSLETTER_NAME"))),
        "MAIL_POSTAL_ADDRESS": _str(env, "MAIL_POSTAL_ADDRESS"),
        # ours: the consent wording shown next to the signup form, kept as proof.
        "CONSENT_WORDING": _str(
            env,
            "CONSENT_WORDING",
            "Yes, email me the newsletter. I can unsubscribe at any time.",
        ),
        # --- email provider --------------------------------------------------
        "EMAIL_PROVIDER": _str(env, "EMAIL_PROVIDER", "outbox").lower(),
        "OUTBOX_DIR": _str(env, "OUTBOX_DIR"),  # empty: <instance>/outbox
        "SMTP_URL": _str(env, "SMTP_URL"),
        "POSTMARK_SERVER_TOKEN": _str(env, "POSTMARK_SERVER_TOKEN"),
        "POSTMARK_API_URL": _http_url(env, "POSTMARK_API_URL", "https://api.postmarkapp.com"),
        "POSTMARK_BROADCAST_STREAM": _str(env, "POSTMARK_BROADCAST_STREAM", "broadcast"),
        "SENDGRID_API_KEY": _str(env, "SENDGRID_API_KEY"),
        "SENDGRID_API_URL": _http_url(env, "SENDGRID_API_URL", "https://api.sendgrid.com"),
        "MAILGUN_API_KEY": _str(env, "MAILGUN_API_KEY"),
        "MAILGUN_DOMAIN": _str(env, "MAILGUN_DOMAIN"),
        "MAILGUN_API_URL": _http_url(env, "MAILGUN_API_URL", "https://api.mailgun.net"),
        "RESEND_API_KEY": _str(env, "RESEND_API_KEY"),
        "RESEND_API_URL": _http_url(env, "RESEND_API_URL", "https://api.resend.com"),
        # ours: seconds to wait for a provider's HTTP answer.
        "PROVIDER_TIMEOUT": _more_than_zero(env, "PROVIDER_TIMEOUT", 15.0),
        # --- provider webhooks -----------------------------------------------
        "MAILGUN_WEBHOOK_SIGNING_KEY": _str(env, "MAILGUN_WEBHOOK_SIGNING_KEY"),
        "SENDGRID_WEBHOOK_PUBLIC_KEY": _sendgrid_key(_str(env, "SENDGRID_WEBHOOK_PUBLIC_KEY")),
        "RESEND_WEBHOOK_SECRET": _svix_secret(_str(env, "RESEND_WEBHOOK_SECRET")),
        "WEBHOOK_BASIC_AUTH": _basic_auth(env, "WEBHOOK_BASIC_AUTH"),
        # ours: seconds a signed webhook timestamp stays acceptable. At least a minute:
        # providers deliver (and retry) seconds late, and clocks drift; less refused
        # genuine events (0: every one).
        "WEBHOOK_TOLERANCE": _number(env, "WEBHOOK_TOLERANCE", 300, minimum=60),
        # --- dispatch --------------------------------------------------------
        # Redis URL: Celery workers send, the web only enqueues. Empty: this host
        # sends (gunicorn's dispatcher process, or a thread under `flask run`).
        "CELERY_BROKER_URL": _broker_url(env, "CELERY_BROKER_URL"),
        # ours: deliveries claimed per provider call (capped by the provider).
        "DISPATCH_BATCH_SIZE": _number(env, "DISPATCH_BATCH_SIZE", 100, minimum=1),
        # ours: seconds between sweeps for due retries when nothing wakes us.
        "DISPATCH_INTERVAL": _more_than_zero(env, "DISPATCH_INTERVAL", 5.0),
        # ours: seconds the in-process dispatcher waits after a wake-up so that a
        # burst of signups is sent as one batch rather than one pass per signup.
        "DISPATCH_COALESCE": _number(env, "DISPATCH_COALESCE", 0.2, float),
        # ours: seconds a claimed batch is held before another dispatcher may take
        # it back (covers a crash between claim and result). SQLite: a lease in the
        # ledger; PostgreSQL: a row lock, freed when the dispatcher's connection
        # ends, or when its transaction sits idle (a frozen send) this long. 0 let a
        # second dispatcher take back every batch at once: each message went twice.
        "DISPATCH_LEASE": _number(env, "DISPATCH_LEASE", 300, minimum=1),
        # ours: retry back-off: first wait, cap, and attempts before giving up.
        "RETRY_BASE_SECONDS": _number(env, "RETRY_BASE_SECONDS", 30.0, float),
        "RETRY_MAX_SECONDS": _number(env, "RETRY_MAX_SECONDS", 3600.0, float),
        "RETRY_MAX_ATTEMPTS": _number(env, "RETRY_MAX_ATTEMPTS", 10, minimum=1),
        # ours: ...and seconds since it was queued before a delivery is given up,
        # so a provider outage longer than the attempts' back-off drops nothing.
        "RETRY_MAX_AGE": _number(env, "RETRY_MAX_AGE", 3 * 86400.0, float),
        # ours: false: the web server sends nothing, neither a thread nor gunicorn's
        # dispatcher process (cron, `flask outbox dispatch`, does it).
        "DISPATCH_IN_PROCESS": _bool(env, "DISPATCH_IN_PROCESS", True),
        # ours: under gunicorn (gunicorn.conf.py), send from one process of its own,
        # started and supervised by the master, instead of a thread in every worker:
        # the workers keep their CPU for requests. false: a thread in each worker.
        # Ignored with CELERY_BROKER_URL, and by `flask run` (a thread sends there).
        "DISPATCH_PROCESS": _bool(env, "DISPATCH_PROCESS", True),
        # ours: how many such processes the master starts. One sender alone waits in
        # turn on the database and the provider; two keep two CPUs busy with a large
        # digest (on PostgreSQL: each claims its own batches; on SQLite they only
        # take turns at the one writer's lock). SEND_RATE holds for each.
        "DISPATCH_PROCESSES": _number(env, "DISPATCH_PROCESSES", 1, minimum=1),
        # ours: more such processes, which send digest copies only: a large digest
        # goes out from two CPUs while confirmations (and the housekeeping) stay with
        # the first process, so a burst of signups shares its CPUs with no second
        # sender. Unset: 1 beside one dispatcher process on PostgreSQL with no
        # SEND_RATE, else 0 (digest_processes). 0 saves a process's memory (about
        # 100 MiB). SEND_RATE holds each of them too.
        "DISPATCH_DIGEST_PROCESSES": _number(env, "DISPATCH_DIGEST_PROCESSES", None),
        # ours: sending threads in each such process. One renders while another
        # waits on the database or the provider (one process at 100,000: 0.26 -> 0.37
        # of the bare client's rate, bench/RESULTS.md); with several processes on two
        # CPUs, one each did better. Unset: 2 when one dispatcher process sends
        # alone on PostgreSQL, else 1 (SQLite's one writer: measured on PostgreSQL
        # only; dispatch_process.sending_threads). Helpers wake for full batches of
        # a digest, not for confirmations. In a Celery task, the passes it runs side
        # by side: unset, 2 on PostgreSQL in a worker of one process (the solo pool,
        # or a pool of one), else 1 (tasks.task_threads).
        "DISPATCH_THREADS": _number(env, "DISPATCH_THREADS", None, minimum=1),
        # internal, not a setting: gunicorn.conf.py sets it when it starts those
        # processes; the first publishes its health there (paused, last error, last
        # pass), the others beside it, for the workers' /healthz and /admin/stats;
        # set, the workers send nothing.
        "DISPATCH_HEALTH_FILE": _str(env, "DISPATCH_HEALTH_FILE"),
        # internal too: how many processes gunicorn.conf.py started, so how many files
        # (running_dispatcher_processes).
        "DISPATCH_HEALTH_FILES": _number(env, "DISPATCH_HEALTH_FILES", None, minimum=1),
        # --- posts and digests -------------------------------------------------
        # ours: the blog's RSS or Atom feed, imported by POST /admin/posts/import-feed.
        "FEED_URL": _str(env, "FEED_URL"),
        # ours: seconds the whole fetch of the feed may take, and the largest accepted.
        "FEED_TIMEOUT": _more_than_zero(env, "FEED_TIMEOUT", 10.0),
        "FEED_MAX_BYTES": _number(env, "FEED_MAX_BYTES", 5 * 1024 * 1024, minimum=1),
        # ours: the most posts a digest email lists, newest first; the older ones it took
        # are counted, with a link to the blog (a whole archive made each copy megabytes).
        "DIGEST_MAX_POSTS": _number(env, "DIGEST_MAX_POSTS", 30, minimum=1),
        # ours: most messages per second one dispatching process sends (0: no limit),
        # to keep a digest inside the provider's quota.
        "SEND_RATE": _number(env, "SEND_RATE", 0.0, float),
        # ours: dispatch tasks queued per wake-up on Celery: how many workers
        # may share one digest at once.
        "DISPATCH_FANOUT": _number(env, "DISPATCH_FANOUT", 4, minimum=1),
        # --- signup policy ---------------------------------------------------
        # 0: every confirmation link expired as it was sent.
        "CONFIRM_MAX_AGE": _number(env, "CONFIRM_MAX_AGE", 604800, minimum=1),
        # ours: per-address throttle on confirmation emails: the least gap
        # between two, and the most in a day.
        "CONFIRM_RESEND_INTERVAL": _number(env, "CONFIRM_RESEND_INTERVAL", 300),
        "CONFIRM_MAX_PER_DAY": _number(env, "CONFIRM_MAX_PER_DAY", 5, minimum=1),
        # ours: pending signups never confirmed are deleted after this many days. At
        # least one: the hourly purge deleted, at 0, a signup made a second before.
        "PENDING_RETENTION_DAYS": _number(
            env, "PENDING_RETENTION_DAYS", 30.0, float, maximum=MAX_RETENTION_DAYS, minimum=1
        ),
        "CORS_ORIGINS": _origins(env, "CORS_ORIGINS"),
        # ours: the largest public request body, in bytes; at least 1 KiB, a floor for
        # plain signups (0 answered every one 413; a CAPTCHA token needs a few KiB more).
        "MAX_CONTENT_LENGTH": _number(env, "MAX_CONTENT_LENGTH", 64 * 1024, minimum=1024),
        # ours: the largest admin CSV import, in bytes (at least 1 KiB, likewise).
        "IMPORT_MAX_BYTES": _number(env, "IMPORT_MAX_BYTES", 64 * 1024 * 1024, minimum=1024),
        # ours: database connections a CSV import writes over at once, each
        # address always on the same one (subscriptions/import_lanes.py). Unset:
        # 2 on PostgreSQL, 1 on SQLite (one writer at a time: two were no faster).
        "IMPORT_CONNECTIONS": _number(env, "IMPORT_CONNECTIONS", None, minimum=1),
        # --- rate limits -----------------------------------------------------
        "RATELIMIT_ENABLED": _bool(env, "RATELIMIT_ENABLED", True),
        # Empty: no per-address limit (as RATELIMIT_SUBSCRIBE_NETWORK's empty: none);
        # RATELIMIT_ENABLED=false turns both off.
        "RATELIMIT_SUBSCRIBE": _rate_limits(
            env, "RATELIMIT_SUBSCRIBE", "10 per minute;50 per hour"
        ),
        # ours: a second POST /subscribe limit shared by a whole client network
        # (an IPv4 /RATELIMIT_NETWORK_V4 or IPv6 /RATELIMIT_NETWORK_V6), so a bot
        # rotating addresses inside one allocation is held too; empty: none.
        "RATELIMIT_SUBSCRIBE_NETWORK": _rate_limits(
            env, "RATELIMIT_SUBSCRIBE_NETWORK", "30 per minute;200 per hour"
        ),
        # Shorter than /8 and /16, one "network" holds whole registries' worth of
        # providers (0: the whole internet shares the limit).
        "RATELIMIT_NETWORK_V4": _number(env, "RATELIMIT_NETWORK_V4", 24, maximum=32, minimum=8),
        "RATELIMIT_NETWORK_V6": _number(env, "RATELIMIT_NETWORK_V6", 64, maximum=128, minimum=16),
        "RATELIMIT_STORAGE_URI": _rate_limit_storage(env, "RATELIMIT_STORAGE_URL"),
        # --- CAPTCHA on POST /subscribe ---------------------------------------
        # ours: `turnstile` (Cloudflare) or `hcaptcha`; empty: no CAPTCHA.
        "CAPTCHA_PROVIDER": _str(env, "CAPTCHA_PROVIDER").lower(),
        # ours: the provider's secret key, sent only to its siteverify endpoint.
        "CAPTCHA_SECRET": _str(env, "CAPTCHA_SECRET"),
        # ours: the provider's public site key, shown in the hosted signup page.
        "CAPTCHA_SITE_KEY": _str(env, "CAPTCHA_SITE_KEY"),
        # ours: siteverify URL; empty: the provider's own (tests use a local fake).
        "CAPTCHA_VERIFY_URL": _http_url(env, "CAPTCHA_VERIFY_URL"),
        # ours: seconds to wait for siteverify before answering 503.
        "CAPTCHA_TIMEOUT": _more_than_zero(env, "CAPTCHA_TIMEOUT", 5.0),
        "TRUSTED_PROXY_COUNT": _number(env, "TRUSTED_PROXY_COUNT", 0),
        # --- operations (ours) -------------------------------------------------
        # true: /metrics answers without the admin token (keep it off the
        # public internet then: a private network or the proxy's allow list).
        "METRICS_PUBLIC": _bool(env, "METRICS_PUBLIC", False),
        # "text" (one line per event) or "json" (one JSON object per line).
        "LOG_FORMAT": _choice(env, "LOG_FORMAT", ("text", "json")),
        # host:port where each Celery worker serves its own /metrics (its
        # provider answers and batch latency; empty: none). No token: bind it
        # to a private network, like METRICS_PUBLIC.
        "WORKER_METRICS_BIND": _bind(env, "WORKER_METRICS_BIND"),
        # Seconds /readyz waits for the broker's answer.
        "READINESS_TIMEOUT": _more_than_zero(env, "READINESS_TIMEOUT", 2.0),
        # PROMETHEUS_MULTIPROC_DIR, read by prometheus-client itself: the
        # folder gunicorn's workers share their metrics through
        # (gunicorn.conf.py makes a fresh one when it is not set).
    }
