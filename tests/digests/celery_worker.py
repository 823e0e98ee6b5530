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
    from newsletter.tasks import run_solo_worker

    run_solo_worker(sys.argv[1])


if __name__ == "__main__":
    main()
