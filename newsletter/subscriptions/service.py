"""The subscriber state machine: signup, confirm, unsubscribe, each with its proof.

``pending`` -> ``confirmed`` (confirm link) -> ``unsubscribed`` (one click)
-> ``pending`` (signs up again, must confirm again). ``bounced`` and
``complained`` are set by provider webhooks and never left through here.
Every step appends a ``ConsentEvent``; every email is a ``Delivery`` row
committed with the step that causes it.
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import NamedTuple

from flask import current_app
from sqlalchemy import Select, delete, select
from sqlalchemy.engine import Connection, Engine
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
from .known_signups import confirmations_since, resend, resubscribe


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
# a new signup more CPU than everything else it does. A known address's row is
# touched (its email set to itself): the insert then locks and returns it, as
# stored, so one statement tells every signup of a batch where it stands.
_ADMIT = DriverInsert(
    Subscriber.__table__,
    touch_conflicts_on="email",
    returning=("email", "id", "public_id", "status", "name", "last_confirmation_at"),
)
_INSERT_EVENTS = DriverInsert(ConsentEvent.__table__)


class _Stored(NamedTuple):
    """A known address's subscriber, as the batch's insert found it (and locked it)."""

    id: int
    status: Status
    name: str | None
    last_confirmation_at: datetime | None


def admit(engine: Engine, signups: Sequence[Signup]) -> list[bool]:
    """Take a batch of signups in one transaction; per signup, whether its address was new.

    A new address becomes ``pending``, with its proof and confirmation email.
    An address erased after it bounced or complained (its hash kept) gets
    nothing stored or sent, and counts as new: it is not ours to know. A
    known one gets what its state calls for (``_sign_up_known``), in the same
    transaction. Commits, on a connection of its own (no ORM session). One
    statement per table whatever the number of signups, so concurrent
    signups can share one transaction (see ``group_commit.py``). The unique
    index decides who is first, never a read-then-write: the same address
    twice, in one batch or in two concurrent ones, makes one row and one email.

    Known addresses used to take a transaction of their own through the ORM
    after this one: a signup that mailed a known address (one that had left,
    or a pending one due a new link) then took 3.3-3.5 ms longer than a new
    one, which told a stranger, in one request, that the address had been
    on the list (a black-box pass, 2026-12-07). Now every signup takes the
    same statements but the few a state adds, and writes.
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
    # In address order (a stable sort: copies of one address keep the batch's order):
    # two concurrent batches sharing addresses then wait on each other's rows in the
    # same order and cannot deadlock.
    rows.sort(key=lambda row: row["email"])
    new: list[bool] = []
    steps = _Steps()
    # A Core connection, not the ORM session: a batch of three inserts needs none
    # of the session's bookkeeping, which cost as much as the inserts themselves.
    with engine.begin() as connection:
        hold_addresses(connection, hashes)  # a webhook stopping one of them waits, or is waited for
        ids: dict[str, int] = {}
        stored: dict[str, _Stored] = {}
        for row, (email, subscriber_id, public_id, *state) in zip(
            rows, _ADMIT.run(connection, rows), strict=True
        ):
            if public_id == row["public_id"]:  # ours: the row is new
                ids[email] = subscriber_id
            else:  # as stored (a second copy of a new one: as its first copy left it)
                stored.setdefault(email, _Stored(subscriber_id, *state))
        # Erasure kept their hash so that they stay stopped: not admitted again (import
        # and test copies skip them too). Read after the insert, not before: an insert
        # that waited on an erasure deleting the row sees that erasure's hash here.
        suppressed = suppressed_among(connection, hashes.values())
        unwanted = [ids.pop(email) for email in list(ids) if hashes[email] in suppressed]
        if unwanted:
            connection.execute(delete(Subscriber).where(Subscriber.id.in_(unwanted)))
        known: list[tuple[Signup, _Stored]] = []
        subscriber_of = {**{email: row.id for email, row in stored.items()}, **ids}
        for signup in signups:
            subscriber_id = ids.pop(signup.email, None)  # popped: a second copy is not new
            new.append(subscriber_id is not None or hashes[signup.email] in suppressed)
            if subscriber_id is not None:
                steps.add(subscriber_id, ConsentKind.SIGNUP, signup.client)
                steps.add(subscriber_id, ConsentKind.CONFIRMATION_QUEUED)
                steps.queued.append(subscriber_id)
            elif not new[-1] and signup.email in stored:  # its first copy acts for the rest
                known.append((signup, stored.pop(signup.email)))
            elif not new[-1] and signup.email in subscriber_of:
                # A further copy in the same batch: nothing more to send, but who asked is
                # kept, as for every signup (they were dropped, with their IP and agent).
                steps.add(subscriber_of[signup.email], ConsentKind.SIGNED_UP_AGAIN, signup.client)
        if known:
            _sign_up_known(connection, known, now, steps)
        if steps.events:
            _INSERT_EVENTS.run(connection, steps.events)
        if steps.queued:
            ledger.queue_rows(connection, DeliveryKind.CONFIRMATION, steps.queued)
    for kind, count in steps.kinds.items():
        count_committed(kind, count)
    if steps.queued:
        wake_dispatcher()
    return new


