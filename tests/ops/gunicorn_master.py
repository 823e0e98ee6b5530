"""gunicorn as deployed (``-c gunicorn.conf.py``, 2 workers) on a port it picks, for the tests.

Port 0: the system picks a free port as gunicorn binds, and gunicorn's log
says which (no window in which another process could take it).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from tests.conftest import ADMIN_TOKEN, SECRET
from tests.servers import answers, wait_for

ROOT = Path(__file__).resolve().parents[2]
_LISTENING = re.compile(r"Listening at: (http://127\.0\.0\.1:\d+)")


def children(pid: int) -> list[int]:
    """The live child processes of ``pid``, whichever of its threads started them."""
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(child) for child in (task / "children").read_text().split()]
        except FileNotFoundError:
            continue
    return found


@contextmanager
def gunicorn_master(
    database_uri: str, tmp_path: Path, app_uri: str, *options: str, **env: str | None
) -> Iterator[tuple[subprocess.Popen, str, TextIO]]:
    """Run ``app_uri`` until the block ends: the master, its base URL, its log (open).

    ``options`` go on gunicorn's command line, ``env`` over the test settings
    (the database, keys, no rate limits, a metrics folder in ``tmp_path``);
    a setting given as None is left out.
    A master that exits while starting fails the test with its log; one still
    running at the end gets SIGTERM, then SIGKILL.
    """
    settings = {
        **os.environ,
        "DATABASE_URL": database_uri,
        "SECRET_KEY": SECRET,
        "ADMIN_TOKEN": ADMIN_TOKEN,
        "RATELIMIT_ENABLED": "false",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
        **env,
    }
    settings = {name: value for name, value in settings.items() if value is not None}
    log = open(tmp_path / "gunicorn.log", "w+", encoding="utf-8")  # noqa: SIM115
    master = subprocess.Popen(
        [
            *(sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py"),
            *("--bind", "127.0.0.1:0", "--workers", "2", *options, app_uri),
        ],
        cwd=ROOT,
        env=settings,
        stdout=log,
        stderr=log,
    )
    logged = (tmp_path / "gunicorn.log").read_text

    def listening() -> str | None:
        if master.poll() is not None:
            raise RuntimeError(f"gunicorn exited while starting:\n{logged(errors='replace')}")
        found = _LISTENING.search(logged(errors="replace"))
        return found.group(1) if found else None

    try:
        wait_for(listening, 30, "gunicorn to bind")
        base = listening() or ""
        wait_for(lambda: answers(f"{base}/healthz"), 30, "gunicorn to answer")
        yield master, base, log
    finally:
        if master.poll() is None:
            master.send_signal(signal.SIGTERM)
            try:
                master.wait(30)
            except subprocess.TimeoutExpired:
                master.kill()
                master.wait(10)
        log.close()
