"""A batch of many requests stops making them once its time is up: the rest wait for a claim.

With a provider slow enough (each answer in time, one request a message:
Mailgun, an SMTP relay), a batch of 100 went on past ``DISPATCH_LEASE``;
on PostgreSQL the server ended the claim, and the batch went out again from
another dispatcher while this one was still sending it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from flask import Flask
from sqlalchemy import select

from newsletter.extensions import db
from newsletter.models import Delivery, DeliveryStatus
from newsletter.providers import Outcome
from newsletter.providers.budget import sending_until
from newsletter.providers.mailgun import MailgunProvider
from newsletter.providers.smtp import SmtpProvider, parse_smtp_url
from tests.servers import serve

from .messages import digest
from .servers import FakeMailgun
from .test_postmark_dispatch import dispatch
from .test_smtp import SlowRelay, serving


@dataclass
class SlowMailgun(FakeMailgun):
    """Mailgun answering each call after ``slow`` seconds: in time, but slowly."""

    slow: float = 0.2

    def __call__(self, environ: dict, start_response: Callable) -> object:
        time.sleep(self.slow)
        return super().__call__(environ, start_response)


def test_mailgun_makes_no_request_past_the_batchs_time() -> None:
    mailgun = SlowMailgun(slow=0.2)
    with serve(mailgun) as base:
        provider = MailgunProvider(mailgun.key, mailgun.domain, base, 5)
        with sending_until(time.monotonic() + 0.5):
            results = provider.send_batch([digest(n) for n in range(8)])
        # Out of a batch's time (a plain call, the outbox's or a test's), nothing is cut.
        later = provider.send_batch([digest(9), digest(10), digest(11)])
    assert [r.outcome for r in later] == [Outcome.SENT] * 3
    sent = [r for r in results if r.outcome is Outcome.SENT]
    assert 1 <= len(sent) <= 4 and mailgun.calls == len(sent) + 3  # 0.2 s each, 0.5 s in all
    assert results[: len(sent)] == sent
    for untried in results[len(sent) :]:
        assert untried.outcome is Outcome.TRANSIENT and not untried.provider_fault
        assert (
            untried.error
            == "not tried: the batch's time ran out (half of DISPATCH_LEASE) before its turn"
        )


def test_an_smtp_batch_stops_at_its_time_and_the_first_message_always_goes() -> None:
    handler = SlowRelay(slow=0.2)
    with serving(handler) as port:
        provider = SmtpProvider(parse_smtp_url(f"smtp://127.0.0.1:{port}"), 5)
        with sending_until(time.monotonic() - 1):  # up before it began: one message still goes
            results = provider.send_batch([digest(n) for n in range(4)])
    assert [r.outcome for r in results] == [Outcome.SENT] + [Outcome.TRANSIENT] * 3
    assert (results[1].error or "").startswith("not tried: the batch's time ran out")
    assert len(handler.received) == 1


def test_the_dispatcher_gives_a_batch_half_the_lease_and_sends_the_rest_later(
    make_app: Callable[..., Flask],
) -> None:
    mailgun = SlowMailgun(slow=0.3)
    with serve(mailgun) as base:
        app = make_app(
            EMAIL_PROVIDER="mailgun",
            MAILGUN_API_URL=base,
            MAILGUN_API_KEY=mailgun.key,
            MAILGUN_DOMAIN=mailgun.domain,
            DISPATCH_LEASE=1,  # half: 0.5 s, two calls of 0.3 s at most
            RETRY_BASE_SECONDS=0.0,
            RATELIMIT_ENABLED=False,
        )
        client = app.test_client()
        for n in range(5):
            assert client.post("/subscribe", json={"email": f"r{n}@example.com"}).status_code == 202
        with app.app_context():
            first = dispatch_one_batch(app)
            assert 1 <= first <= 2 and mailgun.calls == first
            waiting = db.session.scalars(
                select(Delivery).where(Delivery.status == DeliveryStatus.QUEUED)
            ).all()
            assert len(waiting) == 5 - first
            assert all(
                (d.last_error or "").startswith("not tried: the batch's time") for d in waiting
            )
            db.session.remove()
        for _ in range(5):  # each pass sends some, and gives the rest back
            dispatch(app)
    assert sorted(m["to"] for m in mailgun.delivered) == [f"r{n}@example.com" for n in range(5)]


def dispatch_one_batch(app: Flask) -> int:
    """One batch, as a pass whose time is up after its first; how many it sent."""
    from newsletter.delivery.dispatcher import dispatch_pass

    return dispatch_pass(for_seconds=0).outcomes.get("sent", 0)
