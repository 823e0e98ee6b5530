"""A WSGI app for the shutdown test: ``gunicorn tests.ops.slow_app:app``.

Its provider takes SLOW_SECONDS per batch and writes BATCH_LOG lines
``started <time>`` and ``finished <time>``, so the test can send SIGTERM while
a batch is in flight and see when it ended.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence

from newsletter import create_app
from newsletter.providers import REGISTRY, Message, Outcome, SendResult


class SlowProvider:
    """Accepts every message, slowly."""

    name = "slow-test"
    max_batch = 100

    def send_batch(self, messages: Sequence[Message]) -> list[SendResult]:
        """Note the start, sleep, note the end, answer sent."""
        with open(os.environ["BATCH_LOG"], "a", encoding="utf-8") as log:
            log.write(f"started {time.time()}\n")
        time.sleep(float(os.environ["SLOW_SECONDS"]))
        with open(os.environ["BATCH_LOG"], "a", encoding="utf-8") as log:
            log.write(f"finished {time.time()}\n")
        return [SendResult(Outcome.SENT, provider_id=m.key) for m in messages]


REGISTRY["slow-test"] = lambda _config: SlowProvider()
app = create_app()
