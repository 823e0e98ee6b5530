"""The delivery ledger: queue an email with the change that causes it, claim, record.

Claimable rows are ``queued`` or ``sending`` with ``next_attempt_at`` passed.
How a batch is claimed depends on the database:

- PostgreSQL: by row lock (``FOR UPDATE SKIP LOCKED``), held by the
  dispatcher's open transaction through the send until the answers
  ``record`` writes are committed.
  The claim writes nothing, so each message's row is written twice (queued,
  answered) instead of three times; a dispatcher that dies or loses its
  connection lets go of its batch at once, and the batch is sent again. The
  lease still bounds the claim: the transaction may sit idle (through a
  send) that long before the server ends it.
- SQLite (one writer, no row locks): by lease. The claim sets ``sending``,
  pushes ``next_attempt_at`` one lease ahead and commits, so a batch whose
  dispatcher died is claimed again when its lease runs out.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import NamedTuple

from sqlalchemy import (
    ColumnElement,
    Select,
    Update,
    and_,
    bindparam,
    case,
    func,
    or_,
    select,
    text,
    union_all,
    update,
)
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import TextClause

from ..db_helpers import is_postgresql
from ..driver_sql import DriverInsert
from ..models import (
    WAITED_FOR,
    Delivery,
    DeliveryKind,
    DeliveryStatus,
    Status,
    Subscriber,
    utcnow,
)
from ..providers import Outcome, SendResult

WAKE_FLAG = "newsletter.wake_dispatcher"
_CLAIMABLE = (DeliveryStatus.QUEUED, DeliveryStatus.SENDING)
_INSERT_DELIVERIES = DriverInsert(Delivery.__table__)  # on the signup path: driver_sql.py
# Not yet answered: claimed (a lease's ``sending``, or a locked ``queued``) or waiting.
# Two equalities, not ``IN``: SQLite's executemany takes no expanding parameter.
_UNANSWERED = or_(*(Delivery.status == status for status in _CLAIMABLE))


def queue(
    session: Session, kind: DeliveryKind, subscriber_id: int | None = None, **fields
) -> Delivery:
    """Add a delivery to the session; it is due once the session commits."""
    delivery = Delivery(kind=kind, subscriber_id=subscriber_id, **fields)
    session.add(delivery)
    mark_work_queued(session)
    return delivery


def queue_rows(connection: Connection, kind: DeliveryKind, subscriber_ids: Sequence[int]) -> None:
    """Queue one delivery of ``kind`` per subscriber in one statement, with no ORM objects.

    On a Core connection: the caller commits, then calls ``wake_dispatcher``.
    """
    rows = [{"kind": kind, "subscriber_id": subscriber_id} for subscriber_id in subscriber_ids]
    if rows:
        _INSERT_DELIVERIES.run(connection, rows)


def mark_work_queued(session: Session) -> None:
    """Ask for the dispatcher to be woken when this session commits."""
    session.info[WAKE_FLAG] = True


def claim(
    session: Session, limit: int, lease_seconds: float, kind: DeliveryKind | None = None
) -> list[Claimed]:
    """Claim up to ``limit`` due deliveries (of ``kind`` only, if given), loaded.

    Of every kind (``kind`` None), the mail a person waits for comes first (a
    confirmation, a test copy), then digest copies, each oldest first: a
    confirmation queued behind a digest of 100,000 copies waited for all of
    them.

    On PostgreSQL the claim is the open transaction's row locks: the caller
    ends it by committing what ``record`` wrote (or once every row is marked
    skipped; a rollback gives the batch back); the server ends it if it sits
    idle for ``lease_seconds``. On SQLite the claim is a lease, committed here.
    Either way, an empty claim leaves no transaction open.
    """
    now = utcnow()
    shares = _SHARES_OF[kind]
    if is_postgresql(session):
        # Concurrent dispatchers each lock a different batch, never waiting on another.
        claimed: list[Claimed] = []
        for share in shares:
            more = {"now": now, "limit": limit - len(claimed)}
            claimed += _load(session, _lock_and_load(share), more)
            if len(claimed) == limit:
                break
        if not claimed:
            session.commit()  # an idle poll: nothing locked, nothing more to say
            return []
        # The lease, on PostgreSQL: a transaction left idle longer than this (a frozen
        # dispatcher, a lost host) is ended by the server, and its batch is free again.
        # Set after the claim: idle time only starts once the last statement is done.
        session.execute(_IDLE_LIMIT, {"ms": str(max(1, round(lease_seconds * 1000)))})
        return claimed
    # Read first: an idle dispatcher polls every DISPATCH_COALESCE seconds, and the
    # lease's UPDATE took SQLite's one write lock each time, matched rows or not, in
    # the way of every signup (and held, had the process been stopped right then).
    if session.connection().execute(_any_due(kind), {"now": now}).first() is None:
        session.commit()
        return []
    until = now + timedelta(seconds=lease_seconds)
    leased: list[int] = []
    for share in shares:
        lease = {"now": now, "limit": limit - len(leased), "until": until}
        leased += session.connection().execute(_lease(share), lease).scalars().all()
        if len(leased) == limit:
            break
    session.commit()
    return _load(session, _load_leased(), {"ids": leased}) if leased else []


_IDLE_LIMIT = text("SELECT set_config('idle_in_transaction_session_timeout', :ms, true)")

# What a claim takes, in turn: the waited-for mail first, then digest copies (of
# every kind), or the one kind asked for. Each is one ordered range of an index.
_WAITED = "waited for"
_SHARES_OF: dict[DeliveryKind | None, tuple[str | DeliveryKind, ...]] = {
    None: (_WAITED, DeliveryKind.DIGEST),
    **{kind: (kind,) for kind in DeliveryKind},
}


def _of_share(share: str | DeliveryKind) -> ColumnElement[bool] | TextClause:
    """The rows of one share: by the waited-for index's own predicate, or of one kind."""
    if share == _WAITED:
        return WAITED_FOR
    return Delivery.__table__.c.kind == share


