"""Sign webhook requests the way each provider really does, with keys made in the test."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

MAILGUN_KEY = "mailgun-signing-key"
RESEND_SECRET = "whsec_" + base64.b64encode(b"resend-test-secret-32-bytes-long").decode()
BASIC_AUTH = "hooks:s3cret"


def mailgun_body(
    event_data: dict[str, Any],
    key: str = MAILGUN_KEY,
    at: float | None = None,
    token: str | None = None,
) -> bytes:
    token = token or uuid.uuid4().hex  # Mailgun sends a fresh token with every request
    timestamp = str(int(at if at is not None else time.time()))
    signature = hmac.new(key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()
    return json.dumps(
        {
            "signature": {"timestamp": timestamp, "token": token, "signature": signature},
            "event-data": event_data,
        }
    ).encode()


def svix_headers(
    body: bytes, msg_id: str, secret: str = RESEND_SECRET, at: float | None = None
) -> dict[str, str]:
    timestamp = str(int(at if at is not None else time.time()))
    key = base64.b64decode(secret.removeprefix("whsec_"))
    digest = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return {
        "svix-id": msg_id,
        "svix-timestamp": timestamp,
        "svix-signature": f"v1,bm90LXRoaXMtb25l v1,{base64.b64encode(digest).decode()}",
        "Content-Type": "application/json",
    }


class SendGridSigner:
    """An ECDSA P-256 key pair, as SendGrid's Signed Event Webhook uses."""

    def __init__(self) -> None:
        self.private = ec.generate_private_key(ec.SECP256R1())
        der = self.private.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.public_key = base64.b64encode(der).decode()

    def headers(self, body: bytes, at: float | None = None) -> dict[str, str]:
        timestamp = str(int(at if at is not None else time.time()))
        signature = self.private.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
        return {
            "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
            "X-Twilio-Email-Event-Webhook-Timestamp": timestamp,
            "Content-Type": "application/json",
        }


def basic(credentials: str = BASIC_AUTH) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(credentials.encode()).decode()}
