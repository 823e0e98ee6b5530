"""How sending goes, per dispatching process, and where the web processes read it.

Each process keeps a ``DispatchHealth`` record (a provider's pause or rate
limit, the last error, the last pass) and publishes it where ``/healthz``
and ``/admin/stats`` read it:

- gunicorn's dispatcher processes: a file each, for the workers of their host;
- Celery workers and cron's ``flask outbox dispatch``, which share only the
  database with the web: a row each in ``dispatcher_health``, written when
  it changes (and every ``DATABASE_EVERY`` seconds), read while recent.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from flask import Flask, current_app
from sqlalchemy import delete, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from config import running_dispatcher_processes, sends_elsewhere

from ..db_helpers import is_postgresql, upsert
from ..extensions import db
from ..models import DispatcherHealth, utcnow

log = logging.getLogger(__name__)

FILE_EVERY = 5.0  # seconds between publications of an unchanged record to a file
DATABASE_EVERY = 30.0  # seconds between publications of an unchanged record to the database
SHOWN_FOR = timedelta(minutes=10)  # a record older than this is a process gone: not shown
FORGET_AFTER = timedelta(days=1)  # housekeeping deletes records this old
FORGET_EVERY_SECONDS = 3600.0


@dataclass
class DispatchHealth:
    """What the last passes saw, for ``/healthz`` and the admin stats."""

    paused_until: float = 0.0  # monotonic time; set by a provider configuration error
    rate_limited_until: float = 0.0  # monotonic time; set by a provider's rate limit
    last_error: str | None = None
    last_pass_at: str | None = None

    @property
    def paused(self) -> bool:
        """True while a configuration error holds sending back."""
        return time.monotonic() < self.paused_until

    @property
    def rate_limited(self) -> bool:
        """True while the provider's ``Retry-After`` holds every delivery back."""
        return time.monotonic() < self.rate_limited_until

    def save(self, path: str) -> None:
        """Publish this record for the other processes of this host (one atomic replace).

        Monotonic times compare across processes: the clock is the host's, since boot.
        """
        temporary = f"{path}.{os.getpid()}.tmp"
        Path(temporary).write_text(json.dumps(dataclasses.asdict(self)), encoding="utf-8")
        os.replace(temporary, path)

    @classmethod
    def load(cls, path: str) -> DispatchHealth:
        """The record the dispatching process published; a blank one before its first pass."""
        try:
            fields = json.loads(Path(path).read_text(encoding="utf-8"))
            return cls(**fields)
        except (OSError, ValueError, TypeError):
            return cls()

    @classmethod
    def merged(cls, records: Sequence[DispatchHealth], oldest_pass: bool = False) -> DispatchHealth:
        """One record for several dispatcher processes: held back while any of them is.

        They share the provider and the queue: a pause or a rate limit one of
        them met holds for all, and its error is the one to show. The last
        pass is the latest of theirs, or with ``oldest_pass`` the oldest
        (none until each has passed): gunicorn's processes each look every
        fraction of a second, so one that stopped shows there, and the idle
        digest process does not make a stuck first one look alive.
        """
        now = time.monotonic()
        held = [r for r in records if r.paused_until > now or r.rate_limited_until > now]
        errors = [r.last_error for r in held + list(records) if r.last_error]
        passes = [r.last_pass_at for r in records if r.last_pass_at]
        return cls(
            paused_until=max((r.paused_until for r in records), default=0.0),
            rate_limited_until=max((r.rate_limited_until for r in records), default=0.0),
            last_error=errors[0] if errors else None,
            last_pass_at=_oldest(passes, len(records))
            if oldest_pass
            else max(passes, default=None),
        )


def _oldest(passes: Sequence[str], records: int) -> str | None:
    """The oldest of every record's last pass; None while one of them has none."""
    # Last passes are ISO times in UTC: they sort as text.
    return min(passes) if passes and len(passes) == records else None


def health_file(first: str, index: int) -> str:
    """Where dispatcher process ``index`` publishes its health: ``first``, then beside it."""
    if index == 0:
        return first
    path = Path(first)
    return str(path.with_name(f"{path.stem}-{index}{path.suffix}"))


def dispatch_health(app: Flask | None = None) -> DispatchHealth:
    """This process's dispatch health record, which its dispatch passes update."""
    return (app or current_app).extensions["newsletter.dispatch_health"]


def reported_dispatch_health(app: Flask | None = None) -> DispatchHealth:
    """The record to report: the one the dispatcher process published, if it sends for us.

    Under gunicorn's dispatcher processes (``DISPATCH_HEALTH_FILE``, set by
    gunicorn.conf.py) the workers never dispatch: their own record would
    always read healthy. Several processes' records are merged (those that
    send digests only among them). Celery workers and cron run elsewhere:
    their records come from the database.
    """
    app = app or current_app
    published = app.config["DISPATCH_HEALTH_FILE"]
    if published:
        count = running_dispatcher_processes(app.config, is_postgresql(db.session))
        return DispatchHealth.merged(
            [DispatchHealth.load(health_file(published, index)) for index in range(count)],
            oldest_pass=True,
        )
    own = dispatch_health(app)
    if sends_elsewhere(app.config):
        return DispatchHealth.merged([own, *recent(db.session)])
    return own


