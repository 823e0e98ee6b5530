"""Postmark: ``POST /email/batch``, up to 500 messages, one ``ErrorCode`` per message."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any
from urllib.parse import quote

from .base import Message, Outcome, SendResult, Stream, same_result
from .http import (
    HttpApi,
    common_result,
    error_text,
    json_body,
    named_fields,
    names_the_sender,
    require,
    send_in_groups,
)

# Postmark's per-message ErrorCodes (https://postmarkapp.com/developer/api/overview#error-codes).
_REJECTED = {300, 406, 422}  # invalid address, inactive (bounced/complained) recipient, bad data
_INACTIVE = 406  # Postmark keeps the address from the stream (see why_suppressed)
# Why Postmark suppressed an address, as the event that stops our mail to it.
_SUPPRESSION_EVENTS = {
    "HardBounce": "hard_bounce",
    "SpamComplaint": "complaint",
    "ManualSuppression": "unsubscribe",  # the reader's click on Postmark's own link, or ours
}
# Bad token, sender signature missing or unconfirmed, sending not allowed, account
# pending, message stream missing: every later message would fail the same way.
_CONFIG = {10, 400, 401, 405, 412, 1235}
_TRANSIENT = {100}  # Postmark's own "maintenance"


class PostmarkProvider:
    """Sends through Postmark; digests on the broadcast stream, the rest on ``outbound``."""

    name = "postmark"
    max_batch = 500

    def __init__(self, token: str, base_url: str, broadcast_stream: str, timeout: float) -> None:
        self.api = HttpApi(base_url, timeout, headers={"X-Postmark-Server-Token": token})
        self.streams = {Stream.TRANSACTIONAL: "outbound", Stream.BROADCAST: broadcast_stream}

    def payload(self, message: Message) -> dict[str, Any]:
        """One message as Postmark's JSON."""
        body: dict[str, Any] = {
            "From": message.sender,
            "To": message.to,
            "Subject": message.subject,
            "TextBody": message.text,
            "HtmlBody": message.html,
            "MessageStream": self.streams[message.stream],
            "Headers": [{"Name": k, "Value": v} for k, v in message.headers.items()],
            "Metadata": {"newsletter_key": message.key},
        }
        if message.tags:
            body["Tag"] = message.tags[0]  # Postmark takes one tag per message
        return body

    def send_batch(self, messages: Sequence[Message]) -> list[SendResult]:
        """Send up to 500 messages in one call and read each one's ErrorCode."""
        answer = self.api.post_json("/email/batch", [self.payload(m) for m in messages])
        if isinstance(answer, SendResult):
            return same_result(messages, answer)
        if answer.status_code == 413:
            return self._in_halves(messages, answer)
        failed = common_result(answer)
        if failed is not None:
            return same_result(messages, failed)
        body = json_body(answer)
        if answer.status_code >= 400:
            return same_result(messages, whole_request_result(answer.status_code, body, answer))
        if not isinstance(body, list) or len(body) != len(messages):
            # A 2xx: Postmark took the request, but which of its messages is unknown.
            error = f"unexpected batch answer: {error_text(answer)}"
            return same_result(messages, SendResult(Outcome.UNKNOWN, error=error))
        return [message_result(item) for item in body]

    def why_suppressed(self, message: Message) -> str | None:
        """Why Postmark keeps ``message``'s address inactive on its stream, as an event kind.

        A hard bounce, a spam complaint, or a manual suppression (the reader
        left through Postmark's unsubscribe link): each stops our mail as its
        webhook would. None when the lookup fails or lists no reason. Asked
        after the batch is recorded: a slow answer here cannot outlast the
        batch's claim and have it sent again.
        """
        stream = quote(self.streams[message.stream], safe="")
        answer = self.api.get_json(
            f"/message-streams/{stream}/suppressions/dump", {"EmailAddress": message.to}
        )
        listed = answer.get("Suppressions") if isinstance(answer, Mapping) else None
        reasons = [
            entry.get("SuppressionReason")
            for entry in listed or []
            if isinstance(entry, Mapping)
            and str(entry.get("EmailAddress", "")).lower() == message.to.lower()
        ]
        return next((_SUPPRESSION_EVENTS[r] for r in reasons if r in _SUPPRESSION_EVENTS), None)

    def _in_halves(self, messages: Sequence[Message], answer: Any) -> list[SendResult]:
        """A batch over Postmark's size limit (50 MB) goes again as two; one message alone fails.

        Postmark refuses the whole request; a digest of long posts to 500
        readers can reach it, and sending the same batch again would only be
        refused again. Halves stop at a rate limit or a refused key, as groups do.
        """
        if len(messages) == 1:
            return [SendResult(Outcome.REJECTED, error=f"too large: {error_text(answer)}")]
        middle = len(messages) // 2
        halves = (range(middle), range(middle, len(messages)))
        calls = [(h, partial(self.send_batch, [messages[i] for i in h])) for h in halves]
        return send_in_groups(calls, len(messages))


def whole_request_result(status: int, body: Any, response: Any) -> SendResult:
    """A 4xx for the whole request: Postmark's 422 carries an ErrorCode too."""
    code = body.get("ErrorCode") if isinstance(body, Mapping) else None
    if code in _CONFIG:
        return SendResult(Outcome.CONFIG_ERROR, error=error_text(response))
    if status == 422 and code is not None:
        # 422 for the whole batch: the request itself is malformed; nothing will fix it.
        return SendResult(Outcome.REJECTED, error=error_text(response))
    return SendResult(Outcome.CONFIG_ERROR, error=error_text(response))


def message_result(item: Any) -> SendResult:
    """One entry of the batch answer as a result (unknown if it is no entry at all)."""
    if not isinstance(item, Mapping):
        return SendResult(Outcome.UNKNOWN, error=f"unexpected batch answer entry: {item!r:.200}")
    code = item.get("ErrorCode", 0)
    if code == 0:
        return SendResult(Outcome.SENT, provider_id=item.get("MessageID"))
    text = f"Postmark {code}: {item.get('Message', '')}"
    # 300 "Invalid 'From' address: '...'": our MAIL_FROM, refused in every message alike.
    if code in _CONFIG or (code == 300 and names_the_sender(named_fields(item.get("Message")))):
        return SendResult(Outcome.CONFIG_ERROR, error=text)
    if code in _TRANSIENT:
        return SendResult(Outcome.TRANSIENT, error=text)
    if code == 429:
        return SendResult(Outcome.RATE_LIMITED, error=text)
    return SendResult(Outcome.REJECTED, error=text, suppressed=code == _INACTIVE)


def build(config: Mapping[str, Any]) -> PostmarkProvider:
    """The provider from the settings, or ``ProviderConfigError``."""
    require(config, "postmark", "POSTMARK_SERVER_TOKEN")
    return PostmarkProvider(
        config["POSTMARK_SERVER_TOKEN"],
        config["POSTMARK_API_URL"],
        config["POSTMARK_BROADCAST_STREAM"] or "broadcast",
        config["PROVIDER_TIMEOUT"],
    )
