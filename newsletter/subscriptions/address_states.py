"""Where a batch of signups' addresses stand, read with their row locks on the driver's cursor.

Every signup of a batch pays for this read, new addresses too (see
``service.admit``): through SQLAlchemy Core it cost each signup about a
sixth more CPU (``bench/signup_cpu.py``, 2026-12-07), on the driver a
fraction of that (``driver_sql.py`` says what is given up).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import NamedTuple

from sqlalchemy.engine import Connection

from ..driver_sql import fetch_all
from ..models import ConsentKind, Status, Subscriber

# The kind is our enum's own constant, never input. PostgreSQL locks the rows (in
# address order, as the batch's insert took them); SQLite's write lock is held
# already, taken by that insert.
_QUEUED = ConsentKind.CONFIRMATION_QUEUED.value
_COLUMNS = (
    "s.id, s.email, s.status, s.name, s.last_confirmation_at, (SELECT count(*)"  # noqa: S608
    f" FROM consent_events c WHERE c.subscriber_id = s.id AND c.kind = '{_QUEUED}'"
)
_SQL = {
    "postgresql": f"SELECT {_COLUMNS} AND c.at > %s) FROM subscribers s"  # noqa: S608
    " WHERE s.email = ANY(%s) ORDER BY s.email FOR UPDATE OF s",
    "sqlite": f"SELECT {_COLUMNS} AND c.at > ?) FROM subscribers s"  # noqa: S608
    " WHERE s.email IN (SELECT value FROM json_each(?)) ORDER BY s.email",
}


class AddressState(NamedTuple):
    """One stored address: its subscriber's state and the confirmations it had since a time."""

    id: int
    email: str
    status: Status
    name: str | None
    last_confirmation_at: datetime | None
    sent_since: int


def address_states(
    connection: Connection, emails: Sequence[str], since: datetime
) -> list[AddressState]:
    """The stored ones of ``emails``, locked until commit, with confirmations since ``since``."""
    dialect = connection.dialect
    # consent_events.at's type too; as the dialect has it (SQLite's keeps text).
    stamp = Subscriber.__table__.c.last_confirmation_at.type.dialect_impl(dialect)
    bind, read = stamp.bind_processor(dialect), stamp.result_processor(dialect, None)
    listed = json.dumps(list(emails)) if dialect.name == "sqlite" else list(emails)
    rows = fetch_all(connection, _SQL[dialect.name], [bind(since) if bind else since, listed])
    return [
        AddressState(id, email, Status(status), name, read(last) if read else last, sent_since)
        for id, email, status, name, last, sent_since in rows
    ]
