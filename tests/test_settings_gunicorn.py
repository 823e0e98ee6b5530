"""gunicorn.conf.py's own settings: a wrong one stops the master in one line, not a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load_the_gunicorn_config(tmp_path: Path, **settings: str) -> subprocess.CompletedProcess:
    """Run gunicorn.conf.py in a fresh interpreter, as gunicorn's master reads it."""
    env = {
        "PATH": os.environ["PATH"],
        "PYTHONPATH": str(ROOT),
        "SECRET_KEY": "x",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),  # not made by the config
        **settings,
    }
    program = "import runpy; conf = runpy.run_path('gunicorn.conf.py'); print(conf['workers'])"
    return subprocess.run(
        [sys.executable, "-c", program],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("WEB_CONCURRENCY", "0", "WEB_CONCURRENCY must be at least 1"),  # a master, no worker
        ("WEB_CONCURRENCY", "two", "WEB_CONCURRENCY must be a whole number, not 'two'"),
        ("WEB_THREADS", "abc", "WEB_THREADS must be a whole number, not 'abc'"),
        ("WEB_THREADS", "0", "WEB_THREADS must be at least 1"),
        ("GRACEFUL_TIMEOUT", "abc", "GRACEFUL_TIMEOUT must be a whole number, not 'abc'"),
        ("GRACEFUL_TIMEOUT", "0", "GRACEFUL_TIMEOUT must be at least 1"),
        ("WEB_WORKER_CONNECTIONS", "x", "WEB_WORKER_CONNECTIONS must be a whole number, not 'x'"),
        ("WEB_WORKER_CONNECTIONS", "0", "WEB_WORKER_CONNECTIONS must be at least 1"),
        ("BIND", "127.0.0.1:99999", "BIND must look like 0.0.0.0:8000 (host:port)"),
        ("BIND", "127.0.0.1:http", "BIND must look like 0.0.0.0:8000 (host:port)"),
    ],
)
def test_a_wrong_gunicorn_setting_stops_the_master_in_one_line_naming_it(
    name: str, value: str, message: str, tmp_path: Path
) -> None:
    result = _load_the_gunicorn_config(tmp_path, **{name: value})
    assert result.returncode == 1, result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"newsletter: cannot start: {message}"), lines
    # Unset or empty, the default stands: the same file loads.
    assert _load_the_gunicorn_config(tmp_path, **{name: ""}).stdout.strip() == "2"


def _run_gunicorn(tmp_path: Path, **settings: str) -> subprocess.CompletedProcess:
    """``gunicorn -c gunicorn.conf.py wsgi:app`` with ``settings``; fails the test if it keeps
    running (a master that should have stopped by itself)."""
    env = {
        "PATH": os.environ["PATH"],
        "SECRET_KEY": "x",
        "BIND": "127.0.0.1:0",  # an ephemeral port, if it ever got that far
        "DISPATCH_PROCESS": "false",  # no dispatcher process to outlive a killed master
        "DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
        **settings,
    }
    gunicorn = Path(sys.executable).with_name("gunicorn")
    try:
        return subprocess.run(
            [gunicorn, "-c", "gunicorn.conf.py", "wsgi:app"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )
    except subprocess.TimeoutExpired:  # run() has killed it
        pytest.fail("gunicorn kept running")


def test_gunicorn_started_with_no_worker_exits_at_once_instead_of_answering_nothing(
    tmp_path: Path,
) -> None:
    """WEB_CONCURRENCY=0 started a master that held its port, logged nothing and never answered."""
    result = _run_gunicorn(tmp_path, WEB_CONCURRENCY="0")
    assert result.returncode == 1
    assert result.stderr.strip() == "newsletter: cannot start: WEB_CONCURRENCY must be at least 1"


def test_settings_the_app_refuses_stop_gunicorn_not_restart_its_workers(tmp_path: Path) -> None:
    # gunicorn.conf.py does not read this one: the app does, in each worker as it starts.
    result = _run_gunicorn(tmp_path, RESEND_WEBHOOK_SECRET="whsec_!!")
    assert result.returncode != 0  # the master stopped by itself, well within the timeout
    refusals = [line for line in result.stderr.splitlines() if "cannot start" in line]
    assert refusals and refusals[0].startswith("newsletter: cannot start: RESEND_WEBHOOK_SECRET")
    assert len(refusals) <= 2, refusals  # once a worker, not a worker twice a second for ever
