"""The data: subscribers, their consent ledger, posts, digests, the delivery ledger, erasures."""

from __future__ import annotations

import base64
import enum
import secrets
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy import Enum as SAEnum
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .extensions import db


def utcnow() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and always read back timezone-aware.

    SQLite keeps no zone, PostgreSQL does; this makes both hand back the same.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _enum(cls: type[enum.Enum], name: str) -> SAEnum:
    """A string column limited to the enum's values (no native database enum)."""
    return SAEnum(
        cls,
        name=name,
        native_enum=False,
        create_constraint=False,
        length=24,
        values_callable=lambda members: [m.value for m in members],
        validate_strings=True,
    )


class Status(enum.StrEnum):
    """Where a subscriber stands."""

    PENDING = "pending"
    CONFIRMED = "confirmed"
    UNSUBSCRIBED = "unsubscribed"
    BOUNCED = "bounced"
    COMPLAINED = "complained"


# The statuses no mail goes to, ever: a hard bounce or a spam complaint.
SUPPRESSED = (Status.BOUNCED, Status.COMPLAINED)
NAME_MAX = 200  # characters of a subscriber's name: the signup form's limit, the import's


class ConsentKind(enum.StrEnum):
    """One step in a subscriber's consent history."""

    SIGNUP = "signup"
    # A signup of an address whose state sends nothing (confirmed, bounced or
    # complained, or pending with a link sent within the resend interval): who
    # asked, kept as a signup is; and every signup then writes, so how long it
    # takes tells nobody which state the address is in.
    SIGNED_UP_AGAIN = "signed_up_again"
    RESUBSCRIBED = "resubscribed"
    CONFIRMATION_QUEUED = "confirmation_queued"
    CONFIRMED = "confirmed"
    UNSUBSCRIBED = "unsubscribed"
    IMPORTED = "imported"
    BOUNCED = "bounced"
    COMPLAINED = "complained"


class DeliveryKind(enum.StrEnum):
    """What a delivery is: decides how it is rendered."""

    CONFIRMATION = "confirmation"
    DIGEST = "digest"
    DIGEST_TEST = "digest_test"


class DeliveryStatus(enum.StrEnum):
    """Where a delivery stands in the ledger."""

    QUEUED = "queued"  # due at next_attempt_at
    SENDING = "sending"  # leased (SQLite); reclaimable once next_attempt_at (the lease) passes
    SENT = "sent"
    FAILED = "failed"  # given up: permanent rejection or attempts exhausted
    SKIPPED = "skipped"  # no longer wanted: the subscriber left before it went


def new_public_id() -> str:
    """A random, unguessable identifier put in tokens instead of the row id."""
    return secrets.token_urlsafe(12)


def new_public_ids(count: int) -> list[str]:
    """``count`` identifiers of ``new_public_id``'s kind, from one read of the random source."""
    # 12 bytes are exactly 16 URL-safe base64 characters (no padding): encoding
    # count * 12 bytes at once and cutting every 16 characters gives the same tokens.
    encoded = base64.urlsafe_b64encode(secrets.token_bytes(12 * count)).decode()
    return [encoded[at : at + 16] for at in range(0, 16 * count, 16)]


# The hex digit holding a version 4 UUID's variant: 10xx in binary (RFC 9562).
_UUID_VARIANT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}


def new_message_keys(count: int) -> list[str]:
    """``count`` delivery keys like ``str(uuid.uuid4())`` (the column's default), in one go."""
    digits = secrets.token_hex(16 * count)
    return [
        f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_UUID_VARIANT[h[16]]}{h[17:20]}-{h[20:]}"
        for h in (digits[at : at + 32] for at in range(0, 32 * count, 32))
    ]


class Subscriber(db.Model):
    """One address and where it stands; unique whatever the case."""

    __tablename__ = "subscribers"

    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True, default=new_public_id)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str | None] = mapped_column(String(NAME_MAX))
    # No index: the queries by status read most of the table, or (the hourly
    # retention sweep) can afford to (migration 0007); without one, a
    # confirmation can be a HOT update.
    status: Mapped[Status] = mapped_column(_enum(Status, "subscriber_status"))
    # Bumped each time the subscriber leaves: confirm links of an earlier round die.
    round: Mapped[int] = mapped_column(Integer, default=0)
    source: Mapped[str | None] = mapped_column(String(2048))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
    confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    unsubscribed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_confirmation_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    soft_bounces: Mapped[int] = mapped_column(Integer, default=0)

    events: Mapped[list[ConsentEvent]] = relationship(
        back_populates="subscriber",
        order_by="ConsentEvent.id",
        cascade="all, delete-orphan",
        passive_deletes=True,
    )

    def to_dict(self) -> dict[str, Any]:
        """The subscriber as the admin API shows it."""
        return {
            "email": self.email,
            "name": self.name,
            "status": self.status.value,
            "source": self.source,
            "created_at": iso(self.created_at),
            "confirmed_at": iso(self.confirmed_at),
            "unsubscribed_at": iso(self.unsubscribed_at),
            "soft_bounces": self.soft_bounces,
        }


