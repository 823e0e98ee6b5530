"""Resend webhooks, signed the Svix way: HMAC-SHA256 of ``id.timestamp.body``."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

from config import svix_key

from ..storable import storable_text
from .events import (
    KEY_NAME,
    EventKind,
    WebhookAuthError,
    WebhookEvent,
    WebhookPayloadError,
    check_fresh,
    from_iso,
    parse_json,
    same,
    text,
)


def verify(config: Mapping[str, Any], headers: Mapping[str, str], body: bytes) -> None:
    """Check one of the ``v1`` signatures in ``svix-signature`` and the timestamp."""
    secret = config["RESEND_WEBHOOK_SECRET"]
    if not secret:
        raise WebhookAuthError("RESEND_WEBHOOK_SECRET is not set")
    message_id, timestamp = headers.get("svix-id"), headers.get("svix-timestamp")
    signatures = headers.get("svix-signature", "")
    if not message_id or not timestamp or not signatures:
        raise WebhookAuthError("the Svix signature headers are missing")
    try:
        key = svix_key(secret)  # checked at start-up, decoded once
    except ValueError:
        raise WebhookAuthError("RESEND_WEBHOOK_SECRET is not a whsec_ base64 secret") from None
    signed = f"{message_id}.{timestamp}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    given = [part.partition(",")[2] for part in signatures.split() if part.startswith("v1,")]
    if not any(same(candidate, expected) for candidate in given):
        raise WebhookAuthError("the Svix signature does not match")
    check_fresh(timestamp, config["WEBHOOK_TOLERANCE"])


def _kind(event_type: str, data: dict[str, Any]) -> EventKind:
    if event_type == "email.bounced":
        bounce = data.get("bounce") if isinstance(data.get("bounce"), dict) else {}
        transient = str(bounce.get("type", "")).lower() in ("transient", "undetermined")
        return EventKind.SOFT_BOUNCE if transient else EventKind.HARD_BOUNCE
    if event_type == "email.suppressed":
        # Resend dropped the copy: the address is on its suppression list after an
        # earlier bounce or complaint, and no copy will reach it (spec: reason).
        suppressed = data.get("suppressed") if isinstance(data.get("suppressed"), dict) else {}
        reason = suppressed.get("reason")
        if reason == "previous_complaint":
            return EventKind.COMPLAINT
        return EventKind.HARD_BOUNCE if reason == "previous_bounce" else EventKind.UNKNOWN
    return {
        "email.complained": EventKind.COMPLAINT,
        "email.delivery_delayed": EventKind.SOFT_BOUNCE,
        "email.delivered": EventKind.DELIVERED,
    }.get(event_type, EventKind.UNKNOWN)


def _key_from_tags(tags: Any) -> str | None:
    if isinstance(tags, dict):
        return text(tags.get(KEY_NAME))
    if isinstance(tags, list):
        for tag in tags:
            if isinstance(tag, dict) and tag.get("name") == KEY_NAME:
                return text(tag.get("value"))
    return None


def parse(body: bytes, event_id: str) -> list[WebhookEvent]:
    """A Resend event as a normalised event; ``event_id`` is the ``svix-id`` header."""
    item = parse_json(body)
    if not isinstance(item, dict) or not isinstance(item.get("data"), dict):
        raise WebhookPayloadError("a Resend webhook is a JSON object with a 'data' object")
    data = item["data"]
    recipients = data.get("to")
    email = recipients[0] if isinstance(recipients, list) and recipients else recipients
    event_type = str(item.get("type", ""))
    return [
        WebhookEvent(
            event_id=storable_text(event_id),  # a header: a NUL may reach us in one
            kind=_kind(event_type, data),
            raw_type=event_type,
            email=text(email),
            message_key=_key_from_tags(data.get("tags")),
            provider_message_id=text(data.get("email_id")),
            occurred_at=from_iso(item.get("created_at")),
            payload=item,
        )
    ]
