"""A bench-only HTTP provider: Postmark-shaped batches to ``BENCH_PROVIDER_URL``.

Registered in ``providers.REGISTRY`` by the bench's sending process only; the
real Postmark provider lives in its own branch.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import requests

from newsletter.providers import REGISTRY, Message, Outcome, SendResult


def payload(message: Message) -> dict[str, Any]:
    """One message as a Postmark-like batch entry."""
    return {
        "From": message.sender,
        "To": message.to,
        "Subject": message.subject,
        "TextBody": message.text,
        "HtmlBody": message.html,
        "Headers": [{"Name": k, "Value": v} for k, v in message.headers.items()],
        "MessageStream": message.stream.value,
        "Metadata": {"key": message.key},
    }


class BenchHTTPProvider:
    """Posts each batch as one JSON request on a kept-alive connection."""

    name = "bench-http"
    max_batch = 500

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.url = os.environ["BENCH_PROVIDER_URL"] + "/email/batch"
        self.session = requests.Session()

    def send_batch(self, messages: Sequence[Message]) -> list[SendResult]:
        """Send the batch; one result per message."""
        response = self.session.post(self.url, json=[payload(m) for m in messages], timeout=60)
        if response.status_code != 200:
            return [SendResult(Outcome.TRANSIENT, error=f"HTTP {response.status_code}")] * len(
                messages
            )
        return [SendResult(Outcome.SENT, provider_id=r["MessageID"]) for r in response.json()]


def register() -> None:
    """Make ``EMAIL_PROVIDER=bench-http`` available in this process."""
    REGISTRY["bench-http"] = BenchHTTPProvider