class ConsentEvent(db.Model):
    """One append-only step of a subscriber's consent history: the proof."""

    __tablename__ = "consent_events"
    __table_args__ = (Index("ix_consent_subscriber_kind_time", "subscriber_id", "kind", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    subscriber_id: Mapped[int] = mapped_column(
        ForeignKey("subscribers.id", ondelete="CASCADE"), index=False
    )
    kind: Mapped[ConsentKind] = mapped_column(_enum(ConsentKind, "consent_kind"))
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    ip: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(512))
    source: Mapped[str | None] = mapped_column(String(2048))
    wording: Mapped[str | None] = mapped_column(Text)
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON)

    subscriber: Mapped[Subscriber] = relationship(back_populates="events")

    def to_dict(self) -> dict[str, Any]:
        """The event as the admin API shows it."""
        return {
            "kind": self.kind.value,
            "at": iso(self.at),
            "ip": self.ip,
            "user_agent": self.user_agent,
            "source": self.source,
            "wording": self.wording,
            "detail": self.detail,
        }


# Rows that belong to a digest (its copies and test copies): the digest index's predicate.
_DIGEST_COPIES = text("digest_id IS NOT NULL")
# Mail a person waits for (a confirmation, an admin's test copy): claimed before any
# digest copy, from an index of its own. A literal, not a bound value, in the index
# and in the claim alike: SQLite uses a partial index only for a query that repeats
# its predicate's text.
WAITED_FOR = text("kind <> 'digest'")


