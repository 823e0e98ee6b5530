"""The Celery entry point: ``celery -A newsletter.tasks worker`` and ``... beat``.

Thin on purpose: a task runs ``dispatch_pass`` for about TASK_SECONDS and,
while it found work, queues itself again, so every worker on every host
shares a digest (PostgreSQL's ``SKIP LOCKED`` gives each a different batch).
Beat queues the same task every ``DISPATCH_INTERVAL`` seconds to sweep
retries that fall due.

``run_worker`` is for the tests and the bench (which cannot import the
tests): one place for the worker options they start workers with.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from functools import cache
from typing import TYPE_CHECKING, Any

from celery import Celery
from celery.signals import setup_logging, worker_init, worker_process_init, worker_shutdown
from flask import Flask
from kombu.exceptions import OperationalError as BrokerError

from config import ConfigError, from_env, split_bind

from .housekeeping import BY_NAME, JOBS

if TYPE_CHECKING:
    from .delivery.health import HealthPublisher

log = logging.getLogger(__name__)
# A dispatch task claims batch after batch for this long, then queues another go.
# One batch a task cost two workers a sixth of their rate at 100,000 (the broker's
# round trips and the task's set-up, once per 500 messages); a second is still short
# enough for a warm shutdown, and for the other workers to take their share.
TASK_SECONDS = 1.0
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
        **{
            job.name: {"task": "newsletter.housekeeping", "schedule": job.every, "args": [job.name]}
            for job in JOBS
        },
    },
)


# Whether this worker runs its tasks in one process (the solo pool, or a pool of
# one): then each task sends from two threads on PostgreSQL (task_threads).
_ONE_PROCESS = {"worker": False}


@worker_init.connect
def _note_the_pool(sender: object = None, **_: object) -> None:
    """Remember whether this worker's tasks all run in one process."""
    pool = getattr(sender, "pool_cls", None)
    module = pool if isinstance(pool, str) else getattr(pool, "__module__", "")
    _ONE_PROCESS["worker"] = "solo" in str(module) or getattr(sender, "concurrency", 0) == 1


def task_threads(config: Mapping[str, Any], postgresql: bool, one_process: bool) -> int:
    """Passes a dispatch task runs side by side: ``DISPATCH_THREADS``, or a default.

    Unset: 2 on PostgreSQL when the worker runs its tasks in one process, else
    1. One solo worker at 100,000 subscribers sent at 0.27-0.28 of the bare
    client's rate with one, 0.36-0.37 with two (``bench/RESULTS.md``). A
    worker cannot see the others: two solo workers run two each too, though on
    two CPUs they gained nothing from it (0.46x against 0.49x, one run).
    """
    if config["DISPATCH_THREADS"] is not None:
        return config["DISPATCH_THREADS"]
    return 2 if postgresql and one_process else 1


