"""Each HTTP provider's 429, from a local server: the batch waits ``Retry-After``, tried once.

Prism's mocks of SendGrid's and Resend's published documents answer what
the documents describe, not a rate limit; this server answers nothing else.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from werkzeug.wrappers import Request, Response

from newsletter.providers import Outcome, Provider
from newsletter.providers.http import retry_after_seconds
from newsletter.providers.mailgun import MailgunProvider
from newsletter.providers.postmark import PostmarkProvider
from newsletter.providers.resend import ResendProvider
from newsletter.providers.sendgrid import SendGridProvider
from tests.servers import serve

from .messages import confirmation, digest

PROVIDERS: dict[str, Callable[[str], Provider]] = {
    "postmark": lambda base: PostmarkProvider("pm-token", base, "broadcast", 5),
    "sendgrid": lambda base: SendGridProvider("SG.key", base, 5),
    "resend": lambda base: ResendProvider("re_key", base, 5),
    "mailgun": lambda base: MailgunProvider("key-1", "mg.example.org", base, 5),
}


class SlowDown:
    """Answers every request ``429 Too Many Requests`` with ``Retry-After: 7``, counting them."""

    def __init__(self) -> None:
        self.requests = 0

    def __call__(self, environ, start_response):
        Request(environ).get_data()  # read the body, as a real server would
        self.requests += 1
        answer = Response(
            '{"message": "too many requests"}',
            429,
            {"Retry-After": "7"},
            content_type="application/json",
        )
        return answer(environ, start_response)


@pytest.mark.parametrize("name", sorted(PROVIDERS))
def test_a_429_holds_the_whole_batch_for_its_retry_after(name: str) -> None:
    server = SlowDown()
    # Copies of one digest and a confirmation: every provider's grouping, one request or many.
    batch = [digest(0), digest(1), confirmation(2)]
    with serve(server) as base:
        results = PROVIDERS[name](base).send_batch(batch)
    assert [r.outcome for r in results] == [Outcome.RATE_LIMITED] * 3
    assert [r.retry_after for r in results] == [7.0] * 3
    assert all("HTTP 429" in (r.error or "") for r in results)
    # After the first 429 no other request is made: SendGrid (the two digest copies merged,
    # the confirmation apart) and Mailgun (a request a message) would otherwise make more;
    # Postmark and Resend send the batch in one request either way.
    assert server.requests == 1


class Scripted:
    """Answers each request with the next (status, headers, body) of ``script``, then 200."""

    def __init__(self, script: list[tuple[int, dict[str, str], dict]]) -> None:
        self.script = script
        self.paths: list[str] = []

    def __call__(self, environ, start_response):
        request = Request(environ)
        request.get_data()
        self.paths.append(request.path)
        status, headers, body = self.script.pop(0) if self.script else (200, {}, {"id": "ok"})
        answer = Response(json.dumps(body), status, headers, content_type="application/json")
        return answer(environ, start_response)


REFUSED = {"name": "validation_error", "message": "one address is bad", "errors": []}


@pytest.mark.parametrize("stop", [429, 401])
@pytest.mark.parametrize("name", ["resend", "sendgrid"])
def test_after_a_refused_batch_a_429_or_401_stops_the_one_by_one_sends(name, stop) -> None:
    # A refused batch is sent again message by message to find the bad one; a rate limit
    # or a refused key met on the way must stop it, as it does between batches.
    first = (422 if name == "resend" else 400, {}, REFUSED)
    server = Scripted([first, (200, {}, {"id": "m0"}), (stop, {"Retry-After": "30"}, {})])
    batch = [digest(n) for n in range(5)]  # one template: one request for SendGrid too
    with serve(server) as base:
        results = PROVIDERS[name](base).send_batch(batch)
    expected = Outcome.RATE_LIMITED if stop == 429 else Outcome.CONFIG_ERROR
    assert [r.outcome for r in results] == [Outcome.SENT] + [expected] * 4
    assert len(server.paths) == 3  # the batch, the first message, the one refused: no more


def test_resend_409_for_a_key_used_before_is_sent_not_retried(monkeypatch) -> None:
    # Resend answers 409 invalid_idempotent_request when the key was used by an earlier
    # attempt it accepted: sending again would deliver twice.
    monkeypatch.setattr(ResendProvider, "repeat_waits", (0.01, 0.01))
    used = (409, {}, {"name": "invalid_idempotent_request", "message": "key used"})
    busy = (409, {}, {"name": "concurrent_idempotent_requests", "message": "in flight"})
    server = Scripted([used, busy, busy, busy])
    with serve(server) as base:
        provider = PROVIDERS["resend"](base)
        (earlier,) = provider.send_batch([digest(0)])
        (in_flight,) = provider.send_batch([digest(1)])
    assert earlier.outcome is Outcome.SENT
    # Still in flight after the same request twice more: the queue waits a second.
    assert (in_flight.outcome, in_flight.retry_after) == (Outcome.RATE_LIMITED, 1.0)
    assert len(server.paths) == 4


@pytest.mark.parametrize("value", ["1e12", "inf", "nan", "-5"])
def test_a_retry_after_beyond_a_day_waits_a_day(value: str) -> None:
    expected = {"1e12": 86_400.0, "inf": 86_400.0, "nan": 0.0, "-5": 0.0}[value]
    assert retry_after_seconds(value) == expected
