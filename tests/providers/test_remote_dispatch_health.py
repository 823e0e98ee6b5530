"""A pause met by a dispatcher on another host (a Celery worker, cron) shows in the web's /healthz.

Those processes share only the database with the web: each writes its
health record to ``dispatcher_health`` when it changes, and the web reads
the recent ones (``newsletter/delivery/health.py``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import event, func, select, update
from sqlalchemy.exc import OperationalError

from newsletter.delivery.health import (
    SHOWN_FOR,
    DispatchHealth,
    forget_gone,
    recent,
    save_to_database,
)
from newsletter.extensions import db
from newsletter.models import Delivery, DispatcherHealth, utcnow
from tests.digests.processes import ENQUEUE_BROKER as BROKER
from tests.digests.processes import outputs, start_worker, stop
from tests.servers import redis_or_fail, wait_for

from .test_postmark_dispatch import READERS, Postmark, postmark_app, sign_up


def dispatch_report(app: Flask, admin_headers: dict) -> tuple[dict, dict]:
    """What /healthz and /admin/stats say about dispatching."""
    client = app.test_client()
    health = client.get("/healthz").get_json()
    stats = client.get("/admin/stats", headers=admin_headers).get_json()["dispatch"]
    return health, stats


def test_the_web_merges_the_recent_records_of_processes_elsewhere(
    make_app: Callable[..., Flask], admin_headers: dict
) -> None:
    web = make_app(CELERY_BROKER_URL=BROKER)  # Celery sends: the web never does
    now = time.monotonic()
    with web.app_context():
        paused = DispatchHealth(
            paused_until=now + 60, last_error="HTTP 401: bad token", last_pass_at=None
        )
        assert save_to_database(db.session, "worker-1:10")(paused)
        calm = DispatchHealth(last_pass_at="2026-11-25T06:30:00+00:00")
        assert save_to_database(db.session, "worker-2:20")(calm)
        # Published again: the one row is replaced, not added to.
        assert save_to_database(db.session, "worker-2:20")(calm)
        assert db.session.scalar(select(func.count()).select_from(DispatcherHealth)) == 2
        db.session.remove()

    health, stats = dispatch_report(web, admin_headers)
    assert health["dispatch"] == {"paused": True, "details": "/admin/stats"}  # not why: public
    assert stats["paused"] is True and stats["last_error"] == "HTTP 401: bad token"
    assert stats["last_pass_at"] == "2026-11-25T06:30:00+00:00"

    # The pause read back is the one published: about 60 s on this process's clock too.
    with web.app_context():
        [held] = [r for r in recent(db.session) if r.paused_until]
        assert 55 < held.paused_until - time.monotonic() <= 60
        db.session.remove()


def test_records_of_gone_processes_are_not_shown_then_forgotten(
    make_app: Callable[..., Flask], admin_headers: dict
) -> None:
    web = make_app(CELERY_BROKER_URL=BROKER)
    with web.app_context():
        now = utcnow()
        old = {"paused_until": now + timedelta(hours=1), "last_error": "HTTP 401: old"}
        db.session.add_all(
            [
                DispatcherHealth(process="gone:1", updated_at=now - SHOWN_FOR * 2, **old),
                DispatcherHealth(process="long-gone:2", updated_at=now - timedelta(days=2)),
                DispatcherHealth(process="alive:3", updated_at=now, last_error="timed out"),
            ]
        )
        db.session.commit()
        assert [r.last_error for r in recent(db.session)] == ["timed out"]
        assert forget_gone(db.session) == 1
        left = db.session.scalars(select(DispatcherHealth.process)).all()
        assert sorted(left) == ["alive:3", "gone:1"]
        db.session.remove()

    health, _ = dispatch_report(web, admin_headers)
    assert "dispatch" not in health  # a pause of a process silent for long is not shown


def test_a_pause_cron_met_shows_in_the_web(
    make_app: Callable[..., Flask], postmark: Postmark, admin_headers: dict
) -> None:
    settings = {
        "POSTMARK_SERVER_TOKEN": "wrong",
        "RETRY_BASE_SECONDS": 60.0,
        "DISPATCH_IN_PROCESS": False,  # cron sends: `flask outbox dispatch`
    }
    web = postmark_app(make_app, postmark, **settings)
    sign_up(web, *READERS)
    assert "dispatch" not in dispatch_report(web, admin_headers)[0]

    for run in range(2):  # each run is a new process; it replaces the host's one cron record
        if run == 1:  # the 401 put the batch back for 60 s: make it due again
            with web.app_context():
                db.session.execute(update(Delivery).values(next_attempt_at=utcnow()))
                db.session.commit()
                db.session.remove()
        cron = postmark_app(make_app, postmark, **settings)
        result = cron.test_cli_runner().invoke(args=["outbox", "dispatch"])
        assert result.exit_code == 0, result.output
    # The second run had mail due, but took up the first run's pause: it sent nothing.
    assert "claimed 0" in result.output and "sending paused: HTTP 401" in result.output
    assert postmark[0].calls == 1

    health, stats = dispatch_report(web, admin_headers)
    assert health["dispatch"]["paused"] is True
    assert "Server API token" in stats["last_error"]
    assert stats["last_pass_at"] is not None
    with web.app_context():
        assert [
            p.endswith(":cron") for p in db.session.scalars(select(DispatcherHealth.process))
        ] == [True]
        db.session.remove()


def test_cron_takes_up_no_error_of_a_pause_that_has_ended(
    make_app: Callable[..., Flask], postmark: Postmark, admin_headers: dict
) -> None:
    settings = {"RETRY_BASE_SECONDS": 60.0, "DISPATCH_IN_PROCESS": False}
    web = postmark_app(make_app, postmark, **settings)
    sign_up(web, *READERS)
    paused = postmark_app(make_app, postmark, POSTMARK_SERVER_TOKEN="wrong", **settings)
    assert paused.test_cli_runner().invoke(args=["outbox", "dispatch"]).exit_code == 0
    with web.app_context():  # the token is mended, and the pause has run out
        db.session.execute(update(DispatcherHealth).values(paused_until=utcnow()))
        db.session.execute(update(Delivery).values(next_attempt_at=utcnow()))
        db.session.commit()
        db.session.remove()

    mended = postmark_app(make_app, postmark, **settings)
    result = mended.test_cli_runner().invoke(args=["outbox", "dispatch"])
    assert "claimed 3: sent=3" in result.output and "paused" not in result.output
    _, stats = dispatch_report(web, admin_headers)
    assert stats["paused"] is False and stats["last_error"] is None  # not the old 401


@pytest.mark.slow
def test_a_pause_a_celery_worker_met_shows_in_the_web(
    make_app: Callable[..., Flask],
    postmark: Postmark,
    database_uri: str,
    tmp_path: Path,
    admin_headers: dict,
) -> None:
    redis_or_fail(BROKER)
    fake, base = postmark
    web = make_app(CELERY_BROKER_URL=BROKER)
    worker = start_worker(
        "health",
        database_uri,
        BROKER,
        tmp_path / "sent.log",
        tmp_path / "health.out",
        EMAIL_PROVIDER="postmark",
        POSTMARK_API_URL=base,
        POSTMARK_SERVER_TOKEN="wrong",
        RETRY_BASE_SECONDS="60",
    )
    try:
        sign_up(web, *READERS)  # the web queues dispatch tasks; the worker meets the 401
        wait_for(
            lambda: (
                "dispatch" in dispatch_report(web, admin_headers)[0] or worker.poll() is not None
            ),
            30,
            "the worker's pause to reach the web",
        )
        assert worker.poll() is None, outputs(tmp_path)
    finally:
        stop([worker])
    health, stats = dispatch_report(web, admin_headers)
    assert health["dispatch"]["paused"] is True
    assert "Server API token" in stats["last_error"]
    assert fake.calls >= 1 and not fake.delivered  # it met the 401 and sent nothing


def test_cron_sends_when_it_cannot_read_or_write_its_health_record(
    make_app: Callable[..., Flask], postmark: Postmark
) -> None:
    """Mid-upgrade (the table not there yet), or any failure of the record, sending goes on."""
    cron = postmark_app(make_app, postmark, DISPATCH_IN_PROCESS=False)
    sign_up(cron, *READERS)
    with cron.app_context():
        engine = db.engine

    def no_such_table(conn, cursor, statement: str, *args) -> None:
        if "dispatcher_health" in statement:
            raise OperationalError(statement, None, Exception("no such table: dispatcher_health"))

    event.listen(engine, "before_cursor_execute", no_such_table)
    try:
        result = cron.test_cli_runner().invoke(args=["outbox", "dispatch"])
    finally:
        event.remove(engine, "before_cursor_execute", no_such_table)
    assert "claimed 3: sent=3" in result.output
    assert sorted(m["To"] for m in postmark[0].delivered) == READERS
    # The job that needs the table fails, loudly, and the others still ran.
    [failure] = [line for line in result.output.splitlines() if "failed" in line]
    assert failure.startswith("forget-gone-dispatchers: failed (")
    assert "dispatcher_health" in failure
    assert "purge-old-pending-signups: 0" in result.output
    assert "settle-stalled-digests: 0" in result.output
    assert result.exit_code == 1
