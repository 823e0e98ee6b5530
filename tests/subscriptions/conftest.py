"""Fixtures the subscription tests share."""

from __future__ import annotations

import pytest

from newsletter.subscriptions import importer


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks of 3 rows, so a short file crosses several chunk boundaries."""
    monkeypatch.setattr(importer, "CHUNK_ROWS", 3)
