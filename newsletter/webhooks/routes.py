"""``POST /webhooks/<provider>``: verify on the raw body first, then hand the events on."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any, NoReturn

from flask import Blueprint, Response, current_app, jsonify, request

from ..errors import AppError
from ..extensions import db, limiter
from . import mailgun, postmark, resend, sendgrid, service
from .events import WebhookAuthError, WebhookEvent, WebhookPayloadError

log = logging.getLogger(__name__)
bp = Blueprint("webhooks", __name__, url_prefix="/webhooks")
MAX_WEBHOOK_BYTES = 8 * 1024 * 1024  # SendGrid posts events in batches

# A verifier raises WebhookAuthError, or returns a nonce that may be used only once.
Verify = Callable[[Mapping[str, Any], Mapping[str, str], bytes], str | None]
Parse = Callable[[bytes, Mapping[str, str]], list[WebhookEvent]]
PROVIDERS: dict[str, tuple[Verify, Parse]] = {
    "postmark": (postmark.verify, lambda body, _h: postmark.parse(body)),
    "sendgrid": (sendgrid.verify, lambda body, _h: sendgrid.parse(body)),
    "mailgun": (mailgun.verify, lambda body, _h: mailgun.parse(body)),
    "resend": (resend.verify, lambda body, headers: resend.parse(body, headers["svix-id"])),
}


@bp.post("/<provider>")
@limiter.exempt
def receive(provider: str) -> Response:
    """Verify a provider's webhook, store its events once, and act on them."""
    if provider not in PROVIDERS:
        raise AppError("not_found", "No webhook for that provider.", 404)
    verify, parse = PROVIDERS[provider]
    request.max_content_length = MAX_WEBHOOK_BYTES
    body = request.get_data(cache=True)
    try:
        nonce = verify(current_app.config, request.headers, body)
        replayed = nonce is not None and not service.claim_nonce(
            db.session, provider, nonce, current_app.config["WEBHOOK_TOLERANCE"]
        )
    except WebhookAuthError as exc:
        _refuse(provider, str(exc))
    try:
        events = parse(body, request.headers)
    except WebhookPayloadError as exc:
        if replayed:
            _refuse(provider, "this signature was already used")
        raise AppError("invalid_payload", f"The webhook body cannot be read: {exc}.", 400) from None
    if replayed:
        # The provider's retry of a request whose answer it lost carries the same
        # signature and the same events, all stored by then: a 200 stops its retries.
        # Any other event under a used signature may be a captured signature's forgery.
        if not service.all_stored(db.session, provider, events):
            _refuse(provider, "this signature was already used")
        db.session.rollback()
        return jsonify(received=len(events), new=0)
    new = service.handle(db.session, provider, events)
    return jsonify(received=len(events), new=new)


def _refuse(provider: str, why: str) -> NoReturn:
    log.warning("%s webhook refused: %s", provider, why)
    raise AppError("invalid_signature", f"The webhook did not verify: {why}.", 401)