@dataclass
class _Steps:
    """What a batch of signups writes besides the subscribers: consent events, confirmations."""

    events: list[dict[str, object]] = field(default_factory=list)
    queued: list[int] = field(default_factory=list)  # subscribers sent a confirmation
    kinds: Counter[ConsentKind] = field(default_factory=Counter)

    def add(self, subscriber_id: int, kind: ConsentKind, client: ClientInfo | None = None) -> None:
        """One consent step of one subscriber."""
        self.events.append(event_row(subscriber_id, kind, client, None))
        self.kinds[kind] += 1


def _sign_up_known(
    connection: Connection,
    known: Sequence[tuple[Signup, _Stored]],
    now: datetime,
    steps: _Steps,
) -> None:
    """What each known address's state calls for, written now, its steps added to ``steps``.

    ``pending``: a new link, unless one went within ``CONFIRM_RESEND_INTERVAL``
    or ``CONFIRM_MAX_PER_DAY`` went today; ``unsubscribed``: ``pending`` again,
    with a link (the gap waived, not the cap); ``confirmed``, ``bounced``,
    ``complained``: nothing. Every one records a consent step with who asked,
    ``SIGNED_UP_AGAIN`` when nothing is sent.
    """
    config = current_app.config
    gap = timedelta(seconds=config["CONFIRM_RESEND_INTERVAL"])
    due = {
        row.id
        for _, row in known
        if row.status is Status.UNSUBSCRIBED
        or (row.status is Status.PENDING and not _sent_within(row, gap, now))
    }
    sent_today = (
        confirmations_since(connection, sorted(due), now - timedelta(days=1)) if due else {}
    )
    resent: list[int] = []
    resubscribed: list[tuple[int, str | None, str | None, datetime | None]] = []
    for signup, row in known:
        mail = row.id in due and sent_today.get(row.id, 0) < config["CONFIRM_MAX_PER_DAY"]
        if row.status is Status.UNSUBSCRIBED:
            steps.add(row.id, ConsentKind.RESUBSCRIBED, signup.client)
            last = now if mail else row.last_confirmation_at
            resubscribed.append((row.id, signup.name or row.name, signup.client.source, last))
        elif mail:  # pending, due a new link
            steps.add(row.id, ConsentKind.SIGNUP, signup.client)
            resent.append(row.id)
        else:
            # Confirmed: already in; bounced, complained: never mailed again; pending:
            # a link went lately, or enough today. Recorded all the same.
            steps.add(row.id, ConsentKind.SIGNED_UP_AGAIN, signup.client)
            continue
        if mail:
            steps.add(row.id, ConsentKind.CONFIRMATION_QUEUED)
            steps.queued.append(row.id)
    if resent:
        resend(connection, resent, now)
    if resubscribed:
        resubscribe(connection, resubscribed, now)