def _due(
    status: DeliveryStatus, lock: bool, only: ColumnElement[bool] | TextClause | None
) -> Select:
    """The first ``:limit`` deliveries in one status (and matching ``only``) due at ``:now``."""
    deliveries = Delivery.__table__  # the table, not the class: a plain Core statement
    due = (
        select(deliveries.c.id, deliveries.c.next_attempt_at)
        .where(deliveries.c.status == status, deliveries.c.next_attempt_at <= bindparam("now"))
        .order_by(deliveries.c.next_attempt_at, deliveries.c.id)
        .limit(bindparam("limit"))
    )
    if only is not None:
        # Digest copies are read from the rows the due index finds: the other kinds
        # due first (a burst of confirmations) are stepped over, not sorted. The
        # waited-for mail has an index of its own.
        due = due.where(only)
    if lock:
        due = due.with_for_update(skip_locked=True)
    return select(due.subquery())


def _first_due(lock: bool, share: str | DeliveryKind) -> ColumnElement[bool]:
    """Whether a delivery is among the first ``:limit`` due at ``:now`` of ``share``.

    Locking them: ``lock``. One ordered index range per status (the due
    indexes are (status, next_attempt_at, id)), each stopping after
    ``limit`` rows, then merged: never a sort of every due row, which
    ``status IN (...)`` over one range would need.
    """
    only = _of_share(share)
    due = union_all(*(_due(status, lock, only) for status in _CLAIMABLE)).subquery()
    first = select(due.c.id).order_by(due.c.next_attempt_at, due.c.id).limit(bindparam("limit"))
    return Delivery.__table__.c.id.in_(first.scalar_subquery())


class Recipient(NamedTuple):
    """The columns of a delivery's subscriber that rendering needs."""

    email: str
    status: Status
    round: int
    public_id: str


