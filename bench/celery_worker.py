"""The bench's Celery worker: ``celery -A newsletter.tasks worker``, solo or prefork.

``python bench/celery_worker.py NAME [PROCESSES]``: one solo process (the
task runs in it, so its own peak memory is the worker's), or with PROCESSES
above 1 a prefork pool of that many, as docker-compose.yml runs a worker; no
prefetching; prints ``ready`` once it consumes tasks, and ``process ready``
once each process that runs tasks (the solo one, or each pool process) has
built its app: the bench starts the clock when it has seen all of them.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the service

from celery.signals import worker_process_init, worker_ready


def _say(line: str) -> None:
    # Celery redirects sys.stdout to its log: write to the real one.
    sys.__stdout__.write(f"{line}\n")
    sys.__stdout__.flush()


@worker_ready.connect
def _say_ready(**_: object) -> None:
    _say("ready")


def main() -> None:
    """Run a worker named ``sys.argv[1]``: solo, or prefork with ``sys.argv[2]`` processes."""
    from newsletter.tasks import run_worker  # connects its app builder to worker_process_init

    # Connected after it, so run after it: a pool process says so once its app is built.
    worker_process_init.connect(lambda **_: _say("process ready"), weak=False)
    run_worker(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 1)


if __name__ == "__main__":
    main()