def _sent_within(row: _Stored | Subscriber, gap: timedelta, now: datetime) -> bool:
    """Whether the subscriber's last confirmation link went less than ``gap`` ago."""
    return row.last_confirmation_at is not None and now - row.last_confirmation_at < gap


class Renewal(enum.StrEnum):
    """What asking for a new confirm link did."""

    SENT = "sent"
    RECENT = "recent"  # a link went a moment ago: that one is on its way
    DAILY_CAP = "daily_cap"  # the day's links all went: none more until tomorrow
    STILL_VALID = "still_valid"  # the link has not expired: nothing to renew
    CONFIRMED = "confirmed"  # confirmed meanwhile: nothing to renew


def confirmation_held(session: Session, subscriber: Subscriber) -> Renewal | None:
    """The per-address throttle: a gap between confirmation emails and a daily cap.

    Why it holds one back (``RECENT``, ``DAILY_CAP``), or ``None`` when one
    may go. The same rule ``_sign_up_known`` applies to a batch (which waives
    the gap for an address that left and signs up again, a new round).
    """
    config = current_app.config
    now = utcnow()
    gap = timedelta(seconds=config["CONFIRM_RESEND_INTERVAL"])
    if _sent_within(subscriber, gap, now):
        return Renewal.RECENT
    since = now - timedelta(days=1)
    sent_today = confirmations_since(session.connection(), [subscriber.id], since)
    if sent_today.get(subscriber.id, 0) >= config["CONFIRM_MAX_PER_DAY"]:
        return Renewal.DAILY_CAP
    return None


def queue_confirmation(session: Session, subscriber: Subscriber) -> None:
    """Queue the double-opt-in email, committed with the step that asks for it."""
    # admit does the same three things for a batch of rows, in bulk.
    ledger.queue(session, DeliveryKind.CONFIRMATION, subscriber_id=subscriber.id)
    subscriber.last_confirmation_at = utcnow()
    record_event(session, subscriber, ConsentKind.CONFIRMATION_QUEUED)


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


def confirm_link_state(session: Session, token: str) -> Subscriber:
    """Whom a confirm link names, changing nothing: pending (to confirm) or confirmed.

    Raises ``TokenError`` as ``confirm`` does.
    """
    try:
        claim = current_tokens().read_confirm(token)
    except TokenError as exc:
        return _confirmed_by_expired_link(session, exc)
    subscriber = session.scalars(_by_public_id(claim.public_id)).one_or_none()
    if (
        subscriber is None
        or subscriber.round != claim.round
        or subscriber.status not in (Status.PENDING, Status.CONFIRMED)
    ):
        raise TokenError()
    return subscriber


def renew_confirmation(session: Session, token: str) -> Renewal:
    """Send a fresh confirm link for an expired but authentic one (throttled).

    Raises ``TokenError`` (not expired: invalid) for a link that died since
    it was issued: unsubscribed, bounced or erased, with nothing to renew.
    """
    try:
        current_tokens().read_confirm(token)
        return Renewal.STILL_VALID
    except TokenError as exc:
        if not (exc.expired and exc.public_id):
            raise
        public_id, round = exc.public_id, exc.round
    subscriber = _locked_by_public_id(session, public_id)
    if subscriber is None or subscriber.round != round:
        session.rollback()
        raise TokenError()  # erased, or unsubscribed since the link was issued
    if subscriber.status is Status.CONFIRMED:
        session.rollback()
        return Renewal.CONFIRMED
    if subscriber.status is not Status.PENDING:
        session.rollback()
        raise TokenError()  # bounced or complained meanwhile
    held = confirmation_held(session, subscriber)
    if held is not None:
        session.rollback()
        return held
    queue_confirmation(session, subscriber)
    session.commit()  # which wakes the dispatcher (ledger.queue marked the session)
    return Renewal.SENT


def unsubscribe(
    session: Session, public_id: str, client: ClientInfo, one_click: bool = False
) -> Subscriber | None:
    """Unsubscribe whoever an unsubscribe token named (if anyone); idempotent."""
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
