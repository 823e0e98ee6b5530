"""The checks behind ``/healthz`` and ``/readyz``: does each backing service answer?"""

from __future__ import annotations

import logging
from functools import cache

import redis
from kombu import Connection
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from ..extensions import db

log = logging.getLogger(__name__)


# Whether our schema is there, read from the catalog: not ``SELECT 1`` (SQLite answers
# that from a new, empty file: a path mistyped, the file deleted), and not a read of the
# table, which would wait behind a migration's lock on it.
_SCHEMA_PRESENT = {
    "postgresql": text("SELECT to_regclass('subscribers') IS NOT NULL"),
    "sqlite": text(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'subscribers'"
    ),
}


def schema_present() -> bool:
    """Whether the database holds our tables (``SQLAlchemyError`` when it does not answer)."""
    query = _SCHEMA_PRESENT.get(db.session.get_bind().dialect.name, text("SELECT 1"))
    return bool(db.session.scalar(query))


def database_answers() -> bool:
    """True when the database answers and holds our schema; the session is left clean."""
    try:
        if not schema_present():
            log.warning("database check failed: the schema is missing (flask db upgrade?)")
            return False
        return True
    except SQLAlchemyError as exc:
        db.session.rollback()
        log.warning("database check failed: %s", type(exc).__name__)
        return False
    finally:
        db.session.remove()


def schema_behind() -> str | None:
    """The database's migration when it is older than the code's (``db upgrade`` not run).

    ``None`` when it is the code's own, a newer one (a rolling deploy migrated
    first: the migrations add, so the old code still works), or unknown (no
    ``alembic_version``: a schema built another way). A code whose schema is
    behind fails every request that reads a new column: not ready.
    """
    try:
        versions = set(db.session.scalars(text("SELECT version_num FROM alembic_version")))
    except SQLAlchemyError:
        db.session.rollback()
        return None
    finally:
        db.session.remove()
    older = versions & _older_migrations()
    return min(older) if older else None


@cache
def _older_migrations() -> frozenset[str]:
    """Every migration before the code's newest ones (read once: it imports every script).

    Empty when the scripts cannot be read: readiness then does not judge the
    schema, rather than failing every probe.
    """
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from .. import MIGRATIONS_DIR

    try:
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS_DIR))
        scripts = ScriptDirectory.from_config(config)
        heads = set(scripts.get_heads())
        return frozenset(s.revision for s in scripts.walk_revisions() if s.revision not in heads)
    except Exception as exc:  # any failure to read the scripts: no judgement, said once
        log.warning("readiness does not check the schema's version: %s", type(exc).__name__)
        return frozenset()


def broker_answers(url: str, timeout: float) -> bool:
    """True when the Celery broker answers within ``timeout`` seconds (Redis: a PING)."""
    try:
        if url.startswith(("redis://", "rediss://", "unix://")):
            client = redis.Redis.from_url(
                url, socket_timeout=timeout, socket_connect_timeout=timeout
            )
            try:
                return bool(client.ping())
            finally:
                client.close()
        with Connection(url, connect_timeout=timeout) as connection:
            connection.ensure_connection(max_retries=1, timeout=timeout)
            return True
    except Exception as exc:  # any failure to reach the broker means: not ready
        log.warning("broker check failed: %s", type(exc).__name__)
        return False
