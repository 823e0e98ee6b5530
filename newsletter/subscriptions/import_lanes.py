"""An import's chunks written over several database connections at once (``IMPORT_CONNECTIONS``).

A chunk is one transaction, and on PostgreSQL its time is mostly the
server's: one connection keeps one of the machine's cores busy. Here each
address is routed, by its hash, to one of N lanes: a thread with its own
app context and session, writing its own chunks in file order. Two lanes
never touch the same address, so they never wait on each other's rows; and
within a lane an address's lines keep their order, so a repeat in a later
chunk meets the earlier line's subscriber committed, as with one connection.

The lane is the address's CRC-32 modulo N, so a file is cut into the same
chunks whenever it is imported with the same N.

A lane whose chunk fails stops writing and the import stops reading; the
error is raised once every lane has finished the chunk it was writing. The
chunks committed before stay, as with one connection, though over several
lanes they are not the file's first lines but each lane's first chunks.

The lanes write with sessions of their own: what the caller's session has
not committed, they do not see.
"""

from __future__ import annotations

import logging
import queue
import threading
import zlib
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

from flask import Flask
from sqlalchemy.orm import Session

from ..extensions import db

log = logging.getLogger(__name__)

Item = TypeVar("Item")
Report = TypeVar("Report")


class _Lane(threading.Thread, Generic[Item, Report]):
    """One connection's share of the import: its chunks, one transaction each, in order."""

    def __init__(
        self,
        app: Flask,
        write: Callable[[Session, list[Item], Report], None],
        report: Report,
        failed: threading.Event,
        name: str,
    ) -> None:
        super().__init__(name=name, daemon=True)
        self.app = app
        self.write = write
        self.report = report
        self.failed = failed
        self.chunks: queue.Queue[list[Item] | None] = queue.Queue(maxsize=1)
        self.error: BaseException | None = None

    def run(self) -> None:
        """Write each chunk handed over until told to stop; after a failure, only take them."""
        with self.app.app_context():
            try:
                # Take every chunk, whatever happens, so the reader never waits on this lane.
                while (chunk := self.chunks.get()) is not None:
                    if self.failed.is_set():
                        continue  # a lane failed (this one or another): write nothing more
                    try:
                        self.write(db.session, chunk, self.report)
                        db.session.commit()
                    except BaseException as exc:  # raised again by the importing thread
                        self.error = exc
                        self.failed.set()
                        _roll_back()
            finally:
                db.session.remove()


def _roll_back() -> None:
    """Roll back a failed chunk at once: its locks (SQLite's writers' gate) hold up the others."""
    try:
        db.session.rollback()
    except Exception:  # the connection is gone, say: remove() discards it
        log.exception("rolling back a failed import chunk failed too")


def write_in_lanes(
    app: Flask,
    items: Iterable[Item],
    key: Callable[[Item], bytes],
    lanes: int,
    chunk_size: int,
    write: Callable[[Session, list[Item], Report], None],
    new_report: Callable[[], Report],
) -> list[Report]:
    """Write ``items`` in chunks over ``lanes`` connections; each lane's report.

    Items of equal ``key`` go to the same lane. ``write(session, chunk,
    report)`` writes one chunk (the lane commits it). A lane's error is
    raised once every lane has stopped.
    """
    failed = threading.Event()
    running = [
        _Lane(app, write, new_report(), failed, name=f"newsletter-import-{i}") for i in range(lanes)
    ]
    started: list[_Lane[Item, Report]] = []
    filling: list[list[Item]] = [[] for _ in running]
    try:
        for lane in running:
            lane.start()
            started.append(lane)
        for item in items:
            at = zlib.crc32(key(item)) % lanes  # not hash(): the same file, the same lanes
            filling[at].append(item)
            if len(filling[at]) >= chunk_size:
                running[at].chunks.put(filling[at])
                filling[at] = []
                if failed.is_set():
                    break
        else:
            for lane, rest in zip(running, filling, strict=True):
                if rest:
                    lane.chunks.put(rest)
    finally:  # also when reading the file failed: every lane ends before the error goes up
        for lane in started:
            lane.chunks.put(None)
        for lane in started:
            lane.join()
    errors = [lane.error for lane in running if lane.error is not None]
    for later in errors[1:]:
        log.error("another import lane failed too: %s: %s", type(later).__name__, later)
    if errors:
        raise errors[0]
    return [lane.report for lane in running]