class HealthPublisher:
    """Publishes a process's health record when it changes, else at most every ``every`` s.

    An idle dispatcher passes five times a second: ``save`` (a file, a row)
    runs at once when a pause or an error changes, and otherwise rarely.
    ``save`` answers whether it could; one that could not is tried again.
    """

    def __init__(
        self,
        save: Callable[[DispatchHealth], bool],
        every: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """A publisher through ``save``, repeating an unchanged record every ``every`` s."""
        self.save = save
        self.every = every
        self.clock = clock
        self._state: tuple | None = None
        self._at = float("-inf")

    def __call__(self, health: DispatchHealth) -> None:
        """Publish ``health`` if it changed or its last publication is ``every`` s old."""
        state = (health.paused_until, health.rate_limited_until, health.last_error)
        now = self.clock()
        if state == self._state and now - self._at < self.every:
            return
        if self.save(health):
            self._state, self._at = state, now


def save_to_file(path: str) -> Callable[[DispatchHealth], bool]:
    """A ``save`` that writes the record to ``path`` (for this host's web workers)."""

    def save(health: DispatchHealth) -> bool:
        try:
            health.save(path)
            return True
        except OSError as exc:  # a full disk must not stop the sending
            log.warning("could not publish the dispatch health (%s)", exc)
            return False

    return save


def this_process() -> str:
    """The name this process's record goes under: ``host:pid``."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _wall_time(monotonic_at: float, now: datetime, monotonic_now: float) -> datetime | None:
    """A monotonic deadline as a wall-clock time other hosts can read; None once past."""
    if monotonic_at <= monotonic_now:
        return None
    return now + timedelta(seconds=monotonic_at - monotonic_now)


def _monotonic(at: datetime | None, now: datetime, monotonic_now: float) -> float:
    """A wall-clock deadline as this process's monotonic time (0: none)."""
    return monotonic_now + (at - now).total_seconds() if at is not None else 0.0


def save_to_database(
    session: Session, process: str | None = None
) -> Callable[[DispatchHealth], bool]:
    """A ``save`` that upserts the record as ``process``'s row (default: this one), committed."""

    def save(health: DispatchHealth) -> bool:
        now, monotonic_now = utcnow(), time.monotonic()
        values = {
            "process": process or this_process(),
            "paused_until": _wall_time(health.paused_until, now, monotonic_now),
            "rate_limited_until": _wall_time(health.rate_limited_until, now, monotonic_now),
            "last_error": health.last_error,
            "last_pass_at": datetime.fromisoformat(health.last_pass_at)
            if health.last_pass_at
            else None,
            "updated_at": now,
        }
        try:
            session.execute(upsert(session, DispatcherHealth, ["process"], values))
            session.commit()
            return True
        except SQLAlchemyError as exc:  # the sending went on; the report waits for the next pass
            session.rollback()
            log.warning("could not publish the dispatch health (%s)", type(exc).__name__)
            return False

    return save


def _from_row(row: DispatcherHealth, now: datetime, monotonic_now: float) -> DispatchHealth:
    """A stored record as this process's ``DispatchHealth`` (deadlines on its monotonic clock)."""
    return DispatchHealth(
        paused_until=_monotonic(row.paused_until, now, monotonic_now),
        rate_limited_until=_monotonic(row.rate_limited_until, now, monotonic_now),
        last_error=row.last_error,
        last_pass_at=row.last_pass_at.isoformat() if row.last_pass_at else None,
    )


def recent(session: Session) -> list[DispatchHealth]:
    """The records the processes that dispatch elsewhere published in the last ``SHOWN_FOR``."""
    now, monotonic_now = utcnow(), time.monotonic()
    try:
        rows = session.scalars(
            select(DispatcherHealth).where(DispatcherHealth.updated_at >= now - SHOWN_FOR)
        ).all()
    except SQLAlchemyError as exc:  # /healthz answers on what it knows
        session.rollback()
        log.warning("could not read the dispatch health (%s)", type(exc).__name__)
        return []
    return [_from_row(row, now, monotonic_now) for row in rows]


def take_up(health: DispatchHealth, stored: DispatchHealth, config_pause: bool = True) -> None:
    """Keep to the rate limit the process before this one, in the same role, met.

    A new process (the next cron run, a dispatcher process started again
    after a crash or a reload) would otherwise forget it and send straight
    into the same answer. ``config_pause``: the pause of a provider
    configuration error too (not for a restarted dispatcher process: a
    restart is how a fixed setting is taken up). An error whose pause is
    over stays behind.
    """
    held = stored.rate_limited or (config_pause and stored.paused)
    if not held:
        return
    health.rate_limited_until = max(health.rate_limited_until, stored.rate_limited_until)
    if config_pause:
        health.paused_until = max(health.paused_until, stored.paused_until)
    health.last_error = health.last_error or stored.last_error


@contextmanager
def cron_run_health(session: Session) -> Iterator[DispatchHealth]:
    """This cron run's health record: its host's last run's pause taken up, saved back at the end.

    A cron run is a new process: without this it would forget a pause the
    run before met, send into the same error, and report itself healthy.
    One record per host's cron (``host:cron``), each run replacing it.
    """
    process = f"{socket.gethostname()}:cron"
    health = dispatch_health()
    try:
        row = session.get(DispatcherHealth, process)
    except SQLAlchemyError as exc:  # the run sends all the same (its pause is then unknown)
        session.rollback()
        log.warning("could not read the dispatch health (%s)", type(exc).__name__)
        row = None
    stored = _from_row(row, utcnow(), time.monotonic()) if row is not None else None
    session.commit()  # the read's transaction ends here, before the pass's own
    if stored is not None:
        take_up(health, stored)
    yield health
    save_to_database(session, process)(health)


def forget_gone(session: Session) -> int:
    """Delete the records of processes silent for ``FORGET_AFTER``; how many. Commits."""
    gone = session.execute(
        delete(DispatcherHealth).where(DispatcherHealth.updated_at < utcnow() - FORGET_AFTER)
    ).rowcount
    session.commit()
    return gone
