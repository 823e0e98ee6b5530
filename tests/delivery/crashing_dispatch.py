"""A dispatcher process for tests: logs each key it sends and can SIGKILL itself mid-pass.

Run with DATABASE_URL, SECRET_KEY, SENT_LOG and CRASH_AFTER_BATCHES (0: never).
It dies right after the provider accepted batch N and before the ledger
recorded it: the worst moment, the one that can cause duplicates.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Sequence

from newsletter import create_app
from newsletter.delivery.dispatcher import dispatch_pass
from newsletter.providers import REGISTRY, Message, Outcome, SendResult


class LoggingProvider:
    """Appends every message key it 'sends' to SENT_LOG; maybe dies after a batch."""

    name = "crash-test"
    max_batch = 1000

    def __init__(self) -> None:
        self.batches = 0
        self.crash_after = int(os.environ["CRASH_AFTER_BATCHES"])

    def send_batch(self, messages: Sequence[Message]) -> list[SendResult]:
        with open(os.environ["SENT_LOG"], "a", encoding="utf-8") as log:
            log.writelines(f"{m.key} {m.to}\n" for m in messages)
        self.batches += 1
        if self.batches == self.crash_after:
            os.kill(os.getpid(), signal.SIGKILL)
        return [SendResult(Outcome.SENT, provider_id=m.key) for m in messages]


REGISTRY["crash-test"] = lambda _config: LoggingProvider()

if __name__ == "__main__":
    app = create_app({"EMAIL_PROVIDER": "crash-test", "TESTING": True})
    app.config["SQLALCHEMY_DATABASE_URI"] = os.environ["DATABASE_URL"]
    with app.app_context():
        dispatch_pass()
