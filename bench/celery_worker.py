"""The bench's Celery worker: ``celery -A newsletter.tasks worker``, solo or prefork.

``python bench/celery_worker.py NAME [PROCESSES]``: one solo process (the
task runs in it, so its own peak memory is the worker's), or with PROCESSES
above 1 a prefork pool of that many, as docker-compose.yml runs a worker; no
prefetching; prints ``ready`` once it consumes tasks, and ``process ready``
once each process that runs tasks (the solo one, or each pool process) has
built its app and polled the empty queue (``idle_polls.py``): the bench
queues the digest, then starts the clock, when it has seen all of them. A
process whose app could not be built says ``process failed: WHY`` instead,
and the bench stops there rather than wait on a worker that fails every task.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the bench's modules
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the service, first

from celery.signals import worker_process_init, worker_ready


def _say(line: str) -> None:
    # Celery redirects sys.stdout to its log: write to the real one.
    sys.__stdout__.write(f"{line}\n")
    sys.__stdout__.flush()


@worker_ready.connect
def _say_ready(**_: object) -> None:
    _say("ready")


def _say_process_state(**_: object) -> None:
    from idle_polls import poll_idle

    from newsletter.extensions import db
    from newsletter.tasks import _ONE_PROCESS, flask_app, task_threads

    try:
        app = flask_app()  # built at worker_process_init; one that failed raises again here
        with app.app_context():
            postgresql = db.engine.dialect.name == "postgresql"
        # As beat's dispatch tasks have it, every DISPATCH_INTERVAL: passes of an empty queue.
        poll_idle(app, task_threads(app.config, postgresql, _ONE_PROCESS["worker"]), None)
    except Exception as exc:  # any reason: said to the bench, which stops
        _say(f"process failed: {exc}")
    else:
        _say("process ready")


def main() -> None:
    """Run a worker named ``sys.argv[1]``: solo, or prefork with ``sys.argv[2]`` processes."""
    from newsletter.tasks import run_worker  # connects its app builder to worker_process_init

    # Connected after it, so run after it: a pool process says so once its app is built.
    worker_process_init.connect(_say_process_state, weak=False)
    run_worker(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 1)


if __name__ == "__main__":
    main()
