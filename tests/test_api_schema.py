"""schemathesis against our own /openapi.json, over real HTTP: no 5xx, answers as documented.

Its pytest plugin does not run on pytest 9, so the test drives its CLI against
the app served on a free port. One check is left out: "positive data
acceptance" expects every schema-valid request to succeed, but a forged
token or a PNG sent as the CSV is schema-valid and rightly refused.
"""

from __future__ import annotations

import subprocess
import sys
from contextlib import ExitStack

import pytest

from tests.conftest import ADMIN_TOKEN
from tests.servers import serve
from tests.subscriptions.captcha_fake import SECRET, SITE_KEY, FakeSiteverify


@pytest.fixture(params=["no-captcha", "turnstile"])
def served_app(request, make_app):
    """The app on a free port; once with a CAPTCHA on, against a fake siteverify."""
    with ExitStack() as stack:
        settings = {}
        if request.param != "no-captcha":
            url = stack.enter_context(serve(FakeSiteverify()))
            settings = {
                "CAPTCHA_PROVIDER": request.param,
                "CAPTCHA_SECRET": SECRET,
                "CAPTCHA_SITE_KEY": SITE_KEY,
                "CAPTCHA_VERIFY_URL": f"{url}/siteverify",
            }
        app = make_app(RATELIMIT_ENABLED=False, CONFIRM_MAX_PER_DAY=100_000, **settings)
        yield stack.enter_context(serve(app))


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
