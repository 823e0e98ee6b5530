"""Small database helpers the dialects disagree on."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

from sqlalchemy import ScalarResult, Select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session


def _insert(bind: Session | Engine) -> Any:
    """The dialect's ``insert``, the one with ``ON CONFLICT`` clauses."""
    engine = bind if isinstance(bind, Engine) else bind.get_bind()
    return postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert


def insert_ignoring_conflicts(bind: Session | Engine, model: Any, index: list[str]) -> Any:
    """An ``INSERT ... ON CONFLICT (index) DO NOTHING`` for this session's or engine's dialect."""
    return _insert(bind)(model).on_conflict_do_nothing(index_elements=index)


def upsert(bind: Session | Engine, model: Any, index: list[str], values: dict[str, Any]) -> Any:
    """An ``INSERT ... ON CONFLICT (index) DO UPDATE`` of ``values`` (the index's columns kept)."""
    changed = {name: value for name, value in values.items() if name not in index}
    return (
        _insert(bind)(model)
        .values(values)
        .on_conflict_do_update(index_elements=index, set_=changed)
    )


def is_postgresql(session: Session) -> bool:
    """True when the session talks to PostgreSQL."""
    return session.get_bind().dialect.name == "postgresql"


def take_sqlite_write_lock(session: Session) -> None:
    """On SQLite, hold the database's write lock from here to commit.

    SQLite has no row locks and ignores ``FOR UPDATE``; a write statement
    (even one that changes nothing) opens the transaction with the write
    lock, so the reads that follow see the latest data and nobody else
    writes until we commit. Concurrent callers wait on the busy timeout.
    """
    if not is_postgresql(session):
        session.execute(text("UPDATE subscribers SET id = id WHERE 0 = 1"))


# The key of the PostgreSQL advisory lock between digest triggers and erasures.
_RECIPIENTS_LOCK = 0x6E6C7274  # "nlrt"


def hold_recipients(session: Session, exclusive: bool) -> None:
    """On PostgreSQL, hold the trigger-or-erasure lock until commit (a trigger ``exclusive``).

    Held exclusive, no subscriber is erased meanwhile; shared, no digest is
    triggered. A trigger copies every confirmed subscriber into the ledger in one
    statement: an erasure committing meanwhile failed it on the foreign key.
    Erasures share the lock: they wait on each other only while a trigger
    waits for it, and a trigger waits for erasures in flight (one waiting on a
    batch being sent, up to the lease). SQLite needs none: its writers
    already go one at a time.
    """
    if is_postgresql(session):
        lock = "pg_advisory_xact_lock" if exclusive else "pg_advisory_xact_lock_shared"
        session.execute(text(f"SELECT {lock}(:key)"), {"key": _RECIPIENTS_LOCK})


# The first of the two keys of PostgreSQL advisory locks held per address.
_ADDRESS_LOCKS = 0x6E6C6164  # "nlad"


def address_lock_key(email: str) -> int:
    """The lock ``hold_addresses`` takes for an address: the order to take them in too."""
    return int.from_bytes(hashlib.blake2b(email.encode(), digest_size=4).digest(), "big") >> 1


def hold_addresses(bind: Session | Connection, emails: Iterable[str]) -> None:
    """On PostgreSQL, until commit, one lock per address, taken in ``address_lock_key`` order.

    A new address has no row to lock: a signup inserting it and a webhook
    about it (a bounce to stop it by its hash) could each miss the other's
    uncommitted write, and the address stayed mailable. Both hold these.
    """
    dialect = bind.dialect if isinstance(bind, Connection) else bind.get_bind().dialect
    if dialect.name != "postgresql":
        return
    keys = sorted({address_lock_key(email) for email in emails})
    if not keys:
        return
    calls = ", ".join(f"pg_advisory_xact_lock({_ADDRESS_LOCKS}, :k{n})" for n in range(len(keys)))
    bind.execute(text(f"SELECT {calls}"), {f"k{n}": key for n, key in enumerate(keys)})


def locked(session: Session, stmt: Select[Any]) -> ScalarResult[Any]:
    """Run ``stmt`` with its rows locked until commit, on PostgreSQL and SQLite alike."""
    take_sqlite_write_lock(session)
    stmt = stmt.with_for_update().execution_options(populate_existing=True)
    return session.scalars(stmt)
