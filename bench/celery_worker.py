"""The bench's Celery worker: ``celery -A newsletter.tasks worker``, solo or prefork.

``python bench/celery_worker.py NAME [PROCESSES]``: one solo process (the
task runs in it, so its own peak memory is the worker's), or with PROCESSES
above 1 a prefork pool of that many, as docker-compose.yml runs a worker; no
prefetching; prints ``ready`` once it consumes tasks.
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
    """Run a worker named ``sys.argv[1]``: solo, or prefork with ``sys.argv[2]`` processes."""
    from newsletter.tasks import run_worker

    run_worker(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 1)


if __name__ == "__main__":
    main()
