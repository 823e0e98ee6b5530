"""Each HTTP provider's 429, from a local server: the batch waits ``Retry-After``, tried once.

Prism's mocks of SendGrid's and Resend's published documents answer what
the documents describe, not a rate limit; this server answers nothing else.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from werkzeug.wrappers import Request, Response

from newsletter.providers import Outcome, Provider
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
