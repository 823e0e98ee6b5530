"""Fixtures: Prism per provider document (session-wide), a Postmark fake per test."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.servers import serve

from .servers import PRISM, SPECS, FakePostmark, prism


def _prism_or_skip(spec: str) -> Iterator[str]:
    if not PRISM.exists() or not (SPECS / spec).exists():
        if not PRISM.exists():
            what = f"Prism ({PRISM}) is missing: run scripts/setup-tests"
        else:  # the providers' documents come with the workspace, beside the checkout
            what = f"the document {SPECS / spec} is missing: clone next to ../shared"
        if os.environ.get("CI"):
            pytest.fail(what, pytrace=False)
        pytest.skip(what)
    with prism(spec) as base:
        yield base


@pytest.fixture(scope="session")
def sendgrid_url() -> Iterator[str]:
    """Prism serving SendGrid's Mail Send document."""
    yield from _prism_or_skip("sendgrid-mail-v3.yaml")


@pytest.fixture(scope="session")
def mailgun_url() -> Iterator[str]:
    """Prism serving Mailgun's document."""
    yield from _prism_or_skip("mailgun.yaml")


@pytest.fixture(scope="session")
def resend_url() -> Iterator[str]:
    """Prism serving Resend's document."""
    yield from _prism_or_skip("resend.yaml")


@pytest.fixture
def postmark() -> Iterator[tuple[FakePostmark, str]]:
    """The Postmark fake and its base URL."""
    fake = FakePostmark()
    with serve(fake) as base:
        yield fake, base
