"""A migration run beside a busy table waits a few seconds at a time, never holding the rest up.

PostgreSQL queues every query on a table behind an ``ALTER TABLE`` waiting
for it: a migration started while a dispatcher's batch was in flight (up to
``DISPATCH_LEASE``) stopped every signup until the batch ended.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time

import psycopg
import pytest
from flask_migrate import downgrade, upgrade
from sqlalchemy import inspect

from newsletter import MIGRATIONS_DIR
from newsletter.extensions import db
from tests.conftest import is_postgresql, libpq_url
from tests.fresh_python import ROOT


def test_a_migration_behind_a_batch_in_flight_lets_others_by_and_tries_again(
    make_app, database_uri, caplog
):
    if not is_postgresql(database_uri):
        pytest.skip("PostgreSQL's lock queue: SQLite has one writer, and a busy timeout")
    # One pooled connection, kept: the one the migration ran on is the one checked after.
    app = make_app(
        MIGRATION_LOCK_TIMEOUT=0.3,
        MIGRATION_LOCK_TRIES=40,
        SQLALCHEMY_ENGINE_OPTIONS={"pool_size": 1, "max_overflow": 0},
    )
    with app.app_context():
        downgrade(directory=str(MIGRATIONS_DIR), revision="0011_waited_for_first")
        db.engine.dispose()
    conninfo = libpq_url(database_uri)
    migrated: list[float] = []
    failures: list[BaseException] = []

    def migrate() -> None:
        try:
            with app.app_context():
                upgrade(directory=str(MIGRATIONS_DIR))  # 0012 alters posts
            migrated.append(time.monotonic())
        except BaseException as exc:  # raised below, in the test's thread
            failures.append(exc)

    caplog.set_level(logging.WARNING, logger="alembic.env")
    with (
        psycopg.connect(conninfo) as holder,
        psycopg.connect(conninfo, autocommit=True, options="-c statement_timeout=3000") as reader,
    ):
        holder.execute("SELECT count(*) FROM posts")  # a transaction reading posts, left open
        migration = threading.Thread(target=migrate)
        migration.start()
        time.sleep(1.0)  # the migration has waited, given up and tried again by now
        started = time.monotonic()
        # A signup's read, say; behind a migration that waits as long as it must, it
        # waits for the batch too (cut at 3 s here, or the test would wait for ever).
        reader.execute("SELECT count(*) FROM posts").fetchone()
        waited = time.monotonic() - started
        assert not migrated, "the migration ran while the table was held"
        released = time.monotonic()
        holder.rollback()  # the batch is done
        migration.join(30)
    assert not failures, failures
    assert migrated and migrated[0] >= released
    assert waited < 0.9  # at most one lock wait (0.3 s) behind the migration, not the batch
    assert any("trying again" in r.getMessage() for r in caplog.records)
    with app.app_context():
        assert "edited_at" in {c["name"] for c in inspect(db.engine).get_columns("posts")}
        with db.engine.connect() as connection:  # the pooled connection waits as before
            assert connection.exec_driver_sql("SHOW lock_timeout").scalar() == "0"
        db.engine.dispose()


def test_an_index_build_stopped_halfway_is_built_again(make_app, database_uri):
    """A lock wait cut short mid ``CREATE INDEX CONCURRENTLY`` leaves an invalid index.

    ``IF NOT EXISTS`` alone kept it: no claim would have used it.
    """
    if not is_postgresql(database_uri):
        pytest.skip("CREATE INDEX CONCURRENTLY is PostgreSQL's")
    app = make_app()
    valid = (
        "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
        "WHERE c.relname = 'ix_delivery_due_waited_for'"
    )
    with app.app_context():
        downgrade(directory=str(MIGRATIONS_DIR), revision="0011_waited_for_first")
        with db.engine.begin() as connection:  # as a build stopped halfway leaves it
            connection.exec_driver_sql(
                "UPDATE pg_index SET indisvalid = false WHERE indexrelid = "
                "'ix_delivery_due_waited_for'::regclass"
            )
            connection.exec_driver_sql(
                "UPDATE alembic_version SET version_num = '0010_deliveries_unanswered'"
            )
            assert connection.exec_driver_sql(valid).scalar() is False
        upgrade(directory=str(MIGRATIONS_DIR))
        with db.engine.connect() as connection:
            assert connection.exec_driver_sql(valid).scalar() is True
        db.engine.dispose()


def test_two_upgrades_at_once_run_one_after_the_other(make_app, database_uri):
    """Two containers' `db upgrade` at the same time: the second failed with DuplicateColumn.

    Both had read the schema's version, then queued for the same table. Two
    processes, as two containers are (Alembic's context is one per process).
    """
    if not is_postgresql(database_uri):
        pytest.skip("PostgreSQL's advisory lock: SQLite's writers' gate lets one in at a time")
    app = make_app()
    with app.app_context():
        downgrade(directory=str(MIGRATIONS_DIR), revision="0011_waited_for_first")
        db.engine.dispose()
    conninfo = libpq_url(database_uri)
    env = {**os.environ, "SECRET_KEY": "test", "DATABASE_URL": database_uri}
    command = [sys.executable, "-m", "flask", "--app", "wsgi", "db", "upgrade"]
    with psycopg.connect(conninfo) as holder:
        holder.execute("SELECT count(*) FROM posts")  # both queue behind this (< 5 s)
        runs = [
            subprocess.Popen(
                command,
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            for _ in range(2)
        ]
        time.sleep(3.0)  # both started, read the version, and wait
        holder.rollback()
        outputs = [run.communicate(timeout=60)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    with app.app_context():
        assert "edited_at" in {c["name"] for c in inspect(db.engine).get_columns("posts")}
        db.engine.dispose()
