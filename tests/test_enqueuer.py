"""The web's dispatch waker queues tasks on its own quick-failing connections."""

from __future__ import annotations

import redis

from newsletter import tasks
from tests.servers import redis_or_fail

BROKER = "redis://127.0.0.1:6379/4"  # this test's own database


def test_a_signup_queues_the_fanout_and_workers_keep_their_retries(make_app):
    redis_or_fail(BROKER)
    app = make_app(CELERY_BROKER_URL=BROKER, DISPATCH_FANOUT=2)

    answer = app.test_client().post("/subscribe", json={"email": "queued@example.com"})

    assert answer.status_code == 202
    assert redis.Redis.from_url(BROKER).llen("celery") == 2  # one dispatch task per fan-out
    # The web's one quick try is its own: a worker re-queueing its task, or beat, still
    # waits out a broker's restart with Celery's retries.
    assert "max_retries" not in tasks.celery.conf.broker_transport_options
    # ... and the web's own connections fail fast: a broker that went quiet holds no signup.
    assert tasks.WEB_TRANSPORT_OPTIONS["socket_timeout"] <= 2
