"""The web with Celery while the broker is down: signups are kept, and not held up."""

from __future__ import annotations

import logging

from newsletter import tasks
from tests.servers import free_port
from tests.subscriptions.helpers import find


class _Kept(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_signups_are_kept_and_the_broker_is_not_asked_again_at_once(make_app, monkeypatch):
    # Connections pooled by an earlier test's app, to a broker that was up, would be reused.
    monkeypatch.setattr(tasks.celery, "_pool", None)
    monkeypatch.setattr(tasks.celery.amqp, "_producer_pool", None)
    app = make_app(CELERY_BROKER_URL=f"redis://127.0.0.1:{free_port()}/5")
    client = app.test_client()
    kept = _Kept()  # on the logger itself: other tests' logging setups may stop propagation
    tasks.log.addHandler(kept)
    try:
        answers = [
            client.post("/subscribe", json={"email": f"b{n}@example.com"}).status_code
            for n in range(3)
        ]
    finally:
        tasks.log.removeHandler(kept)
    assert answers == [202, 202, 202]
    assert all(find(app, f"b{n}@example.com") for n in range(3))  # beat's sweep sends them
    refusals = [message for message in kept.messages if "could not queue" in message]
    # One try, then a pause: each try held its signup for the broker client's retries.
    assert len(refusals) == 1
