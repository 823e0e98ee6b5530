"""The in-process dispatcher thread: woken by a commit, runs periodic jobs, stops cleanly."""

from __future__ import annotations

from flask import Flask
from sqlalchemy import text

from newsletter.delivery.dispatcher import BackgroundDispatcher
from newsletter.delivery.health import dispatch_health
from newsletter.extensions import db
from newsletter.housekeeping import Job
from tests.conftest import Outbox
from tests.servers import wait_for


def sign_up_with_a_thread(app: Flask, jobs: list[Job]) -> BackgroundDispatcher:
    """Start a dispatcher thread with ``jobs``, sign up, wait for the email; the stopped thread."""
    dispatcher = BackgroundDispatcher(app, jobs=jobs)
    app.extensions["newsletter.dispatch_waker"] = dispatcher.wake
    dispatcher.start()
    try:
        app.test_client().post("/subscribe", json={"email": "ann@example.com"})
        outbox = Outbox(app)
        # long before the hour-long timer
        wait_for(lambda: len(outbox.messages()) == 1, 10, "the email")
    finally:
        dispatcher.stop(timeout=10)
    return dispatcher


def test_a_commit_that_queues_mail_wakes_the_thread(make_app):
    app = make_app(DISPATCH_INTERVAL=3600.0)
    jobs: list[str] = []
    hourly = Job("note", 3600.0, lambda: jobs.append("ran") or 0)
    dispatcher = sign_up_with_a_thread(app, [hourly])
    assert jobs == ["ran"]  # periodic jobs ran once, not again within their interval
    assert not dispatcher._thread.is_alive()


def test_a_failing_job_stops_neither_the_others_nor_the_pass(make_app):
    app = make_app(DISPATCH_INTERVAL=3600.0)
    ran: list[str] = []

    def broken() -> int:  # in the pass's own session: on PostgreSQL it aborts its transaction
        db.session.execute(text("SELECT * FROM no_such_table"))
        return 0

    jobs = [Job("broken", 3600.0, broken), Job("after", 3600.0, lambda: ran.append("after") or 0)]
    sign_up_with_a_thread(app, jobs)
    assert ran == ["after"]
    # The pass of that same wake-up sent the email: it was not counted as a failed pass.
    assert dispatch_health(app).last_error is None
