"""Prometheus metrics counted in-process: consent steps, provider answers, batch latency.

Works in one process and, when ``PROMETHEUS_MULTIPROC_DIR`` is set before this
module is imported, across processes: gunicorn's workers and its dispatcher
process (``gunicorn.conf.py`` sets it), or a Celery worker's pool (``tasks.py``).
Gauges about the ledger are not kept here: ``meta/metrics.py`` reads them from
the database at scrape time, so every process and host agrees on them. The
one gauge kept here, the batch in flight, is what the ledger cannot show on
PostgreSQL (a row-lock claim writes nothing).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from sqlalchemy import event
from sqlalchemy.orm import Session

from .models import ConsentKind

_PENDING = "newsletter.metrics.consent"

SIGNUPS = Counter("newsletter_signups", "Signups recorded (new, repeated or resubscribed).")
CONFIRMATIONS = Counter("newsletter_confirmations", "Subscriptions confirmed.")
UNSUBSCRIBES = Counter("newsletter_unsubscribes", "Unsubscribes recorded.")
PROVIDER_ANSWERS = Counter(
    "newsletter_provider_answers",
    "Provider answers per message, by provider and outcome.",
    ["provider", "outcome"],
)
DISPATCH_SECONDS = Histogram(
    "newsletter_dispatch_batch_seconds",
    "Seconds to render, send and record one claimed batch.",
    ["provider"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)

# On PostgreSQL a batch is claimed by row lock and stays ``queued`` in the ledger
# until its answers are recorded: this is where a batch in flight shows.
IN_FLIGHT = Gauge(
    "newsletter_dispatch_in_flight",
    "Deliveries claimed and being rendered, sent or recorded: answers not recorded yet.",
    multiprocess_mode="livesum",
)

_BY_KIND = {
    ConsentKind.SIGNUP: SIGNUPS,
    ConsentKind.RESUBSCRIBED: SIGNUPS,
    ConsentKind.CONFIRMED: CONFIRMATIONS,
    ConsentKind.UNSUBSCRIBED: UNSUBSCRIBES,
}


def count_consent(session: Session, kind: ConsentKind) -> None:
    """Count a consent step once ``session`` commits it (a rollback counts nothing)."""
    if kind in _BY_KIND:
        session.info.setdefault(_PENDING, []).append(kind)


def count_committed(kind: ConsentKind, amount: int = 1) -> None:
    """Count ``amount`` consent steps already committed (outside an ORM session)."""
    if kind in _BY_KIND:
        _BY_KIND[kind].inc(amount)


@event.listens_for(Session, "after_commit")
def _count_on_commit(session: Session) -> None:
    for kind in session.info.pop(_PENDING, []):
        count_committed(kind)


@event.listens_for(Session, "after_rollback")
def _forget_rolled_back(session: Session) -> None:
    session.info.pop(_PENDING, None)


def multiprocess_dir() -> str:
    """The shared folder of gunicorn's workers' metric files, or empty in one process."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")


def process_registry() -> CollectorRegistry:
    """The registry to scrape for in-process metrics: every worker's under gunicorn."""
    if not multiprocess_dir():
        from prometheus_client import REGISTRY

        return REGISTRY
    registry = CollectorRegistry()
    _LiveProcessesCollector(registry, multiprocess_dir())
    return registry


class _LiveProcessesCollector(MultiProcessCollector):
    """Every process's metrics, less the live gauges of processes that died unannounced.

    gunicorn's master drops a worker's live gauges as it reaps it; the
    dispatcher process, a Celery pool process or a cron run killed mid-batch
    (SIGKILL, OOM) has no one else to do it, so each scrape does.
    """

    def __init__(self, registry: CollectorRegistry, folder: str) -> None:
        self.folder = folder
        super().__init__(registry, folder)

    def collect(self):
        """Forget dead processes' live gauges, then collect as usual."""
        for path in Path(self.folder).glob("gauge_live*_*.db"):
            pid = path.stem.rpartition("_")[2]
            if pid.isdigit() and not _alive(int(pid)):
                # Another worker's scrape may remove the same files first.
                with contextlib.suppress(FileNotFoundError):
                    mark_process_dead(int(pid), self.folder)
        return super().collect()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True
