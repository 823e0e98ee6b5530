"""Browser fixtures: Debian's Chromium under Playwright, the service under a real
server, and the publisher's blog on a second origin.

Without Chromium or axe-core (``scripts/setup-browser`` installs both) these
tests skip on a developer's machine and fail when ``CI`` is set.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright
from sqlalchemy import select

from newsletter.extensions import db
from newsletter.models import Subscriber
from tests.conftest import Outbox

from .blog import Blog
from .servers import Gate, ServerThread
from .watch import Watch

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path(os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"))
AXE = ROOT / "tools" / "browser" / "node_modules" / "axe-core" / "axe.min.js"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
DESKTOP = {"width": 1280, "height": 900}


def _missing() -> str | None:
    if not CHROMIUM.exists():
        return f"Chromium not found at {CHROMIUM}: run scripts/setup-browser"
    if not AXE.exists():
        return f"axe-core not found at {AXE}: run scripts/setup-browser"
    return None


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    """Headless Chromium for the session; skipped locally, failed on CI, when missing."""
    problem = _missing()
    if problem:
        if os.environ.get("CI"):
            pytest.fail(problem)
        pytest.skip(problem)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield chromium
        chromium.close()


@dataclass
class Site:
    """The newsletter service and the publisher's blog, both really served."""

    app: Flask
    service: ServerThread
    blog: ServerThread
    gate: Gate
    outbox: Outbox

    def subscriber(self, email: str) -> Subscriber | None:
        """The stored subscriber with this address, if any."""
        with self.app.app_context():
            found = db.session.scalars(
                select(Subscriber).where(Subscriber.email == email)
            ).one_or_none()
            db.session.remove()
            return found


@pytest.fixture
def make_site(make_app: Callable[..., Flask]) -> Iterator[Callable[..., Site]]:
    """Build a site; settings override the app's (say ``RATELIMIT_SUBSCRIBE``)."""
    servers: list[ServerThread] = []

    def build(**overrides: Any) -> Site:
        blog_app = Blog()
        blog = ServerThread(blog_app)
        servers.append(blog)
        app = make_app(CORS_ORIGINS=[blog.url], **overrides)
        gate = Gate(app)
        service = ServerThread(gate)
        servers.append(service)
        app.config["PUBLIC_URL"] = service.url
        blog_app.service_url = service.url
        return Site(app, service, blog, gate, Outbox(app))

    yield build
    for server in reversed(servers):
        server.stop()


@pytest.fixture
def site(make_site: Callable[..., Site]) -> Site:
    """A site with the default settings."""
    return make_site()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    """A fresh browser profile with JavaScript on and axe-core in every page."""
    ctx = browser.new_context(viewport=DESKTOP)
    ctx.add_init_script(path=str(AXE))  # injected by the browser: no CSP applies
    yield ctx
    ctx.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    """A tab in ``context``."""
    tab = context.new_page()
    tab.set_default_timeout(10_000)
    return tab


@pytest.fixture
def watch(page: Page) -> Watch:
    """What ``page`` logs and requests."""
    return Watch(page)
