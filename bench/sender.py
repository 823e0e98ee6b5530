"""The bench's sending process: dispatch every due delivery, report time and peak memory."""

from __future__ import annotations

import gc
import json
import os
import signal
import sys
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent.parent), str(Path(__file__).resolve().parent)]


from procfs import peak_rss_kib  # noqa: E402
from spy import record_stacks  # noqa: E402

from newsletter import create_app  # noqa: E402
from newsletter.delivery.dispatcher import dispatch_pass  # noqa: E402
from newsletter.heap import freeze_startup_heap  # noqa: E402


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


def main() -> None:
    """Say ready, wait for the go, send, then print one JSON line: sent, times, CPU, GC, RSS."""
    app = create_app()
    if os.environ.get("BENCH_FREEZE", "1") != "0":  # BENCH_FREEZE=0: the collector as before
        freeze_startup_heap()  # as the dispatcher process does once its app is built
    collector = CollectorClock()
    with app.app_context():
        before = peak_rss_kib()
        # Start when the bench says so: every sender at once, none timed while importing.
        print("ready", flush=True)
        sys.stdin.readline()
        # BENCH_PROFILE=PATH: py-spy samples the send (see bench/digest.py --profile).
        profile = os.environ.get("BENCH_PROFILE")
        spying = record_stacks(os.getpid(), f"{profile}-{os.getpid()}.txt") if profile else None
        started, cpu_started = time.time(), time.process_time()
        stats = dispatch_pass()
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
