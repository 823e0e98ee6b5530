"""The ledger's reads find their rows through the indexes migration 0007 left them.

0007 made the digest index partial (digest copies only) and let the unique
(subscriber, digest) constraint serve a subscriber's lookups. A query that
stopped implying ``digest_id IS NOT NULL``, or a constraint led by the other
column, would still answer right, by reading the whole table: only the plan
shows it. PostgreSQL is told to avoid sequential scans (a test's tables are
small enough for one to win); SQLite's planner picks an index it can use.
Whether the index is partial at all, the models-against-migrations test
cannot say (it does not compare predicates): the database's own text does.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from flask import Flask
from sqlalchemy import Select, event, select, text
from sqlalchemy.orm import Session

from newsletter.db_helpers import is_postgresql
from newsletter.delivery.digest_progress import digest_counts, settle, settle_stalled
from newsletter.extensions import db
from newsletter.models import Delivery


def _explain(session: Session, sql: str, parameters: object = ()) -> str:
    """The database's plan for the statement ``sql``, as one text."""
    connection = session.connection()
    if is_postgresql(session):
        connection.exec_driver_sql("SET LOCAL enable_seqscan = off")
        rows = connection.exec_driver_sql(f"EXPLAIN {sql}", parameters).scalars()
    else:
        rows = (
            row[-1] for row in connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}", parameters)
        )
    return "\n".join(rows)


def _plan(session: Session, statement: Select) -> str:
    """The database's plan for ``statement``, its values written in."""
    dialect = session.get_bind().dialect
    return _explain(
        session, str(statement.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))
    )


def _plans_of_what(session: Session, run: Callable[[], object], marker: str) -> list[str]:
    """The plans of the statements ``run`` sends whose text holds ``marker``: the real ones."""
    sent: list[tuple[str, object]] = []

    def keep(conn, cursor, statement, parameters, context, executemany) -> None:
        if marker in statement:
            sent.append((statement, parameters))

    event.listen(db.engine, "before_cursor_execute", keep)
    try:
        run()
    finally:
        event.remove(db.engine, "before_cursor_execute", keep)
    assert sent, f"no statement with {marker!r}"
    return [_explain(session, sql, parameters) for sql, parameters in sent]


def _index_definition(session: Session, name: str) -> str:
    """The database's own text of index ``name``."""
    if is_postgresql(session):
        query = "SELECT indexdef FROM pg_indexes WHERE indexname = :name"
    else:
        query = "SELECT sql FROM sqlite_master WHERE type = 'index' AND name = :name"
    return session.execute(text(query), {"name": name}).scalar_one()


def test_the_digest_index_holds_digest_copies_only(app: Flask) -> None:
    with app.app_context():
        definition = _index_definition(db.session, "ix_delivery_digest_status")
        db.session.rollback()
    assert "digest_id IS NOT NULL" in definition, definition


def test_a_digests_progress_reads_the_partial_digest_index(app: Flask) -> None:
    with app.app_context():
        session = db.session
        # The statements settle, digest_counts and settle_stalled really send.
        pending = _plans_of_what(session, lambda: settle(session, [7]), "EXISTS")
        counts = _plans_of_what(session, lambda: digest_counts(session, 7), "GROUP BY")
        stalled = _plans_of_what(session, lambda: settle_stalled(session), "EXISTS")
        session.rollback()
    for plan in pending + counts:
        assert "ix_delivery_digest_status" in plan, plan
    # settle_stalled's, every minute: either index will do (PostgreSQL may take the
    # pending rows from the due index), a scan of every delivery will not.
    for plan in stalled:
        assert "Seq Scan on deliveries" not in plan, plan
        assert not re.search(r"SCAN (TABLE )?deliveries\b", plan), plan  # SQLite, old or new
        assert "deliveries" in plan, plan  # the plan does read them, by an index


def test_a_subscribers_deliveries_are_found_through_the_unique_constraint(app: Flask) -> None:
    with app.app_context():
        plan = _plan(db.session, select(Delivery).where(Delivery.subscriber_id == 7))
        postgresql = is_postgresql(db.session)
        db.session.rollback()
    if postgresql:
        assert "uq_delivery_subscriber_digest" in plan, plan
    else:  # SQLite names a constraint's index itself: the search on its first column shows it
        assert "USING INDEX sqlite_autoindex_deliveries" in plan, plan
        assert "(subscriber_id=?)" in plan, plan