@worker_init.connect
def _serve_worker_metrics(**_: object) -> None:
    """With ``WORKER_METRICS_BIND``, this worker serves ``/metrics`` for its pool's processes.

    The dispatch counters live where the sending happens: here, not in the
    web's ``/metrics``. Runs in the worker's main process before its pool
    forks: every pool process counts into a folder of this worker's own,
    made empty now and removed when the worker stops (an inherited
    ``PROMETHEUS_MULTIPROC_DIR``, gunicorn's say, is not shared). A port it
    cannot take stops the worker, as a malformed setting would.
    """
    bind = _settings["WORKER_METRICS_BIND"]
    if not bind:
        return
    if "prometheus_client" in sys.modules:
        # Its counters would already be bound to another folder, or to none: the pool's
        # would never reach this endpoint, which would serve zeros.
        raise SystemExit("newsletter: worker metrics: prometheus_client was imported too early")
    folder = tempfile.mkdtemp(prefix="newsletter-worker-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder
    worker_shutdown.connect(lambda **_: shutil.rmtree(folder, ignore_errors=True), weak=False)
    from prometheus_client import start_http_server

    from .metrics import process_registry

    host, port = split_bind(bind)
    try:
        start_http_server(port, addr=host, registry=process_registry())
    except OSError as exc:
        raise SystemExit(f"newsletter: cannot serve worker metrics on {bind}: {exc}") from None
    log.info("worker metrics on http://%s/metrics", bind)


@cache
def flask_app() -> Flask:
    """The worker process's app, built once from the environment, warmed up, its heap frozen."""
    from . import create_app
    from .startup import finish_startup

    app = create_app()
    finish_startup(app)
    return app


@setup_logging.connect
def _log_as_the_app_does(**_: object) -> None:
    """Celery's worker and beat log through our handler, not Celery's own.

    So ``LOG_FORMAT=json`` gives JSON lines there too, and every line,
    tracebacks included, has its addresses masked: Celery's own format showed
    a failed task's traceback in full. (Connected, this signal stops Celery
    from setting up logging itself.)
    """
    from .logs import configure_logging

    try:
        log_format = from_env(os.environ)["LOG_FORMAT"]
    except ConfigError:
        log_format = "text"  # the app says what is wrong as it is built
    configure_logging(log_format)


@worker_process_init.connect
def _build_app_before_the_first_task(**_: object) -> None:
    """Build each task process's app at boot (solo and prefork alike), not in its first task.

    The first task would otherwise wait for it (``create_app`` takes about
    0.3 s, imports aside), and a setting that stops the app (an email provider
    without its key) would show only when mail is due; it is logged now, and
    each task raises it again. In a prefork child this runs before the child
    reports itself up (4 s at most): ``create_app`` must do no network I/O.
    """
    try:
        flask_app()
    except ConfigError as exc:  # the message says which setting: no traceback needed
        log.error("newsletter: this worker cannot build its app: %s; every task will fail", exc)
    except Exception:
        log.exception("newsletter: this worker cannot build its app; every task will fail")


@cache
def _health_publisher() -> HealthPublisher:
    """This process's publisher of its dispatch health to the database, for the web's /healthz."""
    from .delivery.health import DATABASE_EVERY, HealthPublisher, save_to_database
    from .extensions import db

    return HealthPublisher(save_to_database(db.session), DATABASE_EVERY)


class _PassBeside:
    """One more ``dispatch_pass`` of the task, in a thread of its own; ``join`` gives its claims."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.claimed = 0
        self.thread = threading.Thread(target=self._run, name="newsletter-task-helper")
        self.thread.start()

    def _run(self) -> None:
        from .delivery.dispatcher import dispatch_pass
        from .delivery.health import dispatch_health
        from .errors import describe
        from .extensions import db

        with self.app.app_context():
            try:
                self.claimed = dispatch_pass(for_seconds=TASK_SECONDS).claimed
            except Exception as exc:  # an outage fails the task's own pass too
                dispatch_health(self.app).last_error = describe(exc)  # for /healthz, as a pass's
                log.exception("a dispatch pass beside the task failed")
            finally:
                db.session.remove()

    def join(self) -> int:
        """Wait for the pass to end; how many deliveries it claimed."""
        self.thread.join()
        return self.claimed


@celery.task(name="newsletter.dispatch")
def dispatch() -> int:
    """Send due deliveries for about TASK_SECONDS; queue another go while there was work."""
    from .delivery.dispatcher import dispatch_pass
    from .delivery.health import dispatch_health
    from .extensions import db

    app = flask_app()
    claimed = 0
    with app.app_context():
        # Passes side by side, each on its own session: one renders while another
        # waits on the database or the provider (task_threads).
        postgresql = db.engine.dialect.name == "postgresql"
        threads = task_threads(app.config, postgresql, _ONE_PROCESS["worker"])
        beside = [_PassBeside(app) for _ in range(threads - 1)]
        try:
            try:
                claimed = dispatch_pass(for_seconds=TASK_SECONDS).claimed
            finally:
                claimed += sum(helper.join() for helper in beside)  # a failed task waits too
            _health_publisher()(dispatch_health(app))  # the helpers' errors with its own
        finally:
            db.session.remove()
    if claimed:
        dispatch.delay()
    return claimed


@celery.task(name="newsletter.housekeeping")
def housekeeping(name: str) -> int:
    """Run the periodic job ``name`` (``housekeeping.JOBS``, queued by beat); rows it touched."""
    from .extensions import db

    app = flask_app()
    with app.app_context():
        try:
            return BY_NAME[name].run()
        finally:
            db.session.remove()


def run_worker(name: str, processes: int = 1) -> None:
    """Run a worker named ``name@host``: in this very process (``--pool=solo``) or a pool.

    No prefetching, gossip, mingling or heartbeats: the tests and the digest
    bench start these, kill them and read their own memory. ``processes`` > 1
    forks that many pool processes (``--pool=prefork``), as a deployment does.
    """
    pool = ["--pool=solo"] if processes <= 1 else ["--pool=prefork", f"--concurrency={processes}"]
    celery.worker_main(
        [
            "worker",
            *pool,
            "--loglevel=WARNING",
            f"--hostname={name}@%h",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ]
    )


# After the broker refused a task, the web stops trying for this long: each try held its
# signup for 0.6 s (the Redis client's own retries), and beat's sweep sends the rows anyway.
BROKER_BACKOFF_SECONDS = 10.0
# The web's own connections try once: kombu's defaults retry the first connection for
# about 6 s, inside a signup's request. Only these connections: workers and beat keep
# Celery's retries (a worker's re-queued task should wait out a broker's restart).
WEB_TRANSPORT_OPTIONS = {
    "max_retries": 1,
    "interval_start": 0,
    "socket_connect_timeout": 2,  # a broker host that drops packets, not only refuses
    # A broker that took the connection and then went quiet (or a NAT that dropped the
    # idle connection) held the signup's thread for the kernel's TCP timeout.
    "socket_timeout": 2,
}


def enqueuer(broker_url: str, fanout: int, backoff: float = BROKER_BACKOFF_SECONDS):
    """A dispatch waker for the web process: queue ``fanout`` dispatch tasks, send nothing."""
    if celery.conf.broker_url != broker_url:
        celery.conf.broker_url = broker_url
    failed_at = [-backoff]  # monotonic time of the last refusal
    # One connection per request thread (a kombu connection is not thread-safe),
    # opened at its first signup: after gunicorn's fork, never in the master.
    mine = threading.local()

    def connection() -> Any:
        if getattr(mine, "connection", None) is None:
            mine.connection = celery.connection_for_write(
                broker_url, transport_options=WEB_TRANSPORT_OPTIONS
            )
        return mine.connection

    def wake() -> None:
        if time.monotonic() - failed_at[0] < backoff:
            return  # the broker was down a moment ago: beat's next sweep sends the rows
        try:
            for _ in range(fanout):  # DISPATCH_FANOUT is at least 1
                # retry=False: kombu's publish retries would also write Celery's retry
                # policy into this connection's options, and the next try would be slow.
                dispatch.apply_async(connection=connection(), retry=False)
        except BrokerError as exc:
            failed_at[0] = time.monotonic()
            _drop(mine)  # the next try opens a connection of its own
            # The rows are committed; beat's next sweep sends them.
            log.warning(
                "could not queue a dispatch task (%s); beat will sweep, next try in %gs",
                exc,
                backoff,
            )

    return wake


def _drop(holder: threading.local) -> None:
    """Close and forget a thread's broker connection after a failure."""
    connection, holder.connection = getattr(holder, "connection", None), None
    if connection is not None:
        try:
            connection.release()
        except Exception:  # a dead connection may fail to close: it is gone all the same
            log.debug("closing a failed broker connection failed", exc_info=True)
