"""A pass given ``for_seconds`` (a Celery task's) claims batch after batch until its time is up.

The first batch always goes, however short the time: a task that claimed
nothing would not queue another go, and the queue would wait for beat's sweep.
"""

from __future__ import annotations

from collections.abc import Callable

from flask import Flask
from sqlalchemy import func, select

from newsletter.delivery.dispatcher import dispatch_pass
from newsletter.extensions import db
from newsletter.models import Delivery, DeliveryStatus
from tests.delivery.test_pacing import Timed

SIGNUPS = 6
BATCH = 2


def _pass_with(make_app: Callable[..., Flask], for_seconds: float) -> tuple[int, list[int], int]:
    """Queue SIGNUPS confirmations, run one pass; what it claimed, its batches, what is left."""
    app: Flask = make_app(RATELIMIT_ENABLED=False, DISPATCH_BATCH_SIZE=BATCH)
    client = app.test_client()
    for n in range(SIGNUPS):
        assert client.post("/subscribe", json={"email": f"r{n}@example.com"}).status_code == 202
    provider = Timed()  # notes each batch's size
    with app.app_context():
        app.extensions["newsletter.provider"] = provider
        claimed = dispatch_pass(for_seconds=for_seconds).claimed
        queued = db.session.scalar(
            select(func.count())
            .select_from(Delivery)
            .where(Delivery.status == DeliveryStatus.QUEUED)
        )
        db.session.remove()
    return claimed, [size for _, size in provider.batches], queued


def test_a_pass_with_time_left_sends_every_batch(make_app: Callable[..., Flask]) -> None:
    claimed, batches, queued = _pass_with(make_app, for_seconds=60.0)
    assert (claimed, batches, queued) == (SIGNUPS, [BATCH] * (SIGNUPS // BATCH), 0)


def test_a_pass_out_of_time_still_sends_its_first_batch_and_claims_no_other(
    make_app: Callable[..., Flask],
) -> None:
    claimed, batches, queued = _pass_with(make_app, for_seconds=0.0)
    assert (claimed, batches, queued) == (BATCH, [BATCH], SIGNUPS - BATCH)
