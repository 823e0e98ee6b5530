"""The Celery entry point: ``celery -A newsletter.tasks worker`` and ``... beat``.

Thin on purpose: a task runs one ``dispatch_pass`` batch and, while it found
work, queues itself again, so every worker on every host shares a digest
(PostgreSQL's ``SKIP LOCKED`` gives each a different batch). Beat queues the
same task every ``DISPATCH_INTERVAL`` seconds to sweep retries that fall due.
"""

from __future__ import annotations

import logging
from functools import cache

from celery import Celery
from flask import Flask
from kombu.exceptions import OperationalError as BrokerError

from config import from_env

from .subscriptions.retention import PURGE_EVERY_SECONDS

log = logging.getLogger(__name__)
_settings = from_env()

celery = Celery("newsletter", broker=_settings["CELERY_BROKER_URL"] or None)
celery.conf.update(
    task_ignore_result=True,
    worker_prefetch_multiplier=1,
    broker_connection_retry_on_startup=True,
    beat_schedule={
        "sweep-due-deliveries": {
            "task": "newsletter.dispatch",
            "schedule": max(1.0, float(_settings["DISPATCH_INTERVAL"])),
        },
        "purge-old-pending-signups": {
            "task": "newsletter.purge_pending",
            "schedule": PURGE_EVERY_SECONDS,
        },
    },
)


@cache
def flask_app() -> Flask:
    """The worker process's app, built once from the environment."""
    from . import create_app

    return create_app()


@celery.task(name="newsletter.dispatch")
def dispatch() -> int:
    """Send one batch of due deliveries; queue another go while there was work."""
    from .delivery.dispatcher import dispatch_pass
    from .extensions import db

    app = flask_app()
    with app.app_context():
        try:
            claimed = dispatch_pass(max_batches=1).claimed
        finally:
            db.session.remove()
    if claimed:
        dispatch.delay()
    return claimed


@celery.task(name="newsletter.purge_pending")
def purge_pending() -> int:
    """Delete signups never confirmed within ``PENDING_RETENTION_DAYS`` (hourly on beat)."""
    from .extensions import db
    from .subscriptions.retention import purge_pending as purge

    app = flask_app()
    with app.app_context():
        try:
            return purge(db.session, app.config["PENDING_RETENTION_DAYS"])
        finally:
            db.session.remove()


def run_solo_worker(name: str) -> None:
    """Run one worker in this very process (``--pool=solo``), named ``name@host``.

    No prefetching, gossip, mingling or heartbeats: the tests and the digest
    bench start these, kill them and read their own memory.
    """
    celery.worker_main(
        [
            "worker",
            "--pool=solo",
            "--loglevel=WARNING",
            f"--hostname={name}@%h",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ]
    )


def enqueuer(broker_url: str, fanout: int):
    """A dispatch waker for the web process: queue ``fanout`` dispatch tasks, send nothing."""
    if celery.conf.broker_url != broker_url:
        celery.conf.broker_url = broker_url

    def wake() -> None:
        try:
            for _ in range(max(1, fanout)):
                dispatch.delay()
        except BrokerError as exc:
            # The rows are committed; beat's next sweep sends them.
            log.warning("could not queue a dispatch task (%s); beat will sweep", exc)

    return wake