class Claimed(NamedTuple):
    """A claimed delivery as plain values: what rendering and recording read.

    Named tuples, not frozen dataclasses: a batch builds one per row, and a
    tuple is made in one step where a frozen dataclass sets each field in turn.
    """

    id: int
    kind: DeliveryKind
    digest_id: int | None
    to_address: str | None
    message_key: str
    attempts: int
    created_at: datetime | None
    subscriber: Recipient | None


_DELIVERY_COLUMNS = (
    "id",
    "kind",
    "digest_id",
    "to_address",
    "message_key",
    "attempts",
    "created_at",
)
_RECIPIENT_COLUMNS = ("email", "status", "round", "public_id")


def _loading(which: ColumnElement[bool]) -> Select:
    """The deliveries ``which`` selects, with their subscribers' columns, in id order."""
    deliveries, subscribers = Delivery.__table__, Subscriber.__table__
    return (
        select(
            *(deliveries.c[name] for name in _DELIVERY_COLUMNS),
            subscribers.c.id.label("recipient_id"),
            *(subscribers.c[name] for name in _RECIPIENT_COLUMNS),
        )
        .select_from(
            deliveries.outerjoin(subscribers, subscribers.c.id == deliveries.c.subscriber_id)
        )
        .where(which)
        .order_by(deliveries.c.id)
    )


# The claim's statements are built once, their values bound at each run: building
# one (four selects, a union, a join) cost about half a millisecond a batch.
@cache
def _lock_and_load(share: str | DeliveryKind) -> Select:
    """PostgreSQL: lock the first due deliveries of ``share`` and load them, in one statement."""
    return _loading(_first_due(lock=True, share=share))


@cache
def _lease(share: str | DeliveryKind) -> Update:
    """SQLite: lease the first due deliveries of ``share`` until ``:until``; their ids."""
    return (
        update(Delivery.__table__)
        .where(_first_due(lock=False, share=share))
        .values(status=DeliveryStatus.SENDING, next_attempt_at=bindparam("until"))
        .returning(Delivery.id)
    )


@cache
def _any_due(kind: DeliveryKind | None) -> Select:
    """SQLite: whether any delivery (of ``kind``) is due at ``:now``, read without a lock."""
    only = None if kind is None else _of_share(kind)
    due = union_all(*(_due(status, False, only) for status in _CLAIMABLE)).subquery()
    return select(due.c.id).limit(1).params(limit=1)


@cache
def _load_leased() -> Select:
    """SQLite: load the deliveries whose ids are ``:ids``."""
    return _loading(Delivery.__table__.c.id.in_(bindparam("ids", expanding=True)))


