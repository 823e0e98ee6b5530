"""The in-flight gauge counts live processes only, whoever reaps the dead ones."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client import generate_latest

from newsletter.metrics import process_registry
from tests.meta.scrape import sample

# A sending process: a batch of 5 goes in flight, then it waits to be told or killed.
SENDER = """
from newsletter.metrics import IN_FLIGHT
IN_FLIGHT.inc(5)
print("in flight", flush=True)
input()
"""


def _sender(folder: Path) -> subprocess.Popen:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(folder)}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    return subprocess.Popen(
        [sys.executable, "-c", SENDER], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )


def _in_flight(proc: subprocess.Popen) -> None:
    assert proc.stdout is not None and proc.stdout.readline().strip() == b"in flight"


def test_a_process_killed_mid_batch_leaves_nothing_in_flight(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    alive, doomed = _sender(tmp_path), _sender(tmp_path)
    try:  # both are killed below, whatever fails from here
        _in_flight(alive)
        _in_flight(doomed)
        scrape = generate_latest(process_registry()).decode()
        assert sample(scrape, "newsletter_dispatch_in_flight") == 10

        os.kill(doomed.pid, signal.SIGKILL)  # no one to mark it dead: not gunicorn's child
        assert doomed.wait(10) == -signal.SIGKILL
        scrape = generate_latest(process_registry()).decode()
        assert sample(scrape, "newsletter_dispatch_in_flight") == 5
        assert not list(tmp_path.glob(f"gauge_live*_{doomed.pid}.db"))
        assert list(tmp_path.glob(f"gauge_live*_{alive.pid}.db"))
    finally:
        for proc in (alive, doomed):
            proc.kill()
            proc.communicate(timeout=10)  # reaps it and closes its pipes
