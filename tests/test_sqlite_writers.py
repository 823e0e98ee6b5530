"""The SQLite writers' gate: held from a connection's first write to its commit or rollback."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from newsletter.sqlite_writers import GatedConnection


def connect(path: Path, **kwargs) -> GatedConnection:
    conn = sqlite3.connect(path, factory=GatedConnection, check_same_thread=False, **kwargs)
    conn.execute("PRAGMA journal_mode=WAL")
    return conn


@pytest.fixture
def path(tmp_path: Path) -> Path:
    database = tmp_path / "gate.db"
    conn = connect(database)
    conn.cursor().execute("CREATE TABLE t (x INTEGER)")
    conn.commit()
    conn.close()
    return database


def test_the_gate_is_held_from_the_first_write_to_commit(path):
    writer, other = connect(path), connect(path)
    writer.cursor().execute("SELECT count(*) FROM t")
    assert not writer.gate.held  # reads never take it
    writer.cursor().execute("INSERT INTO t VALUES (1)")
    assert writer.gate.held
    with pytest.raises(sqlite3.OperationalError, match="database is locked"):
        other.gate.acquire(timeout=0.05)
    writer.commit()
    assert not writer.gate.held
    other.cursor().execute("INSERT INTO t VALUES (2)")  # no wait now
    other.commit()
    assert writer.cursor().execute("SELECT count(*) FROM t").fetchone() == (2,)


def test_a_rollback_or_a_close_lets_the_next_writer_in(path):
    writer, other = connect(path), connect(path)
    writer.cursor().executemany("INSERT INTO t VALUES (?)", [(1,), (2,)])
    assert writer.gate.held
    writer.rollback()
    assert not writer.gate.held
    writer.cursor().execute("INSERT INTO t VALUES (3)")
    writer.close()
    other.gate.acquire(timeout=0.05)
    other.gate.release()


def test_autocommit_writes_release_at_once_and_memory_databases_have_no_gate(path):
    autocommit = connect(path, isolation_level=None)
    autocommit.cursor().execute("INSERT INTO t VALUES (1)")
    assert not autocommit.gate.held
    assert sqlite3.connect(":memory:", factory=GatedConnection).gate is None


HOLDER = """
import sqlite3, sys
from newsletter.sqlite_writers import GatedConnection
conn = sqlite3.connect(sys.argv[1], factory=GatedConnection)
conn.cursor().execute("INSERT INTO t VALUES (1)")
print("holding", flush=True)
sys.stdin.readline()  # commits when the test says so
conn.commit()
"""


def test_another_process_waits_for_the_gate_instead_of_failing(path):
    root = Path(__file__).resolve().parent.parent
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path)],
        cwd=root,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout.readline().strip() == b"holding"
        conn = connect(path, timeout=0)  # SQLite's own busy wait off: only the gate waits
        # The holder commits 0.3 s from now, however late this thread gets to its write
        # (the clock starts first: a slow start of the timer only lengthens the wait).
        started = time.monotonic()
        threading.Timer(0.3, holder.communicate, kwargs={"input": b"go\n"}).start()
        conn.cursor().execute("INSERT INTO t VALUES (2)")
        waited = time.monotonic() - started
        conn.commit()
    finally:
        if holder.poll() is None and holder.stdin and not holder.stdin.closed:
            holder.kill()  # it never got its "go": do not hide the failure behind a timeout
        holder.wait(10)
    assert 0.2 < waited < 5
    assert conn.cursor().execute("SELECT count(*) FROM t").fetchone() == (2,)


def test_ddl_waits_at_the_gate_too(path):
    writer = connect(path)
    writer.cursor().execute("INSERT INTO t VALUES (1)")  # holds the gate and SQLite's lock
    migrating = connect(path, timeout=0)  # SQLite's own busy wait off: only the gate waits
    started = time.monotonic()
    threading.Timer(0.3, writer.commit).start()
    migrating.cursor().execute("CREATE TABLE u (y INTEGER)")
    assert time.monotonic() - started >= 0.2  # it waited for the commit instead of failing
    assert not migrating.gate.held