def _load(session: Session, statement: Select, params: dict) -> list[Claimed]:
    """The claimed deliveries ``statement`` loads, as plain tuples.

    Plain rows, not ORM objects: nothing to build per row, nothing for the
    session to track and expire when the batch's answers are committed. Run
    on the session's connection, past the session's own execution machinery
    (and its loading of rows, for a statement that names a mapped class).
    """
    rows = session.connection().execute(statement, params).all()
    # Each row's tuples made whole by ``_make`` (one C call each): a named tuple's own
    # constructor, called with fields, costs about as much again per row.
    split, claimed, recipient = len(_DELIVERY_COLUMNS), Claimed._make, Recipient._make
    return [
        claimed((*row[:split], recipient(row[split + 1 :]) if row[split] is not None else None))
        for row in rows
    ]


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential back-off with jitter, and when to give up.

    A delivery is given up only when it has spent ``max_attempts`` *and* has
    waited ``max_age_seconds`` since it was queued: a provider outage longer
    than the attempts' back-off (ten attempts span about two hours by default)
    must not drop a digest for everyone, while a message the provider keeps
    refusing still ends after that age.
    """

    base_seconds: float
    max_seconds: float
    max_attempts: int
    max_age_seconds: float = 0.0

    def gives_up(self, attempts: int, queued_at: datetime | None, now: datetime) -> bool:
        """True when a delivery that failed for the ``attempts``-th time is abandoned."""
        if attempts < self.max_attempts:
            return False
        age = (now - queued_at).total_seconds() if queued_at is not None else float("inf")
        return age >= self.max_age_seconds

    def delay(self, attempts: int, jitter: float | None = None) -> float:
        """Seconds to wait after the ``attempts``-th failure (full jitter above half).

        ``jitter`` (0.5 to 1) is drawn here unless given: ``record`` draws one per
        batch, so a batch that failed comes due again as one.
        """
        # The exponent is capped: past RETRY_MAX_ATTEMPTS a delivery may keep retrying
        # until RETRY_MAX_AGE, and 2**1024 no longer fits in a float.
        doublings = min(max(attempts - 1, 0), 62)
        ceiling = min(self.max_seconds, self.base_seconds * 2**doublings)
        if jitter is None:
            jitter = random.uniform(0.5, 1.0)  # noqa: S311 (jitter, not a secret)
        return ceiling * jitter


def _values_for(
    result: SendResult,
    attempts: int,
    policy: RetryPolicy,
    now: datetime,
    queued_at: datetime | None = None,
    jitter: float | None = None,
) -> dict:
    """The columns an answer other than "sent" sets on a claimed delivery (``record`` does sent).

    ``record`` adds the answer's error to each. An unknown answer comes here only
    when its copy has no try left; ``record`` writes the others (``_record_unanswered``).
    """
    if result.outcome is Outcome.UNKNOWN:
        # Sent, no answer, and no try left: taken as sent (``record`` decides the others).
        return {"status": DeliveryStatus.SENT, "sent_at": now, "attempts": attempts + 1}
    transient = result.outcome is Outcome.TRANSIENT
    if result.outcome is Outcome.REJECTED or (
        transient and policy.gives_up(attempts + 1, queued_at, now)
    ):
        return {"status": DeliveryStatus.FAILED, "attempts": attempts + 1}
    if transient:
        wait = policy.delay(attempts + 1, jitter)
        return {
            "status": DeliveryStatus.QUEUED,
            "attempts": attempts + 1,
            "next_attempt_at": now + timedelta(seconds=wait),
        }
    # Rate limits and configuration errors spend no attempt: the message was fine.
    wait = result.retry_after if result.retry_after is not None else policy.base_seconds
    return {"status": DeliveryStatus.QUEUED, "next_attempt_at": now + timedelta(seconds=wait)}


def record(
    session: Session,
    deliveries: Sequence[Claimed],
    results: Sequence[SendResult],
    policy: RetryPolicy,
    provider: str,
) -> None:
    """Write what the provider said for each claimed delivery, in one round trip per shape.

    In the caller's transaction: its commit (the dispatcher's, with the batch's
    digests marked sending) ends the claim.

    The rows are gathered as columns, one list per value that varies: a sent
    message (nearly all of them) adds its id, attempt count and the
    provider's id to three lists, with no dict of its own (on PostgreSQL;
    SQLite's executemany takes a dict per row all the same).
    """
    now = utcnow()
    sent = _Answers(
        {"status": DeliveryStatus.SENT, "sent_at": now, "last_error": None, "provider": provider}
    )
    sent_ids, sent_attempts, sent_message_ids = (
        sent.column("id"),
        sent.column("attempts"),
        sent.column("provider_message_id"),
    )
    others: dict[tuple[str, ...], _Answers] = {}
    # One jitter for the batch: its copies that failed alike come due together and are
    # claimed together again, so a provider's idempotency key (Resend's, which names the
    # batch) finds the same batch. Drawn per copy, a retried batch came back in pieces
    # under new keys, and a batch the provider had taken went out twice.
    jitter = random.uniform(0.5, 1.0)  # noqa: S311 (jitter, not a secret)
    unanswered: list[dict] = []
    for delivery, result in zip(deliveries, results, strict=True):
        if result.outcome is Outcome.SENT:
            sent_ids.append(delivery.id)
            sent_attempts.append(delivery.attempts + 1)
            sent_message_ids.append(result.provider_id)
            continue
        tries = delivery.attempts + 1
        if result.outcome is Outcome.UNKNOWN and not policy.gives_up(
            tries, delivery.created_at, now
        ):
            retry_at = now + timedelta(seconds=policy.delay(tries, jitter))
            unanswered.append({"b_id": delivery.id, "b_error": result.error, "b_retry": retry_at})
            continue
        values = _values_for(result, delivery.attempts, policy, now, delivery.created_at, jitter)
        values["last_error"] = result.error
        answers = others.setdefault(tuple(sorted(values)), _Answers({"provider": provider}))
        answers.add(delivery.id, values)
    postgres = is_postgresql(session)
    for answers in (sent, *others.values()):
        if answers.columns["id"]:
            if postgres:
                _update_from_arrays(session, answers)
            else:
                _update_each(session, answers)
    if unanswered:
        _record_unanswered(session, unanswered, provider, now)


def _record_unanswered(session: Session, rows: list[dict], provider: str, now: datetime) -> None:
    """Copies that went out and got no answer: the first time queued again, the second sent.

    The provider may have taken them, and Postmark, SendGrid and Mailgun cannot
    tell a request sent again from a new one: retried each time, a provider
    slower than ``PROVIDER_TIMEOUT`` sent each reader one more copy a retry.
    Decided in the statement from the row's own count, which no claim loads;
    ``attempts`` would not do, as it counts the failures nothing went out on.
    """
    table = Delivery.__table__
    again = table.c.unanswered >= 1
    statuses = table.c.status.type
    stmt = (
        update(table)
        .where(table.c.id == bindparam("b_id"), _UNANSWERED)
        .values(
            unanswered=table.c.unanswered + 1,
            attempts=table.c.attempts + 1,
            provider=provider,
            status=case(
                (again, bindparam("b_sent", DeliveryStatus.SENT, type_=statuses)),
                else_=bindparam("b_queued", DeliveryStatus.QUEUED, type_=statuses),
            ),
            sent_at=case(
                (again, bindparam("b_now", now, type_=table.c.sent_at.type)),
                else_=table.c.sent_at,
            ),
            next_attempt_at=case(
                (again, table.c.next_attempt_at),
                else_=bindparam("b_retry", type_=table.c.next_attempt_at.type),
            ),
            last_error=case((_ANONYMOUS, None), else_=bindparam("b_error")),
        )
    )
    session.connection().execute(stmt, rows)


class _Answers:
    """Answers of one shape as columns: ``shared`` values for every row, ``columns`` per row."""

    def __init__(self, shared: dict) -> None:
        self.shared = shared
        self.columns: dict[str, list] = {"id": []}

    def column(self, name: str) -> list:
        """The list of ``name``'s values, one per row (made empty on first use)."""
        return self.columns.setdefault(name, [])

    def add(self, delivery_id: int, values: dict) -> None:
        """One row: its delivery's id and a value for each of the shape's columns."""
        self.columns["id"].append(delivery_id)
        for name, value in values.items():
            self.column(name).append(value)

    def hoisted(self) -> tuple[dict, dict[str, list]]:
        """The shared values and the columns, a column whose rows all agree made shared."""
        shared, columns = dict(self.shared), {"id": self.columns["id"]}
        for name, values in self.columns.items():
            if name == "id":
                continue
            if all(value == values[0] for value in values):
                shared[name] = values[0]
            else:
                columns[name] = values
        return shared, columns


