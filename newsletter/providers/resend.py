"""Resend: ``POST /emails/batch``, up to 100 messages, with an idempotency key per batch."""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

from .base import Message, Outcome, SendResult, same_result
from .http import (
    HttpApi,
    common_result,
    error_text,
    json_body,
    named_fields,
    refused,
    require,
    send_in_groups,
)

log = logging.getLogger(__name__)
_TAG_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


class ResendProvider:
    """Sends through Resend's batch endpoint; a retried batch carries the same key."""

    name = "resend"
    max_batch = 100
    # Seconds to wait before making a request that may have reached Resend (a timeout,
    # a dropped connection, a 5xx, the key still in flight) again, as it was, key and
    # all. Left to the ledger, each copy was retried on its own back-off, in batches of
    # other copies under other keys: a batch Resend had taken before our timeout went
    # out twice.
    repeat_waits: tuple[float, ...] = (1.0, 3.0)

    def __init__(self, api_key: str, base_url: str, timeout: float) -> None:
        self.api = HttpApi(base_url, timeout, headers={"Authorization": f"Bearer {api_key}"})

    def payload(self, message: Message) -> dict[str, Any]:
        """One message as Resend's JSON; our key as a tag and a header."""
        tags = [{"name": "newsletter_key", "value": tag_value(message.key)}]
        tags += [{"name": "category", "value": tag_value(t)} for t in message.tags[:1]]
        return {
            "from": message.sender,
            "to": [message.to],
            "subject": message.subject,
            "text": message.text,
            "html": message.html,
            "headers": {**message.headers, "X-Newsletter-Key": message.key},
            "tags": tags,
        }

    def send_batch(self, messages: Sequence[Message]) -> list[SendResult]:
        """Send up to 100 messages in one call; if Resend refuses the batch, each on its own."""
        results = self._post("/emails/batch", messages)
        if len(messages) > 1 and results[0].outcome is Outcome.REJECTED:
            # Resend validates a batch as a whole: find the one bad message, send the rest
            # (and stop at a rate limit or a refused key: nothing more is spent).
            calls = [([i], partial(self._post, "/emails", [m])) for i, m in enumerate(messages)]
            return send_in_groups(calls, len(messages))
        return results

    def _post(self, path: str, messages: Sequence[Message]) -> list[SendResult]:
        """The request, made again with the same key while its answer leaves it unknown."""
        single = path == "/emails"
        payload = self.payload(messages[0]) if single else [self.payload(m) for m in messages]
        headers = {"Idempotency-Key": idempotency_key(messages)}
        for wait in self.repeat_waits:
            answer = self.api.post_json(path, payload, headers)
            results = self._results(single, messages, answer)
            if not _unknown(answer, results[0]):
                return results
            log.info("resend: %s; the same request again in %gs", results[0].error, wait)
            time.sleep(wait)
        return self._results(single, messages, self.api.post_json(path, payload, headers))

    def _results(self, single: bool, messages: Sequence[Message], answer: Any) -> list[SendResult]:
        if isinstance(answer, SendResult):
            return same_result(messages, answer)
        # 409 is Resend's answer about the idempotency key, read before the generic one.
        failed = four_xx_result(answer) if answer.status_code == 409 else common_result(answer)
        if failed is None and answer.status_code >= 400:
            failed = four_xx_result(answer)
        if failed is not None:
            return same_result(messages, failed)
        # A 2xx means Resend took every message: never send them again, ids or not.
        body = json_body(answer)
        data = [body] if single else (body.get("data") if isinstance(body, Mapping) else None)
        if not isinstance(data, list) or len(data) != len(messages):
            log.warning("resend accepted %d messages with an odd answer", len(messages))
            data = [None] * len(messages)
        return [SendResult(Outcome.SENT, provider_id=_id(item)) for item in data]


def _unknown(answer: Any, result: SendResult) -> bool:
    """Whether Resend may have taken the request: no answer, a 5xx, or its key in flight."""
    in_flight = not isinstance(answer, SendResult) and answer.status_code == 409
    return result.outcome in (Outcome.TRANSIENT, Outcome.UNKNOWN) or (
        in_flight and result.outcome is Outcome.RATE_LIMITED
    )


def _id(item: Any) -> str | None:
    return item.get("id") if isinstance(item, Mapping) else None


def four_xx_result(response: Any) -> SendResult:
    """What Resend's other 4xx mean for the messages of the request."""
    body = json_body(response)
    body = body if isinstance(body, Mapping) else {}
    name = body.get("name")
    if name == "invalid_idempotent_request":
        # Our key names exactly these messages, and it was used before: an earlier
        # attempt was accepted and we crashed before recording it. Sending again would
        # deliver twice (the rendered bodies differ only by freshly signed links).
        return SendResult(Outcome.SENT, error="accepted by an earlier attempt (idempotency key)")
    if response.status_code == 409:  # the same key is in flight right now
        return SendResult(Outcome.RATE_LIMITED, error=error_text(response), retry_after=1.0)
    if name in ("invalid_api_key", "restricted_api_key", "invalid_from_address"):
        return SendResult(Outcome.CONFIG_ERROR, error=error_text(response))
    # "Invalid `from` field": our sender, a configuration error; "Invalid `to` field": the reader.
    return refused(response, named_fields(body.get("message")))


def idempotency_key(messages: Sequence[Message]) -> str:
    """The same key for the same batch of messages, so a retry after a crash sends nothing twice."""
    if len(messages) == 1:
        return f"newsletter-{messages[0].key}"
    digest = hashlib.sha256("\n".join(m.key for m in messages).encode()).hexdigest()
    return f"newsletter-batch-{digest}"


def tag_value(value: str) -> str:
    """A value Resend accepts in a tag: ASCII letters, digits, ``_`` and ``-``, 256 at most."""
    return _TAG_UNSAFE.sub("_", value)[:256]


def build(config: Mapping[str, Any]) -> ResendProvider:
    """The provider from the settings, or ``ProviderConfigError``."""
    require(config, "resend", "RESEND_API_KEY")
    return ResendProvider(
        config["RESEND_API_KEY"], config["RESEND_API_URL"], config["PROVIDER_TIMEOUT"]
    )
