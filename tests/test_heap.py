"""A long-running process freezes the heap its startup built (Celery's worker shown here)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

# What a Celery worker's process does first: build the app, once.
WORKER = """
import gc
from newsletter.tasks import flask_app
before = gc.get_freeze_count()
flask_app()
print(before, gc.get_freeze_count(), len(gc.get_objects()))
"""


def test_a_worker_process_freezes_its_startup_heap(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'heap.db'}",
        "SECRET_KEY": "test-secret-key",
        "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
    }
    out = subprocess.run(
        [sys.executable, "-c", WORKER], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    before, frozen, still_tracked = map(int, out.stdout.split())
    assert before == 0
    # The app, Flask, SQLAlchemy and the rest are out of the collector's way...
    assert frozen > 50_000
    # ...which now walks only what was made since: a small fraction.
    assert still_tracked < frozen / 10