# A copy whose reader was erased while it was in flight (SQLite: nothing makes the
# erasure wait for it) names nobody: its answer is kept, but not the provider's id or
# error text, which may quote the address.
_ANONYMOUS = and_(Delivery.subscriber_id.is_(None), Delivery.to_address.is_(None))
_NAMES_THE_READER = ("provider_message_id", "last_error")


def _update_each(session: Session, answers: _Answers) -> None:
    """SQLite: one ``UPDATE`` run for each row (the driver's executemany)."""
    table = Delivery.__table__
    names = [name for name in answers.columns if name != "id"]
    values = {
        name: case((_ANONYMOUS, None), else_=bindparam(f"v_{name}"))
        if name in _NAMES_THE_READER
        else bindparam(f"v_{name}")
        for name in [*answers.shared, *names]
    }
    stmt = update(table).where(table.c.id == bindparam("b_id"), _UNANSWERED).values(values)
    shared = {f"v_{name}": value for name, value in answers.shared.items()}
    keys = ["b_id", *(f"v_{name}" for name in names)]
    columns = [answers.columns["id"], *(answers.columns[name] for name in names)]
    rows = [{**shared, **dict(zip(keys, row, strict=True))} for row in zip(*columns, strict=True)]
    session.connection().execute(stmt, rows)


