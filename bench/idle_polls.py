"""What a sending process has done before a digest comes: polled the empty queue.

gunicorn's dispatcher processes claim every ``DISPATCH_COALESCE`` seconds
(0.2) from boot, and Celery beat queues a dispatch task every
``DISPATCH_INTERVAL`` (5): by the time an admin triggers a digest, each
sending thread has run its claim statement on the empty queue many times.
So SQLAlchemy has compiled it, psycopg has prepared it on the connection
(``prepare_threshold``, 5 runs), and the connection's PostgreSQL backend
has the tables' catalog entries cached. A fresh bench sender had done none
of it: its one claim at 1,000 subscribers cost 12-21 ms against 5-9 for the
next (2026-12-07).

``BENCH_POLLS`` (default 10) empty passes per thread; 0 for the senders of
before, which start on a connection that has run only ``SELECT 1``.
"""

from __future__ import annotations

import os
import threading

from flask import Flask

from newsletter.delivery.dispatcher import dispatch_pass
from newsletter.extensions import db
from newsletter.models import DeliveryKind

POLLS = int(os.environ.get("BENCH_POLLS", "10"))


def poll_idle(app: Flask, threads: int, kind: DeliveryKind | None) -> None:
    """``POLLS`` empty dispatch passes (of ``kind``) in each of ``threads`` threads, side by side.

    The threads start each pass together, so each holds a pooled connection
    of its own, as sending threads do. A pass that claims anything means the
    digest was queued too early: the bench stops.
    """
    start_together = threading.Barrier(threads)
    failures: list[BaseException] = []

    def poll() -> None:
        with app.app_context():
            try:
                for _ in range(POLLS):
                    start_together.wait(30)
                    if dispatch_pass(kind=kind).claimed:
                        raise RuntimeError("an idle poll claimed mail: queue the digest after")
            except BaseException as exc:  # raised again below, in the caller's thread
                failures.append(exc)
                start_together.abort()
            finally:
                db.session.remove()

    pollers = [threading.Thread(target=poll) for _ in range(threads)]
    for poller in pollers:
        poller.start()
    for poller in pollers:
        poller.join()
    if failures:
        raise failures[0]
