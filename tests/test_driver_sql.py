"""Statements on the driver's cursor store what Core stores, and fail as Core does."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import JSON, Column, Integer, MetaData, String, Table, exc, make_url, select
from sqlalchemy.dialects import sqlite

from newsletter.driver_sql import DriverInsert
from newsletter.extensions import db
from newsletter.models import (
    ConsentEvent,
    ConsentKind,
    Delivery,
    DeliveryKind,
    DeliveryStatus,
    Erasure,
    Status,
    Subscriber,
    UTCDateTime,
)
from newsletter.subscriptions.erased import suppressed_among, suppressed_hashes
from tests.conftest import is_postgresql
from tests.faults.tcp_proxy import TcpProxy

SUBSCRIBERS = Subscriber.__table__
WHEN = datetime(2026, 12, 7, 8, 30, 15, 123456, tzinfo=UTC)


def _rows(table: Table, **where: Any) -> list[dict[str, Any]]:
    """Every column of the matching rows, read back through the ORM's types, id left out."""
    query = select(table).filter_by(**where).order_by(table.c.id)
    return [
        {key: value for key, value in row._mapping.items() if key != "id"}
        for row in db.session.execute(query)
    ]


def _subscriber(email: str) -> int:
    with db.engine.begin() as connection:
        (row,) = DriverInsert(SUBSCRIBERS, returning=("id",)).run(
            connection, [{"email": email, "status": Status.CONFIRMED}]
        )
    return row[0]


@pytest.mark.parametrize("model", [Subscriber, ConsentEvent, Delivery])
def test_a_row_reads_back_as_the_same_row_written_by_core(app: Flask, model: type) -> None:
    table = model.__table__
    with app.app_context():
        owner = _subscriber("owner@example.com") if model is not Subscriber else None
        rows = {
            Subscriber: lambda n: {
                "email": f"r{n}@example.com",
                "public_id": f"public-{n}",
                "status": Status.PENDING,
                "name": "Zoë «Ω»",
                "source": None,
                "created_at": WHEN,
                "updated_at": WHEN,
                "last_confirmation_at": WHEN,
            },
            ConsentEvent: lambda n: {
                "subscriber_id": owner,
                "kind": ConsentKind.SIGNUP,
                "at": WHEN,
                "ip": f"192.0.2.{n}",
                "wording": "Subscribe ✓",
                "detail": {"n": n, "note": "é"} if n else None,
            },
            Delivery: lambda n: {
                "kind": DeliveryKind.CONFIRMATION,
                "subscriber_id": owner,
                "message_key": f"key-{n}",
                "next_attempt_at": WHEN,
                "created_at": WHEN,
            },
        }[model]
        with db.engine.begin() as connection:
            connection.execute(table.insert(), [rows(0), rows(1)])
        core = _rows(table)
        db.session.rollback()
        with db.engine.begin() as connection:
            connection.execute(table.delete())
        with db.engine.begin() as connection:
            DriverInsert(table).run(connection, [rows(0), rows(1)])
        ours = _rows(table)
    assert len(core) == 2
    assert ours == core


def test_columns_left_out_take_their_defaults(app: Flask) -> None:
    before = datetime.now(UTC)
    with app.app_context():
        owner = _subscriber("owner@example.com")
        with db.engine.begin() as connection:
            DriverInsert(Delivery.__table__).run(
                connection, [{"kind": DeliveryKind.CONFIRMATION, "subscriber_id": owner}] * 2
            )
        first, second = _rows(Delivery.__table__)
        (subscriber,) = _rows(SUBSCRIBERS)
    after = datetime.now(UTC)
    assert first["status"] is DeliveryStatus.QUEUED
    assert first["attempts"] == 0
    assert before <= first["next_attempt_at"] <= after
    assert before <= first["created_at"] <= after
    assert first["sent_at"] is None
    assert len(first["message_key"]) == 36
    assert first["message_key"] != second["message_key"]  # a callable default, called per row
    assert subscriber["round"] == 0
    assert subscriber["soft_bounces"] == 0
    assert len(subscriber["public_id"]) == 16


