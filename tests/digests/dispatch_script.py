"""A dispatcher in its own process, sending through a provider that logs every message.

Run by the crash and Celery tests: ``python -m tests.digests.dispatch_script``.
Settings come from the environment; ``SEND_LOG`` is the file each message's
recipient is appended to *before* the provider answers, as a real provider
would have accepted it. With ``SEND_THREAD_LOG`` set, each batch also appends
``PID THREAD-NAME`` to that file: which process and thread sent it.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from newsletter.providers import REGISTRY, Message, Outcome, SendResult


class LoggingProvider:
    """Appends each recipient to a file, then waits a little: a slow provider."""

    name = "logging"

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.path = os.environ["SEND_LOG"]
        self.delay = float(os.environ.get("SEND_DELAY", "0"))
        self.max_batch = int(os.environ.get("SEND_BATCH", "50"))
        self.thread_log = os.environ.get("SEND_THREAD_LOG")

    def send_batch(self, messages: Sequence[Message]) -> list[SendResult]:
        """Log every message, wait, answer sent."""
        with open(self.path, "a") as log:
            log.writelines(f"{m.to}\n" for m in messages)
            log.flush()
            os.fsync(log.fileno())
        if self.thread_log:
            with open(self.thread_log, "a") as threads:
                threads.write(f"{os.getpid()} {threading.current_thread().name}\n")
        time.sleep(self.delay)
        return [SendResult(Outcome.SENT, provider_id=m.key) for m in messages]


def register() -> None:
    """Make ``EMAIL_PROVIDER=logging`` available in this process."""
    REGISTRY["logging"] = LoggingProvider


def main() -> None:
    """One dispatch pass, as ``flask outbox dispatch`` would run it."""
    register()
    from newsletter import create_app
    from newsletter.delivery.dispatcher import dispatch_pass

    app = create_app()
    with app.app_context():
        print(dispatch_pass(), flush=True)


if __name__ == "__main__":
    main()