def _update_from_arrays(session: Session, answers: _Answers) -> None:
    """One ``UPDATE ... FROM unnest(arrays)``: one statement, one parameter per column.

    A value every row shares (a batch's status, time and provider, mostly) is
    one plain parameter; only the others (ids, provider message ids) are
    arrays, which psycopg dumps element by element. The statement's text
    depends only on the shape and on which columns vary, so it stays short
    and is prepared once, whatever the batch size (a ``VALUES`` list would not be).
    """
    table = Delivery.__table__
    dialect = session.get_bind().dialect
    shared, columns = answers.hoisted()
    params: dict = {"queued": DeliveryStatus.QUEUED.value, "sending": DeliveryStatus.SENDING.value}
    assignments = []
    for name, value in shared.items():
        process = table.c[name].type.bind_processor(dialect)
        params[name] = process(value) if process else value
        assignments.append(f"{name} = CAST(:{name} AS {_sql_type(name, dialect)})")
    arrays: dict[str, list] = {}
    for name, values in columns.items():
        process = table.c[name].type.bind_processor(dialect)
        arrays[name] = [process(v) for v in values] if process else values
        if name != "id":
            assignments.append(f"{name} = answers.{name}")
    unnest = ", ".join(f"CAST(:{name} AS {_sql_type(name, dialect)}[])" for name in arrays)
    session.execute(
        text(
            f"UPDATE deliveries SET {', '.join(assignments)} "  # noqa: S608 (column names)
            f"FROM unnest({unnest}) AS answers({', '.join(arrays)}) "
            "WHERE deliveries.id = answers.id AND deliveries.status IN (:queued, :sending)"
        ),
        {**params, **arrays},
    )


def _sql_type(name: str, dialect) -> str:
    """The SQL type of the ``deliveries`` column ``name``, as a CAST names it."""
    return Delivery.__table__.c[name].type.compile(dialect=dialect)


def mark_skipped(session: Session, delivery_ids: Iterable[int], reason: str) -> None:
    """Mark claimed deliveries as no longer wanted (the subscriber left first)."""
    ids = list(delivery_ids)
    if not ids:
        return
    session.execute(
        update(Delivery)
        .where(Delivery.id.in_(ids), _UNANSWERED)
        .values(status=DeliveryStatus.SKIPPED, last_error=reason)
        .execution_options(synchronize_session=False)
    )


def backlog(session: Session) -> dict:
    """How many deliveries wait, and since when the oldest due one has waited."""
    now = utcnow()
    waiting, oldest = session.execute(
        select(func.count(), func.min(Delivery.next_attempt_at)).where(
            Delivery.status.in_(_CLAIMABLE)
        )
    ).one()
    due_since = (now - oldest).total_seconds() if oldest and oldest <= now else 0.0
    return {"waiting": waiting, "oldest_due_seconds": round(max(due_since, 0.0), 1)}
