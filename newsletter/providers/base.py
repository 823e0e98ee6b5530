"""The provider interface: a provider-neutral message in, one result per message out."""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import idna

from ..one_line import LINE_BREAKING_RUNS


def header_safe(value: str) -> str:
    """The value on one line: every break or control becomes one space.

    The last line of defence against header injection, whatever field or
    setting a value came from: no header we send can carry a second line.
    """
    if value.isprintable():  # every character the pattern takes is unprintable
        return value.strip()
    return LINE_BREAKING_RUNS.sub(" ", value).strip()


def ascii_address(address: str) -> str:
    """The address with its domain in IDNA 2008 form, as every provider and header needs it.

    Not Python's own ``idna`` codec: it is IDNA 2003, which maps ``ß`` to
    ``ss`` and final sigma to sigma, so ``anna@straße.de`` went to
    ``strasse.de``, someone else's domain. The ``idna`` package (as
    email-validator, which checked the address at signup) keeps them. A
    domain it refuses is left as it is, for the provider to refuse that
    message alone (the SMTP provider refuses any address not in ASCII).
    """
    local, _, domain = address.rpartition("@")
    if domain.isascii():
        return address
    try:
        return f"{local}@{idna.encode(domain, uts46=True).decode('ascii')}"
    except idna.IDNAError:
        return address


class Stream(enum.StrEnum):
    """Transactional mail (a confirmation) or bulk mail (a digest)."""

    TRANSACTIONAL = "transactional"
    BROADCAST = "broadcast"


@dataclass(frozen=True)
class Message:
    """One email, ready to send, with nothing provider-specific in it."""

    key: str  # our message key: idempotency key, comes back in webhooks
    to: str
    sender: str
    subject: str
    text: str
    html: str
    headers: Mapping[str, str] = field(default_factory=dict)
    tags: tuple[str, ...] = ()
    stream: Stream = Stream.TRANSACTIONAL
    # The one link the reader is meant to follow (logged by the outbox provider).
    action_url: str | None = None

    def __post_init__(self) -> None:
        """Every value that becomes a header is forced onto one line; ``to``'s domain in IDNA."""
        for name in ("to", "sender", "subject"):
            object.__setattr__(self, name, header_safe(getattr(self, name)))
        # The HTTP providers take the address as given: SendGrid refused a Unicode
        # domain for good, and the others leave it to whatever relays it on.
        object.__setattr__(self, "to", ascii_address(self.to))
        safe = {header_safe(k): header_safe(v) for k, v in self.headers.items()}
        object.__setattr__(self, "headers", safe)


class Outcome(enum.StrEnum):
    """How a provider answered for one message."""

    SENT = "sent"
    REJECTED = "rejected"  # this recipient, for good: do not retry
    RATE_LIMITED = "rate_limited"  # wait ``retry_after`` and retry, no attempt spent
    TRANSIENT = "transient"  # 5xx, connection refused or dropped: back off and retry
    # The whole request went out and no answer came (a read timeout, an unreadable 2xx):
    # the provider may have taken it. Retried the first time a copy goes out unanswered,
    # taken as sent the second (``ledger._record_unanswered``).
    UNKNOWN = "unknown"
    CONFIG_ERROR = "config_error"  # bad key, unknown domain: stop sending


@dataclass(frozen=True)
class SendResult:
    """The provider's answer for one message."""

    outcome: Outcome
    provider_id: str | None = None
    error: str | None = None
    retry_after: float | None = None
    # The provider keeps this address from all mail; the dispatcher asks it why
    # (``why_suppressed``) once the batch is recorded, and stops ours to match.
    suppressed: bool = False
    # A failure of the provider itself (unreachable, a 5xx), not of this message or
    # reader: a batch failed so whole is an outage, said as one (``delivery/failures``).
    provider_fault: bool = False


class Provider(Protocol):
    """What the dispatcher needs of an email provider.

    One may also offer ``why_suppressed(message) -> str | None``: asked, once
    the batch is recorded, for each result marked ``suppressed`` (Postmark).
    """

    name: str
    max_batch: int  # the most messages one ``send_batch`` call may carry

    def send_batch(self, messages: Sequence[Message]) -> list[SendResult]:
        """Send the messages; one result per message, in the same order."""
        ...


class ProviderConfigError(RuntimeError):
    """A provider chosen without the settings it needs; stops start-up."""


def same_result(messages: Sequence[Any], result: SendResult) -> list[SendResult]:
    """The same result for every message of a batch (a whole-batch answer)."""
    return [result] * len(messages)
