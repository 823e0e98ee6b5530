"""A long-running process's one-off work, done at boot, not by its first request or digest."""

from __future__ import annotations

from flask import Flask
from sqlalchemy.orm import configure_mappers

from .heap import freeze_startup_heap


def warm_up(app: Flask) -> None:
    """Configure the ORM's mappers and compile every template, once for the process.

    Left to themselves, both happen on first use: the first query through a
    model and the first render of each template. That put about 35 ms
    (13 configuring, 22 compiling) on a dispatcher process's first digest
    and on each web worker's first requests (bench/RESULTS.md).
    """
    configure_mappers()
    for name in app.jinja_env.list_templates():
        app.jinja_env.get_template(name)


def finish_startup(app: Flask | None) -> None:
    """Warm the app up (when there is one of ours), then freeze the heap startup built."""
    if isinstance(app, Flask):
        warm_up(app)
    freeze_startup_heap()
