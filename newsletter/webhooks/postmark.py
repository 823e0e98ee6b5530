"""Postmark webhooks: basic auth (Postmark signs nothing), one event per request."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

from .events import (
    KEY_NAME,
    EventKind,
    WebhookAuthError,
    WebhookEvent,
    WebhookPayloadError,
    fallback_id,
    from_iso,
    parse_json,
    same,
    text,
)

_BOUNCE_KINDS = {
    "HardBounce": EventKind.HARD_BOUNCE,
    "BadEmailAddress": EventKind.HARD_BOUNCE,
    "SoftBounce": EventKind.SOFT_BOUNCE,
    "Transient": EventKind.SOFT_BOUNCE,
    "DnsError": EventKind.SOFT_BOUNCE,
    "SpamComplaint": EventKind.COMPLAINT,
    "Unsubscribe": EventKind.UNSUBSCRIBE,
}


def verify(config: Mapping[str, Any], headers: Mapping[str, str], body: bytes) -> None:
    """Check the basic-auth credentials against ``WEBHOOK_BASIC_AUTH``."""
    expected = config["WEBHOOK_BASIC_AUTH"]
    if not expected:
        raise WebhookAuthError("WEBHOOK_BASIC_AUTH is not set")
    scheme, _, encoded = headers.get("Authorization", "").partition(" ")
    try:
        given = base64.b64decode(encoded, validate=True).decode()
    except (ValueError, UnicodeDecodeError):
        given = ""
    if scheme.lower() != "basic" or not same(given, expected):
        raise WebhookAuthError("wrong or missing basic-auth credentials")


_SUPPRESSION_KINDS = {
    "HardBounce": EventKind.HARD_BOUNCE,
    "SpamComplaint": EventKind.COMPLAINT,
}


def parse(body: bytes) -> list[WebhookEvent]:
    """One Postmark webhook record as a normalised event."""
    item = parse_json(body)
    if not isinstance(item, dict) or not isinstance(item.get("RecordType"), str):
        raise WebhookPayloadError("a Postmark webhook is a JSON object with a RecordType")
    record = item["RecordType"]
    if record == "Bounce":
        raw = str(item.get("Type", ""))
        kind = _BOUNCE_KINDS.get(raw, EventKind.UNKNOWN)
    elif record == "SpamComplaint":
        raw, kind = record, EventKind.COMPLAINT
    elif record == "SubscriptionChange":
        # Postmark reports its own suppressions here too: a hard bounce or a complaint
        # is that, not the reader unsubscribing (ManualSuppression, a reader's link, is).
        raw = f"{record}:{item.get('SuppressionReason') or ''}".rstrip(":")
        kind = (
            _SUPPRESSION_KINDS.get(str(item.get("SuppressionReason")), EventKind.UNSUBSCRIBE)
            if item.get("SuppressSending") is True
            else EventKind.UNKNOWN
        )
    elif record == "Delivery":
        raw, kind = record, EventKind.DELIVERED
    else:
        raw, kind = record, EventKind.UNKNOWN
    metadata = item.get("Metadata") if isinstance(item.get("Metadata"), dict) else {}
    event_id = item.get("ID")
    when = item.get("BouncedAt") or item.get("ChangedAt") or item.get("DeliveredAt")
    return [
        WebhookEvent(
            event_id=f"{record}:{event_id}" if event_id is not None else fallback_id(item),
            kind=kind,
            raw_type=raw,
            email=text(item.get("Email")) or text(item.get("Recipient")),
            message_key=text(metadata.get(KEY_NAME)),
            provider_message_id=text(item.get("MessageID")),
            occurred_at=from_iso(when),
            payload=item,
        )
    ]
