"""schemathesis against our own /openapi.json, over real HTTP: no 5xx, answers as documented.

Its pytest plugin does not run on pytest 9, so the test drives its CLI against
the app served on a free port. One check is left out: "positive data
acceptance" expects every schema-valid request to succeed, but a forged
token or a PNG sent as the CSV is schema-valid and rightly refused.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import ADMIN_TOKEN
from tests.servers import serve


@pytest.fixture
def served_app(make_app):
    with serve(make_app(RATELIMIT_ENABLED=False, CONFIRM_MAX_PER_DAY=100_000)) as url:
        yield url


@pytest.mark.slow
def test_every_answer_matches_the_document(served_app):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "schemathesis.cli",
            "run",
            f"{served_app}/openapi.json",
            "--header",
            f"Authorization: Bearer {ADMIN_TOKEN}",
            "--max-examples",
            "30",
            "--checks",
            "all",
            "--exclude-checks",
            "positive_data_acceptance",
        ],
        capture_output=True,
        text=True,
        timeout=540,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert " passed" in result.stdout
