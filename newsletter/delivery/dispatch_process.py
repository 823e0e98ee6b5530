"""The dispatcher as a process of its own, beside gunicorn's workers (``DISPATCH_PROCESS``).

``gunicorn.conf.py`` starts ``python -m newsletter.delivery.dispatch_process
APP_URI INDEX`` from the master when ``DISPATCH_PROCESS`` is true, once per
``DISPATCH_PROCESSES`` and ``DISPATCH_DIGEST_PROCESSES`` (INDEX 0, 1, ...;
``config.dispatcher_process_count``), restarts each that dies, and stops
them (SIGTERM: each finishes its batch in flight) when gunicorn stops, or
starts them anew on a reload (SIGHUP). The
workers then keep no dispatcher thread: rendering and sending no longer
compete with their request threads for their one GIL, which is most of what
a burst of signups cost them (``bench/RESULTS.md``). Process 0 alone runs
the housekeeping jobs; each publishes its own health record, and one
started again keeps to the provider's rate limit its predecessor published
there (not to a configuration error's pause: a restart is how a fixed
setting is taken up).

Nothing wakes this process on a commit: it looks for due deliveries every
``DISPATCH_COALESCE`` seconds (0.2), which is how long the threads waited
after a wake-up anyway, at the price of one cheap claim per look when idle.

The processes past the first ``DISPATCH_PROCESSES`` (``DISPATCH_DIGEST_PROCESSES``;
unset: one beside a single dispatcher process on PostgreSQL with no
``SEND_RATE``, ``config.digest_processes``) claim digest
copies only: a large digest goes out from two CPUs, while confirmations and
the housekeeping stay with the first, and a burst of signups meets no second
sender. Idle, such a process makes one claim every ``DISPATCH_COALESCE``
seconds that finds nothing. At 100,000 subscribers one process (two
threads) sent at 0.38x of the bare client's rate, and with a digest process
beside it at 0.48-0.50x, in two alternating rounds (``bench/RESULTS.md``).

It sends from ``DISPATCH_THREADS`` threads (unset: 2 when one dispatcher
process sends alone on PostgreSQL, else 1): the first polls; the others are woken when it claims
a full batch of a digest and send beside it, so the process renders one batch while
another waits on the database or the provider. At 100,000 subscribers one
thread sent at 0.26 of the bare client's rate, two at 0.37 (medians of three
alternating rounds, ``bench/RESULTS.md``).
The GIL keeps the process to one CPU either way.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Mapping
from typing import Any

from flask import Flask

from config import running_dispatcher_processes

from ..db_helpers import is_postgresql
from ..extensions import db
from ..models import DeliveryKind
from ..startup import finish_startup
from .dispatcher import BackgroundDispatcher
from .health import DispatchHealth, dispatch_health, health_file, take_up


def sending_threads(config: Mapping[str, Any], postgresql: bool) -> int:
    """``DISPATCH_THREADS``; unset, 2 when one dispatcher process sends alone on PostgreSQL."""
    if config["DISPATCH_THREADS"] is not None:
        return config["DISPATCH_THREADS"]
    alone = running_dispatcher_processes(config, postgresql) == 1
    return 2 if postgresql and alone else 1


def claimed_kind(config: Mapping[str, Any], index: int) -> DeliveryKind | None:
    """What dispatcher process ``index`` claims: digests past the first ``DISPATCH_PROCESSES``."""
    return DeliveryKind.DIGEST if index >= config["DISPATCH_PROCESSES"] else None


def run(app: Flask, stop: threading.Event, index: int = 0) -> None:
    """Dispatch (and, process 0, run the periodic jobs) until ``stop`` is set; finish the batch."""
    from ..housekeeping import JOBS

    # Nothing wakes this process: it looks as often as a woken thread would have
    # waited for the rest of a burst (at least every 0.05 s, even with DISPATCH_COALESCE=0).
    poll = max(app.config["DISPATCH_COALESCE"], 0.05)
    published = app.config["DISPATCH_HEALTH_FILE"]
    own_file = health_file(published, index) if published else None
    if own_file:  # started again (a crash, a reload): the provider's rate limit still holds
        take_up(dispatch_health(app), DispatchHealth.load(own_file), config_pause=False)
    with app.app_context():
        threads = sending_threads(app.config, is_postgresql(db.session))
    kind = claimed_kind(app.config, index)
    # Helpers: woken by the first thread's full batches of a digest (and every DISPATCH_INTERVAL,
    # should it be stuck in a long send); they share its health record and pacer.
    helpers = [
        BackgroundDispatcher(app, name=f"newsletter-dispatcher-{n}", coalesce=0.0, kind=kind)
        for n in range(2, threads + 1)
    ]
    dispatcher = BackgroundDispatcher(
        app,
        jobs=JOBS if index == 0 else (),
        interval=poll,
        health_file=own_file,  # the workers read it
        helpers=helpers,
        kind=kind,
    )
    senders = [dispatcher, *helpers]
    for sender in senders:
        sender.start()
    parent = os.getppid()
    # A timed wait, so the signal handlers get to run; and a master that died
    # without stopping us (SIGKILL) must not leave us sending on our own.
    while not stop.wait(1.0) and os.getppid() == parent:
        pass
    for sender in senders:  # none claims another batch while the others finish theirs
        sender.ask_to_stop()
    for sender in senders:
        sender.stop()


def main() -> None:
    """``python -m newsletter.delivery.dispatch_process [APP_URI [INDEX]]`` (``wsgi:app 0``)."""
    from gunicorn.util import import_app

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    app = import_app(sys.argv[1] if len(sys.argv) > 1 else "wsgi:app")
    finish_startup(app)
    run(app, stop, int(sys.argv[2]) if len(sys.argv) > 2 else 0)


if __name__ == "__main__":
    main()
