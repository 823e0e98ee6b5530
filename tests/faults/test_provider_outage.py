"""The email provider is down for "an hour" (short back-off settings): deliveries wait
with growing back-off, none is dropped (not even past RETRY_MAX_ATTEMPTS), the admin
stats show the backlog, and when the provider returns everything goes out once.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select

from newsletter.delivery.dispatcher import dispatch_pass
from newsletter.delivery.ledger import RetryPolicy
from newsletter.extensions import db
from newsletter.models import Delivery, DeliveryStatus, utcnow
from tests.digests.helpers import add_confirmed, add_post
from tests.providers.servers import FakePostmark
from tests.servers import serve

OUTAGE_ROUNDS = 5
MAX_ATTEMPTS = 3  # fewer than the outage's failures: attempts alone would drop the digest
BASE = 0.15  # RETRY_BASE_SECONDS: long enough that no retry falls due within a pass
CAP = 10.0  # RETRY_MAX_SECONDS
DOWN = (503, {}, {"ErrorCode": 503, "Message": "Service unavailable"})


@pytest.fixture
def postmark() -> Iterator[tuple[FakePostmark, str]]:
    fake = FakePostmark()
    with serve(fake) as base:
        yield fake, base


def _deliveries(app) -> list[Delivery]:
    with app.app_context():
        rows = db.session.scalars(select(Delivery).order_by(Delivery.id)).all()
        db.session.expunge_all()
        db.session.remove()
        return list(rows)


def _dispatch_when_due(app) -> tuple[datetime, datetime]:
    """Wait until every waiting delivery is due (jitter spreads them), run a pass; its span."""
    waiting = [d.next_attempt_at for d in _deliveries(app) if d.status is DeliveryStatus.QUEUED]
    if waiting:
        time.sleep(max(0.0, (max(waiting) - utcnow()).total_seconds()) + 0.01)
    started = utcnow()
    with app.app_context():
        try:
            dispatch_pass()
        finally:
            db.session.remove()
    return started, utcnow()


@pytest.mark.slow
def test_a_long_provider_outage_backs_off_drops_nothing_and_sends_once(
    make_app, postmark, admin_headers, monkeypatch
):
    fake, base = postmark
    app = make_app(
        EMAIL_PROVIDER="postmark",
        POSTMARK_API_URL=base,
        POSTMARK_SERVER_TOKEN=fake.token,
        RETRY_BASE_SECONDS=BASE,
        RETRY_MAX_SECONDS=CAP,
        RETRY_MAX_ATTEMPTS=MAX_ATTEMPTS,
        RETRY_MAX_AGE=3600.0,  # "an hour": the outage is shorter than that
    )
    client = app.test_client()
    readers = add_confirmed(app, 40)
    add_post(client, admin_headers, 1)
    digest = client.post("/admin/digests", json={}, headers=admin_headers).get_json()

    fake.script = [DOWN] * 10_000  # every call fails until the script is cleared
    # The waits the policy chose, as it chose them: the doubling is read from these, not
    # from the clock (a slow pass under load stretched or hid the first wait).
    chosen: list[float] = []
    delay = RetryPolicy.delay
    monkeypatch.setattr(
        RetryPolicy,
        "delay",
        lambda self, attempts, jitter=None: (
            chosen.append(delay(self, attempts, jitter)) or chosen[-1]
        ),
    )
    gaps = []  # each retry's wait as the ledger shows it, from its pass's start
    for _ in range(OUTAGE_ROUNDS):
        started, _ended = _dispatch_when_due(app)
        rows = _deliveries(app)
        assert {d.status for d in rows} == {DeliveryStatus.QUEUED}
        gaps.append(min((d.next_attempt_at - started).total_seconds() for d in rows))
    # Attempt n waits between half and all of min(base * 2**(n-1), max), counted from
    # when the pass recorded it, somewhere between the pass's start and its end
    # (comparing neighbours directly failed when a slow pass met a short jitter).
    for attempt, gap in enumerate(gaps, start=1):
        ceiling = min(BASE * 2 ** (attempt - 1), CAP)
        assert 0.5 * ceiling <= gap <= ceiling + 1.0, (attempt, gaps)
    # Doubling each time, under the jitter: the last round's waits are at least 8 bases,
    # the first round's at most one (one wait per reader per round).
    first, last = chosen[: len(readers)], chosen[-len(readers) :]
    assert len(chosen) == OUTAGE_ROUNDS * len(readers)
    assert min(last) > 4 * max(first), (gaps, first, last)
    assert {d.attempts for d in _deliveries(app)} == {OUTAGE_ROUNDS}  # past MAX_ATTEMPTS...
    assert fake.delivered == []

    stats = client.get("/admin/stats", headers=admin_headers).get_json()
    assert stats["backlog"]["waiting"] == len(readers)  # ...and still waiting, visibly
    assert stats["deliveries"]["failed"] == 0
    progress = client.get(f"/admin/digests/{digest['id']}", headers=admin_headers).get_json()
    assert progress["pending"] == len(readers) and progress["failed"] == 0

    fake.script = []  # the provider is back
    _dispatch_when_due(app)
    assert sorted(m["To"] for m in fake.delivered) == sorted(readers)  # each exactly once
    assert {d.status for d in _deliveries(app)} == {DeliveryStatus.SENT}
    assert client.get("/admin/stats", headers=admin_headers).get_json()["backlog"]["waiting"] == 0


def test_retry_policy_gives_up_only_after_attempts_and_age():
    policy = RetryPolicy(30.0, 3600.0, max_attempts=3, max_age_seconds=3600.0)
    now = utcnow()
    young, old = now - timedelta(minutes=30), now - timedelta(hours=2)
    assert not policy.gives_up(2, old, now)  # attempts left
    assert not policy.gives_up(9, young, now)  # an outage shorter than the age
    assert policy.gives_up(3, old, now)  # both spent: a message the provider keeps refusing
    assert RetryPolicy(30.0, 3600.0, 3).gives_up(3, young, now)  # age 0: attempts alone


def test_the_back_off_stays_at_its_cap_however_many_attempts():
    policy = RetryPolicy(30.0, 60.0, max_attempts=3, max_age_seconds=3 * 86400.0)
    for attempts in (3, 64, 1100, 10_000):  # 2**1099 would overflow a float
        assert 30.0 <= policy.delay(attempts) <= 60.0
