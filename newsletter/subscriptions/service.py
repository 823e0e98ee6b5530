"""The subscriber state machine: signup, confirm, unsubscribe, each with its proof.

``pending`` -> ``confirmed`` (confirm link) -> ``unsubscribed`` (one click)
-> ``pending`` (signs up again, must confirm again). ``bounced`` and
``complained`` are set by provider webhooks and never left through here.
Every step appends a ``ConsentEvent``; every email is a ``Delivery`` row
committed with the step that causes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from flask import current_app
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..db_helpers import insert_ignoring_conflicts, locked
from ..delivery import ledger
from ..metrics import count_consent
from ..models import (
    ConsentEvent,
    ConsentKind,
    DeliveryKind,
    Status,
    Subscriber,
    new_public_id,
    utcnow,
)
from ..tokens import TokenError, current_tokens


@dataclass(frozen=True)
class ClientInfo:
    """Who asked, from where, having been shown what: kept as proof of consent."""

    ip: str | None = None
    user_agent: str | None = None
    source: str | None = None
    wording: str | None = None


def _event_row(
    subscriber_id: int, kind: ConsentKind, client: ClientInfo | None, detail: dict | None
) -> dict[str, object]:
    """The columns of one consent event."""
    client = client or ClientInfo()
    return {
        "subscriber_id": subscriber_id,
        "kind": kind,
        "ip": client.ip,
        "user_agent": client.user_agent,
        "source": client.source,
        "wording": client.wording,
        "detail": detail or None,
    }


def record_event(
    session: Session,
    subscriber: Subscriber,
    kind: ConsentKind,
    client: ClientInfo | None = None,
    **detail: object,
) -> None:
    """Append one step to the subscriber's consent history."""
    session.add(ConsentEvent(**_event_row(subscriber.id, kind, client, detail)))
    count_consent(session, kind)


_CREATE_PENDING: dict[str, Any] = {}  # one prepared statement per dialect
_INSERT_EVENTS = ConsentEvent.__table__.insert()


def create_pending(session: Session, email: str, **fields: object) -> int | None:
    """Insert ``email`` as a new ``pending`` subscriber; its id, or None if it exists.

    The unique index decides who is first, never a read-then-write: two
    concurrent signups of one address make one row. The statement is built once
    per dialect: building it per call cost more than running it.
    """
    dialect = session.get_bind().dialect.name
    statement = _CREATE_PENDING.get(dialect)
    if statement is None:
        table = Subscriber.__table__
        statement = insert_ignoring_conflicts(session, table, ["email"]).returning(table.c.id)
        _CREATE_PENDING[dialect] = statement
    values = {"email": email, "status": Status.PENDING, "public_id": new_public_id(), **fields}
    return session.connection().execute(statement, values).scalar_one_or_none()


def may_send_confirmation(
    session: Session, subscriber: Subscriber, new_round: bool = False
) -> bool:
    """The per-address throttle: a gap between confirmation emails and a daily cap.

    A new round (signing up again after leaving) skips the gap, not the cap.
    """
    config = current_app.config
    now = utcnow()
    last = subscriber.last_confirmation_at
    gap = timedelta(seconds=config["CONFIRM_RESEND_INTERVAL"])
    if not new_round and last is not None and now - last < gap:
        return False
    sent_today = session.scalar(
        select(func.count())
        .select_from(ConsentEvent)
        .where(
            ConsentEvent.subscriber_id == subscriber.id,
            ConsentEvent.kind == ConsentKind.CONFIRMATION_QUEUED,
            ConsentEvent.at > now - timedelta(days=1),
        )
    )
    return sent_today < config["CONFIRM_MAX_PER_DAY"]


def queue_confirmation(session: Session, subscriber: Subscriber) -> None:
    """Queue the double-opt-in email, committed with the step that asks for it."""
    ledger.queue(session, DeliveryKind.CONFIRMATION, subscriber_id=subscriber.id)
    subscriber.last_confirmation_at = utcnow()
    record_event(session, subscriber, ConsentKind.CONFIRMATION_QUEUED)


def _welcome(session: Session, subscriber_id: int, client: ClientInfo) -> None:
    """A new address's signup and its queued confirmation: two statements, no ORM objects.

    The hot path of every signup form, so it skips the unit of work: the row
    was just inserted (and is locked) by this transaction, nothing to re-read.
    """
    session.connection().execute(
        _INSERT_EVENTS,
        [
            _event_row(subscriber_id, ConsentKind.SIGNUP, client, None),
            _event_row(subscriber_id, ConsentKind.CONFIRMATION_QUEUED, None, None),
        ],
    )
    ledger.queue_rows(session, DeliveryKind.CONFIRMATION, [subscriber_id])
    count_consent(session, ConsentKind.SIGNUP)


