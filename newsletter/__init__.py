"""The newsletter service: ``create_app()`` builds it from the environment."""

from __future__ import annotations

import fcntl
import logging
import re
import sqlite3
from collections.abc import Mapping
from email.utils import getaddresses
from pathlib import Path
from typing import Any

import click
from flask import Flask, Response, request
from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError
from werkzeug.middleware.proxy_fix import ProxyFix

from config import ConfigError, database_url, from_env, sends_elsewhere

from . import logs, security
from .errors import register_error_handlers, vary_on_accept
from .extensions import cors, db, limiter, migrate
from .providers import ProviderConfigError, build_provider
from .providers.base import header_safe
from .sqlite_writers import BUSY_TIMEOUT_SECONDS, GatedConnection
from .subscriptions.captcha import CaptchaConfigError, build_verifier
from .tokens import Tokens
from .web import CappedRequest, EmailConverter, NoSessions, RowIdConverter

log = logging.getLogger(__name__)
MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
# What makes flask-cors take an origin for a regular expression.
_REGEX_LOOKING = frozenset("[]()?$^*\\")


def create_app(overrides: Mapping[str, Any] | None = None) -> Flask:
    """Build the app: settings, database, extensions, blueprints, errors, CLI, dispatch."""
    app = Flask(__name__, instance_relative_config=True)
    app.config.update(from_env())
    app.config.update(overrides or {})
    Path(app.instance_path).mkdir(parents=True, exist_ok=True)
    app.config["INSTANCE_PATH"] = app.instance_path

    logs.configure_logging(app.config["LOG_FORMAT"])
    _check_secret_key(app)
    _check_mail_identity(app)
    _configure_database(app)
    _configure_web(app)
    _configure_sending(app)
    _register_blueprints(app)
    register_error_handlers(app)
    security.install(app)
    logs.install(app)
    from .cli import register_cli

    register_cli(app)
    _start_embedded_services(app)
    return app


def _check_secret_key(app: Flask) -> None:
    if app.config["SECRET_KEY"]:
        pass
    elif app.debug or app.testing:
        app.config["SECRET_KEY"] = "insecure-development-key"  # noqa: S105 (debug only)
        log.warning("SECRET_KEY is not set: using an insecure development key")
    else:
        raise ConfigError(
            "SECRET_KEY is not set: export SECRET_KEY=<a long random string> "
            "(python -c 'import secrets; print(secrets.token_hex(32))')"
        )
    app.extensions["newsletter.tokens"] = Tokens(
        app.config["SECRET_KEY"], app.config["SECRET_KEY_FALLBACKS"], app.config["CONFIRM_MAX_AGE"]
    )


def _check_mail_identity(app: Flask) -> None:
    """MAIL_FROM and NEWSLETTER_NAME go into every email's headers: one line, a real sender."""
    for name in ("MAIL_FROM", "NEWSLETTER_NAME"):
        value = app.config[name]
        if header_safe(value) != value.strip():
            raise ConfigError(f"{name} must be a single line with no control characters")
    entries = getaddresses([app.config["MAIL_FROM"]])
    # Two different parts: a list (parseaddr kept the first and dropped the rest unsaid),
    # or a name with a bare comma. "a@x <a@x>" reads as the one address twice.
    if len({address for _, address in entries}) > 1:
        raise ConfigError(
            "MAIL_FROM must be one address, not a list (quote a name that holds a comma)"
        )
    address = entries[0][1] if entries else ""
    if "@" not in address:
        raise ConfigError(
            f"MAIL_FROM must be an address such as 'Newsletter <news@example.org>', "
            f"not {app.config['MAIL_FROM']!r}"
        )
    domain = address.rpartition("@")[2].lower()
    if app.config["EMAIL_PROVIDER"] != "outbox" and "." not in domain.strip("."):
        # Providers refuse a sender at localhost (SendGrid for every message), or send
        # mail that no inbox takes; fine for a local relay that catches everything.
        log.warning(
            "MAIL_FROM is %s, a sender no real inbox accepts mail from: set MAIL_FROM to "
            "an address on your sending domain",
            address,
        )


