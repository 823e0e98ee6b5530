"""Bench: how long a signup takes by its address's state, and what one request tells a stranger.

    .venv/bin/python bench/signup_timing.py [--per-state 60] [--rounds 2]
        [--code DIR ...] [--database-url URL]

``POST /subscribe`` answers the same whatever state the address is in; this
measures whether it also takes the same time. For each checkout (``--code``,
default this one; with several, they alternate round by round, each first in
turn: ``git worktree add /tmp/before REV`` for the code before a change), on
a PostgreSQL database whose schema is **dropped and recreated** and migrated
by that checkout, it starts the checkout's service under gunicorn
(``gunicorn.conf.py``, the ``outbox`` provider, rate limits off) and:

1. signs up ``--per-state`` addresses for each known state, then, in the
   database, makes one set ``unsubscribed`` (left: a signup mails it again),
   one pending with its last link two hours old (due: a signup sends a new
   one) and one ``confirmed`` (a signup sends nothing); today's
   confirmations are deleted so the daily cap stays out of the way;
2. posts one signup for each of those addresses and as many new ones, in a
   shuffled order, one at a time on one kept-alive connection (30 ms apart),
   timing each.

It prints each state's median, p10 and p90, and the share of single requests
a threshold on the time alone sorts right into "a known address that is
mailed" (left, due) against "new or confirmed", at the best threshold: 50%
is a coin, 100% tells every time.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import median

import psycopg
import requests

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]

from schema import empty_schema  # noqa: E402
from signup import BIN, Server  # noqa: E402

DEFAULT_DB = "postgresql+psycopg://postgres@127.0.0.1:5432/newsletter_bench_timing"
STATES = ("new", "left", "due", "confirmed")


def start(code: Path, url: str, folder: Path) -> Server:
    """``code``'s service under ``signup.py``'s gunicorn, on a fresh database it migrated.

    The schema is dropped and recreated, then migrated by that checkout's own
    ``flask db upgrade``; the service sends through the outbox provider.
    """
    empty_schema(url)
    subprocess.run(
        [str(BIN / "flask"), "--app", "wsgi", "db", "upgrade"],
        cwd=code,
        env={**os.environ, "DATABASE_URL": url, "SECRET_KEY": "bench"},
        check=True,
        capture_output=True,
    )
    return Server("ours", url, folder, code=code)


def probe(base: str, url: str, per_state: int) -> dict[str, list[float]]:
    """Milliseconds of each signup, by the state its address was in (module docstring)."""
    session = requests.Session()
    tag = f"t{time.time_ns()}"
    known = {state: [f"{tag}-{state}{i}@example.com" for i in range(per_state)] for state in STATES}
    for state in ("left", "due", "confirmed"):
        for address in known[state]:
            session.post(f"{base}/subscribe", json={"email": address}).raise_for_status()
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        for state, change in (
            ("left", "status = 'unsubscribed', round = round + 1"),
            ("due", "last_confirmation_at = now() - interval '2 hours'"),
            ("confirmed", "status = 'confirmed', confirmed_at = now()"),
        ):
            conn.execute(
                f"UPDATE subscribers SET {change} WHERE email = ANY(%s)",
                (known[state],),
            )
        conn.execute("DELETE FROM consent_events WHERE kind = 'confirmation_queued'")
    order = [(state, address) for state in STATES for address in known[state]]
    random.shuffle(order)
    times: dict[str, list[float]] = {state: [] for state in STATES}
    for state, address in order:
        started = time.perf_counter()
        answer = session.post(f"{base}/subscribe", json={"email": address})
        times[state].append((time.perf_counter() - started) * 1000)
        if answer.status_code != 202:
            raise RuntimeError(f"{address}: {answer.status_code} {answer.text}")
        time.sleep(0.03)
    return times


def told_apart(times: dict[str, list[float]]) -> tuple[float, float]:
    """The share of requests the best threshold sorts right (mailed-known or not); the threshold."""
    mailed = times["left"] + times["due"]
    others = times["new"] + times["confirmed"]
    every = sorted(mailed + others)
    best = (0.0, 0.0)
    for threshold in every:
        right = sum(t > threshold for t in mailed) + sum(t <= threshold for t in others)
        best = max(best, (right / len(every), threshold))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-state", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--code", type=Path, nargs="+", default=[HERE.parent])
    parser.add_argument("--database-url", default=DEFAULT_DB)
    args = parser.parse_args()
    print(
        "| checkout | round | new: median (p10-p90) ms | left | due | confirmed "
        "| one request tells mailed-known apart |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as folder:
        for round_number in range(1, args.rounds + 1):
            codes = args.code if round_number % 2 else list(reversed(args.code))
            for code in codes:
                server = start(code.resolve(), args.database_url, Path(folder))
                try:
                    base = f"http://127.0.0.1:{server.port}"
                    times = probe(base, args.database_url, args.per_state)
                finally:
                    server.stop()
                cells = []
                for state in STATES:
                    spread = sorted(times[state])
                    n = len(spread)
                    cells.append(
                        f"{median(spread):.2f} ({spread[n // 10]:.2f}-{spread[9 * n // 10]:.2f})"
                    )
                share, threshold = told_apart(times)
                print(
                    f"| {code} | {round_number} | {' | '.join(cells)} "
                    f"| {share:.0%} (at {threshold:.2f} ms) |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
