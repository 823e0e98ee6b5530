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

from flask import Flask
from sqlalchemy import Select, func, select, text
from sqlalchemy.orm import Session

from newsletter.db_helpers import is_postgresql
from newsletter.delivery.digest_progress import _pending_copy
from newsletter.extensions import db
from newsletter.models import Delivery, DeliveryKind, Digest


def _plan(session: Session, statement: Select) -> str:
    """The database's plan for ``statement``, as one text."""
    dialect = session.get_bind().dialect
    sql = str(statement.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))
    if is_postgresql(session):
        session.execute(text("SET LOCAL enable_seqscan = off"))
        rows = session.execute(text(f"EXPLAIN {sql}")).scalars()
    else:
        rows = (row[-1] for row in session.execute(text(f"EXPLAIN QUERY PLAN {sql}")))
    return "\n".join(rows)


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
        stalled = _plan(
            db.session,
            select(Digest.__table__.c.id).where(~_pending_copy(Digest.__table__.c.id)),
        )
        pending = _plan(db.session, select(_pending_copy(7)))
        counts = _plan(
            db.session,
            select(Delivery.status, func.count())
            .where(Delivery.digest_id == 7, Delivery.kind == DeliveryKind.DIGEST)
            .group_by(Delivery.status),
        )
        db.session.rollback()
    assert "ix_delivery_digest_status" in pending, pending
    assert "ix_delivery_digest_status" in counts, counts
    # settle_stalled's, every minute: either index will do (PostgreSQL may take the
    # pending rows from the due index), a scan of every delivery will not.
    assert "Seq Scan on deliveries" not in stalled, stalled
    assert "SCAN deliveries" not in stalled, stalled


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