def _configure_database(app: Flask) -> None:
    url = database_url(app.config["DATABASE_URL"], app.instance_path)
    app.config.setdefault("SQLALCHEMY_DATABASE_URI", url)
    app.config.setdefault("SQLALCHEMY_ENGINE_OPTIONS", {"pool_pre_ping": True})
    _check_database_url(app.config["SQLALCHEMY_DATABASE_URI"])
    if app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
        _check_sqlite_folder(app.config["SQLALCHEMY_DATABASE_URI"], app.instance_path)
        options = dict(app.config["SQLALCHEMY_ENGINE_OPTIONS"])
        options["connect_args"] = {"factory": GatedConnection, **options.get("connect_args", {})}
        app.config["SQLALCHEMY_ENGINE_OPTIONS"] = options
    db.init_app(app)
    migrate.init_app(app, db, directory=str(MIGRATIONS_DIR), render_as_batch=True)


def _check_database_url(url: str) -> None:
    """Refuse, at start, a database URL SQLAlchemy cannot read, or whose driver is missing.

    Either ended ``flask`` (then "No such command", a driver missing) and
    every gunicorn worker in a traceback. The URL itself is never repeated:
    it may hold a password.
    """
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):  # ValueError: a port that is no number
        raise ConfigError(
            "DATABASE_URL is not a URL SQLAlchemy can read: write it like "
            "postgresql://user:password@host/newsletter (special characters %-encoded) "
            "or sqlite:////srv/newsletter.db"
        ) from None
    try:
        dialect = parsed.get_dialect()
    except NoSuchModuleError:
        raise ConfigError(
            f"DATABASE_URL names {parsed.drivername}://, a database SQLAlchemy does not know: "
            "use postgresql:// or sqlite:///"
        ) from None
    try:
        dialect.import_dbapi()  # what creating the engine imports
    except ImportError as exc:
        raise ConfigError(
            f"DATABASE_URL needs the {dialect.name}+{dialect.driver} driver, which is not "
            f"installed ({exc}): use postgresql:// (psycopg 3) or sqlite:///"
        ) from None


def _check_sqlite_folder(url: str, instance_path: str) -> None:
    """Refuse, at start, a SQLite file whose folder is missing: SQLite would fail every query.

    A relative path is under the instance folder, where Flask-SQLAlchemy puts it.
    """
    path = make_url(url).database
    if not path or path == ":memory:" or "uri=true" in url.partition("?")[2]:
        return
    file = Path(instance_path) / path
    if not file.parent.is_dir():
        raise ConfigError(
            f"DATABASE_URL names the SQLite file {path}, but its folder {file.parent} does not "
            "exist: create it, or fix the path"
        )
    if file.is_dir():
        raise ConfigError(f"DATABASE_URL names the SQLite file {path}, which is a folder")


@event.listens_for(Engine, "connect")
def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """WAL for concurrent readers, a busy timeout for writers, foreign keys enforced."""
    if isinstance(dbapi_connection, sqlite3.Connection):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_SECONDS * 1000)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()
        # SQLite's own lower() folds ASCII only: the admin search for "émile" must find
        # "Émile", as PostgreSQL's does.
        dbapi_connection.create_function("lower", 1, _lower, deterministic=True)


def _lower(value: Any) -> Any:
    """SQL ``lower()`` for SQLite, Unicode-aware; anything but text as it is."""
    return value.lower() if isinstance(value, str) else value


