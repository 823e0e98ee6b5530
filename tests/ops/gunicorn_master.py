"""gunicorn as deployed (``-c gunicorn.conf.py``, 2 workers) on a free port, for the ops tests."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from tests.conftest import ADMIN_TOKEN, SECRET
from tests.servers import answers, free_port, wait_for

ROOT = Path(__file__).resolve().parents[2]


@contextmanager
def gunicorn_master(
    database_uri: str, tmp_path: Path, app_uri: str, *options: str, **env: str
) -> Iterator[tuple[subprocess.Popen, str, TextIO]]:
    """Run ``app_uri`` until the block ends: the master, its base URL, its log (open).

    ``options`` go on gunicorn's command line, ``env`` over the test settings
    (the database, keys, no rate limits, a metrics folder in ``tmp_path``).
    """
    port = free_port()
    settings = {
        **os.environ,
        "DATABASE_URL": database_uri,
        "SECRET_KEY": SECRET,
        "ADMIN_TOKEN": ADMIN_TOKEN,
        "RATELIMIT_ENABLED": "false",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
        **env,
    }
    log = open(tmp_path / "gunicorn.log", "w+", encoding="utf-8")  # noqa: SIM115
    master = subprocess.Popen(
        [
            *(sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py"),
            *("--bind", f"127.0.0.1:{port}", "--workers", "2", *options, app_uri),
        ],
        cwd=ROOT,
        env=settings,
        stdout=log,
        stderr=log,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: answers(f"{base}/healthz"), 30, "gunicorn to answer")
        yield master, base, log
    finally:
        if master.poll() is None:
            master.kill()
            master.wait(10)
        log.close()
