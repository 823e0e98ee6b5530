"""Mailgun webhooks: HMAC-SHA256 of timestamp and token with the signing key."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

from ..storable import storable_text
from .events import (
    KEY_NAME,
    EventKind,
    WebhookAuthError,
    WebhookEvent,
    WebhookPayloadError,
    check_fresh,
    fallback_id,
    from_epoch,
    load_json,
    parse_json,
    same,
    text,
)


def verify(config: Mapping[str, Any], headers: Mapping[str, str], body: bytes) -> str:
    """Check ``signature.signature`` and its freshness; return the token, usable once.

    The signature covers timestamp and token, not the event: a token seen
    before must be refused, or a captured signature could carry any event.
    """
    key = config["MAILGUN_WEBHOOK_SIGNING_KEY"]
    if not key:
        raise WebhookAuthError("MAILGUN_WEBHOOK_SIGNING_KEY is not set")
    try:
        # As sent, not made storable: the signature is over the token Mailgun sent.
        signature = load_json(body)["signature"]
        timestamp, token, given = signature["timestamp"], signature["token"], signature["signature"]
    except (WebhookPayloadError, KeyError, TypeError):
        # Mailgun's legacy webhooks post a form: their signature is not read (401 all the
        # same), but the operator reading Mailgun's log is told what to change.
        raise WebhookAuthError(
            "no Mailgun signature in a JSON body (Mailgun's current webhooks; its legacy "
            "form-encoded ones are not taken)"
        ) from None
    if not all(isinstance(v, str) for v in (timestamp, token, given)):
        raise WebhookAuthError("malformed Mailgun signature")
    try:
        signed, given_bytes = (timestamp + token).encode(), given.encode()
    except UnicodeEncodeError:  # a lone surrogate: no bytes Mailgun could have signed
        raise WebhookAuthError("malformed Mailgun signature") from None
    expected = hmac.new(key.encode(), signed, hashlib.sha256).hexdigest()
    if not same(given_bytes, expected):
        raise WebhookAuthError("the Mailgun signature does not match")
    check_fresh(timestamp, config["WEBHOOK_TOLERANCE"])
    return storable_text(token)  # kept as a nonce, in a text column


# Permanent for this copy, but no word on the address: Mailgun gave up after retrying
# for hours ("old"), or a mailbox provider blocked the sender ("espblock"). Counted as a
# soft bounce: a hard one stops the address for good, and a block on our side would
# have retired good readers by the thousand.
_NOT_THE_ADDRESS = {"old", "espblock"}
_SUPPRESSED_BECAUSE = {
    "suppress-complaint": EventKind.COMPLAINT,
    "suppress-unsubscribe": EventKind.UNSUBSCRIBE,
}


def _kind(data: dict[str, Any]) -> EventKind:
    event = data.get("event")
    if event == "failed":
        if data.get("severity") != "permanent":
            return EventKind.SOFT_BOUNCE
        # Mailgun refused to send because the address is on one of its suppression lists:
        # the list says why (a complaint is not a bounce, an unsubscribe neither).
        reason = str(data.get("reason"))
        if reason in _NOT_THE_ADDRESS:
            return EventKind.SOFT_BOUNCE
        return _SUPPRESSED_BECAUSE.get(reason, EventKind.HARD_BOUNCE)
    return {
        "complained": EventKind.COMPLAINT,
        "unsubscribed": EventKind.UNSUBSCRIBE,
        "delivered": EventKind.DELIVERED,
    }.get(str(event), EventKind.UNKNOWN)


def parse(body: bytes) -> list[WebhookEvent]:
    """The ``event-data`` of a Mailgun webhook as a normalised event."""
    item = parse_json(body)
    data = item.get("event-data") if isinstance(item, dict) else None
    if not isinstance(data, dict):
        raise WebhookPayloadError("a Mailgun webhook carries an 'event-data' object")
    variables = data.get("user-variables") if isinstance(data.get("user-variables"), dict) else {}
    message = data.get("message") if isinstance(data.get("message"), dict) else {}
    headers = message.get("headers") if isinstance(message.get("headers"), dict) else {}
    return [
        WebhookEvent(
            event_id=text(data.get("id")) or fallback_id(data),
            kind=_kind(data),
            raw_type=str(data.get("event", "")),
            email=text(data.get("recipient")),
            message_key=text(variables.get(KEY_NAME)),
            provider_message_id=text(headers.get("message-id")),
            occurred_at=from_epoch(data.get("timestamp")),
            payload=data,
        )
    ]
