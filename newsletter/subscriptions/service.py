"""The subscriber state machine: signup, confirm, unsubscribe, each with its proof.

``pending`` -> ``confirmed`` (confirm link) -> ``unsubscribed`` (one click)
-> ``pending`` (signs up again, must confirm again). ``bounced`` and
``complained`` are set by provider webhooks and never left through here.
Every step appends a ``ConsentEvent``; every email is a ``Delivery`` row
committed with the step that causes it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from flask import current_app
from sqlalchemy import Select, delete, func, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from ..db_helpers import hold_addresses, locked
from ..delivery import ledger
from ..delivery.dispatcher import wake_dispatcher
from ..driver_sql import DriverInsert
from ..metrics import count_committed, count_consent
from ..models import (
    ConsentEvent,
    ConsentKind,
    DeliveryKind,
    Status,
    Subscriber,
    new_public_ids,
    utcnow,
)
from ..tokens import TokenError, current_tokens
from .erased import email_hasher, suppressed_among


@dataclass(frozen=True)
class ClientInfo:
    """Who asked, from where, having been shown what: kept as proof of consent."""

    ip: str | None = None
    user_agent: str | None = None
    source: str | None = None
    wording: str | None = None


def event_row(
    subscriber_id: int, kind: ConsentKind, client: ClientInfo | None, detail: dict | None
) -> dict[str, object]:
    """The columns of one consent event, for a bulk insert or an ORM object."""
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
    session.add(ConsentEvent(**event_row(subscriber.id, kind, client, detail)))
    count_consent(session, kind)


@dataclass(frozen=True)
class Signup:
    """One signup as the form sent it."""

    email: str
    name: str | None
    client: ClientInfo


# On the driver's cursor (driver_sql.py): through Core, these statements cost
# a new signup more CPU than everything else it does.
_CREATE_PENDING = DriverInsert(
    Subscriber.__table__, skip_conflicts_on="email", returning=("email", "id")
)
_INSERT_EVENTS = DriverInsert(ConsentEvent.__table__)


def admit_new(engine: Engine, signups: Sequence[Signup]) -> list[bool]:
    """Make each signup whose address is new ``pending``, with its proof and confirmation email.

    Commits, on a connection of its own (no ORM session); returns, per signup,
    whether it is done with: new, or an address erased after it bounced or
    complained, for which nothing is stored or sent (the others are for
    ``sign_up_known``). One statement per table whatever the number of
    signups, so concurrent signups can share one transaction (see
    ``group_commit.py``). The unique index decides who is first, never a
    read-then-write: the same address twice, in one batch or in two
    concurrent ones, makes one row and one email.
    """
    now = utcnow()
    hasher = email_hasher()
    hashes = {signup.email: hasher(signup.email) for signup in signups}
    # Each new row gets what queue_confirmation gives one subscriber: the stamp
    # below, a CONFIRMATION_QUEUED event and a queued delivery.
    rows = [
        {
            "email": signup.email,
            "status": Status.PENDING,
            "public_id": public_id,
            "name": signup.name,
            "source": signup.client.source,
            "last_confirmation_at": now,
        }
        for signup, public_id in zip(signups, new_public_ids(len(signups)), strict=True)
    ]
    # In address order: two concurrent batches sharing addresses then wait on each
    # other's rows in the same order and cannot deadlock.
    rows.sort(key=lambda row: row["email"])
    new: list[bool] = []
    created: list[int] = []
    events: list[dict[str, object]] = []
    # A Core connection, not the ORM session: a batch of three inserts needs none
    # of the session's bookkeeping, which cost as much as the inserts themselves.
    with engine.begin() as connection:
        hold_addresses(connection, hashes)  # a webhook stopping one of them waits, or is waited for
        ids = dict(_CREATE_PENDING.run(connection, rows))
        # Erasure kept their hash so that they stay stopped: not admitted again (import
        # and test copies skip them too). Read after the insert, not before: an insert
        # that waited on an erasure deleting the row sees that erasure's hash here.
        suppressed = suppressed_among(connection, hashes.values())
        unwanted = [ids.pop(email) for email in list(ids) if hashes[email] in suppressed]
        if unwanted:
            connection.execute(delete(Subscriber).where(Subscriber.id.in_(unwanted)))
        for signup in signups:
            subscriber_id = ids.pop(signup.email, None)  # popped: a second copy is not new
            new.append(subscriber_id is not None or hashes[signup.email] in suppressed)
            if subscriber_id is not None:
                created.append(subscriber_id)
                events.append(event_row(subscriber_id, ConsentKind.SIGNUP, signup.client, None))
                events.append(event_row(subscriber_id, ConsentKind.CONFIRMATION_QUEUED, None, None))
        if created:
            _INSERT_EVENTS.run(connection, events)
            ledger.queue_rows(connection, DeliveryKind.CONFIRMATION, created)
    if created:
        count_committed(ConsentKind.SIGNUP, len(created))
        wake_dispatcher()
    return new


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
    # admit_new does the same three things for a batch of new rows, in bulk.
    ledger.queue(session, DeliveryKind.CONFIRMATION, subscriber_id=subscriber.id)
    subscriber.last_confirmation_at = utcnow()
    record_event(session, subscriber, ConsentKind.CONFIRMATION_QUEUED)


def sign_up_known(session: Session, email: str, name: str | None, client: ClientInfo) -> None:
    """A signup of an address we already have: what happens depends on where it stands."""
    subscriber = locked_by_email(session, email)
    if subscriber is None:  # erased since it was found: it is new again
        session.rollback()
        admit_new(session.get_bind(), [Signup(email, name, client)])
        return
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


def _by_public_id(public_id: str) -> Select[tuple[Subscriber]]:
    return select(Subscriber).where(Subscriber.public_id == public_id)


def _locked_by_public_id(session: Session, public_id: str) -> Subscriber | None:
    return locked(session, _by_public_id(public_id)).one_or_none()


def confirm(session: Session, token: str, client: ClientInfo) -> Subscriber:
    """Confirm the subscriber a confirm token names; the same answer when clicked again.

    Raises ``TokenError`` for a tampered, expired or superseded link.
    """
    tokens = current_tokens()
    try:
        claim = tokens.read_confirm(token)
    except TokenError as exc:
        return _confirmed_by_expired_link(session, exc)
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


def _confirmed_by_expired_link(session: Session, exc: TokenError) -> Subscriber:
    """The subscriber an authentic but expired link names, if already confirmed; else raises.

    ``exc`` again (expired: a new link can be asked for) only while the
    subscriber still waits to confirm; invalid once the link is dead
    (unsubscribed, bounced or erased since), with nothing to renew.
    """
    if not (exc.expired and exc.public_id):
        raise exc
    subscriber = session.scalars(_by_public_id(exc.public_id)).one_or_none()
    session.rollback()  # read only
    if subscriber is None or subscriber.round != exc.round:
        raise TokenError() from None  # erased, or unsubscribed since it was issued
    if subscriber.status is Status.CONFIRMED:
        return subscriber  # already done: an old link clicked again is harmless
    if subscriber.status is not Status.PENDING:
        raise TokenError() from None
    raise exc


def confirm_link_state(session: Session, token: str) -> Status:
    """What a confirm link would do now, changing nothing: PENDING (confirm) or CONFIRMED.

    Raises ``TokenError`` as ``confirm`` does.
    """
    try:
        claim = current_tokens().read_confirm(token)
    except TokenError as exc:
        return _confirmed_by_expired_link(session, exc).status
    subscriber = session.scalars(_by_public_id(claim.public_id)).one_or_none()
    if (
        subscriber is None
        or subscriber.round != claim.round
        or subscriber.status not in (Status.PENDING, Status.CONFIRMED)
    ):
        raise TokenError()
    return subscriber.status


def renew_confirmation(session: Session, token: str) -> None:
    """Send a fresh confirm link for an expired but authentic one (throttled)."""
    try:
        current_tokens().read_confirm(token)
        return  # still valid: nothing to renew
    except TokenError as exc:
        if not (exc.expired and exc.public_id):
            raise
        public_id, round = exc.public_id, exc.round
    subscriber = _locked_by_public_id(session, public_id)
    if (
        subscriber is not None
        and subscriber.round == round  # not a link from before the reader left
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
