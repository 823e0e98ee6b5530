"""However a dispatch pass ends, it leaves no transaction open (on PostgreSQL, no row locked).

And a send slow enough to risk its claim says so.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import pytest
from flask import Flask
from prometheus_client import REGISTRY
from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter.delivery.dispatcher import dispatch_pass
from newsletter.extensions import db
from newsletter.models import Delivery, DeliveryStatus, Status
from newsletter.providers import Message, Outcome, SendResult
from tests.subscriptions.helpers import set_status


class Answering:
    """A provider that gives every message the same answer."""

    name = "answering"
    max_batch = 100

    def __init__(self, outcome: Outcome, delay: float = 0.0) -> None:
        self.outcome = outcome
        self.delay = delay
        self.calls = 0

    def send_batch(self, messages: Sequence[Message]) -> list[SendResult]:
        self.calls += 1
        time.sleep(self.delay)
        retry_after = 60.0 if self.outcome is Outcome.RATE_LIMITED else None
        return [SendResult(self.outcome, retry_after=retry_after) for _ in messages]


@pytest.mark.parametrize(
    ("case", "outcome", "expected"),
    [
        ("nothing due", Outcome.SENT, None),
        ("sent", Outcome.SENT, DeliveryStatus.SENT),
        ("every copy skipped", Outcome.SENT, DeliveryStatus.SKIPPED),
        ("rate limited", Outcome.RATE_LIMITED, DeliveryStatus.QUEUED),
        ("configuration error", Outcome.CONFIG_ERROR, DeliveryStatus.QUEUED),
        ("refused", Outcome.REJECTED, DeliveryStatus.FAILED),
    ],
)
def test_every_way_a_pass_ends_commits_its_claim(
    make_app, case: str, outcome: Outcome, expected: DeliveryStatus | None
) -> None:
    app: Flask = make_app(RATELIMIT_ENABLED=False)
    if case != "nothing due":
        response = app.test_client().post("/subscribe", json={"email": "ann@example.com"})
        assert response.status_code == 202
    if case == "every copy skipped":  # she left before her confirmation's turn came
        set_status(app, "ann@example.com", Status.UNSUBSCRIBED)
    with app.app_context():
        app.extensions["newsletter.provider"] = Answering(outcome)
        dispatch_pass()
        assert not db.session().in_transaction()
        assert REGISTRY.get_sample_value("newsletter_dispatch_in_flight") == 0  # back down
        # Another connection can lock every row at once: none is still held by the pass
        # (PostgreSQL; SQLite has no row locks, its check is the transaction above).
        with Session(db.engine) as other:
            rows = other.execute(select(Delivery.status).with_for_update(nowait=True)).all()
            other.rollback()
        db.session.remove()
    assert [status for (status,) in rows] == ([expected] if expected else [])


# Over half the lease, well inside it: on PostgreSQL the lease is also the claim's idle limit.
@pytest.mark.parametrize(("delay", "warned"), [(0.0, False), (1.05, True)])
def test_a_send_that_takes_half_the_lease_is_reported(
    make_app, caplog: pytest.LogCaptureFixture, delay: float, warned: bool
) -> None:
    app: Flask = make_app(RATELIMIT_ENABLED=False, DISPATCH_LEASE=2.0)
    response = app.test_client().post("/subscribe", json={"email": "ann@example.com"})
    assert response.status_code == 202
    with app.app_context(), caplog.at_level(logging.WARNING, "newsletter.delivery.dispatcher"):
        app.extensions["newsletter.provider"] = Answering(Outcome.SENT, delay=delay)
        dispatch_pass()
        db.session.remove()
    assert ("over half of DISPATCH_LEASE" in caplog.text) is warned


def test_a_send_that_outlasts_the_lease_is_recorded_and_not_sent_again(
    make_app, caplog: pytest.LogCaptureFixture
) -> None:
    """PostgreSQL ended the claim mid-send: its answers were lost, and it went out for ever."""
    app: Flask = make_app(RATELIMIT_ENABLED=False, DISPATCH_LEASE=1)
    client = app.test_client()
    for n in range(3):
        assert client.post("/subscribe", json={"email": f"r{n}@example.com"}).status_code == 202
    provider = Answering(Outcome.SENT, delay=1.6)  # past the lease: the claim's idle limit
    with app.app_context(), caplog.at_level(logging.WARNING, "newsletter.delivery.dispatcher"):
        app.extensions["newsletter.provider"] = provider
        stats = dispatch_pass()
        assert stats.claimed == 3 and provider.calls == 1  # once, not again and again
        assert dispatch_pass().claimed == 0
        statuses = db.session.scalars(select(Delivery.status)).all()
        db.session.remove()
    assert statuses == [DeliveryStatus.SENT] * 3
