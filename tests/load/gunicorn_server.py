"""A real gunicorn server on 127.0.0.1 and a port it picked, against the test database."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_LISTENING = re.compile(r"Listening at: (http://127\.0\.0\.1:\d+)")


@contextmanager
def gunicorn(
    database_uri: str, log: Path, workers: int = 4, threads: int = 8, **env: str
) -> Iterator[str]:
    """Run ``gunicorn wsgi:app`` (gthread workers) until the block ends; its base URL.

    Port 0 lets the system pick a free port; gunicorn's log says which.
    """
    settings = {
        **os.environ,
        "SECRET_KEY": "test-secret-key",
        "DATABASE_URL": database_uri,
        "DISPATCH_IN_PROCESS": "false",
        "DISPATCH_PROCESS": "false",  # gunicorn reads ./gunicorn.conf.py: nothing sends
        "RATELIMIT_ENABLED": "false",
        **env,
    }
    command = [
        str(Path(sys.executable).with_name("gunicorn")),
        "--bind=127.0.0.1:0",
        f"--workers={workers}",
        f"--threads={threads}",
        "--worker-class=gthread",
        "--timeout=120",
        "wsgi:app",
    ]
    with log.open("wb") as sink:
        process = subprocess.Popen(command, cwd=ROOT, env=settings, stdout=sink, stderr=sink)
    try:
        yield _wait_for_url(process, log)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def _wait_for_url(process: subprocess.Popen, log: Path, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = _LISTENING.search(log.read_text(errors="replace"))
        if found and log.read_text(errors="replace").count("Booting worker") >= 1:
            return found.group(1)
        if process.poll() is not None:
            raise RuntimeError(f"gunicorn exited: {log.read_text(errors='replace')}")
        time.sleep(0.1)
    raise RuntimeError(f"gunicorn did not start: {log.read_text(errors='replace')}")