def test_conflicts_are_skipped_and_return_nothing(app: Flask) -> None:
    insert = DriverInsert(SUBSCRIBERS, skip_conflicts_on="email", returning=("email", "id"))
    with app.app_context():
        with db.engine.begin() as connection:
            first = insert.run(connection, [{"email": "a@example.com", "status": Status.PENDING}])
        with db.engine.begin() as connection:
            again = insert.run(
                connection,
                [
                    {"email": "b@example.com", "status": Status.PENDING},
                    {"email": "a@example.com", "status": Status.CONFIRMED},
                    {"email": "c@example.com", "status": Status.PENDING},
                ],
            )
        stored = {row["email"]: row["status"] for row in _rows(SUBSCRIBERS)}
    assert [email for email, _ in first] == ["a@example.com"]
    assert [email for email, _ in again] == ["b@example.com", "c@example.com"]
    assert len({id_ for _, id_ in first + again}) == 3
    assert stored == {
        "a@example.com": Status.PENDING,  # the conflict changed nothing
        "b@example.com": Status.PENDING,
        "c@example.com": Status.PENDING,
    }


def test_a_touched_conflict_returns_the_stored_row_as_core_reads_it(app: Flask) -> None:
    """The signup path's insert: a known address's row comes back as stored, unchanged."""
    insert = DriverInsert(
        SUBSCRIBERS,
        touch_conflicts_on="email",
        returning=("email", "public_id", "status", "last_confirmation_at"),
    )
    with app.app_context():
        with db.engine.begin() as connection:
            first = insert.run(
                connection,
                [{"email": "a@example.com", "public_id": "p-1", "status": Status.CONFIRMED,
                  "last_confirmation_at": WHEN}],
            )  # fmt: skip
        with db.engine.begin() as connection:
            again = insert.run(
                connection,
                [
                    {"email": "a@example.com", "public_id": "p-2", "status": Status.PENDING},
                    {"email": "b@example.com", "public_id": "p-3", "status": Status.PENDING},
                ],
            )
        stored = _rows(SUBSCRIBERS)
    assert first == [("a@example.com", "p-1", Status.CONFIRMED, WHEN)]
    # Every row answers: the known one as it was (an enum, an aware time), the new one new.
    assert again == [
        ("a@example.com", "p-1", Status.CONFIRMED, WHEN),
        ("b@example.com", "p-3", Status.PENDING, None),
    ]
    assert [(r["email"], r["public_id"], r["status"]) for r in stored] == [
        ("a@example.com", "p-1", Status.CONFIRMED),  # the conflict changed nothing
        ("b@example.com", "p-3", Status.PENDING),
    ]
    with pytest.raises(ValueError, match="skipped or touched"):
        DriverInsert(SUBSCRIBERS, skip_conflicts_on="email", touch_conflicts_on="email")


def test_a_driver_error_is_sqlalchemys_and_nothing_is_kept(app: Flask) -> None:
    with app.app_context():
        owner = _subscriber("owner@example.com")
        with pytest.raises(exc.IntegrityError), db.engine.begin() as connection:
            DriverInsert(ConsentEvent.__table__).run(
                connection,
                [
                    {"subscriber_id": owner, "kind": ConsentKind.SIGNUP},
                    {"subscriber_id": owner + 1000, "kind": ConsentKind.SIGNUP},  # no such row
                ],
            )
        assert _rows(ConsentEvent.__table__) == []


def test_suppressed_among_agrees_with_suppressed_hashes(app: Flask) -> None:
    statuses = {
        "h-bounced": Status.BOUNCED,
        "h-complained": Status.COMPLAINED,
        "h-unsubscribed": Status.UNSUBSCRIBED,
        "h-confirmed": Status.CONFIRMED,
    }
    with app.app_context():
        db.session.add_all(
            Erasure(email_hash=digest, prior_status=status) for digest, status in statuses.items()
        )
        db.session.commit()
        asked = [*statuses, "h-never-seen"]
        expected = set(db.session.scalars(suppressed_hashes().where(Erasure.email_hash.in_(asked))))
        with db.engine.connect() as connection:
            found = suppressed_among(connection, asked)
            none = suppressed_among(connection, [])
            one = suppressed_among(connection, ["h-complained"])
    assert expected == {"h-bounced", "h-complained"}
    assert found == expected
    assert none == set()
    assert one == {"h-complained"}


