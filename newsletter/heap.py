"""The heap of a long-running process: what startup built is moved out of the collector's way."""

from __future__ import annotations

import gc


def freeze_startup_heap() -> None:
    """Collect once, then move every object alive now to CPython's permanent generation.

    A full collection walks every tracked object. In a process that runs for
    days, most of them (modules, Flask, SQLAlchemy, Jinja, the app) were made
    at startup and live as long as the process, yet each full collection
    walked them again: about 15 % of a digest sender's CPU (bench/RESULTS.md).
    Frozen, they are never walked; garbage made later is collected as before.
    Called once each (through `startup.finish_startup`) by the dispatcher
    process, a Celery worker's process and a gunicorn worker, after the app
    is built.
    """
    gc.collect()
    gc.freeze()
