"""The periodic jobs, listed once: a dispatcher thread or process, Celery beat and cron run them."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from flask import current_app

from .delivery.digest_progress import SETTLE_EVERY_SECONDS, settle_stalled
from .delivery.health import FORGET_EVERY_SECONDS, forget_gone
from .errors import describe
from .extensions import db
from .subscriptions.retention import PURGE_EVERY_SECONDS, purge_pending

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Job:
    """A job run in an app context, answering how many rows it touched.

    A dispatcher (thread or process) and Celery beat run it every ``every``
    seconds; ``flask outbox dispatch`` (cron) runs it on every call.
    """

    name: str
    every: float
    run: Callable[[], int]

    def run_alone(self) -> int | str:
        """Run it: rows it touched, or, if it failed, the failure as text (rolled back, logged).

        A failing job must stop neither the jobs after it nor a dispatcher's
        pass: every runner but Celery's (one task per job) calls this.
        """
        try:
            return self.run()
        except Exception as exc:
            db.session.rollback()
            failure = describe(exc)
            log.error("housekeeping job %s failed (%s)", self.name, failure)
            return failure


def _purge_pending() -> int:
    """Delete signups left unconfirmed ``PENDING_RETENTION_DAYS`` after their last link."""
    purged = purge_pending(db.session, current_app.config["PENDING_RETENTION_DAYS"])
    if purged:
        log.info("purged %d pending signups past retention", purged)
    return purged


def _settle_stalled() -> int:
    """Finish digests whose last batch's dispatcher died (or failed) before settling them."""
    return settle_stalled(db.session)


def _forget_gone_dispatchers() -> int:
    """Delete the health records of dispatching processes silent for a day."""
    return forget_gone(db.session)


JOBS = (
    Job("purge-old-pending-signups", PURGE_EVERY_SECONDS, _purge_pending),
    Job("settle-stalled-digests", SETTLE_EVERY_SECONDS, _settle_stalled),
    Job("forget-gone-dispatchers", FORGET_EVERY_SECONDS, _forget_gone_dispatchers),
)
BY_NAME = {job.name: job for job in JOBS}
