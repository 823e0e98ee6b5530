"""Benchmark: CSV import of N addresses through ``importer.import_csv``, on SQLite and PostgreSQL.

    .venv/bin/python bench/import.py [--rows 100000] [--database-url URL ...] [--statements]
        [--connections N ...]

Each run is a fresh process on a freshly migrated, empty schema importing one
in-memory CSV (``email,name``; distinct mixed-case addresses) through the
service function the admin endpoint and ``flask subscribers import`` call, once as the
default import (pending, a confirmation queued each) and once with
``confirmed=True``. In the same run, each import with the plain-address
shortcut switched off (every row through ``email_validator``) is its
baseline. It prints rows per second and the importing process's peak memory;
``--statements`` also prints, on stderr, the seconds each statement took in all.
``--connections 1 2`` runs each import once per ``IMPORT_CONNECTIONS`` given
(PostgreSQL; SQLite always writes over one), for an A/B in the same run.
A bare ``sqlite`` as URL means a fresh file in a temporary folder.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from sqlalchemy import Engine, event

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]

from procfs import peak_rss_kib  # noqa: E402

DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/newsletter_bench_import"


def build_csv(rows: int) -> bytes:
    """A CSV of ``rows`` distinct addresses, mixed case as lists exported elsewhere are."""
    lines = ["email,name"]
    lines += [f"Reader.{i}@Example{i % 97}.com,Reader {i}" for i in range(rows)]
    return ("\n".join(lines) + "\n").encode()


def time_statements(engine: Engine) -> Counter[str]:
    """Seconds spent in each statement (its first words) on ``engine``, filled as they run."""
    spent: Counter[str] = Counter()
    started: dict[int, float] = {}

    @event.listens_for(engine, "before_cursor_execute")
    def _start(conn, cursor, statement, parameters, context, executemany) -> None:
        started[id(conn)] = time.perf_counter()

    @event.listens_for(engine, "after_cursor_execute")
    def _stop(conn, cursor, statement, parameters, context, executemany) -> None:
        spent[" ".join(statement.split()[:4])] += time.perf_counter() - started.pop(id(conn))

    return spent


def child(url: str, rows: int, validator_only: bool, confirmed: bool, statements: bool) -> None:
    """Migrate, import, print one JSON line (run in a fresh process for a clean peak RSS)."""
    from schema import fresh_schema

    from newsletter import create_app
    from newsletter.extensions import db
    from newsletter.subscriptions import addresses
    from newsletter.subscriptions.importer import import_csv

    fresh_schema(url)
    # TESTING: the schema is fresh_schema's; the app must not migrate it again itself.
    app = create_app({"TESTING": True, "SECRET_KEY": "bench", "SQLALCHEMY_DATABASE_URI": url})
    if validator_only:
        addresses.plain_address = lambda candidate: None
    body = build_csv(rows)
    with app.app_context():
        spent = time_statements(db.engine) if statements else None
        before = peak_rss_kib()
        started = time.perf_counter()
        report = import_csv(db.session, io.BytesIO(body), confirmed=confirmed)
        seconds = time.perf_counter() - started
    assert report.created == rows, report.to_dict()
    if spent is not None:
        print(
            f"{url.split(':')[0]} confirmed={confirmed} validator_only={validator_only}: "
            f"{seconds:.2f} s in all",
            file=sys.stderr,
        )
        for statement, total in spent.most_common():
            print(f"  {total:6.2f} s  {statement}", file=sys.stderr)
    out = {"seconds": seconds, "rss_start_kib": before, "rss_peak_kib": peak_rss_kib()}
    print(json.dumps(out))


def run(
    url: str, rows: int, validator_only: bool, confirmed: bool, statements: bool, connections: int
) -> dict:
    """One import in its own process, over ``connections`` (PostgreSQL)."""
    args = [sys.executable, __file__, "--child", url, "--rows", str(rows)]
    args += ["--validator-only"] if validator_only else []
    args += ["--statements"] if statements else []
    out = subprocess.run(
        args + (["--confirmed"] if confirmed else []),
        env={
            **os.environ,
            "DISPATCH_IN_PROCESS": "false",
            "IMPORT_CONNECTIONS": str(connections),
        },
        stdout=subprocess.PIPE,
        stderr=None if statements else subprocess.PIPE,
        check=True,
    ).stdout
    return json.loads(out.decode().strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--database-url", nargs="+", default=None)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--validator-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--confirmed", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--statements", action="store_true", help="print each statement's total time on stderr"
    )
    parser.add_argument(
        "--connections",
        type=int,
        nargs="+",
        default=[2],
        help="IMPORT_CONNECTIONS of each run (PostgreSQL; default 2, as the setting unset)",
    )
    args = parser.parse_args()
    if args.child:
        child(args.child, args.rows, args.validator_only, args.confirmed, args.statements)
        return
    with tempfile.TemporaryDirectory() as tmp:
        urls = [
            f"sqlite:///{tmp}/import.db" if url == "sqlite" else url
            for url in args.database_url or ["sqlite", DEFAULT_PG]
        ]
        print(
            "| database | import | connections | rows | rows/s "
            "| baseline: every row validated, rows/s | ratio "
            "| peak RSS (MiB) | RSS at start (MiB) |"
        )
        print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
        for url in urls:
            # SQLite: one connection, as the setting unset gives there (two were no faster).
            for connections in [1] if url.startswith("sqlite") else args.connections:
                for confirmed in (False, True):
                    report_line(url, args.rows, confirmed, args.statements, connections)


def report_line(url: str, rows: int, confirmed: bool, statements: bool, connections: int) -> None:
    """Baseline then ours, each on a fresh schema; print one table row."""
    measured = {}
    for validator_only in (True, False):
        if url.startswith("sqlite"):
            Path(url.removeprefix("sqlite:///")).unlink(missing_ok=True)
        measured[validator_only] = run(
            url, rows, validator_only, confirmed, statements, connections
        )
    fast, slow = rows / measured[False]["seconds"], rows / measured[True]["seconds"]
    print(
        f"| {url.split(':')[0].split('+')[0]} | {'confirmed' if confirmed else 'default'} "
        f"| {connections} | {rows:,} | {fast:,.0f} | {slow:,.0f} "
        f"| {fast / slow:.2f} | {measured[False]['rss_peak_kib'] / 1024:.0f} "
        f"| {measured[False]['rss_start_kib'] / 1024:.0f} |",
        flush=True,
    )


if __name__ == "__main__":
    main()
