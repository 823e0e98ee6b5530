"""Group commit: concurrent callers' writes go to the database together, in one transaction.

The first caller to arrive becomes the leader: it writes every item waiting
at that moment (its own included) in one call, hands each caller its result,
and passes the lead to the first caller that arrived meanwhile. Nobody
waits for more than the batch in flight and its own; there is no extra
thread to start or stop, and a caller alone writes at once, as it would
without the group.

A batch that fails fails every caller in it, unless ``retry_alone`` says the
error was about what was written (not, say, a database out of reach): then
each item is written again on its own, and only the one refused fails.

Used for signups (``subscriptions.service.admit``): under a burst, one
transaction of three statements replaces three statements and a commit per
signup, which is what the database's single writer (SQLite) or its round
trips and WAL flushes (PostgreSQL) made slow.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


class _Slot(Generic[Item, Result]):
    """One caller's item, and what became of it."""

    def __init__(self, item: Item) -> None:
        self.item = item
        self.ready = threading.Event()
        self.leads = False
        self.result: Result | None = None
        self.error: BaseException | None = None


class GroupCommit(Generic[Item, Result]):
    """Writes items in batches through ``write``, one result per item, in order."""

    def __init__(
        self,
        write: Callable[[Sequence[Item]], Sequence[Result]],
        max_batch: int = 500,
        retry_alone: Callable[[BaseException], bool] = lambda _error: False,
    ) -> None:
        self._write = write
        self._max_batch = max_batch
        # A batch that fails with such an error is written again one item at a time:
        # one item the database refuses then fails its own caller only.
        self._retry_alone = retry_alone
        self._lock = threading.Lock()
        self._waiting: list[_Slot[Item, Result]] = []
        self._leading = False

    def submit(self, item: Item) -> Result:
        """Write ``item`` with whatever else is waiting; its result, or the batch's error."""
        slot: _Slot[Item, Result] = _Slot(item)
        with self._lock:
            self._waiting.append(slot)
            slot.leads = not self._leading
            self._leading = True
        if not slot.leads:
            slot.ready.wait()  # set with a result, or with the lead handed to us
        if slot.leads:
            self._lead()
        if slot.error is not None:
            # The batch's own exception, in every caller: the error handlers map it
            # (a database outage is a 503 for each). Its traceback is the last raiser's.
            raise slot.error
        return slot.result  # type: ignore[return-value]

    def _lead(self) -> None:
        """Write one batch, hand out its results, pass the lead on (or give it up)."""
        with self._lock:
            batch = self._waiting[: self._max_batch]
            del self._waiting[: self._max_batch]
        try:
            results = self._write([slot.item for slot in batch])
            for slot, result in zip(batch, results, strict=True):
                slot.result = result
        except BaseException as exc:  # every caller of the batch learns it failed
            if len(batch) > 1 and isinstance(exc, Exception) and self._retry_alone(exc):
                self._write_each(batch)
            else:
                for slot in batch:
                    slot.error = exc
        with self._lock:
            successor = self._waiting[0] if self._waiting else None
            if successor is None:
                self._leading = False
            else:
                successor.leads = True
        for slot in batch:
            slot.leads = False
            slot.ready.set()
        if successor is not None:
            successor.ready.set()

    def _write_each(self, batch: list[_Slot[Item, Result]]) -> None:
        """Write a failed batch again, one item a call: each caller gets its own outcome."""
        for slot in batch:
            try:
                (slot.result,) = self._write([slot.item])
            except BaseException as exc:
                slot.error = exc
