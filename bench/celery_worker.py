"""The bench's Celery worker: ``celery -A newsletter.tasks worker``, one solo process.

``python bench/celery_worker.py NAME``: one solo process (the task runs in
it, so its own peak memory is the worker's), no prefetching; prints
``ready`` once it consumes tasks.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the service

from celery.signals import worker_ready


@worker_ready.connect
def _say_ready(**_: object) -> None:
    # Celery redirects sys.stdout to its log: write to the real one.
    sys.__stdout__.write("ready\n")
    sys.__stdout__.flush()


def main() -> None:
    """Run a solo worker named ``sys.argv[1]``."""
    from newsletter.tasks import run_worker

    run_worker(sys.argv[1])


if __name__ == "__main__":
    main()