def _literal_origins(origins: list[str]) -> list[str | re.Pattern[str]]:
    """The origins for flask-cors, each matching only itself (``*`` aside).

    flask-cors reads a string holding any of ``[]()?$^*\\`` as a regular
    expression: an IPv6 origin (``http://[::1]:8000``) would match others
    and not itself. Those go as a pattern of their escaped text.
    """
    return [
        origin
        if origin == "*" or _REGEX_LOOKING.isdisjoint(origin)
        else re.compile(re.escape(origin) + r"\Z", re.IGNORECASE)
        for origin in origins
    ]


def _retry_after_only_when_told_to_wait(response: Response) -> Response:
    """Flask-Limiter puts ``Retry-After`` on every answer; only a 429 or 503 asks to wait.

    On a 202 it read as "wait before retrying" to a client that had nothing
    to retry. The ``X-RateLimit-*`` headers stay: they say how much is left.
    """
    if response.status_code not in (429, 503):
        del response.headers["Retry-After"]
    return response


def _rate_headers_name_the_nearest_limit(response: Response) -> Response:
    """``X-RateLimit-*`` describe the limit with the least left, not Flask-Limiter's pick.

    With the per-address and per-network limits both on ``POST /subscribe``,
    Flask-Limiter described the first by window: ten signups from one address
    said "30, 20 remaining", and the eleventh was refused. A refused request
    already names the limit it broke.
    """
    limits = limiter.current_limits
    if (
        response.status_code == 429
        or len(limits) < 2
        or "X-RateLimit-Limit" not in response.headers
    ):
        return response
    nearest = min(limits, key=lambda limit: (limit.remaining, limit.reset_at))
    response.headers["X-RateLimit-Limit"] = str(nearest.limit.amount)
    response.headers["X-RateLimit-Remaining"] = str(nearest.remaining)
    response.headers["X-RateLimit-Reset"] = str(nearest.reset_at)
    return response


def _vary_on_origin(response: Response) -> Response:
    """``/subscribe``'s CORS headers depend on the ``Origin``: say so on every answer.

    flask-cors says it only with several origins, and never on an answer to
    an origin it refuses: a shared cache could hand that answer, without
    ``Access-Control-Allow-Origin``, to the publisher's own page.
    """
    if request.path == "/subscribe":
        response.vary.add("Origin")
    return response


def _configure_web(app: Flask) -> None:
    app.url_map.converters["email"] = EmailConverter
    app.url_map.converters["row_id"] = RowIdConverter
    app.session_interface = NoSessions()
    app.request_class = CappedRequest
    proxies = app.config["TRUSTED_PROXY_COUNT"]
    if proxies:
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=proxies, x_proto=proxies, x_host=proxies, x_prefix=proxies
        )
    app.config["RATELIMIT_HEADERS_ENABLED"] = True
    # Every limit is counted, so a 429's Retry-After is the latest of the broken limits'
    # resets: stopped at the first (the shortest window), it said "1 minute" to a client
    # whose hourly limit was also spent, and the retry was refused again.
    app.config["RATELIMIT_FAIL_ON_FIRST_BREACH"] = False
    # Redis down must not fail signups: the limits count in memory until it is back
    # (Flask-Limiter checks now and then, and logs both changes), and any other
    # limiter error lets the request through with a logged traceback.
    app.config["RATELIMIT_IN_MEMORY_FALLBACK_ENABLED"] = True
    app.config["RATELIMIT_SWALLOW_ERRORS"] = True
    if app.config["RATELIMIT_STORAGE_URI"].startswith("redis"):  # rediss, redis+unix too
        # A Redis host that drops packets held every signup for the OS's TCP timeout.
        app.config["RATELIMIT_STORAGE_OPTIONS"] = {"socket_connect_timeout": 1, "socket_timeout": 1}
    # Registered before the limiter's: Flask runs them last to first, so this one sees
    # the headers the limiter added.
    app.after_request(_retry_after_only_when_told_to_wait)
    app.after_request(_rate_headers_name_the_nearest_limit)
    app.after_request(vary_on_accept)
    try:
        limiter.init_app(app)
    except Exception as exc:  # a Redis Cluster down at start: its client connects at once
        raise ConfigError(
            f"RATELIMIT_STORAGE_URL cannot be used ({type(exc).__name__}): is it reachable?"
        ) from None
    if app.config["CORS_ORIGINS"]:
        cors.init_app(
            app,
            resources={r"/subscribe": {"origins": _literal_origins(app.config["CORS_ORIGINS"])}},
            methods=["POST", "OPTIONS"],
            allow_headers=["Content-Type", "Accept"],
            expose_headers=["Retry-After"],  # the widget's script may read a 429's wait
            max_age=86400,
        )
        app.after_request(_vary_on_origin)

    try:
        app.extensions["newsletter.captcha"] = build_verifier(app.config)
    except CaptchaConfigError as exc:
        raise ConfigError(str(exc)) from None

    @app.context_processor
    def _globals() -> dict[str, Any]:
        return {
            "newsletter_name": app.config["NEWSLETTER_NAME"],
            "consent_wording": app.config["CONSENT_WORDING"],
            "captcha": app.extensions["newsletter.captcha"],
        }


