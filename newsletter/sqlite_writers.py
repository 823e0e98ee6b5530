"""One SQLite writer at a time, handed over promptly instead of by SQLite's busy sleeps.

SQLite lets one transaction write at a time. A writer that finds the lock
taken sleeps in SQLite's busy handler (1, 2, 5, 10, ... 100 ms steps) and
tries again, so under a burst of signups most of the waiting is sleeping
while the lock is already free: throughput drops and p99 reaches half a
second. Here every connection first takes a writers' gate for the database
file, held from its first write until its commit or rollback:

- threads of one process queue on a ``threading.Lock`` (woken the moment it
  is released);
- processes (gunicorn workers, the CLI) share an ``flock`` on
  ``<database>-writer``, polled in sub-millisecond steps.

Both give up after the busy timeout with the error SQLite itself would raise.
SQLite's own locking stays underneath, unchanged: a process that does not
use the gate (the ``sqlite3`` shell) is still kept out by it.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
import time
from typing import Any

BUSY_TIMEOUT_SECONDS = 30.0
# Statements that take SQLite's write lock; DDL too (a migration beside running
# workers), or an ungated writer could hold SQLite's lock while waiting for the gate.
_WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE", "CREATE", "ALTER", "DROP")
_PROCESS_LOCKS: dict[str, threading.Lock] = {}
_PROCESS_LOCKS_GUARD = threading.Lock()


def _process_lock(path: str) -> threading.Lock:
    with _PROCESS_LOCKS_GUARD:
        return _PROCESS_LOCKS.setdefault(path, threading.Lock())


def _is_write(sql: str) -> bool:
    return sql.lstrip()[:7].upper().startswith(_WRITES)


class WriterGate:
    """The gate of one database file, as held by one connection."""

    def __init__(self, database_path: str) -> None:
        self.path = f"{database_path}-writer"
        self._threads = _process_lock(self.path)
        self._fd: int | None = None
        self.held = False

    def acquire(self, timeout: float = BUSY_TIMEOUT_SECONDS) -> None:
        """Wait for the gate (threads first, then processes); raise as SQLite would."""
        deadline = time.monotonic() + timeout
        if not self._threads.acquire(timeout=timeout):
            raise sqlite3.OperationalError("database is locked")
        try:
            self._take_file_lock(deadline)
        except BaseException:
            self._threads.release()
            raise
        self.held = True

    def release(self) -> None:
        """Let the next writer in."""
        if not self.held:
            return
        self.held = False
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        self._threads.release()

    def close(self) -> None:
        """Release and close the lock file."""
        self.release()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _take_file_lock(self, deadline: float) -> None:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        pause = 0.0002
        while True:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise sqlite3.OperationalError("database is locked") from None
                time.sleep(pause)
                pause = min(pause * 2, 0.002)


class GatedCursor(sqlite3.Cursor):
    """A cursor whose write statements first pass the connection's writers' gate."""

    def execute(self, sql: str, parameters: Any = (), /) -> GatedCursor:  # type: ignore[override]
        """Run ``sql``; a write takes the gate first."""
        if _is_write(sql):
            return self.connection.write(lambda: super(GatedCursor, self).execute(sql, parameters))  # type: ignore[attr-defined]
        return super().execute(sql, parameters)  # type: ignore[return-value]

    def executemany(self, sql: str, seq_of_parameters: Any, /) -> GatedCursor:  # type: ignore[override]
        """Run ``sql`` for each parameter set; a write takes the gate first."""
        if _is_write(sql):
            return self.connection.write(  # type: ignore[attr-defined]
                lambda: super(GatedCursor, self).executemany(sql, seq_of_parameters)
            )
        return super().executemany(sql, seq_of_parameters)  # type: ignore[return-value]


class GatedConnection(sqlite3.Connection):
    """A ``sqlite3`` connection holding its file's writers' gate through each write transaction."""

    def __init__(self, database: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(database, *args, **kwargs)
        name = os.fspath(database) if not isinstance(database, bytes) else database.decode()
        memory = (
            name in ("", ":memory:") or name.startswith("file::memory:") or "mode=memory" in name
        )
        self.gate = (
            None
            if memory
            else WriterGate(os.path.abspath(name.removeprefix("file:").split("?")[0]))
        )

    def cursor(self, factory: Any = GatedCursor) -> Any:  # type: ignore[override]
        """Cursors that pass the gate for writes."""
        return super().cursor(factory)

    def write(self, run: Any) -> Any:
        """Run a write under the gate; keep it until the transaction ends."""
        if self.gate is None or self.gate.held:
            return run()
        self.gate.acquire()
        try:
            return run()
        finally:
            self._release_unless_in_transaction()  # autocommit, or it never began one

    def commit(self) -> None:
        """Commit, then let the next writer in."""
        try:
            super().commit()
        finally:
            self._release_unless_in_transaction()

    def rollback(self) -> None:
        """Roll back, then let the next writer in."""
        try:
            super().rollback()
        finally:
            self._release_unless_in_transaction()

    def _release_unless_in_transaction(self) -> None:
        if self.gate is not None and not self.in_transaction:
            self.gate.release()

    def close(self) -> None:
        """Close the database and the gate."""
        try:
            super().close()
        finally:
            if self.gate is not None:
                self.gate.close()
