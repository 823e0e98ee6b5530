"""Resend's idempotency key and per-message fallback, seen from a recording local server."""

from __future__ import annotations

import json

from werkzeug.wrappers import Request, Response

from newsletter.providers import Outcome
from newsletter.providers.resend import ResendProvider
from tests.servers import serve

from .messages import digest


class Recorder:
    """Answers scripted statuses and remembers each request's path, key and body."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.seen: list[tuple[str, str | None, object]] = []

    def __call__(self, environ, start_response):
        request = Request(environ)
        body = request.get_json()
        self.seen.append((request.path, request.headers.get("Idempotency-Key"), body))
        status = self.statuses.pop(0) if self.statuses else 200
        if status != 200:
            answer = {"name": "validation_error", "message": "bad"}
        elif isinstance(body, list):
            answer = {"data": [{"id": f"re-{n}"} for n in range(len(body))]}
        else:
            answer = {"id": "re-single"}
        response = Response(json.dumps(answer), status, content_type="application/json")
        return response(environ, start_response)


def test_a_retried_batch_carries_the_same_idempotency_key() -> None:
    recorder = Recorder([500])
    with serve(recorder) as base:
        provider = ResendProvider("re_test", base, 5)
        batch = [digest(n) for n in range(3)]
        first = provider.send_batch(batch)
        second = provider.send_batch(batch)
    assert [r.outcome for r in first] == [Outcome.TRANSIENT] * 3
    assert [r.provider_id for r in second] == ["re-0", "re-1", "re-2"]
    (_, key1, _), (_, key2, _) = recorder.seen
    assert key1 == key2 and key1.startswith("newsletter-batch-")


def test_a_refused_batch_is_sent_message_by_message() -> None:
    recorder = Recorder([422, 200, 422, 200])
    with serve(recorder) as base:
        results = ResendProvider("re_test", base, 5).send_batch([digest(n) for n in range(3)])
    assert [r.outcome for r in results] == [Outcome.SENT, Outcome.REJECTED, Outcome.SENT]
    paths = [path for path, _, _ in recorder.seen]
    assert paths == ["/emails/batch", "/emails", "/emails", "/emails"]
    assert recorder.seen[1][1] == f"newsletter-{digest(0).key}"
