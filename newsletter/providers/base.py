"""The provider interface: a provider-neutral message in, one result per message out."""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol


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


class Outcome(enum.StrEnum):
    """How a provider answered for one message."""

    SENT = "sent"
    REJECTED = "rejected"  # this recipient, for good: do not retry
    RATE_LIMITED = "rate_limited"  # wait ``retry_after`` and retry, no attempt spent
    TRANSIENT = "transient"  # 5xx, timeout, connection: back off and retry
    CONFIG_ERROR = "config_error"  # bad key, unknown domain: stop sending


@dataclass(frozen=True)
class SendResult:
    """The provider's answer for one message."""

    outcome: Outcome
    provider_id: str | None = None
    error: str | None = None
    retry_after: float | None = None


class Provider(Protocol):
    """What the dispatcher needs of an email provider."""

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