def _configure_sending(app: Flask) -> None:
    from .delivery.dispatcher import Pacer
    from .delivery.health import DispatchHealth

    try:
        app.extensions["newsletter.provider"] = build_provider(app.config)
    except ProviderConfigError as exc:
        raise ConfigError(str(exc)) from None
    app.extensions["newsletter.dispatch_health"] = DispatchHealth()
    app.extensions["newsletter.pacer"] = Pacer(app.config["SEND_RATE"])
    if app.config["CELERY_BROKER_URL"]:
        # Scale-out: this process only queues; Celery workers send.
        from .tasks import enqueuer

        app.extensions["newsletter.dispatch_waker"] = enqueuer(
            app.config["CELERY_BROKER_URL"], app.config["DISPATCH_FANOUT"]
        )


def _register_blueprints(app: Flask) -> None:
    from .admin.routes import bp as admin_bp
    from .digests.routes import bp as digests_bp
    from .meta.metrics import bp as metrics_bp
    from .meta.routes import bp as meta_bp
    from .subscriptions.routes import bp as subscriptions_bp
    from .webhooks.routes import bp as webhooks_bp

    for blueprint in (subscriptions_bp, admin_bp, digests_bp, meta_bp, metrics_bp, webhooks_bp):
        app.register_blueprint(blueprint)


def _serving(app: Flask) -> bool:
    """True when this process will serve requests (gunicorn, ``flask run``), not a CLI task."""
    if app.testing:
        return False
    ctx = click.get_current_context(silent=True)
    return ctx is None or ctx.info_name == "run"


def _start_embedded_services(app: Flask) -> None:
    """The embedded default: create the schema if needed, dispatch in a thread."""
    if not _serving(app):
        return
    if not app.config["DATABASE_URL"]:
        _upgrade_schema(app)
    # A dispatcher process publishing to DISPATCH_HEALTH_FILE (gunicorn.conf.py) sends
    # for this host; Celery workers, or cron with DISPATCH_IN_PROCESS=false, elsewhere.
    if not sends_elsewhere(app.config) and not app.config["DISPATCH_HEALTH_FILE"]:
        from .delivery.dispatcher import BackgroundDispatcher
        from .housekeeping import JOBS

        dispatcher = BackgroundDispatcher(app, jobs=JOBS)
        app.extensions["newsletter.dispatch_waker"] = dispatcher.wake
        # Started on the first request so a forking server starts it in each worker.
        app.before_request(dispatcher.start)


def _upgrade_schema(app: Flask) -> None:
    """Apply the migrations to the embedded SQLite database, one process at a time."""
    from flask_migrate import upgrade

    with open(Path(app.instance_path) / "migrate.lock", "w") as lock, app.app_context():
        fcntl.flock(lock, fcntl.LOCK_EX)
        upgrade(directory=str(MIGRATIONS_DIR))