class Delivery(db.Model):
    """One email the service will send: written with the change that causes it."""

    __tablename__ = "deliveries"
    __table_args__ = (
        # One copy of a digest per subscriber; led by the subscriber, it also serves
        # the subscriber's lookups and the foreign key's cascade.
        UniqueConstraint("subscriber_id", "digest_id", name="uq_delivery_subscriber_digest"),
        Index("ix_delivery_due", "status", "next_attempt_at", "id"),
        # The claim's first look: a confirmation queued behind a digest of 100,000
        # copies waited for all of them, oldest first. A digest copy adds no entry.
        Index(
            "ix_delivery_due_waited_for",
            "status",
            "next_attempt_at",
            "id",
            postgresql_where=WAITED_FOR,
            sqlite_where=WAITED_FOR,
        ),
        # A digest's progress: "is any copy still pending?" without a scan. Digest
        # copies only: a confirmation (one per signup) adds no entry here.
        Index(
            "ix_delivery_digest_status",
            "digest_id",
            "status",
            postgresql_where=_DIGEST_COPIES,
            sqlite_where=_DIGEST_COPIES,
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[DeliveryKind] = mapped_column(_enum(DeliveryKind, "delivery_kind"))
    status: Mapped[DeliveryStatus] = mapped_column(
        _enum(DeliveryStatus, "delivery_status"), default=DeliveryStatus.QUEUED
    )
    subscriber_id: Mapped[int | None] = mapped_column(
        ForeignKey("subscribers.id", ondelete="CASCADE")
    )
    # No index of their own: the unique constraint leads with subscriber_id,
    # ix_delivery_digest_status with digest_id (which only a digest's copies, test
    # copies included, have).
    digest_id: Mapped[int | None] = mapped_column(ForeignKey("digests.id"))
    # Only for mail to an address that is not a subscriber (a digest test copy).
    to_address: Mapped[str | None] = mapped_column(String(320))
    # Our key for this message: sent as a header and an idempotency key, and
    # how the providers' webhooks point back at it.
    message_key: Mapped[str] = mapped_column(
        String(36), unique=True, default=lambda: str(uuid.uuid4())
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # Tries that went out and got no answer (the provider may have taken them): the
    # second is taken as sent (``ledger.record``). The migration gives the column a
    # server default too, for the INSERT ... SELECT statements that leave it out.
    unanswered: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    provider: Mapped[str | None] = mapped_column(String(32))
    provider_message_id: Mapped[str | None] = mapped_column(String(255))  # kept, not searched
    last_error: Mapped[str | None] = mapped_column(Text)

    subscriber: Mapped[Subscriber | None] = relationship()


class DigestStatus(enum.StrEnum):
    """Where a digest stands: derived from its deliveries as they progress."""

    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"  # every copy sent, failed for good or skipped
    FAILED = "failed"  # not one copy could be delivered


class Digest(db.Model):
    """One email listing the posts not sent before, to every confirmed subscriber."""

    __tablename__ = "digests"

    id: Mapped[int] = mapped_column(primary_key=True)
    # 1, 2, 3...: computed as max + 1 inside the creating INSERT and unique, so
    # two triggers racing each other cannot both commit a digest.
    seq: Mapped[int] = mapped_column(Integer, unique=True)
    subject: Mapped[str] = mapped_column(String(998))
    status: Mapped[DigestStatus] = mapped_column(
        _enum(DigestStatus, "digest_status"), default=DigestStatus.QUEUED
    )
    # The number of delivery rows written at the trigger (the snapshot).
    recipients: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    posts: Mapped[list[Post]] = relationship(back_populates="digest")


class Post(db.Model):
    """A blog post; ``digest_id``, the watermark: the digest that took it (cleared if it failed).

    ``marked_sent_at``: the admin marked it as gone out without mailing it.
    ``edited_at``: the admin wrote or corrected it; a feed import leaves it so.
    """

    __tablename__ = "posts"

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(500))
    url: Mapped[str] = mapped_column(String(2048), unique=True)
    summary: Mapped[str | None] = mapped_column(Text)
    author: Mapped[str | None] = mapped_column(String(200))
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), index=True)
    categories: Mapped[list[str] | None] = mapped_column(JSON)
    guid: Mapped[str | None] = mapped_column(String(2048), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    digest_id: Mapped[int | None] = mapped_column(ForeignKey("digests.id"), index=True)
    # Set: the admin said it had gone out already (an archive); no digest takes it.
    marked_sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    edited_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    digest: Mapped[Digest | None] = relationship(back_populates="posts")

    @property
    def shown_at(self) -> datetime:
        """The date a reader is shown: publication, else when we learnt of it."""
        return self.published_at or self.created_at

    def to_dict(self) -> dict[str, Any]:
        """The post as the admin API shows it."""
        return {
            "id": self.id,
            "title": self.title,
            "url": self.url,
            "summary": self.summary,
            "author": self.author,
            "published_at": iso(self.published_at),
            "categories": self.categories or [],
            "guid": self.guid,
            "created_at": iso(self.created_at),
            "digest_id": self.digest_id,
            "sent": self.digest_id is not None,
            "marked_sent_at": iso(self.marked_sent_at),
            "edited_at": iso(self.edited_at),
        }


class ProviderEvent(db.Model):
    """One event a provider's webhook reported, stored once, normalised."""

    __tablename__ = "provider_events"
    __table_args__ = (UniqueConstraint("provider", "event_id", name="uq_provider_event"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    provider: Mapped[str] = mapped_column(String(32))
    event_id: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(24))  # webhooks.events.EventKind
    raw_type: Mapped[str] = mapped_column(String(64))
    email: Mapped[str | None] = mapped_column(String(320), index=True)
    message_key: Mapped[str | None] = mapped_column(String(64))
    provider_message_id: Mapped[str | None] = mapped_column(String(255))
    occurred_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    payload: Mapped[dict[str, Any] | None] = mapped_column(JSON)

    def to_dict(self) -> dict[str, Any]:
        """The event as the admin API shows it."""
        return {
            "provider": self.provider,
            "kind": self.kind,
            "type": self.raw_type,
            "occurred_at": iso(self.occurred_at),
            "received_at": iso(self.received_at),
            "provider_message_id": self.provider_message_id,
        }


class WebhookNonce(db.Model):
    """A signature token already accepted: Mailgun signs only timestamp and token,
    not the event, so each token may be used once."""

    __tablename__ = "webhook_nonces"
    __table_args__ = (UniqueConstraint("provider", "nonce", name="uq_webhook_nonce"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    provider: Mapped[str] = mapped_column(String(32))
    nonce: Mapped[str] = mapped_column(String(255))
    seen_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)


class Erasure(db.Model):
    """What is kept of an erased address: a keyed hash, never the address."""

    __tablename__ = "erasures"

    email_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    erased_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # The status at erasure: a bounced or complained address stays suppressed.
    prior_status: Mapped[Status] = mapped_column(_enum(Status, "erasure_prior_status"))


class WrappedKey(db.Model):
    """A key of ours kept in the database, encrypted (Fernet) under ``SECRET_KEY``."""

    __tablename__ = "wrapped_keys"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    wrapped: Mapped[str] = mapped_column(Text)


class DispatcherHealth(db.Model):
    """What a dispatching process on another host last said (a Celery worker's, cron's).

    gunicorn's dispatcher processes tell their host's workers through a file;
    these processes have only the database in common with the web.
    """

    __tablename__ = "dispatcher_health"

    process: Mapped[str] = mapped_column(String(255), primary_key=True)  # host:pid, host:cron
    paused_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    rate_limited_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_error: Mapped[str | None] = mapped_column(Text)
    last_pass_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)


def iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None
