"""The in-process dispatcher thread: woken by a commit, runs periodic jobs, stops cleanly."""

from __future__ import annotations

import time

from newsletter.delivery.dispatcher import BackgroundDispatcher
from tests.conftest import Outbox


def wait_for(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_a_commit_that_queues_mail_wakes_the_thread(make_app):
    app = make_app(DISPATCH_INTERVAL=3600.0)
    jobs: list[str] = []
    dispatcher = BackgroundDispatcher(app, periodic=[(3600.0, lambda: jobs.append("ran"))])
    app.extensions["newsletter.dispatch_waker"] = dispatcher.wake
    dispatcher.start()
    try:
        app.test_client().post("/subscribe", json={"email": "ann@example.com"})
        outbox = Outbox(app)
        assert wait_for(lambda: len(outbox.messages()) == 1)  # long before the hour-long timer
        assert jobs == ["ran"]  # periodic jobs ran once, not again within their interval
    finally:
        dispatcher.stop(timeout=10)
    assert not dispatcher._thread.is_alive()
