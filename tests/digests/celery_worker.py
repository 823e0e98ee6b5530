"""A Celery worker for the tests, with the logging test provider registered first.

``python -m tests.digests.celery_worker NAME``: the same worker as
``celery -A newsletter.tasks worker``, one process, no prefetching.
"""

from __future__ import annotations

import sys

from tests.digests.dispatch_script import register


def main() -> None:
    """Register the test provider, then run a solo worker named ``sys.argv[1]``."""
    register()
    from newsletter.tasks import celery

    celery.worker_main(
        [
            "worker",
            "--pool=solo",
            "--loglevel=WARNING",
            f"--hostname={sys.argv[1]}@%h",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ]
    )


if __name__ == "__main__":
    main()
