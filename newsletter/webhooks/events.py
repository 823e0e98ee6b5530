"""The one event type every provider's webhook is normalised into."""

from __future__ import annotations

import enum
import hashlib
import hmac
import json
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ..storable import storable


class EventKind(enum.StrEnum):
    """What happened to a message, whichever provider says it."""

    HARD_BOUNCE = "hard_bounce"
    SOFT_BOUNCE = "soft_bounce"
    COMPLAINT = "complaint"
    UNSUBSCRIBE = "unsubscribe"
    DELIVERED = "delivered"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class WebhookEvent:
    """One normalised provider event."""

    event_id: str
    kind: EventKind
    raw_type: str
    email: str | None = None
    message_key: str | None = None
    provider_message_id: str | None = None
    occurred_at: datetime | None = None
    payload: dict[str, Any] = field(default_factory=dict)
    # How it reached us: a provider's webhook, or its answer to a send ("send refusal").
    via: str = "webhook"


class WebhookAuthError(Exception):
    """The request's signature or credentials do not verify (401, nothing changes)."""


class WebhookPayloadError(Exception):
    """The request verified but its body cannot be read (400)."""


KEY_NAME = "newsletter_key"  # the name our message key travels under at every provider
MAX_NESTING = 64  # providers send a handful of levels; a JSON column cannot store a thousand


def load_json(body: bytes) -> Any:
    """The JSON body as sent, or ``WebhookPayloadError``: what a signature is read from."""
    try:
        try:
            return _loads(body)
        except UnicodeDecodeError:
            # A string that is not UTF-8 is one odd string, not a body to refuse whole.
            return _loads(body.decode("utf-8", "replace"))
    except (ValueError, RecursionError):  # too deep is not ours to read
        raise WebhookPayloadError("the body is not JSON") from None


def parse_json(body: bytes) -> Any:
    """The JSON body made storable, or ``WebhookPayloadError`` if not JSON.

    Made so rather than refused: a provider re-sends a refused body unchanged,
    so one odd string would lose every other event of its batch for good.
    """
    return storable(load_json(body), MAX_NESTING)


def not_an_event(item: Any) -> WebhookEvent:
    """An item of a batch that is no event object: stored as unknown, the rest acted on."""
    return WebhookEvent(
        event_id=fallback_id(item), kind=EventKind.UNKNOWN, raw_type="", payload={"item": item}
    )


def _loads(body: bytes | str) -> Any:
    return json.loads(body, parse_constant=_no_constant, parse_float=_float)


def _no_constant(name: str) -> Any:
    """NaN and Infinity are not JSON, and a JSON column refuses them: the body is bad."""
    raise ValueError(f"{name} is not JSON")


def _float(text: str) -> float | str:
    """A JSON number; one past a float's range (``1e400``) is kept as its text, not Infinity."""
    value = float(text)
    return value if math.isfinite(value) else text


def fallback_id(item: Any) -> str:
    """A stable id for an event its provider gives none: a hash of its content."""
    canonical = json.dumps(item, sort_keys=True, separators=(",", ":"), default=str)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def check_fresh(timestamp: str, tolerance: float, now: float | None = None) -> None:
    """Refuse a signed timestamp older or newer than ``tolerance`` seconds."""
    try:
        signed_at = float(timestamp)
    except (TypeError, ValueError):
        signed_at = math.nan
    if not math.isfinite(signed_at):  # "nan" would compare as neither old nor new
        raise WebhookAuthError("the signature timestamp is missing or malformed")
    current = datetime.now(UTC).timestamp() if now is None else now
    if abs(current - signed_at) > tolerance:
        raise WebhookAuthError("the signature timestamp is outside the accepted window")


def same(a: str | bytes, b: str | bytes) -> bool:
    """Constant-time equality of two secrets."""
    left = a.encode() if isinstance(a, str) else a
    right = b.encode() if isinstance(b, str) else b
    return hmac.compare_digest(left, right)


def from_epoch(value: Any) -> datetime | None:
    """A UTC datetime from epoch seconds, or None."""
    try:
        return datetime.fromtimestamp(float(value), UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def from_iso(value: Any) -> datetime | None:
    """A UTC datetime from an ISO 8601 string, or None."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        # In UTC now: a time at the calendar's edge whose offset takes it past the end
        # would otherwise fail as it is stored.
        return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    except (ValueError, OverflowError):
        return None


def text(value: Any) -> str | None:
    """A string field, or None when missing or of another type."""
    return value if isinstance(value, str) and value else None
