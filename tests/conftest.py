"""Fixtures: an app on a real, migrated database; its client; its outbox.

The database is SQLite in a temporary folder unless ``TEST_DATABASE_URL``
names another (``.ci/run`` runs the suite again on PostgreSQL). The schema is
built by the migrations, once per session; every test starts from empty tables.
"""

from __future__ import annotations

import email
import email.policy
import os
import re
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import create_engine, text

from newsletter import MIGRATIONS_DIR, create_app, database_url
from newsletter.delivery.dispatcher import PassStats, dispatch_pass
from newsletter.extensions import db

ADMIN_TOKEN = "test-admin-token"
SECRET = "test-secret-key"


@pytest.fixture(scope="session")
def database_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The test database's URL, with its schema migrated to head."""
    raw = os.environ.get("TEST_DATABASE_URL", "")
    if raw:
        uri = database_url(raw, "")
        engine = create_engine(uri)
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
        engine.dispose()
    else:
        uri = f"sqlite:///{tmp_path_factory.mktemp('db') / 'test.db'}"
    app = create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": uri, "SECRET_KEY": SECRET})
    from flask_migrate import upgrade

    with app.app_context():
        upgrade(directory=str(MIGRATIONS_DIR))
        db.engine.dispose()
    return uri


def is_postgresql(uri: str) -> bool:
    """True when the suite runs on PostgreSQL."""
    return uri.startswith("postgresql")


def libpq_url(uri: str) -> str:
    """The test database's SQLAlchemy URL as psycopg.connect takes it."""
    return uri.replace("postgresql+psycopg://", "postgresql://")


def _empty_tables(uri: str) -> None:
    tables = [t.name for t in reversed(db.metadata.sorted_tables)]
    engine = create_engine(uri)
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
        else:
            for table in tables:
                conn.execute(text(f"DELETE FROM {table}"))  # noqa: S608 (our table names)
    engine.dispose()


@pytest.fixture
def make_app(database_uri: str, tmp_path: Path) -> Iterator[Callable[..., Flask]]:
    """Build an app on the test database with settings overridden per test."""
    apps: list[Flask] = []

    def build(**overrides: Any) -> Flask:
        config: dict[str, Any] = {
            "TESTING": True,
            "SECRET_KEY": SECRET,
            "SQLALCHEMY_DATABASE_URI": database_uri,
            "ADMIN_TOKENS": [ADMIN_TOKEN],
            "OUTBOX_DIR": str(tmp_path / "outbox"),
            "PUBLIC_URL": "http://news.example.org",
            "NEWSLETTER_NAME": "Clinic News",
            "MAIL_FROM": "Clinic News <news@clinic.example.org>",
            "RETRY_BASE_SECONDS": 0.0,
        }
        config.update(overrides)
        app = create_app(config)
        apps.append(app)
        return app

    yield build
    _empty_tables(database_uri)
    for app in apps:
        with app.app_context():
            db.engine.dispose()


@pytest.fixture
def app(make_app: Callable[..., Flask]) -> Flask:
    """The app with the test settings."""
    return make_app()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """A test client of ``app``."""
    return app.test_client()


@pytest.fixture
def admin_headers() -> dict[str, str]:
    """Headers that pass the admin API's authentication."""
    return {"Authorization": f"Bearer {ADMIN_TOKEN}"}


class Outbox:
    """The ``outbox`` provider's folder, read back as parsed email messages."""

    def __init__(self, app: Flask) -> None:
        self.app = app

    @property
    def folder(self) -> Path:
        """Where the messages are written."""
        return Path(self.app.config["OUTBOX_DIR"])

    def dispatch(self) -> PassStats:
        """Run one dispatch pass, as the background thread or cron would."""
        with self.app.app_context():
            try:
                return dispatch_pass()
            finally:
                db.session.remove()

    def messages(self, to: str | None = None) -> list[EmailMessage]:
        """Every message written so far (oldest first), optionally to one address."""
        if not self.folder.exists():
            return []
        files = sorted(self.folder.glob("*.eml"), key=lambda p: p.stat().st_mtime_ns)
        parsed = [
            email.message_from_bytes(p.read_bytes(), policy=email.policy.default) for p in files
        ]
        return [m for m in parsed if to is None or m["To"] == to]

    def links(self, message: EmailMessage, path: str) -> list[str]:
        """The links under ``path`` (say ``/confirm/``) in the message's text part."""
        text_part = message.get_body(("plain",))
        assert text_part is not None
        return re.findall(rf"https?://\S+{re.escape(path)}[^\s<>\"]+", text_part.get_content())

    def confirm_link(self, to: str) -> str:
        """The confirm link of the newest confirmation email to ``to``."""
        messages = self.messages(to)
        assert messages, f"no email to {to}"
        links = self.links(messages[-1], "/confirm/")
        assert len(links) == 1, links
        return links[0]


@pytest.fixture
def outbox(app: Flask) -> Outbox:
    """The app's outbox."""
    return Outbox(app)


def path_of(link: str) -> str:
    """The path of an absolute link, for the test client."""
    return "/" + link.split("://", 1)[1].split("/", 1)[1]


@pytest.fixture
def app_losing_its_database(make_app: Callable[..., Flask], tmp_path: Path) -> Flask:
    """An app whose SQLite folder disappears after start (a volume unmounted, a path deleted).

    Start-up refuses a folder that is missing already, so it goes afterwards.
    """
    folder = tmp_path / "data"
    folder.mkdir()
    app = make_app(SQLALCHEMY_DATABASE_URI=f"sqlite:///{folder / 'db.sqlite'}")
    folder.rmdir()
    return app