def sign_up(session: Session, email: str, name: str | None, client: ClientInfo) -> None:
    """Apply a signup to whatever state the address is in; the caller learns nothing of it."""
    created_id = create_pending(
        session, email, name=name, source=client.source, last_confirmation_at=utcnow()
    )
    if created_id is not None:
        _welcome(session, created_id, client)
        session.commit()
        return
    subscriber = locked(session, select(Subscriber).where(Subscriber.email == email)).one()
    if subscriber.status is Status.PENDING:
        if may_send_confirmation(session, subscriber):
            record_event(session, subscriber, ConsentKind.SIGNUP, client)
            queue_confirmation(session, subscriber)
    elif subscriber.status is Status.UNSUBSCRIBED:
        subscriber.status = Status.PENDING
        subscriber.name = name or subscriber.name
        subscriber.source = client.source
        subscriber.confirmed_at = None
        record_event(session, subscriber, ConsentKind.RESUBSCRIBED, client)
        if may_send_confirmation(session, subscriber, new_round=True):
            queue_confirmation(session, subscriber)
    # confirmed: already in; bounced, complained: never mailed again.
    session.commit()


def _locked_by_public_id(session: Session, public_id: str) -> Subscriber | None:
    return locked(
        session, select(Subscriber).where(Subscriber.public_id == public_id)
    ).one_or_none()


def confirm(session: Session, token: str, client: ClientInfo) -> Subscriber:
    """Confirm the subscriber a confirm token names; the same answer when clicked again.

    Raises ``TokenError`` for a tampered, expired or superseded link.
    """
    tokens = current_tokens()
    try:
        claim = tokens.read_confirm(token)
    except TokenError as exc:
        if exc.expired and exc.public_id:
            subscriber = _locked_by_public_id(session, exc.public_id)
            session.rollback()
            if subscriber is not None and subscriber.status is Status.CONFIRMED:
                return subscriber  # already done: an old link clicked again is harmless
        raise
    subscriber = _locked_by_public_id(session, claim.public_id)
    if subscriber is None or subscriber.round != claim.round:
        session.rollback()
        raise TokenError()  # erased, or unsubscribed since the link was issued
    if subscriber.status is Status.PENDING:
        subscriber.status = Status.CONFIRMED
        subscriber.confirmed_at = utcnow()
        record_event(session, subscriber, ConsentKind.CONFIRMED, client)
    elif subscriber.status is not Status.CONFIRMED:
        session.rollback()
        raise TokenError()  # bounced or complained meanwhile
    session.commit()
    return subscriber


def renew_confirmation(session: Session, token: str) -> None:
    """Send a fresh confirm link for an expired but authentic one (throttled)."""
    try:
        current_tokens().read_confirm(token)
        return  # still valid: nothing to renew
    except TokenError as exc:
        if not (exc.expired and exc.public_id):
            raise
        public_id = exc.public_id
    subscriber = _locked_by_public_id(session, public_id)
    if (
        subscriber is not None
        and subscriber.status is Status.PENDING
        and may_send_confirmation(session, subscriber)
    ):
        queue_confirmation(session, subscriber)
    session.commit()


def unsubscribe(
    session: Session, token: str, client: ClientInfo, one_click: bool = False
) -> Subscriber | None:
    """Unsubscribe whoever the token names; idempotent. Raises ``TokenError`` if forged."""
    public_id = current_tokens().read_unsubscribe(token)
    subscriber = _locked_by_public_id(session, public_id)
    if subscriber is not None:
        leave(session, subscriber, client, method="one-click" if one_click else "page")
    session.commit()
    return subscriber


def leave(session: Session, subscriber: Subscriber, client: ClientInfo | None, method: str) -> None:
    """Unsubscribe a locked, pending or confirmed subscriber; others are left as they are."""
    if subscriber.status not in (Status.CONFIRMED, Status.PENDING):
        return
    subscriber.status = Status.UNSUBSCRIBED
    subscriber.unsubscribed_at = utcnow()
    subscriber.round += 1  # confirm links issued before now stop working
    record_event(session, subscriber, ConsentKind.UNSUBSCRIBED, client, method=method)


def locked_by_email(session: Session, email: str) -> Subscriber | None:
    """The subscriber of a normalised address, locked for this transaction."""
    return locked(session, select(Subscriber).where(Subscriber.email == email)).one_or_none()
