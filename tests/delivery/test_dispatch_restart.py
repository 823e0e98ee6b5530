"""A dispatcher process started again (a crash, a reload) keeps to its predecessor's rate limit.

``dispatch_process.run`` is what gunicorn's dispatcher processes run; here it
runs in a thread of the test, publishing where its predecessor published.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from newsletter.delivery import dispatch_process
from newsletter.delivery.health import DispatchHealth
from tests.conftest import Outbox
from tests.servers import wait_for


@pytest.mark.parametrize(
    ("held", "held_for"),
    [("rate_limited_until", 60.0), ("rate_limited_until", -1.0), ("paused_until", 60.0)],
    ids=["rate-limit-held", "rate-limit-over", "configuration-pause"],
)
def test_a_restarted_dispatcher_process_keeps_to_the_rate_limit_its_predecessor_met(
    make_app, tmp_path: Path, held: str, held_for: float
) -> None:
    """Not to a configuration error's pause: a restart is how a fixed setting is taken up."""
    published = tmp_path / "health.json"
    # What the process before it published as it died: a Retry-After, or a pause.
    before = DispatchHealth(last_error="429 slow down")
    setattr(before, held, time.monotonic() + held_for)
    before.save(str(published))
    app = make_app(RATELIMIT_ENABLED=False, DISPATCH_HEALTH_FILE=str(published))
    client = app.test_client()
    assert client.post("/subscribe", json={"email": "ann@example.com"}).status_code == 202
    outbox = Outbox(app)
    stop = threading.Event()
    process = threading.Thread(target=dispatch_process.run, args=(app, stop, 0))
    process.start()
    try:
        if held == "rate_limited_until" and held_for > 0:
            time.sleep(1.0)  # five looks at the queue
            assert outbox.messages() == []
            record = json.loads(published.read_text())
            assert record["last_pass_at"] is not None  # written by the new process, not the old
            assert record["rate_limited_until"] > time.monotonic()  # still said to the workers
            assert record["last_error"] == "429 slow down"
        else:  # a rate limit that is over, or a configuration pause: the mail goes
            wait_for(lambda: len(outbox.messages()) == 1, 15, "the confirmation")
    finally:
        stop.set()
        process.join(30)
    assert not process.is_alive()
