"""Batches a provider failed whole (down, a 5xx, a refused connection): said and shown.

Each copy goes back to the queue on its back-off, so nothing is "due" for
long and no gauge grows: without this an outage of the provider passed in
silence, the ledger's rows alone holding the error. A whole failed batch
is logged as a warning, at most once a ``QUIET_SECONDS`` per provider and
process, and becomes the dispatch health's ``last_error`` (``/admin/stats``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

from ..providers import Outcome, SendResult
from ..security import mask
from .health import dispatch_health

log = logging.getLogger("newsletter.delivery.dispatcher")
QUIET_SECONDS = 60.0


class FailedBatches:
    """One process's record of whole failed batches, per provider, for the warnings' pace."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._said_at: dict[str, float] = {}
        self._unsaid: dict[str, int] = {}
        self._lock = threading.Lock()

    def watch(self, provider: str, results: Sequence[SendResult]) -> None:
        """Say a batch the provider failed whole; say when it sends again after one."""
        if any(result.outcome is Outcome.SENT for result in results):
            with self._lock:
                failed_before = self._said_at.pop(provider, None) is not None
                self._unsaid.pop(provider, None)
            if failed_before:
                log.info("%s: sending again after failed batches", provider)
            return
        if not _failed_whole(results):
            return
        # Masked: an error kept in the health record outlives an erasure of the reader.
        error = f"{provider}: {mask(results[0].error or '')}"
        dispatch_health().last_error = error
        now = self.clock()
        with self._lock:
            said_at = self._said_at.get(provider)
            if said_at is not None and now - said_at < QUIET_SECONDS:
                self._unsaid[provider] = self._unsaid.get(provider, 0) + 1
                return
            self._said_at[provider] = now
            unsaid = self._unsaid.pop(provider, 0)
        more = f" ({unsaid} more in the last {QUIET_SECONDS:.0f} s)" if unsaid else ""
        log.warning(
            "a batch of %d failed whole (%s)%s; each message is retried with back-off",
            len(results),
            error,
            more,
        )


def _failed_whole(results: Sequence[SendResult]) -> bool:
    """Whether every message failed for a fault of the provider's, not of a reader's.

    The providers mark those (``SendResult.provider_fault``): unreachable, a
    5xx, and the messages a batch left untried after one. An SMTP 4xx for
    one recipient (greylisting, a full mailbox) is that reader's, and often
    names them. A batch that went out unanswered is said by the dispatcher
    already.
    """
    return bool(results) and all(
        result.outcome is Outcome.TRANSIENT and result.provider_fault for result in results
    )


FAILED_BATCHES = FailedBatches()
