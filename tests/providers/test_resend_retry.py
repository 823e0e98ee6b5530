"""Resend's idempotency key and per-message fallback, seen from a recording local server."""

from __future__ import annotations

import json
import time

import pytest
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


@pytest.fixture(autouse=True)
def quick_repeats(monkeypatch):
    monkeypatch.setattr(ResendProvider, "repeat_waits", (0.05, 0.05))


class Keeping:
    """Resend's idempotency as its documents describe it: a key seen before gets its first
    answer, and nothing is delivered again. The first request is answered too late."""

    def __init__(self, late: float) -> None:
        self.late = late
        self.answers: dict[str, bytes] = {}
        self.delivered: list[str] = []
        self.requests = 0

    def __call__(self, environ, start_response):
        request = Request(environ)
        key = request.headers["Idempotency-Key"]
        self.requests += 1
        if key not in self.answers:
            batch = request.get_json()
            self.delivered += [item["to"][0] for item in batch]
            self.answers[key] = json.dumps({"data": [{"id": f"re-{n}"} for n in range(len(batch))]})
            if self.requests == 1:
                time.sleep(self.late)  # taken, and the answer comes after our timeout
        response = Response(self.answers[key], 200, content_type="application/json")
        return response(environ, start_response)


def test_a_batch_whose_answer_was_lost_is_asked_again_with_its_key_and_delivered_once() -> None:
    # Left to the ledger, each copy came due on its own back-off and went out again in
    # other batches under other keys: Resend delivered the whole batch a second time.
    resend = Keeping(late=1.5)
    with serve(resend) as base:
        batch = [digest(n) for n in range(3)]
        results = ResendProvider("re_test", base, 0.5).send_batch(batch)
    assert [r.outcome for r in results] == [Outcome.SENT] * 3
    assert [r.provider_id for r in results] == ["re-0", "re-1", "re-2"]
    assert resend.requests == 2
    assert sorted(resend.delivered) == sorted(m.to for m in batch)  # each once


@pytest.mark.parametrize("status", [500, 409])
def test_an_answer_that_leaves_the_batch_unknown_repeats_the_same_request(status) -> None:
    recorder = Recorder([status, status, 200])
    with serve(recorder) as base:
        results = ResendProvider("re_test", base, 5).send_batch([digest(n) for n in range(3)])
    assert [r.outcome for r in results] == [Outcome.SENT] * 3
    keys = [key for _, key, _ in recorder.seen]
    assert len(keys) == 3 and len(set(keys)) == 1 and keys[0].startswith("newsletter-batch-")


def test_a_batch_still_failing_after_the_repeats_goes_back_to_the_ledger_and_keeps_its_key():
    recorder = Recorder([500, 500, 500])
    with serve(recorder) as base:
        provider = ResendProvider("re_test", base, 5)
        batch = [digest(n) for n in range(3)]
        first = provider.send_batch(batch)
        second = provider.send_batch(batch)
    assert [r.outcome for r in first] == [Outcome.TRANSIENT] * 3
    assert [r.provider_id for r in second] == ["re-0", "re-1", "re-2"]
    assert len({key for _, key, _ in recorder.seen}) == 1 and len(recorder.seen) == 4


def test_a_refused_batch_is_sent_message_by_message() -> None:
    recorder = Recorder([422, 200, 422, 200])
    with serve(recorder) as base:
        results = ResendProvider("re_test", base, 5).send_batch([digest(n) for n in range(3)])
    assert [r.outcome for r in results] == [Outcome.SENT, Outcome.REJECTED, Outcome.SENT]
    paths = [path for path, _, _ in recorder.seen]
    assert paths == ["/emails/batch", "/emails", "/emails", "/emails"]
    assert recorder.seen[1][1] == f"newsletter-{digest(0).key}"
