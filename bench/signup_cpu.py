"""Where a signup's CPU goes, in-process: ours against the floor, and ours' writes by layer.

    .venv/bin/python bench/signup_cpu.py [--signups 3000] [--rounds 2]

No gunicorn, no load generator: in a fresh process per round, the Flask test client
posts ``--signups`` JSON signups one after another (after 300 to warm up) to
each app on a fresh SQLite file, and the process's CPU time per signup is
printed for:

- ``ours``: the service's ``POST /subscribe`` (rate limits off, no dispatch);
- ``floor``: ``bench/floor_app.py``, one insert;
- ``admit``: the service function that writes a signup of a new address
  (three inserts, a lookup and a commit; since the fifteenth session on the
  driver's cursor, ``newsletter/driver_sql.py``), called directly (``admit_new``
  before 2026-12-07, when it took known addresses into its transaction);
- ``one insert, Core``: one ``INSERT`` and a commit through SQLAlchemy Core;
- ``one insert, driver``: the same on the driver's cursor.

The first two show what the service adds to the floor's work, the last three
how much of it is SQLAlchemy's own per-statement work.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]

WARM_UP = 300


def cpu_per_call(call: Callable[[int], object], count: int) -> float:
    """Microseconds of this process's CPU per ``call(n)``, after ``WARM_UP`` untimed calls."""
    for n in range(WARM_UP):
        call(-1 - n)
    started = time.process_time()
    for n in range(count):
        call(n)
    return (time.process_time() - started) / count * 1e6


def floor_client(folder: str):
    """The floor app's test client on a fresh SQLite file."""
    os.environ["FLOOR_DATABASE_URL"] = f"sqlite:///{folder}/floor.db"
    import floor_app

    floor_app.metadata.create_all(floor_app.engine)
    return floor_app.app.test_client()


def our_app(folder: str):
    """The service on a fresh, migrated SQLite file: no rate limits, no dispatching."""
    from schema import fresh_schema

    url = f"sqlite:///{folder}/ours.db"
    os.environ.update(
        {
            "SECRET_KEY": "bench",
            "DATABASE_URL": url,
            "RATELIMIT_ENABLED": "false",
            "DISPATCH_IN_PROCESS": "false",
            "OUTBOX_DIR": folder,
        }
    )
    fresh_schema(url)
    from newsletter import create_app

    return create_app()


def measure(count: int) -> dict[str, float]:
    """One round: every figure, each on fresh files."""
    from sqlalchemy import text

    from newsletter.extensions import db
    from newsletter.subscriptions.service import ClientInfo, Signup, admit

    figures = {}
    with tempfile.TemporaryDirectory() as folder:
        ours = our_app(folder).test_client()
        figures["ours"] = cpu_per_call(
            lambda n: ours.post("/subscribe", json={"email": f"r{n}@example.com"}), count
        )
        floor = floor_client(folder)
        figures["floor"] = cpu_per_call(
            lambda n: floor.post("/subscribe", json={"email": f"r{n}@example.com"}), count
        )
    with tempfile.TemporaryDirectory() as folder:
        app = our_app(folder)
        client = ClientInfo(ip="127.0.0.1", user_agent="bench", wording="Subscribe")
        with app.app_context():
            engine = db.engine
            figures["admit"] = cpu_per_call(
                lambda n: admit(engine, [Signup(f"a{n}@example.com", None, client)]), count
            )
            insert = text("INSERT INTO posts (title, url, created_at) VALUES (:t, :u, :c)")

            def core(n: int) -> None:
                with engine.begin() as connection:
                    connection.execute(insert, {"t": "x", "u": f"core{n}", "c": "2026-01-01"})

            figures["one insert, Core"] = cpu_per_call(core, count)
            raw = engine.raw_connection()
            try:
                sql = "INSERT INTO posts (title, url, created_at) VALUES (?, ?, ?)"

                def driver(n: int) -> None:
                    cursor = raw.cursor()
                    cursor.execute(sql, ("x", f"driver{n}", "2026-01-01"))
                    raw.commit()

                figures["one insert, driver"] = cpu_per_call(driver, count)
            finally:
                raw.close()
            engine.dispose()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--signups", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:  # one round, in a fresh process: every app and module imported anew
        import logging

        logging.disable(logging.INFO)  # the migrations' lines
        print(json.dumps(measure(args.signups)))
        return
    command = [sys.executable, __file__, "--child", "--signups", str(args.signups)]
    rounds = [
        json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)
        for _ in range(args.rounds)
    ]
    print("| what | " + " | ".join(f"round {n + 1}, µs CPU" for n in range(len(rounds))) + " |")
    print("|---|" + "---:|" * len(rounds))
    for name in rounds[0]:
        print(f"| {name} | " + " | ".join(f"{r[name]:.0f}" for r in rounds) + " |")


if __name__ == "__main__":
    main()
