"""A Celery worker builds its app when it starts: a setting that stops the app shows at once."""

from __future__ import annotations

import pytest

from tests.digests.processes import start_worker, stop
from tests.servers import redis_or_fail, wait_for

BROKER = "redis://127.0.0.1:6379/13"  # its own, empty: no task reaches these workers


@pytest.mark.parametrize("processes", [1, 2], ids=["solo", "prefork"])
def test_a_worker_without_its_provider_key_says_so_before_any_task(
    database_uri, tmp_path, processes: int
) -> None:
    redis_or_fail(BROKER)
    out = tmp_path / "worker.out"
    worker = start_worker(
        "boot",
        database_uri,
        BROKER,
        tmp_path / "sent.log",
        out,
        processes,
        EMAIL_PROVIDER="postmark",  # and no POSTMARK_SERVER_TOKEN
    )
    try:
        wait_for(
            lambda: out.read_text().count("cannot build its app") >= processes,
            30,
            "every task process to report its settings",
        )
    finally:
        stop([worker])
    log = out.read_text()
    assert "POSTMARK_SERVER_TOKEN" in log  # the reason, for the operator
