"""SendGrid's Signed Event Webhook: ECDSA P-256 over timestamp and raw body."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from config import sendgrid_public_key

from .events import (
    KEY_NAME,
    EventKind,
    WebhookAuthError,
    WebhookEvent,
    WebhookPayloadError,
    check_fresh,
    fallback_id,
    from_epoch,
    not_an_event,
    parse_json,
    text,
)

SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"


def verify(config: Mapping[str, Any], headers: Mapping[str, str], body: bytes) -> None:
    """Check the ECDSA signature of ``timestamp + body`` with the verification key."""
    encoded_key = config["SENDGRID_WEBHOOK_PUBLIC_KEY"]
    if not encoded_key:
        raise WebhookAuthError("SENDGRID_WEBHOOK_PUBLIC_KEY is not set")
    signature, timestamp = headers.get(SIGNATURE_HEADER), headers.get(TIMESTAMP_HEADER)
    if not signature or not timestamp:
        raise WebhookAuthError("the SendGrid signature headers are missing")
    try:
        key = sendgrid_public_key(encoded_key)  # checked at start-up, loaded once
    except ValueError:
        raise WebhookAuthError("SENDGRID_WEBHOOK_PUBLIC_KEY is not an EC public key") from None
    try:
        raw_signature = base64.b64decode(signature, validate=True)
    except ValueError:  # binascii.Error too
        raise WebhookAuthError("the SendGrid signature is not valid base64") from None
    try:
        key.verify(raw_signature, timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise WebhookAuthError("the SendGrid signature does not match") from None
    check_fresh(timestamp, config["WEBHOOK_TOLERANCE"])


def _kind(item: dict[str, Any]) -> EventKind:
    event = item.get("event")
    if event == "bounce":
        return EventKind.SOFT_BOUNCE if item.get("type") == "blocked" else EventKind.HARD_BOUNCE
    if event == "dropped":
        reason = str(item.get("reason", ""))
        if "Spam Reporting" in reason:
            return EventKind.COMPLAINT
        if "Unsubscribed" in reason:
            return EventKind.UNSUBSCRIBE
        # "Invalid" alone is the address; "Invalid SMTPAPI header" is our request's.
        if "Bounced Address" in reason or reason.strip() == "Invalid":
            return EventKind.HARD_BOUNCE
        return EventKind.UNKNOWN
    return {
        "deferred": EventKind.SOFT_BOUNCE,
        "spamreport": EventKind.COMPLAINT,
        "unsubscribe": EventKind.UNSUBSCRIBE,
        "group_unsubscribe": EventKind.UNSUBSCRIBE,
        "delivered": EventKind.DELIVERED,
    }.get(str(event), EventKind.UNKNOWN)


def parse(body: bytes) -> list[WebhookEvent]:
    """A SendGrid event batch (a JSON array) as normalised events."""
    items = parse_json(body)
    if not isinstance(items, list):
        raise WebhookPayloadError("a SendGrid webhook is a JSON array of event objects")
    # One item that is no object is stored as unknown: refused, the batch's others
    # would be lost with it (SendGrid re-sends the same body).
    return [_event(item) if isinstance(item, dict) else not_an_event(item) for item in items]


def _event(item: dict[str, Any]) -> WebhookEvent:
    return WebhookEvent(
        event_id=text(item.get("sg_event_id")) or fallback_id(item),
        kind=_kind(item),
        raw_type=str(item.get("event", "")),
        email=text(item.get("email")),
        message_key=text(item.get(KEY_NAME)),
        provider_message_id=text(item.get("sg_message_id")),
        occurred_at=from_epoch(item.get("timestamp")),
        payload=item,
    )
