"""A long-running process does its one-off work at boot: mappers configured, templates compiled."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# A fresh interpreter: in the suite's own, earlier tests have configured the mappers already.
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


@pytest.mark.parametrize("process", ["celery", "gunicorn"])
def test_a_process_boots_with_its_mappers_configured_and_templates_compiled(
    process: str, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'boot.db'}",
        "SECRET_KEY": "test-secret-key",
        "PYTHONPATH": str(ROOT),
    }
    out = subprocess.run(
        [sys.executable, "-c", BOOT, process],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    # Configured, nothing left to compile on first use, and the heap frozen after both.
    assert out.stdout.split(maxsplit=1)[0] == "True"
    assert out.stdout.strip().endswith("[] True"), out.stdout
