"""What a signup of a known address adds to its batch's statements, on the driver's cursor.

On the signup path (``service.admit``): a signup that mails a known address
must not take measurably longer than one of a new address, or its time
tells a stranger the address was on the list. Through Core these statements
took about 0.3 ms more than the new address's (``bench/signup_timing.py``,
2026-12-07). ``driver_sql.py`` says what running on the driver gives up.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection, Dialect

from ..driver_sql import execute_many, fetch_all
from ..models import ConsentKind, Status, Subscriber

# Our enums' own constants, never input.
_QUEUED = ConsentKind.CONFIRMATION_QUEUED.value
_PENDING = Status.PENDING.value
_COUNT = (
    "SELECT subscriber_id, count(*) FROM consent_events"  # noqa: S608
    f" WHERE kind = '{_QUEUED}' AND at > {{p}} AND subscriber_id {{among}}"
    " GROUP BY subscriber_id"
)
_RESEND = "UPDATE subscribers SET last_confirmation_at = {p}, updated_at = {p} WHERE id = {p}"
_RESUBSCRIBE = (
    f"UPDATE subscribers SET status = '{_PENDING}', name = {{p}}, source = {{p}},"  # noqa: S608
    " confirmed_at = NULL, last_confirmation_at = {p}, updated_at = {p} WHERE id = {p}"
)
_MARK = {"postgresql": "%s", "sqlite": "?"}
_AMONG = {"postgresql": "= ANY(%s)", "sqlite": "IN (SELECT value FROM json_each(?))"}


def _stamp(dialect: Dialect) -> Callable[[datetime | None], Any]:
    """A time as the dialect stores ours (SQLite: text, compared as text)."""
    process = Subscriber.__table__.c.updated_at.type.dialect_impl(dialect).bind_processor(dialect)
    return process or (lambda value: value)


def confirmations_since(
    connection: Connection, subscriber_ids: Sequence[int], since: datetime
) -> dict[int, int]:
    """Confirmation emails queued after ``since`` for each of ``subscriber_ids`` that had one."""
    dialect = connection.dialect
    sql = _COUNT.format(p=_MARK[dialect.name], among=_AMONG[dialect.name])
    ids = list(subscriber_ids)
    listed = json.dumps(ids) if dialect.name == "sqlite" else ids
    return dict(fetch_all(connection, sql, [_stamp(dialect)(since), listed]))


def resend(connection: Connection, subscriber_ids: Sequence[int], now: datetime) -> None:
    """Stamp the pending subscribers sent a new link ``now``."""
    stamp = _stamp(connection.dialect)(now)
    sql = _RESEND.format(p=_MARK[connection.dialect.name])
    execute_many(connection, sql, [(stamp, stamp, id_) for id_ in subscriber_ids])


def resubscribe(
    connection: Connection,
    rows: Sequence[tuple[int, str | None, str | None, datetime | None]],
    now: datetime,
) -> None:
    """Make each ``(id, name, source, last_confirmation_at)`` pending again, from ``now``."""
    stamp = _stamp(connection.dialect)
    sql = _RESUBSCRIBE.format(p=_MARK[connection.dialect.name])
    execute_many(
        connection,
        sql,
        [(name, source, stamp(last), stamp(now), id_) for id_, name, source, last in rows],
    )
