"""Recording a batch's answers: every outcome of one batch lands on its own row."""

from __future__ import annotations

from datetime import timedelta

from flask import Flask
from sqlalchemy import select, update

from newsletter.delivery import ledger
from newsletter.extensions import db
from newsletter.models import Delivery, DeliveryKind, DeliveryStatus, utcnow
from newsletter.providers import Outcome, SendResult

# Given up after 3 attempts *and* a day: a young delivery keeps its retries.
POLICY = ledger.RetryPolicy(
    base_seconds=60, max_seconds=3600, max_attempts=3, max_age_seconds=86400
)


def test_one_batch_of_every_outcome_and_attempt_count(app: Flask) -> None:
    answers = [
        (0, SendResult(Outcome.SENT, provider_id="pm-1")),
        (4, SendResult(Outcome.SENT, provider_id="pm-2")),  # sent on its fifth try
        (0, SendResult(Outcome.REJECTED, error="inactive recipient")),
        (1, SendResult(Outcome.TRANSIENT, error="HTTP 503")),
        (2, SendResult(Outcome.TRANSIENT, error="HTTP 503")),  # its third failure: given up
        (3, SendResult(Outcome.RATE_LIMITED, error="slow down", retry_after=30.0)),
        (2, SendResult(Outcome.TRANSIENT, error="HTTP 502")),  # its third, but queued today
        (1, SendResult(Outcome.CONFIG_ERROR, error="HTTP 401")),
    ]
    young = {6}  # the others were queued 30 days ago
    with app.app_context():
        deliveries = [
            ledger.queue(db.session, DeliveryKind.DIGEST_TEST, to_address=f"r{n}@example.com")
            for n in range(len(answers))
        ]
        db.session.flush()
        for n, (delivery, (attempts, _)) in enumerate(zip(deliveries, answers, strict=True)):
            queued_at = utcnow() - timedelta(days=0 if n in young else 30)
            db.session.execute(
                update(Delivery)
                .where(Delivery.id == delivery.id)
                .values(attempts=attempts, created_at=queued_at)
            )
        db.session.commit()
        before = utcnow()
        claimed = ledger.claim(db.session, 10, 60)
        assert [c.attempts for c in claimed] == [a for a, _ in answers]
        ledger.record(db.session, claimed, [r for _, r in answers], POLICY, "postmark")
        db.session.commit()
        db.session.expire_all()
        rows = db.session.scalars(select(Delivery).order_by(Delivery.id)).all()
        db.session.remove()

    assert [(r.status, r.attempts) for r in rows] == [
        (DeliveryStatus.SENT, 1),
        (DeliveryStatus.SENT, 5),
        (DeliveryStatus.FAILED, 1),
        (DeliveryStatus.QUEUED, 2),
        (DeliveryStatus.FAILED, 3),
        (DeliveryStatus.QUEUED, 3),  # a rate limit spends no attempt
        (DeliveryStatus.QUEUED, 3),  # three attempts, but not a day old: tried again
        (DeliveryStatus.QUEUED, 1),  # nor does a configuration error
    ]
    assert [r.provider_message_id for r in rows[:2]] == ["pm-1", "pm-2"]
    assert all(r.provider == "postmark" for r in rows)
    assert [r.last_error for r in rows] == [None, None] + [r.error for _, r in answers[2:]]
    assert all(r.sent_at is not None and r.sent_at >= before for r in rows[:2])
    assert all(r.sent_at is None for r in rows[2:])
    retry_in = (rows[3].next_attempt_at - before).total_seconds()
    assert 60 <= retry_in <= 121  # its second failure: 120 s, jittered above half
    rate_limited_in = (rows[5].next_attempt_at - before).total_seconds()
    assert 29 <= rate_limited_in <= 31  # the provider's Retry-After
    config_error_in = (rows[7].next_attempt_at - before).total_seconds()
    assert 59 <= config_error_in <= 61  # RETRY_BASE_SECONDS


def test_a_batch_that_failed_alike_comes_due_again_as_one_batch(app: Flask) -> None:
    # Drawn per copy, the jitter brought a timed-out batch back in pieces, each claimed
    # with other copies under a new idempotency key: Resend sent the batch a second time.
    with app.app_context():
        for n in range(6):
            ledger.queue(db.session, DeliveryKind.DIGEST_TEST, to_address=f"r{n}@example.com")
        db.session.commit()
        timeout = SendResult(Outcome.TRANSIENT, error="timed out")
        batches = []
        for _ in range(2):
            batch = ledger.claim(db.session, 3, 60)
            ledger.record(db.session, batch, [timeout] * 3, POLICY, "resend")
            db.session.commit()
            batches.append(batch)
        first, second = batches
        due = dict(db.session.execute(select(Delivery.id, Delivery.next_attempt_at)).all())
        db.session.remove()
    assert len({due[c.id] for c in first}) == 1 and len({due[c.id] for c in second}) == 1
    # Two batches do not come due as one: each draws its own.
    assert due[first[0].id] != due[second[0].id]
