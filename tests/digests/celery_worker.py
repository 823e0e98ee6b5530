"""A Celery worker for the tests, with the logging test provider registered first.

``python -m tests.digests.celery_worker NAME [PROCESSES]``: the same worker as
``celery -A newsletter.tasks worker``, no prefetching; one process (solo
pool), or a prefork pool of ``PROCESSES``.
"""

from __future__ import annotations

import sys

from tests.digests.dispatch_script import register


def main() -> None:
    """Register the test provider, then run the worker ``sys.argv[1]``."""
    register()
    from newsletter.tasks import run_worker

    run_worker(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 1)


if __name__ == "__main__":
    main()
