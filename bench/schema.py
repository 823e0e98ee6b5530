"""Bench helper: a fresh database schema, migrated as ``flask db upgrade`` would.

On PostgreSQL the database is created if missing and its ``public`` schema
**dropped and recreated**; a SQLite URL is expected to name a new file.
"""

from __future__ import annotations

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url


def empty_schema(url: str) -> None:
    """Create the database of ``url`` if it does not exist, then drop and recreate its schema."""
    target = make_url(url)
    admin = create_engine(target.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        exists = conn.scalar(
            text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": target.database}
        )
        if not exists:
            conn.execute(text(f'CREATE DATABASE "{target.database}"'))
    admin.dispose()
    engine = create_engine(target)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()


def fresh_schema(url: str) -> None:
    """An empty database at ``url`` with the service's migrations applied."""
    from flask_migrate import upgrade

    from newsletter import MIGRATIONS_DIR, create_app
    from newsletter.extensions import db

    if url.startswith("postgresql"):
        empty_schema(url)
    app = create_app({"TESTING": True, "SECRET_KEY": "bench", "SQLALCHEMY_DATABASE_URI": url})
    with app.app_context():
        upgrade(directory=str(MIGRATIONS_DIR))
        db.engine.dispose()