def test_a_lost_connection_is_an_operational_error_and_is_invalidated(
    make_app, database_uri: str, tmp_path: Path
) -> None:
    """As Core would: the error handlers answer 503, and the pool drops the dead connection."""
    if not is_postgresql(database_uri):
        pytest.skip("a server connection to lose: PostgreSQL only (SQLite has none)")
    url = make_url(database_uri)
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
    proxy.start()
    try:
        app = make_app(
            SQLALCHEMY_DATABASE_URI=url.set(host="127.0.0.1", port=proxy.port).render_as_string(
                False
            )
        )
        with app.app_context():
            connection = db.engine.connect()
            connection.exec_driver_sql("SELECT 1")
            proxy.stop()
            with pytest.raises(exc.OperationalError) as raised:
                DriverInsert(SUBSCRIBERS).run(
                    connection, [{"email": "lost@example.com", "status": Status.PENDING}]
                )
            assert raised.value.connection_invalidated
            assert connection.invalidated
            connection.close()
            proxy.start()
            with db.engine.connect() as fresh:  # the pool hands out a live one
                assert fresh.exec_driver_sql("SELECT 1").scalar() == 1
    finally:
        proxy.stop()


def test_a_statement_the_database_rejects_is_an_error_not_a_crash(app: Flask) -> None:
    """A missing table (a database not yet migrated): SQLAlchemy's error, with the statement."""
    missing = Table(
        "no_such_table", MetaData(), Column("id", Integer, primary_key=True), Column("n", Integer)
    )
    with (
        app.app_context(),
        pytest.raises(exc.DBAPIError) as raised,
        db.engine.begin() as connection,
    ):
        DriverInsert(missing).run(connection, [{"n": 1}])
    assert "no_such_table" in str(raised.value)
    assert "[SQL:" in str(raised.value)


def test_timestamps_are_stored_in_utc(app: Flask) -> None:
    """The UTC column's own bind step runs: a time given in another zone is stored as UTC."""
    east = WHEN.astimezone(timezone(timedelta(hours=5)))
    with app.app_context():
        with db.engine.begin() as connection:
            DriverInsert(SUBSCRIBERS).run(
                connection,
                [{"email": "tz@example.com", "status": Status.PENDING, "created_at": east}],
            )
        (row,) = _rows(SUBSCRIBERS)
    assert row["created_at"] == WHEN
    assert row["created_at"].utcoffset() == timedelta(0)


def test_a_misspelt_column_is_refused_not_stored_as_null(app: Flask) -> None:
    with (
        app.app_context(),
        db.engine.begin() as connection,
        pytest.raises(exc.ArgumentError, match="emial"),
    ):
        DriverInsert(SUBSCRIBERS).run(connection, [{"emial": "x@example.com"}])


def test_awkward_column_names_json_left_out_and_refused_values(app: Flask) -> None:
    """A column name the driver sees escaped; a JSON column left out is SQL NULL, as Core's."""
    scratch = Table(
        "driver_sql_scratch",
        MetaData(),
        Column("id", Integer, primary_key=True),
        Column("user id", String(20)),
        Column("doc", JSON),
        Column("at", UTCDateTime()),
    )
    insert = DriverInsert(scratch, returning=("id", "user id"))
    with app.app_context():
        scratch.create(db.engine)
        try:
            with db.engine.begin() as connection:
                returned = insert.run(connection, [{"user id": "a"}, {"user id": "b", "doc": None}])
            with db.engine.connect() as connection:
                stored = connection.execute(
                    select(scratch.c["user id"], scratch.c.doc.is_(None)).order_by(scratch.c.id)
                ).all()
            with (
                pytest.raises(exc.StatementError, match="naive datetime"),
                db.engine.begin() as connection,
            ):
                insert.run(connection, [{"user id": "c", "at": datetime(2026, 1, 1)}])
        finally:
            scratch.drop(db.engine)
    assert [user for _, user in returned] == ["a", "b"]
    # Left out: SQL NULL; given as None: JSON null, as Core stores each.
    assert [tuple(row) for row in stored] == [("a", True), ("b", False)]


def test_a_server_side_default_is_refused_rather_than_skipped() -> None:
    table = Table(
        "with_server_default",
        MetaData(),
        Column("id", Integer, primary_key=True),
        Column("n", Integer, server_default="7"),
    )
    with pytest.raises(TypeError, match="server-side default"):
        DriverInsert(table)._plan(sqlite.dialect())
