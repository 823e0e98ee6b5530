"""The bench's sending process: dispatch every due delivery, report time and peak memory.

It sends about as gunicorn's dispatcher process does: one thread, and
``DISPATCH_THREADS - 1`` helpers started by its first full batch (each runs
one pass to the end of the queue; the process's are woken again by later
full batches).
"""

from __future__ import annotations

import gc
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent.parent), str(Path(__file__).resolve().parent)]


from flask import Flask  # noqa: E402
from idle_polls import poll_idle  # noqa: E402
from procfs import peak_rss_kib  # noqa: E402
from spy import record_stacks  # noqa: E402
from sqlalchemy import text  # noqa: E402

from newsletter import create_app  # noqa: E402
from newsletter.db_helpers import is_postgresql  # noqa: E402
from newsletter.delivery.dispatch_process import claimed_kind, sending_threads  # noqa: E402
from newsletter.delivery.dispatcher import PassStats, dispatch_pass  # noqa: E402
from newsletter.extensions import db  # noqa: E402
from newsletter.heap import freeze_startup_heap  # noqa: E402
from newsletter.models import DeliveryKind  # noqa: E402
from newsletter.startup import warm_up  # noqa: E402


class CollectorClock:
    """Seconds CPython's garbage collector ran, from ``gc.callbacks``."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._started = 0.0
        gc.callbacks.append(self._tick)

    def _tick(self, phase: str, _info: dict) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._started


def dispatch_with_helpers(app: Flask, threads: int, kind: DeliveryKind | None) -> PassStats:
    """``dispatch_pass`` (of ``kind``) until nothing is due; a first full batch starts helpers.

    ``threads - 1`` of them, as the dispatcher process wakes its own.
    """
    helpers: list[threading.Thread] = []
    helped: list[PassStats] = []
    failures: list[BaseException] = []

    def helper() -> None:
        with app.app_context():
            try:
                helped.append(dispatch_pass(kind=kind))
            except BaseException as exc:  # raised again below: a failed helper fails the run
                failures.append(exc)
            finally:
                db.session.remove()

    def start_helpers() -> None:
        if not helpers:
            helpers.extend(threading.Thread(target=helper) for _ in range(threads - 1))
            for thread in helpers:
                thread.start()

    stats = dispatch_pass(on_full_digest_batch=start_helpers if threads > 1 else None, kind=kind)
    for thread in helpers:
        thread.join()
    if failures:
        raise failures[0]
    for other in helped:
        stats.claimed += other.claimed
        for outcome, count in other.outcomes.items():
            stats.count(outcome, count)
    return stats


def main() -> None:
    """Say ready, wait for the go, send, then print one JSON line: sent, times, CPU, GC, RSS."""
    app = create_app()
    # As the dispatcher process does once its app is built (newsletter/startup.py). For
    # A/B runs: BENCH_WARM=0, nothing warmed and no connection (before the thirteenth
    # session); BENCH_FREEZE=0, the heap not frozen (before the fifth).
    warm = os.environ.get("BENCH_WARM", "1") != "0"
    if warm:
        warm_up(app)
    if os.environ.get("BENCH_FREEZE", "1") != "0":
        freeze_startup_heap()
    collector = CollectorClock()
    # BENCH_SENDER_INDEX: which of gunicorn's dispatcher processes this one plays.
    kind = claimed_kind(app.config, int(os.environ.get("BENCH_SENDER_INDEX", "0")))
    with app.app_context():
        threads = sending_threads(app.config, is_postgresql(db.session))
        if warm:  # the dispatcher process polls the queue from boot: its pool holds a connection
            db.session.execute(text("SELECT 1"))
            db.session.commit()
    if warm:  # ... and its threads have claimed on the empty queue since (bench/idle_polls.py)
        poll_idle(app, threads, kind)
    with app.app_context():
        before = peak_rss_kib()
        # Start when the bench says so (the digest queued since): every sender at once.
        print("ready", flush=True)
        sys.stdin.readline()
        # BENCH_PROFILE=PATH: py-spy samples the send (see bench/digest.py --profile).
        profile = os.environ.get("BENCH_PROFILE")
        spying = record_stacks(os.getpid(), f"{profile}-{os.getpid()}.txt") if profile else None
        started, cpu_started = time.time(), time.process_time()
        stats = dispatch_with_helpers(app, threads, kind)
        finished, cpu = time.time(), time.process_time() - cpu_started
        if spying is not None:
            spying.send_signal(signal.SIGINT)  # py-spy writes its file when interrupted
            spying.wait(60)
    peak = peak_rss_kib()
    print(
        json.dumps(
            {
                "sent": stats.outcomes.get("sent", 0),
                "started": started,
                "finished": finished,
                "cpu_seconds": cpu,
                "gc_seconds": collector.seconds,
                "rss_start_kib": before,
                "rss_peak_kib": peak,
            }
        )
    )


if __name__ == "__main__":
    main()
