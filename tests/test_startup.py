"""A long-running process does its one-off work at boot: mappers, templates, then its heap frozen.

Each check runs in a fresh interpreter: in the suite's own, earlier tests have
configured the mappers and built apps already.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fresh_python import printed

# What a Celery worker's process does first: build the app, once.
WORKER = """
import gc
from newsletter.tasks import flask_app
before = gc.get_freeze_count()
flask_app()
print(before, gc.get_freeze_count(), len(gc.get_objects()))
"""

BOOT = """
import gc, runpy, sys, types
from newsletter.models import Subscriber
from newsletter.tasks import flask_app
from newsletter import create_app
assert not Subscriber.__mapper__.configured
if sys.argv[1] == "celery":
    app = flask_app()
else:  # what gunicorn calls once a worker has loaded the app
    app = create_app()
    hooks = runpy.run_path("gunicorn.conf.py")
    hooks["post_worker_init"](types.SimpleNamespace(wsgi=app))
compiled = {name for (_loader, name) in app.jinja_env.cache.keys()}
print(Subscriber.__mapper__.configured, sorted(set(app.jinja_env.list_templates()) - compiled),
      gc.get_freeze_count() > 0)
"""


def _settings(tmp_path: Path) -> dict[str, str]:
    return {"DATABASE_URL": f"sqlite:///{tmp_path / 'boot.db'}", "SECRET_KEY": "test-secret-key"}


def test_a_worker_process_freezes_its_startup_heap(tmp_path: Path) -> None:
    before, frozen, still_tracked = map(int, printed(WORKER, env=_settings(tmp_path)).split())
    assert before == 0
    # The app, Flask, SQLAlchemy and the rest are out of the collector's way...
    assert frozen > 50_000
    # ...which now walks only what was made since: a small fraction.
    assert still_tracked < frozen / 10


@pytest.mark.parametrize("process", ["celery", "gunicorn"])
def test_a_process_boots_with_its_mappers_configured_and_templates_compiled(
    process: str, tmp_path: Path
) -> None:
    out = printed(BOOT, process, env=_settings(tmp_path))
    # Configured, nothing left to compile on first use, and the heap frozen after both.
    assert out.split(maxsplit=1)[0] == "True"
    assert out.endswith("[] True"), out


def test_the_celery_entry_point_imports_no_metrics_before_the_worker_starts() -> None:
    """The worker picks its metrics folder as it starts; a counter made before is lost.

    The image rehearsal's worker refused to start ("prometheus_client was
    imported too early") once the purge imported the dispatcher at module level.
    """
    program = "import sys, newsletter.tasks; print('prometheus_client' in sys.modules)"
    assert printed(program, env={"SECRET_KEY": "x"}) == "False"
